//! `portcullis check` (the CI entry point) and `portcullis policy lint`, run
//! as the real binary against a real registry and cosign attestations.

use crate::common;

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

/// The system roots are read at the first TLS handshake, not with the
/// registry client: a check against a plain-HTTP registry runs where there
/// are none at all (and every check is spared reading them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_http_registry_needs_no_system_roots() {
    let w = world().await;
    let img = w.image("shop/api", "clean", Some(("scanner", clean())), Some(("ci", passed()))).await;
    let policy = w.cosign.path().join("policy.yaml");
    std::fs::write(&policy, &w.policy).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["check", &img, "--policy", policy.to_str().unwrap(), "--tier", "production"])
        .env("SSL_CERT_FILE", "/nonexistent/ca-certificates.crt")
        .env("SSL_CERT_DIR", "/nonexistent/certs")
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "stdout {stdout} stderr {stderr}");
    assert!(stdout.contains("ADMIT"), "{stdout}");
    assert!(!stderr.contains("CA root certificate"), "the system roots were read: {stderr}");
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

/// `check --attestation` with a coverage predicate (cosign's envelopes,
/// saved as files) against a tier whose attestation rule sets a CEL
/// condition on it: the image that meets it passes, the other is denied
/// with the condition's message, naming the predicate type and signer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_applies_cel_conditions_to_an_attested_coverage_predicate() {
    const COVERAGE: &str = "https://portcullis.dev/test/coverage/v1";
    let mut w = world().await;
    let mut images = Vec::new();
    for (tag, percent) in [("covered", 87.5), ("uncovered", 61.0)] {
        let image = w.image("shop/cov", tag, None, None).await;
        let predicate = json!({"tool": "cargo-llvm-cov", "lines": {"covered": 875, "total": 1000, "percent": percent}});
        w.cosign.attest("ci", &image, COVERAGE, &predicate);
        images.push(image);
    }
    let dir = w.cosign.path().to_path_buf();
    // Each image's envelope, as it sits in its .att layer.
    let mut files = Vec::new();
    for image in &images {
        let m = w.reg.get_manifest("shop/cov", &att_tag(image)).await;
        let layer = &m["layers"][0];
        let bytes = w.reg.get_blob("shop/cov", layer["digest"].as_str().unwrap()).await;
        let f = dir.join(format!("{}.dsse.json", &image[image.len() - 12..]));
        std::fs::write(&f, bytes).unwrap();
        files.push(f);
    }
    w.reg.stop();
    let (head, _) = w.policy.split_once("  namespaceTiers:").unwrap();
    let policy_text = format!(
        "{head}  tiers:\n    production:\n      attestations:\n        - predicateType: {COVERAGE}\n          signedBy: [ci]\n          conditions:\n            - expression: \"predicate.lines.percent >= 80.0\"\n              message: \"raise line coverage to 80% (cargo llvm-cov --summary-only shows it)\"\n            - expression: \"predicate.tool in ['cargo-llvm-cov', 'tarpaulin']\"\n              message: \"measure coverage with cargo-llvm-cov or tarpaulin\"\n"
    );
    let policy = dir.join("coverage-policy.yaml");
    std::fs::write(&policy, policy_text).unwrap();
    let (code, out, _) = portcullis(&["policy", "lint", policy.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    let digest = |image: &str| image.rsplit('@').next().unwrap().to_string();
    // (case, image, exit code, text)
    let rows = [
        ("covered", &images[0], 0, "ADMIT".to_string()),
        (
            "uncovered",
            &images[1],
            1,
            format!(
                "raise line coverage to 80% (cargo llvm-cov --summary-only shows it) (the {COVERAGE} attestation \
                 signed by ci: `predicate.lines.percent >= 80.0` is false)"
            ),
        ),
    ];
    for (case, image, code, text) in rows {
        let mut args = vec!["check".to_string(), digest(image)];
        for f in &files {
            args.extend(["--attestation".to_string(), f.to_str().unwrap().to_string()]);
        }
        args.extend(["--policy", policy.to_str().unwrap(), "--tier", "production"].map(String::from));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (got, out, err) = portcullis(&args);
        assert_eq!(got, code, "{case}: {out} {err}");
        assert!(out.contains(&text), "{case}: want {text:?} in {out}");
    }
}

/// A condition that does not compile is a load error with its place: the
/// tier, the entry and the expression, at its line and column.
#[test]
fn lint_places_a_condition_that_does_not_compile() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: portcullis.dev/v1alpha1\nkind: PromotionPolicy\nspec:\n  signers: { ci: { publicKey: x } }\n  tiers:\n    production:\n      attestations:\n        - predicateType: https://example.com/load-test/v1\n          signedBy: [ci]\n          conditions:\n            - expression: \"predicate.latency.p95Ms < \"\n              message: keep p95 under 300 ms\n",
    )
    .unwrap();
    let (code, out, _) = portcullis(&["policy", "lint", bad.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    let want = "bad.yaml:11:15: spec.tiers.production.attestations[0].conditions[0].expression: \
                \"predicate.latency.p95Ms < \" does not compile: at 1:27 of the expression: Syntax error: ";
    assert!(out.contains(want), "want {want:?} in:\n{out}");
    assert_eq!(out.lines().filter(|l| l.contains("does not compile")).count(), 1, "one line: {out}");
    assert!(!out.contains("\n| "), "one line per problem: {out}");
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
        ("upstream/grype-cyclonedx-image.json", 2, 1, 0, 0),
        ("upstream/trivy-cyclonedx-fluentd.json", 3, 1, 1, 2),
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
fn normalize_with_vex_shows_the_counts_after_it_and_what_it_suppressed() {
    let hex = "a".repeat(64);
    let image = format!("registry.example.com/shop/fluentd@sha256:{hex}");
    let dir = tempfile::tempdir().unwrap();
    let vex = dir.path().join("fluentd.openvex.json");
    let statements = json!([
        {"vulnerability": {"name": "CVE-2019-18276"},
         "products": [{"@id": format!("pkg:oci/fluentd@sha256%3A{hex}?repository_url=registry.example.com/shop/fluentd"),
                       "subcomponents": [{"@id": "pkg:deb/debian/bash"}]}],
         "status": "not_affected", "justification": "vulnerable_code_not_in_execute_path"},
        {"vulnerability": {"name": "CVE-2020-8165"}, "products": [{"@id": format!("pkg:oci/fluentd@sha256%3A{hex}")}],
         "status": "not_affected"},
        {"vulnerability": {"name": "CVE-2019-18224"}, "products": [{"@id": format!("pkg:oci/fluentd@sha256%3A{}", "b".repeat(64))}],
         "status": "fixed"}
    ]);
    let doc = json!({"@context": "https://openvex.dev/ns/v0.2.0", "author": "Acme Security", "statements": statements});
    std::fs::write(&vex, doc.to_string()).unwrap();
    let report = "tests/fixtures/reports/upstream/trivy-cyclonedx-fluentd.json";
    let v = vex.to_str().unwrap();
    let (code, out, err) = portcullis(&["normalize", report, "--vex", v, "--image", &image, "--output", "json"]);
    assert_eq!(code, 0, "{err}");
    let out: Value = serde_json::from_str(&out).unwrap();
    // bash's low finding is suppressed; activesupport's statement has no
    // justification (ignored); libidn2's names another digest.
    assert_eq!((out["total"].as_u64(), out["counts"]["low"]["total"].as_u64()), (Some(2), Some(0)));
    assert_eq!(out["vexSuppressed"][0]["finding"]["id"], "CVE-2019-18276");
    assert_eq!(out["vexSuppressed"][0]["justification"], "vulnerable_code_not_in_execute_path");
    assert_eq!(out["vexSuppressed"][0]["author"], "Acme Security");
    assert!(out["vexIgnored"][0].as_str().unwrap().contains("CVE-2020-8165: not_affected without a justification"));
    let (code, text, _) = portcullis(&["normalize", report, "--vex", v, "--image", &image]);
    assert_eq!(code, 0);
    assert!(text.contains("2 findings after VEX") && text.contains("suppressed by VEX: 1"), "{text}");
    assert!(
        text.contains("CVE-2019-18276 in bash 5.0-4: not_affected (vulnerable_code_not_in_execute_path)"),
        "{text}"
    );
    // A CycloneDX scan's own analysis is applied as VEX, without --vex
    // (Trivy's own CycloneDX VEX test document, read as a scan).
    let (code, out, err) = portcullis(&["normalize", "tests/fixtures/vex/trivy/cyclonedx.json", "--output", "json"]);
    assert_eq!(code, 0, "{err}");
    let out: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(out["total"], 1, "{out}");
    assert_eq!(out["vexSuppressed"][0]["finding"]["id"], "CVE-2021-44228");
    assert_eq!(out["vexSuppressed"][0]["justification"], "code_not_reachable");
    assert!(out["vexIgnored"][0].as_str().unwrap().contains("CVE-2022-27943: not_affected without a justification"));
    // VEX names images by digest: --image is required, and by digest.
    let (code, _, err) = portcullis(&["normalize", report, "--vex", v]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) =
        portcullis(&["normalize", report, "--vex", v, "--image", "registry.example.com/shop/fluentd:1"]);
    assert_eq!((code, err.contains("name the image by digest")), (2, true), "{err}");
    // A malformed VEX document is an error naming it, never a silent pass.
    std::fs::write(&vex, r#"{"@context": "https://openvex.dev/ns/v0.2.0", "statements": {}}"#).unwrap();
    let (code, _, err) = portcullis(&["normalize", report, "--vex", v, "--image", &image]);
    assert_eq!((code, err.contains("fluentd.openvex.json")), (2, true), "{err}");
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

/// VEX attested with the real `cosign attest --type openvex` (cosign v2's
/// `.att` tag and cosign v3's referrer), through the test registry: a tier
/// that trusts its signer suppresses what it says does not apply; another
/// tier, or another signer, does not. The same VEX as a DSSE envelope file
/// (`check --attestation`) and as a plain file (`check --vex`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vex_attested_with_cosign_suppresses_where_the_tier_trusts_its_signer() {
    let w = world().await;
    let production = "vulnerabilities: { signedBy: [scanner], maxAge: 24h, max: { critical: 0, high: 0, medium: 10 } }";
    assert!(w.policy.contains(production));
    let trusting = w.policy.replace(
        production,
        "vulnerabilities: { signedBy: [scanner], maxAge: 24h, max: { critical: 0, high: 0, medium: 10 }, vex: { signedBy: [ci] } }",
    );
    let dir = w.cosign.path();
    let policy = dir.join("policy.yaml");
    std::fs::write(&policy, &trusting).unwrap();
    let policy = policy.to_str().unwrap();
    let vex = |image: &str| {
        let (name, digest) = image.split_once('@').unwrap();
        let product = format!("pkg:oci/vex@{}?repository_url={name}", digest.replace(':', "%3A"));
        let statement = |id: &str| {
            json!({"vulnerability": {"name": id}, "products": [{"@id": product}], "status": "not_affected",
                   "justification": "vulnerable_code_not_in_execute_path"})
        };
        json!({"@context": "https://openvex.dev/ns/v0.2.0", "@id": "https://acme.example/vex/1",
               "author": "Acme Security", "timestamp": chrono::Utc::now().to_rfc3339(), "version": 1,
               "statements": [statement("CVE-2024-1111"), statement("CVE-2024-2222")]})
    };
    let v2 = w.image("shop/vex", "v2", Some(("scanner", criticals())), Some(("ci", passed()))).await;
    w.cosign.attest("ci", &v2, "openvex", &vex(&v2));
    let v3 = w.image("shop/vex", "v3", Some(("scanner", criticals())), Some(("ci", passed()))).await;
    w.cosign.attest_v3("ci", &v3, "openvex", &vex(&v3));
    let by_scanner = w.image("shop/vex", "scanner", Some(("scanner", criticals())), Some(("ci", passed()))).await;
    w.cosign.attest("scanner", &by_scanner, "openvex", &vex(&by_scanner));
    let other = w.image("shop/vex", "other", Some(("scanner", criticals())), Some(("ci", passed()))).await;
    // VEX for v2's digest, attested on another image.
    w.cosign.attest("ci", &other, "openvex", &vex(&v2));

    // (case, image, tier, exit code, text on stdout)
    let rows = [
        ("cosign v2 .att, trusted signer", v2.as_str(), "production", 0, "2 findings suppressed by VEX: CVE-2024-"),
        ("cosign v3 referrer, trusted signer", v3.as_str(), "production", 0, "signed by ci"),
        (
            "a signer the tier does not trust for VEX",
            by_scanner.as_str(),
            "production",
            1,
            "signed by scanner is ignored",
        ),
        ("another image's digest", other.as_str(), "production", 1, "2 critical vulnerabilities exceed the limit 0"),
        ("a tier without vex", v2.as_str(), "development", 0, "this tier trusts no VEX"),
    ];
    for (case, image, tier, code, text) in rows {
        let (got, out, err) = portcullis(&["check", image, "--policy", policy, "--tier", tier]);
        assert_eq!(got, code, "{case}: stdout {out} stderr {err}");
        assert!(out.contains(text), "{case}: want {text:?} in {out}");
    }
    let (_, out, _) = portcullis(&["check", &v2, "--policy", policy, "--tier", "production", "--output", "json"]);
    let out: Value = serde_json::from_str(&out).unwrap();
    let suppressed = &out["verdicts"][0]["vexSuppressed"];
    assert_eq!(suppressed.as_array().map(Vec::len), Some(2), "{out}");
    assert_eq!(
        (suppressed[0]["status"].as_str(), suppressed[0]["signer"].as_str()),
        (Some("not_affected"), Some("ci"))
    );
    assert_eq!(suppressed[0]["author"], "Acme Security");
    let cited = out["verdicts"][0]["attestations"].as_array().unwrap();
    let vex_cited = cited.iter().find(|c| c["kind"] == "vex").expect("the VEX document is cited");
    assert_eq!(vex_cited["predicateType"], "https://openvex.dev/ns");
    assert_eq!(suppressed[0]["document"], vex_cited["digest"]);

    // Admission decides alike: the audit record names the VEX document by
    // its digest and lists what it suppressed; the metric counts them.
    let hook = Webhook::start(&trusting, EngineConfig::default()).await;
    let resp = hook.admit_pod("prod", &[&v2], json!({}), &[]).await;
    assert_eq!(resp["allowed"], true, "{resp}");
    let audit = hook.audit();
    let record = &audit.last().unwrap()["images"][0];
    assert!(record["evidence"].as_array().unwrap().contains(&vex_cited["digest"]), "{record}");
    assert_eq!(record["vexSuppressed"].as_array().map(Vec::len), Some(2), "{record}");
    assert_eq!(record["vexSuppressed"][0]["document"], vex_cited["digest"]);
    let m = hook.metrics().await;
    assert!(m.contains("portcullis_vex_suppressed_total{tier=\"production\",status=\"not_affected\"} 2"), "{m}");

    // The same envelopes as files (check --attestation), the registry down.
    let m = w.reg.get_manifest("shop/vex", &att_tag(&v2)).await;
    let mut args = vec!["check".to_string(), v2.rsplit('@').next().unwrap().to_string()];
    for (i, layer) in m["layers"].as_array().unwrap().iter().enumerate() {
        let f = dir.join(format!("v2-{i}.dsse.json"));
        std::fs::write(&f, w.reg.get_blob("shop/vex", layer["digest"].as_str().unwrap()).await).unwrap();
        args.extend(["--attestation".to_string(), f.to_str().unwrap().to_string()]);
    }
    args.extend(["--policy", policy, "--tier", "production"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = portcullis(&args);
    assert_eq!(code, 0, "{out} {err}");
    assert!(out.contains("suppressed by VEX"), "{out}");

    // check --vex: unsigned, applied where the tier trusts VEX, and said so.
    let file = dir.join("other.openvex.json");
    std::fs::write(&file, vex(&other).to_string()).unwrap();
    let f = file.to_str().unwrap();
    let (code, out, err) = portcullis(&["check", &other, "--vex", f, "--policy", policy, "--tier", "production"]);
    assert_eq!(code, 0, "{out} {err}");
    assert!(out.contains("given on the command line, unsigned"), "{out}");
    assert!(out.contains("by Acme Security, unsigned"), "{out}");
    let (code, out, _) = portcullis(&["check", &other, "--vex", f, "--policy", policy, "--tier", "development"]);
    assert_eq!(code, 0);
    assert!(out.contains("VEX documents ignored: this tier trusts no VEX"), "{out}");
}

/// `check --attestation` with a quarantined flaky test and an upstream SBOM
/// (Grype's own CycloneDX golden, attested with cosign `--type cyclonedx`),
/// the registry down: the quarantined failure does not fail the gate and is
/// named; the licence rule denies a package whose licences (all apply)
/// include a denied one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_from_files_applies_quarantine_and_licences() {
    let mut w = world().await;
    let image = w.image("shop/flaky", "1", None, Some(("ci", test_predicate("FAILED", &["flaky-login"])))).await;
    let sbom = std::fs::read_to_string(format!(
        "{}/tests/fixtures/reports/upstream/grype-cyclonedx-image.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    w.cosign.attest_text("ci", &image, "cyclonedx", &sbom);
    let dir = w.cosign.path().to_path_buf();
    let m = w.reg.get_manifest("shop/flaky", &att_tag(&image)).await;
    let mut files = Vec::new();
    for (i, layer) in m["layers"].as_array().unwrap().iter().enumerate() {
        let bytes = w.reg.get_blob("shop/flaky", layer["digest"].as_str().unwrap()).await;
        let f = dir.join(format!("flaky-{i}.dsse.json"));
        std::fs::write(&f, bytes).unwrap();
        files.push(f);
    }
    assert_eq!(files.len(), 2, "the test result and the SBOM");
    w.reg.stop();
    let expires = (chrono::Utc::now() + chrono::Duration::days(60)).format("%Y-%m-%d");
    let (head, _) = w.policy.split_once("  namespaceTiers:").unwrap();
    let tier = |name: &str, deny: &str| {
        format!(
            "    {name}:\n      tests:\n        signedBy: [ci]\n        require: PASSED\n        quarantine:\n          - {{test: flaky-login, expires: {expires}, reason: races the clock, approvedBy: qa@example.com}}\n      licenses: {{signedBy: [ci], deny: [{deny}], unknown: allow}}\n"
        )
    };
    let policy = dir.join("quarantine-policy.yaml");
    std::fs::write(
        &policy,
        format!("{head}  tiers:\n{}{}", tier("production", "MIT"), tier("staging", "GPL-3.0-only")),
    )
    .unwrap();
    let (code, out, err) = portcullis(&["policy", "lint", policy.to_str().unwrap()]);
    assert_eq!(code, 0, "{out} {err}");
    let digest = image.rsplit('@').next().unwrap().to_string();
    let check = |tier: &str| {
        let mut args = vec!["check".to_string(), digest.clone()];
        for f in &files {
            args.extend(["--attestation".to_string(), f.to_str().unwrap().to_string()]);
        }
        args.extend(["--policy", policy.to_str().unwrap(), "--tier", tier, "--output", "json"].map(String::from));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        portcullis(&args)
    };
    let quarantined = format!(
        "test flaky-login failed and is quarantined until {expires} (approved by qa@example.com: races the clock)"
    );
    // staging denies no licence in the SBOM: admitted, the quarantine named.
    let (code, out, err) = check("staging");
    assert_eq!(code, 0, "{out} {err}");
    assert!(out.contains(&quarantined), "{out}");
    // production denies MIT: package-2 is under Apache-2.0 AND MIT.
    let (code, out, err) = check("production");
    assert_eq!(code, 1, "{out} {err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let problems = v["verdicts"][0]["problems"].to_string();
    assert!(problems.contains("package-2") && problems.contains("MIT denied"), "{problems}");
    assert!(!problems.contains("flaky-login"), "the quarantined failure is not a problem: {problems}");
    assert!(out.contains(&quarantined), "{out}");
}
