//! Promotion does not end at admission: one replica (the Lease holder)
//! re-judges every distinct running image on a schedule, and at once when
//! the policy changes, with the same engine, caches and registry bounds as
//! admission, against the evidence in the registry now. What it finds
//! becomes a `PolicyReport` per namespace (`wgpolicyk8s.io/v1alpha2`, the
//! format Kyverno, Kubewarden and policy-reporter read), an Event on each
//! workload whose status changes, and metrics.
//!
//! The Pods are read through a reflector (a watched cache, no API call per
//! Pod). What a pass decides is pure
//! ([`policy_report`](crate::watch::policy_report::policy_report), [`Memory::update`]);
//! the loop around it does the I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use crate::watch::running::Pod;
use chrono::{DateTime, Utc};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};

use crate::cluster::events::Notice;
use crate::cluster::leader::Leader;
use crate::kinds::ObjectId;
use crate::watch::memory::{key, Changes, Memory};
use crate::watch::policy_report::{object_ref, write_reports, WriteError};
use crate::watch::report::{Row, Status};
use crate::webhook::AppState;

/// Longest one pass may take; lookups past it count as errors this time.
const PASS_BUDGET: Duration = Duration::from_secs(300);
/// How often the loop looks at the lead and at the policy in force: a new
/// leader, or a new policy, is passed within this.
const POLICY_LOOK: Duration = Duration::from_secs(1);

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

/// What the Pod cache keeps of each Pod beyond what [`Pod`] reads at all:
/// not its managed fields, annotations or finalizers (often most of its
/// metadata), nor the names of volumes that hold no image.
pub fn trim(p: &mut Pod) {
    let m = &mut p.metadata;
    m.managed_fields = None;
    m.annotations = None;
    m.finalizers = None;
    p.spec.volumes.retain(|v| v.image.is_some());
}

/// Starts the Pod reflector, the Lease and the loop.
pub fn start(st: Arc<AppState>, client: Client, cfg: Config) {
    let (store, writer) = reflector::store();
    let stream = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .modify(trim)
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
        let requests_before = st.gate.engine().registry_requests();
        let policy = st.policy();
        judged_by = Some(policy.digest.clone());
        let pods: Vec<Arc<Pod>> = store
            .state()
            .into_iter()
            .filter(|p| !p.metadata.namespace.as_ref().is_some_and(|ns| skip.contains(ns)))
            .collect();
        let rows = judge(&st.gate, st.pull_secrets.as_ref(), &pods).await;
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
            registry_requests = st.gate.engine().registry_requests() - requests_before,
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
    let Some(kind) = rollback::Workload::of(&workload.kind) else {
        tracing::info!(%namespace, %workload, "onViolation acts on Deployments, StatefulSets and DaemonSets only; reported");
        return;
    };
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
        if let Err(e) =
            rollback::annotate(client, namespace, kind, workload, rollback::VIOLATION_ANNOTATION, &note).await
        {
            tracing::warn!(error = %e, %namespace, %workload, "could not annotate the workload");
        }
        return;
    }
    let rollback::History { current, running, revisions } =
        match rollback::revisions(client, namespace, kind, workload).await {
            Ok(h) => h,
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
    // Through the gate, as admission would judge them today: a reference
    // that does not parse is a failing verdict, never a revision to go to.
    let judgement = st
        .gate
        .judge(crate::gate::Ask {
            place: crate::gate::Place::Tier(tier),
            what: format!("the revisions of {workload}"),
            images: images.iter().map(|i| crate::gate::Written::new(i, "a revision's image")).collect(),
            max_images: None,
            keychain: Default::default(),
            break_glass: Default::default(),
            deadline: tokio::time::Instant::now() + PASS_BUDGET,
            vex: &[],
        })
        .await;
    let passing: BTreeSet<&str> =
        judgement.decision.verdicts.iter().filter(|v| Status::of(v).passes()).map(|v| v.image.as_str()).collect();
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
        chosen.number, chosen.kept_in
    );
    match rollback::roll_back(client, namespace, kind, workload, chosen.template.clone(), &note).await {
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
                    kept_in: chosen.kept_in.clone(),
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

/// Every running image of `pods`, judged in its namespace's tier: a pass's
/// rows (what `make bench` times over ten thousand Pods).
pub async fn judge(
    gate: &crate::gate::Gate,
    pull_secrets: Option<&crate::cluster::PullSecrets>,
    pods: &[Arc<Pod>],
) -> Vec<Row> {
    let policy = gate.policy();
    let mut running = Vec::new();
    for r in crate::watch::running::images(pods.iter().map(|p| p.as_ref())) {
        let tier = gate.tiers().tier_of(&r.namespace, &policy).await.map_err(|e| e.to_string());
        running.push((r, tier));
    }
    let deadline = tokio::time::Instant::now() + PASS_BUDGET;
    crate::watch::report::judge(gate, pull_secrets, running, deadline).await
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
    let bases: Vec<_> = crate::watch::report::base_images(rows)
        .into_iter()
        .map(|b| (b.tier, b.current as f64 / b.known.max(1) as f64))
        .collect();
    st.metrics.running_with_bases(&counts, &verified, &oldest, &bases);
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// Whatever the cache drops, a pass sees the same running images.
    #[test]
    fn a_trimmed_pod_runs_the_same_images() {
        let digest = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-7d9-x1", "namespace": "shop", "labels": {"pod-template-hash": "7d9"},
                "annotations": {"a": "b"}, "finalizers": ["f"],
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9", "uid": "u", "controller": true}],
                "managedFields": [{"manager": "m", "operation": "Update"}]},
            "spec": {
                "containers": [{"name": "app", "image": "r.example/app:1", "env": [{"name": "A", "value": "1"}]},
                               {"name": "side", "image": format!("r.example/side@{}", digest('b'))}],
                "initContainers": [{"name": "migrate", "image": "r.example/migrate:2", "command": ["m"]}],
                "ephemeralContainers": [{"name": "debug", "image": "r.example/debug:3"}],
                "volumes": [{"name": "models", "image": {"reference": format!("r.example/models@{}", digest('c'))}},
                            {"name": "token", "projected": {"sources": []}}],
                "imagePullSecrets": [{"name": "pull"}],
                "serviceAccountName": "web",
                "tolerations": [{"key": "k", "operator": "Exists"}]
            },
            "status": {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [
                    {"name": "app", "image": "r.example/app:1", "imageID": format!("r.example/app@{}", digest('a')), "ready": true, "restartCount": 0}
                ],
                "initContainerStatuses": [
                    {"name": "migrate", "image": "r.example/migrate:2", "imageID": format!("docker-pullable://r.example/migrate@{}", digest('d')), "ready": false, "restartCount": 1}
                ]
            }
        }))
        .unwrap();
        let mut trimmed = pod.clone();
        trim(&mut trimmed);
        let before = crate::watch::running::images([&pod]);
        assert_eq!(before.len(), 5, "{before:?}");
        assert_eq!(crate::watch::running::images([&trimmed]), before);
        let kept = serde_json::to_string(&trimmed).unwrap();
        for gone in
            ["managedFields", "annotations", "finalizers", "env", "command", "token", "tolerations", "conditions"]
        {
            assert!(!kept.contains(gone), "{gone} is kept: {kept}");
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
