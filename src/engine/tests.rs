//! What the engine does above any source, on [`Memory`]: one lookup
//! however many ask at once, what is remembered and for how long, the
//! deadline and the lookup that goes on after it.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::time::Instant;

use super::{Engine, EngineConfig, Keychain, Memory, Source};
use crate::evidence::LookupError;
use crate::image::{Digest, ImageRef};
use crate::metrics::Metrics;
use crate::policy::{Policy, EMBEDDED_DEFAULT};

const LONG: Duration = Duration::from_secs(3600);

fn config(negative: Duration, error: Duration) -> EngineConfig {
    EngineConfig { tag_ttl: LONG, evidence_ttl: LONG, negative_ttl: negative, error_ttl: error, cache_capacity: 100 }
}

fn setup(cfg: EngineConfig) -> (Arc<Memory>, Arc<Engine>, Arc<Policy>, ImageRef) {
    let memory = Arc::new(Memory::new());
    let digest = Digest::of(b"app v1");
    memory.tag("r.example/app:v1", &digest);
    let engine = Engine::with_source(memory.clone() as Arc<dyn Source>, &cfg, Arc::new(Metrics::new()));
    let policy = Arc::new(Policy::from_yaml(EMBEDDED_DEFAULT, "default").unwrap());
    (memory, engine, policy, ImageRef::parse("r.example/app:v1").unwrap())
}

async fn gather(engine: &Arc<Engine>, policy: &Arc<Policy>, image: &ImageRef) -> Result<(), LookupError> {
    engine.gather(image, policy, &Keychain::default()).await.map(|_| ())
}

#[tokio::test]
async fn many_asking_at_once_make_one_lookup() {
    let (memory, engine, policy, image) = setup(config(LONG, LONG));
    memory.hold();
    let asks = futures::future::join_all((0..20).map(|_| gather(&engine, &policy, &image)));
    // Two answers only: one resolution and one attestation lookup. Twenty
    // lookups would wait for ever (and the timeout says so).
    let release = async { memory.release(2) };
    let (answers, ()) = tokio::time::timeout(Duration::from_secs(30), futures::future::join(asks, release))
        .await
        .expect("the callers were not coalesced into one lookup");
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    assert_eq!((memory.resolves(), memory.lookups()), (1, 1));
}

#[tokio::test]
async fn what_is_remembered_and_for_how_long() {
    // (case, negative TTL, error TTL, what the source answers, lookups after two asks)
    let missing = Some(LookupError::Source("no such repository".into()));
    let rows = [
        ("nothing verified, remembered", LONG, LONG, None, 1),
        ("nothing verified, forgotten at once", Duration::ZERO, LONG, None, 2),
        ("an error, remembered", LONG, LONG, missing.clone(), 1),
        ("an error, forgotten at once", LONG, Duration::ZERO, missing, 2),
    ];
    for (case, negative, error, fails, want) in rows {
        let (memory, engine, policy, image) = setup(config(negative, error));
        let digest = Digest::of(b"app v1");
        if let Some(e) = &fails {
            memory.fail(&digest.to_string(), e.clone());
        }
        for _ in 0..2 {
            let got = gather(&engine, &policy, &image).await;
            assert_eq!(got.err(), fails, "{case}");
        }
        assert_eq!(memory.lookups(), want, "{case}");
        // The tag is remembered for its own TTL either way.
        assert_eq!(memory.resolves(), 1, "{case}");
    }
}

#[tokio::test]
async fn an_image_pinned_by_digest_is_never_resolved() {
    let (memory, engine, policy, _) = setup(config(LONG, LONG));
    let pinned = ImageRef::parse(&format!("r.example/app@{}", Digest::of(b"app v1"))).unwrap();
    gather(&engine, &policy, &pinned).await.unwrap();
    assert_eq!((memory.resolves(), memory.lookups()), (0, 1));
}

#[tokio::test]
async fn a_refused_login_makes_way_for_the_next_and_all_refused_is_said_once() {
    let (memory, engine, policy, image) = setup(config(LONG, LONG));
    memory.refuse(&crate::registry::Auth::Own);
    let err = gather(&engine, &policy, &image).await.unwrap_err();
    assert!(err.unauthorized(), "{err}");
    assert!(err.to_string().contains("r.example"), "{err}");
}

// Real time: the held source cannot answer before the deadline, however
// slow the machine, so a short deadline decides nothing by timing.
#[tokio::test]
async fn the_deadline_answers_and_the_lookup_goes_on_to_fill_the_cache() {
    let (memory, engine, policy, image) = setup(config(LONG, LONG));
    let tier = policy.tier_name("production").unwrap();
    memory.hold();
    let deadline = Instant::now() + Duration::from_millis(50);
    let images = [image.clone()];
    let late = engine.evaluate_images(&policy, &tier, &images, &Keychain::default(), Utc::now(), deadline, &[]).await;
    assert_eq!(late[0].error.as_deref(), Some(LookupError::Deadline.to_string().as_str()));
    // The source answers after the deadline: the lookup still fills the
    // cache, and the retry is answered from it.
    memory.release(2);
    let until = Instant::now() + Duration::from_secs(60);
    while engine.evidence_entries().await == 0 {
        assert!(Instant::now() < until, "the lookup did not go on after the deadline");
        tokio::task::yield_now().await;
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    let retry = engine.evaluate_images(&policy, &tier, &images, &Keychain::default(), Utc::now(), deadline, &[]).await;
    assert_eq!(retry[0].error, None);
    assert_eq!((memory.resolves(), memory.lookups()), (1, 1));
}

/// A policy whose tier `t` judges base images.
fn base_policy() -> Arc<Policy> {
    let y = "apiVersion: portcullis.dev/v1alpha1\nkind: PromotionPolicy\nspec:\n  signers: {}\n  tiers:\n    t:\n      baseImage: {maxBehind: 14d}\n";
    Arc::new(Policy::from_yaml(y, "base").unwrap())
}

#[tokio::test]
async fn the_base_an_image_names_is_resolved_only_for_a_policy_that_judges_it() {
    let (memory, engine, default_policy, image) = setup(config(LONG, LONG));
    let (built_on, moved) = (Digest::of(b"alpine 3.20 old"), Digest::of(b"alpine 3.20 new"));
    memory.base(&Digest::of(b"app v1"), "r.example/library/alpine:3.20", &built_on);
    memory.tag("r.example/library/alpine:3.20", &moved);
    let made: chrono::DateTime<Utc> = "2026-01-02T03:04:05Z".parse().unwrap();
    memory.created_at(&moved, made);

    // The default policy judges no base: nothing is resolved for it.
    let ev = engine.gather(&image, &default_policy, &Keychain::default()).await.unwrap();
    assert!(ev.base.is_none());
    assert_eq!(memory.resolves(), 1, "only the image's own tag");

    let policy = base_policy();
    let before = Utc::now();
    let ev = engine.gather(&image, &policy, &Keychain::default()).await.unwrap();
    let base = ev.base.as_ref().expect("the base, for a policy that judges it");
    assert_eq!(base.name, "r.example/library/alpine:3.20");
    assert_eq!(base.built_on.as_ref().unwrap(), &built_on);
    let now = base.now.as_ref().unwrap();
    assert_eq!(now.digest, moved);
    assert_eq!(now.created, Some(made));
    assert!(now.first_seen >= before && now.first_seen <= Utc::now());
    assert_eq!(now.since(), made);
    assert_eq!(memory.resolves(), 2, "the base's tag, once");

    // Another image on the same base: the first sight is remembered, the
    // tag resolution shared.
    let other = Digest::of(b"worker v1");
    memory.tag("r.example/worker:v1", &other);
    memory.base(&other, "r.example/library/alpine:3.20", &moved);
    let worker = ImageRef::parse("r.example/worker:v1").unwrap();
    let ev2 = engine.gather(&worker, &policy, &Keychain::default()).await.unwrap();
    let now2 = ev2.base.as_ref().unwrap().now.as_ref().unwrap();
    assert_eq!(now2.first_seen, now.first_seen);
    assert_eq!(now2.created, None, "built on the current base: its time is not read");
    assert_eq!(memory.resolves(), 3, "the worker's tag; the base's came from the cache");
}

#[tokio::test]
async fn a_base_that_cannot_be_resolved_is_unknown_not_an_error_of_the_image() {
    let (memory, engine, _, image) = setup(config(LONG, LONG));
    memory.base(&Digest::of(b"app v1"), "r.example/library/gone:1", &Digest::of(b"gone"));
    memory.fail("r.example/library/gone:1", LookupError::Source("manifest unknown".into()));
    let ev = engine.gather(&image, &base_policy(), &Keychain::default()).await.unwrap();
    let why = ev.base.as_ref().unwrap().now.as_ref().unwrap_err();
    assert!(why.contains("manifest unknown"), "{why}");

    memory.base(&Digest::of(b"app v1"), "not a reference!", &Digest::of(b"gone"));
    // A new engine: the first answer is cached in the old one.
    let engine = Engine::with_source(memory.clone() as Arc<dyn Source>, &config(LONG, LONG), Arc::new(Metrics::new()));
    let ev = engine.gather(&image, &base_policy(), &Keychain::default()).await.unwrap();
    let why = ev.base.as_ref().unwrap().now.as_ref().unwrap_err();
    assert!(why.contains("is not a reference"), "{why}");
}

/// The warm path looks evidence up under [`Keychain::first`]; it must be the
/// login a lookup tries first, or a cached answer would be another login's.
#[test]
fn the_first_login_is_the_first_candidate() {
    use crate::registry::Credentials;
    let secret = |registry: &str, source: &str| {
        let json = format!(r#"{{"auths": {{"{registry}": {{"username": "u-{source}", "password": "p"}}}}}}"#);
        Arc::new(Credentials::from_config(json.as_bytes(), source).unwrap())
    };
    let keychains = [
        Keychain::default(),
        Keychain { secrets: vec![secret("other.example", "a")], unreadable: vec![] },
        Keychain { secrets: vec![secret("other.example", "a"), secret("r.example", "b")], unreadable: vec![] },
        Keychain { secrets: vec![secret("r.example", "c"), secret("r.example", "d")], unreadable: vec!["e".into()] },
    ];
    for keys in &keychains {
        assert_eq!(keys.first("r.example"), keys.candidates("r.example")[0], "{keys:?}");
    }
    assert_eq!(keychains[3].first("r.example").scope(), keychains[3].candidates("r.example")[0].scope());
    assert!(keychains[3].first("r.example").scope().starts_with("c#"));
}
