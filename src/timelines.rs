//! What a promotion gate owes its owners, besides what it blocks: how long
//! a workload stays denied in a tier before it is admitted there (time to
//! remediation), and how long after its scan an image is first admitted in
//! each tier (time to promotion).
//!
//! Kept in memory by each replica, bounded and expiring: after a restart,
//! or across replicas, an image's first admission can be counted again, so
//! the histograms are estimates; the audit trail is the exact record.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::image::weight;
use crate::policy::{EvidenceKind, Outcome, Verdict};

/// Bytes of workloads and of (image, tier) pairs remembered, each: their
/// text and the cache's own entry ([`weight`]). Past it, the least used are
/// forgotten first (about 25,000 to 40,000 entries each, at most 16 MiB
/// together, however long the names).
const CAPACITY_BYTES: u64 = 8 << 20;
/// How long a denial waits for its remediation, and how long a first
/// admission is remembered.
const HORIZON: Duration = Duration::from_secs(90 * 24 * 3600);

/// One decision, as the timelines need it.
pub struct Seen<'a> {
    pub namespace: &'a str,
    /// The workload: the object's controller (`ReplicaSet/shop-5d9c`), or
    /// the object itself (`Deployment/shop`, `Pod/debug`).
    pub workload: &'a str,
    pub tier: &'a str,
    pub outcome: Outcome,
    pub verdicts: &'a [Verdict],
    pub now: DateTime<Utc>,
}

/// What a decision adds to the histograms, in seconds.
#[derive(Debug, Default, PartialEq)]
pub struct Observed {
    /// The workload was denied before and is admitted now.
    pub remediation: Option<f64>,
    /// For each image admitted in the tier for the first time: since its
    /// scan finished.
    pub promotions: Vec<f64>,
}

pub struct Timelines {
    /// (namespace, workload, tier) -> when it was first denied.
    denied_since: moka::sync::Cache<(String, String, String), DateTime<Utc>>,
    /// (digest, tier) admitted at least once.
    admitted: moka::sync::Cache<(String, String), ()>,
}

impl Default for Timelines {
    fn default() -> Self {
        Timelines {
            denied_since: moka::sync::Cache::builder()
                .weigher(|(ns, workload, tier): &(String, String, String), _| {
                    weight(ns.len() + workload.len() + tier.len())
                })
                .max_capacity(CAPACITY_BYTES)
                .time_to_live(HORIZON)
                .build(),
            admitted: moka::sync::Cache::builder()
                .weigher(|(digest, tier): &(String, String), _| weight(digest.len() + tier.len()))
                .max_capacity(CAPACITY_BYTES)
                .time_to_live(HORIZON)
                .build(),
        }
    }
}

impl Timelines {
    /// Records a decision (not a dry run). Only policy denials start a
    /// remediation clock (not errors, not refusals before any image was
    /// judged); only admissions on the evidence end it (not break-glass).
    pub fn observe(&self, s: &Seen<'_>) -> Observed {
        let key = (s.namespace.to_string(), s.workload.to_string(), s.tier.to_string());
        let mut out = Observed::default();
        match s.outcome {
            Outcome::Denied if !s.verdicts.is_empty() => {
                // The first denial starts the clock; later ones do not move it.
                self.denied_since.entry(key).or_insert(s.now);
            }
            Outcome::Allowed | Outcome::Warned => {
                if let Some(since) = self.denied_since.remove(&key) {
                    out.remediation = Some(seconds(s.now - since));
                }
                for v in s.verdicts.iter().filter(|v| v.admitted) {
                    let Some(digest) = &v.digest else { continue };
                    let pair = (digest.clone(), s.tier.to_string());
                    if self.admitted.contains_key(&pair) {
                        continue;
                    }
                    self.admitted.insert(pair, ());
                    let scanned = v
                        .attestations
                        .iter()
                        .filter(|a| a.kind == EvidenceKind::Vulnerabilities)
                        .filter_map(|a| a.finished_on)
                        .max();
                    if let Some(t) = scanned {
                        out.promotions.push(seconds(s.now - t));
                    }
                }
            }
            _ => {}
        }
        out
    }
}

fn seconds(d: chrono::Duration) -> f64 {
    (d.num_milliseconds().max(0) as f64) / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Cited;

    fn at(h: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-06-01T00:00:00Z").unwrap().with_timezone(&Utc) + chrono::Duration::hours(h)
    }

    fn verdict(digest: &str, admitted: bool, scanned: Option<i64>) -> Verdict {
        Verdict {
            image: "r.example/app:v1".into(),
            digest: Some(digest.into()),
            admitted,
            attestations: scanned
                .map(|h| Cited {
                    digest: "sha256:env".into(),
                    kind: EvidenceKind::Vulnerabilities,
                    predicate_type: None,
                    signers: vec!["scanner".into()],
                    identity: None,
                    finished_on: Some(at(h)),
                })
                .into_iter()
                .collect(),
            ..Default::default()
        }
    }

    /// The timelines are bounded by bytes, not entries: denials of
    /// workloads with long names cannot make them hold more.
    #[test]
    fn long_names_cannot_grow_the_timelines_past_their_bytes() {
        let t = Timelines::default();
        let long = "w".repeat(256 << 10);
        let bad = [verdict("sha256:bad", false, Some(0))];
        for i in 0..64 {
            let workload = format!("{long}{i}");
            let seen = Seen {
                namespace: "shop",
                workload: &workload,
                tier: "production",
                outcome: Outcome::Denied,
                verdicts: &bad,
                now: at(0),
            };
            t.observe(&seen);
        }
        t.denied_since.run_pending_tasks();
        let held: usize = t.denied_since.iter().map(|(k, _)| k.0.len() + k.1.len() + k.2.len()).sum();
        assert!(held > 0);
        assert!(held as u64 <= CAPACITY_BYTES, "{held} bytes of names held (16 MiB offered)");
    }

    #[test]
    fn remediation_and_promotion() {
        let t = Timelines::default();
        let seen = |workload, tier, outcome, verdicts: &[Verdict], h| {
            t.observe(&Seen { namespace: "shop", workload, tier, outcome, verdicts, now: at(h) })
        };
        let bad = [verdict("sha256:bad", false, Some(0))];
        let good = [verdict("sha256:good", true, Some(2))];
        // Denied at 1h and again at 3h: the clock starts at the first.
        assert_eq!(seen("Deployment/api", "production", Outcome::Denied, &bad, 1), Observed::default());
        assert_eq!(seen("Deployment/api", "production", Outcome::Denied, &bad, 3), Observed::default());
        // Admitted at 5h: 4h to remediation; the good image was scanned at 2h.
        let o = seen("Deployment/api", "production", Outcome::Allowed, &good, 5);
        assert_eq!(o, Observed { remediation: Some(4.0 * 3600.0), promotions: vec![3.0 * 3600.0] });
        // Admitted again: neither a remediation nor a first admission.
        assert_eq!(seen("Deployment/api", "production", Outcome::Allowed, &good, 6), Observed::default());
        // The same image's first admission in another tier is a promotion there.
        assert_eq!(seen("Deployment/web", "staging", Outcome::Allowed, &good, 7).promotions, vec![5.0 * 3600.0]);
        // Break-glass and errors neither start nor end a clock.
        assert_eq!(seen("Deployment/x", "production", Outcome::BreakGlass, &bad, 1), Observed::default());
        assert_eq!(seen("Deployment/x", "production", Outcome::Error, &bad, 1), Observed::default());
        assert_eq!(seen("Deployment/x", "production", Outcome::Allowed, &good, 2).remediation, None);
        // A denial before any image was judged (no verdicts) starts nothing.
        assert_eq!(seen("Deployment/y", "production", Outcome::Denied, &[], 1), Observed::default());
        assert_eq!(seen("Deployment/y", "production", Outcome::Allowed, &[], 2).remediation, None);
        // Denied in one tier, admitted in another: no remediation.
        seen("Deployment/z", "production", Outcome::Denied, &bad, 1);
        assert_eq!(seen("Deployment/z", "staging", Outcome::Allowed, &[], 2).remediation, None);
        // An image without a dated scan is admitted without a promotion time.
        let undated = [verdict("sha256:undated", true, None)];
        assert!(seen("Deployment/u", "production", Outcome::Allowed, &undated, 1).promotions.is_empty());
    }
}
