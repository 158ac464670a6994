//! Pure evaluation: (policy, tier, image evidence, now) -> verdict with reasons.

use chrono::{DateTime, Duration as ChronoDuration, NaiveDate, Utc};
use serde::Serialize;

use super::model::{ExceptionSpec, Mode, OnError, Policy, TestRule, VulnRule};
use crate::evidence::{
    Attestation, Claim, Finding, ImageEvidence, Outcome, Severity, TestOutcome, TestReport,
    VulnReport,
};
use crate::evidence::{COSIGN_VULN_V1, TEST_RESULT_V01};
use crate::image::ImageRef;

/// An exception expiring within this many days is flagged in a warning.
pub const EXCEPTION_WARNING_DAYS: i64 = 14;
/// Clock skew tolerated for scan times in the future.
const MAX_SKEW_SECS: i64 = 300;
/// How many findings a message lists before summarising the rest.
const LIST_FINDINGS: usize = 5;

/// The verdict for one image in one tier.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    /// The image as written in the object.
    pub image: String,
    /// `registry/repository`, normalised (empty when the reference did not parse).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The digest evaluated, when it could be resolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    pub tier: String,
    pub admitted: bool,
    /// Why the image fails the tier's policy (in warn mode it is admitted anyway).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    /// Things to know that do not block: exceptions about to expire, findings
    /// inside their remediation window, errors tolerated by `onError: allow`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Exceptions applied, by id.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exceptions: Vec<String>,
    /// Digests of the attestation envelopes the verdict rests on.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<String>,
    /// Set when evidence could not be gathered (registry error, deadline).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Verdict {
    /// `registry/repo@sha256:… denied for tier production: reason; reason`.
    pub fn denial_message(&self) -> String {
        let what = match &self.digest {
            Some(d) if !self.name.is_empty() => format!("{}@{d}", self.name),
            _ => self.image.clone(),
        };
        format!(
            "{what} denied for tier {}: {}",
            self.tier,
            self.problems.join("; ")
        )
    }
}

/// Evaluates one image. `gathered` is the evidence found for it, or the error
/// that prevented finding it.
pub fn evaluate(
    policy: &Policy,
    tier_name: &str,
    image: &ImageRef,
    gathered: Result<&ImageEvidence, &str>,
    now: DateTime<Utc>,
) -> Verdict {
    let mut v = Verdict {
        image: image.original.clone(),
        name: image.name(),
        digest: gathered.ok().map(|e| e.digest.to_string()),
        tier: tier_name.to_string(),
        admitted: false,
        problems: vec![],
        notes: vec![],
        exceptions: vec![],
        evidence: vec![],
        error: None,
    };
    let Some(tier) = policy.tier(tier_name) else {
        v.problems.push(format!(
            "tier {tier_name:?} is not defined in the policy (defined: {})",
            policy.tier_names().join(", ")
        ));
        return v;
    };
    let ev = match gathered {
        Ok(ev) => ev,
        Err(error) => {
            v.error = Some(error.to_string());
            match tier.on_error {
                OnError::Allow => {
                    v.admitted = true;
                    v.notes.push(format!("could not verify {}: {error}; admitted because tier {tier_name} has onError: allow", image.original));
                }
                OnError::Deny => v.problems.push(format!("could not verify the image: {error}; tier {tier_name} fails closed (onError: deny)")),
            }
            return v;
        }
    };
    let ctx = Ctx {
        tier: tier_name,
        image,
        ev,
        now,
        exceptions: &policy.file.spec.exceptions,
    };
    if let Some(rule) = &tier.vulnerabilities {
        ctx.vulnerabilities(rule, &mut v);
    }
    if let Some(rule) = &tier.tests {
        ctx.tests(rule, &mut v);
    }
    v.admitted = v.problems.is_empty() || tier.mode == Mode::Warn;
    v
}

struct Ctx<'a> {
    tier: &'a str,
    image: &'a ImageRef,
    ev: &'a ImageEvidence,
    now: DateTime<Utc>,
    exceptions: &'a [ExceptionSpec],
}

impl Ctx<'_> {
    fn vulnerabilities(&self, rule: &VulnRule, v: &mut Verdict) {
        let found: Vec<(&Attestation, &[String], &VulnReport)> = self
            .ev
            .attestations
            .iter()
            .filter_map(|a| match &a.outcome {
                Outcome::Verified {
                    signers,
                    claim: Claim::Vulnerabilities(r),
                } => Some((a, signers.as_slice(), r)),
                _ => None,
            })
            .collect();
        let accepted = found
            .iter()
            .filter(|(_, s, _)| signed_by_any(s, &rule.signed_by));
        // The newest scan wins: by finish time, then by position.
        let Some((att, _, report)) = accepted.max_by_key(|(a, _, r)| (r.finished_on, a.index))
        else {
            let signers: Vec<&[String]> = found.iter().map(|(_, s, _)| *s).collect();
            v.problems.push(self.missing(
                "vulnerability scan",
                "cosign attest --type vuln",
                COSIGN_VULN_V1,
                &signers,
                &rule.signed_by,
            ));
            return;
        };
        v.evidence.push(att.envelope.to_string());
        match (report.finished_on, rule.max_age) {
            (Some(t), _) if (t - self.now).num_seconds() > MAX_SKEW_SECS => {
                v.problems.push(format!("the vulnerability scan claims to finish in the future ({}); check the scanner's clock and rescan", t.to_rfc3339()));
            }
            (Some(t), Some(max)) if to_chrono(max) < self.now - t => v.problems.push(format!(
                "the newest vulnerability scan finished {} ({} ago), older than the maxAge {} of tier {}; rescan the image and attest the new report",
                t.to_rfc3339(),
                human(self.now - t),
                humantime::format_duration(max),
                self.tier
            )),
            (None, Some(max)) => v.problems.push(format!(
                "the vulnerability scan records no finish time (metadata.scanFinishedOn), so its age cannot be checked against the maxAge {} of tier {}; attest a scan with its time",
                humantime::format_duration(max),
                self.tier
            )),
            _ => {}
        }
        let mut counted: std::collections::BTreeMap<Severity, Vec<&Finding>> = Default::default();
        for f in &report.findings {
            if rule.ignore_unfixed && !f.fixable() {
                continue;
            }
            if self.excepted(f, v) {
                continue;
            }
            if let (Some(grace), Some(published)) =
                (rule.grace_period.get(&f.severity), f.published)
            {
                let until = published + to_chrono(*grace);
                if self.now < until {
                    v.notes.push(format!(
                        "{} ({}) is inside its {} remediation window until {}",
                        f.describe(),
                        f.severity.as_str(),
                        humantime::format_duration(*grace),
                        until.to_rfc3339()
                    ));
                    continue;
                }
            }
            counted.entry(f.severity).or_default().push(f);
        }
        for sev in Severity::ALL {
            let (Some(max), Some(list)) = (rule.max.get(sev), counted.get(&sev)) else {
                continue;
            };
            if list.len() as u64 <= max as u64 {
                continue;
            }
            let mut listed: Vec<String> = list
                .iter()
                .take(LIST_FINDINGS)
                .map(|f| f.describe())
                .collect();
            if list.len() > LIST_FINDINGS {
                listed.push(format!("and {} more", list.len() - LIST_FINDINGS));
            }
            let (noun, verb) = if list.len() == 1 {
                ("vulnerability", "exceeds")
            } else {
                ("vulnerabilities", "exceed")
            };
            v.problems.push(format!(
                "{} {} {noun} {verb} the limit {max} ({})",
                list.len(),
                sev.as_str(),
                listed.join("; ")
            ));
        }
    }

    /// Applies the first matching, unexpired exception; records it or its expiry.
    fn excepted(&self, f: &Finding, v: &mut Verdict) -> bool {
        let today = self.now.date_naive();
        let name = self.image.name();
        for e in self.exceptions {
            let id_matches = e.id.eq_ignore_ascii_case(&f.id)
                || f.aliases.iter().any(|a| a.eq_ignore_ascii_case(&e.id));
            let tier_matches = e.tiers.is_empty() || e.tiers.iter().any(|t| t == self.tier);
            let image_matches = e.images.is_empty()
                || e.images.iter().any(|g| {
                    globset::Glob::new(g)
                        .map(|g| g.compile_matcher().is_match(&name))
                        .unwrap_or(false)
                });
            if !(id_matches && tier_matches && image_matches) {
                continue;
            }
            if today > e.expires {
                v.notes.push(format!(
                    "exception for {} expired on {}; it no longer applies",
                    e.id, e.expires
                ));
                continue;
            }
            let label = format!(
                "{} (approved by {}, expires {}: {})",
                e.id, e.approved_by, e.expires, e.reason
            );
            if !v.exceptions.contains(&label) {
                v.exceptions.push(label);
            }
            if days_until(today, e.expires) <= EXCEPTION_WARNING_DAYS {
                let note = format!(
                    "exception for {} expires on {}; fix {} before then",
                    e.id, e.expires, f.package
                );
                if !v.notes.contains(&note) {
                    v.notes.push(note);
                }
            }
            return true;
        }
        false
    }

    fn tests(&self, rule: &TestRule, v: &mut Verdict) {
        let found: Vec<(&Attestation, &[String], &TestReport)> = self
            .ev
            .attestations
            .iter()
            .filter_map(|a| match &a.outcome {
                Outcome::Verified {
                    signers,
                    claim: Claim::Tests(r),
                } => Some((a, signers.as_slice(), r)),
                _ => None,
            })
            .collect();
        // Test results carry no time: the last one attached wins.
        let Some((att, _, report)) = found
            .iter()
            .filter(|(_, s, _)| signed_by_any(s, &rule.signed_by))
            .max_by_key(|(a, _, _)| a.index)
        else {
            let signers: Vec<&[String]> = found.iter().map(|(_, s, _)| *s).collect();
            v.problems.push(self.missing(
                "test result",
                &format!("cosign attest --type {TEST_RESULT_V01}"),
                TEST_RESULT_V01,
                &signers,
                &rule.signed_by,
            ));
            return;
        };
        v.evidence.push(att.envelope.to_string());
        let ok = match rule.require {
            TestOutcome::Passed => report.result == TestOutcome::Passed,
            _ => report.result != TestOutcome::Failed,
        };
        let failed = if report.failed_tests.is_empty() {
            String::new()
        } else {
            let mut names: Vec<&str> = report
                .failed_tests
                .iter()
                .take(LIST_FINDINGS)
                .map(String::as_str)
                .collect();
            let more = report.failed_tests.len().saturating_sub(LIST_FINDINGS);
            let extra = if more > 0 {
                format!(", and {more} more")
            } else {
                String::new()
            };
            names.sort_unstable();
            format!(
                " ({} failed: {}{extra})",
                report.failed_tests.len(),
                names.join(", ")
            )
        };
        let url = report
            .url
            .as_deref()
            .map(|u| format!("; see {u}"))
            .unwrap_or_default();
        if !ok {
            v.problems.push(format!(
                "test result is {}{failed}, tier {} requires {}{url}",
                outcome_str(report.result),
                self.tier,
                if rule.require == TestOutcome::Passed {
                    "PASSED"
                } else {
                    "PASSED or WARNED"
                }
            ));
        } else if !report.failed_tests.is_empty() {
            v.problems.push(format!(
                "test result is {} but lists failed tests{failed}{url}",
                outcome_str(report.result)
            ));
        }
    }

    /// Why no acceptable attestation of a kind was found, in the most useful words.
    fn missing(
        &self,
        what: &str,
        how: &str,
        predicate_type: &str,
        other_signers: &[&[String]],
        wanted: &[String],
    ) -> String {
        if let Some(s) = other_signers.first() {
            return format!(
                "the {what} is signed by {}, but tier {} accepts only {}",
                s.join(", "),
                self.tier,
                wanted.join(", ")
            );
        }
        let mut why: Vec<String> = self
            .ev
            .attestations
            .iter()
            .filter(|a| {
                a.claimed_type
                    .as_deref()
                    .is_none_or(|t| t == predicate_type)
            })
            .filter_map(|a| match &a.outcome {
                Outcome::Rejected(p) => Some(p.to_string()),
                Outcome::Unreadable { why, .. } => Some(why.clone()),
                _ => None,
            })
            .collect();
        why.dedup();
        if !why.is_empty() {
            return format!("no valid {what}: {}", why.join("; "));
        }
        if self.ev.attestations.is_empty() {
            format!(
                "no attestations found (looked for {}); attach a signed {what} with `{how}`",
                self.ev.location
            )
        } else {
            format!(
                "no {what} among the {} attestations at {}; attach one with `{how}`",
                self.ev.attestations.len(),
                self.ev.location
            )
        }
    }
}

fn signed_by_any(signers: &[String], wanted: &[String]) -> bool {
    signers.iter().any(|s| wanted.contains(s))
}

fn outcome_str(o: TestOutcome) -> &'static str {
    match o {
        TestOutcome::Passed => "PASSED",
        TestOutcome::Warned => "WARNED",
        TestOutcome::Failed => "FAILED",
    }
}

fn to_chrono(d: std::time::Duration) -> ChronoDuration {
    ChronoDuration::from_std(d).unwrap_or(ChronoDuration::MAX)
}

fn days_until(today: NaiveDate, day: NaiveDate) -> i64 {
    (day - today).num_days()
}

/// `3d 4h`, `5h 12m`, `40m`: a rounded age for messages.
fn human(d: ChronoDuration) -> String {
    let m = d.num_minutes().max(0);
    let (days, hours, mins) = (m / 1440, (m / 60) % 24, m % 60);
    match (days, hours) {
        (0, 0) => format!("{mins}m"),
        (0, _) => format!("{hours}h {mins}m"),
        _ => format!("{days}d {hours}h"),
    }
}
