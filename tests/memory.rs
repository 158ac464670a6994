//! Memory ceilings, measured on real processes: `portcullis serve` run as
//! a process of its own (its peak resident memory, `VmHWM`, read from
//! `/proc` after it answered), and `portcullis check` (its peak read by the
//! parent that waited for it).
//!
//! The ceilings are well under the chart's memory limit (256 MiB).

use crate::common;

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use base64::Engine as _;
use common::*;
use serde_json::{json, Value};

/// The chart's memory limit is 256 MiB; a replica must stay well under it.
/// (About 50 MiB of what serve holds after its first review is there after
/// reviewing any image: 30 MiB idle, about 80 MiB after one clean image.)
const CEILING_MIB: u64 = 160;

// ------------------------------------------------- a serve process ----

/// `portcullis serve` as a process of its own, on a free loopback port,
/// with a policy, a serving certificate and a grant key in a directory of
/// its own. Its log is read as it comes (so it never blocks on a full pipe).
pub struct ServeProcess {
    child: std::process::Child,
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    pub client: reqwest::Client,
    log: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl ServeProcess {
    /// Starts serve on `policy` (YAML), with `args` added to its command line.
    pub fn start(policy: &str, args: &[&str]) -> ServeProcess {
        let dir = tempfile::tempdir().unwrap();
        let tls = test_tls();
        let file = |name: &str, content: &str| {
            std::fs::write(dir.path().join(name), content).unwrap();
            dir.path().join(name)
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["serve", "--listen", "127.0.0.1:0", "--cluster", "never", "--reevaluate-every", "0s"])
            .arg("--policy")
            .arg(file("policy.yaml", policy))
            .arg("--grant-key")
            .arg(file("grant.key", GRANT_KEY))
            .arg("--tls-cert")
            .arg(file("tls.crt", &tls.cert_pem))
            .arg("--tls-key")
            .arg(file("tls.key", &tls.key_pem))
            .arg("--audit-log")
            .arg(dir.path().join("audit.jsonl"))
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = loop {
            let line = lines.next().expect("portcullis serve exited before serving").unwrap();
            if let Some(rest) = line.split("portcullis serving https://").nth(1) {
                break rest.split('/').next().unwrap().to_string();
            }
        };
        let log = Arc::new(Mutex::new(Vec::new()));
        let keep = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                keep.lock().unwrap().push(line);
            }
        });
        let client = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(tls.ca_pem.as_bytes()).unwrap()])
            .build()
            .unwrap();
        ServeProcess { child, url: format!("https://{addr}"), client, log, _dir: dir }
    }

    /// Sends an AdmissionReview to `/validate` (the API server's timeout
    /// its longest, 30s); the response object.
    pub async fn validate(&self, review: &Value) -> Value {
        let r = self.client.post(format!("{}/validate?timeout=30s", self.url)).json(review).send().await.unwrap();
        assert_eq!(r.status(), 200, "{}", self.log().join("\n"));
        r.json::<Value>().await.unwrap()["response"].clone()
    }

    /// POSTs a body as it is to `path`: (the HTTP status, the response object).
    pub async fn post_raw(&self, path: &str, body: Vec<u8>) -> (u16, Value) {
        let r = self
            .client
            .post(format!("{}{path}?timeout=30s", self.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json::<Value>().await.unwrap_or(Value::Null)["response"].clone())
    }

    /// Peak resident memory so far, in KiB (`VmHWM`).
    pub fn peak_rss_kib(&self) -> u64 {
        status_kib(self.child.id(), "VmHWM:")
    }

    /// Resident memory now, in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> u64 {
        status_kib(self.child.id(), "VmRSS:")
    }

    /// What it logged so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `/proc/<pid>/status` field in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Runs `cmd` to its end and returns its output and its peak resident
/// memory in KiB, as the parent that waited for it sees it (`wait4`'s
/// `ru_maxrss`, through GNU time, or else Python's `resource`): exact, not
/// sampled while it runs.
pub fn run_measured(cmd: &mut Command) -> (std::process::Output, u64) {
    const MARK: &str = "portcullis-test-peak-rss-kib=";
    let program = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
    let mut wrapped = if std::path::Path::new("/usr/bin/time").exists() {
        let mut c = Command::new("/usr/bin/time");
        c.arg("-f").arg(format!("{MARK}%M")).arg(&program).args(&args);
        c
    } else {
        let mut c = Command::new("python3");
        c.arg("-c")
            .arg(format!(
                "import resource, subprocess, sys\n\
                 r = subprocess.run(sys.argv[1:])\n\
                 print('{MARK}%d' % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n\
                 sys.exit(r.returncode)"
            ))
            .arg(&program)
            .args(&args);
        c
    };
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => wrapped.env(k, v),
            None => wrapped.env_remove(k),
        };
    }
    let out = wrapped.output().expect("GNU time (/usr/bin/time) or python3 is needed to measure peak memory");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let kib = stderr
        .lines()
        .filter_map(|l| l.trim().strip_prefix(MARK))
        .next_back()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak memory reported: {stderr}"));
    (out, kib)
}

// ------------------------------------------------ hostile registries ----

/// A DSSE envelope of exactly `len` bytes that looks like cosign's: its
/// payload an in-toto Statement about `digest`, its predicate a scan
/// report of tiny JSON elements; its signature is not a signature.
fn junk_envelope(len: usize, digest: &str) -> Vec<u8> {
    let head = r#"{"payloadType":"application/vnd.in-toto+json","payload":""#;
    let tail = r#"","signatures":[{"keyid":"","sig":"MEUCIQDhostilehostilehostilehostilehostilehostileAAAAAiEAhostilehostilehostilehostilehostilehostileAAA="}]}"#;
    let b64_len = (len - head.len() - tail.len()) / 4 * 4;
    let raw_len = b64_len / 4 * 3;
    let statement = format!(
        r#"{{"_type":"https://in-toto.io/Statement/v1","subject":[{{"name":"x","digest":{{"sha256":"{}"}}}}],"predicateType":"https://cosign.sigstore.dev/attestation/vuln/v1","predicate":{{"scanner":{{"uri":"x","result":{{"SchemaVersion":2,"Results":[{{"Target":"t","Vulnerabilities":[{{"VulnerabilityID":"CVE-0","x":["#,
        digest.trim_start_matches("sha256:")
    );
    let close = "0]}]}]}}}}";
    let mut raw = statement.into_bytes();
    while raw.len() + close.len() + 2 <= raw_len {
        raw.extend_from_slice(b"0,");
    }
    raw.extend_from_slice(close.as_bytes());
    raw.resize(raw_len, b' ');
    let mut out = head.as_bytes().to_vec();
    out.extend_from_slice(base64::engine::general_purpose::STANDARD.encode(&raw).as_bytes());
    out.extend_from_slice(tail.as_bytes());
    out.resize(len, b' ');
    out
}

/// Pushes an image to `repo` whose cosign `.att` manifest lists the same
/// junk envelope of `size` bytes `layers` times (the registry serves it
/// each time). Returns `host/repo@sha256:…`.
async fn hostile_image(reg: &Registry, repo: &str, n: usize, layers: usize, size: usize) -> String {
    let image = reg.push_image(repo, &format!("v{n}"), &format!("hostile {repo} {n}")).await;
    let digest = image.rsplit('@').next().unwrap();
    let blob = junk_envelope(size, digest);
    let blob_digest = reg.put_blob_public(repo, &blob).await;
    let config = reg.put_blob_public(repo, b"{}").await;
    let layer = json!({
        "mediaType": "application/vnd.dsse.envelope.v1+json",
        "digest": blob_digest,
        "size": blob.len(),
        "annotations": {"predicateType": "https://cosign.sigstore.dev/attestation/vuln/v1"}
    });
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
        "layers": vec![layer; layers],
    });
    reg.put_manifest(repo, &att_tag(&image), &manifest).await;
    image
}

fn message(resp: &Value) -> String {
    resp["status"]["message"].as_str().unwrap_or_default().to_string()
}

/// Finding 4: an image whose `.att` manifest lists 32 layers of 16 MiB took
/// 867 MB in `serve`, four of them in one Pod 2.2 GB: the replica was
/// OOM-killed (256 MiB limit), and re-evaluation fetched them again. Now a
/// lookup reads at most its byte budget, one attestation at a time, and
/// blobs in flight are bounded across lookups.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_registry_cannot_exhaust_serve_memory() {
    let w = world().await;
    let mut images = Vec::new();
    for n in 0..4 {
        images.push(hostile_image(&w.reg, "hostile/att", n, 32, 16 << 20).await);
    }
    // A deadline long enough for a loaded machine: the answer is judged on
    // what was read, not on the clock.
    let serve = ServeProcess::start(&w.policy, &["--deadline", "29s"]);
    let idle = serve.rss_kib();
    let refs: Vec<&str> = images.iter().map(String::as_str).collect();
    let started = Instant::now();
    let resp = serve.validate(&pod_review("prod", &refs, json!({}), &[])).await;
    let peak = serve.peak_rss_kib();
    eprintln!(
        "serve: idle {} MiB, peak {} MiB after reviewing 4 images of 32 x 16 MiB attestations ({:.1}s)",
        idle / 1024,
        peak / 1024,
        started.elapsed().as_secs_f64()
    );
    assert!(peak < CEILING_MIB * 1024, "peak resident memory {} MiB, over {CEILING_MIB} MiB", peak / 1024);
    assert_eq!(resp["allowed"], false, "{resp}");
    let m = message(&resp);
    for image in &images {
        let digest = image.rsplit('@').next().unwrap();
        assert!(m.contains(&digest[..19]), "each image is named in the denial: {m}");
    }
    assert!(m.contains("does not verify with any trusted key"), "denied for what was read: {m}");
    // The same again (cached now) and in a warn tier: a warning, not a crash.
    let resp = serve.validate(&pod_review("dev", &refs, json!({}), &[])).await;
    assert_eq!(resp["allowed"], true, "{resp}");
    assert!(resp["warnings"].to_string().contains("not read"), "{resp}");
    assert!(serve.peak_rss_kib() < CEILING_MIB * 1024);
}

/// `{head}` then `item` repeated to about `len` bytes (comma-separated),
/// then `{tail}`.
fn repeated(head: &str, item: &str, tail: &str, len: usize) -> String {
    let n = (len - head.len() - tail.len()) / (item.len() + 1);
    let mut out = String::with_capacity(len);
    out.push_str(head);
    for i in 0..n {
        if i > 0 {
            out.push(',');
        }
        out.push_str(item);
    }
    out.push_str(tail);
    out
}

/// Issue 21, finding 4: a signed predicate of millions of tiny JSON
/// elements was read into a `serde_json::Value` (about 30 times its size)
/// and copied twice more. Predicates are read into typed structs that skip
/// what they do not name, with caps on what they keep, or within a memory
/// budget; what is past a cap is a clear error, never a crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_predicate_of_tiny_elements_stays_small() {
    let w = world().await;
    // Envelopes of about 15 MiB (under the 16 MiB limit): the predicate's
    // text, base64, in a DSSE envelope.
    const TEXT: usize = 11 << 20;
    let meta = r#""metadata":{"scanStartedOn":"2026-01-01T00:00:00Z","scanFinishedOn":"NOW"}"#.replace(
        "NOW",
        &(chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    );
    let trivy_head = r#"{"scanner":{"uri":"pkg:github/aquasecurity/trivy@v0.58.1","version":"0.58.1","result":{"SchemaVersion":2,"Results":[{"Target":"t","Vulnerabilities":["#;
    let trivy_tail = format!("]}}]}}}},{meta}}}");
    // (what, predicate type, predicate text, admitted, what the answer says)
    let shapes = [
        (
            "a scan with an ignored field of millions of zeros",
            "vuln",
            repeated(
                &format!(r#"{trivy_head}{{"VulnerabilityID":"CVE-2024-0001","Severity":"LOW","x":["#),
                "0",
                &format!("]}}{trivy_tail}"),
                TEXT,
            ),
            true,
            "",
        ),
        (
            "a scan of half a million tiny findings",
            "vuln",
            repeated(trivy_head, r#"{"VulnerabilityID":"a"}"#, &trivy_tail, TEXT),
            false,
            "more than 50000 vulnerabilities",
        ),
        (
            "an in-toto vulns predicate of tiny entries",
            "https://in-toto.io/attestation/vulns/v0.2",
            repeated(r#"{"scanner":{"uri":"x","result":["#, r#"{"id":"a"}"#, &format!("]}},{meta}}}"), TEXT),
            false,
            "more than 50000 vulnerabilities",
        ),
        (
            "a SARIF report of millions of zeros",
            "vuln",
            repeated(
                r#"{"scanner":{"uri":"x","result":{"version":"2.1.0","runs":[{"tool":{"driver":{"name":"Trivy"}},"results":["#,
                "0",
                &format!("]}}]}}}},{meta}}}"),
                TEXT,
            ),
            false,
            "SARIF report: a list has more than 50000 entries",
        ),
    ];
    let mut images = Vec::new();
    for (n, (what, predicate_type, text, _, _)) in shapes.iter().enumerate() {
        let image = w.image("tiny/elements", &format!("v{n}"), None, Some(("ci", passed()))).await;
        w.cosign.attest_text("scanner", &image, predicate_type, text);
        eprintln!("{what}: attested ({} MiB of predicate)", text.len() >> 20);
        images.push(image);
    }
    // A process of its own for each: its peak is what reading that one
    // attestation took.
    for ((what, _, _, admitted, says), image) in shapes.iter().zip(&images) {
        let serve = ServeProcess::start(&w.policy, &["--deadline", "29s"]);
        let resp = serve.validate(&pod_review("prod", &[image], json!({}), &[])).await;
        let peak = serve.peak_rss_kib();
        eprintln!("{what}: peak {} MiB", peak / 1024);
        assert!(peak < CEILING_MIB * 1024, "{what}: peak resident memory {} MiB, over {CEILING_MIB} MiB", peak / 1024);
        assert_eq!(resp["allowed"], *admitted, "{what}: {resp}");
        assert!(message(&resp).contains(says), "{what}: {}", message(&resp));
    }
}

/// Finding 4 through `portcullis check`: the same registry shape (32
/// attestations of 16 MiB per image, four images) took 851 MB for one
/// check. Its peak is read by the parent that waited for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_registry_cannot_exhaust_check_memory() {
    let w = world().await;
    let mut images = Vec::new();
    for n in 0..4 {
        images.push(hostile_image(&w.reg, "hostile/check", n, 32, 16 << 20).await);
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.yaml"), &w.policy).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    cmd.arg("check")
        .args(&images)
        .args(["--tier", "production", "--output", "json", "--timeout", "120s", "--policy"])
        .arg(dir.path().join("policy.yaml"))
        // What is measured is memory: on a loaded machine, reading 4 x 32 MiB
        // through the bytes-in-flight budget may take longer than the default
        // per-request (5s) and per-lookup (20s) bounds, which are not tested here.
        .args(["--registry-timeout", "60s", "--registry-lookup-timeout", "110s"]);
    let (out, peak) = tokio::task::spawn_blocking(move || run_measured(&mut cmd)).await.unwrap();
    eprintln!("check: peak {} MiB", peak / 1024);
    assert!(peak < CEILING_MIB * 1024, "peak resident memory {} MiB, over {CEILING_MIB} MiB", peak / 1024);
    assert_eq!(out.status.code(), Some(1), "denied: {}", String::from_utf8_lossy(&out.stderr));
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["allowed"], false);
    let verdicts = answer["verdicts"].as_array().unwrap();
    assert_eq!(verdicts.len(), 4);
    for v in verdicts {
        assert!(v["error"].is_null(), "judged on what was read, not failed: {v}");
        assert!(v["notes"].to_string().contains("not read"), "{v}");
        assert!(v["problems"].to_string().contains("does not verify with any trusted key"), "{v}");
    }
}

// ------------------------------------------- hostile review bodies ----

/// A Pod review whose first container carries `extra` fields (what a
/// decision never reads).
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
/// Pod spec) took 412 MB, and four at once took the process past 745 MiB; a
/// Pod of 80,000 `env` entries (1.4 MB, as an API server would send it) 186
/// MB per review. Each review is decoded once, to what a decision reads,
/// within a budget, and the bytes being read at once are bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_reviews_stay_within_the_ceiling() {
    let served = ServeProcess::start(portcullis::policy::EMBEDDED_DEFAULT, &[]);
    let long = |uid: &str| pod_with(uid, json!({"args": vec![0u8; 3_600_000]}));
    let env: Vec<Value> = (0..80_000).map(|i| json!({"name": format!("E{i}"), "value": "v"})).collect();
    let bodies = vec![long("long-1"), long("long-2"), long("long-3"), pod_with("env-1", json!({"env": env}))];
    assert!(bodies[0].len() > 7_000_000 && bodies[0].len() <= portcullis::webhook::MAX_BODY, "{}", bodies[0].len());
    assert!(bodies[3].len() > 1_400_000, "{}", bodies[3].len());
    let answers = futures::future::join_all(bodies.into_iter().map(|b| served.post_raw("/validate", b))).await;
    for (status, resp) in &answers {
        assert_eq!(*status, 200, "{resp}");
        assert_eq!(resp["allowed"], false, "production fails closed on the unreachable registry: {resp}");
        assert!(resp["status"]["message"].as_str().unwrap().contains("127.0.0.1:1/shop/app:v1"), "{resp}");
    }
    let peak = served.peak_rss_kib() / 1024;
    println!("peak RSS after four hostile reviews at once: {peak} MiB");
    assert!(peak < CEILING_MIB, "peak RSS {peak} MiB, over the ceiling of {CEILING_MIB} MiB");
}
