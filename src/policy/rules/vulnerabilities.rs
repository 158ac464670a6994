//! Vulnerability scans: the newest accepted scan, its age, its findings
//! against the tier's limits, exceptions and remediation windows.

use std::collections::BTreeMap;

use super::{rfc3339, signed_by_any, Age, Ctx, Found, Rule, LIST_FINDINGS};
use crate::evidence::{vex, Claim, Finding, Outcome, Severity, VulnReport, CYCLONEDX_BOM, VULN_TYPES};
use crate::policy::eval::{EvidenceKind, Reason, Verdict};
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
            cx.fail_missing(
                v,
                "vulnerability scan",
                "`cosign attest --type vuln`",
                VULN_TYPES,
                &found,
                &self.signed_by,
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
        // VEX first, then exceptions, limits and windows on what is left.
        let findings = self.apply_vex(cx, chosen, v);
        let counted = self.counted(cx, &findings, v);
        self.over_limits(&counted, v);
    }
}

/// The findings that count against the limits, by severity.
type Counted<'a> = BTreeMap<Severity, Vec<&'a Finding>>;

impl VulnRule {
    /// The findings left once the VEX the tier trusts is applied: the
    /// scan's own analysis (CycloneDX `analysis`, trusted as the scan is),
    /// VEX attested on the image and signed by one of `vex.signedBy`, and VEX
    /// given for it on the command line (`check --vex`, unsigned: applied
    /// only where the tier trusts VEX at all, and said so). Each suppressed
    /// finding is listed in the verdict, each document used cited by its
    /// digest; VEX the tier does not trust is named in a note and ignored.
    fn apply_vex(&self, cx: &Ctx<'_>, scan: &Found<'_, VulnReport>, v: &mut Verdict) -> Vec<Finding> {
        let findings = &scan.claim.findings;
        // OpenVEX attestations, and CycloneDX ones (`--type cyclonedx`)
        // whose vulnerabilities carry an analysis, other than the scan.
        let attached = cx.verified(|a, c| match c {
            Claim::Vex(d) => Some(d),
            Claim::Vulnerabilities(r)
                if a.claimed_type.as_deref() == Some(CYCLONEDX_BOM) && a.index != scan.att.index =>
            {
                r.vex.as_ref()
            }
            _ => None,
        });
        let given = cx.vex_given;
        // VEX that verified but cannot be read suppresses nothing; say so.
        for a in &cx.ev.attestations {
            if let (Outcome::Unreadable { why, .. }, Some(t)) = (&a.outcome, a.claimed_type.as_deref()) {
                if vex::VEX_TYPES.contains(&t) {
                    v.notes.push(format!("VEX {} suppresses nothing: {why}", a.envelope));
                }
            }
        }
        let own = scan.claim.vex.as_ref().map(|d| vex::Source {
            document: std::sync::Arc::clone(d),
            digest: scan.att.envelope.to_string(),
            signer: scan.signers.iter().find(|s| self.signed_by.contains(s)).cloned(),
            bound: true,
        });
        let central = &cx.policy.vex;
        if attached.is_empty() && given.is_empty() && own.is_none() && central.is_empty() {
            return findings.to_vec();
        }
        // The scan's own analysis, then the policy's VEX files (trusted as
        // the policy is, in every tier), then what the tier trusts.
        let mut sources: Vec<vex::Source> = own.into_iter().chain(central.iter().cloned()).collect();
        let Some(rule) = self.vex.as_ref().filter(|_| !attached.is_empty() || !given.is_empty()) else {
            let n = attached.len() + given.len();
            if n > 0 {
                v.notes.push(format!(
                    "{n} VEX document{} ignored: this tier trusts no VEX (name its signers in vulnerabilities.vex.signedBy)",
                    if n == 1 { "" } else { "s" }
                ));
            }
            return self.suppress(cx, findings, &sources, v);
        };
        sources.extend(given.iter().cloned());
        if !given.is_empty() {
            v.notes.push(format!(
                "{} VEX document{} given on the command line, unsigned: admission applies only VEX attested on the image and signed by {}",
                given.len(),
                if given.len() == 1 { "" } else { "s" },
                rule.signed_by.join(", ")
            ));
        }
        for f in &attached {
            let digest = f.att.envelope.to_string();
            match f.signers.iter().find(|s| rule.signed_by.contains(s)) {
                Some(signer) => {
                    sources.push(vex::Source {
                        document: std::sync::Arc::clone(f.claim),
                        digest,
                        signer: Some(signer.clone()),
                        // Verified for this digest: it is about this image.
                        bound: true,
                    });
                    v.cite(EvidenceKind::Vex, f, f.claim.timestamp);
                }
                None => v.notes.push(format!(
                    "VEX {digest} signed by {} is ignored: vulnerabilities.vex.signedBy trusts {}",
                    f.signers.join(", "),
                    self.vex.as_ref().map(|r| r.signed_by.join(", ")).unwrap_or_default()
                )),
            }
        }
        self.suppress(cx, findings, &sources, v)
    }

    /// Applies `sources` to `findings`: what they suppress is listed in
    /// the verdict, the rest returned.
    fn suppress(&self, cx: &Ctx<'_>, findings: &[Finding], sources: &[vex::Source], v: &mut Verdict) -> Vec<Finding> {
        if sources.is_empty() {
            return findings.to_vec();
        }
        for s in sources {
            for why in &s.document.ignored {
                v.notes.push(format!("VEX {}: statement ignored: {why}", s.digest));
            }
        }
        let name = cx.image.name();
        let image = vex::Image { digest: cx.ev.digest.to_string(), repository: Some(name).filter(|n| !n.is_empty()) };
        let (kept, suppressed) = vex::apply(findings.to_vec(), &image, sources);
        if !suppressed.is_empty() {
            let mut listed: Vec<String> = suppressed.iter().take(LIST_FINDINGS).map(|s| s.describe()).collect();
            if suppressed.len() > LIST_FINDINGS {
                listed.push(format!("and {} more", suppressed.len() - LIST_FINDINGS));
            }
            v.notes.push(format!(
                "{} finding{} suppressed by VEX: {}",
                suppressed.len(),
                if suppressed.len() == 1 { "" } else { "s" },
                listed.join("; ")
            ));
        }
        v.vex_suppressed.extend(suppressed);
        kept
    }

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
        for (sev, list) in counted {
            let limit = self.max.get(*sev);
            let over_limit = limit.is_some_and(|max| list.len() as u64 > u64::from(max));
            v.counted.extend(list.iter().map(|f| crate::policy::eval::Counted {
                finding: (*f).clone(),
                limit,
                over_limit,
            }));
        }
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
        for e in self.policy.exceptions_for(self.tier.as_str(), &name, f) {
            if today > e.expires {
                v.notes.push(format!("exception for {} expired on {}; it no longer applies", e.id, e.expires));
                continue;
            }
            let label = format!("{} (approved by {}, expires {}: {})", e.id, e.approved_by, e.expires, e.reason);
            if !v.exceptions.contains(&label) {
                v.exceptions.push(label);
            }
            let note = format!("exception for {} expires on {}; fix {} before then", e.id, e.expires, f.package);
            super::expiring_soon(v, today, &e.id, e.expires, note);
            return true;
        }
        false
    }
}
