//! Promotion does not end at admission: one replica (the Lease holder)
//! re-judges every distinct running image on a schedule, and at once when
//! the policy changes, with the same engine, caches and registry bounds as
//! admission, against the evidence in the registry now. What it finds
//! becomes a `PolicyReport` per namespace (`wgpolicyk8s.io/v1alpha2`, the
//! format Kyverno, Kubewarden and policy-reporter read), an Event on each
//! workload whose status changes, and metrics.
//!
//! The Pods are read through a reflector (a watched cache, no API call per
//! Pod). What a pass decides is pure ([`policy_report`], [`Memory::update`]);
//! the loop around it does the I/O.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use serde_json::{json, Value};

use crate::cluster::events::Notice;
use crate::cluster::leader::Leader;
use crate::kinds::{self, ObjectId};
use crate::watch::report::{Row, Status};
use crate::watch::running::RunningImage;
use crate::webhook::AppState;

/// The name of the PolicyReport Portcullis writes in each namespace.
pub const REPORT_NAME: &str = "portcullis";
/// The field manager of its server-side applies.
const MANAGER: &str = "portcullis";
/// Longest one pass may take; lookups past it count as errors this time.
const PASS_BUDGET: Duration = Duration::from_secs(300);
/// How often the loop looks at the lead and at the policy in force: a new
/// leader, or a new policy, is passed within this.
const POLICY_LOOK: Duration = Duration::from_secs(1);

/// The PolicyReport API.
fn report_api() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("wgpolicyk8s.io", "v1alpha2", "PolicyReport"))
}

/// The PolicyReport of one namespace: one result per workload and image,
/// with the same reasons as an admission denial.
pub fn policy_report(namespace: &str, rows: &[&Row], policy_digest: &str, now: DateTime<Utc>) -> Value {
    let mut summary: BTreeMap<&str, u64> =
        ["pass", "fail", "warn", "error", "skip"].into_iter().map(|k| (k, 0)).collect();
    let results: Vec<Value> = rows
        .iter()
        .map(|r| {
            let result = match r.status {
                Status::Compliant => "pass",
                Status::ExceptionExpiring => "warn",
                Status::ScanStale | Status::Unverified | Status::Violating => "fail",
                Status::Error => "error",
            };
            *summary.entry(result).or_default() += 1;
            let message = match r.status {
                Status::Compliant => {
                    format!("{} passes tier {}", r.running.reference(), r.tier.as_deref().unwrap_or("-"))
                }
                _ => crate::policy::decide::truncate(&r.why(), 2048),
            };
            let mut properties = serde_json::Map::new();
            properties.insert("image".into(), json!(r.running.image));
            if let Some(d) = &r.running.digest {
                properties.insert("digest".into(), json!(d.as_str()));
            }
            properties.insert("status".into(), json!(r.status.as_str()));
            if let Some(t) = &r.tier {
                properties.insert("tier".into(), json!(t));
            }
            if let Some(v) = &r.verdict {
                let reasons: Vec<&str> = v.reasons.iter().map(|x| x.as_str()).collect();
                if !reasons.is_empty() {
                    properties.insert("reasons".into(), json!(reasons.join(",")));
                }
                if !v.evidence.is_empty() {
                    properties.insert("evidence".into(), json!(v.evidence.join(",")));
                }
            }
            properties.insert("policyDigest".into(), json!(policy_digest));
            json!({
                "policy": format!("portcullis/{}", r.tier.as_deref().unwrap_or("none")),
                "rule": "promotion",
                "category": "Supply chain",
                "source": "portcullis",
                "result": result,
                "scored": true,
                "message": message,
                "timestamp": {"seconds": now.timestamp(), "nanos": 0},
                "resources": [workload_ref(namespace, &r.running.workload)],
                "properties": properties,
            })
        })
        .collect();
    json!({
        "apiVersion": "wgpolicyk8s.io/v1alpha2",
        "kind": "PolicyReport",
        "metadata": {
            "name": REPORT_NAME,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "portcullis"},
        },
        "summary": summary,
        "results": results,
    })
}

/// A workload (`Deployment/shop`) as an object reference.
fn workload_ref(namespace: &str, workload: &ObjectId) -> Value {
    serde_json::to_value(object_ref(namespace, workload)).unwrap_or(Value::Null)
}

fn object_ref(namespace: &str, workload: &ObjectId) -> ObjectReference {
    let api_version = kinds::named(&workload.kind).map(|k| k.api_version()).unwrap_or_else(|| "v1".into());
    ObjectReference {
        api_version: Some(api_version),
        kind: Some(workload.kind.clone()),
        name: Some(workload.name.clone()),
        namespace: Some(namespace.into()),
        ..Default::default()
    }
}

/// What one replica remembers between passes: each running image's last
/// status, and since when it has been failing.
#[derive(Default)]
pub struct Memory {
    last: HashMap<Key, (Status, Option<DateTime<Utc>>)>,
    /// Namespaces given a report, so that one whose workloads are gone is emptied.
    reported: BTreeSet<String>,
    /// Workloads acted on (annotated, rolled back, or found with no revision
    /// to roll back to) for their ongoing violation: acted on once.
    acted: BTreeSet<(String, ObjectId)>,
}

type Key = (String, ObjectId, String, Option<String>);

fn key(r: &RunningImage) -> Key {
    (r.namespace.clone(), r.workload.clone(), r.image.clone(), r.digest.as_ref().map(|d| d.to_string()))
}

/// What a pass changed.
#[derive(Debug, Default, PartialEq)]
pub struct Changes {
    /// Workload images whose status changed since the last pass (not those
    /// seen for the first time).
    pub changed: Vec<(RunningImage, Status, Status)>,
    /// Per tier: the oldest ongoing failure's start.
    pub failing_since: BTreeMap<String, DateTime<Utc>>,
}

impl Memory {
    /// Remembers this pass's rows; answers what changed.
    pub fn update(&mut self, rows: &[Row], now: DateTime<Utc>) -> Changes {
        let mut out = Changes::default();
        let mut next = HashMap::new();
        for r in rows {
            let k = key(&r.running);
            let before = self.last.get(&k);
            let since = match (r.status.passes(), before) {
                (true, _) => None,
                (false, Some((_, Some(since)))) => Some(*since),
                (false, _) => Some(now),
            };
            if let Some((was, _)) = before {
                if *was != r.status {
                    out.changed.push((r.running.clone(), *was, r.status));
                }
            }
            if let (Some(since), Some(tier)) = (since, &r.tier) {
                let oldest = out.failing_since.entry(tier.clone()).or_insert(since);
                *oldest = (*oldest).min(since);
            }
            next.insert(k, (r.status, since));
        }
        self.last = next;
        let failing: BTreeSet<(String, ObjectId)> = rows
            .iter()
            .filter(|r| !r.status.passes())
            .map(|r| (r.running.namespace.clone(), r.running.workload.clone()))
            .collect();
        self.acted.retain(|w| failing.contains(w));
        out
    }

    /// Since when `r` has been failing, as last remembered.
    pub fn since(&self, r: &Row) -> Option<DateTime<Utc>> {
        self.last.get(&key(&r.running)).and_then(|(_, since)| *since)
    }

    /// The workloads whose violation, in a tier that acts on it
    /// (`onViolation` other than `report`), has lasted its grace and has
    /// not been acted on; with their tier and failing rows. Registry errors
    /// are no violation.
    pub fn due<'r>(
        &self,
        rows: &'r [Row],
        policy: &crate::policy::Policy,
        now: DateTime<Utc>,
    ) -> BTreeMap<(String, ObjectId), (String, crate::policy::OnViolation, Vec<&'r Row>)> {
        let mut out: BTreeMap<(String, ObjectId), (String, crate::policy::OnViolation, Vec<&'r Row>)> = BTreeMap::new();
        for r in rows.iter().filter(|r| !r.status.passes() && r.status != Status::Error) {
            let Some(tier) = &r.tier else { continue };
            let Some(spec) = policy.tier(tier) else { continue };
            if spec.on_violation == crate::policy::OnViolation::Report {
                continue;
            }
            let grace = spec.violation_grace.map(|g| g.delta()).unwrap_or_default();
            let Some(since) = self.since(r) else { continue };
            let workload = (r.running.namespace.clone(), r.running.workload.clone());
            if now - since < grace || self.acted.contains(&workload) {
                continue;
            }
            out.entry(workload).or_insert_with(|| (tier.clone(), spec.on_violation, vec![])).2.push(r);
        }
        out
    }
}

/// Whether this replica passes now: only while it leads, and then at once
/// when it has not passed since it took the lead (`judged_by` is the policy
/// of its last pass as leader), when the policy in force changed since, or
/// when the interval has run out.
fn pass_due(
    leading: bool,
    judged_by: Option<&crate::image::Digest>,
    in_force: &crate::image::Digest,
    interval_over: bool,
) -> bool {
    leading && (judged_by != Some(in_force) || interval_over)
}

/// How the loop runs.
pub struct Config {
    pub every: Duration,
    /// The Lease's namespace (Portcullis' own).
    pub lease_namespace: String,
    /// This replica's name (the Pod's).
    pub identity: String,
    /// Namespaces never judged (those the webhook is not sent, Portcullis'
    /// own among them).
    pub skip: Vec<String>,
}

/// Starts the Pod reflector, the Lease and the loop.
pub fn start(st: Arc<AppState>, client: Client, cfg: Config) {
    let (store, writer) = reflector::store();
    let stream = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .modify(|p: &mut Pod| {
            // Only what a pass reads is kept.
            p.metadata.managed_fields = None;
            p.metadata.annotations = None;
        })
        .reflect(writer)
        .applied_objects();
    tokio::spawn(async move {
        use futures::StreamExt;
        futures::pin_mut!(stream);
        while let Some(ev) = stream.next().await {
            if let Err(e) = ev {
                tracing::warn!(error = %e, "pod watch error; retrying");
            }
        }
    });
    let leader = Leader::start(client.clone(), &cfg.lease_namespace, "portcullis-reevaluation", cfg.identity.clone());
    let mut skip = cfg.skip;
    if !skip.contains(&cfg.lease_namespace) {
        skip.push(cfg.lease_namespace);
    }
    tokio::spawn(run(st, client, store, leader, cfg.every, skip));
}

async fn run(st: Arc<AppState>, client: Client, store: Store<Pod>, leader: Leader, every: Duration, skip: Vec<String>) {
    if store.wait_until_ready().await.is_err() {
        tracing::error!("the Pod cache never became ready: no re-evaluation");
        return;
    }
    let mut memory = Memory::default();
    let mut judged_by: Option<crate::image::Digest> = None;
    let mut next = tokio::time::Instant::now();
    let mut reports = true;
    loop {
        let leading = leader.is_leader();
        if !leading {
            // A replica that leads again passes at once.
            judged_by = None;
        }
        let now = tokio::time::Instant::now();
        if !pass_due(leading, judged_by.as_ref(), &st.policy().digest, now >= next) {
            tokio::time::sleep(POLICY_LOOK.min(every)).await;
            continue;
        }
        next = now + jittered(every);
        let started = std::time::Instant::now();
        let requests_before = st.engine.registry_requests();
        let policy = st.policy();
        judged_by = Some(policy.digest.clone());
        let pods: Vec<Arc<Pod>> = store
            .state()
            .into_iter()
            .filter(|p| !p.metadata.namespace.as_ref().is_some_and(|ns| skip.contains(ns)))
            .collect();
        let rows = judge(&st, &pods).await;
        let now = crate::webhook::portcullis_now();
        let changes = memory.update(&rows, now);
        publish_metrics(&st, &rows, &changes, now);
        for (running, was, is) in &changes.changed {
            if let Some(events) = &st.events {
                events.publish(Notice::new(
                    object_ref(&running.namespace, &running.workload),
                    if is.passes() { "PromotionCompliant" } else { "PromotionViolation" },
                    "Reevaluated",
                    format!(
                        "{} went from {} to {} in its tier{}",
                        running.reference(),
                        was.as_str(),
                        is.as_str(),
                        rows.iter()
                            .find(|r| key(&r.running) == key(running))
                            .filter(|r| !r.status.passes())
                            .map(|r| format!(": {}", r.why()))
                            .unwrap_or_default()
                    ),
                ));
            }
        }
        for ((namespace, workload), (tier, action, failing)) in memory.due(&rows, &policy, now) {
            memory.acted.insert((namespace.clone(), workload.clone()));
            act(&st, &client, &policy, &namespace, &workload, &tier, action, &failing, now).await;
        }
        let result = if reports {
            match write_reports(&client, &rows, &mut memory, &policy.digest.to_string(), now).await {
                Ok(()) => "success",
                Err(WriteError::NoCrd) => {
                    tracing::warn!("the PolicyReport CRD (wgpolicyk8s.io/v1alpha2) is not installed: re-evaluation reports only metrics and Events (see manifests/optional/)");
                    reports = false;
                    "success"
                }
                Err(WriteError::Api(e)) => {
                    tracing::warn!(error = %e, "could not write a PolicyReport");
                    "error"
                }
            }
        } else {
            "success"
        };
        let failing = rows.iter().filter(|r| !r.status.passes()).count();
        tracing::info!(
            images = rows.len(),
            failing,
            registry_requests = st.engine.registry_requests() - requests_before,
            ms = started.elapsed().as_millis() as u64,
            "re-evaluation pass"
        );
        st.metrics.reevaluation(result, started.elapsed().as_secs_f64());
    }
}

/// Annotates or rolls back one workload whose violation is due.
#[allow(clippy::too_many_arguments)]
async fn act(
    st: &AppState,
    client: &Client,
    policy: &Arc<crate::policy::Policy>,
    namespace: &str,
    workload: &ObjectId,
    tier: &str,
    action: crate::policy::OnViolation,
    failing: &[&Row],
    now: DateTime<Utc>,
) {
    use crate::watch::rollback;
    if workload.kind != kinds::DEPLOYMENT.kind {
        tracing::info!(%namespace, %workload, "onViolation acts on Deployments only; reported");
        return;
    }
    let name = workload.name.as_str();
    let why: Vec<String> = failing.iter().map(|r| format!("{}: {}", r.running.reference(), r.why())).collect();
    let why = why.join(" | ");
    let at = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let event = |reason: &'static str, note: String| {
        if let Some(events) = &st.events {
            events.publish(Notice::new(object_ref(namespace, workload), reason, "Reevaluated", note));
        }
    };
    if action == crate::policy::OnViolation::Annotate {
        let note = format!("{} since {at} in tier {tier}: {why}", failing[0].status.as_str());
        if let Err(e) = rollback::annotate(client, namespace, name, rollback::VIOLATION_ANNOTATION, &note).await {
            tracing::warn!(error = %e, %namespace, %workload, "could not annotate the workload");
        }
        return;
    }
    let (current, running, revisions) = match rollback::revisions(client, namespace, name).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, %namespace, %workload, "cannot roll back");
            event("RollbackFailed", format!("Portcullis could not roll back: {e}"));
            return;
        }
    };
    // Judge every image of every previous revision, as admission would today.
    let mut images: Vec<String> = revisions.iter().flat_map(|r| r.images.clone()).collect();
    images.sort();
    images.dedup();
    let refs: Vec<crate::image::ImageRef> =
        images.iter().filter_map(|i| crate::image::ImageRef::parse(i).ok()).collect();
    let deadline = tokio::time::Instant::now() + PASS_BUDGET;
    // `due` hands over only tiers the policy defines.
    let Some(tier) = policy.tier_name(tier) else { return };
    let verdicts = st.engine.evaluate_images(policy, &tier, &refs, &Default::default(), now, deadline).await;
    let passing: BTreeSet<&str> =
        verdicts.iter().filter(|v| Status::of(v).passes()).map(|v| v.image.as_str()).collect();
    let chosen = match rollback::choose(&revisions, current, |i| passing.contains(i)) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, %namespace, %workload, "cannot roll back");
            event("RollbackFailed", format!("Portcullis did not roll back: {e}"));
            return;
        }
    };
    let Some(chosen) = chosen else {
        tracing::warn!(%namespace, %workload, "no previous revision passes: reported, not rolled back");
        event(
            "RollbackImpossible",
            format!("no previous revision of {workload} passes tier {tier} today, so it is not rolled back: {why}"),
        );
        return;
    };
    let note = format!(
        "rolled back by Portcullis at {at} from revision {current} to {} ({}): {why}",
        chosen.number, chosen.replica_set
    );
    match rollback::roll_back(client, namespace, name, chosen.template.clone(), &note).await {
        Ok(()) => {
            tracing::warn!(%namespace, %workload, from = current, to = chosen.number, "rolled back");
            st.audit
                .write(rollback::RolledBack {
                    action: "rollback",
                    time: at.clone(),
                    namespace: namespace.to_string(),
                    workload: workload.clone(),
                    tier: tier.to_string(),
                    from_revision: current,
                    to_revision: chosen.number,
                    replica_set: chosen.replica_set.clone(),
                    images_from: running,
                    images_to: chosen.images.clone(),
                    why: why.clone(),
                    policy_digest: policy.digest.to_string(),
                })
                .await;
            event("RolledBack", note);
        }
        Err(e) => {
            tracing::warn!(error = %e, %namespace, %workload, "rollback failed");
            event("RollbackFailed", format!("Portcullis could not roll back to revision {}: {e}", chosen.number));
        }
    }
}

/// `every`, give or take a tenth (from the sub-second clock, which is
/// random enough to spread replicas restarted together).
fn jittered(every: Duration) -> Duration {
    let tenth = every.as_millis() / 10;
    if tenth == 0 {
        return every;
    }
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
    let offset = (u128::from(nanos) % (2 * tenth)) as i128 - tenth as i128;
    Duration::from_millis((every.as_millis() as i128 + offset).max(1) as u64)
}

/// Every running image, judged in its namespace's tier.
async fn judge(st: &AppState, pods: &[Arc<Pod>]) -> Vec<Row> {
    let policy = st.policy();
    let mut running = Vec::new();
    for r in crate::watch::running::images(pods.iter().map(|p| p.as_ref())) {
        let tier = st.tiers.tier_of(&r.namespace, &policy).await.map_err(|e| e.to_string());
        running.push((r, tier));
    }
    let deadline = tokio::time::Instant::now() + PASS_BUDGET;
    crate::watch::report::judge(&st.engine, &policy, running, crate::webhook::portcullis_now(), deadline).await
}

fn publish_metrics(st: &AppState, rows: &[Row], changes: &Changes, now: DateTime<Utc>) {
    let mut counts: BTreeMap<(String, String), i64> = BTreeMap::new();
    let mut verified: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for r in rows {
        let tier = r.tier.clone().unwrap_or_else(|| "none".into());
        *counts.entry((tier.clone(), r.status.as_str().to_string())).or_default() += 1;
        let v = verified.entry(tier).or_default();
        v.1 += 1;
        if !matches!(r.status, Status::Unverified | Status::Error) {
            v.0 += 1;
        }
    }
    let counts: Vec<_> = counts.into_iter().map(|((t, s), n)| (t, s, n)).collect();
    let verified: Vec<_> = verified.into_iter().map(|(t, (ok, all))| (t, ok as f64 / all.max(1) as f64)).collect();
    let oldest: Vec<_> =
        changes.failing_since.iter().map(|(t, since)| (t.clone(), (now - *since).num_seconds().max(0))).collect();
    st.metrics.running(&counts, &verified, &oldest);
}

enum WriteError {
    NoCrd,
    Api(kube::Error),
}

/// One PolicyReport per namespace with running images; an emptied one for
/// a namespace that had a report and has none now.
async fn write_reports(
    client: &Client,
    rows: &[Row],
    memory: &mut Memory,
    policy_digest: &str,
    now: DateTime<Utc>,
) -> Result<(), WriteError> {
    let mut by_ns: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
    for r in rows {
        by_ns.entry(r.running.namespace.as_str()).or_default().push(r);
    }
    let gone: Vec<String> = memory.reported.iter().filter(|ns| !by_ns.contains_key(ns.as_str())).cloned().collect();
    for ns in &gone {
        by_ns.insert(ns.as_str(), vec![]);
    }
    let ar = report_api();
    let params = PatchParams::apply(MANAGER).force();
    let mut result = Ok(());
    let mut reported = BTreeSet::new();
    for (ns, rows) in by_ns {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
        let report = policy_report(ns, &rows, policy_digest, now);
        match api.patch(REPORT_NAME, &params, &Patch::Apply(&report)).await {
            Ok(_) => {
                if !rows.is_empty() {
                    reported.insert(ns.to_string());
                }
            }
            // The namespace exists (its Pods do): only the resource can be missing.
            Err(kube::Error::Api(s)) if s.code == 404 => return Err(WriteError::NoCrd),
            Err(e) => result = Err(WriteError::Api(e)),
        }
    }
    memory.reported = reported;
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Reason, Verdict};

    fn running(workload: &str) -> RunningImage {
        RunningImage {
            namespace: "shop".into(),
            workload: workload.parse().unwrap(),
            image: "r.example/api:1".into(),
            digest: None,
            pods: vec!["p".into()],
        }
    }

    fn row(workload: &str, problems: &[&str], reasons: &[Reason]) -> Row {
        Row::judged(
            running(workload),
            "production".into(),
            Verdict {
                problems: problems.iter().map(|s| s.to_string()).collect(),
                reasons: reasons.to_vec(),
                ..Default::default()
            },
        )
    }

    fn at(h: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-06-01T00:00:00Z").unwrap().with_timezone(&Utc) + chrono::Duration::hours(h)
    }

    #[test]
    fn a_report_per_namespace_with_one_result_per_workload_image() {
        let rows = [
            row("Deployment/ok", &[], &[]),
            row("Deployment/bad", &["1 critical vulnerability exceeds the limit 0"], &[Reason::Vulnerabilities]),
        ];
        let refs: Vec<&Row> = rows.iter().collect();
        let r = policy_report("shop", &refs, "sha256:abc", at(0));
        assert_eq!(r["metadata"]["name"], REPORT_NAME);
        assert_eq!(r["summary"], json!({"pass": 1, "fail": 1, "warn": 0, "error": 0, "skip": 0}));
        let bad = &r["results"][1];
        assert_eq!(bad["result"], "fail");
        assert_eq!(bad["policy"], "portcullis/production");
        assert_eq!(bad["message"], "1 critical vulnerability exceeds the limit 0");
        assert_eq!(
            bad["resources"][0],
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "bad", "namespace": "shop"})
        );
        assert_eq!(bad["properties"]["status"], "violating");
        assert_eq!(bad["properties"]["reasons"], "vulnerabilities");
        assert_eq!(r["results"][0]["result"], "pass");
        assert_eq!(r["results"][0]["message"], "r.example/api:1 passes tier production");
        let empty = policy_report("gone", &[], "sha256:abc", at(0));
        assert_eq!(empty["results"], json!([]));
    }

    #[test]
    fn memory_names_changes_and_how_long_failures_last() {
        let mut m = Memory::default();
        let ok = row("Deployment/api", &[], &[]);
        let bad = row("Deployment/api", &["2 critical"], &[Reason::Vulnerabilities]);
        // First sight: no change to report, even failing.
        let c = m.update(std::slice::from_ref(&ok), at(0));
        assert!(c.changed.is_empty() && c.failing_since.is_empty());
        // A new CVE: compliant -> violating, failing since now.
        let c = m.update(std::slice::from_ref(&bad), at(1));
        assert_eq!(c.changed.len(), 1);
        assert_eq!((c.changed[0].1, c.changed[0].2), (Status::Compliant, Status::Violating));
        assert_eq!(c.failing_since["production"], at(1));
        // Still failing: no change, and the start stays.
        let c = m.update(std::slice::from_ref(&bad), at(5));
        assert!(c.changed.is_empty());
        assert_eq!(c.failing_since["production"], at(1));
        // Fixed.
        let c = m.update(&[ok], at(6));
        assert_eq!((c.changed[0].1, c.changed[0].2), (Status::Violating, Status::Compliant));
        assert!(c.failing_since.is_empty());
        // Gone, then back failing: seen anew, no change reported.
        m.update(&[], at(7));
        let c = m.update(&[bad], at(8));
        assert!(c.changed.is_empty());
        assert_eq!(c.failing_since["production"], at(8));
    }

    #[test]
    fn violations_are_acted_on_once_after_their_grace() {
        let policy = crate::policy::Policy::from_yaml(
            "apiVersion: portcullis.dev/v1alpha1\nkind: PromotionPolicy\nspec:\n  signers: {}\n  tiers:\n    production: { onViolation: rollback, violationGrace: 2h }\n    staging: {}\n",
            "test",
        )
        .unwrap();
        let mut m = Memory::default();
        let bad = row("Deployment/api", &["2 critical"], &[Reason::Vulnerabilities]);
        let mut reported_only = bad.clone();
        reported_only.tier = Some("staging".into());
        reported_only.running.workload = ObjectId::new("Deployment", "web");
        let rows = [bad.clone(), reported_only];
        m.update(&rows, at(0));
        assert!(m.due(&rows, &policy, at(1)).is_empty(), "inside its grace");
        m.update(&rows, at(2));
        let due = m.due(&rows, &policy, at(2));
        let keys: Vec<_> = due.keys().cloned().collect();
        assert_eq!(keys, vec![("shop".to_string(), ObjectId::new("Deployment", "api"))], "staging only reports");
        let (tier, action, failing) = &due[&keys[0]];
        assert_eq!((tier.as_str(), *action, failing.len()), ("production", crate::policy::OnViolation::Rollback, 1));
        m.acted.insert(keys[0].clone());
        m.update(&rows, at(3));
        assert!(m.due(&rows, &policy, at(3)).is_empty(), "acted on once");
        // Fixed, then failing again: a new violation, with its own grace.
        let fixed = [row("Deployment/api", &[], &[])];
        m.update(&fixed, at(4));
        m.update(&rows, at(5));
        assert!(m.due(&rows, &policy, at(6)).is_empty());
        assert_eq!(m.due(&rows, &policy, at(7)).len(), 1);
        // A registry error is no violation.
        let mut error = bad;
        error.status = Status::Error;
        let errors = [error];
        m.update(&errors, at(8));
        assert!(m.due(&errors, &policy, at(20)).is_empty());
    }

    #[test]
    fn passes_at_once_on_taking_the_lead_and_on_a_new_policy() {
        let (a, b) = (crate::image::Digest::of(b"policy a"), crate::image::Digest::of(b"policy b"));
        // (case, leading, policy of the last pass as leader, interval over, pass now)
        let rows: &[(&str, bool, Option<&crate::image::Digest>, bool, bool)] = &[
            ("not leading", false, None, true, false),
            ("just took the lead, interval not over", true, None, false, true),
            ("passed under this policy, interval not over", true, Some(&a), false, false),
            ("passed under this policy, interval over", true, Some(&a), true, true),
            ("the policy changed since the last pass", true, Some(&b), false, true),
        ];
        for (case, leading, judged_by, over, due) in rows {
            assert_eq!(pass_due(*leading, *judged_by, &a, *over), *due, "{case}");
        }
    }

    #[test]
    fn jitter_stays_within_a_tenth() {
        for _ in 0..100 {
            let d = jittered(Duration::from_secs(3600));
            assert!(d >= Duration::from_secs(3240) && d <= Duration::from_secs(3960), "{d:?}");
        }
        assert_eq!(jittered(Duration::from_millis(5)), Duration::from_millis(5));
    }
}
