//! The request-level decision, pure: the verdicts for an object's images
//! and what it asks of break-glass in; allowed or denied, the message and
//! the warnings out. `serve` and `check` both decide here, so a pipeline
//! and the cluster cannot disagree.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::breakglass::{break_glass, BreakGlass, BreakGlassRequest};
use super::eval::{Reason, Verdict};
use super::model::{TierName, TierSpec};
use crate::image::Digest;

/// Longest denial message returned; the audit record has everything.
pub const MAX_MESSAGE: usize = 4096;
/// Longest single warning returned (the API server truncates longer ones).
pub const MAX_WARNING: usize = 256;
/// Most warnings returned; the rest are counted in the last one.
pub const MAX_WARNINGS: usize = 16;

/// What became of a request, as metrics and the audit trail name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Admitted: every image passes.
    Allowed,
    /// Admitted in warn mode despite problems.
    Warned,
    /// Denied by the policy.
    Denied,
    /// Admitted by break-glass despite denials.
    BreakGlass,
    /// Evidence could not be gathered for some image (registry error,
    /// deadline): denied, or admitted where the tier has `onError: allow`.
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Warned => "warned",
            Outcome::Denied => "denied",
            Outcome::BreakGlass => "break_glass",
            Outcome::Error => "error",
        }
    }
}

/// What is decided for one request.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub allowed: bool,
    pub outcome: Outcome,
    /// One word for why it is not a clean admission (`none` when it is):
    /// the first reason of the first failing image, or what refused it.
    pub reason: &'static str,
    /// The denial message (bounded), tagged with the policy digest.
    pub message: Option<String>,
    /// Warnings for the user (bounded, deduplicated): short, remedy first.
    pub warnings: Vec<String>,
    /// The same warnings in full, for the audit record (deduplicated, not
    /// cut).
    pub recorded_warnings: Vec<String>,
    pub verdicts: Vec<Verdict>,
    pub break_glass: BreakGlass,
}

/// One request's images, judged in `tier`.
pub struct Judged<'a> {
    pub policy_digest: &'a Digest,
    pub tier: &'a TierName,
    pub tier_spec: &'a TierSpec,
    pub verdicts: Vec<Verdict>,
    /// What the request asks of break-glass (a carried grant already
    /// opened and checked against what was judged).
    pub break_glass: BreakGlassRequest<'a>,
    /// The object is a pod template that carries no grant, so a direct
    /// break-glass on it will not reach the objects controllers make from it.
    pub template_without_grant: Option<String>,
    pub now: DateTime<Utc>,
}

/// `[policy sha256:0123456]`: which policy decided, in every denial.
pub fn policy_tag(digest: &Digest) -> String {
    let d = digest.as_str();
    format!("[policy {}]", &d[..d.len().min(19)])
}

/// A request denied before any image was judged (an object that cannot be
/// read, too many images, a namespace whose tier is unknown); `reason` is
/// the word metrics use.
pub fn refuse(policy_digest: &Digest, reason: &'static str, why: &str) -> Decision {
    Decision {
        allowed: false,
        outcome: Outcome::Denied,
        reason,
        message: Some(format!("portcullis: {} {}", truncate(why, MAX_MESSAGE - 64), policy_tag(policy_digest))),
        warnings: vec![],
        recorded_warnings: vec![],
        verdicts: vec![],
        break_glass: BreakGlass::NotRequested,
    }
}

/// Decides a request from its verdicts: admitted when every image passes
/// (or its tier only warns); otherwise denied, unless break-glass is
/// granted, which admits it with a warning naming everything it overrode.
pub fn decide(j: Judged<'_>) -> Decision {
    let Judged { policy_digest, tier, tier_spec, verdicts, break_glass: request, template_without_grant, now } = j;
    // What the user is shown (short, remedy first) and what is recorded (whole).
    let mut warnings: Vec<String> = Vec::new();
    let mut recorded: Vec<String> = Vec::new();
    for v in &verdicts {
        if v.admitted && !v.problems.is_empty() {
            warnings.push(v.warning());
            recorded.push(v.warn_message());
        }
        warnings.extend(v.notes.iter().cloned());
        recorded.extend(v.notes.iter().cloned());
    }
    let denied: Vec<&Verdict> = verdicts.iter().filter(|v| !v.admitted).collect();
    let bg = break_glass(tier, tier_spec, &request, now);
    let errored = verdicts.iter().any(|v| v.error.is_some());

    if denied.is_empty() {
        let (outcome, reason) = if errored {
            (Outcome::Error, Reason::Unverifiable.as_str())
        } else if verdicts.iter().any(|v| !v.problems.is_empty()) {
            (Outcome::Warned, first_reason(verdicts.iter()))
        } else {
            (Outcome::Allowed, "none")
        };
        return Decision {
            allowed: true,
            outcome,
            reason,
            message: None,
            warnings: bound_warnings(warnings),
            recorded_warnings: dedup(recorded),
            verdicts,
            break_glass: bg,
        };
    }
    let reason = first_reason(denied.iter().copied());
    if let BreakGlass::Granted { user, carried, .. } = &bg {
        if let Some(object) = &template_without_grant {
            let w = format!(
                "no break-glass grant was stamped on the pod template of {object} (is Portcullis' mutating webhook installed?): \
                 the objects controllers make from it will be judged without break-glass"
            );
            warnings.push(w.clone());
            recorded.push(w);
        }
        let by = format!(
            "BREAK-GLASS by {user}{}: admitted despite policy failures (audited)",
            carried.as_ref().map(|c| format!(" (grant on {})", c.granted_on)).unwrap_or_default(),
        );
        let overridden: Vec<String> = denied.iter().map(|v| v.denial_message()).collect();
        warnings.insert(0, format!("{by}: {}", overridden.join(" | ")));
        recorded.insert(0, format!("{by}: {}", overridden.join(" | ")));
        return Decision {
            allowed: true,
            outcome: Outcome::BreakGlass,
            reason,
            message: None,
            warnings: bound_warnings(warnings),
            recorded_warnings: dedup(recorded),
            verdicts,
            break_glass: bg,
        };
    }
    let mut msg = bounded_join(denied.iter().map(|v| v.denial_message()), MAX_MESSAGE - 512);
    if let BreakGlass::Refused { why } = &bg {
        msg.push_str(&format!("\nbreak-glass refused: {}", truncate(why, 384)));
    }
    msg.push(' ');
    msg.push_str(&policy_tag(policy_digest));
    let outcome = if denied.iter().any(|v| v.error.is_some()) { Outcome::Error } else { Outcome::Denied };
    Decision {
        allowed: false,
        outcome,
        reason,
        message: Some(msg),
        warnings: bound_warnings(warnings),
        recorded_warnings: dedup(recorded),
        verdicts,
        break_glass: bg,
    }
}

/// In their order, each once.
fn dedup(list: Vec<String>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    list.into_iter().filter(|w| seen.insert(w.clone())).collect()
}

/// The first reason of the first failing verdict.
fn first_reason<'v>(mut verdicts: impl Iterator<Item = &'v Verdict>) -> &'static str {
    verdicts.find_map(Verdict::reason).map(Reason::as_str).unwrap_or("none")
}

/// Joins denial lines until `max` bytes, then says how many were left out.
fn bounded_join(lines: impl ExactSizeIterator<Item = String>, max: usize) -> String {
    let total = lines.len();
    let mut out = String::new();
    for (i, line) in lines.enumerate() {
        let line = truncate(&line, max / 2);
        if !out.is_empty() && out.len() + line.len() + 1 > max {
            out.push_str(&format!("\n… and {} more images denied (the audit record lists every one)", total - i));
            break;
        }
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&line);
    }
    out
}

/// Deduplicated, each within [`MAX_WARNING`], at most [`MAX_WARNINGS`].
pub fn bound_warnings(warnings: Vec<String>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut out: Vec<String> =
        warnings.into_iter().filter(|w| seen.insert(w.clone())).map(|w| truncate(&w, MAX_WARNING)).collect();
    if out.len() > MAX_WARNINGS {
        let more = out.len() - (MAX_WARNINGS - 1);
        out.truncate(MAX_WARNINGS - 1);
        out.push(format!("… and {more} more warnings (the audit record lists every one)"));
    }
    out
}

/// `s` within `max` bytes, cut on a character boundary and marked.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub(3);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;

    /// A tier name, as the policy would make it.
    fn name(tier: &str) -> TierName {
        TierName(tier.into())
    }

    const POLICY: &str = r#"
apiVersion: portcullis.dev/v1alpha1
kind: PromotionPolicy
spec:
  signers: {}
  tiers:
    development: { mode: warn, onError: allow }
    staging: { mode: enforce }
    production:
      mode: enforce
      breakGlass: { allowed: true, groups: [sre-oncall], requireTicket: true }
    relaxed:
      mode: enforce
      breakGlass: { allowed: true, groups: [sre-oncall] }
"#;

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-06-01T12:00:00Z").unwrap().with_timezone(&Utc)
    }

    fn passing(tier: &str) -> Verdict {
        Verdict {
            image: "r.example/app:v1".into(),
            name: "r.example/app".into(),
            digest: Some(format!("sha256:{}", "a".repeat(64))),
            tier: tier.into(),
            admitted: true,
            ..Default::default()
        }
    }

    fn failing(tier: &str, admitted: bool) -> Verdict {
        Verdict {
            image: "r.example/bad:v1".into(),
            name: "r.example/bad".into(),
            digest: Some(format!("sha256:{}", "b".repeat(64))),
            tier: tier.into(),
            admitted,
            problems: vec!["1 critical vulnerability exceeds the limit 0 (CVE-2026-1 in openssl 3.0.1)".into()],
            reasons: vec![Reason::Vulnerabilities],
            ..Default::default()
        }
    }

    fn errored(tier: &str, admitted: bool) -> Verdict {
        Verdict {
            image: "r.example/gone:v1".into(),
            tier: tier.into(),
            admitted,
            error: Some("registry r.example did not answer in time".into()),
            problems: if admitted { vec![] } else { vec!["could not verify the image".into()] },
            reasons: if admitted { vec![] } else { vec![Reason::Unverifiable] },
            ..Default::default()
        }
    }

    struct Ask {
        justification: Option<&'static str>,
        ticket: Option<&'static str>,
        user: &'static str,
        groups: &'static [&'static str],
    }

    const NONE: Ask = Ask { justification: None, ticket: None, user: "dev", groups: &[] };
    const ONCALL: Ask = Ask {
        justification: Some("checkout outage, rolling forward the hotfix"),
        ticket: Some("INC-7"),
        user: "alice",
        groups: &["sre-oncall"],
    };

    /// One row per case: tier, verdicts, who asks for break-glass and how;
    /// then what is decided and what the message or warnings must say.
    #[test]
    fn decision_table() {
        let policy = Policy::from_yaml(POLICY, "test").unwrap();
        struct Row {
            case: &'static str,
            tier: &'static str,
            verdicts: Vec<Verdict>,
            ask: Ask,
            allowed: bool,
            outcome: Outcome,
            reason: &'static str,
            says: &'static str,
            break_glass: &'static str,
        }
        let rows = vec![
            Row {
                case: "every image passes",
                tier: "production",
                verdicts: vec![passing("production")],
                ask: NONE,
                allowed: true,
                outcome: Outcome::Allowed,
                reason: "none",
                says: "",
                break_glass: "notRequested",
            },
            Row {
                case: "a failing image is denied, with the policy that denied it",
                tier: "production",
                verdicts: vec![passing("production"), failing("production", false)],
                ask: NONE,
                allowed: false,
                outcome: Outcome::Denied,
                reason: "vulnerabilities",
                says: "r.example/bad@sha256:bbbb",
                break_glass: "notRequested",
            },
            Row {
                case: "warn mode admits, and the policy words the warning",
                tier: "development",
                verdicts: vec![failing("development", true)],
                ask: NONE,
                allowed: true,
                outcome: Outcome::Warned,
                reason: "vulnerabilities",
                says: "bad@sha256:bbbbbbbbbbbb would be denied in development: 1 critical vulnerability exceeds the limit 0",
                break_glass: "notRequested",
            },
            Row {
                case: "break-glass by an allowed user with justification and ticket",
                tier: "production",
                verdicts: vec![failing("production", false)],
                ask: ONCALL,
                allowed: true,
                outcome: Outcome::BreakGlass,
                reason: "vulnerabilities",
                says: "BREAK-GLASS by alice: admitted despite policy failures (audited): r.example/bad@",
                break_glass: "granted",
            },
            Row {
                case: "break-glass by a user outside the tier's groups",
                tier: "production",
                verdicts: vec![failing("production", false)],
                ask: Ask { user: "eve", groups: &["developers"], ..ONCALL },
                allowed: false,
                outcome: Outcome::Denied,
                reason: "vulnerabilities",
                says: "break-glass refused: user eve is not in a group allowed to break glass in tier production (sre-oncall)",
                break_glass: "refused",
            },
            Row {
                case: "break-glass in a tier without it",
                tier: "staging",
                verdicts: vec![failing("staging", false)],
                ask: ONCALL,
                allowed: false,
                outcome: Outcome::Denied,
                reason: "vulnerabilities",
                says: "break-glass refused: break-glass is not allowed in tier staging",
                break_glass: "refused",
            },
            Row {
                case: "break-glass without the ticket the tier requires",
                tier: "production",
                verdicts: vec![failing("production", false)],
                ask: Ask { ticket: None, ..ONCALL },
                allowed: false,
                outcome: Outcome::Denied,
                reason: "vulnerabilities",
                says: "break-glass refused: tier production requires a ticket in the portcullis.dev/break-glass-ticket annotation",
                break_glass: "refused",
            },
            Row {
                case: "break-glass with a blank ticket",
                tier: "production",
                verdicts: vec![failing("production", false)],
                ask: Ask { ticket: Some("   "), ..ONCALL },
                allowed: false,
                outcome: Outcome::Denied,
                reason: "vulnerabilities",
                says: "requires a ticket",
                break_glass: "refused",
            },
            Row {
                case: "break-glass with an empty justification",
                tier: "production",
                verdicts: vec![failing("production", false)],
                ask: Ask { justification: Some(""), ..ONCALL },
                allowed: false,
                outcome: Outcome::Denied,
                reason: "vulnerabilities",
                says: "break-glass refused: the portcullis.dev/break-glass annotation must carry a justification",
                break_glass: "refused",
            },
            Row {
                case: "break-glass with a justification of blanks",
                tier: "relaxed",
                verdicts: vec![failing("relaxed", false)],
                ask: Ask { justification: Some("      \t   "), ticket: None, ..ONCALL },
                allowed: false,
                outcome: Outcome::Denied,
                reason: "vulnerabilities",
                says: "must carry a justification",
                break_glass: "refused",
            },
            Row {
                case: "break-glass where the tier needs no ticket",
                tier: "relaxed",
                verdicts: vec![failing("relaxed", false)],
                ask: Ask { ticket: None, ..ONCALL },
                allowed: true,
                outcome: Outcome::BreakGlass,
                reason: "vulnerabilities",
                says: "BREAK-GLASS by alice",
                break_glass: "granted",
            },
            Row {
                case: "break-glass asked for where nothing fails admits, and is recorded as granted",
                tier: "production",
                verdicts: vec![passing("production")],
                ask: ONCALL,
                allowed: true,
                outcome: Outcome::Allowed,
                reason: "none",
                says: "",
                break_glass: "granted",
            },
            Row {
                case: "a registry error in an enforcing tier is an error, denied",
                tier: "staging",
                verdicts: vec![errored("staging", false)],
                ask: NONE,
                allowed: false,
                outcome: Outcome::Error,
                reason: "unverifiable",
                says: "could not verify the image",
                break_glass: "notRequested",
            },
            Row {
                case: "a registry error where the tier fails open is an error, admitted",
                tier: "development",
                verdicts: vec![errored("development", true)],
                ask: NONE,
                allowed: true,
                outcome: Outcome::Error,
                reason: "unverifiable",
                says: "",
                break_glass: "notRequested",
            },
        ];
        for row in rows {
            let groups: Vec<String> = row.ask.groups.iter().map(|g| g.to_string()).collect();
            let d = decide(Judged {
                policy_digest: &policy.digest,
                tier: &name(row.tier),
                tier_spec: policy.tier(row.tier).unwrap(),
                verdicts: row.verdicts,
                break_glass: BreakGlassRequest {
                    justification: row.ask.justification,
                    ticket: row.ask.ticket,
                    written: true,
                    user: row.ask.user,
                    groups: &groups,
                    controller: false,
                    grant: None,
                },
                template_without_grant: None,
                now: at(),
            });
            let said = format!("{} | {}", d.message.as_deref().unwrap_or(""), d.warnings.join(" | "));
            assert_eq!(
                (d.allowed, d.outcome, d.reason),
                (row.allowed, row.outcome, row.reason),
                "{}: {said}",
                row.case
            );
            assert!(said.contains(row.says), "{}: expected {:?} in {said}", row.case, row.says);
            let bg = serde_json::to_value(&d.break_glass).unwrap();
            assert_eq!(bg["breakGlass"], row.break_glass, "{}: {bg}", row.case);
            if !d.allowed {
                let msg = d.message.unwrap();
                assert!(msg.ends_with(&policy_tag(&policy.digest)), "{}: {msg}", row.case);
                assert!(!msg.contains("BREAK-GLASS"), "{}", row.case);
            } else {
                assert!(d.message.is_none(), "{}", row.case);
            }
        }
    }

    /// Warn mode is the first phase: its warnings must keep the remedy,
    /// although Kubernetes cuts each at 256 bytes; the audit record keeps
    /// the whole text.
    #[test]
    fn warnings_lead_with_the_remedy_and_the_record_keeps_them_whole() {
        let policy = Policy::from_yaml(POLICY, "test").unwrap();
        let mut v = failing("development", true);
        v.name = format!("registry.example.com:5000/{}/api", "team".repeat(20));
        v.problems = vec![format!(
            "no attestations found (looked for {}:sha256-{}.att and the OCI referrers of sha256:bbbbbbbbbbbb); attach a signed vulnerability scan (`cosign attest --type vuln`)",
            v.name,
            "b".repeat(64)
        )];
        v.remedies = vec![format!(
            "attest a scan: cosign attest --type vuln --predicate scan.json {}@sha256:{}",
            v.name,
            "b".repeat(64)
        )];
        let d = decide(Judged {
            policy_digest: &policy.digest,
            tier: &name("development"),
            tier_spec: policy.tier("development").unwrap(),
            verdicts: vec![v.clone()],
            break_glass: Default::default(),
            template_without_grant: None,
            now: at(),
        });
        assert_eq!(d.warnings.len(), 1);
        let shown = &d.warnings[0];
        assert!(shown.len() <= MAX_WARNING, "{shown}");
        assert!(
            shown.starts_with(&format!(
                "{}/api@sha256:bbbbbbbbbbbb would be denied in development: attest a scan: cosign attest --type vuln",
                "team".repeat(20)
            )),
            "{shown}"
        );
        assert_eq!(d.recorded_warnings, [v.warn_message()]);
        assert!(
            d.recorded_warnings[0].len() > MAX_WARNING && d.recorded_warnings[0].ends_with("(mode warn: admitted)")
        );
    }

    #[test]
    fn a_direct_break_glass_on_a_template_without_a_grant_is_flagged() {
        let policy = Policy::from_yaml(POLICY, "test").unwrap();
        let groups = vec!["sre-oncall".to_string()];
        let d = decide(Judged {
            policy_digest: &policy.digest,
            tier: &name("production"),
            tier_spec: policy.tier("production").unwrap(),
            verdicts: vec![failing("production", false)],
            break_glass: BreakGlassRequest {
                justification: ONCALL.justification,
                ticket: ONCALL.ticket,
                written: true,
                user: "alice",
                groups: &groups,
                controller: false,
                grant: None,
            },
            template_without_grant: Some("Deployment/shop".into()),
            now: at(),
        });
        assert!(d.allowed);
        assert!(d
            .warnings
            .iter()
            .any(|w| w.starts_with("no break-glass grant was stamped on the pod template of Deployment/shop")));
    }

    #[test]
    fn refusals_name_the_policy() {
        let policy = Policy::from_yaml(POLICY, "test").unwrap();
        let d = refuse(&policy.digest, "too_many_images", "Pod p names 99 distinct images");
        assert!(!d.allowed && d.outcome == Outcome::Denied && d.reason == "too_many_images");
        assert_eq!(
            d.message.unwrap(),
            format!("portcullis: Pod p names 99 distinct images {}", policy_tag(&policy.digest))
        );
    }

    #[test]
    fn messages_and_warnings_are_bounded() {
        let lines: Vec<String> =
            (0..200).map(|i| format!("image-{i} denied for tier production: {}", "x".repeat(200))).collect();
        let msg = bounded_join(lines.into_iter(), MAX_MESSAGE - 512);
        assert!(msg.len() <= MAX_MESSAGE, "{}", msg.len());
        assert!(
            msg.contains("image-0 denied") && msg.ends_with("more images denied (the audit record lists every one)"),
            "{msg}"
        );
        let one = bounded_join(vec!["y".repeat(100_000)].into_iter(), 1000);
        assert!(one.len() <= 1000);
        let w = bound_warnings((0..100).map(|i| format!("w{i} {}", "z".repeat(1000))).collect());
        assert_eq!(w.len(), MAX_WARNINGS);
        assert!(w.iter().all(|w| w.len() <= MAX_WARNING));
        assert_eq!(w[MAX_WARNINGS - 1], "… and 85 more warnings (the audit record lists every one)");
        assert_eq!(bound_warnings(vec!["a".into(), "a".into(), "b".into()]), ["a", "b"]);
    }
}
