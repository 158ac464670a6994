//! `portcullis notes`: release notes from evidence, from the real binary
//! against a real registry and cosign attestations. Two releases of one
//! image: 2.0 fixes a critical of 1.0 and brings a new high, fixes a failing
//! test, and is built from a newer commit; a test result signed by a key
//! the policy does not trust is attached to 2.0 and must never be quoted.

use crate::common;

use std::process::Command;

use common::*;
use serde_json::{json, Value};

fn portcullis(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis")).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const OLD_COMMIT: &str = "1111111111111111111111111111111111111111";
const NEW_COMMIT: &str = "2222222222222222222222222222222222222222";
const BUILDER: &str = "https://github.com/actions/runner/github-hosted";
const AT: &str = "2026-12-05T12:00:00Z";

fn provenance(commit: &str) -> Value {
    json!({
        "buildDefinition": {
            "buildType": "https://actions.github.io/buildtypes/workflow/v1",
            "externalParameters": {"workflow": {"ref": "refs/heads/main", "repository": "https://github.com/acme/shop",
                                                "path": ".github/workflows/release.yml"}},
            "resolvedDependencies": [{"uri": "git+https://github.com/acme/shop@refs/heads/main",
                                      "digest": {"gitCommit": commit}}]
        },
        "runDetails": {"builder": {"id": BUILDER}}
    })
}

/// The world's policy, with an exception for the low in production.
fn policy(w: &World) -> String {
    let exception = "  exceptions:\n    - { id: CVE-2024-3333, tiers: [production], expires: 2099-01-01, reason: \"bash is not on the path\", approvedBy: sec@example.com }\n";
    format!("{}{exception}", w.policy)
}

struct Releases {
    w: World,
    old: String,
    new: String,
    policy: std::path::PathBuf,
}

async fn releases() -> Releases {
    let w = world().await;
    let at: chrono::DateTime<chrono::Utc> = AT.parse().unwrap();
    let old_scan = vuln_predicate(
        &[("CVE-2024-1111", "openssl", "3.0.1", "3.0.13", "CRITICAL"), ("CVE-2024-3333", "bash", "5.2", "", "LOW")],
        at - chrono::Duration::hours(30),
    );
    let new_scan = vuln_predicate(
        &[("CVE-2024-3333", "bash", "5.2.1", "", "LOW"), ("CVE-2024-4444", "curl", "8.0", "8.5", "HIGH")],
        at - chrono::Duration::hours(1),
    );
    let old = w
        .image("shop/api", "1.0", Some(("scanner", old_scan)), Some(("ci", test_predicate("FAILED", &["payments"]))))
        .await;
    w.cosign.attest("ci", &old, "https://slsa.dev/provenance/v1", &provenance(OLD_COMMIT));
    let new_tests = json!({
        "result": "PASSED",
        "configuration": [{"name": "integration-suite"}],
        "url": "https://ci.example.com/runs/4343",
        "passedTests": ["checkout", "payments", "refunds"],
        "warnedTests": [],
        "failedTests": []
    });
    let new = w.image("shop/api", "2.0", Some(("scanner", new_scan)), Some(("ci", new_tests))).await;
    w.cosign.attest("ci", &new, "https://slsa.dev/provenance/v1", &provenance(NEW_COMMIT));
    w.cosign.attest("rogue", &new, TEST_RESULT, &test_predicate("PASSED", &[]));
    let policy = w.cosign.path().join("policy.yaml");
    std::fs::write(&policy, self::policy(&w)).unwrap();
    Releases { w, old, new, policy }
}

/// The notes, field by field: digests, source, vulnerabilities new, fixed
/// and open (the exception named), tests, signers, what was left out and
/// why, the verdicts. Then the same notes in Markdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notes_of_a_release_against_the_previous_one() {
    let r = releases().await;
    let policy = r.policy.to_str().unwrap();
    let digest = |image: &str| image.rsplit('@').next().unwrap().to_string();
    let args = ["notes", &r.new, "--previous", &r.old, "--policy", policy, "--at", AT, "--output", "json"];
    let (code, out, err) = portcullis(&args);
    assert_eq!(code, 0, "{out}\n{err}");
    let n: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(n["image"]["digest"], digest(&r.new));
    assert_eq!(n["image"]["reference"], r.new.as_str());
    assert_eq!(n["previous"]["digest"], digest(&r.old));
    assert!(n["policyDigest"].as_str().unwrap().starts_with("sha256:"), "{n}");
    assert_eq!(n["generatedAt"], AT);
    let parts = n["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 1, "{n:#}");
    let part = &parts[0];
    assert_eq!(part["digest"], digest(&r.new));
    assert_eq!(part["previousDigest"], digest(&r.old));

    // Source: repository, commit and builder; the previous commit too.
    let p = &part["provenance"];
    assert_eq!(p["sourceRepository"], "https://github.com/acme/shop");
    assert_eq!(p["sourceCommit"], NEW_COMMIT);
    assert_eq!(p["builderId"], BUILDER);
    assert_eq!(p["buildType"], "https://actions.github.io/buildtypes/workflow/v1");
    assert_eq!(p["signers"], json!(["ci"]));
    assert!(p["attestation"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(part["previousProvenance"]["sourceCommit"], OLD_COMMIT);

    // Vulnerabilities: the critical fixed, the high new, the low still open
    // (upgraded, not fixed), with the exception that applies named.
    let v = &part["vulnerabilities"];
    assert_eq!(v["compared"], true);
    assert_eq!(v["scan"]["signers"], json!(["scanner"]));
    assert!(v["scan"]["scanner"].as_str().unwrap().contains("trivy"), "{v}");
    assert_eq!(v["scan"]["finishedOn"], "2026-12-05T11:00:00Z");
    assert_eq!(v["previousScan"]["finishedOn"], "2026-12-04T06:00:00Z");
    assert_eq!(
        v["new"],
        json!([{"id": "CVE-2024-4444", "severity": "high", "package": "curl", "installedVersion": "8.0", "fixedVersions": ["8.5"]}])
    );
    assert_eq!(
        v["fixed"],
        json!([{"id": "CVE-2024-1111", "severity": "critical", "package": "openssl", "installedVersion": "3.0.1", "fixedVersions": ["3.0.13"]}])
    );
    assert_eq!(
        v["open"],
        json!([{"id": "CVE-2024-3333", "severity": "low", "package": "bash", "installedVersion": "5.2.1", "previousVersion": "5.2",
                "applied": [{"tier": "production", "by": "exception", "id": "CVE-2024-3333", "approvedBy": "sec@example.com",
                             "expires": "2099-01-01", "reason": "bash is not on the path"}]}])
    );

    // Tests: the suite, its counts, what newly passes.
    let t = &part["tests"];
    assert_eq!(t.as_array().unwrap().len(), 1, "the rogue result is not a suite: {t}");
    let suite = &t[0];
    assert_eq!(suite["suite"], "integration-suite");
    assert_eq!((suite["result"].as_str(), suite["previousResult"].as_str()), (Some("PASSED"), Some("FAILED")));
    assert_eq!(
        (suite["passed"].as_u64(), suite["warned"].as_u64(), suite["failed"].as_u64()),
        (Some(3), Some(0), Some(0))
    );
    assert_eq!(suite["compared"], true);
    assert_eq!(suite["newlyPassing"], json!(["payments"]));
    assert_eq!(suite.get("newlyFailing"), None);
    assert_eq!(suite["url"], "https://ci.example.com/runs/4343");

    // Signers, each once, with what each signed.
    assert_eq!(
        n["signers"],
        json!([{"name": "ci", "signed": ["provenance", "tests"]}, {"name": "scanner", "signed": ["vulnerabilities"]}])
    );
    // The rogue result: left out, with why; never quoted.
    let left = n["leftOut"].as_array().unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["of"], "image");
    assert_eq!(left[0]["predicateType"], TEST_RESULT);
    assert!(left[0]["why"].as_str().unwrap().starts_with("not verified: "), "{left:?}");
    assert!(!out.contains("https://ci.example.com/runs/4242"), "the rogue result's run is quoted: {out}");

    // The verdicts: development admits; production denies on the new high.
    let verdicts = n["verdicts"].as_array().unwrap();
    let tiers: Vec<(&str, bool)> =
        verdicts.iter().map(|v| (v["tier"].as_str().unwrap(), v["admitted"].as_bool().unwrap())).collect();
    assert_eq!(tiers, [("development", true), ("production", false)]);
    let prod = verdicts[1]["problems"].as_array().unwrap();
    assert!(
        prod.iter().any(|p| p
            .as_str()
            .unwrap()
            .contains("1 high vulnerability exceeds the limit 0 (CVE-2024-4444 in curl 8.0, fixed in 8.5)")),
        "{prod:?}"
    );
    assert!(verdicts[1]["exceptions"][0].as_str().unwrap().starts_with("CVE-2024-3333"), "{verdicts:?}");

    // The same notes in Markdown, for a release page.
    let md_args = ["notes", &r.new, "--previous", &r.old, "--policy", policy, "--at", AT];
    let (code, md, err) = portcullis(&md_args);
    assert_eq!(code, 0, "{err}");
    for want in [
        &format!("| this release | `{}` |", digest(&r.new)),
        &format!("| previous | `{}` |", digest(&r.old)),
        "| production | denied | 1 high vulnerability exceeds the limit 0 (CVE-2024-4444 in curl 8.0, fixed in 8.5)",
        "- Repository: https://github.com/acme/shop",
        &format!("- Commit: `{NEW_COMMIT}` (previously `{OLD_COMMIT}`)"),
        "#### New (1)",
        "| high | CVE-2024-4444 | curl | 8.0 | 8.5 |",
        "#### Fixed (1)",
        "| critical | CVE-2024-1111 | openssl | 3.0.1 | 3.0.13 |",
        "#### Still open (1)",
        "| low | CVE-2024-3333 | bash | 5.2.1 (was 5.2) |  | production: exception CVE-2024-3333 (approved by sec@example.com, expires 2099-01-01) |",
        "| integration-suite | PASSED (was FAILED) | 3 | 0 | 0 |  | payments |",
        "- **ci** (key): provenance, tests",
        "## Left out",
    ] {
        assert!(md.contains(want), "want {want:?} in:\n{md}");
    }
}

/// From attestation files, with no registry: the same notes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notes_from_attestation_files_match_the_registry() {
    let mut r = releases().await;
    let policy = r.policy.to_str().unwrap().to_string();
    let from_registry = {
        let (code, out, err) =
            portcullis(&["notes", &r.new, "--previous", &r.old, "--policy", &policy, "--at", AT, "--output", "json"]);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str::<Value>(&out).unwrap()
    };
    let dir = r.w.cosign.path().to_path_buf();
    let mut files = Vec::new();
    for (name, image) in [("old", &r.old), ("new", &r.new)] {
        let m = r.w.reg.get_manifest("shop/api", &att_tag(image)).await;
        for (i, layer) in m["layers"].as_array().unwrap().iter().enumerate() {
            let bytes = r.w.reg.get_blob("shop/api", layer["digest"].as_str().unwrap()).await;
            let f = dir.join(format!("{name}-{i}.dsse.json"));
            std::fs::write(&f, bytes).unwrap();
            files.push(f);
        }
    }
    r.w.reg.stop();
    let mut args: Vec<String> =
        ["notes", &r.new, "--previous", &r.old, "--policy", &policy, "--at", AT, "--output", "json"]
            .map(String::from)
            .into();
    for f in &files {
        args.extend(["--attestation".to_string(), f.to_str().unwrap().to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = portcullis(&args);
    assert_eq!(code, 0, "{out}\n{err}");
    let from_files: Value = serde_json::from_str(&out).unwrap();
    for field in ["image", "previous", "policyDigest", "parts", "signers", "leftOut"] {
        assert_eq!(from_files[field], from_registry[field], "{field}");
    }
    // With the registry stopped, an image named by tag: no digest to read
    // the files for, a clear error.
    let tagged = r.new.split('@').next().unwrap();
    let (code, _, err) =
        portcullis(&["notes", tagged, "--attestation", files[0].to_str().unwrap(), "--policy", &policy]);
    assert_eq!(code, 2);
    assert!(err.contains("name images by digest"), "{err}");
}

/// An image whose evidence cannot be gathered: exit 2, and why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notes_of_an_image_not_found_is_an_error() {
    let w = world().await;
    let policy = w.cosign.path().join("policy.yaml");
    std::fs::write(&policy, &w.policy).unwrap();
    let missing = format!("{}/shop/none:1.0", w.reg.host);
    let (code, out, err) = portcullis(&["notes", &missing, "--policy", policy.to_str().unwrap(), "--timeout", "20s"]);
    assert_eq!(code, 2, "{out}");
    assert!(err.contains("shop/none:1.0: its evidence could not be gathered"), "{err}");
    assert!(out.is_empty(), "{out}");
}

/// `--help` says what the notes hold and how to ask for them.
#[test]
fn help_lists_notes_and_its_flags() {
    let (code, top, _) = portcullis(&["--help"]);
    assert_eq!(code, 0);
    assert!(top.contains("notes") && top.contains("Release notes from evidence"), "{top}");
    let (code, help, _) = portcullis(&["notes", "--help"]);
    assert_eq!(code, 0);
    for want in ["--previous <IMAGE>", "--attestation <FILE>", "--tier <TIER[,TIER…]>", "markdown", "json", "left out"]
    {
        assert!(help.contains(want), "want {want:?} in:\n{help}");
    }
}
