//! The decision core shared by `portcullis serve` and `portcullis check`:
//! gather evidence for each image (cached per digest), then evaluate it with
//! the pure policy.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use moka::future::Cache;
use tokio::time::Instant;

use crate::evidence::{ImageEvidence, PlatformEvidence};
use crate::image::{Digest, ImageRef};
use crate::metrics::Metrics;
use crate::policy::{evaluate, Policy, Verdict};
use crate::registry::Registry;

#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// How long a tag -> digest resolution is reused.
    pub tag_ttl: Duration,
    /// How long verified evidence for a digest is reused.
    pub evidence_ttl: Duration,
    /// How long a digest with no verified evidence is remembered (short, so a
    /// developer who attests after a denial is re-evaluated promptly).
    pub negative_ttl: Duration,
    /// How long a registry error is remembered, so that a burst of requests
    /// (a ReplicaSet's pods) does not hammer a registry that is down.
    pub error_ttl: Duration,
    pub cache_capacity: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            tag_ttl: Duration::from_secs(30),
            evidence_ttl: Duration::from_secs(600),
            negative_ttl: Duration::from_secs(15),
            error_ttl: Duration::from_secs(5),
            cache_capacity: 10_000,
        }
    }
}

type EvidenceKey = (String, Digest, String);
type Gathered = Result<Arc<ImageEvidence>, String>;
type Resolved = Result<Digest, String>;

/// Per-entry lifetimes: evidence, no evidence, and errors each their own.
struct Expiry {
    positive: Duration,
    negative: Duration,
    error: Duration,
}

impl moka::Expiry<EvidenceKey, Gathered> for Expiry {
    fn expire_after_create(&self, _: &EvidenceKey, v: &Gathered, _: std::time::Instant) -> Option<Duration> {
        Some(match v {
            Ok(ev) if ev.nothing_verified() => self.negative,
            Ok(_) => self.positive,
            Err(_) => self.error,
        })
    }
}

impl moka::Expiry<String, Resolved> for Expiry {
    fn expire_after_create(&self, _: &String, v: &Resolved, _: std::time::Instant) -> Option<Duration> {
        Some(if v.is_ok() { self.positive } else { self.error })
    }
}

pub struct Engine {
    registry: Arc<Registry>,
    tags: Cache<String, Resolved>,
    evidence: Cache<EvidenceKey, Gathered>,
    metrics: Arc<Metrics>,
}

impl Engine {
    pub fn new(registry: Registry, cfg: &EngineConfig, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Engine {
            registry: Arc::new(registry),
            tags: Cache::builder()
                .max_capacity(cfg.cache_capacity)
                .expire_after(Expiry { positive: cfg.tag_ttl, negative: cfg.tag_ttl, error: cfg.error_ttl })
                .build(),
            evidence: Cache::builder()
                .max_capacity(cfg.cache_capacity)
                .expire_after(Expiry { positive: cfg.evidence_ttl, negative: cfg.negative_ttl, error: cfg.error_ttl })
                .build(),
            metrics,
        })
    }

    /// HTTP requests sent to registries so far.
    pub fn registry_requests(&self) -> u64 {
        self.registry.requests()
    }

    /// Resolves the image and finds its evidence. Concurrent callers asking
    /// for the same tag or digest share one registry lookup.
    pub async fn gather(self: &Arc<Self>, image: &ImageRef, policy: &Policy) -> Result<Arc<ImageEvidence>, String> {
        let digest = self.resolve(image).await?;
        self.evidence_of(image, digest, policy, true).await
    }

    /// The evidence for one digest of `image`'s repository, cached. An
    /// index without attestations of its own gathers each platform's
    /// (`expand`; one level: a platform is never expanded in turn), in
    /// parallel, each cached under its own digest.
    async fn evidence_of(
        self: &Arc<Self>,
        image: &ImageRef,
        digest: Digest,
        policy: &Policy,
        expand: bool,
    ) -> Result<Arc<ImageEvidence>, String> {
        let key = (image.name(), digest.clone(), policy.trust.fingerprint().to_string());
        let me = self.clone();
        let img = image.clone();
        let trust = policy.trust.clone();
        let policy = policy.clone();
        self.evidence
            .get_with(key, async move {
                me.metrics.registry_lookup("attestations");
                let found = me.registry.attestations(&img, &digest).await.map_err(|e| e.to_string())?;
                let platforms = match &found.platforms {
                    Some(p) if expand && found.found.is_empty() => p.clone(),
                    _ => vec![],
                };
                let index = found.platforms.is_some();
                // Verification is CPU work (certificate chains, logs,
                // signatures): off the async workers.
                let mut ev = tokio::task::spawn_blocking(move || {
                    ImageEvidence::build(digest, found.location, &found.found, &trust)
                })
                .await
                .map_err(|e| format!("internal error while verifying attestations: {e}"))?;
                ev.skipped = found.skipped;
                ev.index = index;
                let lookups = platforms.into_iter().map(|p| {
                    let (me, img, policy) = (me.clone(), img.clone(), policy.clone());
                    async move {
                        let evidence = Box::pin(me.evidence_of(&img, p.digest.clone(), &policy, false)).await;
                        PlatformEvidence { platform: p.platform, digest: p.digest, evidence }
                    }
                });
                ev.platforms = futures::future::join_all(lookups).await;
                Ok(Arc::new(ev))
            })
            .await
    }

    /// The digest `image` names: its own, or its tag's now (cached for the
    /// tag TTL; concurrent callers share one registry lookup). The mutating
    /// webhook pins images to exactly this digest, which the validating
    /// webhook then judges.
    pub async fn resolve(self: &Arc<Self>, image: &ImageRef) -> Result<Digest, String> {
        if let Some(d) = &image.digest {
            return Ok(d.clone());
        }
        let me = self.clone();
        let img = image.clone();
        self.tags
            .get_with(image.to_string(), async move {
                me.metrics.registry_lookup("resolve");
                me.registry.resolve(&img).await.map_err(|e| e.to_string())
            })
            .await
    }

    /// [`Engine::resolve`] for each image, each answered by `deadline`
    /// (a lookup still running then goes on in the background, bounded by
    /// the registry's lookup budget, to fill the cache).
    pub async fn resolve_all(self: &Arc<Self>, images: &[ImageRef], deadline: Instant) -> Vec<Result<Digest, String>> {
        let tasks = images.iter().map(|image| {
            let (me, img) = (self.clone(), image.clone());
            by_deadline(deadline, async move { me.resolve(&img).await })
        });
        futures::future::join_all(tasks).await
    }

    /// Evaluates every image for `tier`, answering by `deadline` whatever the
    /// registries do. A lookup still running at the deadline goes on in the
    /// background (bounded by the registry timeouts) and fills the cache for
    /// the API server's retry; the image counts as an error now.
    pub async fn evaluate_images(
        self: &Arc<Self>,
        policy: &Arc<Policy>,
        tier: &str,
        images: &[ImageRef],
        now: DateTime<Utc>,
        deadline: Instant,
    ) -> Vec<Verdict> {
        let tasks = images.iter().map(|image| {
            let (me, img, pol) = (self.clone(), image.clone(), policy.clone());
            let gathered = by_deadline(deadline, async move { me.gather(&img, &pol).await });
            async move { evaluate(policy, tier, image, gathered.await.as_deref().map_err(String::as_str), now) }
        });
        futures::future::join_all(tasks).await
    }
}

/// Runs `work` as a task of its own and waits for it until `deadline`. Past
/// it the caller gets an error now, and the task goes on in the background
/// (bounded by the registry's lookup budget) to fill the caches for the API
/// server's retry.
async fn by_deadline<T: Send + 'static>(
    deadline: Instant,
    work: impl std::future::Future<Output = Result<T, String>> + Send + 'static,
) -> Result<T, String> {
    match tokio::time::timeout_at(deadline, tokio::spawn(work)).await {
        Ok(Ok(r)) => r,
        Ok(Err(join)) => Err(format!("internal error while looking the image up: {join}")),
        Err(_) => Err("the registry did not answer before the admission deadline".to_string()),
    }
}
