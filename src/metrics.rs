//! Prometheus metrics, exposed in the OpenMetrics text format on `/metrics`.
//!
//! Every family is registered with a [`prometheus_client`] registry owned by
//! [`Metrics`]. Counters and histograms are updated as requests are judged;
//! the gauges that describe the policy in force (exceptions about to expire,
//! trusted roots' key validity) are computed from it at scrape time by
//! [`Metrics::refresh`].
//!
//! Label values come from requests (tier names, registry hosts) and from the
//! policy: they are bounded by what the policy and the registries in use name.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;

/// What `/metrics` answers with.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Admission latency buckets, in seconds: from 0.5 ms to 10 s, finer near the
/// webhook's deadline (8 s; the API server gives up at timeoutSeconds, 10 s).
const ADMISSION_BUCKETS: [f64; 22] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0,
    9.0, 10.0,
];

/// One registry request's latency buckets, in seconds (the default request
/// timeout is 5 s).
const REGISTRY_BUCKETS: [f64; 14] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 20.0];

const MINUTE: f64 = 60.0;
const HOUR: f64 = 3600.0;
const DAY: f64 = 86400.0;

/// Evidence age buckets: from 1 minute to 30 days.
const AGE_BUCKETS: [f64; 14] = [
    MINUTE,
    5.0 * MINUTE,
    15.0 * MINUTE,
    30.0 * MINUTE,
    HOUR,
    3.0 * HOUR,
    6.0 * HOUR,
    12.0 * HOUR,
    DAY,
    2.0 * DAY,
    3.0 * DAY,
    7.0 * DAY,
    14.0 * DAY,
    30.0 * DAY,
];

/// Time to remediation and to promotion buckets: from 1 minute to 90 days.
const LEAD_TIME_BUCKETS: [f64; 16] = [
    MINUTE,
    5.0 * MINUTE,
    15.0 * MINUTE,
    30.0 * MINUTE,
    HOUR,
    3.0 * HOUR,
    6.0 * HOUR,
    12.0 * HOUR,
    DAY,
    2.0 * DAY,
    3.0 * DAY,
    7.0 * DAY,
    14.0 * DAY,
    30.0 * DAY,
    60.0 * DAY,
    90.0 * DAY,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    tier: String,
    result: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TierLabels {
    tier: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ImageLabels {
    tier: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    registry: String,
    operation: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    registry: String,
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    cache: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TierResultLabels {
    tier: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AgeLabels {
    tier: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TierStatusLabels {
    tier: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabels {
    digest: String,
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExceptionLabels {
    id: String,
    tiers: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RootLabels {
    root: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn histograms<L: Clone + std::hash::Hash + Eq>(make: fn() -> Histogram) -> HistogramFamily<L> {
    Family::new_with_constructor(make)
}

/// What [`Metrics::refresh`] computed from the policy in force, and the
/// policy's identity; encoded as it stands at each scrape.
#[derive(Debug, Default)]
struct PolicyState {
    info: Option<PolicyLabels>,
    exceptions: Vec<(ExceptionLabels, i64)>,
    roots: Vec<(RootLabels, i64)>,
}

/// Encodes [`PolicyState`]: each family replaced whole by its writer, so a
/// scrape never sees a half-updated one (nor two policies at once).
#[derive(Debug, Default)]
struct PolicyCollector(Arc<Mutex<PolicyState>>);

impl Collector for PolicyCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(info) = &state.info {
            let mut m = encoder.encode_descriptor(
                "portcullis_policy",
                "The policy in force: its digest and where it was read from.",
                None,
                MetricType::Info,
            )?;
            m.encode_info(info)?;
        }
        if !state.exceptions.is_empty() {
            let mut m = encoder.encode_descriptor(
                "portcullis_exception_expiry",
                "Seconds until a policy exception stops applying (negative once it has expired).",
                Some(&Unit::Seconds),
                MetricType::Gauge,
            )?;
            for (labels, v) in &state.exceptions {
                m.encode_family(labels)?.encode_gauge(v)?;
            }
        }
        if !state.roots.is_empty() {
            let mut m = encoder.encode_descriptor(
                "portcullis_trusted_root_key_valid",
                "Seconds until the newest key of a kind (fulcio, rekor, ctlog, tsa) in a trusted root stops being valid (negative once past).",
                Some(&Unit::Seconds),
                MetricType::Gauge,
            )?;
            for (labels, v) in &state.roots {
                m.encode_family(labels)?.encode_gauge(v)?;
            }
        }
        Ok(())
    }
}

/// Portcullis' metrics and the registry they are exposed from.
pub struct Metrics {
    registry: Registry,
    decisions: Family<DecisionLabels, Counter>,
    admission_duration: HistogramFamily<TierLabels>,
    images: Family<ImageLabels, Counter>,
    registry_requests: Family<RequestLabels, Counter>,
    registry_duration: HistogramFamily<OperationLabels>,
    cache: Family<CacheLabels, Counter>,
    /// The cache counters admission touches for every image, looked up
    /// once: [`COUNTED_CACHES`] x (hit, miss).
    cache_counters: [[Counter; 2]; 2],
    break_glass: Family<TierResultLabels, Counter>,
    vex_suppressed: Family<TierStatusLabels, Counter>,
    evidence_age: HistogramFamily<AgeLabels>,
    reloads: Family<ResultLabels, Counter>,
    remediation: HistogramFamily<TierLabels>,
    promotion: HistogramFamily<TierLabels>,
    audit_write_errors: Counter,
    events_dropped: Counter,
    policy: Arc<Mutex<PolicyState>>,
    /// Serialises [`Metrics::catch_up`].
    catch_up: Mutex<()>,
    running: Family<TierStatusLabels, Gauge>,
    verified: Family<TierLabels, Gauge<f64, AtomicU64>>,
    base_current: Family<TierLabels, Gauge<f64, AtomicU64>>,
    violation_age: Family<TierLabels, Gauge>,
    reevaluations: Family<ResultLabels, Counter>,
    reevaluation_duration: Histogram,
    /// Serialises [`Metrics::running`].
    running_lock: Mutex<()>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// The caches whose counters are looked up once (`Metrics::cache_counters`).
const COUNTED_CACHES: [&str; 2] = ["tag", "evidence"];

fn s(v: &str) -> String {
    v.to_string()
}

/// Observes a duration in `h`: one not finite (from a bad input) is left
/// out, so that it cannot poison the sum; a negative one (clocks apart)
/// counts as zero.
fn observe(h: &Histogram, seconds: f64) {
    if seconds.is_finite() {
        h.observe(seconds.max(0.0));
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut m = Metrics {
            decisions: Family::default(),
            admission_duration: histograms(|| Histogram::new(ADMISSION_BUCKETS)),
            images: Family::default(),
            registry_requests: Family::default(),
            registry_duration: histograms(|| Histogram::new(REGISTRY_BUCKETS)),
            cache: Family::default(),
            cache_counters: Default::default(),
            break_glass: Family::default(),
            vex_suppressed: Family::default(),
            evidence_age: histograms(|| Histogram::new(AGE_BUCKETS)),
            reloads: Family::default(),
            remediation: histograms(|| Histogram::new(LEAD_TIME_BUCKETS)),
            promotion: histograms(|| Histogram::new(LEAD_TIME_BUCKETS)),
            audit_write_errors: Counter::default(),
            events_dropped: Counter::default(),
            policy: Arc::default(),
            catch_up: Mutex::default(),
            running: Family::default(),
            verified: Family::default(),
            base_current: Family::default(),
            violation_age: Family::default(),
            reevaluations: Family::default(),
            reevaluation_duration: Histogram::new(REGISTRY_BUCKETS.iter().map(|b| b * 10.0)),
            running_lock: Mutex::default(),
            registry: Registry::default(),
        };
        m.cache_counters = COUNTED_CACHES.map(|c| [m.cache_family(c, true), m.cache_family(c, false)]);
        m.registry.register(
            "portcullis_admission_decisions",
            "Admission decisions by tier, result (allowed, denied, warned, break_glass, error) and reason",
            m.decisions.clone(),
        );
        m.registry.register_with_unit(
            "portcullis_admission_duration",
            "Time to answer an admission request, by tier",
            Unit::Seconds,
            m.admission_duration.clone(),
        );
        m.registry.register(
            "portcullis_image_verdicts",
            "Image verdicts by tier and outcome (admitted, denied, warned)",
            m.images.clone(),
        );
        m.registry.register(
            "portcullis_registry_requests",
            "HTTP requests sent to registries, by registry, operation (token, manifest, referrers, blob, tags) and code (the HTTP status, or error or timeout)",
            m.registry_requests.clone(),
        );
        m.registry.register_with_unit(
            "portcullis_registry_request_duration",
            "Time from sending a registry request to its response's headers, by registry and operation",
            Unit::Seconds,
            m.registry_duration.clone(),
        );
        m.registry.register(
            "portcullis_cache_requests",
            "Lookups in the tag resolution and evidence caches, by cache (tag, evidence) and result (hit, miss)",
            m.cache.clone(),
        );
        m.registry.register(
            "portcullis_break_glass",
            "Break-glass requests for images the policy denied, by tier and result (granted, refused)",
            m.break_glass.clone(),
        );
        m.registry.register(
            "portcullis_vex_suppressed",
            "Findings a trusted VEX statement took out of the count, by tier and status (not_affected, fixed)",
            m.vex_suppressed.clone(),
        );
        m.registry.register_with_unit(
            "portcullis_evidence_age",
            "Age of the evidence an admission relied on, by tier and kind (vulnerabilities, tests, provenance)",
            Unit::Seconds,
            m.evidence_age.clone(),
        );
        m.registry.register(
            "portcullis_policy_reloads",
            "Policy reload attempts by result (success, rejected)",
            m.reloads.clone(),
        );
        m.registry.register_with_unit(
            "portcullis_time_to_remediation",
            "Time from a workload's first denial in a tier to its admission there",
            Unit::Seconds,
            m.remediation.clone(),
        );
        m.registry.register_with_unit(
            "portcullis_time_to_promotion",
            "Time from a scan's finish to the image's first admission in a tier",
            Unit::Seconds,
            m.promotion.clone(),
        );
        m.registry.register(
            "portcullis_audit_write_errors",
            "Audit records that could not be written",
            m.audit_write_errors.clone(),
        );
        m.registry.register(
            "portcullis_events_dropped",
            "Kubernetes events Portcullis dropped instead of emitting",
            m.events_dropped.clone(),
        );
        m.registry.register(
            "portcullis_build",
            "The running Portcullis",
            Info::new(VersionLabels { version: s(env!("CARGO_PKG_VERSION")) }),
        );
        m.registry.register(
            "portcullis_running_images",
            "Images running now, by tier and status at the last re-evaluation (compliant, exception_expiring, scan_stale, unverified, violating, error)",
            m.running.clone(),
        );
        m.registry.register(
            "portcullis_running_verified_ratio",
            "Share of the images running in a tier whose evidence verified (status neither unverified nor error), at the last re-evaluation",
            m.verified.clone(),
        );
        m.registry.register(
            "portcullis_running_base_image_current_ratio",
            "Share of the images running in a tier whose base image is current (built on the digest its tag points to now), among those whose base is known, at the last re-evaluation; only for tiers that judge base images (baseImage)",
            m.base_current.clone(),
        );
        m.registry.register_with_unit(
            "portcullis_violation_age",
            "How long the oldest ongoing violation in a tier has lasted (since the re-evaluation that first saw it)",
            Unit::Seconds,
            m.violation_age.clone(),
        );
        m.registry.register(
            "portcullis_reevaluations",
            "Re-evaluation passes over running workloads, by result (success, error)",
            m.reevaluations.clone(),
        );
        m.registry.register_with_unit(
            "portcullis_reevaluation_duration",
            "Time one re-evaluation pass took",
            Unit::Seconds,
            m.reevaluation_duration.clone(),
        );
        m.registry.register_collector(Box::new(PolicyCollector(m.policy.clone())));
        // The label sets alerts count on exist from the first scrape (at 0),
        // so that rate() and increase() see their first increment.
        for result in ["success", "rejected"] {
            drop(m.reloads.get_or_create(&ResultLabels { result: s(result) }));
        }
        m
    }

    /// What the last re-evaluation found: images by tier and status, the
    /// share verified per tier, and the oldest ongoing violation per tier
    /// (seconds); each family replaced whole.
    pub fn running(&self, counts: &[(String, String, i64)], verified: &[(String, f64)], oldest: &[(String, i64)]) {
        self.running_with_bases(counts, verified, oldest, &[])
    }

    /// [`Metrics::running`], with the share of running images on a current
    /// base image per tier that judges base images.
    pub fn running_with_bases(
        &self,
        counts: &[(String, String, i64)],
        verified: &[(String, f64)],
        oldest: &[(String, i64)],
        base_current: &[(String, f64)],
    ) {
        let _one_at_a_time = self.running_lock.lock().unwrap_or_else(|e| e.into_inner());
        self.base_current.clear();
        for (tier, ratio) in base_current {
            self.base_current.get_or_create(&TierLabels { tier: s(tier) }).set(*ratio);
        }
        self.running.clear();
        for (tier, status, n) in counts {
            self.running.get_or_create(&TierStatusLabels { tier: s(tier), status: s(status) }).set(*n);
        }
        self.verified.clear();
        for (tier, ratio) in verified {
            self.verified.get_or_create(&TierLabels { tier: s(tier) }).set(*ratio);
        }
        self.violation_age.clear();
        for (tier, seconds) in oldest {
            self.violation_age.get_or_create(&TierLabels { tier: s(tier) }).set(*seconds);
        }
    }

    /// One re-evaluation pass: `success` or `error`.
    pub fn reevaluation(&self, result: &str, seconds: f64) {
        self.reevaluations.get_or_create(&ResultLabels { result: s(result) }).inc();
        observe(&self.reevaluation_duration, seconds);
    }

    /// One admission decision. `result`: `allowed`, `denied`, `warned`,
    /// `break_glass` or `error`; `reason`: a short machine word
    /// (`vulnerabilities`, `tests`, `provenance`, `unsigned`,
    /// `registry_error`, `invalid`, `too_many_images`, `none`).
    pub fn decision(&self, tier: &str, result: &str, reason: &str, seconds: f64) {
        self.decisions.get_or_create(&DecisionLabels { tier: s(tier), result: s(result), reason: s(reason) }).inc();
        observe(&self.admission_duration.get_or_create(&TierLabels { tier: s(tier) }), seconds);
    }

    /// One image judged: `outcome` is `admitted`, `denied` or `warned`.
    pub fn image(&self, tier: &str, outcome: &str) {
        self.images.get_or_create(&ImageLabels { tier: s(tier), outcome: s(outcome) }).inc();
    }

    /// One HTTP request to a registry. `operation`: `token`, `manifest`,
    /// `referrers`, `blob` or `tags`; `code`: the HTTP status, or `error` /
    /// `timeout` when there is none.
    pub fn registry_request(&self, registry: &str, operation: &str, code: &str, seconds: f64) {
        self.registry_requests
            .get_or_create(&RequestLabels { registry: s(registry), operation: s(operation), code: s(code) })
            .inc();
        observe(
            &self.registry_duration.get_or_create(&OperationLabels { registry: s(registry), operation: s(operation) }),
            seconds,
        );
    }

    /// One lookup in a cache (`tag` or `evidence`).
    pub fn cache(&self, cache: &str, hit: bool) {
        match COUNTED_CACHES.iter().position(|c| *c == cache) {
            Some(i) => self.cache_counters[i][usize::from(!hit)].inc(),
            None => self.cache_family(cache, hit).inc(),
        };
    }

    fn cache_family(&self, cache: &str, hit: bool) -> Counter {
        let result = if hit { "hit" } else { "miss" };
        self.cache.get_or_create(&CacheLabels { cache: s(cache), result: s(result) }).clone()
    }

    /// A break-glass request for denied images: `granted` or `refused`.
    pub fn break_glass(&self, tier: &str, result: &str) {
        self.break_glass.get_or_create(&TierResultLabels { tier: s(tier), result: s(result) }).inc();
    }

    /// A finding of an admitted or denied image that VEX suppressed:
    /// `status` is `not_affected` or `fixed`.
    pub fn vex_suppressed(&self, tier: &str, status: &str) {
        self.vex_suppressed.get_or_create(&TierStatusLabels { tier: s(tier), status: s(status) }).inc();
    }

    /// The age of evidence an admission relied on: `kind` is
    /// `vulnerabilities`, `tests` or `provenance`.
    pub fn evidence_age(&self, tier: &str, kind: &str, seconds: f64) {
        observe(&self.evidence_age.get_or_create(&AgeLabels { tier: s(tier), kind: s(kind) }), seconds);
    }

    /// A policy reload attempt: `success` or `rejected`.
    pub fn policy_reload(&self, result: &str) {
        self.reloads.get_or_create(&ResultLabels { result: s(result) }).inc();
    }

    /// The policy now in force; it replaces the previous one's series.
    pub fn policy_info(&self, digest: &str, source: &str) {
        let mut state = self.policy.lock().unwrap_or_else(|e| e.into_inner());
        state.info = Some(PolicyLabels { digest: s(digest), source: s(source) });
    }

    /// Time from a workload's first denial in a tier to its admission there.
    pub fn remediation(&self, tier: &str, seconds: f64) {
        observe(&self.remediation.get_or_create(&TierLabels { tier: s(tier) }), seconds);
    }

    /// Time from a scan's finish to the image's first admission in a tier.
    pub fn promotion(&self, tier: &str, seconds: f64) {
        observe(&self.promotion.get_or_create(&TierLabels { tier: s(tier) }), seconds);
    }

    pub fn audit_write_error(&self) {
        self.audit_write_errors.inc();
    }

    pub fn events_dropped(&self) {
        self.events_dropped.inc();
    }

    /// Brings `portcullis_audit_write_errors_total` and
    /// `portcullis_events_dropped_total` up to the totals the audit writer
    /// and the Event sender keep themselves (called at each scrape).
    pub fn catch_up(&self, audit_write_errors: u64, events_lost: u64) {
        let _one_at_a_time = self.catch_up.lock().unwrap_or_else(|e| e.into_inner());
        for (counter, total) in [(&self.audit_write_errors, audit_write_errors), (&self.events_dropped, events_lost)] {
            let now = counter.get();
            if total > now {
                counter.inc_by(total - now);
            }
        }
    }

    /// Gauges computed at scrape time from the policy in force: seconds until
    /// each exception expires, and the trusted roots' key validity.
    ///
    /// An exception applies through its `expires` day (UTC): it expires at
    /// the start of the next day. Exceptions with the same id and tiers (for
    /// different images) are one series, the soonest to expire. A trusted
    /// root's key of a kind without an end has no series.
    pub fn refresh(&self, policy: &crate::policy::Policy, now: DateTime<Utc>) {
        // Break-glass counts per tier exist from the first scrape (at 0).
        for tier in policy.tier_names() {
            for result in ["granted", "refused"] {
                drop(self.break_glass.get_or_create(&TierResultLabels { tier: s(tier), result: s(result) }));
            }
        }
        let mut exceptions: Vec<(ExceptionLabels, i64)> = Vec::new();
        for e in &policy.file.spec.exceptions {
            let Some(end) = e.expires.succ_opt().and_then(|d| d.and_hms_opt(0, 0, 0)) else { continue };
            let left = (end.and_utc() - now).num_seconds();
            let tiers = if e.tiers.is_empty() { s("*") } else { e.tiers.join(",") };
            let labels = ExceptionLabels { id: e.id.clone(), tiers };
            match exceptions.iter_mut().find(|(l, _)| *l == labels) {
                Some((_, v)) => *v = (*v).min(left),
                None => exceptions.push((labels, left)),
            }
        }
        let mut roots: Vec<(RootLabels, i64)> = Vec::new();
        for root in policy.trust.roots() {
            for v in &root.validity {
                let Some(until) = v.until else { continue };
                let labels = RootLabels { root: root.name.clone(), kind: s(v.kind) };
                let left = (until - now).num_seconds();
                match roots.iter_mut().find(|(l, _)| *l == labels) {
                    Some((_, old)) => *old = (*old).max(left),
                    None => roots.push((labels, left)),
                }
            }
        }
        let mut state = self.policy.lock().unwrap_or_else(|e| e.into_inner());
        state.exceptions = exceptions;
        state.roots = roots;
    }

    /// Every family in the OpenMetrics text format (see [`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "encoding the metrics");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_have_their_conventional_names() {
        let m = Metrics::new();
        m.decision("production", "denied", "vulnerabilities", 0.0123);
        m.image("production", "denied");
        m.registry_request("registry.example.com", "manifest", "200", 0.05);
        m.cache("tag", true);
        m.cache("tag", false);
        m.break_glass("production", "granted");
        m.policy_reload("rejected");
        m.audit_write_error();
        let text = m.render();
        for line in [
            "portcullis_admission_decisions_total{tier=\"production\",result=\"denied\",reason=\"vulnerabilities\"} 1",
            "portcullis_admission_duration_seconds_bucket{le=\"0.025\",tier=\"production\"} 1",
            "portcullis_admission_duration_seconds_count{tier=\"production\"} 1",
            "portcullis_image_verdicts_total{tier=\"production\",outcome=\"denied\"} 1",
            "portcullis_registry_requests_total{registry=\"registry.example.com\",operation=\"manifest\",code=\"200\"} 1",
            "portcullis_cache_requests_total{cache=\"tag\",result=\"hit\"} 1",
            "portcullis_cache_requests_total{cache=\"tag\",result=\"miss\"} 1",
            "portcullis_break_glass_total{tier=\"production\",result=\"granted\"} 1",
            "portcullis_policy_reloads_total{result=\"rejected\"} 1",
            "portcullis_audit_write_errors_total 1",
            "portcullis_events_dropped_total 0",
            concat!("portcullis_build_info{version=\"", env!("CARGO_PKG_VERSION"), "\"} 1"),
        ] {
            assert!(text.lines().any(|l| l == line), "no line {line:?} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn bad_durations_do_not_poison_histograms() {
        let m = Metrics::new();
        m.promotion("production", f64::NAN);
        m.promotion("production", f64::INFINITY);
        m.promotion("production", -5.0);
        let text = m.render();
        for line in [
            "portcullis_time_to_promotion_seconds_sum{tier=\"production\"} 0.0",
            "portcullis_time_to_promotion_seconds_count{tier=\"production\"} 1",
            "portcullis_time_to_promotion_seconds_bucket{le=\"60.0\",tier=\"production\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no line {line:?} in\n{text}");
        }
    }

    #[test]
    fn policy_info_has_one_series() {
        let m = Metrics::new();
        m.policy_info("sha256:aaa", "/etc/portcullis/policy.yaml");
        m.policy_info("sha256:bbb", "/etc/portcullis/policy.yaml");
        let text = m.render();
        let series: Vec<&str> = text.lines().filter(|l| l.starts_with("portcullis_policy_info")).collect();
        assert_eq!(series, ["portcullis_policy_info{digest=\"sha256:bbb\",source=\"/etc/portcullis/policy.yaml\"} 1"]);
        assert!(text.contains("# TYPE portcullis_policy info"), "{text}");
    }

    #[test]
    fn exceptions_count_down_to_the_end_of_their_last_day() {
        use crate::policy::{ExceptionSpec, Policy, EMBEDDED_DEFAULT};
        let exception = |id: &str, tiers: &[&str], image: &str, expires: &str| ExceptionSpec {
            id: id.into(),
            images: vec![image.into()],
            tiers: tiers.iter().map(|t| t.to_string()).collect(),
            expires: expires.parse().unwrap(),
            reason: "r".into(),
            approved_by: "a".into(),
        };
        let mut policy = Policy::from_yaml(EMBEDDED_DEFAULT, "default").unwrap();
        policy.file.spec.exceptions = vec![
            exception("CVE-1", &[], "a/*", "2026-01-10"),
            exception("CVE-2", &["dev", "prod"], "a/*", "2026-01-01"),
            exception("CVE-2", &["dev", "prod"], "b/*", "2026-03-01"),
        ];
        let m = Metrics::new();
        let now = DateTime::parse_from_rfc3339("2026-01-02T00:00:00Z").unwrap().with_timezone(&Utc);
        m.refresh(&policy, now);
        let text = m.render();
        let series: Vec<&str> = text.lines().filter(|l| l.starts_with("portcullis_exception_expiry_seconds")).collect();
        assert_eq!(
            series,
            [
                "portcullis_exception_expiry_seconds{id=\"CVE-1\",tiers=\"*\"} 777600",
                "portcullis_exception_expiry_seconds{id=\"CVE-2\",tiers=\"dev,prod\"} 0",
            ],
            "{text}"
        );
        // A policy without exceptions leaves none behind.
        policy.file.spec.exceptions.clear();
        m.refresh(&policy, now);
        assert!(!m.render().contains("portcullis_exception_expiry_seconds"));
    }
}
