//! Trivy JSON (`trivy image --format json`, schema version 2).
//!
//! Field names follow `pkg/types/report.go` and `DetectedVulnerability` in
//! aquasecurity/trivy: the report's `CreatedAt` is the scan time (absent in
//! reports older than v0.48); each vulnerability carries `Severity` (upper
//! case as Trivy writes it, matched case-insensitively here), `Status`,
//! `FixedVersion` (comma-separated when several branches fix it),
//! `VendorIDs`, `PublishedDate` and per-source `CVSS` scores.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Deserialize;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::bounded::{capped_map, capped_opt, each, too_many_findings, MAX_FINDINGS, MAX_PER_FINDING};
use super::{parse_time, Finding, FixState, Severity, VulnReport};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Report {
    #[serde(default)]
    created_at: Option<String>,
    /// Each result's findings, normalised as they are read.
    #[serde(default)]
    results: Option<Findings>,
}

/// The findings of all results, at most [`MAX_FINDINGS`] in all, each made
/// as its vulnerability is read (none is kept as read).
struct Findings(Vec<Finding>);

impl<'de> Deserialize<'de> for Findings {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Results;
        impl<'de> Visitor<'de> for Results {
            type Value = Findings;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of results")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Findings, A::Error> {
                let mut out = Vec::new();
                while seq.next_element_seed(OneResult(&mut out))?.is_some() {}
                Ok(Findings(out))
            }
        }
        d.deserialize_seq(Results)
    }
}

/// One result (`Target`, `Vulnerabilities`), its findings appended to `.0`.
struct OneResult<'a>(&'a mut Vec<Finding>);

impl<'de> DeserializeSeed<'de> for OneResult<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for OneResult<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a result")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        let out = self.0;
        let start = out.len();
        let mut target = String::new();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "Target" => target = map.next_value::<Option<String>>()?.unwrap_or_default(),
                "Vulnerabilities" => map.next_value_seed(each(|vu: Vuln| {
                    if out.len() == MAX_FINDINGS {
                        return Err(too_many_findings::<serde_json::Error>().to_string());
                    }
                    out.push(finding(vu));
                    Ok(())
                }))?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        for f in &mut out[start..] {
            f.target.clone_from(&target);
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct Vuln {
    #[serde(rename = "VulnerabilityID")]
    id: String,
    #[serde(rename = "VendorIDs", default, deserialize_with = "capped_opt::<_, _, MAX_PER_FINDING>")]
    vendor_ids: Option<Vec<String>>,
    #[serde(rename = "PkgName", default)]
    pkg_name: String,
    #[serde(rename = "PkgIdentifier", default)]
    pkg_identifier: Option<PkgIdentifier>,
    #[serde(rename = "InstalledVersion", default)]
    installed_version: String,
    #[serde(rename = "FixedVersion", default)]
    fixed_version: String,
    #[serde(rename = "Severity", default)]
    severity: String,
    #[serde(rename = "SeveritySource", default)]
    severity_source: String,
    #[serde(rename = "Status", default)]
    status: String,
    #[serde(rename = "PublishedDate", default)]
    published_date: Option<String>,
    #[serde(rename = "CVSS", default, deserialize_with = "capped_map::<_, _, MAX_PER_FINDING>")]
    cvss: Option<BTreeMap<String, Cvss>>,
}

#[derive(Deserialize)]
struct PkgIdentifier {
    #[serde(rename = "PURL", default)]
    purl: Option<String>,
}

#[derive(Deserialize)]
struct Cvss {
    #[serde(rename = "V3Score", default)]
    v3_score: Option<f64>,
    #[serde(rename = "V40Score", default)]
    v40_score: Option<f64>,
}

/// The CVSS base score to band a severity by: v3 from the source Trivy took
/// the severity from, else NVD's, else any source's (highest); a v4.0 score
/// only when no source has v3 (both versions share the qualitative bands).
/// v2 scores are never used: their bands differ.
fn best_cvss(vu: &Vuln) -> Option<f64> {
    let m = vu.cvss.as_ref()?;
    let valid = |s: Option<f64>| s.filter(|s| s.is_finite() && *s > 0.0);
    let preferred = [vu.severity_source.as_str(), "nvd"];
    let pick = |score: &dyn Fn(&Cvss) -> Option<f64>| {
        preferred
            .iter()
            .find_map(|src| m.get(*src).and_then(|c| valid(score(c))))
            .or_else(|| m.values().filter_map(|c| valid(score(c))).reduce(f64::max))
    };
    pick(&|c| c.v3_score).or_else(|| pick(&|c| c.v40_score))
}

/// Reads a Trivy report from `d` (its text, or a document).
pub(super) fn parse<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<VulnReport, String> {
    let r = Report::deserialize(d).map_err(|e| format!("Trivy report: {e}"))?;
    let finished_on = parse_time(r.created_at.as_deref()).map_err(|e| format!("Trivy report CreatedAt: {e}"))?;
    let mut findings = r.results.map(|f| f.0).unwrap_or_default();
    keep_distinct_aliases(&mut findings);
    Ok(VulnReport { scanner: "trivy".to_string(), finished_on, findings, vex: None, sbom: None })
}

/// One vulnerability as a finding (its target is set by its result).
fn finding(vu: Vuln) -> Finding {
    let fixed_versions: Vec<String> =
        vu.fixed_version.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
    let cvss = best_cvss(&vu);
    Finding {
        aliases: vu.vendor_ids.unwrap_or_default(),
        id: vu.id,
        severity: Severity::from_name_or_cvss(&vu.severity, cvss),
        package: vu.pkg_name,
        installed_version: vu.installed_version,
        fix_state: FixState::parse(&vu.status, !fixed_versions.is_empty()),
        fixed_versions,
        published: parse_time(vu.published_date.as_deref()).unwrap_or(None),
        cvss,
        target: String::new(),
        purl: vu.pkg_identifier.and_then(|p| p.purl).filter(|p| !p.is_empty()),
    }
}

/// Keeps only the aliases that name one vulnerability. Scanners list, next
/// to a vulnerability's id, other ids for it (a GHSA for a CVE), but also
/// vendor advisories that fix several vulnerabilities at once: Trivy's
/// `VendorIDs` for Amazon, Oracle or Debian hold an ALAS/ELSA/DSA that
/// covers every CVE it fixes in that package. Taken as aliases, those would
/// make [`VulnReport::dedup`] count all those CVEs as one. So an alias that
/// more than one id of the same package and version claims is dropped, as
/// is an alias equal to the finding's own id.
pub(super) fn keep_distinct_aliases(findings: &mut [Finding]) {
    let mut claimed: HashMap<(&str, &str, &str), HashSet<&str>> = HashMap::new();
    for f in findings.iter() {
        for a in f.aliases.iter().filter(|a| **a != f.id) {
            claimed.entry((a, &f.package, &f.installed_version)).or_default().insert(&f.id);
        }
    }
    let shared: HashSet<(String, String, String)> = claimed
        .into_iter()
        .filter(|(_, ids)| ids.len() > 1)
        .map(|((a, p, v), _)| (a.to_string(), p.to_string(), v.to_string()))
        .collect();
    for f in findings.iter_mut() {
        let (id, package, version) = (f.id.clone(), f.package.clone(), f.installed_version.clone());
        let mut seen = HashSet::new();
        f.aliases.retain(|a| {
            !a.is_empty()
                && *a != id
                && seen.insert(a.clone())
                && !shared.contains(&(a.clone(), package.clone(), version.clone()))
        });
    }
}
