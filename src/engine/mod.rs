//! The engine: for each image, its digest and its evidence from a
//! [`Source`] (the registry, attestation files, or memory in tests), cached
//! per digest and trust, looked up once however many ask at a time, within
//! the caller's deadline; then the pure evaluation. Every door's decision
//! goes through it.

mod files;
mod memory;
mod source;

pub use files::{Files, FilesError, MAX_ATTESTATION_FILE, MAX_FILE_ATTESTATIONS};
pub use memory::Memory;
pub use source::Source;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use moka::future::Cache;
use tokio::time::Instant;

pub use crate::evidence::LookupError;
use crate::evidence::{Attestation, ImageEvidence, PlatformEvidence};
use crate::image::{Digest, ImageRef};
use crate::metrics::Metrics;
use crate::platform::Content;
use crate::policy::{Policy, TierName, Verdict};
use crate::registry::{Auth, Credentials, Reader, Registry};

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

/// (image name, digest, the policy's evidence scope (its trust, the predicate
/// types kept whole and whether the base image is looked up: one text per
/// policy, shared by every entry), auth scope).
type EvidenceKey = (String, Digest, Arc<str>, String);
type Gathered = Result<Arc<ImageEvidence>, LookupError>;
/// (reference, auth scope).
type TagKey = (String, String);
type Resolved = Result<Digest, LookupError>;

/// The credentials one request may use, in the order the kubelet tries them:
/// the Pod's and its service account's pull secrets (read from its own
/// namespace), then Portcullis' own (credentials file, helpers), then
/// anonymous.
#[derive(Clone, Debug, Default)]
pub struct Keychain {
    /// Each pull secret's credentials, in order (each knows its source).
    pub secrets: Vec<Arc<Credentials>>,
    /// Pull secrets named but not read, and why: said in an auth denial.
    pub unreadable: Vec<String>,
}

impl Keychain {
    /// The first login [`Keychain::candidates`] gives for `registry`.
    pub fn first(&self, registry: &str) -> Auth {
        self.secrets.iter().find_map(|c| c.stored(registry)).map_or(Auth::Own, Auth::Secret)
    }

    /// The logins to try for `registry`, in order; Portcullis' own last.
    pub fn candidates(&self, registry: &str) -> Vec<Auth> {
        let mut out: Vec<Auth> = Vec::new();
        for c in &self.secrets {
            if let Some(l) = c.stored(registry) {
                let a = Auth::Secret(l);
                if !out.contains(&a) {
                    out.push(a);
                }
            }
        }
        out.push(Auth::Own);
        out
    }
}

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

impl moka::Expiry<TagKey, Resolved> for Expiry {
    fn expire_after_create(&self, _: &TagKey, v: &Resolved, _: std::time::Instant) -> Option<Duration> {
        Some(if v.is_ok() { self.positive } else { self.error })
    }
}

/// Evidence and tag resolutions are cached per (what, auth scope): what was
/// learnt with a pull secret's login serves only lookups made with that same
/// login (the same secret content, hence the same namespace's secret), and
/// never a namespace that lacks it; what was learnt with Portcullis' own
/// credentials or anonymously serves every namespace.
///
/// Each lookup in a cache is counted (`portcullis_cache_requests_total`): a
/// miss for the caller that computes the entry, a hit for every other,
/// including concurrent callers that waited for that computation. Remembered
/// errors (for the error TTL) are hits too. An image pinned by digest skips
/// the tag cache and is not counted in it.
pub struct Engine {
    source: Arc<dyn Source>,
    tags: Cache<TagKey, Resolved>,
    evidence: Cache<EvidenceKey, Gathered>,
    /// When each base image digest was first seen as what its name points
    /// to (a fact no config can forge; see [`crate::evidence::base::Current`]).
    first_seen: Cache<Digest, DateTime<Utc>>,
    metrics: Arc<Metrics>,
}

impl Engine {
    /// The engine of a registry.
    pub fn new(registry: Registry, cfg: &EngineConfig, metrics: Arc<Metrics>) -> Arc<Self> {
        Self::with_source(Arc::new(registry), cfg, metrics)
    }

    /// The engine of any source.
    pub fn with_source(source: Arc<dyn Source>, cfg: &EngineConfig, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Engine {
            source,
            tags: Cache::builder()
                .max_capacity(cfg.cache_capacity)
                .expire_after(Expiry { positive: cfg.tag_ttl, negative: cfg.tag_ttl, error: cfg.error_ttl })
                .build(),
            evidence: Cache::builder()
                .max_capacity(cfg.cache_capacity)
                .expire_after(Expiry { positive: cfg.evidence_ttl, negative: cfg.negative_ttl, error: cfg.error_ttl })
                .build(),
            first_seen: Cache::builder().max_capacity(cfg.cache_capacity).build(),
            metrics,
        })
    }

    /// Requests sent to the source so far (HTTP requests to registries).
    /// How many images a caller judging many at once should look up
    /// together ([`Source::lookups_at_once`]).
    pub fn lookups_at_once(&self) -> usize {
        self.source.lookups_at_once()
    }

    pub fn registry_requests(&self) -> u64 {
        self.source.requests()
    }

    /// Entries held in the evidence cache (after pending evictions are done).
    pub async fn evidence_entries(&self) -> u64 {
        self.evidence.run_pending_tasks().await;
        self.evidence.entry_count()
    }

    /// Tries `work` with each login of `keys` for `image`'s registry, in
    /// order, moving on only when one is refused; when all are, one error
    /// names every login tried.
    async fn with_logins<T, F, Fut>(&self, image: &ImageRef, keys: &Keychain, work: F) -> Result<T, LookupError>
    where
        F: Fn(Auth) -> Fut,
        Fut: std::future::Future<Output = Result<T, LookupError>>,
    {
        let mut refused = Vec::new();
        for auth in keys.candidates(&image.registry) {
            match work(auth).await {
                Err(e) if e.unauthorized() => refused.push(e),
                other => return other,
            }
        }
        let unreadable = if keys.unreadable.is_empty() {
            String::new()
        } else {
            format!("; not read: {}", keys.unreadable.join(", "))
        };
        if refused.len() == 1 {
            let only = refused.remove(0);
            return Err(if unreadable.is_empty() { only } else { LookupError::Refused(format!("{only}{unreadable}")) });
        }
        let tried: Vec<String> = refused
            .iter()
            .filter_map(|e| match e {
                LookupError::Unauthorized { status, with, .. } => Some(format!("{with} ({status})")),
                _ => None,
            })
            .collect();
        Err(LookupError::Refused(format!(
            "authentication failed at registry {} for repository {} with every credential tried: {}{unreadable}",
            image.registry,
            image.repository,
            tried.join(", ")
        )))
    }

    /// Resolves the image and finds its evidence. Concurrent callers asking
    /// for the same tag or digest with the same login share one registry
    /// lookup.
    pub async fn gather(
        self: &Arc<Self>,
        image: &ImageRef,
        policy: &Arc<Policy>,
        keys: &Keychain,
    ) -> Result<Arc<ImageEvidence>, LookupError> {
        self.with_logins(image, keys, |auth| async move {
            let digest = self.resolve_as(image, &auth).await?;
            self.evidence_of(image, digest, policy, auth, true).await
        })
        .await
    }

    /// The evidence for one digest of `image`'s repository, cached. An
    /// index without attestations of its own reads what each of its entries
    /// holds and gathers the evidence of each with something to run
    /// (`expand`; one level: an index inside it is judged by its own
    /// attestations only), in parallel, each cached under its own digest.
    async fn evidence_of(
        self: &Arc<Self>,
        image: &ImageRef,
        digest: Digest,
        policy: &Arc<Policy>,
        auth: Auth,
        expand: bool,
    ) -> Result<Arc<ImageEvidence>, LookupError> {
        let key = evidence_key(image, digest.clone(), policy, &auth);
        let me = self.clone();
        let img = image.clone();
        let policy = policy.clone();
        let entry = self
            .evidence
            .entry(key)
            .or_insert_with(async move {
                // Each attestation is verified as it is read (CPU work:
                // certificate chains, logs, signatures; off the async
                // workers), and only what it says is kept.
                let trust = policy.trust.clone();
                let keep = policy.conditioned.clone();
                let d = digest.clone();
                let read: Reader<Attestation> = Arc::new(move |index, (source, signed)| {
                    Attestation::read(index, source, &signed, &trust, &d, &keep)
                });
                let found = me.source.attestations(&img, &auth, &digest, policy.base_images, read).await?;
                let entries = match &found.platforms {
                    Some(listed) if expand && found.found.is_empty() => {
                        me.source.index_entries(&img, &auth, &digest, listed).await?
                    }
                    _ => vec![],
                };
                let base = match found.base {
                    Some(a) if policy.base_images => Some(me.base_now(&img, &auth, a).await),
                    _ => None,
                };
                let mut ev = ImageEvidence {
                    digest,
                    location: found.location,
                    // Copied here, on an async worker, before they are
                    // cached: each was built on a blocking thread amid the
                    // scratch of its verification (envelope, payload,
                    // certificates), and would keep those pages of that
                    // thread's allocator resident for as long as it stays
                    // cached (10,000 cached digests: 74.2 MiB resident
                    // without the copy, 63.5–64.4 with it; BENCHMARKS.md). What
                    // they share (a keyless signer, a Statement kept for
                    // conditions) is not copied.
                    attestations: found.found.to_vec(),
                    skipped: found.unread,
                    index: found.platforms.is_some(),
                    entries: vec![],
                    platforms: vec![],
                    base,
                };
                // Every entry with something to run, whatever its platform:
                // which ones a tier judges is the policy's to say.
                let runnable = entries.iter().enumerate().filter(|(_, e)| e.content != Content::Attestation);
                let lookups = runnable.map(|(i, e)| {
                    let (me, img, policy, auth) = (me.clone(), img.clone(), policy.clone(), auth.clone());
                    let (platform, digest) = (e.label(), e.digest.clone());
                    async move {
                        let evidence = Box::pin(me.evidence_of(&img, digest.clone(), &policy, auth, false)).await;
                        PlatformEvidence { platform, digest, entry: i, evidence }
                    }
                });
                ev.platforms = futures::future::join_all(lookups).await;
                ev.entries = entries;
                Ok(Arc::new(ev))
            })
            .await;
        self.metrics.cache("evidence", !entry.is_fresh());
        entry.into_value()
    }

    /// What the base `a` an image of `image`'s repository names is now: its
    /// name's tag resolved (through the tag cache), and for a digest other
    /// than the one built on, its config's `created` and when it was first
    /// seen. The image's own login serves a base in the same registry;
    /// Portcullis' own credentials any other (a pull secret is the image's,
    /// not its base's). A base that cannot be resolved is unknown, never an
    /// error of the image's lookup.
    async fn base_now(
        self: &Arc<Self>,
        image: &ImageRef,
        auth: &Auth,
        a: crate::evidence::base::Annotated,
    ) -> crate::evidence::base::BaseImage {
        use crate::evidence::base::{BaseImage, Current};
        let now = async {
            let mut base =
                ImageRef::parse(&a.name).map_err(|e| format!("the base name {:?} is not a reference: {e}", a.name))?;
            // `alpine:3.20@sha256:…`: what is asked is where the tag is now.
            if base.tag.is_some() {
                base.digest = None;
            }
            let auth = if base.registry == image.registry { auth.clone() } else { Auth::Own };
            let digest = self.resolve_as(&base, &auth).await.map_err(|e| e.to_string())?;
            let first_seen = self.first_seen.get_with(digest.clone(), async { Utc::now() }).await;
            let created = match &a.digest {
                Ok(on) if *on == digest => None,
                _ => self.source.created(&base, &auth, &digest).await.ok().flatten(),
            };
            Ok(Current { digest, created, first_seen })
        };
        BaseImage { now: now.await, name: a.name, built_on: a.digest }
    }

    /// The digest `image` names: its own, or its tag's now (cached for the
    /// tag TTL; concurrent callers share one registry lookup). The mutating
    /// webhook pins images to exactly this digest, which the validating
    /// webhook then judges.
    pub async fn resolve(self: &Arc<Self>, image: &ImageRef, keys: &Keychain) -> Result<Digest, LookupError> {
        if let Some(d) = &image.digest {
            return Ok(d.clone());
        }
        self.with_logins(image, keys, |auth| async move { self.resolve_as(image, &auth).await }).await
    }

    async fn resolve_as(self: &Arc<Self>, image: &ImageRef, auth: &Auth) -> Result<Digest, LookupError> {
        if let Some(d) = &image.digest {
            return Ok(d.clone());
        }
        let me = self.clone();
        let (img, a) = (image.clone(), auth.clone());
        let entry = self
            .tags
            .entry(tag_key(image, auth))
            .or_insert_with(async move { me.source.resolve(&img, &a).await })
            .await;
        self.metrics.cache("tag", !entry.is_fresh());
        entry.into_value()
    }

    /// [`Engine::resolve`] for each image, each answered by `deadline`
    /// (a lookup still running then goes on in the background, bounded by
    /// the registry's lookup budget, to fill the cache).
    pub async fn resolve_all(
        self: &Arc<Self>,
        images: &[ImageRef],
        keys: &Keychain,
        deadline: Instant,
    ) -> Vec<Result<Digest, LookupError>> {
        let tasks = images.iter().map(|image| {
            let (me, img, keys) = (self.clone(), image.clone(), keys.clone());
            by_deadline(deadline, async move { me.resolve(&img, &keys).await })
        });
        futures::future::join_all(tasks).await
    }

    /// Evaluates every image for `tier`, answering by `deadline` whatever the
    /// registries do. A lookup still running at the deadline goes on in the
    /// background (bounded by the registry timeouts) and fills the cache for
    /// the API server's retry; the image counts as an error now.
    // The VEX given for the images (`check --vex`) is one more input.
    #[allow(clippy::too_many_arguments)]
    pub async fn evaluate_images(
        self: &Arc<Self>,
        policy: &Arc<Policy>,
        tier: &TierName,
        images: &[ImageRef],
        keys: &Keychain,
        now: DateTime<Utc>,
        deadline: Instant,
        vex: &[crate::evidence::vex::Source],
    ) -> Vec<Verdict> {
        let tasks = images.iter().map(|image| async move {
            // The warm path: evidence already cached, judged in place (no
            // task, no lookup). Anything else is looked up by its own task.
            let gathered = match self.cached(image, policy, keys).await {
                Some(ev) => Ok(ev),
                None => {
                    let (me, img, pol, keys) = (self.clone(), image.clone(), policy.clone(), keys.clone());
                    by_deadline(deadline, async move { me.gather(&img, &pol, &keys).await }).await
                }
            };
            crate::policy::evaluate_with_vex(policy, tier, image, gathered.as_deref(), now, vex)
        });
        futures::future::join_all(tasks).await
    }

    /// The evidence of `image` already cached under the first login
    /// [`Engine::gather`] would try (so the same answer it would give),
    /// when its tag's digest is cached too; `None` when anything is missing
    /// or what is cached is an error.
    async fn cached(&self, image: &ImageRef, policy: &Policy, keys: &Keychain) -> Option<Arc<ImageEvidence>> {
        let auth = keys.first(&image.registry);
        let digest = match &image.digest {
            Some(d) => d.clone(),
            None => self.tags.get(&tag_key(image, &auth)).await?.ok()?,
        };
        let ev = self.evidence.get(&evidence_key(image, digest, policy, &auth)).await?.ok()?;
        if image.digest.is_none() {
            self.metrics.cache("tag", true);
        }
        self.metrics.cache("evidence", true);
        Some(ev)
    }
}

/// Where the evidence of `image`'s `digest`, verified under `policy`'s trust
/// with `auth`, is cached: the lookup and the warm path must agree on it.
fn evidence_key(image: &ImageRef, digest: Digest, policy: &Policy, auth: &Auth) -> EvidenceKey {
    (image.name(), digest, policy.evidence_scope().clone(), auth.scope())
}

/// Where the digest of `image`'s tag, resolved with `auth`, is cached.
fn tag_key(image: &ImageRef, auth: &Auth) -> TagKey {
    (image.to_string(), auth.scope())
}

/// Runs `work` as a task of its own and waits for it until `deadline`. Past
/// it the caller gets an error now, and the task goes on in the background
/// (bounded by the registry's lookup budget) to fill the caches for the API
/// server's retry.
async fn by_deadline<T: Send + 'static>(
    deadline: Instant,
    work: impl std::future::Future<Output = Result<T, LookupError>> + Send + 'static,
) -> Result<T, LookupError> {
    match tokio::time::timeout_at(deadline, tokio::spawn(work)).await {
        Ok(Ok(r)) => r,
        Ok(Err(join)) => Err(LookupError::Internal(join.to_string())),
        Err(_) => Err(LookupError::Deadline),
    }
}

#[cfg(test)]
mod tests;
