//! SARIF 2.1.0 vulnerability reports: Trivy's (`--format sarif`), Grype's
//! (`-o sarif`), and, as well as their text allows, other producers'.
//!
//! Which tool wrote a run is read from `runs[].tool.driver.name`. The two
//! differ (cf. trivy `pkg/report/sarif.go`, grype `grype/presenter/sarif`):
//!
//! - Trivy: one rule per vulnerability id (the first package found with it
//!   fills the rule's help), one result per package. The result's
//!   `message.text` has `Package:`, `Installed Version:`, `Severity:` and
//!   `Fixed Version:` lines. Rules carry `properties.tags`
//!   (`vulnerability`, `security`, severity) and `security-severity`: the
//!   CVSS v3 score, or 9.5/8.0/5.5/2.0 by severity, or 0.0 when unknown.
//!   Misconfiguration, secret and license results share the run and are
//!   skipped.
//! - Grype: one rule per vulnerability and package name, `<id>-<package>`,
//!   whose `help.text` has `Vulnerability`, `Severity:`, `Package:`,
//!   `Version:` and `Fix Version:` lines; the result's message names the
//!   package and version (`… package: NAME, version VERSION was found …`).
//!   Grype writes `critical`, `high` or `medium`, and `low` for anything
//!   else (negligible, unknown, or no metadata); its `security-severity` is
//!   the best CVSS score, else 9.0/7.0/4.0/1.0 by severity, else 0.0. Its
//!   label counts, as in its JSON (a `low` with a CVSS of 7.5 is low, not
//!   high), and 0.0 means unknown.
//!
//! A report is read into typed structs that take only the fields below and
//! skip everything else as it is read; a field of an unexpected JSON type is
//! skipped too (SARIF producers vary), so nothing is built of what is not
//! used. At most [`MAX_FINDINGS`] results and rules per run.
//!
//! SARIF carries no aliases (a GHSA's CVE), no fix state beyond the fixed
//! version, and no publication dates; `cvss` is the rule's
//! `security-severity`, which may be derived from the severity name.

use std::collections::HashMap;

use serde::Deserialize;

use super::bounded::{LooseList, LooseObj, LooseScore, LooseStr, LooseU64, MAX_FINDINGS};
use super::{parse_time, Finding, FixState, Severity, VulnReport};

/// Most runs, and most entries of the short lists (tags, locations,
/// invocations) read.
const MAX_SHORT: usize = 4096;

#[derive(Deserialize, Default)]
struct Log {
    #[serde(default)]
    runs: LooseList<LooseObj<Run>, MAX_SHORT>,
}

#[derive(Deserialize, Default)]
struct Run {
    #[serde(default)]
    tool: LooseObj<Tool>,
    #[serde(default)]
    invocations: LooseList<LooseObj<Invocation>, MAX_SHORT>,
    #[serde(default)]
    results: LooseList<LooseObj<SarifResult>, MAX_FINDINGS>,
}

#[derive(Deserialize, Default)]
struct Tool {
    #[serde(default)]
    driver: LooseObj<Driver>,
}

#[derive(Deserialize, Default)]
struct Driver {
    #[serde(default)]
    name: LooseStr,
    #[serde(default)]
    rules: LooseList<LooseObj<Rule>, MAX_FINDINGS>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Invocation {
    #[serde(default)]
    end_time_utc: LooseStr,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Rule {
    #[serde(default)]
    id: LooseStr,
    #[serde(default)]
    help: LooseObj<Text>,
    #[serde(default)]
    full_description: LooseObj<Text>,
    #[serde(default)]
    properties: LooseObj<Properties>,
}

#[derive(Deserialize, Default)]
struct Text {
    #[serde(default)]
    text: LooseStr,
}

#[derive(Deserialize, Default)]
struct Properties {
    #[serde(default)]
    tags: LooseList<LooseStr, MAX_SHORT>,
    #[serde(default, rename = "security-severity")]
    security_severity: LooseScore,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct SarifResult {
    #[serde(default)]
    kind: LooseStr,
    #[serde(default)]
    rule_id: LooseStr,
    #[serde(default)]
    rule: LooseObj<RuleRef>,
    #[serde(default)]
    rule_index: LooseU64,
    #[serde(default)]
    message: LooseObj<Text>,
    #[serde(default)]
    locations: LooseList<LooseObj<Location>, MAX_SHORT>,
    #[serde(default)]
    properties: LooseObj<Properties>,
}

#[derive(Deserialize, Default)]
struct RuleRef {
    #[serde(default)]
    id: LooseStr,
    #[serde(default)]
    index: LooseU64,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Location {
    #[serde(default)]
    physical_location: LooseObj<Physical>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Physical {
    #[serde(default)]
    artifact_location: LooseObj<Artifact>,
}

#[derive(Deserialize, Default)]
struct Artifact {
    #[serde(default)]
    uri: LooseStr,
}

/// The text of a loose string, or "".
fn text(s: &LooseStr) -> &str {
    s.0.as_deref().unwrap_or_default()
}

/// The text of an optional `{text: …}` object, or "".
fn text_of(t: &LooseObj<Text>) -> &str {
    t.0.as_ref().map(|t| text(&t.text)).unwrap_or_default()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Producer {
    Trivy,
    Grype,
    Other,
}

/// `Key: value` from a line of text; the first line that has the key.
fn line_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|l| l.trim_start().strip_prefix(key)?.strip_prefix(':').map(str::trim))
}

/// `X` from a `Vulnerability X` line (no colon: both tools write it so).
fn vulnerability_line(text: &str) -> Option<&str> {
    text.lines().find_map(|l| l.trim().strip_prefix("Vulnerability ")).map(str::trim).filter(|s| !s.is_empty())
}

/// The first of `keys` found in any of `texts`, texts in order.
fn first_value<'a>(texts: &[&'a str], keys: &[&str]) -> Option<&'a str> {
    texts.iter().find_map(|t| keys.iter().find_map(|k| line_value(t, k)))
}

fn split_versions(s: &str) -> Vec<String> {
    s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
}

/// `security-severity` as a score; 0.0 (what Trivy and Grype write when
/// they know no severity) and anything unparseable count as absent.
fn security_severity(props: &LooseObj<Properties>) -> Option<f64> {
    let score = props.0.as_ref()?.security_severity.0?;
    (score.is_finite() && score > 0.0).then_some(score)
}

fn tags(rule: Option<&Rule>) -> Vec<&str> {
    rule.and_then(|r| r.properties.0.as_ref())
        .map(|p| p.tags.0.iter().filter_map(|t| t.0.as_deref()).collect())
        .unwrap_or_default()
}

fn first_location(result: &SarifResult) -> String {
    result
        .locations
        .0
        .iter()
        .filter_map(|l| l.0.as_ref()?.physical_location.0.as_ref()?.artifact_location.0.as_ref()?.uri.0.as_deref())
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Reads a SARIF report from its JSON text.
pub(super) fn parse(json: &str) -> Result<VulnReport, String> {
    let log: Log = serde_json::from_str(json).map_err(|e| format!("SARIF report: {e}"))?;
    let mut scanners: Vec<String> = Vec::new();
    let mut finished_on = None;
    let mut findings = Vec::new();
    for (i, run) in log.runs.0.iter().enumerate() {
        let Some(run) = &run.0 else { continue };
        let driver = run.tool.0.as_ref().and_then(|t| t.driver.0.as_ref());
        let name = driver.map(|d| text(&d.name)).unwrap_or_default().trim();
        let producer = match name.to_ascii_lowercase() {
            d if d.contains("trivy") => Producer::Trivy,
            d if d.contains("grype") => Producer::Grype,
            _ => Producer::Other,
        };
        let scanner = match producer {
            Producer::Trivy => "trivy",
            Producer::Grype => "grype",
            Producer::Other if name.is_empty() => "sarif",
            Producer::Other => name,
        };
        if !scanners.iter().any(|s| s == scanner) {
            scanners.push(scanner.to_string());
        }
        // SARIF's own scan time, when the producer records the invocation.
        for inv in run.invocations.0.iter().filter_map(|i| i.0.as_ref()) {
            let end = inv.end_time_utc.0.as_deref();
            if let Some(t) = parse_time(end).map_err(|e| format!("SARIF runs[{i}] endTimeUtc: {e}"))? {
                finished_on = finished_on.max(Some(t));
            }
        }
        let rules: Vec<Option<&Rule>> =
            driver.map(|d| d.rules.0.iter().map(|r| r.0.as_ref()).collect()).unwrap_or_default();
        let by_id: HashMap<&str, &Rule> =
            rules.iter().flatten().filter_map(|r| Some((r.id.0.as_deref()?, *r))).rev().collect();
        for result in run.results.0.iter().filter_map(|r| r.0.as_ref()) {
            if matches!(text(&result.kind), "pass" | "notApplicable" | "informational") {
                continue;
            }
            let rule_ref = result.rule.0.as_ref();
            let named = result.rule_id.0.as_deref().or_else(|| rule_ref?.id.0.as_deref());
            let rule = named.and_then(|id| by_id.get(id).copied()).or_else(|| {
                let idx = result.rule_index.0.or_else(|| rule_ref?.index.0)?;
                rules.get(usize::try_from(idx).ok()?).copied().flatten()
            });
            let rule_id = named.or_else(|| rule?.id.0.as_deref()).unwrap_or_default();
            let finding = match producer {
                Producer::Trivy => trivy_result(result, rule, rule_id),
                Producer::Grype => grype_result(result, rule, rule_id),
                Producer::Other => other_result(result, rule, rule_id),
            };
            findings.extend(finding);
        }
    }
    let scanner = if scanners.is_empty() { "sarif".to_string() } else { scanners.join(", ") };
    Ok(VulnReport { scanner, finished_on, findings, vex: None, sbom: None })
}

struct Texts<'a> {
    message: &'a str,
    help: &'a str,
    full: &'a str,
}

impl<'a> Texts<'a> {
    fn of(result: &'a SarifResult, rule: Option<&'a Rule>) -> Self {
        Texts {
            message: text_of(&result.message),
            help: rule.map(|r| text_of(&r.help)).unwrap_or_default(),
            full: rule.map(|r| text_of(&r.full_description)).unwrap_or_default(),
        }
    }
}

fn trivy_result(result: &SarifResult, rule: Option<&Rule>, rule_id: &str) -> Option<Finding> {
    let t = Texts::of(result, rule);
    let tags = tags(rule);
    let is_vuln = tags.contains(&"vulnerability")
        || (line_value(t.message, "Package").is_some() && line_value(t.message, "Installed Version").is_some());
    if !is_vuln || tags.iter().any(|t| matches!(*t, "misconfiguration" | "secret" | "license")) {
        return None;
    }
    // The result's message is per package; the rule's help text belongs to
    // the first package Trivy found with this vulnerability.
    let id = Some(rule_id).filter(|s| !s.is_empty()).or_else(|| vulnerability_line(t.message)).unwrap_or_default();
    if id.is_empty() {
        return None;
    }
    let fixed_versions = split_versions(first_value(&[t.message, t.help], &["Fixed Version"]).unwrap_or_default());
    let name = first_value(&[t.message, t.help], &["Severity"])
        .or_else(|| tags.iter().copied().find(|t| Severity::parse(t) != Severity::Unknown))
        .unwrap_or_default();
    let cvss = rule.and_then(|r| security_severity(&r.properties));
    Some(Finding {
        id: id.to_string(),
        aliases: Vec::new(),
        severity: Severity::from_name_or_cvss(name, cvss),
        package: first_value(&[t.message, t.help], &["Package"]).unwrap_or_default().to_string(),
        installed_version: line_value(t.message, "Installed Version").unwrap_or_default().to_string(),
        fix_state: FixState::parse("", !fixed_versions.is_empty()),
        fixed_versions,
        published: None,
        cvss,
        target: first_location(result),
        purl: None,
    })
}

/// `NAME` and `VERSION` from Grype's `… package: NAME, version VERSION was found …`.
fn grype_message(message: &str) -> Option<(&str, &str)> {
    let (_, rest) = message.split_once(" package: ")?;
    let (name, rest) = rest.split_once(", version ")?;
    let version = rest.split_once(" was found").map_or(rest, |(v, _)| v);
    Some((name.trim(), version.trim()))
}

fn grype_result(result: &SarifResult, rule: Option<&Rule>, rule_id: &str) -> Option<Finding> {
    let t = Texts::of(result, rule);
    let from_message = grype_message(t.message);
    let package = from_message.map(|(n, _)| n).or_else(|| line_value(t.help, "Package")).unwrap_or_default();
    // The rule is per vulnerability and package name: a second version of
    // the package shares it, so the version comes from the result.
    let version = from_message.map(|(_, v)| v).or_else(|| line_value(t.help, "Version")).unwrap_or_default();
    let id = vulnerability_line(t.help)
        .or_else(|| rule_id.strip_suffix(package).and_then(|s| s.strip_suffix('-')).filter(|s| !s.is_empty()))
        .unwrap_or(rule_id);
    if id.is_empty() {
        return None;
    }
    let fixed_versions = split_versions(line_value(t.help, "Fix Version").unwrap_or_default());
    let cvss = rule.and_then(|r| security_severity(&r.properties));
    let name = line_value(t.help, "Severity")
        .or_else(|| t.message.strip_prefix("A ")?.split_whitespace().next())
        .unwrap_or_default();
    let severity = match Severity::parse(name) {
        // Grype writes `low` for low, negligible and unknown alike, scored
        // with the best CVSS (else 1.0 for a low, 0.0 for an unknown). Its
        // label is what counts, as in its JSON, so that a tier limiting
        // `high` judges both forms alike: a low with a CVSS of 7.5 is low.
        // Only a score of 0.0 (no CVSS, no severity) is unknown; an unknown
        // with a CVSS reads as low here, and as unknown in Grype's JSON.
        Severity::Low | Severity::Unknown => {
            if cvss.is_some() {
                Severity::Low
            } else {
                Severity::Unknown
            }
        }
        s => s,
    };
    Some(Finding {
        id: id.to_string(),
        aliases: Vec::new(),
        severity,
        package: package.to_string(),
        installed_version: version.to_string(),
        fix_state: FixState::parse("", !fixed_versions.is_empty()),
        fixed_versions,
        published: None,
        cvss,
        target: first_location(result),
        purl: None,
    })
}

/// Any other producer: the id is the rule id; package, version, fix and
/// severity come from `Key: value` lines of the result's message or the
/// rule's help and description, the severity else from the rule's tags,
/// else from `security-severity` in CVSS bands.
fn other_result(result: &SarifResult, rule: Option<&Rule>, rule_id: &str) -> Option<Finding> {
    if rule_id.is_empty() {
        return None;
    }
    let t = Texts::of(result, rule);
    let texts = [t.message, t.help, t.full];
    let fixed_versions =
        split_versions(first_value(&texts, &["Fixed Version", "Fixed Versions", "Fix Version"]).unwrap_or_default());
    let name = first_value(&texts, &["Severity"])
        .or_else(|| tags(rule).into_iter().find(|t| Severity::parse(t) != Severity::Unknown))
        .unwrap_or_default();
    let cvss = security_severity(&result.properties).or_else(|| rule.and_then(|r| security_severity(&r.properties)));
    Some(Finding {
        id: rule_id.to_string(),
        aliases: Vec::new(),
        severity: Severity::from_name_or_cvss(name, cvss),
        package: first_value(&texts, &["Package", "PkgName"]).unwrap_or_default().to_string(),
        installed_version: first_value(&texts, &["Installed Version", "Version"]).unwrap_or_default().to_string(),
        fix_state: FixState::parse("", !fixed_versions.is_empty()),
        fixed_versions,
        published: None,
        cvss,
        target: first_location(result),
        purl: None,
    })
}
