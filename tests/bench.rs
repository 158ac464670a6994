//! Decision latency through the HTTPS endpoint against a real registry:
//! uncached (tag resolution, attestation fetch, verification) and cached.
//! Run with `make bench`; it prints numbers and asserts nothing about speed.

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use portcullis::engine::EngineConfig;
use serde_json::json;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with `make bench`"]
async fn decision_latency() {
    let w = world().await;
    let n = 20;
    let mut images = Vec::new();
    for i in 0..n {
        w.image("bench/app", &format!("v{i}"), Some(("scanner", criticals())), Some(("ci", passed()))).await;
        images.push(format!("{}/bench/app:v{i}", w.reg.host));
    }
    let hook = Webhook::start(&w.policy, EngineConfig::default()).await;
    measure(&hook, &images, false, "uncached decision (resolve + attestations + verify + evaluate)", "cached decision")
        .await;
}

/// Each image once (never seen: the cold path), then ten rounds of all
/// (cached); prints both series' percentiles.
async fn measure(hook: &Webhook, images: &[String], admitted: bool, cold: &str, warm: &str) {
    // Warm the TLS connection so both series measure the decision, not the handshake.
    hook.client.get(format!("{}/healthz", hook.url)).send().await.unwrap();
    let mut uncached = Vec::new();
    for image in images {
        let t = Instant::now();
        let resp = hook.admit_pod("prod", &[image], json!({}), &[]).await;
        uncached.push(t.elapsed());
        assert_eq!(resp["allowed"], admitted, "{resp}");
    }
    let mut cached = Vec::new();
    for _ in 0..10 {
        for image in images {
            let t = Instant::now();
            hook.admit_pod("prod", &[image], json!({}), &[]).await;
            cached.push(t.elapsed());
        }
    }
    uncached.sort();
    cached.sort();
    println!(
        "{cold}, {} images: p50 {:?}  p90 {:?}  max {:?}",
        uncached.len(),
        percentile(&uncached, 0.5),
        percentile(&uncached, 0.9),
        uncached.last().unwrap()
    );
    println!(
        "{warm}, {} requests: p50 {:?}  p90 {:?}  p99 {:?}",
        cached.len(),
        percentile(&cached, 0.5),
        percentile(&cached, 0.9),
        percentile(&cached, 0.99)
    );
}

/// A keyless decision (provenance and an SBOM, each a sigstore bundle with
/// certificate, SCT, Rekor inclusion proof and timestamp) through the HTTPS
/// endpoint: never seen, then cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with `make bench`"]
async fn keyless_decision_latency() {
    use common::keyless::*;
    let reg = Registry::start().await;
    let sigstore = Sigstore::new();
    let n = 20;
    let mut images = Vec::new();
    for i in 0..n {
        let image = reg.push_image("bench/keyless", &format!("v{i}"), &format!("keyless{i}")).await;
        attest(&reg, &image, &sigstore, RELEASE, "https://github.com/acme/shop", "bundle").await;
        images.push(format!("{}/bench/keyless:v{i}", reg.host));
    }
    let policy = policy_file(&sigstore);
    let hook =
        Webhook::start_loaded(portcullis::policy::Policy::from_file(&policy).unwrap(), HookOptions::default()).await;
    let (cold, warm) =
        ("keyless, uncached (resolve + 2 bundles: chain, SCT, Rekor, TSA + evaluate)", "keyless, cached");
    measure(&hook, &images, true, cold, warm).await;
}
