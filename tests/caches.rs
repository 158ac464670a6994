//! The caches earn their keep without changing a decision: evidence is
//! keyed by the trust that verified it, decisions are never cached, failures
//! are remembered only briefly, and the caches are bounded. (Concurrent
//! misses sharing one lookup: `admission::concurrent_requests_for_a_new_image_share_one_lookup`.)

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use portcullis::engine::EngineConfig;
use portcullis::policy::Policy;
use serde_json::{json, Value};

fn message(resp: &Value) -> String {
    resp["status"]["message"].as_str().unwrap_or_default().to_string()
}

const EVIDENCE_MISS: &str = "portcullis_cache_requests_total{cache=\"evidence\",result=\"miss\"}";
const EVIDENCE_HIT: &str = "portcullis_cache_requests_total{cache=\"evidence\",result=\"hit\"}";

fn policy(text: &str) -> Policy {
    Policy::from_yaml(text, "test policy").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_verified_under_other_keys_is_never_reused() {
    let w = world().await;
    let image = w.image("shop/trust", "v1", Some(("scanner", clean())), Some(("ci", passed()))).await;
    let hook = Webhook::start(&w.policy, EngineConfig::default()).await;
    let resp = hook.admit_pod("prod", &[&image], json!({}), &[]).await;
    assert_eq!(resp["allowed"], true, "{resp}");
    assert_eq!(metric(&hook.metrics().await, EVIDENCE_MISS), 1.0);

    // The scanner's key is replaced: what the old key verified must not count.
    let scanner = std::fs::read_to_string(w.cosign.path().join("scanner.pub")).unwrap();
    let rogue = std::fs::read_to_string(w.cosign.path().join("rogue.pub")).unwrap();
    let ci = std::fs::read_to_string(w.cosign.path().join("ci.pub")).unwrap();
    hook.state.set_policy(policy(&policy_yaml(&rogue, &ci)));
    let resp = hook.admit_pod("prod", &[&image], json!({}), &[]).await;
    assert_eq!(resp["allowed"], false, "evidence verified under the old key was reused: {resp}");
    assert!(message(&resp).contains("does not verify with any trusted key"), "{}", message(&resp));
    assert_eq!(metric(&hook.metrics().await, EVIDENCE_MISS), 2.0, "looked up again under the new trust");

    // Back to the first keys: their own cached evidence answers, with no new lookup.
    hook.state.set_policy(policy(&policy_yaml(&scanner, &ci)));
    let resp = hook.admit_pod("prod", &[&image], json!({}), &[]).await;
    assert_eq!(resp["allowed"], true, "{resp}");
    let m = hook.metrics().await;
    assert_eq!(metric(&m, EVIDENCE_MISS), 2.0, "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_policy_judges_cached_evidence_at_once() {
    let w = world().await;
    let image = w.image("shop/strict", "v1", Some(("scanner", criticals())), Some(("ci", passed()))).await;
    let hook = Webhook::start(&w.policy, EngineConfig::default()).await;
    // Development warns about criticals.
    let resp = hook.admit_pod("dev", &[&image], json!({}), &[]).await;
    assert_eq!(resp["allowed"], true, "{resp}");
    // The same trust, a stricter tier: the very next decision denies, on the
    // evidence already cached (no decision is ever cached).
    let strict = w.policy.replace(
        "    development:\n      mode: warn\n      onError: allow",
        "    development:\n      mode: enforce\n      onError: deny",
    );
    assert_ne!(strict, w.policy);
    hook.state.set_policy(policy(&strict));
    let resp = hook.admit_pod("dev", &[&image], json!({}), &[]).await;
    assert_eq!(resp["allowed"], false, "{resp}");
    assert!(message(&resp).contains("CVE-2024-1111"), "{}", message(&resp));
    let m = hook.metrics().await;
    assert_eq!((metric(&m, EVIDENCE_MISS), metric(&m, EVIDENCE_HIT)), (1.0, 1.0), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_lookup_is_retried_after_the_error_ttl() {
    let w = world().await;
    let error_ttl = Duration::from_secs(2);
    let hook = Webhook::start(&w.policy, EngineConfig { error_ttl, ..EngineConfig::default() }).await;
    let tagged = format!("{}/shop/late:v1", w.reg.host);
    let failed_at = Instant::now();
    let resp = hook.admit_pod("prod", &[&tagged], json!({}), &[]).await;
    assert_eq!(resp["allowed"], false);
    assert!(message(&resp).contains("not found"), "{}", message(&resp));

    // The image appears (with its evidence). Within the error TTL the
    // failure is remembered; after it, the image is looked up again.
    w.image("shop/late", "v1", Some(("scanner", clean())), Some(("ci", passed()))).await;
    let until = Instant::now() + error_ttl * 10;
    loop {
        let resp = hook.admit_pod("prod", &[&tagged], json!({}), &[]).await;
        if resp["allowed"] == true {
            assert!(failed_at.elapsed() >= error_ttl, "the failure was forgotten before its TTL");
            break;
        }
        assert!(message(&resp).contains("not found"), "{}", message(&resp));
        assert!(Instant::now() < until, "the failure was remembered far past its TTL");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_evidence_cache_is_bounded() {
    let w = world().await;
    let capacity = 3;
    let hook = Webhook::start(&w.policy, EngineConfig { cache_capacity: capacity, ..EngineConfig::default() }).await;
    for i in 0..12 {
        // Images without attestations: each a cached "nothing verified".
        let image = w.reg.push_image("shop/many", &format!("v{i}"), &format!("many-{i}")).await;
        let resp = hook.admit_pod("prod", &[&image], json!({}), &[]).await;
        assert_eq!(resp["allowed"], false, "{resp}");
    }
    assert_eq!(metric(&hook.metrics().await, EVIDENCE_MISS), 12.0);
    let held = hook.state.gate.engine().evidence_entries().await;
    assert!(held <= capacity, "{held} entries cached, more than the capacity of {capacity}");
    assert!(held > 0, "nothing cached at all");
}

/// A registry without the referrers API (the distribution registry) is
/// asked through the referrers tag alone once it has said so: one request
/// fewer per lookup, and cosign v3's bundles, attached through that tag,
/// still found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_without_the_referrers_api_is_asked_through_the_tag_alone() {
    use portcullis::image::{Digest, ImageRef};
    use portcullis::registry::{Auth, Limits, Reader, Registry as Client};
    let w = world().await;
    let plain = w.reg.push_image("shop/economy", "plain", "plain").await;
    let bundled = w.reg.push_image("shop/economy", "bundled", "bundled").await;
    w.cosign.attest_v3("scanner", &bundled, VULN, &clean());
    let client = Client::new(Limits::default(), vec![], Default::default(), &[]).unwrap();
    let read: Reader<()> = std::sync::Arc::new(|_, _| ());
    let lookup = |image: String| {
        let (client, read) = (&client, read.clone());
        async move {
            let r = ImageRef::parse(&image).unwrap();
            let digest = Digest::parse(image.rsplit('@').next().unwrap()).unwrap();
            let before = client.requests();
            let found = client.attestations(&r, &Auth::Own, &digest, false, read).await.unwrap();
            (client.requests() - before, found.found.len())
        }
    };
    let (first, none) = lookup(plain.clone()).await;
    let (again, _) = lookup(plain).await;
    eprintln!("plain image: {first} then {again} requests");
    assert_eq!(none, 0);
    assert_eq!(again, first - 1, "the referrers API is not asked again ({first} requests, then {again})");
    let (_, found) = lookup(bundled).await;
    assert_eq!(found, 1, "cosign v3's bundle, through the referrers tag");
}

/// A tag's HEAD that says its digest is a single image spares the lookup
/// that follows its GET of that manifest (one request fewer); an index's
/// HEAD does not (its entries must be read), nor a lookup that wants the
/// base image the manifest names, nor a digest no HEAD has spoken of.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_head_that_says_single_image_spares_the_manifest_get() {
    use portcullis::image::ImageRef;
    use portcullis::registry::{Auth, Limits, Reader, Registry as Client};
    let w = world().await;
    let pinned = w.reg.push_image("shop/head", "plain", "head plain").await;
    let (index, _) = w.reg.push_index("shop/head", "multi", &["linux/amd64", "linux/arm64"], false).await;
    let read: Reader<()> = std::sync::Arc::new(|_, _| ());
    // (case, reference, resolve by tag first, with_base, requests saved)
    let cases: &[(&str, String, bool, bool, u64)] = &[
        ("a single image by tag", format!("{}/shop/head:plain", w.reg.host), true, false, 1),
        ("a single image by tag, its base wanted", format!("{}/shop/head:plain", w.reg.host), true, true, 0),
        ("a single image by digest, no HEAD", pinned.clone(), false, false, 0),
        ("an index by tag", format!("{}/shop/head:multi", w.reg.host), true, false, 0),
    ];
    for (case, reference, by_tag, with_base, saved) in cases {
        // A fresh client each time: nothing remembered from another case;
        // and the same lookup by digest on a client that never saw the HEAD.
        let cost = |head: bool| {
            let read = read.clone();
            async move {
                let client = Client::new(Limits::default(), vec![], Default::default(), &[]).unwrap();
                let r = ImageRef::parse(reference).unwrap();
                let digest = client.resolve(&r, &Auth::Own).await.unwrap();
                let client = if head {
                    client
                } else {
                    Client::new(Limits::default(), vec![], Default::default(), &[]).unwrap()
                };
                let before = client.requests();
                let found = client.attestations(&r, &Auth::Own, &digest, *with_base, read).await.unwrap();
                (client.requests() - before, found.platforms.is_some())
            }
        };
        let (after_head, is_index) = cost(*by_tag).await;
        let (without, was_index) = cost(false).await;
        eprintln!("{case}: {after_head} requests after the HEAD, {without} without");
        assert_eq!(without - after_head, *saved, "{case}: {without} requests without the HEAD, {after_head} after it");
        assert_eq!(is_index, was_index, "{case}: an index is known as one either way");
        assert_eq!(is_index, reference.ends_with(":multi"), "{case}");
    }
    let _ = index;
}

/// A pass over more never-seen images than one registry lets run and wait
/// (8 + 64) judges them all: none is refused as saturating the registry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_over_more_images_than_a_registry_queues_judges_them_all() {
    use portcullis::kinds::ObjectId;
    use portcullis::watch::running::RunningImage;
    let w = world().await;
    let hook = Webhook::start(&w.policy, EngineConfig::default()).await;
    let mut running = Vec::new();
    for i in 0..150 {
        let image = w.reg.push_image("shop/fleet", &format!("v{i}"), &format!("fleet-{i}")).await;
        let r = RunningImage {
            namespace: "prod".into(),
            workload: ObjectId::new("Deployment", format!("app-{i}")),
            image,
            digest: None,
            pods: vec![format!("app-{i}-x")],
            pull: Default::default(),
        };
        running.push((r, Ok("production".to_string())));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let rows = portcullis::watch::report::judge(&hook.state.gate, None, running, deadline).await;
    assert_eq!(rows.len(), 150);
    let refused: Vec<String> = rows.iter().map(|r| r.why()).filter(|w| w.contains("saturated")).collect();
    assert!(refused.is_empty(), "{} of 150 refused, the first: {}", refused.len(), refused[0]);
    // Each is judged on what it lacks: no attestations.
    assert!(rows.iter().all(|r| r.why().contains("no attestations")), "{}", rows[0].why());
}
