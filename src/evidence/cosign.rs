//! The cosign vuln predicate (`cosign attest --type vuln`): a scanner's
//! report in `scanner.result`, the scan time in `metadata.scanFinishedOn`.

use serde::Deserialize;

use super::formats::scanner_report;
use super::{parse_time, VulnReport};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CosignVulnPredicate<'a> {
    #[serde(borrow)]
    scanner: CosignScanner<'a>,
    #[serde(default)]
    metadata: CosignScanMetadata,
}

#[derive(Deserialize)]
struct CosignScanner<'a> {
    #[serde(default)]
    uri: String,
    #[serde(borrow, default)]
    result: Option<&'a serde_json::value::RawValue>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct CosignScanMetadata {
    #[serde(default)]
    scan_finished_on: Option<String>,
}

/// The cosign vuln predicate (`scanner.result` holds the scanner's report),
/// read from its JSON text.
pub(super) fn parse(text: &str) -> Result<VulnReport, String> {
    let p: CosignVulnPredicate<'_> = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let finished_on = parse_time(p.metadata.scan_finished_on.as_deref())?;
    let mut report = scanner_report(p.scanner.result.map_or("null", |r| r.get()))?;
    // The predicate's time wins; without one, the report's own (Grype's
    // descriptor.timestamp, Trivy's CreatedAt) stands.
    if finished_on.is_some() {
        report.finished_on = finished_on;
    }
    if report.scanner.is_empty() {
        report.scanner = p.scanner.uri;
    }
    Ok(report.dedup())
}
