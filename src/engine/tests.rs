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

#[tokio::test(start_paused = true)]
async fn the_deadline_answers_and_the_lookup_goes_on_to_fill_the_cache() {
    let (memory, engine, policy, image) = setup(config(LONG, LONG));
    let tier = policy.tier_name("production").unwrap();
    memory.hold();
    let deadline = Instant::now() + Duration::from_secs(2);
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
