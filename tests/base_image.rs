//! A tier's `baseImage` rule through the real binary and a real registry:
//! an image whose manifest names its base (`org.opencontainers.image.base.name`
//! and `.base.digest`, as buildah writes them), and the base's tag moved on
//! in the registry, then `portcullis check`.

use crate::common;

use std::process::Command;

use chrono::{Duration, Utc};
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

/// Pushes an image whose config says it was `created` at that time, with
/// `annotations` on its manifest, tagged `tag`; its digest.
async fn push(
    reg: &Registry,
    repo: &str,
    tag: &str,
    seed: &str,
    created: Option<String>,
    annotations: Value,
) -> String {
    let mut config = json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
                            "config": {"Labels": {"seed": seed}}});
    if let Some(c) = created {
        config["created"] = json!(c);
    }
    let config = serde_json::to_vec(&config).unwrap();
    let layer = format!("layer of {seed}").into_bytes();
    let cd = reg.put_blob_public(repo, &config).await;
    let ld = reg.put_blob_public(repo, &layer).await;
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": layer.len()}]
    });
    if annotations.as_object().is_some_and(|a| !a.is_empty()) {
        manifest["annotations"] = annotations;
    }
    reg.put_manifest(repo, tag, &manifest).await
}

fn days_ago(days: i64) -> Option<String> {
    Some((Utc::now() - Duration::days(days)).to_rfc3339())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_is_denied_once_its_base_has_moved_on_for_longer_than_the_tier_allows() {
    let reg = Registry::start().await;
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "apiVersion: portcullis.dev/v1alpha1\nkind: PromotionPolicy\nspec:\n  signers: {}\n  tiers:\n    \
         fresh:\n      mode: enforce\n      baseImage: {maxBehind: 14d}\n    \
         lenient:\n      mode: enforce\n      baseImage: {maxBehind: 14d, onUnknown: warn}\n",
    )
    .unwrap();
    let policy = policy.to_str().unwrap();
    let (code, out, err) = portcullis(&["policy", "lint", policy]);
    assert_eq!(code, 0, "lint: {out} {err}");

    // The base, and an image built on it (the OCI base annotations).
    let base_name = format!("{}/library/alpine:3.20", reg.host);
    let old = push(&reg, "library/alpine", "3.20", "alpine 1", days_ago(60), json!({})).await;
    let app = push(
        &reg,
        "shop/api",
        "1",
        "api 1",
        days_ago(50),
        json!({"org.opencontainers.image.base.name": base_name, "org.opencontainers.image.base.digest": old}),
    )
    .await;
    let app = format!("{}/shop/api@{app}", reg.host);
    let check =
        |tier: &str, image: &str| portcullis(&["check", image, "--policy", policy, "--tier", tier, "--output", "json"]);

    // Built on what the tag points to now: current.
    let (code, out, err) = check("fresh", &app);
    assert_eq!(code, 0, "{out} {err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let base = &v["verdicts"][0]["baseImage"];
    assert_eq!(base["status"], "current", "{out}");
    assert_eq!(base["builtOn"], old.as_str());
    assert_eq!(base["current"], old.as_str());

    // The tag moves to a base built 30 days ago: the image is 30 days behind.
    let newer = push(&reg, "library/alpine", "3.20", "alpine 2", days_ago(30), json!({})).await;
    let (code, out, err) = check("fresh", &app);
    assert_eq!(code, 1, "{out} {err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let verdict = &v["verdicts"][0];
    assert_eq!(verdict["baseImage"]["status"], "outdated", "{out}");
    assert_eq!(verdict["baseImage"]["current"], newer.as_str());
    assert!(verdict["reasons"].as_array().unwrap().contains(&json!("base_image")), "{out}");
    let problem = verdict["problems"][0].as_str().unwrap();
    assert!(
        problem.contains(&format!("built on {base_name} {}", &old[..19]))
            && problem.contains(&format!("has pointed to {}", &newer[..19]))
            && problem.contains("(30 days), longer than tier fresh allows"),
        "{problem}"
    );
    assert!(verdict["remedies"][0].as_str().unwrap().contains("rebuild"), "{out}");

    // The tag moves again, to a base built yesterday: behind, within the
    // tier's 14 days, and said so.
    let latest = push(&reg, "library/alpine", "3.20", "alpine 3", days_ago(1), json!({})).await;
    let (code, out, err) = check("fresh", &app);
    assert_eq!(code, 0, "{out} {err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["verdicts"][0]["baseImage"]["status"], "behind", "{out}");
    assert_eq!(v["verdicts"][0]["baseImage"]["current"], latest.as_str());
    assert!(out.contains("rebuild on it within 12 days"), "{out}");

    // JUnit files it under its own testcase.
    let junit = dir.path().join("junit.xml");
    let (code, _, _) = portcullis(&[
        "check",
        &app,
        "--policy",
        policy,
        "--tier",
        "fresh",
        "--output",
        &format!("junit={}", junit.display()),
    ]);
    assert_eq!(code, 0);
    assert!(std::fs::read_to_string(&junit).unwrap().contains("fresh base-image"));

    // An image that names no base: denied, unless the tier only warns.
    let bare = push(&reg, "shop/bare", "1", "bare 1", days_ago(1), json!({})).await;
    let bare = format!("{}/shop/bare@{bare}", reg.host);
    let (code, out, _) = check("fresh", &bare);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("names no base image"), "{out}");
    let (code, out, _) = check("lenient", &bare);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("(baseImage.onUnknown: warn)"), "{out}");

    // A base that is not in the registry: unknown, denied, never an error of
    // the image itself.
    let gone = push(
        &reg,
        "shop/orphan",
        "1",
        "orphan 1",
        days_ago(1),
        json!({"org.opencontainers.image.base.name": format!("{}/library/gone:1", reg.host),
               "org.opencontainers.image.base.digest": old}),
    )
    .await;
    let (code, out, _) = check("fresh", &format!("{}/shop/orphan@{gone}", reg.host));
    assert_eq!(code, 1, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["verdicts"][0]["baseImage"]["status"], "unknown", "{out}");
    assert!(v["verdicts"][0]["problems"][0].as_str().unwrap().contains("is not known"), "{out}");
}
