//! SBOMs, reduced to what a licence rule needs: each package's name,
//! version, purl and licence expression as the document states it.
//!
//! - CycloneDX 1.4–1.6 JSON (`https://cyclonedx.org/bom`, what `cosign
//!   attest --type cyclonedx` writes): `components[]`, nested ones too;
//!   a component's `licenses[]` entries are a `license` (its SPDX `id`, or
//!   a `name`) or an `expression`; several entries all apply (joined by
//!   `AND`). `metadata.component`, the subject, is not a package of it.
//! - SPDX 2.2/2.3 JSON (`https://spdx.dev/Document`, what `cosign attest
//!   --type spdxjson` writes): `packages[]` with `name`, `versionInfo`,
//!   `licenseConcluded` (else `licenseDeclared`; `NOASSERTION` and `NONE`
//!   state nothing) and an `externalRefs[]` entry of `referenceType` purl.
//!   A package the document describes (`documentDescribes`, or a
//!   `DESCRIBES` relationship of the document) is the subject (the image,
//!   the source tree): judged when it states a licence, left out when not.
//!
//! Read within a bound: at most [`MAX_PACKAGES`] packages (CycloneDX's
//! [`super::cyclonedx::MAX_COMPONENTS`]); a document with more is an
//! error, so a licence rule that needs it denies rather than passes.

use serde::de::{SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::bounded::{capped_opt, MAX_PER_FINDING};
use super::cyclonedx;

/// The SPDX document predicate type (`cosign attest --type spdxjson`).
pub const SPDX_DOCUMENT: &str = "https://spdx.dev/Document";
/// Most packages one SBOM may list.
pub const MAX_PACKAGES: usize = cyclonedx::MAX_COMPONENTS;

/// An SBOM's packages and their licences.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sbom {
    /// `CycloneDX` or `SPDX`.
    pub format: &'static str,
    pub packages: Vec<Package>,
}

/// One package of an SBOM.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Package {
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purl: Option<String>,
    /// Its licence as an SPDX expression text, as written; `None` when the
    /// SBOM states none (no licence, `NOASSERTION`, `NONE`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
}

impl Package {
    /// `name@version (purl)`, for messages.
    pub fn describe(&self) -> String {
        let mut s = self.name.clone();
        if s.is_empty() {
            s = "(unnamed package)".to_string();
        }
        if !self.version.is_empty() {
            s = format!("{s}@{}", self.version);
        }
        if let Some(p) = &self.purl {
            s = format!("{s} ({p})");
        }
        s
    }
}

/// Serialises a shared SBOM as the SBOM.
pub(crate) fn serialize_shared<S: serde::Serializer>(s: &std::sync::Arc<Sbom>, ser: S) -> Result<S::Ok, S::Error> {
    s.as_ref().serialize(ser)
}

/// Reads a CycloneDX SBOM (its components; a document with vulnerabilities
/// too).
pub fn cyclonedx(text: &str) -> Result<Sbom, String> {
    #[derive(Deserialize)]
    struct Document {
        #[serde(default, rename = "bomFormat")]
        bom_format: Option<String>,
        #[serde(default)]
        components: Option<cyclonedx::Components>,
    }
    let doc: Document = serde_json::from_str(text).map_err(|e| format!("CycloneDX document: {e}"))?;
    if !doc.bom_format.as_deref().is_some_and(cyclonedx::is_cyclonedx) {
        return Err("CycloneDX document: bomFormat is not \"CycloneDX\"".to_string());
    }
    let packages = doc
        .components
        .map(|c| c.0)
        .unwrap_or_default()
        .into_iter()
        .map(|c| Package {
            name: c.name,
            version: c.version,
            purl: (!c.purl.is_empty()).then_some(c.purl),
            license: c.license,
        })
        .collect();
    Ok(Sbom { format: "CycloneDX", packages })
}

#[derive(Deserialize)]
struct SpdxDocument {
    #[serde(default, rename = "spdxVersion")]
    spdx_version: Option<String>,
    #[serde(default, rename = "documentDescribes", deserialize_with = "capped_opt::<_, _, MAX_PER_FINDING>")]
    document_describes: Option<Vec<String>>,
    #[serde(default, deserialize_with = "capped_opt::<_, _, MAX_PACKAGES>")]
    packages: Option<Vec<SpdxPackage>>,
    #[serde(default)]
    relationships: Option<Described>,
}

#[derive(Deserialize)]
struct SpdxPackage {
    #[serde(default, rename = "SPDXID")]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default, rename = "versionInfo")]
    version: Option<String>,
    #[serde(default, rename = "licenseConcluded")]
    concluded: Option<String>,
    #[serde(default, rename = "licenseDeclared")]
    declared: Option<String>,
    #[serde(default, rename = "externalRefs", deserialize_with = "capped_opt::<_, _, MAX_PER_FINDING>")]
    external_refs: Option<Vec<ExternalRef>>,
}

#[derive(Deserialize)]
struct ExternalRef {
    #[serde(default, rename = "referenceType")]
    kind: Option<String>,
    #[serde(default, rename = "referenceLocator")]
    locator: Option<String>,
}

#[derive(Deserialize)]
struct Relationship {
    #[serde(default, rename = "spdxElementId")]
    from: Option<String>,
    #[serde(default, rename = "relationshipType")]
    kind: Option<String>,
    #[serde(default, rename = "relatedSpdxElement")]
    to: Option<String>,
}

/// What the document `DESCRIBES`, from a relationships list read one entry
/// at a time (a large SBOM has many; only these few are kept).
#[derive(Default)]
struct Described(Vec<String>);

impl<'de> Deserialize<'de> for Described {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Described;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of relationships")
            }
            fn visit_unit<E>(self) -> Result<Described, E> {
                Ok(Described::default())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Described, A::Error> {
                let mut out = Vec::new();
                while let Some(r) = seq.next_element::<Relationship>()? {
                    let of_document = r.from.as_deref() == Some("SPDXRef-DOCUMENT");
                    if of_document && r.kind.as_deref() == Some("DESCRIBES") && out.len() < MAX_PER_FINDING {
                        out.extend(r.to);
                    }
                }
                Ok(Described(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// A licence field that states something: not empty, `NOASSERTION` or `NONE`.
fn stated(field: Option<String>) -> Option<String> {
    field.map(|s| s.trim().to_string()).filter(|s| !s.is_empty() && s != "NOASSERTION" && s != "NONE")
}

/// Reads an SPDX 2.2/2.3 JSON document.
pub fn spdx(text: &str) -> Result<Sbom, String> {
    let doc: SpdxDocument = serde_json::from_str(text).map_err(|e| format!("SPDX document: {e}"))?;
    if !doc.spdx_version.as_deref().is_some_and(|v| v.starts_with("SPDX-2.")) {
        return Err(format!(
            "SPDX document: spdxVersion is {:?}, not SPDX-2.2 or SPDX-2.3",
            doc.spdx_version.unwrap_or_default()
        ));
    }
    let mut subjects = doc.document_describes.unwrap_or_default();
    subjects.extend(doc.relationships.unwrap_or_default().0);
    let mut packages = Vec::new();
    for p in doc.packages.unwrap_or_default() {
        let license = stated(p.concluded).or_else(|| stated(p.declared));
        let subject = p.id.as_ref().is_some_and(|id| subjects.contains(id));
        if subject && license.is_none() {
            continue;
        }
        let purl = p
            .external_refs
            .unwrap_or_default()
            .into_iter()
            .find(|r| r.kind.as_deref() == Some("purl"))
            .and_then(|r| r.locator);
        packages.push(Package {
            name: p.name.unwrap_or_default(),
            version: p.version.unwrap_or_default(),
            purl,
            license,
        });
    }
    Ok(Sbom { format: "SPDX", packages })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!("{}/tests/fixtures/sbom/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    fn rows(s: &Sbom) -> Vec<(String, Option<String>, Option<String>)> {
        s.packages.iter().map(|p| (p.describe(), p.purl.clone(), p.license.clone())).collect()
    }

    /// CycloneDX's own example BOM (the specification's test resources):
    /// an SPDX id, a nested component, an expression with a deprecated id,
    /// a licence known only by name, and a component stating none.
    #[test]
    fn cyclonedx_components_and_their_licences() {
        let s = cyclonedx(&fixture("cyclonedx-valid-bom-1.6.json")).unwrap();
        assert_eq!(s.format, "CycloneDX");
        let got = rows(&s);
        let want = |name: &str, lic: Option<&str>| {
            assert!(
                got.iter().any(|(d, _, l)| d.starts_with(name) && l.as_deref() == lic),
                "{name} {lic:?} in {got:#?}"
            );
        };
        want("tomcat-catalina@9.0.14 (pkg:maven/com.acme/tomcat-catalina@9.0.14?packaging=jar)", Some("Apache-2.0"));
        want("mylibrary@1.0.0", Some("EPL-2.0 OR GPL-2.0-with-classpath-exception"));
        want("myframework@1.0.0", Some("Some random license"));
        let s = cyclonedx(&fixture("cyclonedx-valid-license-expression-1.6.json")).unwrap();
        assert_eq!(
            rows(&s),
            [(
                "tomcat-catalina@9.0.14 (pkg:maven/com.acme/tomcat-catalina@9.0.14?packaging=jar)".into(),
                Some("pkg:maven/com.acme/tomcat-catalina@9.0.14?packaging=jar".into()),
                Some("EPL-2.0 OR GPL-2.0 WITH Classpath-exception-2.0".into())
            )]
        );
    }

    #[test]
    fn several_cyclonedx_licences_all_apply() {
        let doc = r#"{"bomFormat": "CycloneDX", "components": [
            {"name": "a", "licenses": [{"license": {"id": "MIT"}}, {"expression": "Apache-2.0 OR BSD-3-Clause"}]},
            {"name": "b", "licenses": []},
            {"name": "c"},
            {"name": "d", "licenses": [{"license": {"name": "Custom Licence"}}]}]}"#;
        let s = cyclonedx(doc).unwrap();
        let lic: Vec<Option<&str>> = s.packages.iter().map(|p| p.license.as_deref()).collect();
        assert_eq!(lic, [Some("MIT AND (Apache-2.0 OR BSD-3-Clause)"), None, None, Some("Custom Licence")]);
    }

    /// The SPDX project's example 11 (a k8s bom SBOM): concluded licences,
    /// purls, and the described package, which states one, kept.
    #[test]
    fn spdx_packages_and_their_licences() {
        let s = spdx(&fixture("spdx-example11-sbom.spdx.json")).unwrap();
        assert_eq!(s.format, "SPDX");
        let got = rows(&s);
        assert!(got.contains(&(
            "hyper@0.14 (pkg:cargo/hyper@0.14)".into(),
            Some("pkg:cargo/hyper@0.14".into()),
            Some("MIT".into())
        )));
        assert!(got
            .iter()
            .any(|(d, _, l)| d.starts_with("pretty_env_logger") && l.as_deref() == Some("MIT OR Apache-2.0")));
        assert!(got.iter().any(|(d, _, l)| d.starts_with("hello-server-src") && l.as_deref() == Some("Apache-2.0")));
    }

    #[test]
    fn spdx_noassertion_is_no_licence_and_an_undeclared_subject_is_left_out() {
        let doc = r#"{"spdxVersion": "SPDX-2.2", "packages": [
            {"SPDXID": "SPDXRef-image", "name": "image", "licenseConcluded": "NOASSERTION"},
            {"SPDXID": "SPDXRef-a", "name": "a", "licenseConcluded": "NOASSERTION", "licenseDeclared": "GPL-3.0-only"},
            {"SPDXID": "SPDXRef-b", "name": "b", "licenseConcluded": "NONE", "licenseDeclared": "NOASSERTION"},
            {"SPDXID": "SPDXRef-c", "name": "c"}],
            "relationships": [{"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES", "relatedSpdxElement": "SPDXRef-image"},
                              {"spdxElementId": "SPDXRef-image", "relationshipType": "CONTAINS", "relatedSpdxElement": "SPDXRef-a"}]}"#;
        let s = spdx(doc).unwrap();
        let got: Vec<(&str, Option<&str>)> =
            s.packages.iter().map(|p| (p.name.as_str(), p.license.as_deref())).collect();
        assert_eq!(got, [("a", Some("GPL-3.0-only")), ("b", None), ("c", None)]);
        assert!(spdx(r#"{"spdxVersion": "SPDX-3.0"}"#).unwrap_err().contains("not SPDX-2.2 or SPDX-2.3"));
        assert!(spdx(r#"{"packages": []}"#).is_err());
    }

    /// Past the bound, an error (which denies), not a partial list.
    #[test]
    fn an_sbom_past_the_bound_is_an_error() {
        let many = format!(
            r#"{{"bomFormat": "CycloneDX", "components": [{}]}}"#,
            vec![r#"{"name":"x"}"#; MAX_PACKAGES + 1].join(",")
        );
        assert!(cyclonedx(&many).unwrap_err().contains("more than 100000 components"));
        let many =
            format!(r#"{{"spdxVersion": "SPDX-2.3", "packages": [{}]}}"#, vec!["{}"; MAX_PACKAGES + 1].join(","));
        assert!(spdx(&many).unwrap_err().contains("more than 100000 entries"));
    }
}
