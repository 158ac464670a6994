//! `gitlab`: a GitLab code-quality report (the subset of the Code Climate
//! issue format GitLab reads: `description`, `check_name`, `fingerprint`,
//! `severity`, `location.path` and `location.lines.begin`), which a merge
//! request shows in its widget. Each denial reason and each counted
//! vulnerability is an issue; the location is the image's repository, and
//! the fingerprint (repository, tier, check, package) stays the same from
//! one build to the next, so GitLab sees what is new and what is fixed.

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use portcullis::evidence::Severity;

use super::{failures, judged, repository, standing, Check, Checked, Standing};

pub(super) fn code_quality(c: &Checked) -> Vec<u8> {
    let mut issues: Vec<Value> = Vec::new();
    for t in &c.tiers {
        for v in &t.decision.verdicts {
            let st = standing(v);
            let repo = repository(v);
            let issue = |check_name: String, description: String, severity: &str, package: &str| {
                let fingerprint = hex::encode(Sha256::digest(format!("{repo}\n{}\n{check_name}\n{package}", t.tier)));
                json!({
                    "type": "issue",
                    "description": description,
                    "check_name": check_name,
                    "fingerprint": fingerprint,
                    "severity": severity,
                    "categories": ["Security"],
                    "location": {"path": repo, "lines": {"begin": 1}},
                })
            };
            let severity = match st {
                Standing::Denied | Standing::Error => "blocker",
                _ => "major",
            };
            for (i, f) in failures(v).into_iter().enumerate() {
                let check = Check::of(&f, &t.requires).first().copied().unwrap_or(Check::Image);
                let fix = v.remedies.first().map(|r| format!(" To fix: {r}")).unwrap_or_default();
                issues.push(issue(
                    format!("portcullis/{}/{}", check.as_str(), f.reason.as_str()),
                    format!("{} in tier {}: {}.{fix}", judged(v), t.tier, f.problem),
                    severity,
                    // Two problems of one kind (one per severity over its limit) are two issues.
                    &i.to_string(),
                ));
            }
            for counted in &v.counted {
                let f = &counted.finding;
                let fixed = if f.fixed_versions.is_empty() {
                    "no fix published".to_string()
                } else {
                    format!("fixed in {}", f.fixed_versions.join(", "))
                };
                let severity = match (f.severity, counted.over_limit) {
                    (_, false) => "info",
                    (Severity::Critical, _) => "critical",
                    (Severity::High, _) => "major",
                    (Severity::Medium, _) => "minor",
                    _ => "info",
                };
                issues.push(issue(
                    format!("portcullis/vulnerability/{}", f.id),
                    format!(
                        "{} in {} {} ({}, {fixed}) in {} for tier {}",
                        f.id,
                        f.package,
                        f.installed_version,
                        f.severity.as_str(),
                        judged(v),
                        t.tier
                    ),
                    severity,
                    &f.package,
                ));
            }
        }
    }
    let mut bytes = serde_json::to_vec_pretty(&issues).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}
