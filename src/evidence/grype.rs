//! Grype JSON (`grype -o json`).
//!
//! The document of `grype/presenter/models` in anchore/grype: `matches[]`,
//! each a `vulnerability` (`id`, `severity` as Grype names it — `Critical`,
//! `High`, `Medium`, `Low`, `Negligible`, `Unknown` — `cvss[]` with
//! `version` and `metrics.baseScore`, `fix.versions` and `fix.state`), its
//! `relatedVulnerabilities[]` (the CVE behind a GHSA, the NVD record behind
//! a distro one) and the matched `artifact` (`name`, `version`,
//! `locations[].path`). `descriptor.timestamp` is when the scan ran.
//! `ignoredMatches` were waived by the scanner's configuration and are not
//! findings.

use serde::Deserialize;

use super::bounded::{capped_opt, too_many_findings, MAX_FINDINGS, MAX_PER_FINDING};
use super::{parse_time, Finding, FixState, Severity, VulnReport};

#[derive(Deserialize)]
struct Document {
    /// Each match as a finding, made as it is read.
    #[serde(default)]
    matches: Option<Findings>,
    #[serde(default)]
    descriptor: Option<Descriptor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Match {
    vulnerability: Vulnerability,
    #[serde(default, deserialize_with = "capped_opt::<_, _, MAX_PER_FINDING>")]
    related_vulnerabilities: Option<Vec<Related>>,
    #[serde(default)]
    artifact: Option<Artifact>,
}

#[derive(Deserialize)]
struct Vulnerability {
    id: String,
    #[serde(default)]
    severity: Option<String>,
    #[serde(default, deserialize_with = "capped_opt::<_, _, MAX_PER_FINDING>")]
    cvss: Option<Vec<Cvss>>,
    #[serde(default)]
    fix: Option<Fix>,
}

#[derive(Deserialize)]
struct Related {
    #[serde(default)]
    id: String,
    #[serde(default, deserialize_with = "capped_opt::<_, _, MAX_PER_FINDING>")]
    cvss: Option<Vec<Cvss>>,
}

#[derive(Deserialize)]
struct Cvss {
    #[serde(default)]
    version: String,
    #[serde(default)]
    metrics: Option<Metrics>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Metrics {
    #[serde(default)]
    base_score: Option<f64>,
}

#[derive(Deserialize)]
struct Fix {
    #[serde(default, deserialize_with = "capped_opt::<_, _, MAX_PER_FINDING>")]
    versions: Option<Vec<String>>,
    #[serde(default)]
    state: String,
}

#[derive(Deserialize, Default)]
struct Artifact {
    #[serde(default)]
    name: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    purl: Option<String>,
    #[serde(default, deserialize_with = "capped_opt::<_, _, MAX_PER_FINDING>")]
    locations: Option<Vec<Location>>,
}

#[derive(Deserialize)]
struct Location {
    #[serde(default)]
    path: String,
}

#[derive(Deserialize)]
struct Descriptor {
    #[serde(default)]
    name: String,
    #[serde(default)]
    timestamp: Option<String>,
}

/// The highest CVSS v3.x base score; a v4.0 one when there is no v3 (both
/// share the qualitative bands); v2 scores are never used.
fn best_cvss(cvss: &[Cvss]) -> Option<f64> {
    let of = |major: &str| {
        cvss.iter()
            .filter(|c| c.version.trim().starts_with(major))
            .filter_map(|c| c.metrics.as_ref()?.base_score)
            .filter(|s| s.is_finite() && *s >= 0.0)
            .reduce(f64::max)
    };
    of("3").or_else(|| of("4"))
}

/// Reads a Grype report from `d` (its text, or a document).
pub(super) fn parse<'de, D: serde::Deserializer<'de>>(d: D) -> Result<VulnReport, String> {
    let doc = Document::deserialize(d).map_err(|e| format!("Grype report: {e}"))?;
    let descriptor = doc.descriptor;
    let finished_on = parse_time(descriptor.as_ref().and_then(|d| d.timestamp.as_deref()))
        .map_err(|e| format!("Grype report descriptor.timestamp: {e}"))?;
    let scanner = descriptor.map(|d| d.name).filter(|n| !n.is_empty()).unwrap_or_else(|| "grype".to_string());
    let mut findings = doc.matches.map(|m| m.0).unwrap_or_default();
    super::trivy::keep_distinct_aliases(&mut findings);
    Ok(VulnReport { scanner, finished_on, findings, vex: None, sbom: None })
}

/// The matches, at most [`MAX_FINDINGS`], each a finding as it is read.
struct Findings(Vec<Finding>);

impl<'de> Deserialize<'de> for Findings {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Matches;
        impl<'de> serde::de::Visitor<'de> for Matches {
            type Value = Findings;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of matches")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Findings, A::Error> {
                let mut out = Vec::new();
                while let Some(m) = seq.next_element::<Match>()? {
                    if out.len() == MAX_FINDINGS {
                        return Err(too_many_findings());
                    }
                    out.push(finding(m));
                }
                Ok(Findings(out))
            }
        }
        d.deserialize_seq(Matches)
    }
}

/// One match as a finding.
fn finding(m: Match) -> Finding {
    let vu = m.vulnerability;
    let related = m.related_vulnerabilities.unwrap_or_default();
    // Grype bands its own SARIF by the related records' scores too.
    let cvss = best_cvss(vu.cvss.as_deref().unwrap_or_default())
        .or_else(|| related.iter().filter_map(|r| best_cvss(r.cvss.as_deref().unwrap_or_default())).reduce(f64::max));
    let (fixed_versions, state) = match vu.fix {
        Some(fix) => (
            fix.versions
                .unwrap_or_default()
                .iter()
                .map(|s| s.trim())
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect::<Vec<_>>(),
            fix.state,
        ),
        None => (Vec::new(), String::new()),
    };
    let mut artifact = m.artifact.unwrap_or_default();
    let target = artifact.locations.take().unwrap_or_default().into_iter().map(|l| l.path).find(|p| !p.is_empty());
    Finding {
        aliases: related.into_iter().map(|r| r.id).collect(),
        severity: Severity::from_name_or_cvss(vu.severity.as_deref().unwrap_or_default(), cvss),
        id: vu.id,
        package: artifact.name,
        installed_version: artifact.version,
        fix_state: FixState::parse(&state, !fixed_versions.is_empty()),
        fixed_versions,
        published: None,
        cvss,
        target: target.unwrap_or_default(),
        purl: artifact.purl.filter(|p| !p.is_empty()),
    }
}
