//! Keyless attestations through a real registry: sigstore bundles attached as
//! OCI referrers and cosign's legacy keyless `.att` layers, made by
//! `keyless-signer` (tests/keyless-signer: a virtual Sigstore, since no real
//! Fulcio, Rekor or OIDC provider can run here; its bundles are real and
//! verify with cosign and sigstore-go against the root it writes). Judged by
//! the webhook and by `portcullis check`, from the registry and from files.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::keyless::*;
use common::*;
use serde_json::{json, Value};

const EVIL: &str = "https://github.com/evil/shop/.github/workflows/release.yml@refs/heads/main";

fn portcullis(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis")).args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

fn message(resp: &Value) -> String {
    resp["status"]["message"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyless_attestations_admitted_and_denied_by_identity() {
    let reg = Registry::start().await;
    let sigstore = Sigstore::new();
    let stranger = Sigstore::new(); // another Sigstore: a root the policy does not trust
    let acme = "https://github.com/acme/shop";
    let image = |tag: &'static str| reg.push_image("shop/api", tag, tag);
    let good = image("good").await;
    attest(&reg, &good, &sigstore, RELEASE, acme, "bundle").await;
    let legacy = image("legacy").await;
    attest(&reg, &legacy, &sigstore, RELEASE, acme, "legacy").await;
    let legacy_dsse = image("legacy-dsse").await;
    attest(&reg, &legacy_dsse, &sigstore, RELEASE, acme, "legacy-dsse").await;
    let evil = image("evil").await;
    attest(&reg, &evil, &sigstore, EVIL, "https://github.com/evil/shop", "bundle").await;
    let foreign = image("foreign").await;
    attest(&reg, &foreign, &stranger, RELEASE, acme, "bundle").await;
    // The right workflow's identity, but the certificate says it built a fork.
    let fork = image("fork").await;
    attest(&reg, &fork, &sigstore, RELEASE, "https://github.com/fork/shop", "bundle").await;
    let sbom = json!({"bomFormat": "CycloneDX", "specVersion": "1.5", "components": []});

    let policy_path = policy_file(&sigstore);
    let policy = portcullis::policy::Policy::from_file(&policy_path).unwrap();
    let hook = Webhook::start_loaded(policy, HookOptions::default()).await;

    // (case, image, admitted, text in the denial)
    let rows: &[(&str, &str, bool, &str)] = &[
        ("bundle by the trusted identity", &good, true, ""),
        ("cosign's legacy keyless .att by the trusted identity", &legacy, true, ""),
        ("the same, with a Rekor dsse entry as cosign v2 writes by default", &legacy_dsse, true, ""),
        (
            "another workflow's certificate",
            &evil,
            false,
            "signed keyless by subject https://github.com/evil/shop/.github/workflows/release.yml@refs/heads/main from issuer https://token.actions.githubusercontent.com, an identity no signer of the policy accepts; tier production expects ci (subject https://github.com/acme/shop/.github/workflows/release.yml@refs/heads/main",
        ),
        ("a root the policy does not trust", &foreign, false, "does not verify against trusted root trusted_root.json"),
        ("built from a fork", &fork, false, "built from https://github.com/fork/shop (per the signing certificate)"),
    ];
    for (case, image, admitted, text) in rows {
        let resp = hook.admit_pod("prod", &[image], json!({}), &[]).await;
        assert_eq!(resp["allowed"], json!(*admitted), "{case}: {resp}");
        assert!(message(&resp).contains(text), "{case}: want {text:?} in {:?}", message(&resp));
    }
    // The audit trail cites the bundles the admission rests on.
    let audit = hook.audit();
    assert!(audit.iter().any(|a| a.to_string().contains("sha256:")), "{audit:?}");

    // `portcullis check` against the registry decides the same.
    let p = policy_path.to_str().unwrap();
    let (code, out) = portcullis(&["check", &good, "--policy", p, "--tier", "production"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = portcullis(&["check", &evil, "--policy", p, "--tier", "production"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("an identity no signer of the policy accepts"), "{out}");

    // And from files, without a registry: the same bundles, by digest.
    let files = sigstore.dir.path();
    let good_hex = good.rsplit('@').next().unwrap().to_string();
    let prov = sigstore.sign(&statement(&good, SLSA_V1, provenance(acme)), RELEASE, acme, "bundle");
    let bom = sigstore.sign(&statement(&good, CYCLONEDX, sbom), RELEASE, acme, "bundle");
    let (pf, bf, jsonl) = (files.join("prov.json"), files.join("bom.json"), files.join("both.jsonl"));
    std::fs::write(&pf, serde_json::to_vec(&prov).unwrap()).unwrap();
    std::fs::write(&bf, serde_json::to_vec(&bom).unwrap()).unwrap();
    std::fs::write(&jsonl, format!("{prov}\n{bom}\n")).unwrap();
    let f = |p: &Path| p.to_str().unwrap().to_string();
    let rows: Vec<(&str, Vec<String>, i32, &str)> = vec![
        (
            "both files",
            vec![good_hex.clone(), "--attestation".into(), f(&pf), "--attestation".into(), f(&bf)],
            0,
            "ADMIT",
        ),
        ("JSON Lines of both", vec![good_hex.clone(), "--attestation".into(), f(&jsonl)], 0, "ADMIT"),
        ("name@digest works too", vec![good.clone(), "--attestation".into(), f(&jsonl)], 0, "ADMIT"),
        (
            "the SBOM missing",
            vec![good_hex.clone(), "--attestation".into(), f(&pf)],
            1,
            "no https://cyclonedx.org/bom attestation among the 1 attestations",
        ),
        (
            "another digest",
            vec![Digest::of_str("other"), "--attestation".into(), f(&jsonl)],
            1,
            "attestation is for another image",
        ),
        (
            "a tag cannot be checked from files",
            vec!["shop/api:good".into(), "--attestation".into(), f(&jsonl)],
            2,
            "name images by digest",
        ),
    ];
    for (case, args, code, text) in rows {
        let mut all: Vec<&str> = vec!["check"];
        all.extend(args.iter().map(String::as_str));
        all.extend(["--policy", p, "--tier", "production"]);
        let (got, out) = portcullis(&all);
        assert_eq!(got, code, "{case}: {out}");
        assert!(out.contains(text), "{case}: want {text:?} in {out}");
    }
}

struct Digest;

impl Digest {
    fn of_str(s: &str) -> String {
        format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(s.as_bytes())))
    }
}

/// A trusted root file is reloaded when it changes (a ConfigMap refreshed
/// out of band), and its keys' validity is exported as a metric.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_root_files_reload_and_report_their_validity() {
    let reg = Registry::start().await;
    let (sigstore, rotated) = (Sigstore::new(), Sigstore::new());
    let image = reg.push_image("shop/api", "rotated", "rotated").await;
    attest(&reg, &image, &rotated, RELEASE, "https://github.com/acme/shop", "bundle").await;
    // The CA of the first root ends in ten days.
    let root_path = sigstore.dir.path().join("trusted_root.json");
    let mut root: Value = serde_json::from_slice(&std::fs::read(&root_path).unwrap()).unwrap();
    let end = chrono::Utc::now() + chrono::Duration::days(10);
    root["certificateAuthorities"][0]["validFor"]["end"] =
        json!(end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    std::fs::write(&root_path, serde_json::to_vec(&root).unwrap()).unwrap();
    let path = policy_file(&sigstore);
    let policy = portcullis::policy::Policy::from_file(&path).unwrap();
    let warnings = policy.warnings(chrono::Utc::now(), portcullis::attest::keyless::EXPIRY_WARNING);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("trusted root trusted_root.json: its newest fulcio key is valid only until"),
        "{warnings:?}"
    );
    let hook = Webhook::start_loaded(policy, HookOptions::default()).await;
    hook.watch_policy(&path, std::time::Duration::from_millis(50));
    let resp = hook.admit_pod("prod", &[&image], json!({}), &[]).await;
    assert_eq!(resp["allowed"], false, "signed under a root not trusted yet: {resp}");
    let left = metric(
        &hook.metrics().await,
        "portcullis_trusted_root_key_valid_seconds{root=\"trusted_root.json\",kind=\"fulcio\"}",
    );
    assert!((9.0 * 86400.0..=10.0 * 86400.0).contains(&left), "{left}");

    // The root is replaced by the new Sigstore's: the same policy, reloaded.
    let first = hook.state.policy().trust.fingerprint().to_string();
    std::fs::copy(rotated.dir.path().join("trusted_root.json"), sigstore.dir.path().join("trusted_root.json")).unwrap();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while hook.state.policy().trust.fingerprint() == first {
        assert!(std::time::Instant::now() < until, "the changed root was never loaded");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let resp = hook.admit_pod("prod", &[&image], json!({}), &[]).await;
    assert_eq!(resp["allowed"], true, "{resp}");

    // A broken root is rejected; the last good one stays in force.
    std::fs::write(sigstore.dir.path().join("trusted_root.json"), "{}").unwrap();
    while metric(&hook.metrics().await, "portcullis_policy_reloads_total{result=\"rejected\"}") < 1.0 {
        assert!(std::time::Instant::now() < until, "the broken root was never looked at");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(hook.admit_pod("prod", &[&image], json!({}), &[]).await["allowed"], true);
}

/// Real keyless attestations from public test data (tests/fixtures/keyless,
/// see its ORIGIN.md): GitHub artifact attestations from the public-good
/// instance (a reusable workflow's) and from GitHub's own instance (a private
/// repository's: a timestamp, no Rekor entry), through `check --attestation`.
#[test]
fn real_github_attestations_through_check_from_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keyless");
    let sha = |f: &str| {
        format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(std::fs::read(dir.join(f)).unwrap())))
    };
    let (reusable, private) =
        (sha("reusable-workflow-artifact"), sha("github_provenance_demo-0.0.12-py3-none-any.whl"));
    let reusable_file = dir.join("reusable-workflow-attestation.sigstore.json");
    let private_file = dir.join("github_provenance_demo-0.0.12-py3-none-any-bundle.jsonl");
    let work = tempfile::tempdir().unwrap();
    std::fs::copy(dir.join("trusted_root.github.json"), work.path().join("github-root.json")).unwrap();
    // (case, trusted root, subject, source repositories, digest, file, exit code, text)
    type Row<'a> = (&'a str, &'a str, &'a str, &'a str, &'a str, &'a Path, i32, &'a str);
    let reusable_wf = "https://github.com/github/artifact-attestations-workflows/.github/workflows/attest.yml@09b495c3f12c7881b3cc17209a327792065c1a1d";
    let demo_wf = "https://github.com/actions/attest-demo/.github/workflows/build-python.yml@refs/heads/main";
    let rows: Vec<Row<'_>> = vec![
        (
            "public-good, reusable workflow",
            "public-good",
            reusable_wf,
            "https://github.com/malancas/*",
            &reusable,
            &reusable_file,
            0,
            "ADMIT",
        ),
        (
            "public-good, another workflow expected",
            "public-good",
            demo_wf,
            "https://github.com/malancas/*",
            &reusable,
            &reusable_file,
            1,
            "an identity no signer of the policy accepts",
        ),
        (
            "public-good, another source repository expected",
            "public-good",
            reusable_wf,
            "https://github.com/acme/*",
            &reusable,
            &reusable_file,
            1,
            "built from https://github.com/malancas/attest-demo (per the provenance)",
        ),
        (
            "public-good, another subject",
            "public-good",
            reusable_wf,
            "https://github.com/malancas/*",
            &private,
            &reusable_file,
            1,
            "attestation is for another image",
        ),
        (
            "GitHub's instance, built-in root",
            "github",
            demo_wf,
            "https://github.com/actions/*",
            &private,
            &private_file,
            0,
            "ADMIT",
        ),
        (
            "GitHub's instance, root from a file",
            "github-root.json",
            demo_wf,
            "https://github.com/actions/*",
            &private,
            &private_file,
            0,
            "ADMIT",
        ),
        (
            "GitHub's instance, another workflow expected",
            "github",
            reusable_wf,
            "https://github.com/actions/*",
            &private,
            &private_file,
            1,
            "tier production expects ci (subject https://github.com/github/artifact-attestations-workflows",
        ),
        (
            "GitHub's instance verified as public-good is not",
            "public-good",
            demo_wf,
            "https://github.com/actions/*",
            &private,
            &private_file,
            1,
            "does not verify against trusted root public-good",
        ),
        (
            "public-good verified as GitHub's is not",
            "github",
            reusable_wf,
            "https://github.com/malancas/*",
            &reusable,
            &reusable_file,
            1,
            "does not verify against trusted root github",
        ),
    ];
    let check = |digest: &str, file: &Path, policy: &Path| {
        let (file, policy) = (file.to_str().unwrap(), policy.to_str().unwrap());
        portcullis(&["check", digest, "--attestation", file, "--policy", policy, "--tier", "production"])
    };
    for (case, root, subject, repos, digest, file, code, text) in rows {
        let policy = work.path().join("policy.yaml");
        std::fs::write(
            &policy,
            format!(
                "apiVersion: portcullis.dev/v1alpha1\nkind: PromotionPolicy\nspec:\n  signers:\n    ci:\n      keyless:\n        trustedRoot: {root}\n        identities:\n          - {{ issuer: \"{ACTIONS}\", subject: \"{subject}\" }}\n  tiers:\n    production:\n      provenance: {{ signedBy: [ci], sourceRepositories: [\"{repos}\"], builderIds: [\"https://github.com/actions/runner/github-hosted\"] }}\n"
            ),
        )
        .unwrap();
        let (got, out) = check(digest, file, &policy);
        assert_eq!(got, code, "{case}: {out}");
        assert!(out.contains(text), "{case}: want {text:?} in {out}");
    }

    // A keyless bundle where the signer has only a key: said so.
    let key = "-----BEGIN PUBLIC KEY-----\n        MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE7QtNpX/PTPA4pOkBdBOmWT3S3HhP\n        hVxygajXbNEXKMRxbQMUMhUF/8RAIKvGJDujIcIveyrBAUZ07McENQdDrw==\n        -----END PUBLIC KEY-----";
    let policy = work.path().join("keys.yaml");
    std::fs::write(
        &policy,
        format!("apiVersion: portcullis.dev/v1alpha1\nkind: PromotionPolicy\nspec:\n  signers:\n    ci:\n      publicKey: |\n        {key}\n  tiers:\n    production:\n      provenance: {{ signedBy: [ci] }}\n"),
    )
    .unwrap();
    let (got, out) = check(&private, &private_file, &policy);
    assert_eq!(got, 1, "{out}");
    assert!(
        out.contains(&format!(
            "signed keyless by subject {demo_wf} from issuer {ACTIONS}, but the policy's signers are public keys"
        )),
        "{out}"
    );
}

/// `portcullis inspect`: what a bundle says (predicate type, subject, the
/// identity its certificate names, the source repository) before any policy
/// trusts it, and whether it verifies, as which signer, once one does.
#[test]
fn inspect_says_who_signed_and_whether_it_verifies() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keyless");
    let reusable = dir.join("reusable-workflow-attestation.sigstore.json");
    let private = dir.join("github_provenance_demo-0.0.12-py3-none-any-bundle.jsonl");
    let reusable_wf = "https://github.com/github/artifact-attestations-workflows/.github/workflows/attest.yml@09b495c3f12c7881b3cc17209a327792065c1a1d";
    // No policy trusts it yet: its claims, and why it is not verified.
    let out =
        std::process::Command::new(env!("CARGO_BIN_EXE_portcullis")).args(["inspect"]).arg(&reusable).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    for line in [
        "predicate type  https://slsa.dev/provenance/v1",
        "subject         sha256:49a3aa6075e0f49f82843e74b5baa614ad2a588e6675612bf108a0a008c5ac25 github_provenance_demo-0.0.0-py3-none-any.whl",
        &format!("signed by       {reusable_wf}"),
        &format!("issuer          {ACTIONS}"),
        "source          https://github.com/malancas/attest-demo at refs/heads/main",
        "verified        no: attestation is signed keyless by",
    ] {
        assert!(text.contains(line), "want {line:?} in {text}");
    }
    // A policy trusting that identity: verified, as its signer.
    let work = tempfile::tempdir().unwrap();
    let policy = work.path().join("policy.yaml");
    std::fs::write(
        &policy,
        format!("apiVersion: portcullis.dev/v1alpha1\nkind: PromotionPolicy\nspec:\n  signers:\n    release:\n      keyless:\n        trustedRoot: public-good\n        identities:\n          - {{ issuer: \"{ACTIONS}\", subject: \"{reusable_wf}\" }}\n  tiers:\n    production: {{}}\n"),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["inspect", "--output", "json", "--policy"])
        .arg(&policy)
        .arg(&reusable)
        .arg(&private)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let all = v.as_array().unwrap();
    assert_eq!(all.len(), 2, "one bundle, and one line of JSON Lines: {v}");
    assert_eq!(all[0]["verifiedAs"], serde_json::json!(["release"]), "{v}");
    assert_eq!(all[0]["identity"]["root"], "public-good", "{v}");
    // GitHub's own instance (a private repository's): not under public-good.
    assert!(all[1]["notVerified"].as_str().unwrap().contains("does not verify against trusted root"), "{v}");
    assert_eq!(all[1]["identity"]["sourceRepository"], "https://github.com/actions/attest-demo", "{v}");
    assert_eq!(out.status.code(), Some(1), "not every one verifies");
}
