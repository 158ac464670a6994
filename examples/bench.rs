//! `make bench`: Portcullis measured against its ceiling and its peers on
//! this machine, in one run so the ratios hold on a noisy machine; prints
//! the tables and writes them, with the machine they ran on, to
//! `BENCHMARKS.md`.
//!
//! 1. Warm: a Pod of three containers and one init container whose images
//!    are already verified, over HTTPS with keep-alive, at concurrency 1, 16
//!    and 64, side by side with a no-op admission handler on the same TLS
//!    stack (axum + axum-server + rustls/aws-lc-rs): the ceiling.
//! 2. Cold: a never-seen image (resolve, discover, fetch, verify two
//!    attestations) against `cosign verify-attestation` for both predicates:
//!    in the webhook, and as whole processes (`portcullis check`, wall time
//!    and peak memory).
//! 3. Registry economy: 1,000 concurrent admissions of one new image, counted
//!    in the registry's own access log; then one admission after the tag TTL.
//! 4. Growth: cold latency as attestations per image and containers per Pod
//!    grow.
//! 5. Memory: `portcullis serve` (the release binary, a process of its own)
//!    idle and with 10,000 digests' evidence cached.
//! 6. Re-evaluation at scale: a pass over 10,000 running Pods with 2,000
//!    distinct images, cold and warm, in a process of its own.
//!
//! Real parts throughout: the CNCF registry, the real cosign (for the cold
//! comparison), Portcullis' TLS server. The thousands of attestations that
//! growth and memory need are signed here, in cosign's key-based format
//! (DSSE envelopes in the `.att` manifest), because signing 20,000 with the
//! cosign CLI would take hours.

#[path = "../tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;
#[path = "bench/reevaluation.rs"]
mod reevaluation;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::*;
use futures::StreamExt as _;
use portcullis::engine::EngineConfig;
use serde_json::{json, Value};

/// Warm requests measured per concurrency level and server, in `ROUNDS`
/// alternating rounds (after a warm-up).
const REQUESTS: usize = 18_000;
const ROUNDS: usize = 3;
const LEVELS: [usize; 3] = [1, 16, 64];
/// Never-seen images timed for the cold comparison.
const COLD_IMAGES: usize = 5;
/// Concurrent admissions of one new image.
const STAMPEDE: usize = 1000;
/// Digests cached for the memory figure.
const CACHED: usize = 10_000;

/// The allocator the `portcullis` binary ships with (the no-op ceiling and
/// the load generator, in this process, use it too).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const VULN_TYPE: &str = "https://cosign.sigstore.dev/attestation/vuln/v1";

struct Series {
    rps: f64,
    p50: Duration,
    p99: Duration,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    // Part 6's own process (this program, run again by part 6).
    if let Some(dir) = std::env::var_os("PORTCULLIS_BENCH_REEVALUATION") {
        let pid = std::process::id();
        reevaluation::child(Path::new(&dir), || rss_mib(pid)).await;
        return;
    }
    portcullis::install_crypto_provider();
    let started = Instant::now();
    eprintln!("starting a registry, attesting images with cosign, starting Portcullis and a no-op handler…");
    let w = world().await;
    let mut out = String::new();
    // `PORTCULLIS_BENCH=warm,cold` runs only those parts, and only prints them.
    let only = std::env::var("PORTCULLIS_BENCH").ok();
    let runs = |part: &str| only.as_deref().is_none_or(|o| o.split(',').any(|p| p == part));

    if runs("warm") {
        out.push_str(&warm(&w).await);
    }
    if runs("cold") {
        out.push_str(&cold(&w).await);
    }
    if runs("economy") {
        out.push_str(&economy(&w).await);
    }
    if runs("audit") {
        out.push_str(&audit_sync(&w).await);
    }
    // Growth and memory: attestations signed here by keys of our own.
    let signer = Signer::new();
    let native_policy = policy_yaml(&signer.scanner_pem, &signer.ci_pem);
    if runs("growth") {
        out.push_str(&growth(&w, &signer, &native_policy).await);
    }
    if runs("memory") {
        out.push_str(&memory(&w, &signer, &native_policy).await);
    }
    if runs("reevaluation") {
        out.push_str(&reevaluation(&w, &signer, &native_policy).await);
    }

    println!("{out}");
    if only.is_some() {
        return;
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/BENCHMARKS.md");
    // The history of changes and what each bought is kept as written.
    let history = std::fs::read_to_string(path)
        .ok()
        .and_then(|d| d.find(HISTORY).map(|at| d[at..].to_string()))
        .unwrap_or_default();
    let doc = format!(
        "# Benchmarks\n\nWritten by `make bench` ({}), on {}, in {:.0} s.\n\n{out}{history}",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        machine(),
        started.elapsed().as_secs_f64()
    );
    std::fs::write(path, doc).unwrap();
    eprintln!("written to BENCHMARKS.md");
}

/// The heading of BENCHMARKS.md's hand-written part, kept across runs.
const HISTORY: &str = "## What each change bought";

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**not met**"
    }
}

// ---------------------------------------------------------------- warm --

async fn warm(w: &World) -> String {
    let mut images = Vec::new();
    for name in ["api", "sidecar", "proxy", "migrate"] {
        images.push(w.image(&format!("bench/{name}"), "v1", Some(("scanner", clean())), Some(("ci", passed()))).await);
    }
    let hook = Webhook::start(&w.policy, Default::default()).await;
    let mut review = pod_review("prod", &[&images[0], &images[1], &images[2]], json!({}), &[]);
    review["request"]["object"]["spec"]["initContainers"] = json!([{"name": "migrate", "image": images[3]}]);
    let body = bytes::Bytes::from(serde_json::to_vec(&review).unwrap());
    // Verified once: every later request is the warm path.
    let first = post(&hook.client, &format!("{}/validate?timeout=10s", hook.url), &body).await;
    assert_eq!(first["response"]["allowed"], true, "{first}");

    let (noop_url, noop_client) = noop().await;
    let portcullis_url = format!("{}/validate?timeout=10s", hook.url);

    let mut rows = Vec::new();
    for c in LEVELS {
        // Warmed first, then alternating rounds, so both see the same machine.
        run(&noop_client, &noop_url, &body, c, REQUESTS / 20).await;
        run(&hook.client, &portcullis_url, &body, c, REQUESTS / 20).await;
        let (mut a, mut b) = ((Vec::new(), Duration::ZERO), (Vec::new(), Duration::ZERO));
        for _ in 0..ROUNDS {
            for (side, client, url) in [(&mut a, &noop_client, &noop_url), (&mut b, &hook.client, &portcullis_url)] {
                let t = Instant::now();
                side.0.extend(run(client, url, &body, c, REQUESTS / ROUNDS).await);
                side.1 += t.elapsed();
            }
        }
        let (ceiling, ours) = (series(a.0, a.1), series(b.0, b.1));
        eprintln!(
            "warm, concurrency {c}: no-op {:.0} req/s, Portcullis {:.0} req/s ({:.2}x)",
            ceiling.rps,
            ours.rps,
            ours.rps / ceiling.rps
        );
        rows.push((c, ceiling, ours));
    }
    let mut t = format!(
        "## 1. Warm path

A Pod of three containers and one init container whose images are already
verified, sent over HTTPS with keep-alive at each concurrency, side by side
with a no-op admission handler on the same TLS stack (axum + axum-server +
rustls/aws-lc-rs) that reads the same body, decodes it and answers `allowed`
(the ceiling). Portcullis runs with its hash-chained audit trail (a file) and
its metrics on. Each level: a warm-up, then {REQUESTS} requests per server in
{ROUNDS} alternating rounds, so both see the same machine. The load
generator runs on the same machine, in the same process.

Targets: at least 0.7x the ceiling's requests/s at concurrency 16 and 64,
and a p99 within 1.5x the ceiling's.

| concurrency | no-op req/s | Portcullis req/s | ratio | no-op p50 / p99 | Portcullis p50 / p99 | p99 ratio | target |
|---|---|---|---|---|---|---|---|
"
    );
    for (c, n, p) in &rows {
        let (ratio, p99) = (p.rps / n.rps, ms(p.p99) / ms(n.p99));
        let target = if *c == 1 { "-".to_string() } else { met(ratio >= 0.7 && p99 <= 1.5).to_string() };
        t.push_str(&format!(
            "| {c} | {:.0} | {:.0} | {ratio:.2}x | {:.2} / {:.2} ms | {:.2} / {:.2} ms | {p99:.2}x | {target} |\n",
            n.rps,
            p.rps,
            ms(n.p50),
            ms(n.p99),
            ms(p.p50),
            ms(p.p99),
        ));
    }
    t.push('\n');
    t
}

fn series(mut all: Vec<Duration>, elapsed: Duration) -> Series {
    all.sort();
    let at = |p: f64| all[((all.len() as f64 - 1.0) * p).round() as usize];
    Series { rps: all.len() as f64 / elapsed.as_secs_f64(), p50: at(0.5), p99: at(0.99) }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// `N cores, <model>, <memory>`.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").map(|m| m.trim_start_matches([' ', '\t', ':']).to_string()))
        .unwrap_or_else(|| "unknown CPU".into());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:").map(|m| m.trim().to_string()))
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    format!("{cores} cores, {model}, {memory} memory")
}

// --------------------------------------------------------------- audit --

/// What `--audit-sync always` costs on the warm path: the same Pod at
/// concurrency 16, with each decision answered once queued (`batch`) or once
/// its record is written and fdatasynced (`always`), on this machine's disk.
async fn audit_sync(w: &World) -> String {
    let image = w.image("bench/audited", "v1", Some(("scanner", clean())), Some(("ci", passed()))).await;
    let body = bytes::Bytes::from(serde_json::to_vec(&pod_review("prod", &[&image], json!({}), &[])).unwrap());
    let c = 16;
    let mut rows = Vec::new();
    for (mode, sync) in [("batch", portcullis::audit::Sync::Batch), ("always", portcullis::audit::Sync::Always)] {
        let hook = Webhook::start_with(&w.policy, HookOptions { audit_sync: sync, ..Default::default() }).await;
        let url = format!("{}/validate?timeout=10s", hook.url);
        assert_eq!(post(&hook.client, &url, &body).await["response"]["allowed"], true);
        run(&hook.client, &url, &body, c, REQUESTS / 20).await;
        let t = Instant::now();
        let s = series(run(&hook.client, &url, &body, c, REQUESTS / ROUNDS).await, t.elapsed());
        eprintln!("audit {mode}: {:.0} req/s, p99 {:.2} ms", s.rps, ms(s.p99));
        rows.push((mode, s));
    }
    let (batch, always) = (&rows[0].1, &rows[1].1);
    format!(
        "## Audit durability

The warm path at concurrency {c} (one verified image), {} requests, with
`--audit-sync batch` (a decision is answered once its record is queued) and
`--audit-sync always` (once it is written and fdatasynced; records waiting
together share one sync), on this machine's disk.

| `--audit-sync` | req/s | p50 | p99 |
|---|---|---|---|
| batch | {:.0} | {:.2} ms | {:.2} ms |
| always | {:.0} | {:.2} ms | {:.2} ms |

`always` costs {:.0}% of the throughput and adds {:.2} ms at p99 here.

",
        REQUESTS / ROUNDS,
        batch.rps,
        ms(batch.p50),
        ms(batch.p99),
        always.rps,
        ms(always.p50),
        ms(always.p99),
        100.0 * (1.0 - always.rps / batch.rps),
        ms(always.p99) - ms(batch.p99),
    )
}

async fn post(client: &reqwest::Client, url: &str, body: &bytes::Bytes) -> Value {
    let resp = client.post(url).header("content-type", "application/json").body(body.clone()).send().await.unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    resp.json().await.unwrap()
}

/// `n` requests at concurrency `c`: each one's latency.
async fn run(client: &reqwest::Client, url: &str, body: &bytes::Bytes, c: usize, n: usize) -> Vec<Duration> {
    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..c)
        .map(|_| {
            let (client, url, body, next) = (client.clone(), url.to_string(), body.clone(), next.clone());
            tokio::spawn(async move {
                let mut took = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    let t = Instant::now();
                    let resp = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                        .unwrap();
                    assert!(resp.status().is_success());
                    let answer = resp.bytes().await.unwrap();
                    took.push(t.elapsed());
                    assert!(
                        answer.windows(14).any(|w| w == b"\"allowed\":true"),
                        "{}",
                        String::from_utf8_lossy(&answer)
                    );
                }
                took
            })
        })
        .collect();
    let mut all = Vec::with_capacity(n);
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

/// The ceiling: an admission handler that reads the body, decodes the
/// review, and answers `allowed` for its uid; same TLS stack.
async fn noop() -> (String, reqwest::Client) {
    use axum::routing::post;
    let tls = test_tls();
    let config = axum_server::tls_rustls::RustlsConfig::from_pem(
        tls.cert_pem.clone().into_bytes(),
        tls.key_pem.clone().into_bytes(),
    )
    .await
    .unwrap();
    let app = axum::Router::new().route(
        "/validate",
        post(|body: bytes::Bytes| async move {
            let review: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            axum::Json(json!({
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "response": {"uid": review["request"]["uid"], "allowed": true}
            }))
        }),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = axum_server::from_tcp_rustls(listener, config).unwrap();
    tokio::spawn(async move { server.serve(app.into_make_service()).await });
    (format!("https://{addr}/validate"), client_trusting(&tls))
}

/// An HTTPS client that trusts `tls`' test CA only.
fn client_trusting(tls: &TestTls) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(tls.ca_pem.as_bytes()).unwrap()])
        .build()
        .unwrap()
}

// ---------------------------------------------------------------- cold --

async fn cold(w: &World) -> String {
    eprintln!("cold: {COLD_IMAGES} new images, each attested twice with cosign…");
    let mut images = Vec::new();
    for i in 0..COLD_IMAGES {
        w.image(&format!("bench/cold{i}"), "v1", Some(("scanner", clean())), Some(("ci", passed()))).await;
        images.push(format!("{}/bench/cold{i}:v1", w.reg.host));
    }
    let hook = Webhook::start(&w.policy, Default::default()).await;
    // The TLS connection to Portcullis is warm: the series measure decisions.
    hook.client.get(format!("{}/healthz", hook.url)).send().await.unwrap();
    let cosign = tool_in("PORTCULLIS_COSIGN", "cosign", "cosign-v2");
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for image in &images {
        let t = Instant::now();
        let resp = hook.admit_pod("prod", &[image], json!({}), &[]).await;
        ours.push(t.elapsed());
        assert_eq!(resp["allowed"], true, "{resp}");
        let t = Instant::now();
        for (key, kind) in [("scanner.pub", "vuln"), ("ci.pub", TEST_RESULT)] {
            let out = Command::new(&cosign)
                .current_dir(w.cosign.path())
                .env("HOME", w.cosign.path())
                .env("TUF_ROOT", w.cosign.path().join("tuf"))
                .env("SIGSTORE_NO_CACHE", "true")
                .args(["verify-attestation", "--key", key, "--type", kind, "--insecure-ignore-tlog=true", image])
                .stdout(Stdio::null())
                .output()
                .unwrap();
            assert!(out.status.success(), "cosign verify-attestation: {}", String::from_utf8_lossy(&out.stderr));
        }
        theirs.push(t.elapsed());
    }
    let (p, c) = (median(ours), median(theirs));
    let ratio = ms(p) / ms(c);
    eprintln!("cold: Portcullis {:.1} ms, cosign {:.1} ms ({ratio:.3}x)", ms(p), ms(c));

    // The same, as a pipeline runs them: whole processes, start to exit,
    // with their peak memory (GNU time's maximum resident set).
    let policy = w.cosign.path().join("bench-policy.yaml");
    std::fs::write(&policy, &w.policy).unwrap();
    let (mut check_runs, mut cosign_runs) = (Vec::new(), Vec::new());
    for i in 0..COLD_IMAGES {
        // A fresh image for each: nothing of it is cached anywhere.
        w.image(&format!("bench/process{i}"), "v1", Some(("scanner", clean())), Some(("ci", passed()))).await;
        let image = format!("{}/bench/process{i}:v1", w.reg.host);
        let mut check = Command::new(binary());
        check.args(["check", &image, "--tier", "production", "--policy"]).arg(&policy);
        check_runs.push(timed(check));
        let (mut wall, mut peak) = (Duration::ZERO, 0.0_f64);
        for (key, kind) in [("scanner.pub", "vuln"), ("ci.pub", TEST_RESULT)] {
            let mut verify = Command::new(&cosign);
            verify
                .current_dir(w.cosign.path())
                .env("HOME", w.cosign.path())
                .env("TUF_ROOT", w.cosign.path().join("tuf"))
                .env("SIGSTORE_NO_CACHE", "true")
                .args(["verify-attestation", "--key", key, "--type", kind, "--insecure-ignore-tlog=true", &image]);
            let (t, mib) = timed(verify);
            wall += t;
            peak = peak.max(mib);
        }
        cosign_runs.push((wall, peak));
    }
    let mid = |runs: &[(Duration, f64)]| {
        let mut mib: Vec<f64> = runs.iter().map(|r| r.1).collect();
        mib.sort_by(f64::total_cmp);
        (median(runs.iter().map(|r| r.0).collect()), mib[mib.len() / 2])
    };
    let ((pw, pm), (cw, cm)) = (mid(&check_runs), mid(&cosign_runs));
    let process_ratio = ms(pw) / ms(cw);
    eprintln!(
        "cold, whole processes: portcullis check {:.1} ms {pm:.1} MiB, cosign {:.1} ms {cm:.1} MiB ({process_ratio:.3}x)",
        ms(pw),
        ms(cw)
    );
    format!(
        "## 2. Cold path

A never-seen image, by tag, with a vulnerability scan and a test result
attested by cosign (keys, no transparency log): from the request to the
decision, Portcullis resolves the tag, discovers and fetches both
attestations, verifies them and judges the image; against the real
`cosign verify-attestation` of both predicates (two runs, as a pipeline
would check them) on the same registry. Median of {COLD_IMAGES} images.

Target: at most 0.1x of cosign's time.

| Portcullis, request to decision | cosign verify-attestation, both predicates | ratio | target |
|---|---|---|---|
| {:.1} ms | {:.1} ms | {ratio:.3}x | {} |

The same as a pipeline runs it: `portcullis check IMAGE --tier production`
as a whole process (start, policy, registry, verification, exit) against the
two `cosign verify-attestation` processes, each image new; wall time and
peak resident memory (the larger cosign run's), medians of {COLD_IMAGES}.

Targets: at most 0.1x of cosign's time, at most 32 MiB.

| | wall time | peak memory |
|---|---|---|
| `portcullis check` | {:.1} ms | {pm:.1} MiB |
| `cosign verify-attestation` ×2 | {:.1} ms | {cm:.1} MiB |
| ratio, target | {process_ratio:.3}x, {} | {} |

",
        ms(p),
        ms(c),
        met(ratio <= 0.1),
        ms(pw),
        ms(cw),
        met(process_ratio <= 0.1),
        met(pm <= 32.0)
    )
}

/// Runs `cmd` to its end under GNU time: its wall time, and its peak
/// resident memory in MiB.
fn timed(cmd: Command) -> (Duration, f64) {
    let mut timed = Command::new("/usr/bin/time");
    timed.args(["-f", "portcullis-bench-peak-kib=%M"]).arg(cmd.get_program()).args(cmd.get_args());
    if let Some(dir) = cmd.get_current_dir() {
        timed.current_dir(dir);
    }
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => timed.env(k, v),
            None => timed.env_remove(k),
        };
    }
    let t = Instant::now();
    let out = timed.stdout(Stdio::null()).output().expect("/usr/bin/time (GNU time; make bench installs it)");
    let wall = t.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {err}", cmd.get_program());
    let kib: f64 = err
        .lines()
        .find_map(|l| l.strip_prefix("portcullis-bench-peak-kib="))
        .and_then(|k| k.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak memory from GNU time: {err}"));
    (wall, kib / 1024.0)
}

// ------------------------------------------------------------- economy --

/// Requests in the registry's access log (one line each).
fn logged(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(String::from).collect()
}

async fn economy(w: &World) -> String {
    eprintln!("registry economy: {STAMPEDE} concurrent admissions of one new image…");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let reg = Registry::start_with(RegistryOptions { access_log: Some(log.clone()), ..Default::default() }).await;
    let digest_ref = reg.push_image("bench/stampede", "v1", "stampede").await;
    w.cosign.attest("scanner", &digest_ref, VULN, &clean());
    w.cosign.attest("ci", &digest_ref, TEST_RESULT, &passed());
    let image = format!("{}/bench/stampede:v1", reg.host);
    let tag_ttl = Duration::from_secs(2);
    // Each of the 1000 admissions on a connection of its own, all from this
    // address (the API server sends as many over a few): the server's
    // per-peer and total connection bounds are raised to let them in.
    let server = portcullis::webhook::ServerLimits {
        max_connections: 2 * STAMPEDE,
        max_connections_per_peer: 2 * STAMPEDE,
        ..Default::default()
    };
    let cfg = EngineConfig { tag_ttl, ..Default::default() };
    let hook = Webhook::start_with(&w.policy, HookOptions { cfg, server, ..HookOptions::default() }).await;
    let url = format!("{}/validate?timeout=10s", hook.url);
    let body = bytes::Bytes::from(serde_json::to_vec(&pod_review("prod", &[&image], json!({}), &[])).unwrap());

    let before = logged(&log).len();
    let t = Instant::now();
    let answers = futures::future::join_all((0..STAMPEDE).map(|_| post(&hook.client, &url, &body))).await;
    let took = t.elapsed();
    let allowed = answers.iter().filter(|a| a["response"]["allowed"] == true).count();
    assert_eq!(allowed, STAMPEDE, "every admission of the stampede is allowed");
    let lines = logged(&log);
    let stampede = &lines[before..];
    let count = |what: &str| stampede.iter().filter(|l| l.contains(what)).count();
    let (resolutions, discoveries) = (count("/manifests/v1 "), count(".att "));

    // Past the tag TTL: the tag is resolved again; the evidence is not.
    tokio::time::sleep(tag_ttl + Duration::from_millis(200)).await;
    let before = logged(&log).len();
    let again = post(&hook.client, &url, &body).await;
    assert_eq!(again["response"]["allowed"], true, "{again}");
    let after: Vec<String> = logged(&log)[before..].to_vec();
    let requests_after: Vec<String> = after
        .iter()
        .filter_map(|l| l.split('"').nth(1).map(|r| r.split(' ').take(2).collect::<Vec<_>>().join(" ")))
        .collect();
    eprintln!(
        "registry economy: {} requests for {STAMPEDE} admissions in {:.0} ms; after the TTL: {requests_after:?}",
        stampede.len(),
        ms(took)
    );
    format!(
        "## 3. Registry economy

{STAMPEDE} admissions of Pods that share one new image (by tag), sent at once,
counted in the registry's own access log (one line per request it served).
The tag TTL is {}s for this part so that its end can be watched.

| | registry requests | per admission |
|---|---|---|
| {STAMPEDE} concurrent admissions of one new image ({:.0} ms in all) | {} (tag resolutions: {resolutions}; `.att` lookups: {discoveries}) | {:.4} |
| one admission after the tag TTL | {} ({}) | {} |

Target: one resolution and one discovery for the stampede ({}); after the
TTL, one HEAD and no re-verification ({}).

",
        tag_ttl.as_secs(),
        ms(took),
        stampede.len(),
        stampede.len() as f64 / STAMPEDE as f64,
        after.len(),
        requests_after.join(", "),
        after.len(),
        met(resolutions == 1 && discoveries == 1),
        met(requests_after.len() == 1 && requests_after[0].starts_with("HEAD ")),
    )
}

// -------------------------------------------------- native attestations --

/// Two P-256 keys (scanner and CI) that sign in-toto statements as cosign's
/// key-based attestations do: a DSSE envelope per statement.
struct Signer {
    scanner: aws_lc_rs::signature::EcdsaKeyPair,
    ci: aws_lc_rs::signature::EcdsaKeyPair,
    scanner_pem: String,
    ci_pem: String,
}

impl Signer {
    fn new() -> Signer {
        use aws_lc_rs::encoding::AsDer;
        use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
        let key = || EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
        let pem = |k: &EcdsaKeyPair| {
            pem::encode(&pem::Pem::new("PUBLIC KEY", k.public_key().as_der().unwrap().as_ref().to_vec()))
        };
        let (scanner, ci) = (key(), key());
        Signer { scanner_pem: pem(&scanner), ci_pem: pem(&ci), scanner, ci }
    }

    /// The DSSE envelope of a statement about `image` (`host/repo@sha256:…`).
    fn envelope(&self, by_ci: bool, image: &str, predicate_type: &str, predicate: &Value) -> Vec<u8> {
        let (name, digest) = image.split_once('@').unwrap();
        let statement = json!({
            "_type": "https://in-toto.io/Statement/v0.1",
            "predicateType": predicate_type,
            "subject": [{"name": name, "digest": {"sha256": digest.trim_start_matches("sha256:")}}],
            "predicate": predicate,
        });
        let payload = serde_json::to_vec(&statement).unwrap();
        let kind = "application/vnd.in-toto+json";
        let mut pae = format!("DSSEv1 {} {kind} {} ", kind.len(), payload.len()).into_bytes();
        pae.extend_from_slice(&payload);
        let key = if by_ci { &self.ci } else { &self.scanner };
        let sig = key.sign(&aws_lc_rs::rand::SystemRandom::new(), &pae).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD;
        serde_json::to_vec(&json!({
            "payloadType": kind,
            "payload": b64.encode(&payload),
            "signatures": [{"keyid": "", "sig": b64.encode(sig.as_ref())}],
        }))
        .unwrap()
    }
}

/// Pushes a distinct image (one small manifest over shared blobs) and its
/// `.att` manifest with `envelopes`; returns `host/repo@sha256:…`.
async fn push_attested(reg: &Registry, repo: &str, n: usize, envelopes: impl Fn(&str) -> Vec<Vec<u8>>) -> String {
    let (config, layer) = shared_blobs(reg, repo).await;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": 5}],
        "annotations": {"bench.portcullis.dev/n": n.to_string()}
    });
    let digest = reg.put_manifest(repo, &format!("n{n}"), &manifest).await;
    let image = format!("{}/{repo}@{digest}", reg.host);
    let mut layers = Vec::new();
    for e in envelopes(&image) {
        let d = reg.put_blob_public(repo, &e).await;
        layers.push(json!({"mediaType": "application/vnd.dsse.envelope.v1+json", "digest": d, "size": e.len()}));
    }
    let att = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
        "layers": layers
    });
    reg.put_manifest(repo, &att_tag(&image), &att).await;
    image
}

/// `count` distinct images in `repo`, each with a clean scan (by the
/// scanner) and a passed test result (by CI), 32 pushed at a time.
async fn push_scanned_and_tested(reg: &Registry, signer: &Signer, repo: &str, count: usize) -> Vec<String> {
    shared_blobs(reg, repo).await;
    futures::stream::iter(0..count)
        .map(|n| {
            push_attested(reg, repo, n, |image| {
                vec![
                    signer.envelope(false, image, VULN_TYPE, &clean()),
                    signer.envelope(true, image, TEST_RESULT, &passed()),
                ]
            })
        })
        .buffer_unordered(32)
        .collect()
        .await
}

/// The config (`{}`) and layer blobs every pushed image shares, once per repository.
async fn shared_blobs(reg: &Registry, repo: &str) -> (String, String) {
    static DONE: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let config = format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"{}")));
    let layer = format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"bench")));
    if !DONE.lock().unwrap().contains(&repo.to_string()) {
        reg.put_blob_public(repo, b"{}").await;
        reg.put_blob_public(repo, b"bench").await;
        DONE.lock().unwrap().push(repo.to_string());
    }
    (config, layer)
}

// -------------------------------------------------------------- growth --

async fn growth(w: &World, signer: &Signer, policy: &str) -> String {
    eprintln!("growth: images with 1, 10, 50 attestations; Pods of 1, 10, 50 containers…");
    let repeats = 3;
    let counter = AtomicUsize::new(0);
    let next = || counter.fetch_add(1, Ordering::Relaxed);
    let bound = portcullis::registry::Limits::default().attestation_layers;
    let hook = Webhook::start(policy, Default::default()).await;
    hook.client.get(format!("{}/healthz", hook.url)).send().await.unwrap();
    let mut t = format!(
        "## 4. Growth

Cold latency (median of {repeats}), request to decision, as the work per request
grows. Attestations per image: one image whose `.att` holds that many
vulnerability scans, judged in the development tier (scans only); at most
{bound} layers are read per image (`Limits::attestation_layers`), one at a time, the rest are
skipped and said so. Containers per Pod: that many never-seen images, each
with a scan and a test result, judged in production. Lookups run in
parallel within the registry bounds (8 per registry, 32 in all); the last
column says how busy the machine's cores were meanwhile (median run), and
how much of that was this process (Portcullis, in-process, and the client)
rather than the registry.

| attestations per image | cold latency | | containers per Pod | cold latency | both cores busy meanwhile |
|---|---|---|---|---|---|
"
    );
    let mut rows = Vec::new();
    for n in [1usize, 10, 50] {
        let mut took = Vec::new();
        for _ in 0..repeats {
            let image = push_attested(&w.reg, "bench/growth", next(), |image| {
                (0..n).map(|_| signer.envelope(false, image, VULN_TYPE, &clean())).collect()
            })
            .await;
            let t = Instant::now();
            let resp = hook.admit_pod("dev", &[&image], json!({}), &[]).await;
            took.push(t.elapsed());
            assert_eq!(resp["allowed"], true, "{resp}");
        }
        rows.push((n, median(took)));
    }
    let mut pods = Vec::new();
    for n in [1usize, 10, 50] {
        let (mut took, mut busy) = (Vec::new(), Vec::new());
        for _ in 0..repeats {
            let mut images = Vec::new();
            for _ in 0..n {
                images.push(
                    push_attested(&w.reg, "bench/growth", next(), |image| {
                        vec![
                            signer.envelope(false, image, VULN_TYPE, &clean()),
                            signer.envelope(true, image, TEST_RESULT, &passed()),
                        ]
                    })
                    .await,
                );
            }
            let refs: Vec<&str> = images.iter().map(String::as_str).collect();
            let (t, before) = (Instant::now(), cpu());
            let resp = hook.admit_pod("prod", &refs, json!({}), &[]).await;
            took.push(t.elapsed());
            busy.push(cpu().busy_since(&before));
            assert_eq!(resp["allowed"], true, "{resp}");
        }
        busy.sort_by(|a: &(f64, f64), b| a.0.total_cmp(&b.0));
        pods.push((n, median(took), busy[busy.len() / 2]));
    }
    for ((a, at), (c, ct, (busy, own))) in rows.iter().zip(&pods) {
        t.push_str(&format!(
            "| {a} | {:.1} ms | | {c} | {:.1} ms | {busy:.0}% ({own:.0}% Portcullis' process) |\n",
            ms(*at),
            ms(*ct)
        ));
        eprintln!(
            "growth: {a} attestations {:.1} ms; {c} containers {:.1} ms ({busy:.0}% busy, {own:.0}% ours)",
            ms(*at),
            ms(*ct)
        );
    }
    t.push('\n');
    t
}

/// The machine's CPU time so far, from `/proc/stat` (all cores).
struct Cpu {
    total: u64,
    idle: u64,
    /// This process' own (Portcullis in-process, and the load generator).
    own: u64,
}

fn cpu() -> Cpu {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> =
        stat.lines().next().unwrap_or_default().split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    // utime and stime, the 14th and 15th fields, after the command in parentheses.
    let me = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = me.rsplit_once(')').map_or("", |(_, rest)| rest);
    let own = after.split_whitespace().skip(11).take(2).filter_map(|x| x.parse::<u64>().ok()).sum();
    Cpu { total: v.iter().sum(), idle: v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0), own }
}

impl Cpu {
    /// How busy all cores were since `before`, in percent.
    fn busy_since(&self, before: &Cpu) -> (f64, f64) {
        let total = self.total.saturating_sub(before.total).max(1) as f64;
        let busy = 100.0 * (1.0 - self.idle.saturating_sub(before.idle) as f64 / total);
        (busy, 100.0 * self.own.saturating_sub(before.own) as f64 / total)
    }
}

// -------------------------------------------------------------- memory --

/// Resident memory of process `pid`, in MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024.0
}

/// The release binary `make bench` builds next to this program; or the
/// program `PORTCULLIS_BENCH_BINARY` names (a profiler's wrapper, say).
fn binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("PORTCULLIS_BENCH_BINARY") {
        return bin.into();
    }
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().and_then(Path::parent).unwrap().join("portcullis");
    assert!(bin.exists(), "{} is missing: run `make bench` (it builds it)", bin.display());
    bin
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn memory(w: &World, signer: &Signer, policy: &str) -> String {
    eprintln!("memory: pushing {CACHED} attested images…");
    let t = Instant::now();
    let images = push_scanned_and_tested(&w.reg, signer, "bench/memory", CACHED).await;
    eprintln!("memory: pushed in {:.0} s; starting portcullis serve…", t.elapsed().as_secs_f64());

    let dir = tempfile::tempdir().unwrap();
    let tls = test_tls();
    std::fs::write(dir.path().join("tls.crt"), &tls.cert_pem).unwrap();
    std::fs::write(dir.path().join("tls.key"), &tls.key_pem).unwrap();
    std::fs::write(dir.path().join("policy.yaml"), policy).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Child(
        Command::new(binary())
            .current_dir(dir.path())
            .args(["serve", "--cluster", "never", "--policy", "policy.yaml", "--tls-cert", "tls.crt"])
            .args(["--tls-key", "tls.key", "--audit-log", "audit.jsonl", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let client = client_trusting(&tls);
    let base = format!("https://127.0.0.1:{port}");
    let until = Instant::now() + Duration::from_secs(30);
    while client.get(format!("{base}/readyz")).send().await.map(|r| r.status().is_success()).ok() != Some(true) {
        assert!(Instant::now() < until, "portcullis serve did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let idle = rss_mib(child.0.id());

    // Every digest admitted once (Pods of 50), a few at a time.
    let url = format!("{base}/validate?timeout=30s");
    let t = Instant::now();
    let denied = futures::stream::iter(images.chunks(50))
        .map(|chunk| {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            let body = bytes::Bytes::from(serde_json::to_vec(&pod_review("prod", &refs, json!({}), &[])).unwrap());
            let (client, url) = (client.clone(), url.clone());
            async move {
                let answer = post(&client, &url, &body).await;
                (answer["response"]["allowed"] != true).then(|| answer["response"]["status"]["message"].to_string())
            }
        })
        // One review at a time: its 50 lookups stay within the registry's
        // queue bound (64), so that none is refused as saturating it.
        .buffer_unordered(1)
        .filter_map(std::future::ready)
        .collect::<Vec<_>>()
        .await;
    assert!(denied.is_empty(), "{} reviews denied, the first: {}", denied.len(), denied[0]);
    let text = client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    let misses = metric(&text, "portcullis_cache_requests_total{cache=\"evidence\",result=\"miss\"}");
    let filled = rss_mib(child.0.id());
    eprintln!(
        "memory: idle {idle:.1} MiB; {misses} digests looked up in {:.0} s; then {filled:.1} MiB",
        t.elapsed().as_secs_f64()
    );
    format!(
        "## 5. Memory

`portcullis serve` (the release binary, a process of its own, audit trail to
a file, no cluster): resident memory once ready, and after {CACHED} distinct
digests, each with a scan and a test result, were admitted (in Pods of 50,
one after the other) so that their evidence is cached ({misses} evidence lookups
counted by its metrics; the cache holds 10,000 by default).

Target: under 64 MiB with 10,000 cached digests.

| state | resident memory | target |
|---|---|---|
| idle, ready | {idle:.1} MiB | |
| {CACHED} digests' evidence cached | {filled:.1} MiB | {} |

",
        met(filled < 64.0)
    )
}

// -------------------------------------------------------- re-evaluation --

async fn reevaluation(w: &World, signer: &Signer, policy: &str) -> String {
    use reevaluation::{IMAGES, PODS};
    eprintln!("re-evaluation: pushing {IMAGES} attested images…");
    let images = push_scanned_and_tested(&w.reg, signer, "bench/running", IMAGES).await;
    let dir = tempfile::tempdir().unwrap();
    reevaluation::write_inputs(dir.path(), policy, &images);
    eprintln!("re-evaluation: a pass over {PODS} Pods, in a process of its own…");
    let mut child = Command::new(std::env::current_exe().unwrap());
    child.env("PORTCULLIS_BENCH_REEVALUATION", dir.path());
    let (_, peak) = timed(child);
    let m: reevaluation::Measured =
        serde_json::from_slice(&std::fs::read(dir.path().join("measured.json")).unwrap()).unwrap();
    eprintln!(
        "re-evaluation: {} rows; cold {:.0} ms ({} requests), warm {:.0} ms ({} requests); store {:.1} MiB, peak {peak:.1} MiB",
        m.rows, m.cold_ms, m.cold_requests, m.warm_ms, m.warm_requests, m.store_mib
    );
    reevaluation::table(&m, peak, met)
}
