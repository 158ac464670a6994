//! CycloneDX 1.4–1.6 JSON with `vulnerabilities` (`grype -o cyclonedx-json`,
//! `trivy image --format cyclonedx --scanners vuln`).
//!
//! Field names follow the CycloneDX JSON schema (`bom-1.6.schema.json`):
//! `metadata.timestamp` is when the document was made (the scan time);
//! `metadata.tools` names the scanner (a list of tools in 1.4, an object
//! with `components` since 1.5); `components[]` (nested ones too) carry
//! `bom-ref`, `name`, `version` and `purl`; each of `vulnerabilities[]` has an
//! `id`, the `source` of its record, `references[]` (other ids for it),
//! `ratings[]` (`source.name`, `score`, `severity`, `method`),
//! `recommendation`, `published`, `analysis` (`state`, `justification`) and
//! `affects[]`, each a `ref` to a component's `bom-ref` (or a BOM-Link
//! `urn:cdx:<serial>/<version>#<bom-ref>`) with `versions[]` (`version` or
//! `range`, `status`).
//!
//! One finding per affected component. Its severity is the rating of the
//! scanner's own choice: one without a source (Grype's), else the one from
//! the vulnerability's own source (Trivy names the data source it took the
//! record from, and rates it), else NVD's (CVSS v3 before v2), else the most
//! severe rating given (the safe side), else the CVSS v3 band of the highest
//! v3 score. Fixed versions come from the recommendation as Trivy words it
//! (`Upgrade pkg to version 1.2.3, 1.1.9`), else from `unaffected` version
//! ranges of the form `vers:<scheme>/>=V` (Grype's fixed versions).

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::bounded::{capped_opt, too_many_findings, MAX_FINDINGS, MAX_PER_FINDING};
use super::{parse_time, Finding, FixState, Severity, VulnReport};

/// Most components a document may list, nested ones included.
pub const MAX_COMPONENTS: usize = 100_000;

#[derive(Deserialize)]
struct Document {
    #[serde(default, rename = "bomFormat")]
    bom_format: Option<String>,
    #[serde(default)]
    metadata: Option<Metadata>,
    /// Every component, nested ones flattened.
    #[serde(default)]
    components: Option<Components>,
    #[serde(default)]
    vulnerabilities: Option<Vulnerabilities>,
}

#[derive(Deserialize)]
struct Metadata {
    #[serde(default)]
    timestamp: Option<String>,
    #[serde(default)]
    tools: Option<Tools>,
    /// The subject of the document (the image).
    #[serde(default)]
    component: Option<Component>,
}

/// The name of the first tool, in either shape.
struct Tools(Option<String>);

#[derive(Deserialize)]
struct Tool {
    #[serde(default)]
    name: Option<String>,
}

impl<'de> Deserialize<'de> for Tools {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Tools;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of tools or an object of tool components")
            }
            fn visit_unit<E>(self) -> Result<Tools, E> {
                Ok(Tools(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Tools, A::Error> {
                let mut first = None;
                while let Some(t) = seq.next_element::<Tool>()? {
                    first = first.or(t.name);
                }
                Ok(Tools(first))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Tools, A::Error> {
                let mut first = None;
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    if key == "components" {
                        first = map.next_value::<Tools>()?.0;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(Tools(first))
            }
        }
        d.deserialize_any(V)
    }
}

/// A component, as a finding names its package.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Component {
    pub(crate) bom_ref: String,
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) purl: String,
    /// Where the scanner found it (Trivy's `aquasecurity:trivy:FilePath`,
    /// Syft's `syft:location:0:path` property).
    pub(crate) path: String,
    /// Its licences as one SPDX expression text (`licenses[]`: each
    /// `license.id`, `license.name` or `expression`, joined by `AND`), as
    /// written; `None` when it states none.
    pub(crate) license: Option<String>,
}

impl<'de> Deserialize<'de> for Component {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut all = Vec::new();
        let c = OneComponent(&mut all).deserialize(d)?;
        Ok(c)
    }
}

/// Every component of a list, nested ones flattened, at most
/// [`MAX_COMPONENTS`].
pub(crate) struct Components(pub(crate) Vec<Component>);

impl<'de> Deserialize<'de> for Components {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut all = Vec::new();
        ComponentList(&mut all).deserialize(d)?;
        Ok(Components(all))
    }
}

struct ComponentList<'a>(&'a mut Vec<Component>);

impl<'de> DeserializeSeed<'de> for ComponentList<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for ComponentList<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a list of components")
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        use serde::de::Error as _;
        loop {
            // Nested components are appended before their parent.
            let Some(c) = seq.next_element_seed(OneComponent(self.0))? else { break };
            if self.0.len() >= MAX_COMPONENTS {
                return Err(A::Error::custom(format!(
                    "the document lists more than {MAX_COMPONENTS} components, the most read"
                )));
            }
            self.0.push(c);
        }
        Ok(())
    }
}

/// One component; its nested components are appended to `.0`.
struct OneComponent<'a>(&'a mut Vec<Component>);

#[derive(Deserialize)]
struct Property {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    value: Option<String>,
}

impl<'de> DeserializeSeed<'de> for OneComponent<'_> {
    type Value = Component;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Component, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for OneComponent<'_> {
    type Value = Component;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a component")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Component, A::Error> {
        let mut c = Component::default();
        let s = |v: Option<String>| v.unwrap_or_default();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "bom-ref" => c.bom_ref = s(map.next_value()?),
                "name" => c.name = s(map.next_value()?),
                "version" => c.version = s(map.next_value()?),
                "purl" => c.purl = s(map.next_value()?),
                "properties" => {
                    #[derive(Deserialize)]
                    struct P(#[serde(deserialize_with = "capped_opt::<_, _, MAX_PER_FINDING>")] Option<Vec<Property>>);
                    let P(props) = map.next_value()?;
                    let path = props.unwrap_or_default().into_iter().find_map(|p| {
                        let name = p.name.unwrap_or_default();
                        (name == "aquasecurity:trivy:FilePath" || name == "syft:location:0:path")
                            .then_some(p.value)
                            .flatten()
                    });
                    if let Some(path) = path {
                        c.path = path;
                    }
                }
                "components" => map.next_value_seed(ComponentList(self.0))?,
                "licenses" => {
                    #[derive(Deserialize)]
                    struct L(#[serde(deserialize_with = "capped_opt::<_, _, MAX_PER_FINDING>")] Option<Vec<Licensing>>);
                    let L(list) = map.next_value()?;
                    c.license = licence_text(list.unwrap_or_default());
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(c)
    }
}

/// One entry of a component's `licenses`: a licence (`id` or `name`) or
/// an SPDX `expression`.
#[derive(Deserialize)]
struct Licensing {
    #[serde(default)]
    license: Option<NamedLicence>,
    #[serde(default)]
    expression: Option<String>,
}

#[derive(Deserialize)]
struct NamedLicence {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

/// A component's licences as one expression text: each entry (its `id`,
/// else its `name`, else its `expression`) parenthesised when it is more
/// than one word, all joined by `AND` (every licence listed applies).
fn licence_text(list: Vec<Licensing>) -> Option<String> {
    let parts: Vec<String> = list
        .into_iter()
        .filter_map(|l| {
            let named = l.license.and_then(|n| n.id.filter(|s| !s.trim().is_empty()).or(n.name));
            named.or(l.expression)
        })
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    match parts.len() {
        0 => None,
        1 => parts.into_iter().next(),
        _ => Some(
            parts
                .iter()
                .map(|p| if p.contains(char::is_whitespace) { format!("({p})") } else { p.clone() })
                .collect::<Vec<_>>()
                .join(" AND "),
        ),
    }
}

#[derive(Deserialize)]
pub(crate) struct Vulnerability {
    pub(crate) id: String,
    #[serde(default)]
    source: Option<Source>,
    #[serde(default, deserialize_with = "capped_opt::<_, _, MAX_PER_FINDING>")]
    pub(crate) references: Option<Vec<Reference>>,
    #[serde(default, deserialize_with = "capped_opt::<_, _, MAX_PER_FINDING>")]
    ratings: Option<Vec<Rating>>,
    #[serde(default)]
    recommendation: Option<String>,
    #[serde(default)]
    published: Option<String>,
    #[serde(default)]
    pub(crate) updated: Option<String>,
    #[serde(default)]
    pub(crate) analysis: Option<Analysis>,
    #[serde(default, deserialize_with = "capped_opt::<_, _, MAX_PER_FINDING>")]
    pub(crate) affects: Option<Vec<Affects>>,
}

#[derive(Deserialize, Default)]
struct Source {
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct Reference {
    #[serde(default)]
    pub(crate) id: Option<String>,
}

#[derive(Deserialize)]
struct Rating {
    #[serde(default)]
    source: Option<Source>,
    #[serde(default)]
    score: Option<f64>,
    #[serde(default)]
    severity: Option<String>,
    #[serde(default)]
    method: Option<String>,
}

/// The VEX part of a vulnerability (CycloneDX 1.4+ `analysis`).
#[derive(Deserialize, Default)]
pub(crate) struct Analysis {
    #[serde(default)]
    pub(crate) state: Option<String>,
    #[serde(default)]
    pub(crate) justification: Option<String>,
    #[serde(default)]
    pub(crate) detail: Option<String>,
    #[serde(default, rename = "lastUpdated")]
    pub(crate) last_updated: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct Affects {
    #[serde(rename = "ref")]
    pub(crate) reference: String,
    #[serde(default, deserialize_with = "capped_opt::<_, _, MAX_PER_FINDING>")]
    versions: Option<Vec<AffectedVersion>>,
}

#[derive(Deserialize)]
struct AffectedVersion {
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    range: Option<String>,
    #[serde(default)]
    status: Option<String>,
}

/// The vulnerabilities, at most [`MAX_FINDINGS`] affected components in all.
pub(crate) struct Vulnerabilities(pub(crate) Vec<Vulnerability>);

impl<'de> Deserialize<'de> for Vulnerabilities {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Vulnerabilities;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of vulnerabilities")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vulnerabilities, A::Error> {
                let (mut out, mut affected) = (Vec::new(), 0usize);
                while let Some(v) = seq.next_element::<Vulnerability>()? {
                    affected += v.affects.as_ref().map_or(1, |a| a.len().max(1));
                    if affected > MAX_FINDINGS {
                        return Err(too_many_findings());
                    }
                    out.push(v);
                }
                Ok(Vulnerabilities(out))
            }
        }
        d.deserialize_seq(V)
    }
}

/// The `bom-ref` a reference names: itself, or the fragment of a BOM-Link
/// (`urn:cdx:<serial>/<version>#<bom-ref>`, percent-decoded).
pub(crate) fn bom_ref_of(reference: &str) -> std::borrow::Cow<'_, str> {
    match reference.strip_prefix("urn:cdx:").and_then(|r| r.split_once('#')) {
        Some((_, fragment)) => percent_encoding::percent_decode_str(fragment).decode_utf8_lossy(),
        None => std::borrow::Cow::Borrowed(reference),
    }
}

/// Each component's purl by its `bom-ref`.
pub(crate) fn purls(components: Vec<Component>) -> std::collections::HashMap<String, String> {
    components
        .into_iter()
        .filter(|c| !c.bom_ref.is_empty() && !c.purl.is_empty())
        .map(|c| (c.bom_ref, c.purl))
        .collect()
}

/// Whether a CycloneDX document's `vulnerabilities` list has an entry.
/// Trivy writes `"vulnerabilities": []` into every CycloneDX document, an
/// SBOM made without scanning too, so an empty list does not tell a clean
/// scan from an SBOM.
pub(crate) fn lists_vulnerabilities(text: &str) -> bool {
    struct NonEmpty(bool);
    impl<'de> Deserialize<'de> for NonEmpty {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = NonEmpty;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("JSON")
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NonEmpty, A::Error> {
                    let any = seq.next_element::<IgnoredAny>()?.is_some();
                    while seq.next_element::<IgnoredAny>()?.is_some() {}
                    Ok(NonEmpty(any))
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NonEmpty, A::Error> {
                    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                    Ok(NonEmpty(false))
                }
                fn visit_unit<E>(self) -> Result<NonEmpty, E> {
                    Ok(NonEmpty(false))
                }
                fn visit_str<E>(self, _: &str) -> Result<NonEmpty, E> {
                    Ok(NonEmpty(false))
                }
                fn visit_bool<E>(self, _: bool) -> Result<NonEmpty, E> {
                    Ok(NonEmpty(false))
                }
                fn visit_u64<E>(self, _: u64) -> Result<NonEmpty, E> {
                    Ok(NonEmpty(false))
                }
                fn visit_i64<E>(self, _: i64) -> Result<NonEmpty, E> {
                    Ok(NonEmpty(false))
                }
                fn visit_f64<E>(self, _: f64) -> Result<NonEmpty, E> {
                    Ok(NonEmpty(false))
                }
            }
            d.deserialize_any(V)
        }
    }
    #[derive(Deserialize)]
    struct Top {
        #[serde(default)]
        vulnerabilities: Option<NonEmpty>,
    }
    serde_json::from_str::<Top>(text).ok().and_then(|t| t.vulnerabilities).is_some_and(|v| v.0)
}

/// Whether a JSON text is a CycloneDX document (`bomFormat`).
pub(crate) fn is_cyclonedx(bom_format: &str) -> bool {
    bom_format == "CycloneDX"
}

/// The severity of a vulnerability, from its ratings (see the module).
fn severity(v: &Vulnerability) -> (Severity, Option<f64>) {
    let ratings = v.ratings.as_deref().unwrap_or_default();
    let source_of = |r: &Rating| r.source.as_ref().and_then(|s| s.name.as_deref()).unwrap_or_default().to_string();
    let own = v.source.as_ref().and_then(|s| s.name.as_deref()).unwrap_or_default();
    let named = |r: &&Rating| {
        let s = r.severity.as_deref().map(cdx_severity).unwrap_or(Severity::Unknown);
        (s != Severity::Unknown).then_some(s)
    };
    let v3 = |r: &Rating| r.method.as_deref().is_some_and(|m| m.starts_with("CVSSv3") || m.starts_with("CVSSv4"));
    let cvss = ratings
        .iter()
        .filter(|r| r.method.as_deref().is_some_and(|m| m.starts_with("CVSSv3")))
        .filter_map(|r| r.score.filter(|s| s.is_finite() && *s >= 0.0))
        .reduce(f64::max);
    let chosen = ratings
        .iter()
        .filter(|r| source_of(r).is_empty() && r.method.as_deref() != Some("other"))
        .find_map(|r| named(&r))
        .or_else(|| {
            let own: Vec<&Rating> =
                ratings.iter().filter(|r| !own.is_empty() && source_of(r).eq_ignore_ascii_case(own)).collect();
            own.iter().filter(|r| v3(r)).chain(own.iter()).find_map(named)
        })
        .or_else(|| {
            let nvd: Vec<&Rating> = ratings.iter().filter(|r| source_of(r).eq_ignore_ascii_case("nvd")).collect();
            nvd.iter().filter(|r| v3(r)).chain(nvd.iter()).find_map(named)
        })
        .or_else(|| ratings.iter().filter_map(|r| named(&r)).min());
    (chosen.unwrap_or_else(|| Severity::from_name_or_cvss("", cvss)), cvss)
}

/// CycloneDX severity names (`critical`, `high`, `medium`, `low`, `info`,
/// `none`, `unknown`); `info` and `none` are low.
fn cdx_severity(name: &str) -> Severity {
    match name.trim().to_ascii_lowercase().as_str() {
        "info" | "none" => Severity::Low,
        other => Severity::parse(other),
    }
}

/// Fixed versions: Trivy's recommendation for the package (`Upgrade
/// libidn2-0 to version 2.0.5-1+deb10u1`, several versions separated by
/// `, `; one recommendation per package separated by `; ` when the
/// vulnerability affects several), else each `unaffected` range
/// `vers:<scheme>/>=V`.
fn fixed_versions(v: &Vulnerability, affects: &Affects, package: &str) -> Vec<String> {
    let recommendations: Vec<(&str, &str)> = v
        .recommendation
        .as_deref()
        .unwrap_or_default()
        .split("; ")
        .filter_map(|r| r.strip_prefix("Upgrade ")?.split_once(" to version "))
        .collect();
    let chosen = match recommendations.as_slice() {
        [(_, only)] => Some(*only),
        many => many.iter().find(|(p, _)| *p == package).map(|(_, list)| *list),
    };
    let from_recommendation: Vec<String> = chosen
        .map(|list| list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect())
        .unwrap_or_default();
    if !from_recommendation.is_empty() {
        return from_recommendation;
    }
    affects
        .versions
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter(|av| av.status.as_deref() == Some("unaffected"))
        .filter_map(|av| {
            let range = av.range.as_deref()?.strip_prefix("vers:")?;
            let (_, constraints) = range.split_once('/')?;
            let v = constraints.strip_prefix(">=")?;
            (!v.is_empty() && !v.contains('|')).then(|| v.to_string())
        })
        .collect()
}

/// A package named by a purl: (name, version), the namespace joined to the
/// name as scanners show it (`org.springframework.boot:spring-boot` for
/// Maven, `golang.org/x/net` for Go, the name alone for OS packages).
fn package_of_purl(purl: &str) -> Option<(String, String)> {
    let p = purl.parse::<packageurl::PackageUrl<'_>>().ok()?;
    let name = match (p.ty(), p.namespace()) {
        ("maven", Some(ns)) => format!("{ns}:{}", p.name()),
        ("golang" | "npm" | "github" | "composer", Some(ns)) => format!("{ns}/{}", p.name()),
        _ => p.name().to_string(),
    };
    Some((name, p.version().unwrap_or_default().to_string()))
}

/// Reads a CycloneDX document with vulnerabilities from `d`.
pub(super) fn parse<'de, D: serde::Deserializer<'de>>(d: D) -> Result<VulnReport, String> {
    let doc = Document::deserialize(d).map_err(|e| format!("CycloneDX document: {e}"))?;
    if !doc.bom_format.as_deref().is_some_and(is_cyclonedx) {
        return Err("CycloneDX document: bomFormat is not \"CycloneDX\"".to_string());
    }
    let Some(Vulnerabilities(vulns)) = doc.vulnerabilities else {
        return Err("CycloneDX document: it has no vulnerabilities list (an SBOM, not a scan)".to_string());
    };
    let metadata = doc.metadata;
    let finished_on = parse_time(metadata.as_ref().and_then(|m| m.timestamp.as_deref()))
        .map_err(|e| format!("CycloneDX document metadata.timestamp: {e}"))?;
    let (scanner, subject) = match metadata {
        Some(m) => (m.tools.and_then(|t| t.0), m.component),
        None => (None, None),
    };
    let mut components: std::collections::HashMap<String, Component> = std::collections::HashMap::new();
    for c in doc.components.map(|c| c.0).unwrap_or_default().into_iter().chain(subject) {
        if !c.bom_ref.is_empty() {
            components.insert(c.bom_ref.clone(), c);
        }
    }
    let mut findings = Vec::new();
    for v in &vulns {
        let (severity, cvss) = severity(v);
        let aliases: Vec<String> = v
            .references
            .as_deref()
            .unwrap_or_default()
            .iter()
            .filter_map(|r| r.id.clone())
            .filter(|a| !a.is_empty() && *a != v.id)
            .collect();
        let published = parse_time(v.published.as_deref()).unwrap_or(None);
        let none = Vec::new();
        let affects = v.affects.as_ref().unwrap_or(&none);
        if affects.is_empty() {
            // A vulnerability that names no component still counts.
            findings.push(Finding {
                id: v.id.clone(),
                aliases: aliases.clone(),
                severity,
                package: String::new(),
                installed_version: String::new(),
                fixed_versions: vec![],
                fix_state: FixState::Unknown,
                published,
                cvss,
                target: String::new(),
                purl: None,
            });
        }
        for a in affects {
            let reference = bom_ref_of(&a.reference);
            let affected_version = a
                .versions
                .as_deref()
                .unwrap_or_default()
                .iter()
                .find(|av| av.status.as_deref().unwrap_or("affected") == "affected")
                .and_then(|av| av.version.clone());
            let (package, version, purl, target) = match components.get(reference.as_ref()) {
                Some(c) => {
                    let purl = (!c.purl.is_empty()).then(|| c.purl.clone());
                    (c.name.clone(), c.version.clone(), purl, c.path.clone())
                }
                None => match package_of_purl(&reference) {
                    Some((name, version)) => (name, version, Some(reference.to_string()), String::new()),
                    None => (reference.to_string(), String::new(), None, String::new()),
                },
            };
            let version = if version.is_empty() { affected_version.unwrap_or_default() } else { version };
            let fixed = fixed_versions(v, a, &package);
            findings.push(Finding {
                id: v.id.clone(),
                aliases: aliases.clone(),
                severity,
                package,
                installed_version: version,
                fix_state: FixState::parse("", !fixed.is_empty()),
                fixed_versions: fixed,
                published,
                cvss,
                target,
                purl,
            });
        }
    }
    super::trivy::keep_distinct_aliases(&mut findings);
    let scanner = scanner.filter(|s| !s.is_empty()).unwrap_or_else(|| "cyclonedx".to_string());
    // The scanner's own analysis (`analysis.state`), as VEX about the image.
    let purls = components.into_iter().filter(|(_, c)| !c.purl.is_empty()).map(|(r, c)| (r, c.purl)).collect();
    let mut ignored = Vec::new();
    let statements = super::vex::cyclonedx_statements(&vulns, &purls, "", finished_on, &mut ignored);
    let vex = (!statements.is_empty() || !ignored.is_empty()).then(|| {
        std::sync::Arc::new(super::vex::Document {
            format: super::vex::Format::CycloneDx,
            id: String::new(),
            author: format!("{scanner} (the scan's own analysis)"),
            timestamp: finished_on,
            statements,
            ignored,
        })
    });
    Ok(VulnReport { scanner, finished_on, findings, vex, sbom: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> VulnReport {
        parse(&mut serde_json::Deserializer::from_str(text)).unwrap()
    }

    #[test]
    fn only_a_listed_vulnerability_tells_a_scan_from_an_sbom() {
        // (document, lists vulnerabilities)
        let rows = [
            (r#"{"bomFormat": "CycloneDX", "vulnerabilities": [{"id": "CVE-1"}]}"#, true),
            (r#"{"bomFormat": "CycloneDX", "vulnerabilities": []}"#, false),
            (r#"{"bomFormat": "CycloneDX", "vulnerabilities": {"id": "CVE-1"}}"#, false),
            (r#"{"bomFormat": "CycloneDX", "components": []}"#, false),
            ("not json", false),
        ];
        for (text, want) in rows {
            assert_eq!(lists_vulnerabilities(text), want, "{text}");
        }
    }

    #[test]
    fn the_bom_link_form_names_a_bom_ref() {
        // (reference, bom-ref)
        let rows = [
            ("pkg:deb/debian/bash@5.0-4", "pkg:deb/debian/bash@5.0-4"),
            ("bbb0ba712c2b94ea", "bbb0ba712c2b94ea"),
            (
                "urn:cdx:3e671687-395b-41f5-a30f-a58921a69b79/1#pkg:deb/ubuntu/libstdc%2B%2B6@12.3.0",
                "pkg:deb/ubuntu/libstdc++6@12.3.0",
            ),
            ("urn:cdx:3e671687/1", "urn:cdx:3e671687/1"),
        ];
        for (reference, want) in rows {
            assert_eq!(bom_ref_of(reference), want, "{reference}");
        }
    }

    #[test]
    fn severity_is_the_scanners_own_rating_else_the_sources_else_nvd_else_the_worst() {
        // (ratings, vulnerability source, severity, cvss)
        let rows: [(&str, &str, Severity, Option<f64>); 7] = [
            // Grype: the rating without a source, even against its score.
            (r#"[{"score": 8.2, "severity": "low", "method": "CVSSv31"}]"#, "", Severity::Low, Some(8.2)),
            // Trivy: the rating of the vulnerability's own source.
            (
                r#"[{"source": {"name": "nvd"}, "score": 7.8, "severity": "high", "method": "CVSSv31"},
                    {"source": {"name": "debian"}, "severity": "low"}]"#,
                "debian",
                Severity::Low,
                Some(7.8),
            ),
            // No rating from the source: NVD's v3 before its v2.
            (
                r#"[{"source": {"name": "amazon"}, "severity": "medium"},
                    {"source": {"name": "nvd"}, "score": 7.5, "severity": "high", "method": "CVSSv2"},
                    {"source": {"name": "nvd"}, "score": 9.8, "severity": "critical", "method": "CVSSv31"}]"#,
                "debian",
                Severity::Critical,
                Some(9.8),
            ),
            // Neither: the most severe named.
            (
                r#"[{"source": {"name": "a"}, "severity": "low"}, {"source": {"name": "b"}, "severity": "high"}]"#,
                "c",
                Severity::High,
                None,
            ),
            // No names: the v3 score's band.
            (r#"[{"source": {"name": "a"}, "score": 5.0, "method": "CVSSv3"}]"#, "", Severity::Medium, Some(5.0)),
            // EPSS and KEV ratings (method other) are not severities.
            (r#"[{"source": {"name": "FIRST"}, "score": 0.03, "method": "other"}]"#, "", Severity::Unknown, None),
            (r#"[{"severity": "info"}]"#, "", Severity::Low, None),
        ];
        for (ratings, source, want, cvss) in rows {
            let text = format!(
                r#"{{"bomFormat": "CycloneDX", "vulnerabilities": [{{"id": "CVE-1", "source": {{"name": "{source}"}},
                    "ratings": {ratings}, "affects": [{{"ref": "pkg:deb/debian/bash@5.0-4"}}]}}]}}"#
            );
            let r = read(&text);
            assert_eq!((r.findings[0].severity, r.findings[0].cvss), (want, cvss), "{ratings}");
        }
    }

    #[test]
    fn fixed_versions_come_from_the_recommendation_or_unaffected_ranges() {
        // (vulnerability fields, fixed versions)
        let rows: [(&str, &[&str]); 5] = [
            (r#""recommendation": "Upgrade activesupport to version 6.0.3.1, 5.2.4.3""#, &["6.0.3.1", "5.2.4.3"]),
            (
                r#""affects": [{"ref": "x", "versions": [{"version": "1.1.1", "status": "affected"},
                   {"range": "vers:generic/>=1.2.1", "status": "unaffected"},
                   {"range": "vers:generic/>=2.1.3", "status": "unaffected"}]}]"#,
                &["1.2.1", "2.1.3"],
            ),
            (
                r#""affects": [{"ref": "x", "versions": [{"range": "vers:npm/>=1.0.0|<2.0.0", "status": "unaffected"}]}]"#,
                &[],
            ),
            (r#""recommendation": "no fix yet""#, &[]),
            // Trivy joins the recommendations for several packages with `; `.
            (
                r#""recommendation": "Upgrade a to version 1.1; Upgrade pkg to version 2.1, 1.9",
                   "affects": [{"ref": "pkg:npm/pkg@2.0"}]"#,
                &["2.1", "1.9"],
            ),
        ];
        for (fields, want) in rows {
            let affects = if fields.contains("affects") { "" } else { r#", "affects": [{"ref": "x"}]"# };
            let text =
                format!(r#"{{"bomFormat": "CycloneDX", "vulnerabilities": [{{"id": "CVE-1", {fields}{affects}}}]}}"#);
            assert_eq!(read(&text).findings[0].fixed_versions, want, "{fields}");
        }
    }

    #[test]
    fn affects_resolve_to_components_by_bom_ref_or_purl_and_nested_components_count() {
        let text = r#"{"bomFormat": "CycloneDX", "specVersion": "1.4",
            "metadata": {"timestamp": "2024-12-10T09:31:02Z", "tools": [{"vendor": "anchore", "name": "grype"}]},
            "components": [{"bom-ref": "outer", "name": "app", "version": "1",
                "components": [{"bom-ref": "inner", "name": "lib", "version": "2", "purl": "pkg:npm/%40acme/lib@2"}]}],
            "vulnerabilities": [
                {"id": "CVE-1", "affects": [{"ref": "inner"}, {"ref": "urn:cdx:abc/1#outer"}]},
                {"id": "CVE-2", "references": [{"id": "GHSA-x"}], "affects": [{"ref": "pkg:maven/org.acme/web@3.1"}]},
                {"id": "CVE-3", "affects": [{"ref": "unknown", "versions": [{"version": "9", "status": "affected"}]}]},
                {"id": "CVE-4"}]}"#;
        let r = read(text);
        assert_eq!(r.scanner, "grype");
        assert_eq!(r.finished_on.unwrap().to_rfc3339(), "2024-12-10T09:31:02+00:00");
        let got: Vec<(&str, &str, &str, Option<&str>)> = r
            .findings
            .iter()
            .map(|f| (f.id.as_str(), f.package.as_str(), f.installed_version.as_str(), f.purl.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                ("CVE-1", "lib", "2", Some("pkg:npm/%40acme/lib@2")),
                ("CVE-1", "app", "1", None),
                ("CVE-2", "org.acme:web", "3.1", Some("pkg:maven/org.acme/web@3.1")),
                ("CVE-3", "unknown", "9", None),
                ("CVE-4", "", "", None),
            ]
        );
        assert_eq!(r.findings[2].aliases, ["GHSA-x"]);
    }

    #[test]
    fn malformed_and_oversized_documents_are_errors() {
        // (document, error contains)
        let many = format!(
            r#"{{"bomFormat": "CycloneDX", "vulnerabilities": [{}]}}"#,
            vec![r#"{"id": "CVE-1"}"#; MAX_FINDINGS + 1].join(",")
        );
        let rows = [
            (r#"{"bomFormat": "CycloneDX", "components": []}"#, "no vulnerabilities list"),
            (r#"{"bomFormat": "SPDX", "vulnerabilities": []}"#, "bomFormat"),
            (r#"{"bomFormat": "CycloneDX", "vulnerabilities": [{"affects": []}]}"#, "missing field `id`"),
            (r#"{"bomFormat": "CycloneDX", "vulnerabilities": {}}"#, "a list of vulnerabilities"),
            (many.as_str(), "more than 50000 vulnerabilities"),
        ];
        for (text, want) in rows {
            let e = parse(&mut serde_json::Deserializer::from_str(text)).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
    }
}
