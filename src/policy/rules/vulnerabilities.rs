//! Vulnerability scans: the newest accepted scan, its age, its findings
//! against the tier's limits, exceptions and remediation windows.

use std::collections::BTreeMap;

use chrono::NaiveDate;

use super::{rfc3339, signed_by_any, Age, Ctx, Rule, LIST_FINDINGS};
use crate::evidence::{Claim, Finding, Severity, VULN_TYPES};
use crate::policy::eval::{EvidenceKind, ExpiringException, Reason, Verdict, EXCEPTION_WARNING_DAYS};
use crate::policy::model::VulnRule;

/// The step that attaches a scan (`{image}`: the image).
pub(in crate::policy) const VULN_FIX: &str = "attest a scan: cosign attest --type vuln --predicate scan.json {image}";

impl Rule for VulnRule {
    fn kind(&self) -> EvidenceKind {
        EvidenceKind::Vulnerabilities
    }

    fn signed_by(&self) -> &[String] {
        &self.signed_by
    }

    fn how(&self) -> String {
        "a signed vulnerability scan (`cosign attest --type vuln`)".to_string()
    }

    fn attach(&self) -> String {
        VULN_FIX.to_string()
    }

    fn judge(&self, cx: &Ctx<'_>, v: &mut Verdict) {
        let found = cx.verified(|_, c| match c {
            Claim::Vulnerabilities(r) => Some(r),
            _ => None,
        });
        let accepted = found.iter().filter(|f| signed_by_any(f.signers, &self.signed_by));
        // The newest scan wins: by finish time, then by position.
        let Some(chosen) = accepted.max_by_key(|f| (f.claim.finished_on, f.att.index)) else {
            v.fail(
                Reason::MissingEvidence,
                cx.missing("vulnerability scan", "`cosign attest --type vuln`", VULN_TYPES, &found, &self.signed_by),
            );
            let fix = cx.fix_missing(&self.attach(), &found, &self.signed_by, v);
            v.fix(fix);
            return;
        };
        let report = chosen.claim;
        v.cite(self.kind(), chosen, report.finished_on);
        let age = Age {
            what: "vulnerability scan",
            limit: "maxAge",
            field: "metadata.scanFinishedOn",
            redo: "rescan the image and attest the new report",
        };
        if let Some(stale) = cx.age_problem(&age, report.finished_on, self.max_age) {
            v.fail(Reason::StaleEvidence, stale);
            let fix = format!("rescan, then {}", self.attach().replace("{image}", &v.pinned()));
            v.fix(fix);
        }
        let counted = self.counted(cx, &report.findings, v);
        self.over_limits(&counted, v);
    }
}

/// The findings that count against the limits, by severity.
type Counted<'a> = BTreeMap<Severity, Vec<&'a Finding>>;

impl VulnRule {
    /// The findings that count: not unfixed ones the rule ignores, not
    /// excepted ones, not ones inside their remediation window (each noted).
    fn counted<'r>(&self, cx: &Ctx<'_>, findings: &'r [Finding], v: &mut Verdict) -> Counted<'r> {
        let mut counted = Counted::default();
        for f in findings {
            if self.ignore_unfixed && !f.fixable() {
                continue;
            }
            if cx.excepted(f, v) {
                continue;
            }
            if let (Some(grace), Some(published)) = (self.grace_period.get(&f.severity), f.published) {
                // A window that would end past the last time there is never ends.
                let until = grace.after(published);
                if until.is_none_or(|until| cx.now < until) {
                    v.notes.push(format!(
                        "{} ({}) is inside its {grace} remediation window{}",
                        f.describe(),
                        f.severity.as_str(),
                        until.map(|u| format!(" until {}", rfc3339(u))).unwrap_or_default()
                    ));
                    continue;
                }
            }
            counted.entry(f.severity).or_default().push(f);
        }
        counted
    }

    /// A problem, and its remedy, for each severity over its limit.
    fn over_limits(&self, counted: &Counted<'_>, v: &mut Verdict) {
        for sev in Severity::ALL {
            let (Some(max), Some(list)) = (self.max.get(sev), counted.get(&sev)) else {
                continue;
            };
            if list.len() as u64 <= max as u64 {
                continue;
            }
            let mut listed: Vec<String> = list.iter().take(LIST_FINDINGS).map(|f| f.describe()).collect();
            if list.len() > LIST_FINDINGS {
                listed.push(format!("and {} more", list.len() - LIST_FINDINGS));
            }
            let (noun, verb) =
                if list.len() == 1 { ("vulnerability", "exceeds") } else { ("vulnerabilities", "exceed") };
            v.fail(
                Reason::Vulnerabilities,
                format!("{} {} {noun} {verb} the limit {max} ({})", list.len(), sev.as_str(), listed.join("; ")),
            );
            v.fix(match list.iter().find(|f| f.fixable()) {
                Some(f) => format!(
                    "upgrade {} to {}{}, rebuild and rescan",
                    f.package,
                    f.fixed_versions.join(" or "),
                    if list.len() > 1 { " (and the others: portcullis check shows them)" } else { "" }
                ),
                None => format!("no fix is published for {}: ask for a policy exception (spec.exceptions)", list[0].id),
            });
        }
    }
}

impl Ctx<'_> {
    /// Applies the first matching, unexpired exception; records it or its expiry.
    fn excepted(&self, f: &Finding, v: &mut Verdict) -> bool {
        let today = self.now.date_naive();
        let name = self.image.name();
        for (i, e) in self.exceptions().iter().enumerate() {
            let id_matches =
                e.id.eq_ignore_ascii_case(&f.id) || f.aliases.iter().any(|a| a.eq_ignore_ascii_case(&e.id));
            let tier_matches = e.tiers.is_empty() || e.tiers.iter().any(|t| self.tier == t.as_str());
            let image_matches = self.policy.patterns.exception_covers(i, &name);
            if !(id_matches && tier_matches && image_matches) {
                continue;
            }
            if today > e.expires {
                v.notes.push(format!("exception for {} expired on {}; it no longer applies", e.id, e.expires));
                continue;
            }
            let label = format!("{} (approved by {}, expires {}: {})", e.id, e.approved_by, e.expires, e.reason);
            if !v.exceptions.contains(&label) {
                v.exceptions.push(label);
            }
            if days_until(today, e.expires) <= EXCEPTION_WARNING_DAYS {
                let note = format!("exception for {} expires on {}; fix {} before then", e.id, e.expires, f.package);
                if !v.notes.contains(&note) {
                    v.notes.push(note);
                }
                let expiring = ExpiringException { id: e.id.clone(), expires: e.expires };
                if !v.expiring_exceptions.contains(&expiring) {
                    v.expiring_exceptions.push(expiring);
                }
            }
            return true;
        }
        false
    }
}

fn days_until(today: NaiveDate, day: NaiveDate) -> i64 {
    (day - today).num_days()
}
