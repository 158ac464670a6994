//! `make bench`: the warm path against its ceiling, measured in one run so
//! the ratios hold on a noisy machine; prints a table and writes it, with
//! the machine it ran on, to `BENCHMARKS.md`.
//!
//! Warm: a Pod of three containers and one init container whose images are
//! already verified, over HTTPS with keep-alive, at concurrency 1, 16 and
//! 64, side by side with a no-op admission handler on the same TLS stack
//! (axum + axum-server + rustls/aws-lc-rs) that reads the same body and
//! answers `allowed`: the ceiling. Portcullis runs with its audit trail (hash
//! chain included) and metrics on. Uses the tools `make tools` builds (a
//! real registry and cosign, for the images and their attestations).

#[path = "../tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// Requests measured per concurrency level (after a warm-up of a tenth).
const REQUESTS: usize = 6000;
const LEVELS: [usize; 3] = [1, 16, 64];

struct Series {
    rps: f64,
    p50: Duration,
    p99: Duration,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    portcullis::install_crypto_provider();
    eprintln!("starting a registry, attesting four images with cosign, starting Portcullis and a no-op handler…");
    let w = world().await;
    let mut images = Vec::new();
    for name in ["api", "sidecar", "proxy", "migrate"] {
        images.push(w.image(&format!("bench/{name}"), "v1", Some(("scanner", clean())), Some(("ci", passed()))).await);
    }
    let hook = Webhook::start(&w.policy, Default::default()).await;
    let mut review = pod_review("prod", &[&images[0], &images[1], &images[2]], json!({}), &[]);
    review["request"]["object"]["spec"]["initContainers"] = json!([{"name": "migrate", "image": images[3]}]);
    let body = bytes::Bytes::from(serde_json::to_vec(&review).unwrap());
    // Verified once: every later request is the warm path.
    let first: Value = hook
        .client
        .post(format!("{}/validate?timeout=10s", hook.url))
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(first["response"]["allowed"], true, "{first}");

    let (noop_url, noop_client) = noop().await;
    let portcullis_url = format!("{}/validate?timeout=10s", hook.url);

    let mut rows = Vec::new();
    for c in LEVELS {
        // Interleaved, each warmed first, so both see the same machine.
        let ceiling = load(&noop_client, &noop_url, &body, c).await;
        let ours = load(&hook.client, &portcullis_url, &body, c).await;
        eprintln!(
            "concurrency {c}: no-op {:.0} req/s, Portcullis {:.0} req/s ({:.2}x)",
            ceiling.rps,
            ours.rps,
            ours.rps / ceiling.rps
        );
        rows.push((c, ceiling, ours));
    }
    let table = render(&rows);
    println!("{table}");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/BENCHMARKS.md");
    // The history of changes and what each bought is kept as written.
    let history = std::fs::read_to_string(path)
        .ok()
        .and_then(|d| d.find(HISTORY).map(|at| d[at..].to_string()))
        .unwrap_or_default();
    let doc = format!(
        "# Benchmarks\n\nWritten by `make bench` ({}), on {}.\n\n{}\n{table}\n{history}",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        machine(),
        DESCRIPTION
    );
    std::fs::write(path, doc).unwrap();
    eprintln!("written to BENCHMARKS.md");
}

/// The heading of BENCHMARKS.md's hand-written part, kept across runs.
const HISTORY: &str = "## What each change bought";

const DESCRIPTION: &str = "\
## Warm path

A Pod of three containers and one init container whose images are already
verified, sent over HTTPS with keep-alive at each concurrency, side by side
with a no-op admission handler on the same TLS stack (axum + axum-server +
rustls/aws-lc-rs) that reads the same body and answers `allowed` (the
ceiling). Portcullis runs with its hash-chained audit trail (a file) and its
metrics on. Each level: a warm-up, then 6000 requests; the two servers
alternate, in one run, so the ratios hold on a noisy machine. The load
generator runs on the same machine, in the same process.

Targets (issue 11): at least 0.7x the ceiling's requests/s at concurrency 16
and 64, and a p99 within 1.5x the ceiling's.
";

fn render(rows: &[(usize, Series, Series)]) -> String {
    let mut t = String::from(
        "| concurrency | no-op req/s | Portcullis req/s | ratio | no-op p50 / p99 | Portcullis p50 / p99 | p99 ratio |\n|---|---|---|---|---|---|---|\n",
    );
    for (c, n, p) in rows {
        t.push_str(&format!(
            "| {c} | {:.0} | {:.0} | {:.2}x | {:.2} / {:.2} ms | {:.2} / {:.2} ms | {:.2}x |\n",
            n.rps,
            p.rps,
            p.rps / n.rps,
            ms(n.p50),
            ms(n.p99),
            ms(p.p50),
            ms(p.p99),
            ms(p.p99) / ms(n.p99)
        ));
    }
    t
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
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

/// `REQUESTS` requests at concurrency `c` (after a warm-up): requests per
/// second and latency percentiles.
async fn load(client: &reqwest::Client, url: &str, body: &bytes::Bytes, c: usize) -> Series {
    run(client, url, body, c, REQUESTS / 10).await;
    let started = Instant::now();
    let mut all = run(client, url, body, c, REQUESTS).await;
    let elapsed = started.elapsed();
    all.sort();
    let at = |p: f64| all[((all.len() as f64 - 1.0) * p).round() as usize];
    Series { rps: all.len() as f64 / elapsed.as_secs_f64(), p50: at(0.5), p99: at(0.99) }
}

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
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(tls.ca_pem.as_bytes()).unwrap()])
        .build()
        .unwrap();
    (format!("https://{addr}/validate"), client)
}
