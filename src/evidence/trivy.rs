//! Trivy JSON (`trivy image --format json`, schema version 2).

use serde::Deserialize;

use super::{parse_time, Finding, Severity, VulnReport};

pub(super) fn looks_like(v: &serde_json::Value) -> bool {
    v.get("SchemaVersion").is_some() || v.get("Results").is_some()
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Report {
    #[serde(default)]
    results: Option<Vec<Result>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Result {
    #[serde(default)]
    target: String,
    #[serde(default)]
    vulnerabilities: Option<Vec<Vuln>>,
}

#[derive(Deserialize)]
struct Vuln {
    #[serde(rename = "VulnerabilityID")]
    id: String,
    #[serde(rename = "VendorIDs", default)]
    vendor_ids: Vec<String>,
    #[serde(rename = "PkgName", default)]
    pkg_name: String,
    #[serde(rename = "InstalledVersion", default)]
    installed_version: String,
    #[serde(rename = "FixedVersion", default)]
    fixed_version: String,
    #[serde(rename = "Severity", default)]
    severity: String,
    #[serde(rename = "Status", default)]
    status: String,
    #[serde(rename = "PublishedDate", default)]
    published_date: Option<String>,
    #[serde(rename = "CVSS", default)]
    cvss: Option<std::collections::BTreeMap<String, Cvss>>,
}

#[derive(Deserialize)]
struct Cvss {
    #[serde(rename = "V3Score", default)]
    v3_score: Option<f64>,
}

pub(super) fn parse(v: &serde_json::Value) -> std::result::Result<VulnReport, String> {
    let r: Report = serde_json::from_value(v.clone()).map_err(|e| format!("Trivy report: {e}"))?;
    let mut findings = Vec::new();
    for res in r.results.unwrap_or_default() {
        for vu in res.vulnerabilities.unwrap_or_default() {
            let fixed_versions: Vec<String> =
                vu.fixed_version.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
            let cvss =
                vu.cvss.as_ref().and_then(|m| m.get("nvd").or_else(|| m.values().next())).and_then(|c| c.v3_score);
            findings.push(Finding {
                id: vu.id,
                aliases: vu.vendor_ids,
                severity: Severity::from_name_or_cvss(&vu.severity, cvss),
                package: vu.pkg_name,
                installed_version: vu.installed_version,
                fix_state: super::FixState::parse(&vu.status, !fixed_versions.is_empty()),
                fixed_versions,
                published: parse_time(vu.published_date.as_deref()).unwrap_or(None),
                cvss,
                target: res.target.clone(),
            });
        }
    }
    Ok(VulnReport { scanner: "trivy".to_string(), finished_on: None, findings })
}
