//! The vulnerability report formats Portcullis reads, in two tables: the
//! scanners' own report formats, told apart by their top-level keys, and
//! the attestation predicates that carry a scan, by predicate type. Each
//! row names the format, says how it is recognised, and parses it; adding a
//! format is a row here and, when it needs one, a parser module beside it.

use serde::Deserialize;

use super::{bounded, cosign, cyclonedx, grype, intoto, sarif, trivy, VulnReport};
use super::{COSIGN_VULN_V1, CYCLONEDX_BOM, INTOTO_VULNS, INTOTO_VULNS_V01, INTOTO_VULNS_V02};

/// A scanner's own report format.
pub(super) struct ScannerFormat {
    /// Its name, for messages (`Trivy JSON`).
    pub(super) name: &'static str,
    /// Whether a JSON object with these top-level keys is a report of it.
    pub(super) detect: fn(&Sniff<'_>) -> bool,
    /// Reads a report from its JSON text.
    pub(super) parse: fn(&str) -> Result<VulnReport, String>,
}

/// The scanner report formats, in the order they are tried.
pub(super) const SCANNERS: &[ScannerFormat] = &[
    // `SchemaVersion` or `Results`.
    ScannerFormat {
        name: "Trivy JSON",
        detect: |s| s.schema_version.is_some() || s.results.is_some(),
        parse: |text| trivy::parse(&mut serde_json::Deserializer::from_str(text)),
    },
    // A `matches` list and a `descriptor` object or a `source`.
    ScannerFormat {
        name: "Grype JSON",
        detect: |s| {
            s.matches == Some(bounded::Kind::Array)
                && (s.descriptor == Some(bounded::Kind::Object) || s.source.is_some())
        },
        parse: |text| grype::parse(&mut serde_json::Deserializer::from_str(text)),
    },
    // A `runs` list and a 2.1 `version` or a SARIF `$schema`.
    ScannerFormat {
        name: "SARIF 2.1.0 (Trivy, Grype)",
        detect: |s| {
            let sarif = bounded::Kind::str(&s.version).starts_with("2.1")
                || bounded::Kind::str(&s.schema).to_ascii_lowercase().contains("sarif");
            s.runs == Some(bounded::Kind::Array) && sarif
        },
        parse: sarif::parse,
    },
    // `bomFormat: CycloneDX` and a `vulnerabilities` list (an SBOM has none).
    ScannerFormat {
        name: "CycloneDX 1.4-1.6 (Grype, Trivy)",
        detect: |s| {
            cyclonedx::is_cyclonedx(bounded::Kind::str(&s.bom_format))
                && s.vulnerabilities == Some(bounded::Kind::Array)
        },
        parse: |text| cyclonedx::parse(&mut serde_json::Deserializer::from_str(text)),
    },
];

/// An attestation predicate that carries a vulnerability scan.
pub(super) struct PredicateFormat {
    /// Its name, for messages (`cosign vuln predicate`).
    pub(super) name: &'static str,
    /// The predicate types it is read for.
    pub(super) types: &'static [&'static str],
    /// Whether a bare predicate (a file without its statement) is one, by
    /// its `scanner` object's JSON text; the first that says so reads it.
    pub(super) bare: fn(scanner: &str) -> bool,
    /// Whether a predicate of these types carries a scan, by its JSON text
    /// (a CycloneDX SBOM does not: it is read as another predicate).
    pub(super) scan: fn(&str) -> bool,
    /// Reads the predicate from its JSON text.
    pub(super) parse: fn(&str) -> Result<VulnReport, String>,
}

/// The predicates that carry a scan.
pub(super) const PREDICATES: &[PredicateFormat] = &[
    // Wraps a scanner report in `scanner.result`.
    PredicateFormat {
        name: "cosign vuln predicate",
        types: &[COSIGN_VULN_V1],
        bare: |scanner| {
            #[derive(Deserialize)]
            struct Result<'a> {
                #[serde(borrow, default)]
                result: Option<&'a serde_json::value::RawValue>,
            }
            let inner: Option<Result<'_>> = serde_json::from_str(scanner).ok();
            inner.and_then(|r| r.result).is_some_and(|r| scanner_format(r.get()).is_some())
        },
        scan: |_| true,
        parse: cosign::parse,
    },
    // Lists the vulnerabilities in `scanner.result` (or holds a report there).
    PredicateFormat {
        name: "in-toto vulns predicate",
        types: &[INTOTO_VULNS, INTOTO_VULNS_V01, INTOTO_VULNS_V02],
        bare: |_| true,
        scan: |_| true,
        parse: intoto::parse_text,
    },
    // A CycloneDX document that lists vulnerabilities (`cosign attest --type
    // cyclonedx`); one with an empty list may be an SBOM (Trivy writes the
    // list into every document), so it is not a scan; a bare one is a
    // scanner report, told by its keys.
    PredicateFormat {
        name: "CycloneDX predicate",
        types: &[CYCLONEDX_BOM],
        bare: |_| false,
        scan: cyclonedx::lists_vulnerabilities,
        parse: |text| cyclonedx::parse(&mut serde_json::Deserializer::from_str(text)).map(VulnReport::dedup),
    },
];

/// The predicate format read for a predicate type, if it carries a scan.
pub(super) fn predicate_format(predicate_type: &str) -> Option<&'static PredicateFormat> {
    PREDICATES.iter().find(|f| f.types.contains(&predicate_type))
}

/// The scanner report format of a JSON text, if it is one Portcullis reads.
pub(super) fn scanner_format(text: &str) -> Option<&'static ScannerFormat> {
    let sniff = Sniff::of(text)?;
    SCANNERS.iter().find(|f| (f.detect)(&sniff))
}

/// `Trivy JSON, Grype JSON, …`: the scanner report formats, for messages.
pub(super) fn scanners_understood() -> String {
    SCANNERS.iter().map(|f| f.name).collect::<Vec<_>>().join(", ")
}

/// The report formats Portcullis reads, for messages: the scanners' and
/// the predicates' names, in the order of their tables (a test keeps it so).
pub const UNDERSTOOD: &str = "understood: Trivy JSON, Grype JSON, SARIF 2.1.0 (Trivy, Grype), \
                              CycloneDX 1.4-1.6 (Grype, Trivy), cosign vuln predicate, in-toto vulns predicate, \
                              CycloneDX predicate";

/// The top-level keys that tell the report formats apart (their content
/// skipped), and the envelope and statement fields `parse_report` reads.
#[derive(Deserialize, Default)]
pub(super) struct Sniff<'a> {
    #[serde(default, deserialize_with = "present", rename = "SchemaVersion")]
    schema_version: Option<bounded::Kind>,
    #[serde(default, deserialize_with = "present", rename = "Results")]
    results: Option<bounded::Kind>,
    #[serde(default, deserialize_with = "present")]
    matches: Option<bounded::Kind>,
    #[serde(default, deserialize_with = "present")]
    descriptor: Option<bounded::Kind>,
    #[serde(default, deserialize_with = "present")]
    source: Option<bounded::Kind>,
    #[serde(default, deserialize_with = "present")]
    runs: Option<bounded::Kind>,
    #[serde(default, deserialize_with = "present")]
    version: Option<bounded::Kind>,
    #[serde(default, deserialize_with = "present", rename = "$schema")]
    schema: Option<bounded::Kind>,
    #[serde(default, deserialize_with = "present", rename = "bomFormat")]
    bom_format: Option<bounded::Kind>,
    #[serde(default, deserialize_with = "present")]
    vulnerabilities: Option<bounded::Kind>,
    #[serde(borrow, default)]
    payload: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, deserialize_with = "present", rename = "payloadType")]
    payload_type: Option<bounded::Kind>,
    #[serde(default, deserialize_with = "present", rename = "predicateType")]
    predicate_type: Option<bounded::Kind>,
    #[serde(borrow, default)]
    predicate: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow, default)]
    scanner: Option<&'a serde_json::value::RawValue>,
}

/// A field present, whatever its value (`null` too).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bounded::Kind>, D::Error> {
    bounded::Kind::deserialize(d).map(Some)
}

impl Sniff<'_> {
    /// The keys of `text`, when it is a JSON object.
    fn of(text: &str) -> Option<Sniff<'_>> {
        if text.trim_start().starts_with('{') {
            serde_json::from_str(text).ok()
        } else {
            None
        }
    }
}

/// Detects the scanner format of a report's JSON text (Trivy JSON, Grype
/// JSON, SARIF 2.1.0 from Trivy, Grype or another tool) and normalises it.
pub fn scanner_report(text: &str) -> Result<VulnReport, String> {
    let unknown = || format!("scanner.result is not a report format Portcullis reads ({UNDERSTOOD})");
    let format = scanner_format(text).ok_or_else(unknown)?;
    (format.parse)(text)
}

/// Why a report file cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("DSSE envelope payload is not {0}")]
    Envelope(String),
    #[error("the statement's predicate type {0} is not a vulnerability report ({UNDERSTOOD})")]
    NotVulnerabilities(String),
    #[error("not a vulnerability report Portcullis reads ({UNDERSTOOD})")]
    Unknown,
    /// A format it reads, but this report is not valid in it.
    #[error("{0}")]
    Invalid(String),
}

/// Reads a vulnerability report file, whatever its format: a bare Trivy
/// JSON, Grype JSON or SARIF report; a cosign vuln or in-toto vulns
/// predicate; or an in-toto Statement (`_type`, `predicateType`,
/// `predicate`) holding either predicate, bare or in a DSSE envelope. The
/// result is deduplicated.
pub fn parse_report(bytes: &[u8]) -> Result<VulnReport, ReportError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ReportError::NotJson("the input is empty".to_string()));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| ReportError::NotJson(e.to_string()))?;
    serde_json::from_str::<serde::de::IgnoredAny>(text).map_err(|e| ReportError::NotJson(e.to_string()))?;
    let top = Sniff::of(text).unwrap_or_default();
    // A DSSE envelope as stored in a registry: read the Statement inside
    // (unverified: this is for looking, not for deciding).
    if let (Some(payload), Some(_)) = (&top.payload, &top.payload_type) {
        use base64::Engine as _;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(payload.as_bytes())
            .map_err(|e| ReportError::Envelope(format!("base64: {e}")))?;
        let inner = std::str::from_utf8(&raw).map_err(|e| ReportError::Envelope(format!("JSON: {e}")))?;
        serde_json::from_str::<serde::de::IgnoredAny>(inner)
            .map_err(|e| ReportError::Envelope(format!("JSON: {e}")))?;
        return report_in(inner, Sniff::of(inner).unwrap_or_default());
    }
    report_in(text, top)
}

fn report_in(text: &str, top: Sniff<'_>) -> Result<VulnReport, ReportError> {
    let report =
        if let (Some(bounded::Kind::Str(predicate_type)), Some(predicate)) = (&top.predicate_type, top.predicate) {
            let scan = predicate_format(predicate_type).filter(|f| (f.scan)(predicate.get()));
            let Some(format) = scan else {
                return Err(ReportError::NotVulnerabilities(predicate_type.to_string()));
            };
            let read = (format.parse)(predicate.get());
            read.map_err(|e| ReportError::Invalid(format!("{predicate_type} predicate: {e}")))?
        } else if SCANNERS.iter().any(|f| (f.detect)(&top)) {
            scanner_report(text).map_err(ReportError::Invalid)?
        } else if let Some(scanner) = top.scanner.filter(|s| s.get().trim_start().starts_with('{')) {
            // A bare predicate: cosign's wraps a scanner report in
            // scanner.result, in-toto's lists the vulnerabilities there.
            let format = PREDICATES.iter().find(|f| (f.bare)(scanner.get())).ok_or(ReportError::Unknown)?;
            (format.parse)(text).map_err(|e| ReportError::Invalid(format!("{}: {e}", format.name)))?
        } else {
            return Err(ReportError::Unknown);
        };
    Ok(report.dedup())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::VULN_TYPES;

    #[test]
    fn the_messages_name_every_format_in_the_tables() {
        let scanners: Vec<&str> = SCANNERS.iter().map(|f| f.name).collect();
        let predicates: Vec<&str> = PREDICATES.iter().map(|f| f.name).collect();
        assert_eq!(UNDERSTOOD, format!("understood: {}, {}", scanners.join(", "), predicates.join(", ")));
        assert_eq!(
            scanners_understood(),
            "Trivy JSON, Grype JSON, SARIF 2.1.0 (Trivy, Grype), CycloneDX 1.4-1.6 (Grype, Trivy)"
        );
    }

    #[test]
    fn the_vulnerability_predicate_types_are_the_tables() {
        let types: Vec<&str> = PREDICATES.iter().flat_map(|f| f.types.iter().copied()).collect();
        assert_eq!(types, VULN_TYPES);
        // (predicate type, format read for it)
        let rows = [
            (COSIGN_VULN_V1, Some("cosign vuln predicate")),
            (INTOTO_VULNS, Some("in-toto vulns predicate")),
            (INTOTO_VULNS_V01, Some("in-toto vulns predicate")),
            (INTOTO_VULNS_V02, Some("in-toto vulns predicate")),
            ("https://in-toto.io/attestation/vulns/v0.3", None),
            (crate::evidence::TEST_RESULT_V01, None),
            (CYCLONEDX_BOM, Some("CycloneDX predicate")),
        ];
        for (t, want) in rows {
            assert_eq!(predicate_format(t).map(|f| f.name), want, "{t}");
        }
    }

    #[test]
    fn each_scanner_format_is_told_apart_by_its_keys() {
        // (top-level JSON, format detected)
        let rows = [
            (r#"{"SchemaVersion": 2}"#, Some("Trivy JSON")),
            (r#"{"Results": []}"#, Some("Trivy JSON")),
            (r#"{"matches": [], "descriptor": {}}"#, Some("Grype JSON")),
            (r#"{"matches": [], "source": null}"#, Some("Grype JSON")),
            (r#"{"matches": {}, "descriptor": {}}"#, None),
            (r#"{"matches": []}"#, None),
            (r#"{"runs": [], "version": "2.1.0"}"#, Some("SARIF 2.1.0 (Trivy, Grype)")),
            (
                r#"{"runs": [], "$schema": "https://json.schemastore.org/sarif-2.1.0.json"}"#,
                Some("SARIF 2.1.0 (Trivy, Grype)"),
            ),
            (r#"{"runs": [], "version": "2.0.0"}"#, None),
            (r#"{"runs": {}, "version": "2.1.0"}"#, None),
            // Trivy's keys win over the others, as they are tried first.
            (r#"{"SchemaVersion": 2, "matches": [], "descriptor": {}}"#, Some("Trivy JSON")),
            (r#"{"bomFormat": "CycloneDX", "vulnerabilities": []}"#, Some("CycloneDX 1.4-1.6 (Grype, Trivy)")),
            // An SBOM: no vulnerabilities, no scan.
            (r#"{"bomFormat": "CycloneDX", "components": []}"#, None),
            (r#"{"bomFormat": "CycloneDX", "vulnerabilities": {}}"#, None),
            (r#"{"bomFormat": "SPDX", "vulnerabilities": []}"#, None),
            (r#"[{"SchemaVersion": 2}]"#, None),
            ("not json", None),
        ];
        for (text, want) in rows {
            assert_eq!(scanner_format(text).map(|f| f.name), want, "{text}");
        }
    }
}
