//! `portcullis check` (the CI entry point) and `portcullis policy lint`, run
//! as the real binary against a real registry and cosign attestations.

mod common;

use std::process::Command;

use common::*;
use portcullis::engine::EngineConfig;
use serde_json::{json, Value};

fn portcullis(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis")).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_exit_codes_and_the_same_verdict_as_admission() {
    let w = world().await;
    let clean_img = w.image("shop/api", "clean", Some(("scanner", clean())), Some(("ci", passed()))).await;
    let crit_img = w.image("shop/api", "crit", Some(("scanner", criticals())), Some(("ci", passed()))).await;
    let stale = vuln_predicate(&[], chrono::Utc::now() - chrono::Duration::hours(48));
    let stale_img = w.image("shop/api", "stale", Some(("scanner", stale)), Some(("ci", passed()))).await;
    let policy = w.cosign.path().join("policy.yaml");
    std::fs::write(&policy, &w.policy).unwrap();
    let policy = policy.to_str().unwrap();

    // (case, image, tier, exit code, text on stdout)
    let rows = [
        ("clean in production", clean_img.as_str(), "production", 0, "ADMIT"),
        (
            "criticals in production",
            crit_img.as_str(),
            "production",
            1,
            "2 critical vulnerabilities exceed the limit 0",
        ),
        ("criticals in development (warn)", crit_img.as_str(), "development", 0, "WARN"),
        ("stale scan in production", stale_img.as_str(), "production", 1, "older than the maxAge 24h"),
    ];
    for (case, image, tier, code, text) in rows {
        let (got, out, err) = portcullis(&["check", image, "--policy", policy, "--tier", tier]);
        assert_eq!(got, code, "{case}: stdout {out} stderr {err}");
        assert!(out.contains(text), "{case}: {out}");
    }
    // An image written with its digest is named once (not `…@sha256:X@sha256:X`);
    // one written by tag gets the digest judged.
    let (_, out, _) = portcullis(&["check", &clean_img, "--policy", policy, "--tier", "production"]);
    assert!(out.contains(&format!("ADMIT  {clean_img} for tier production")), "{out}");
    let tag = format!("{}/shop/api:clean", w.reg.host);
    let (_, out, _) = portcullis(&["check", &tag, "--policy", policy, "--tier", "production"]);
    let digest = clean_img.rsplit('@').next().unwrap();
    assert!(out.contains(&format!("ADMIT  {tag}@{digest} for tier production")), "{out}");

    // Errors exit 2: an unknown tier, an unreachable registry, a bad reference.
    let (code, _, err) = portcullis(&["check", &clean_img, "--policy", policy, "--tier", "prod"]);
    assert_eq!(code, 2);
    assert!(err.contains("tier \"prod\" is not defined"), "{err}");
    let (code, out, _) = portcullis(&["check", "127.0.0.1:1/shop/api:v1", "--policy", policy, "--tier", "production"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("registry 127.0.0.1:1 unreachable"), "{out}");
    let (code, _, err) = portcullis(&["check", "Bad Ref", "--policy", policy, "--tier", "production"]);
    assert_eq!(code, 2);
    assert!(err.contains("invalid image reference"), "{err}");

    // Replaying at the recorded time gives the recorded verdict: the stale
    // scan was fresh a day ago.
    let yesterday = (chrono::Utc::now() - chrono::Duration::hours(36)).to_rfc3339();
    let (code, out, _) =
        portcullis(&["check", &stale_img, "--policy", policy, "--tier", "production", "--at", &yesterday]);
    assert_eq!(code, 0, "{out}");

    // The webhook and check agree, reason for reason.
    let hook = Webhook::start(&w.policy, EngineConfig::default()).await;
    for image in [&clean_img, &crit_img, &stale_img] {
        let resp = hook.admit_pod("prod", &[image], json!({}), &[]).await;
        let audit = hook.audit();
        let admitted = audit.last().unwrap();
        // Replayed at the recorded time with the recorded policy: the same verdict, reason for reason.
        let at = admitted["evaluatedAt"].as_str().unwrap();
        let args = ["check", image, "--policy", policy, "--tier", "production", "--output", "json", "--at", at];
        let (_, out, _) = portcullis(&args);
        let cli: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(cli["evaluatedAt"], at);
        assert_eq!(cli["allowed"], resp["allowed"], "{image}");
        assert_eq!(cli["policyDigest"], admitted["policyDigest"]);
        for field in ["admitted", "digest", "problems", "evidence", "exceptions"] {
            assert_eq!(cli["verdicts"][0][field], admitted["images"][0][field], "{image}: {field}");
        }
    }
}

/// `check --attestation` with cosign's own DSSE envelopes (signed with keys)
/// saved as files: the same verdicts as through the registry, and no
/// registry asked (the images are named by digest alone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_from_envelope_files_without_a_registry() {
    let mut w = world().await;
    let clean_img = w.image("shop/files", "clean", Some(("scanner", clean())), Some(("ci", passed()))).await;
    let crit_img = w.image("shop/files", "crit", Some(("scanner", criticals())), Some(("ci", passed()))).await;
    let dir = w.cosign.path();
    let policy = dir.join("policy.yaml");
    std::fs::write(&policy, &w.policy).unwrap();
    // Each image's two envelopes, as they sit in its .att layers.
    let mut files = Vec::new();
    for (name, image) in [("clean", &clean_img), ("crit", &crit_img)] {
        let m = w.reg.get_manifest("shop/files", &att_tag(image)).await;
        for (i, layer) in m["layers"].as_array().unwrap().iter().enumerate() {
            let bytes = w.reg.get_blob("shop/files", layer["digest"].as_str().unwrap()).await;
            let f = dir.join(format!("{name}-{i}.dsse.json"));
            std::fs::write(&f, bytes).unwrap();
            files.push(f);
        }
    }
    w.reg.stop();
    let digest = |image: &str| image.rsplit('@').next().unwrap().to_string();
    let args = |image: String, from: &str| {
        let mut a = vec!["check".to_string(), image];
        for f in files.iter().filter(|f| f.file_name().unwrap().to_string_lossy().starts_with(from)) {
            a.extend(["--attestation".to_string(), f.to_str().unwrap().to_string()]);
        }
        a.extend(["--policy", policy.to_str().unwrap(), "--tier", "production"].map(String::from));
        a
    };
    // (case, args, exit code, text)
    let rows = [
        ("clean, by digest", args(digest(&clean_img), "clean"), 0, "ADMIT"),
        ("clean, by name@digest (the registry is down)", args(clean_img.clone(), "clean"), 0, "ADMIT"),
        ("criticals", args(digest(&crit_img), "crit"), 1, "2 critical vulnerabilities exceed the limit 0"),
        (
            "clean's envelopes for another image",
            args(digest(&crit_img), "clean"),
            1,
            "attestation is for another image",
        ),
    ];
    for (case, args, code, text) in rows {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (got, out, err) = portcullis(&args);
        assert_eq!(got, code, "{case}: {out} {err}");
        assert!(out.contains(text), "{case}: want {text:?} in {out}");
    }
    // A file that is neither: a clear error, exit 2.
    let junk = dir.join("junk.json");
    std::fs::write(&junk, "{\"hello\": 1}").unwrap();
    let (code, _, err) = portcullis(&[
        "check",
        &digest(&clean_img),
        "--attestation",
        junk.to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
        "--tier",
        "production",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("neither a DSSE envelope"), "{err}");
}

#[test]
fn lint_reports_every_problem_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        r#"apiVersion: portcullis.dev/v1alpha1
kind: PromotionPolicy
spec:
  signers:
    scanner: { publicKey: "-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----" }
  defaultTier: prod
  tiers:
    production:
      vulnerabilities: { signedBy: [scanner, qa], max: { critical: 0 } }
      tests: { signedBy: [ci] }
  exceptions:
    - { id: CVE-1, tiers: [staging], expires: 2026-12-31, reason: "", approvedBy: sec }
"#,
    )
    .unwrap();
    let (code, out, _) = portcullis(&["policy", "lint", bad.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    for expected in [
        "bad.yaml:6:3: spec.defaultTier: names undefined tier \"prod\"",
        "bad.yaml:9:46: spec.tiers.production.vulnerabilities.signedBy[1]: names undefined signer \"qa\"",
        "spec.tiers.production.tests.signedBy[0]: names undefined signer \"ci\"",
        "spec.exceptions[0].reason: is empty",
        "spec.exceptions[0].tiers[0]: names undefined tier \"staging\"",
        "spec.signers.scanner",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }

    // Syntax and schema errors carry line and column.
    std::fs::write(&bad, "apiVersion: portcullis.dev/v1alpha1\nkind: PromotionPolicy\nspec:\n  signers: {}\n  tiers:\n    production:\n      mood: enforce\n").unwrap();
    let (code, out, _) = portcullis(&["policy", "lint", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(out.contains(":7:") && out.contains("unknown field `mood`"), "{out}");
    assert!(!out.contains("at line 7"), "the position is said once: {out}");
    std::fs::write(&bad, "apiVersion: portcullis.dev/v1alpha1\nkind: PromotionPolicy\nspec:\n  signers: {}\n  tiers:\n    p: { vulnerabilities: { signedBy: [], maxAge: soon } }\n").unwrap();
    let (_, out, _) = portcullis(&["policy", "lint", bad.to_str().unwrap()]);
    assert!(out.contains("duration \"soon\" does not parse"), "{out}");
    std::fs::write(&bad, "apiVersion: portcullis.dev/v1alpha1\nkind: PromotionPolicy\nspec:\n  signers: {}\n  tiers: { p: {} }\n  exceptions:\n    - { id: CVE-1, reason: r, approvedBy: a }\n").unwrap();
    let (_, out, _) = portcullis(&["policy", "lint", bad.to_str().unwrap()]);
    assert!(out.contains(":7:") && out.contains("missing field `expires`"), "an exception needs an expiry: {out}");

    // The embedded default and the shipped manifests' policy are valid.
    let (code, out, _) = portcullis(&["policy", "lint", "src/policy/default-policy.yaml"]);
    assert_eq!(code, 0, "{out}");
    let cm: serde_json::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string("manifests/20-configmap-policy.yaml").unwrap()).unwrap();
    let shipped = dir.path().join("shipped.yaml");
    std::fs::write(&shipped, cm["data"]["policy.yaml"].as_str().unwrap()).unwrap();
    let (code, out, _) = portcullis(&["policy", "lint", shipped.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");

    // Two tiers of one name: refused where the second begins, not read as the second.
    std::fs::write(&bad, "apiVersion: portcullis.dev/v1alpha1\nkind: PromotionPolicy\nspec:\n  signers: {}\n  tiers:\n    production: { mode: enforce }\n    production: { mode: warn }\n").unwrap();
    let (code, out, _) = portcullis(&["policy", "lint", bad.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("bad.yaml:7:5: spec.tiers: duplicate key \"production\" (first at line 6)"), "{out}");
    // Every problem in one run, structural ones too, each once.
    std::fs::write(&bad, "apiVersion: portcullis.dev/v1alpha1\nkind: PromotionPolicy\nspec:\n  signers: {}\n  defaultTier: nope\n  tiers:\n    production:\n      mood: enforce\n      vulnerabilities: { signedBy: [], maxAge: soon }\n    staging:\n      mode: sometimes\n  exceptions:\n    - { id: CVE-1, reason: r, approvedBy: a }\n").unwrap();
    let (code, out, _) = portcullis(&["policy", "lint", bad.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    for expected in [
        "bad.yaml:8:7: spec.tiers.production.mood: unknown field `mood`",
        "bad.yaml:9:40: spec.tiers.production.vulnerabilities.maxAge: duration \"soon\" does not parse",
        "bad.yaml:11:7: spec.tiers.staging.mode: unknown variant `sometimes`",
        "bad.yaml:13:7: spec.exceptions[0]: missing field `expires`",
        "bad.yaml:5:3: spec.defaultTier: names undefined tier \"nope\"",
    ] {
        assert_eq!(out.matches(expected).count(), 1, "{expected:?} once in:\n{out}");
    }
    // One of a thing is not plural.
    std::fs::write(
        &bad,
        "apiVersion: portcullis.dev/v1alpha1\nkind: PromotionPolicy\nspec:\n  signers: {}\n  tiers: { p: {} }\n",
    )
    .unwrap();
    let (_, out, _) = portcullis(&["policy", "lint", bad.to_str().unwrap()]);
    assert!(out.contains(": ok (1 tier, 0 signers, digest sha256:"), "{out}");
}

/// A reader that goes away (`portcullis … | head -1`) ends the command
/// quietly, as tools killed by SIGPIPE do: never a panic.
#[test]
fn a_closed_output_pipe_is_no_panic() {
    for args in [
        &["normalize", "tests/fixtures/reports/trivy.json"][..],
        &["policy", "lint", "src/policy/default-policy.yaml"][..],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(args)
            .stdout(std::process::Stdio::from(writer))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(141), "{args:?}: {stderr}");
    }
}

/// `--version` names the commit too (or says it cannot).
#[test]
fn the_version_names_its_revision() {
    let (code, out, _) = portcullis(&["--version"]);
    assert_eq!(code, 0);
    assert!(out.starts_with(&format!("portcullis {} (revision ", env!("CARGO_PKG_VERSION"))), "{out}");
    // `policy lint --output json` for tools.
    let (code, out, _) = portcullis(&["policy", "lint", "--output", "json", "src/policy/default-policy.yaml"]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((v["ok"].as_bool(), v["problems"].as_array().map(Vec::len)), (Some(true), Some(0)), "{v}");
}

/// A file that cannot be read is said once.
#[test]
fn errors_name_their_cause_once() {
    for args in [
        &["report", "--kubeconfig", "/nonexistent/kubeconfig"][..],
        // serve takes --kubeconfig too, and a broken one given is an error, not a local run.
        &["serve", "--kubeconfig", "/nonexistent/kubeconfig", "--listen", "127.0.0.1:0"][..],
    ] {
        let (code, _, err) = portcullis(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert_eq!(err.matches("No such file or directory").count(), 1, "{args:?}: {err}");
    }
}

#[test]
fn normalize_shows_what_the_gate_sees() {
    // (fixture, total, critical, high, fixable)
    let rows = [
        ("trivy.json", 7, 2, 2, 5),
        ("grype.json", 6, 2, 2, 4),
        ("trivy.sarif", 6, 1, 3, 4),
        ("grype.sarif", 7, 2, 1, 4),
        ("intoto-vulns-v0.1.json", 7, 2, 2, 1),
        ("intoto-vulns-v0.2.json", 6, 3, 2, 4),
        ("cosign-vuln-grype.json", 6, 2, 2, 4),
        ("statement-intoto-vulns.json", 6, 1, 1, 5),
    ];
    for (file, total, critical, high, fixable) in rows {
        let path = format!("tests/fixtures/reports/{file}");
        let (code, out, err) = portcullis(&["normalize", &path, "--output", "json"]);
        assert_eq!(code, 0, "{file}: {err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["total"], total, "{file}");
        assert_eq!(v["counts"]["critical"]["total"], critical, "{file}");
        assert_eq!(v["counts"]["high"]["total"], high, "{file}");
        assert_eq!(v["fixable"], fixable, "{file}");
        let (code, text, _) = portcullis(&["normalize", &path]);
        assert_eq!(code, 0);
        assert!(text.contains("worst findings:") && text.contains("critical"), "{file}: {text}");
    }
    // An unrecognised file says which formats are understood.
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("sbom.json");
    std::fs::write(&other, r#"{"bomFormat": "CycloneDX", "components": []}"#).unwrap();
    let (code, _, err) = portcullis(&["normalize", other.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("understood: Trivy JSON, Grype JSON, SARIF 2.1.0"), "{err}");
}

#[test]
fn serve_refuses_an_invalid_policy() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "kind: Nope\n").unwrap();
    let (code, _, err) =
        portcullis(&["serve", "--policy", bad.to_str().unwrap(), "--cluster", "never", "--listen", "127.0.0.1:0"]);
    assert_eq!(code, 2);
    assert!(err.contains("refusing to start on an invalid policy"), "{err}");
}

/// `serve` ends on SIGTERM within its grace even when the audit trail goes
/// to a standard output no one reads (a full pipe): before, it waited for
/// the writer forever and ignored SIGTERM.
#[test]
fn serve_stops_on_sigterm_even_when_its_audit_output_is_stuck() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let tls = test_tls();
    std::fs::write(dir.path().join("tls.crt"), &tls.cert_pem).unwrap();
    std::fs::write(dir.path().join("tls.key"), &tls.key_pem).unwrap();
    // A pipe whose read end is kept open and never read: writes block once it is full.
    let (_unread, writer) = std::io::pipe().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["serve", "--listen", "127.0.0.1:0", "--cluster", "never", "--log-format", "text", "--audit-log", "-"])
        .arg("--tls-cert")
        .arg(dir.path().join("tls.crt"))
        .arg("--tls-key")
        .arg(dir.path().join("tls.key"))
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::from(writer))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("portcullis exited").unwrap();
        if let Some(rest) = line.split("portcullis serving https://").nth(1) {
            break rest.split('/').next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
    // Decisions, each an audit record on stdout, until the pipe is full.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(tls.ca_pem.as_bytes()).unwrap()])
            .build()
            .unwrap();
        for _ in 0..200 {
            let review = pod_review("prod", &["Bad Ref"], json!({}), &[]);
            let r = client.post(format!("https://{addr}/validate")).json(&review).send().await.unwrap();
            assert_eq!(r.status(), 200);
        }
    });
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(std::time::Instant::now() < until, "serve still running 30 s after SIGTERM");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// `--audit-sync`: reviews answered under load, then SIGKILL. With `always`
/// every answered decision's record is on disk; with `batch`, what is lost
/// is at most what was queued (printed, for the README's figure).
#[test]
fn a_hard_kill_loses_no_answered_record_with_audit_sync_always() {
    use std::io::BufRead;
    for mode in ["always", "batch"] {
        let dir = tempfile::tempdir().unwrap();
        let tls = test_tls();
        std::fs::write(dir.path().join("tls.crt"), &tls.cert_pem).unwrap();
        std::fs::write(dir.path().join("tls.key"), &tls.key_pem).unwrap();
        let trail = dir.path().join("audit.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["serve", "--listen", "127.0.0.1:0", "--cluster", "never", "--log-format", "text"])
            .arg("--audit-log")
            .arg(&trail)
            .args(["--audit-sync", mode])
            .arg("--tls-cert")
            .arg(dir.path().join("tls.crt"))
            .arg("--tls-key")
            .arg(dir.path().join("tls.key"))
            .env("RUST_LOG", "info")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = loop {
            let line = lines.next().expect("portcullis exited").unwrap();
            if let Some(rest) = line.split("portcullis serving https://").nth(1) {
                break rest.split('/').next().unwrap().to_string();
            }
        };
        std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
        // 16 clients send reviews (each denied on its bad reference, so each
        // leaves a record) and note the uids answered; once 300 are, the
        // process is killed while others are in flight.
        let answered = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let client = reqwest::Client::builder()
                .tls_certs_only([reqwest::Certificate::from_pem(tls.ca_pem.as_bytes()).unwrap()])
                .build()
                .unwrap();
            let done = std::sync::Arc::new(tokio::sync::Notify::new());
            let clients: Vec<_> = (0..16)
                .map(|_| {
                    let (client, addr, answered, done) = (client.clone(), addr.clone(), answered.clone(), done.clone());
                    tokio::spawn(async move {
                        loop {
                            let review = pod_review("prod", &["Bad Ref"], json!({}), &[]);
                            let uid = review["request"]["uid"].as_str().unwrap().to_string();
                            let url = format!("https://{addr}/validate");
                            let Ok(r) = client.post(url).json(&review).send().await else { return };
                            if r.status() != 200 || r.bytes().await.is_err() {
                                return;
                            }
                            let mut a = answered.lock().unwrap();
                            a.push(uid);
                            if a.len() == 300 {
                                done.notify_one();
                            }
                        }
                    })
                })
                .collect();
            done.notified().await;
            let status = Command::new("kill").args(["-KILL", &child.id().to_string()]).status().unwrap();
            assert!(status.success());
            for c in clients {
                let _ = c.await;
            }
        });
        child.wait().unwrap();
        let text = std::fs::read_to_string(&trail).unwrap();
        let recorded: std::collections::HashSet<String> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| v["audit"]["uid"].as_str().map(String::from))
            .collect();
        let answered = answered.lock().unwrap();
        let lost = answered.iter().filter(|u| !recorded.contains(*u)).count();
        eprintln!(
            "--audit-sync {mode}: {} answered, {} recorded, {lost} answered but lost",
            answered.len(),
            recorded.len()
        );
        assert!(answered.len() >= 300, "{mode}");
        match mode {
            "always" => assert_eq!(lost, 0, "with --audit-sync always, an answered decision is on disk"),
            _ => assert!(lost <= portcullis::audit::DEFAULT_QUEUE_RECORDS, "batch loses at most what is queued"),
        }
    }
}
