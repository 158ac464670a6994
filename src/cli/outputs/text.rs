//! `text` and `json`: what `check` has always written, for one tier; for
//! several, the same for each.

use serde_json::{json, Value};

use super::Checked;

/// One line per image (ADMIT, WARN, DENY, ERROR), its notes and
/// exceptions, then the policy and the time.
pub(super) fn text(c: &Checked) -> String {
    let mut out = String::new();
    for t in &c.tiers {
        for v in &t.decision.verdicts {
            // An image written with its digest (or as the digest alone) already names it.
            let digest =
                v.digest.as_deref().filter(|d| !v.image.ends_with(d)).map(|d| format!("@{d}")).unwrap_or_default();
            let line = if v.error.is_some() && !v.admitted {
                format!("ERROR  {}", v.denial_message())
            } else if !v.admitted {
                format!("DENY   {}", v.denial_message())
            } else if !v.problems.is_empty() {
                format!(
                    "WARN   {}{digest} admitted in tier {} (mode warn) despite: {}",
                    v.image,
                    v.tier,
                    v.problems.join("; ")
                )
            } else {
                format!("ADMIT  {}{digest} for tier {}", v.image, v.tier)
            };
            out.push_str(&line);
            out.push('\n');
            for n in &v.notes {
                out.push_str(&format!("       note: {n}\n"));
            }
            for e in &v.exceptions {
                out.push_str(&format!("       exception: {e}\n"));
            }
        }
    }
    out.push_str(&format!(
        "policy {} evaluated at {}\n",
        c.policy_digest,
        c.evaluated_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    ));
    out
}

/// The decision as admission would answer it, with every verdict; for
/// several tiers, `allowed` for all of them and each tier's own.
pub(super) fn json(c: &Checked) -> Vec<u8> {
    let at = c.evaluated_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let tier = |t: &super::Judged| -> Value {
        let d = &t.decision;
        json!({
            "allowed": d.allowed,
            "result": d.outcome,
            "reason": d.reason,
            "message": d.message,
            // In full: a pipeline has no 256-byte bound on a warning.
            "warnings": d.recorded_warnings,
            "tier": t.tier,
            "policyDigest": c.policy_digest,
            "evaluatedAt": at,
            "verdicts": d.verdicts,
        })
    };
    let out = match c.tiers.as_slice() {
        [one] => tier(one),
        many => json!({
            "allowed": many.iter().all(|t| t.decision.allowed),
            "tiers": many.iter().map(tier).collect::<Vec<_>>(),
            "policyDigest": c.policy_digest,
            "evaluatedAt": at,
        }),
    };
    let mut bytes = serde_json::to_vec_pretty(&out).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}
