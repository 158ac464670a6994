//! Prometheus metrics in the text exposition format, without a registry crate.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// Decision latency buckets, in seconds.
const BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

#[derive(Default)]
pub struct Metrics {
    decisions: Mutex<BTreeMap<(String, String), u64>>,
    images: Mutex<BTreeMap<(String, String), u64>>,
    lookups: Mutex<BTreeMap<String, u64>>,
    break_glass: Mutex<BTreeMap<String, u64>>,
    reloads: Mutex<BTreeMap<String, u64>>,
    latency: Mutex<Histogram>,
}

fn bump<K: Ord>(m: &Mutex<BTreeMap<K, u64>>, k: K) {
    if let Ok(mut m) = m.lock() {
        *m.entry(k).or_default() += 1;
    }
}

impl Metrics {
    /// One admission decision: `result` is `allowed`, `denied`, `warned` or `error`.
    pub fn decision(&self, tier: &str, result: &str, seconds: f64) {
        bump(&self.decisions, (tier.to_string(), result.to_string()));
        if let Ok(mut h) = self.latency.lock() {
            for (i, b) in BUCKETS.iter().enumerate() {
                if seconds <= *b {
                    h.counts[i] += 1;
                }
            }
            h.sum += seconds;
            h.count += 1;
        }
    }

    pub fn image(&self, tier: &str, admitted: bool) {
        bump(&self.images, (tier.to_string(), if admitted { "admitted" } else { "denied" }.to_string()));
    }

    /// A registry lookup that missed the cache (`resolve` or `attestations`).
    pub fn registry_lookup(&self, kind: &str) {
        bump(&self.lookups, kind.to_string());
    }

    pub fn break_glass(&self, tier: &str) {
        bump(&self.break_glass, tier.to_string());
    }

    pub fn policy_reload(&self, result: &str) {
        bump(&self.reloads, result.to_string());
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let two = |out: &mut String,
                   name: &str,
                   help: &str,
                   l1: &str,
                   l2: &str,
                   m: &Mutex<BTreeMap<(String, String), u64>>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for ((a, b), v) in m.lock().map(|m| m.clone()).unwrap_or_default() {
                let _ = writeln!(out, "{name}{{{l1}=\"{}\",{l2}=\"{}\"}} {v}", esc(&a), esc(&b));
            }
        };
        let one = |out: &mut String, name: &str, help: &str, l: &str, m: &Mutex<BTreeMap<String, u64>>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (a, v) in m.lock().map(|m| m.clone()).unwrap_or_default() {
                let _ = writeln!(out, "{name}{{{l}=\"{}\"}} {v}", esc(&a));
            }
        };
        two(
            &mut out,
            "portcullis_decisions_total",
            "Admission decisions by tier and result.",
            "tier",
            "result",
            &self.decisions,
        );
        two(
            &mut out,
            "portcullis_images_total",
            "Image verdicts by tier and outcome.",
            "tier",
            "outcome",
            &self.images,
        );
        one(
            &mut out,
            "portcullis_registry_lookups_total",
            "Registry lookups that missed the cache.",
            "kind",
            &self.lookups,
        );
        one(&mut out, "portcullis_break_glass_total", "Admissions granted by break-glass.", "tier", &self.break_glass);
        one(&mut out, "portcullis_policy_reloads_total", "Policy reload attempts by result.", "result", &self.reloads);
        let _ = writeln!(out, "# HELP portcullis_decision_seconds Time to answer an admission request.\n# TYPE portcullis_decision_seconds histogram");
        if let Ok(h) = self.latency.lock() {
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(out, "portcullis_decision_seconds_bucket{{le=\"{b}\"}} {}", h.counts[i]);
            }
            let _ = writeln!(out, "portcullis_decision_seconds_bucket{{le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(
                out,
                "portcullis_decision_seconds_sum {}\nportcullis_decision_seconds_count {}",
                h.sum, h.count
            );
        }
        out
    }
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// How long each trusted root's newest key of each kind stays valid, in
/// seconds from `now` (negative once past); open-ended keys have no series.
/// Alert on it (e.g. `< 30 * 86400`) to refresh a root before signatures
/// made after its end stop verifying.
pub fn render_trusted_roots(
    out: &mut String,
    roots: &[std::sync::Arc<crate::attest::Root>],
    now: chrono::DateTime<chrono::Utc>,
) {
    let name = "portcullis_trusted_root_key_valid_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Seconds until the newest key of a kind (fulcio, rekor, ctlog, tsa) in a trusted root stops being valid.\n# TYPE {name} gauge"
    );
    for root in roots {
        for v in &root.validity {
            if let Some(until) = v.until {
                let _ = writeln!(
                    out,
                    "{name}{{root=\"{}\",kind=\"{}\"}} {}",
                    esc(&root.name),
                    v.kind,
                    (until - now).num_seconds()
                );
            }
        }
    }
}

/// The HTTP requests sent to registries (token requests included): what the
/// caches save shows here.
pub fn render_registry_requests(out: &mut String, requests: u64) {
    let name = "portcullis_registry_requests_total";
    let _ = writeln!(out, "# HELP {name} HTTP requests sent to registries.\n# TYPE {name} counter\n{name} {requests}");
}
