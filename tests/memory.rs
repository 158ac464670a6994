//! Memory bounds of `portcullis serve`, measured on the real process: its
//! peak resident set (`VmHWM`) while it answers hostile input, against the
//! chart's 256 MiB limit.

mod common;

use std::io::BufRead;
use std::process::{Child, Command, Stdio};

use common::*;
use serde_json::{json, Value};

/// The chart's memory limit for a replica.
const CHART_LIMIT: u64 = 256 << 20;

/// `portcullis serve` as a process of its own, and a client for it.
pub struct Served {
    child: Child,
    pub url: String,
    pub client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    /// Starts `portcullis serve` on `policy` (the embedded default when
    /// `None`) with `extra` flags.
    pub fn start(policy: Option<&str>, extra: &[&str]) -> Served {
        let dir = tempfile::tempdir().unwrap();
        let tls = test_tls();
        std::fs::write(dir.path().join("tls.crt"), &tls.cert_pem).unwrap();
        std::fs::write(dir.path().join("tls.key"), &tls.key_pem).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis"));
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--cluster", "never", "--log-format", "text", "--audit-log"])
            .arg(dir.path().join("audit.jsonl"))
            .arg("--tls-cert")
            .arg(dir.path().join("tls.crt"))
            .arg("--tls-key")
            .arg(dir.path().join("tls.key"))
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(p) = policy {
            std::fs::write(dir.path().join("policy.yaml"), p).unwrap();
            cmd.arg("--policy").arg(dir.path().join("policy.yaml"));
        }
        let mut child = cmd.spawn().unwrap();
        let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = loop {
            let line = lines.next().expect("portcullis exited before serving").unwrap();
            if let Some(rest) = line.split("portcullis serving https://").nth(1) {
                break rest.split('/').next().unwrap().to_string();
            }
        };
        // Keep draining its log so that it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
        let client = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(tls.ca_pem.as_bytes()).unwrap()])
            .build()
            .unwrap();
        Served { child, url: format!("https://{addr}"), client, _dir: dir }
    }

    /// Its peak resident set so far, in bytes (`VmHWM`).
    pub fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/<pid>/status");
        kb * 1024
    }

    /// POSTs a review body to `path`: (HTTP status, the response's `response`).
    pub async fn post(&self, path: &str, body: Vec<u8>) -> (u16, Value) {
        let r = self
            .client
            .post(format!("{}{path}?timeout=10s", self.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        (status, v["response"].clone())
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// A Pod review whose first container carries `extra` fields (what a
/// decision never reads), written straight to bytes.
fn pod_with(uid: &str, extra: Value) -> Vec<u8> {
    let mut r = pod_review("prod", &["127.0.0.1:1/shop/app:v1"], json!({}), &[]);
    r["request"]["uid"] = json!(uid);
    if let (Some(c), Some(extra)) = (r["request"]["object"]["spec"]["containers"][0].as_object_mut(), extra.as_object())
    {
        c.extend(extra.clone());
    }
    serde_json::to_vec(&r).unwrap()
}

/// Issue 21, finding 5: one 7.3 MB review (a 3.6M-element array inside the
/// Pod spec) took 412 MB, and four at once 1.27 GB; a Pod of 80,000 `env`
/// entries (1.4 MB, as an API server would send it) 186 MB per review.
/// Each review is decoded once, to what a decision reads, within a budget,
/// and the bytes being decoded at once are bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_reviews_stay_within_the_charts_memory_limit() {
    let served = Served::start(None, &[]);
    let idle = served.peak_rss();
    let long = |uid: &str| pod_with(uid, json!({"args": vec![0u8; 3_600_000]}));
    let env: Vec<Value> = (0..80_000).map(|i| json!({"name": format!("E{i}"), "value": "v"})).collect();
    let bodies = vec![long("long-1"), long("long-2"), long("long-3"), pod_with("env-1", json!({"env": env}))];
    assert!(bodies[0].len() > 7_000_000 && bodies[0].len() <= portcullis::webhook::MAX_BODY, "{}", bodies[0].len());
    assert!(bodies[3].len() > 1_400_000, "{}", bodies[3].len());
    let answers = futures::future::join_all(bodies.into_iter().map(|b| served.post("/validate", b))).await;
    for (status, resp) in &answers {
        assert_eq!(*status, 200, "{resp}");
        assert_eq!(resp["allowed"], false, "production fails closed on the unreachable registry: {resp}");
        assert!(resp["status"]["message"].as_str().unwrap().contains("127.0.0.1:1/shop/app:v1"), "{resp}");
    }
    let peak = served.peak_rss();
    println!("peak RSS: {:.1} MiB idle, {:.1} MiB after four hostile reviews at once", mib(idle), mib(peak));
    assert!(peak < CHART_LIMIT, "peak RSS {:.1} MiB, over the chart's limit of 256 MiB", mib(peak));
}
