//! Part 6, re-evaluation at scale: one pass over 10,000 running Pods with
//! 2,000 distinct images, as the Lease holder runs it, in a process of its
//! own (this program again, `PORTCULLIS_BENCH_REEVALUATION=DIR`) so that
//! its peak memory is its own.
//!
//! The Pods reach the reflector's store through its `Writer`, as the watch
//! would deliver them (trimmed as `serve` trims them); no API server is
//! needed for the pass itself, which reads only that store and the
//! registry. The PolicyReports it would write are built as it builds them,
//! and counted: one server-side apply each.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::runtime::{reflector, watcher};
use portcullis::watch::running::Pod;
use serde_json::json;

/// Running Pods, their distinct images, the workloads (Deployments) that
/// run them and the namespaces they are in.
pub const PODS: usize = 10_000;
pub const IMAGES: usize = 2_000;
pub const WORKLOADS: usize = 2_000;
pub const NAMESPACES: usize = 200;

/// The namespace of workload `w`: half of them production, half development.
pub fn namespace(w: usize) -> String {
    format!("team-{}", w % NAMESPACES)
}

/// The policy `base` with a tier for every bench namespace.
pub fn policy(base: &str) -> String {
    let mut tiers = String::new();
    for n in 0..NAMESPACES {
        let tier = if n % 2 == 0 { "production" } else { "development" };
        tiers.push_str(&format!("    team-{n}: {tier}\n"));
    }
    base.replacen("  namespaceTiers:\n", &format!("  namespaceTiers:\n{tiers}"), 1)
}

/// A running Pod of workload `w` (replica `r`) running `image`, shaped as
/// the API server serves one (managed fields, annotations, a projected
/// token volume, the default tolerations, conditions and its container's
/// status with the digest pulled), read from its JSON text as the watch
/// reads it.
fn pod(w: usize, r: usize, image: &str) -> Pod {
    let digest = image.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
    let (app, hash) = (format!("app-{w}"), format!("{:010x}", w * 7919));
    let name = format!("{app}-{hash}-{r:05}");
    let time = "2026-12-01T10:00:00Z";
    let conditions: Vec<_> = ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"]
        .iter()
        .map(|t| json!({"type": t, "status": "True", "lastProbeTime": null, "lastTransitionTime": time}))
        .collect();
    let managed = json!({"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1", "time": time,
        "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:generateName": {}, "f:labels": {".": {}, "f:app": {}, "f:pod-template-hash": {}},
        "f:ownerReferences": {".": {}, "k:{\"uid\":\"0\"}": {}}}, "f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {".": {}, "f:image": {}, "f:name": {}}}}}});
    let text = serde_json::to_vec(&json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "generateName": format!("{app}-{hash}-"),
            "namespace": namespace(w),
            "uid": format!("00000000-0000-4000-8000-{:012x}", w * 100 + r),
            "resourceVersion": "123456",
            "creationTimestamp": time,
            "labels": {"app": app, "pod-template-hash": hash},
            "annotations": {"kubectl.kubernetes.io/restartedAt": time, "prometheus.io/scrape": "true"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{app}-{hash}"),
                "uid": format!("10000000-0000-4000-8000-{w:012x}"), "controller": true, "blockOwnerDeletion": true}],
            "managedFields": [managed.clone(), managed],
        },
        "spec": {
            "containers": [{
                "name": "app",
                "image": image,
                "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                "env": [{"name": "LOG_LEVEL", "value": "info"}, {"name": "PORT", "value": "8080"}],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
                "volumeMounts": [{"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}],
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "imagePullPolicy": "IfNotPresent",
            }],
            "volumes": [{"name": "kube-api-access", "projected": {"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ]}}],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default",
            "serviceAccount": "default",
            "nodeName": format!("node-{}", (w + r) % 50),
            "securityContext": {},
            "schedulerName": "default-scheduler",
            "tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            ],
            "priority": 0,
            "enableServiceLinks": true,
            "preemptionPolicy": "PreemptLowerPriority",
        },
        "status": {
            "phase": "Running",
            "conditions": conditions,
            "hostIP": "10.0.0.1",
            "podIP": format!("10.1.{}.{}", w % 250, r),
            "startTime": time,
            "containerStatuses": [{
                "name": "app", "ready": true, "restartCount": 0, "started": true,
                "state": {"running": {"startedAt": time}},
                "lastState": {},
                "image": image,
                "imageID": format!("{}@{digest}", image.split('@').next().unwrap_or_default()),
                "containerID": format!("containerd://{:064x}", w * 100 + r),
            }],
            "qosClass": "Burstable",
        }
    }))
    .unwrap();
    serde_json::from_slice(&text).unwrap()
}

/// What the child process measured.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Measured {
    pub pods: usize,
    pub rows: usize,
    pub failing_cold: usize,
    pub failing_warm: usize,
    pub first_failure: String,
    pub store_mib: f64,
    pub cold_ms: f64,
    pub cold_requests: u64,
    pub warm_ms: f64,
    pub warm_requests: u64,
    pub reports: usize,
    pub report_kib: f64,
    pub rss_mib: f64,
}

/// The child: `dir` holds `policy.yaml` and `images.txt` (one pinned
/// reference a line); writes `measured.json` there.
pub async fn child(dir: &Path, rss_mib: impl Fn() -> f64) {
    use portcullis::watch::{memory::Memory, reevaluate};
    portcullis::install_crypto_provider();
    let policy = std::fs::read_to_string(dir.join("policy.yaml")).unwrap();
    let images: Vec<String> =
        std::fs::read_to_string(dir.join("images.txt")).unwrap().lines().map(String::from).collect();
    let policy = portcullis::policy::Policy::from_yaml(&policy, "bench policy").unwrap();
    let metrics = Arc::new(portcullis::metrics::Metrics::new());
    let registry = portcullis::registry::Registry::new(Default::default(), vec![], Default::default(), &[])
        .unwrap()
        .with_metrics(metrics.clone());
    let gate = portcullis::gate::Gate::new(
        portcullis::engine::Engine::new(registry, &Default::default(), metrics.clone()),
        policy,
        portcullis::cluster::TierSource::Static,
        portcullis::policy::GrantKeys::from_text(crate::common::GRANT_KEY).unwrap(),
    );

    // The watch's initial list, through the reflector's writer.
    let before = rss_mib();
    let (store, mut writer) = reflector::store::<Pod>();
    writer.apply_watcher_event(&watcher::Event::Init);
    for p in 0..PODS {
        let (w, r) = (p % WORKLOADS, p / WORKLOADS);
        let mut pod = pod(w, r, &images[w % images.len()]);
        reevaluate::trim(&mut pod);
        writer.apply_watcher_event(&watcher::Event::InitApply(pod));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    let store_mib = rss_mib() - before;

    let mut memory = Memory::default();
    let cold = pass(&gate, &store, &mut memory).await;
    let warm = pass(&gate, &store, &mut memory).await;
    let measured = Measured {
        pods: store.state().len(),
        rows: cold.rows,
        failing_cold: cold.failing,
        failing_warm: warm.failing,
        first_failure: cold.first_failure,
        store_mib,
        cold_ms: cold.elapsed.as_secs_f64() * 1000.0,
        cold_requests: cold.requests,
        warm_ms: warm.elapsed.as_secs_f64() * 1000.0,
        warm_requests: warm.requests,
        reports: warm.reports,
        report_kib: warm.report_bytes as f64 / 1024.0,
        rss_mib: rss_mib(),
    };
    std::fs::write(dir.join("measured.json"), serde_json::to_vec(&measured).unwrap()).unwrap();
}

/// What one pass did.
struct Pass {
    rows: usize,
    failing: usize,
    first_failure: String,
    elapsed: Duration,
    requests: u64,
    reports: usize,
    report_bytes: usize,
}

/// One pass, as `serve`'s loop runs it, but for the writes: the rows, the
/// memory's update, and each namespace's PolicyReport built.
async fn pass(
    gate: &portcullis::gate::Gate,
    store: &reflector::Store<Pod>,
    memory: &mut portcullis::watch::memory::Memory,
) -> Pass {
    use portcullis::watch::report::Row;
    use portcullis::watch::{policy_report::policy_report, reevaluate};
    let t = Instant::now();
    let requests = gate.engine().registry_requests();
    let pods = store.state();
    let rows = reevaluate::judge(gate, None, &pods).await;
    let now = chrono::Utc::now();
    memory.update(&rows, now);
    let mut by_ns: std::collections::BTreeMap<&str, Vec<&Row>> = Default::default();
    for r in &rows {
        by_ns.entry(r.running.namespace.as_str()).or_default().push(r);
    }
    let report_bytes = by_ns
        .iter()
        .map(|(ns, rs)| serde_json::to_vec(&policy_report(ns, rs, "sha256:bench", now)).unwrap().len())
        .sum();
    let elapsed = t.elapsed();
    let failing: Vec<&Row> = rows.iter().filter(|r| !r.status.passes()).collect();
    Pass {
        rows: rows.len(),
        failing: failing.len(),
        first_failure: failing.first().map(|r| format!("{}: {}", r.running.reference(), r.why())).unwrap_or_default(),
        elapsed,
        requests: gate.engine().registry_requests() - requests,
        reports: by_ns.len(),
        report_bytes,
    }
}

/// A pass's targets.
pub const WARM_TARGET: Duration = Duration::from_secs(2);
pub const PEAK_TARGET_MIB: f64 = 100.0;

pub fn table(m: &Measured, peak_mib: f64, met: impl Fn(bool) -> &'static str) -> String {
    format!(
        "## 6. Re-evaluation at scale

One re-evaluation pass as the Lease holder runs it, in a process of its own
(this bench, run again): {PODS} running Pods of {WORKLOADS} Deployments in
{NAMESPACES} namespaces (half production, half development), running
{IMAGES} distinct images, each with a scan and a test result in the
registry. Each Pod is shaped as the API server serves one (managed
fields, annotations, environment, resources, a token volume, tolerations,
conditions), read from its JSON text as the watch reads it (only what says
which images it runs is kept) and delivered to the reflector's store through
its `Writer`, trimmed as `serve` trims it. The pass judges every running image in its namespace's tier
(cold: nothing cached; then warm, everything cached), updates its memory
and builds each namespace's PolicyReport.

Targets: a warm pass under 2 s; under 100 MiB resident for the whole
process.

| | |
|---|---|
| rows judged (one per workload and image) | {} ({} failing cold, {} warm{}) |
| the Pod store | {:.1} MiB resident |
| cold pass | {:.0} ms, {} registry requests |
| warm pass | {:.0} ms, {} registry requests, target {} |
| PolicyReports written per pass | {} (one server-side apply each, {:.0} KiB in all) |
| peak resident memory, whole process | {peak_mib:.1} MiB, target {} |

",
        m.rows,
        m.failing_cold,
        m.failing_warm,
        if m.first_failure.is_empty() { String::new() } else { format!("; the first: {}", m.first_failure) },
        m.store_mib,
        m.cold_ms,
        m.cold_requests,
        m.warm_ms,
        m.warm_requests,
        met(m.warm_ms < WARM_TARGET.as_secs_f64() * 1000.0),
        m.reports,
        m.report_kib,
        met(peak_mib < PEAK_TARGET_MIB),
    )
}

/// The policy and the images' references, into `dir`, for [`child`].
pub fn write_inputs(dir: &Path, policy_text: &str, images: &[String]) {
    std::fs::write(dir.join("policy.yaml"), policy(policy_text)).unwrap();
    std::fs::write(dir.join("images.txt"), images.join("\n")).unwrap();
}
