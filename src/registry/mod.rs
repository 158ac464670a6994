//! OCI registry access: tag -> digest resolution and cosign attestation discovery.
//!
//! Every read is bounded in size (manifests, blobs, the number of layers) and
//! in time (a connect and a per-request timeout, and a budget for a whole
//! lookup, waiting included). Digests of what is fetched by digest are
//! verified. Registries on loopback, and those configured as insecure, are
//! reached over plain HTTP; all others over HTTPS.
//!
//! **Memory.** A lookup reads an image's attestations one at a time: each
//! blob is fetched, verified by the caller's reader and dropped before the
//! next ([`Registry::attestations`]), the newest of each claimed predicate
//! type first ([`plan`]), at most [`Limits::lookup_bytes`] in all; what is
//! left is counted, never silently dropped. Every body held (blobs,
//! manifests, indexes) is charged its size against
//! [`Limits::bytes_in_flight`] before it is read and until it is dropped,
//! so any number of concurrent lookups hold at most that much; manifests
//! are read into bounded typed listings (`registry::listing`), never into documents.
//!
//! **Fairness.** A lookup (a tag resolution, or an attestation search) takes
//! three kinds of slot, in this order:
//!
//! 1. one of its registry's own ([`Limits::concurrent_lookups_per_registry`],
//!    8), with at most [`Limits::queued_lookups_per_registry`] (64) waiting
//!    (past that it fails at once, "saturated"): a registry that hangs holds
//!    its own share and no more;
//! 2. for a registry not known to answer, one of a share that all such
//!    registries have together ([`Limits::concurrent_lookups_unproven`], 16):
//!    a registry is known to answer once it has answered a request, and
//!    stops being so for [`QUARANTINE`] (5 minutes) after one of its requests
//!    times out, whatever it answers meanwhile;
//! 3. a global one ([`Limits::concurrent_lookups`], 32).
//!
//! So any number of registries that hang, or that nobody has heard from (a
//! Pod can name endless hosts), hold at most half of the global slots, and
//! registries that answer (the ones production images come from, in use all
//! day) always have the other half. A registry that answers once and then
//! hangs takes at most its own share until its first request times out
//! ([`Limits::request_timeout`]), then is quarantined. The bytes in flight
//! are split the same way: half for registries known to answer (when the
//! lookup began), half for the others, so that registries that trickle
//! bodies cannot hold the budget either. A registry known to answer holds
//! of the kept half at most as many bytes as it has sent in full since it
//! was last quarantined (its *credit*); a body past that is charged to the
//! other half. So a registry that answers small manifests promptly and
//! then stalls a large body holds the other half with it, and holding the
//! kept half costs sending as much first.
//!
//! What is not guarded: a registry never heard from before (a new one, or
//! every one after a restart) competes with the unknown ones for their
//! share until it has answered once. And registries made to answer once
//! beforehand, then to hang together, each hold their own share of the
//! answering half's slots (and of its bytes, as many as each sent in full
//! first) for one request timeout before they are quarantined: many
//! prepared so can hold it for longer (per-namespace shares would bound
//! that; lookups are shared across namespaces, so they are not charged to
//! one).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use reqwest::{header, StatusCode};
use serde::Deserialize;

use crate::attest::{LegacyLayer, Signed};
use crate::evidence::{LookupError, Unread};
use crate::image::{Digest, ImageRef};
use crate::platform::{self, Platform};

mod credentials;
mod listing;
pub mod plan;
pub use credentials::{Auth, Credentials, CredentialsError, Login};

/// Media type of a DSSE envelope layer in a cosign attestation manifest.
pub const DSSE_MEDIA_TYPE: &str = "application/vnd.dsse.envelope.v1+json";
/// Sigstore bundle media types (`…bundle.v0.3+json`, `…bundle+json;version=0.3`).
pub use crate::attest::BUNDLE_MEDIA_TYPE_PREFIX;

const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest manifest read.
    pub manifest_bytes: usize,
    /// Largest attestation (DSSE envelope) read.
    pub attestation_bytes: usize,
    /// Most attestation layers read for one image.
    pub attestation_layers: usize,
    /// Timeout for establishing a connection.
    pub connect_timeout: Duration,
    /// Timeout for one whole HTTP exchange, body included.
    pub request_timeout: Duration,
    /// Most image lookups (a tag resolution, or an attestation search) in
    /// flight at once, across all registries; more wait their turn.
    pub concurrent_lookups: usize,
    /// Most lookups in flight at once against one registry, so that one that
    /// hangs holds at most this many of the global slots.
    pub concurrent_lookups_per_registry: usize,
    /// Most lookups waiting for one registry; past it, a lookup fails at once.
    pub queued_lookups_per_registry: usize,
    /// Budget for one whole lookup, waiting for a slot included. A lookup
    /// that outlives the admission deadline goes on in the background to fill
    /// the cache, but never longer than this.
    pub lookup_timeout: Duration,
    /// Most bytes of attestations read for one image digest, across both
    /// schemes; past it the rest is not read (and said so).
    pub lookup_bytes: usize,
    /// Most bytes of registry bodies (attestations and manifests) held at
    /// once, across all lookups: each is charged its size before it is read
    /// and until it has been verified and dropped. Half is for registries
    /// known to answer, each within the bytes it has sent in full since it
    /// last timed out, half for the others (so that registries that trickle
    /// bodies cannot hold all of it); a body larger than its half waits for
    /// all of that half.
    pub bytes_in_flight: usize,
    /// Most of the global slots held at once by lookups of registries not
    /// known to answer: never heard from, or one of whose requests timed out
    /// in the last [`QUARANTINE`]. The rest of the global slots are kept for
    /// registries that answer.
    pub concurrent_lookups_unproven: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            manifest_bytes: 4 << 20,
            attestation_bytes: 16 << 20,
            attestation_layers: 32,
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            concurrent_lookups: 32,
            concurrent_lookups_per_registry: 8,
            queued_lookups_per_registry: 64,
            lookup_timeout: Duration::from_secs(20),
            lookup_bytes: 32 << 20,
            bytes_in_flight: 32 << 20,
            concurrent_lookups_unproven: 16,
        }
    }
}

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum RegistryError {
    #[error("registry {registry} unreachable: {why}")]
    Unreachable { registry: String, why: String },
    #[error("registry {registry} did not answer within {secs:.1}s")]
    Timeout { registry: String, secs: f64 },
    #[error("{what} not found in registry")]
    NotFound { what: String },
    #[error("authentication failed at registry {registry} for repository {repository} ({status}) with {with}")]
    Unauthorized { registry: String, repository: String, status: u16, with: String },
    #[error("{0}")]
    Credentials(#[from] CredentialsError),
    #[error("registry {registry} answered {status} for {what}")]
    Status { registry: String, what: String, status: u16 },
    #[error("{what} is larger than the limit of {limit} bytes")]
    TooLarge { what: String, limit: usize },
    #[error("{what}: content does not match its digest {expected}")]
    DigestMismatch { what: String, expected: String },
    #[error("{what}: {why}")]
    Protocol { what: String, why: String },
    #[error("registry {registry} is saturated: {waiting} lookups are already waiting for it; try again shortly")]
    Saturated { registry: String, waiting: usize },
}

/// A registry error as the core sees it: the same words; a refused login
/// stays one (so that the next login is tried).
impl From<RegistryError> for LookupError {
    fn from(e: RegistryError) -> LookupError {
        match e {
            RegistryError::Unauthorized { registry, repository, status, with } => {
                LookupError::Unauthorized { registry, repository, status, with }
            }
            other => LookupError::Source(other.to_string()),
        }
    }
}

/// Signed material found for an image, under the digest of the registry blob
/// that held it (a legacy `.att` layer, or a sigstore bundle), which
/// decisions cite.
pub type Found = (Digest, Signed);

/// What was made of the attestations found for an image, each by the
/// caller's reader as it was read ([`Registry::attestations`]), in the
/// registry's order (the legacy `.att` layers, then the sigstore bundles
/// among its OCI referrers; later is newer).
#[derive(Clone, Debug, Default)]
pub struct Attestations<T> {
    /// Where they were looked for, for messages.
    pub location: String,
    pub found: Vec<T>,
    /// Listed but not read: past the count or the byte budget per image,
    /// or too large (of each claimed type, the newest are read).
    pub unread: Unread,
    /// When the digest is an image index (a multi-arch image): its entries,
    /// as it lists them (their content not read yet: see
    /// [`Registry::index_entries`]). None for a single manifest.
    pub platforms: Option<Vec<PlatformManifest>>,
    /// The base image the digest's own manifest names in its annotations.
    pub base: Option<crate::evidence::base::Annotated>,
}

/// What is done with each attestation as it is read, off the async workers,
/// before the next is fetched; its bytes are dropped when it returns. Gets
/// the attestation's position in the registry's order (later is newer).
pub type Reader<T> = Arc<dyn Fn(usize, Found) -> T + Send + Sync>;

/// One entry of an image index, as the index lists it: its manifest and the
/// platform the index gives it (normalised), if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlatformManifest {
    pub platform: Option<Platform>,
    /// The platform as the index writes it, for messages.
    pub written: Option<Platform>,
    pub digest: Digest,
}

/// Most entries with something to run an index may list; more is refused
/// (every one is a lookup of its own).
pub const MAX_PLATFORMS: usize = 32;

/// Most entries an index may list at all: its platforms and an attestation
/// manifest for each (what buildx writes). Each is read to learn what it is.
pub const MAX_INDEX_ENTRIES: usize = 2 * MAX_PLATFORMS;

/// Entries of an index read at once.
const ENTRY_READS: usize = 4;

/// One registry's share of the lookup slots, and whether it answers.
struct Gate {
    slots: Arc<tokio::sync::Semaphore>,
    waiting: AtomicUsize,
    health: Mutex<Health>,
}

/// How long a registry that answered a referrers request as one without
/// the API (404, 400, 405, 501) is asked through the referrers tag alone,
/// without trying the API first: one request per lookup instead of two. A
/// registry with the API never answers so (OCI distribution 1.1: it MUST
/// NOT return 404), and one upgraded meanwhile is asked again after this.
pub const NO_REFERRERS_API: Duration = Duration::from_secs(300);

/// How long a registry one of whose requests timed out is held to the
/// share of registries not known to answer, whatever it answers meanwhile
/// (a registry that answers once and then hangs cannot win its way back).
pub const QUARANTINE: Duration = Duration::from_secs(300);

#[derive(Default)]
struct Health {
    /// It answered a request (any HTTP status) at least once.
    answered: bool,
    /// When a request to it last timed out.
    timed_out: Option<Instant>,
    /// When it last answered a referrers request as a registry without the
    /// referrers API ([`NO_REFERRERS_API`]).
    no_referrers_api: Option<Instant>,
    /// Bytes of bodies it sent in full since it was last quarantined.
    delivered: u64,
    /// Bytes charged to the kept half of the bytes in flight for its bodies
    /// now, at most `delivered` ([`Gate::take_credit`]).
    held: u64,
}

impl Gate {
    /// Answers, and none of its requests timed out lately.
    fn proven(&self) -> bool {
        let h = self.health.lock().unwrap_or_else(|e| e.into_inner());
        h.answered && h.timed_out.is_none_or(|t| t.elapsed() >= QUARANTINE)
    }

    fn answered(&self) {
        self.health.lock().unwrap_or_else(|e| e.into_inner()).answered = true;
    }

    fn timed_out(&self) {
        let mut h = self.health.lock().unwrap_or_else(|e| e.into_inner());
        h.timed_out = Some(Instant::now());
        h.delivered = 0;
    }

    /// It sent a body of `bytes` in full.
    fn delivered(&self, bytes: usize) {
        let mut h = self.health.lock().unwrap_or_else(|e| e.into_inner());
        h.delivered = h.delivered.saturating_add(bytes as u64);
    }

    /// Takes `bytes` of its credit for the kept half of the bytes in flight:
    /// whether what it holds there with them stays within what it has sent
    /// in full ([`Health::delivered`]). Given back by [`Gate::give_credit`].
    fn take_credit(&self, bytes: u64) -> bool {
        let mut h = self.health.lock().unwrap_or_else(|e| e.into_inner());
        let fits = h.held.checked_add(bytes).is_some_and(|held| held <= h.delivered);
        if fits {
            h.held += bytes;
        }
        fits
    }

    fn give_credit(&self, bytes: u64) {
        let mut h = self.health.lock().unwrap_or_else(|e| e.into_inner());
        h.held = h.held.saturating_sub(bytes);
    }

    /// It lately answered as a registry without the referrers API.
    fn lacks_referrers_api(&self) -> bool {
        let h = self.health.lock().unwrap_or_else(|e| e.into_inner());
        h.no_referrers_api.is_some_and(|t| t.elapsed() < NO_REFERRERS_API)
    }

    fn no_referrers_api(&self) {
        self.health.lock().unwrap_or_else(|e| e.into_inner()).no_referrers_api = Some(Instant::now());
    }
}

/// Counts a lookup as waiting until it gets its slot or gives up.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A lookup's slots, held until it ends: its registry's, the unproven
/// share's (for a registry not known to answer) and the global one (and the
/// gate, so that it is not forgotten while in use).
#[allow(dead_code)]
struct Turn<'a>(
    Arc<Gate>,
    tokio::sync::OwnedSemaphorePermit,
    Option<tokio::sync::SemaphorePermit<'a>>,
    tokio::sync::SemaphorePermit<'a>,
);

/// Bytes of a registry body, charged to [`Limits::bytes_in_flight`] while
/// they are held.
pub struct Held {
    pub bytes: Bytes,
    _charge: Charge,
}

impl std::ops::Deref for Held {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

/// A charge against [`Limits::bytes_in_flight`], in KiB; in the kept half,
/// with the bytes of its registry's credit it took.
#[allow(dead_code)]
struct Charge(tokio::sync::OwnedSemaphorePermit, Option<Credit>);

/// Bytes of a registry's credit taken ([`Gate::take_credit`]), given back
/// when dropped.
struct Credit(Arc<Gate>, u64);

impl Drop for Credit {
    fn drop(&mut self) {
        self.0.give_credit(self.1);
    }
}

/// The halves of [`Limits::bytes_in_flight`] (for registries known to
/// answer, for the others), in the KiB charges count.
fn byte_pools(l: &Limits) -> (usize, usize) {
    let all = l.bytes_in_flight.div_ceil(1024).clamp(2, u32::MAX as usize);
    (all - all / 2, all / 2)
}

/// What one scheme lists, oldest first, and how many older entries were
/// dropped unlisted (past [`listing::MAX_LISTED`]).
#[derive(Default)]
struct Listing {
    items: Vec<(Source, plan::Listed)>,
    dropped: usize,
}

/// Where a listed attestation is read from.
enum Source {
    /// A `.att` layer.
    Layer(Layer),
    /// A referrer manifest, whose bundle layer is the attestation.
    Referrer(Digest),
}

/// An attestation blob as a manifest describes it.
struct Layer {
    digest: Digest,
    size: u64,
    /// cosign's keyless annotations of a `.att` layer.
    annotations: std::collections::BTreeMap<String, String>,
}

tokio::task_local! {
    /// Whether the lookup running in this task took a slot of the unproven
    /// share: then its bodies are charged to the unproven half of the bytes
    /// in flight too, even once its registry has answered during it.
    static UNPROVEN_LOOKUP: std::cell::Cell<bool>;
}

/// Registries remembered for their gates before idle ones are forgotten.
const GATES_KEPT: usize = 1024;

/// A small OCI distribution client with bounded reads.
pub struct Registry {
    http: reqwest::Client,
    /// Registries with a CA bundle of their own: always HTTPS (loopback
    /// ones too), trusting that bundle besides the system roots.
    per_host: HashMap<String, reqwest::Client>,
    insecure: HashSet<String>,
    credentials: Credentials,
    limits: Limits,
    tokens: Mutex<HashMap<TokenKey, (String, Instant)>>,
    lookups: tokio::sync::Semaphore,
    /// The global slots registries not known to answer may hold.
    unproven: tokio::sync::Semaphore,
    /// Bytes of registry bodies held at once, in KiB: for registries known
    /// to answer, and for the others.
    bytes_proven: Arc<tokio::sync::Semaphore>,
    bytes_unproven: Arc<tokio::sync::Semaphore>,
    gates: Mutex<HashMap<String, Arc<Gate>>>,
    /// HTTP requests sent to registries (token requests included).
    requests: std::sync::atomic::AtomicU64,
    /// Where each request is counted and timed, when set.
    metrics: Option<Arc<crate::metrics::Metrics>>,
    /// The digests a tag's HEAD just said are single-image manifests, by
    /// (registry, repository, auth scope, digest): the lookup of their
    /// attestations that follows skips its GET of the manifest
    /// ([`SAID_MANIFEST`]).
    said_manifest: moka::sync::Cache<(String, String, String, Digest), ()>,
}

/// How long a tag's HEAD answer that its digest is a single-image manifest
/// (its `Content-Type`) spares the attestation lookup that follows the GET
/// of that manifest, and how many such answers are kept. The GET is only
/// read to learn whether the digest is an index and which base image its
/// annotations name: a registry that said "manifest" for what is an index
/// gets that index judged by its own attestations alone, which is never
/// more lenient (an index without any has nothing verified).
pub const SAID_MANIFEST: Duration = Duration::from_secs(60);
const SAID_MANIFEST_ENTRIES: u64 = 4096;

/// The `Content-Type`s of a single-image manifest (OCI, Docker schema 2).
const SINGLE_MANIFEST_TYPES: [&str; 2] =
    ["application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json"];

/// What a registry request is for, as metrics label it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Operation {
    /// A bearer token from the registry's token service.
    Token,
    /// A manifest or index (GET or HEAD), by tag or by digest.
    Manifest,
    /// The OCI referrers API.
    Referrers,
    /// A blob by digest.
    Blob,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Token => "token",
            Operation::Manifest => "manifest",
            Operation::Referrers => "referrers",
            Operation::Blob => "blob",
        }
    }
}

/// Bearer tokens are kept by (registry, repository, auth scope): a token got
/// with one login never serves another.
type TokenKey = (String, String, String);

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: String,
    #[serde(default)]
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl Registry {
    /// `insecure` lists registries (`host[:port]`) reached over plain HTTP in
    /// addition to loopback ones; `extra_roots` are PEM CA certificates trusted
    /// for HTTPS registries besides the system roots.
    pub fn new(
        limits: Limits,
        insecure: Vec<String>,
        credentials: Credentials,
        extra_roots: &[Vec<u8>],
    ) -> Result<Self, SetupError> {
        let http = client(&limits, extra_roots)?;
        let lookups = tokio::sync::Semaphore::new(limits.concurrent_lookups.max(1));
        let unproven =
            tokio::sync::Semaphore::new(limits.concurrent_lookups_unproven.clamp(1, limits.concurrent_lookups.max(1)));
        let (proven_kib, unproven_kib) = byte_pools(&limits);
        Ok(Registry {
            http,
            per_host: HashMap::new(),
            insecure: insecure.into_iter().collect(),
            credentials,
            limits,
            tokens: Mutex::default(),
            lookups,
            unproven,
            bytes_proven: Arc::new(tokio::sync::Semaphore::new(proven_kib)),
            bytes_unproven: Arc::new(tokio::sync::Semaphore::new(unproven_kib)),
            gates: Mutex::default(),
            requests: Default::default(),
            metrics: None,
            said_manifest: moka::sync::Cache::builder()
                .max_capacity(SAID_MANIFEST_ENTRIES)
                .time_to_live(SAID_MANIFEST)
                .build(),
        })
    }

    /// Counts and times every request sent in `metrics`
    /// (`portcullis_registry_requests_total`,
    /// `portcullis_registry_request_duration_seconds`).
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Trusts the PEM CA bundle `pem` for `host` (besides the system roots),
    /// and reaches `host` over HTTPS even on loopback.
    pub fn with_host_ca(mut self, host: &str, pem: &[u8]) -> Result<Self, SetupError> {
        let c = client(&self.limits, &[pem.to_vec()])
            .map_err(|e| SetupError::ForHost { host: host.to_string(), why: Box::new(e) })?;
        self.per_host.insert(host.to_string(), c);
        Ok(self)
    }

    /// The client for `registry`: its own when it has a CA bundle of its own.
    fn http_for(&self, registry: &str) -> &reqwest::Client {
        self.per_host.get(registry).unwrap_or(&self.http)
    }

    /// HTTP requests sent to registries so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    fn base(&self, image: &ImageRef) -> String {
        let plain = (image.is_loopback_registry() || self.insecure.contains(&image.registry))
            && !self.per_host.contains_key(&image.registry);
        let scheme = if plain { "http" } else { "https" };
        let host = if image.registry == crate::image::DOCKER_HUB { "registry-1.docker.io" } else { &image.registry };
        format!("{scheme}://{host}/v2/{}", image.repository)
    }

    /// Resolves the image's tag to the digest the registry serves now. An
    /// image pinned by digest is returned as it is.
    pub async fn resolve(&self, image: &ImageRef, auth: &Auth) -> Result<Digest, RegistryError> {
        if let Some(d) = &image.digest {
            return Ok(d.clone());
        }
        self.bounded(image, async {
            let _turn = self.turn(image).await?;
            let tag = image.tag.as_deref().unwrap_or("latest");
            let url = format!("{}/manifests/{tag}", self.base(image));
            let what = format!("image {}:{tag}", image.name());
            let resp = self.send(image, auth, Operation::Manifest, reqwest::Method::HEAD, &url, &what).await?;
            if let Some(d) = resp.headers().get("docker-content-digest").and_then(|v| v.to_str().ok()) {
                if let Ok(d) = Digest::parse(d) {
                    let content_type = resp.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
                    if content_type.is_some_and(|t| SINGLE_MANIFEST_TYPES.contains(&t.trim())) {
                        self.said_manifest.insert(said_key(image, auth, &d), ());
                    }
                    return Ok(d);
                }
            }
            // No usable header: fetch the manifest and hash it, once it is
            // known to be a manifest (never an error page, never anything else).
            let resp = self.send(image, auth, Operation::Manifest, reqwest::Method::GET, &url, &what).await?;
            let content_type = resp.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(String::from);
            let body = self.read_charged(image, resp, self.limits.manifest_bytes, &what).await?;
            check_manifest(&body, content_type.as_deref()).map_err(|why| RegistryError::Protocol { what, why })?;
            Ok(Digest::of(&body))
        })
        .await
    }

    /// Runs one lookup within [`Limits::lookup_timeout`], waiting included.
    async fn bounded<T>(
        &self,
        image: &ImageRef,
        work: impl std::future::Future<Output = Result<T, RegistryError>>,
    ) -> Result<T, RegistryError> {
        let work = UNPROVEN_LOOKUP.scope(std::cell::Cell::new(false), work);
        match tokio::time::timeout(self.limits.lookup_timeout, work).await {
            Ok(r) => r,
            Err(_) => {
                self.gate(&image.registry).timed_out();
                Err(RegistryError::Timeout {
                    registry: image.registry.clone(),
                    secs: self.limits.lookup_timeout.as_secs_f64(),
                })
            }
        }
    }

    /// Finds the cosign attestations of `digest`, in both schemes cosign
    /// writes: the legacy tag `sha256-<hex>.att` in the image's repository,
    /// and sigstore bundles attached as OCI 1.1 referrers (cosign v3's
    /// default, `--new-bundle-format` before), through the referrers API or,
    /// where the registry has none, the `sha256-<hex>` referrers tag. Finding
    /// none is not an error.
    ///
    /// They are read one at a time, the newest of each claimed predicate type
    /// first and then the rest newest first ([`plan`]), within
    /// [`Limits::attestation_layers`] per scheme and [`Limits::lookup_bytes`]
    /// in all: each blob is fetched, handed to `read` (off the async workers)
    /// and dropped before the next is fetched, so a lookup holds about one
    /// attestation at a time, charged to [`Limits::bytes_in_flight`].
    ///
    /// The digest's own manifest is read too (whether it is an index, the
    /// base image it names), unless its tag's HEAD just said it is a single
    /// image and `with_base` does not ask for its base ([`SAID_MANIFEST`]).
    pub async fn attestations<T: Send + 'static>(
        &self,
        image: &ImageRef,
        auth: &Auth,
        digest: &Digest,
        with_base: bool,
        read: Reader<T>,
    ) -> Result<Attestations<T>, RegistryError> {
        self.bounded(image, async {
            let _turn = self.turn(image).await?;
            let location =
                format!("{}:sha256-{}.att and the OCI referrers of {}", image.name(), digest.hex(), digest.short());
            let (legacy, referrers, platforms) = tokio::join!(
                self.legacy_listing(image, auth, digest),
                self.referrers(image, auth, digest),
                self.platforms(image, auth, digest, with_base)
            );
            let (legacy, referrers, (platforms, base)) = (legacy?, referrers?, platforms?);
            let hints = |l: &Listing| l.items.iter().map(|(_, listed)| listed.clone()).collect::<Vec<_>>();
            let (order, past_count) = plan::plan(&hints(&legacy), &hints(&referrers), self.limits.attestation_layers);
            let mut budget = plan::Budget::new(
                self.limits.lookup_bytes as u64,
                self.limits.attestation_bytes as u64,
                self.limits.attestation_layers,
                past_count + legacy.dropped + referrers.dropped,
            );
            let mut found = Vec::new();
            for (scheme, i) in order {
                let (index, (source, listed)) = match scheme {
                    plan::Scheme::Legacy => (i, &legacy.items[i]),
                    plan::Scheme::Referrer => (legacy.items.len() + i, &referrers.items[i]),
                };
                let bundle;
                let layer = match source {
                    Source::Layer(layer) => layer,
                    Source::Referrer(manifest) => match self.bundle_layer(image, auth, manifest).await? {
                        Some(layer) => {
                            bundle = layer;
                            &bundle
                        }
                        None => continue,
                    },
                };
                if budget.admit(listed.hint.as_deref(), layer.size).is_err() {
                    continue;
                }
                let blob = self.blob(image, auth, &layer.digest, layer.size).await?;
                let signed = match scheme {
                    plan::Scheme::Legacy => {
                        let l = LegacyLayer::new(blob.bytes.clone(), Some(&layer.annotations));
                        if l.certificate.is_some() {
                            Signed::Legacy(Box::new(l))
                        } else {
                            Signed::Envelope(l.envelope)
                        }
                    }
                    // A bundle holds a DSSE envelope (attestations) or a
                    // message signature (cosign sign): only the first are.
                    plan::Scheme::Referrer if !crate::attest::holds_dsse(&blob) => continue,
                    plan::Scheme::Referrer => Signed::Bundle(blob.bytes.clone()),
                };
                let read = read.clone();
                let d = layer.digest.clone();
                // The charge is released, and the bytes dropped, when the
                // reader is done with them (even if this lookup is abandoned).
                let t = tokio::task::spawn_blocking(move || {
                    let _held = blob;
                    read(index, (d, signed))
                })
                .await
                .map_err(|e| RegistryError::Protocol { what: location.clone(), why: format!("reading: {e}") })?;
                found.push((index, t));
            }
            found.sort_by_key(|(i, _)| *i);
            Ok(Attestations {
                location,
                found: found.into_iter().map(|(_, t)| t).collect(),
                unread: budget.unread(),
                platforms,
                base,
            })
        })
        .await
    }

    /// The image's own manifest, read to learn whether it is an index: then
    /// its entries, read as containerd reads them (Go's JSON decoding, keys in
    /// any case; a field named twice is refused), at most
    /// [`MAX_INDEX_ENTRIES`]. Nothing is left out here: what each entry holds
    /// is read by [`Registry::index_entries`], when the index is judged by
    /// its platforms. With them, the base image its annotations name.
    async fn platforms(
        &self,
        image: &ImageRef,
        auth: &Auth,
        digest: &Digest,
        with_base: bool,
    ) -> Result<(Option<Vec<PlatformManifest>>, Option<crate::evidence::base::Annotated>), RegistryError> {
        if !with_base && self.said_manifest.contains_key(&said_key(image, auth, digest)) {
            return Ok((None, None));
        }
        let what = image.pinned(digest);
        let Some(body) = self.manifest_by_digest(image, auth, digest, &what).await? else {
            return Err(RegistryError::NotFound { what });
        };
        let base = crate::evidence::base::annotated(&body);
        let protocol = |why: String| RegistryError::Protocol { what: what.clone(), why };
        // An index is what has a `manifests` list (its mediaType is optional).
        let Some(listed) = platform::read_index(&body, MAX_INDEX_ENTRIES).map_err(protocol)? else {
            return Ok((None, base));
        };
        let listed = listed
            .into_iter()
            .map(|l| {
                let digest = Digest::parse(&l.digest).map_err(|e| protocol(e.to_string()))?;
                Ok(PlatformManifest { platform: l.platform, written: l.written, digest })
            })
            .collect::<Result<Vec<_>, RegistryError>>()?;
        Ok((Some(listed), base))
    }

    /// When the image `digest` names was built: its config's `created`
    /// (for an index, that of its first image entry), read bounded to
    /// [`Limits::manifest_bytes`]; None when it has none or it cannot be
    /// read. Used for a base image that has moved on.
    pub async fn created(
        &self,
        image: &ImageRef,
        auth: &Auth,
        digest: &Digest,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, RegistryError> {
        self.bounded(image, async {
            let _turn = self.turn(image).await?;
            let what = image.pinned(digest);
            let Some(mut body) = self.manifest_by_digest(image, auth, digest, &what).await? else {
                return Err(RegistryError::NotFound { what });
            };
            if let Some(listed) = platform::read_index(&body, MAX_INDEX_ENTRIES)
                .map_err(|why| RegistryError::Protocol { what: what.clone(), why })?
            {
                let Some(first) = listed.iter().find_map(|l| Digest::parse(&l.digest).ok()) else { return Ok(None) };
                let entry = format!("index entry {}", first.short());
                match self.manifest_by_digest(image, auth, &first, &entry).await? {
                    Some(b) => body = b,
                    None => return Ok(None),
                }
            }
            let Ok(platform::Manifest::Image { config: Some((config, size)), .. }) = platform::read_manifest(&body)
            else {
                return Ok(None);
            };
            let Ok(config) = Digest::parse(&config) else { return Ok(None) };
            let Some(blob) = self.config_blob(image, auth, &config, size).await? else { return Ok(None) };
            Ok(crate::evidence::base::created(&blob.bytes))
        })
        .await
    }

    /// What each entry of an index holds, read from its content (bounded,
    /// checked against its digest, [`ENTRY_READS`] at a time, within one
    /// lookup's slot and budget): an image, an attestation manifest (every
    /// layer an in-toto statement: nothing to run), or an index; and for an
    /// image the index lists without a platform, the platform its config
    /// gives, which is how containerd runs it. An entry that cannot be read
    /// is kept as an image of unknown platform, so it is judged wherever it
    /// might run (its own lookup then says what fails). More than
    /// [`MAX_PLATFORMS`] entries with something to run are refused.
    pub async fn index_entries(
        &self,
        image: &ImageRef,
        auth: &Auth,
        index: &Digest,
        listed: &[PlatformManifest],
    ) -> Result<Vec<platform::Entry>, RegistryError> {
        use futures::StreamExt as _;
        self.bounded(image, async {
            let _turn = self.turn(image).await?;
            let reads: Vec<_> = listed.iter().map(|l| self.index_entry(image, auth, l)).collect();
            let entries: Vec<platform::Entry> = futures::stream::iter(reads).buffered(ENTRY_READS).collect().await;
            let runnable = entries.iter().filter(|e| e.content != platform::Content::Attestation).count();
            if runnable > MAX_PLATFORMS {
                return Err(RegistryError::Protocol {
                    what: image.pinned(index),
                    why: format!("the index lists {runnable} platforms, more than the limit {MAX_PLATFORMS}"),
                });
            }
            Ok(entries)
        })
        .await
    }

    /// One entry of an index, read: see [`Registry::index_entries`].
    async fn index_entry(&self, image: &ImageRef, auth: &Auth, l: &PlatformManifest) -> platform::Entry {
        let mut entry = platform::Entry {
            digest: l.digest.clone(),
            platform: l.platform.clone(),
            written: l.written.clone(),
            config: None,
            content: platform::Content::Image,
        };
        let what = format!("index entry {}", l.digest.short());
        let Ok(Some(body)) = self.manifest_by_digest(image, auth, &l.digest, &what).await else { return entry };
        match platform::read_manifest(&body) {
            Ok(platform::Manifest::Index) => entry.content = platform::Content::Index,
            Ok(platform::Manifest::Image { attestation: true, .. }) => entry.content = platform::Content::Attestation,
            Ok(platform::Manifest::Image { config: Some((digest, size)), .. }) if l.platform.is_none() => {
                entry.config = self.config_platform(image, auth, &digest, size).await;
            }
            _ => {}
        }
        entry
    }

    /// The platform an image config gives, read bounded to
    /// [`Limits::manifest_bytes`]; None when it cannot be read.
    async fn config_platform(&self, image: &ImageRef, auth: &Auth, digest: &str, size: i64) -> Option<Platform> {
        let d = Digest::parse(digest).ok()?;
        let body = self.config_blob(image, auth, &d, size).await.ok()??;
        platform::read_config_platform(&body.bytes).ok()
    }

    /// An image's config blob, read within [`Limits::manifest_bytes`] (a
    /// config is a small JSON document); None when its declared size is
    /// negative or past that.
    async fn config_blob(
        &self,
        image: &ImageRef,
        auth: &Auth,
        digest: &Digest,
        size: i64,
    ) -> Result<Option<Held>, RegistryError> {
        if size < 0 || size as u64 > self.limits.manifest_bytes as u64 {
            return Ok(None);
        }
        Ok(Some(self.blob(image, auth, digest, size as u64).await?))
    }

    /// The DSSE layers the legacy `.att` manifest lists, oldest first (cosign
    /// appends). A layer signed keyless carries its certificate and Rekor
    /// bundle in its annotations.
    async fn legacy_listing(&self, image: &ImageRef, auth: &Auth, digest: &Digest) -> Result<Listing, RegistryError> {
        let tag = format!("sha256-{}.att", digest.hex());
        let location = format!("{}:{tag}", image.name());
        let Some(body) = self.manifest(image, auth, &tag, &location).await? else { return Ok(Listing::default()) };
        let manifest: listing::Manifest = serde_json::from_slice(&body).map_err(|e| RegistryError::Protocol {
            what: location.clone(),
            why: format!("not an image manifest: {e}"),
        })?;
        let mut out = Listing { items: vec![], dropped: manifest.layers.dropped };
        for l in manifest.layers.items.into_iter().filter(|l| l.media_type == DSSE_MEDIA_TYPE) {
            let layer = self.layer(&l, &location)?;
            let listed = plan::Listed::claiming(l.annotations.predicate_type.as_deref());
            out.items.push((Source::Layer(layer), listed));
        }
        Ok(out)
    }

    /// The image's referrers, oldest first: through the referrers API, or
    /// the referrers tag where the registry has none.
    async fn referrers(&self, image: &ImageRef, auth: &Auth, digest: &Digest) -> Result<Listing, RegistryError> {
        let what = format!("referrers of {}", image.pinned(digest));
        let url = format!("{}/referrers/{digest}", self.base(image));
        let gate = self.gate(&image.registry);
        let tag_schema = || async {
            let tag = format!("sha256-{}", digest.hex());
            self.manifest(image, auth, &tag, &format!("{}:{tag}", image.name())).await
        };
        let index = if gate.lacks_referrers_api() {
            // Known to lack the API lately: the referrers tag schema only.
            match tag_schema().await? {
                Some(b) => b,
                None => return Ok(Listing::default()),
            }
        } else {
            match self.send(image, auth, Operation::Referrers, reqwest::Method::GET, &url, &what).await {
                Ok(resp) => self.read_charged(image, resp, self.limits.manifest_bytes, &what).await?,
                // No referrers API here: the referrers tag schema.
                Err(RegistryError::NotFound { .. }) | Err(RegistryError::Status { status: 400 | 405 | 501, .. }) => {
                    gate.no_referrers_api();
                    match tag_schema().await? {
                        Some(b) => b,
                        None => return Ok(Listing::default()),
                    }
                }
                Err(e) => return Err(e),
            }
        };
        let index: listing::Index = serde_json::from_slice(&index)
            .map_err(|e| RegistryError::Protocol { what: what.clone(), why: format!("not an image index: {e}") })?;
        let mut out = Listing { items: vec![], dropped: index.manifests.dropped };
        for entry in index.manifests.items {
            let d = Digest::parse(&entry.digest)
                .map_err(|e| RegistryError::Protocol { what: what.clone(), why: e.to_string() })?;
            let mut listed = plan::Listed::claiming(entry.annotations.bundle_predicate_type.as_deref());
            // The index's artifactType is not trusted (the referrer manifest
            // itself is read), but orders what is read.
            listed.unlikely = entry.artifact_type.as_deref().is_some_and(|t| !t.starts_with(BUNDLE_MEDIA_TYPE_PREFIX));
            out.items.push((Source::Referrer(d), listed));
        }
        Ok(out)
    }

    /// A referrer's sigstore bundle layer, or None for any other referrer
    /// (an SBOM, a plain signature). The referrer manifest itself is read.
    async fn bundle_layer(
        &self,
        image: &ImageRef,
        auth: &Auth,
        manifest: &Digest,
    ) -> Result<Option<Layer>, RegistryError> {
        let referrer = format!("referrer {}", manifest.short());
        let Some(body) = self.manifest_by_digest(image, auth, manifest, &referrer).await? else { return Ok(None) };
        let Ok(m) = serde_json::from_slice::<listing::Manifest>(&body) else { return Ok(None) };
        let is_bundle = |t: &str| t.starts_with(BUNDLE_MEDIA_TYPE_PREFIX);
        let Some(l) = m.layers.items.iter().find(|l| is_bundle(&l.media_type)) else { return Ok(None) };
        Ok(Some(self.layer(l, &referrer)?))
    }

    /// Waits for a lookup slot: first one of the registry's own
    /// ([`Limits::concurrent_lookups_per_registry`]); for a registry not
    /// known to answer, one of their shared slots
    /// ([`Limits::concurrent_lookups_unproven`]); then a global one
    /// ([`Limits::concurrent_lookups`]). So a registry that hangs holds at
    /// most its own share of the global slots, and registries that hang or
    /// were never heard from, however many, at most theirs together. Past
    /// [`Limits::queued_lookups_per_registry`] waiting, fails at once.
    async fn turn(&self, image: &ImageRef) -> Result<Turn<'_>, RegistryError> {
        let closed = |_| RegistryError::Protocol { what: "registry lookups".into(), why: "shutting down".into() };
        let gate = self.gate(&image.registry);
        let waiting = gate.waiting.fetch_add(1, Ordering::AcqRel);
        let counted = Waiting(&gate.waiting);
        if waiting >= self.limits.queued_lookups_per_registry {
            return Err(RegistryError::Saturated { registry: image.registry.clone(), waiting });
        }
        let own = gate.slots.clone().acquire_owned().await.map_err(closed)?;
        let unproven = match gate.proven() {
            true => None,
            false => {
                let _ = UNPROVEN_LOOKUP.try_with(|u| u.set(true));
                Some(self.unproven.acquire().await.map_err(closed)?)
            }
        };
        let global = self.lookups.acquire().await.map_err(closed)?;
        drop(counted);
        Ok(Turn(gate.clone(), own, unproven, global))
    }

    /// The gate of `registry`, made on first use. Registries no lookup is
    /// using are forgotten once more than [`GATES_KEPT`] are remembered, so
    /// references naming endless hosts cannot grow this map without bound.
    fn gate(&self, registry: &str) -> Arc<Gate> {
        let mut gates = self.gates.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(g) = gates.get(registry) {
            return g.clone();
        }
        if gates.len() >= GATES_KEPT {
            // Registries known to answer are forgotten last.
            gates.retain(|_, g| Arc::strong_count(g) > 1 || g.proven());
            if gates.len() >= GATES_KEPT {
                gates.retain(|_, g| Arc::strong_count(g) > 1);
            }
        }
        let g = Arc::new(Gate {
            slots: Arc::new(tokio::sync::Semaphore::new(self.limits.concurrent_lookups_per_registry.max(1))),
            waiting: AtomicUsize::new(0),
            health: Mutex::default(),
        });
        gates.insert(registry.to_string(), g.clone());
        g
    }

    /// A manifest by tag or digest, bounded and charged to the bytes in
    /// flight while held; None when there is none.
    async fn manifest(
        &self,
        image: &ImageRef,
        auth: &Auth,
        reference: &str,
        what: &str,
    ) -> Result<Option<Held>, RegistryError> {
        let url = format!("{}/manifests/{reference}", self.base(image));
        match self.send(image, auth, Operation::Manifest, reqwest::Method::GET, &url, what).await {
            Ok(resp) => Ok(Some(self.read_charged(image, resp, self.limits.manifest_bytes, what).await?)),
            Err(RegistryError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A manifest by digest, its content checked against the digest; None
    /// when there is none.
    async fn manifest_by_digest(
        &self,
        image: &ImageRef,
        auth: &Auth,
        digest: &Digest,
        what: &str,
    ) -> Result<Option<Held>, RegistryError> {
        let Some(body) = self.manifest(image, auth, digest.as_str(), what).await? else { return Ok(None) };
        if Digest::of(&body) != *digest {
            return Err(RegistryError::DigestMismatch { what: what.to_string(), expected: digest.to_string() });
        }
        Ok(Some(body))
    }

    /// A layer descriptor's digest and declared size.
    fn layer(&self, l: &listing::Descriptor, what: &str) -> Result<Layer, RegistryError> {
        let protocol = |why: String| RegistryError::Protocol { what: what.to_string(), why };
        let digest = Digest::parse(&l.digest).map_err(|e| protocol(e.to_string()))?;
        let size = u64::try_from(l.size).map_err(|_| protocol(format!("layer {} has a negative size", l.digest)))?;
        Ok(Layer { digest, size, annotations: l.annotations.cosign() })
    }

    /// Fetches an attestation blob by digest, charged to the bytes in
    /// flight for its declared `size` before it is read, bounded to it, and
    /// checks its digest.
    async fn blob(&self, image: &ImageRef, auth: &Auth, digest: &Digest, size: u64) -> Result<Held, RegistryError> {
        let what = format!("blob {} in {}", digest.short(), image.name());
        let url = format!("{}/blobs/{digest}", self.base(image));
        let charge = self.charge(image, size).await?;
        let resp = self.send(image, auth, Operation::Blob, reqwest::Method::GET, &url, &what).await?;
        let limit = usize::try_from(size).unwrap_or(usize::MAX);
        let body = self.read_timed(image, read_bounded(resp, limit, &what)).await?;
        if Digest::of(&body) != *digest {
            return Err(RegistryError::DigestMismatch { what, expected: digest.to_string() });
        }
        Ok(Held { bytes: body, _charge: charge })
    }

    /// Reads a body bounded to `limit`, charged to the bytes in flight for
    /// its announced length (else the limit) before it is read.
    async fn read_charged(
        &self,
        image: &ImageRef,
        resp: reqwest::Response,
        limit: usize,
        what: &str,
    ) -> Result<Held, RegistryError> {
        let announced = resp.content_length().unwrap_or(limit as u64).min(limit as u64);
        let charge = self.charge(image, announced).await?;
        let bytes = self.read_timed(image, read_bounded(resp, limit, what)).await?;
        Ok(Held { bytes, _charge: charge })
    }

    /// A body read, noting a registry that stopped sending it.
    async fn read_timed(
        &self,
        image: &ImageRef,
        read: impl std::future::Future<Output = Result<Bytes, RegistryError>>,
    ) -> Result<Bytes, RegistryError> {
        let r = read.await;
        match &r {
            Ok(body) => self.gate(&image.registry).delivered(body.len()),
            Err(RegistryError::Protocol { why, .. }) if why.contains("timed out") => {
                self.gate(&image.registry).timed_out()
            }
            Err(_) => {}
        }
        r
    }

    /// Waits until `bytes` fit in the half of [`Limits::bytes_in_flight`]
    /// of `image`'s registry: the half for registries known to answer (when
    /// this lookup began), within what the registry has sent in full (its
    /// credit), or the other. A registry quarantined while its charge
    /// waited waits again in the other half.
    async fn charge(&self, image: &ImageRef, bytes: u64) -> Result<Charge, RegistryError> {
        let gate = self.gate(&image.registry);
        let (proven_kib, unproven_kib) = byte_pools(&self.limits);
        let unproven_lookup = UNPROVEN_LOOKUP.try_with(|u| u.get()).unwrap_or(false);
        loop {
            let credit =
                (!unproven_lookup && gate.proven() && gate.take_credit(bytes)).then(|| Credit(gate.clone(), bytes));
            let (pool, total) = match credit {
                Some(_) => (&self.bytes_proven, proven_kib),
                None => (&self.bytes_unproven, unproven_kib),
            };
            let units = bytes.div_ceil(1024).clamp(1, total as u64) as u32;
            let permit = pool
                .clone()
                .acquire_many_owned(units)
                .await
                .map_err(|_| RegistryError::Protocol { what: "registry reads".into(), why: "shutting down".into() })?;
            if credit.is_some() && !gate.proven() {
                continue;
            }
            return Ok(Charge(permit, credit));
        }
    }

    /// Sends a request, answering a bearer or basic challenge once.
    async fn send(
        &self,
        image: &ImageRef,
        auth: &Auth,
        op: Operation,
        method: reqwest::Method,
        url: &str,
        what: &str,
    ) -> Result<reqwest::Response, RegistryError> {
        let key = (image.registry.clone(), image.repository.clone(), auth.scope());
        let cached = self
            .tokens
            .lock()
            .ok()
            .and_then(|t| t.get(&key).filter(|(_, exp)| *exp > Instant::now()).map(|(t, _)| t.clone()));
        let mut authorization = cached.map(|t| format!("Bearer {t}"));
        for attempt in 0..2 {
            let mut req =
                self.http_for(&image.registry).request(method.clone(), url).header(header::ACCEPT, MANIFEST_ACCEPT);
            if let Some(a) = &authorization {
                req = req.header(header::AUTHORIZATION, a);
            }
            let resp = self.exchange(image, op, req).await?;
            match resp.status() {
                s if s.is_success() => return Ok(resp),
                StatusCode::NOT_FOUND => return Err(RegistryError::NotFound { what: what.to_string() }),
                StatusCode::UNAUTHORIZED if attempt == 0 => {
                    let challenge = resp
                        .headers()
                        .get(header::WWW_AUTHENTICATE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    authorization = Some(self.answer_challenge(image, auth, &challenge).await?);
                }
                s @ (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => {
                    return Err(self.unauthorized(image, auth, s.as_u16()).await);
                }
                s => {
                    return Err(RegistryError::Status {
                        registry: image.registry.clone(),
                        what: what.to_string(),
                        status: s.as_u16(),
                    })
                }
            }
        }
        Err(self.unauthorized(image, auth, 401).await)
    }

    /// Access refused, naming the credentials that were tried.
    async fn unauthorized(&self, image: &ImageRef, auth: &Auth, status: u16) -> RegistryError {
        let with = match auth {
            Auth::Secret(l) => l.source.clone(),
            Auth::Own => match self.credentials.login(&image.registry).await {
                Ok(Some(l)) => l.source,
                Ok(None) => "no credentials (anonymous)".to_string(),
                Err(e) => return e.into(),
            },
        };
        RegistryError::Unauthorized {
            registry: image.registry.clone(),
            repository: image.repository.clone(),
            status,
            with,
        }
    }

    async fn answer_challenge(&self, image: &ImageRef, auth: &Auth, challenge: &str) -> Result<String, RegistryError> {
        let login = match auth {
            Auth::Own => self.credentials.login(&image.registry).await?,
            Auth::Secret(l) => Some(l.clone()),
        };
        let with = login.as_ref().map(|l| l.source.clone()).unwrap_or_else(|| "no credentials (anonymous)".into());
        let refused = |status: u16| RegistryError::Unauthorized {
            registry: image.registry.clone(),
            repository: image.repository.clone(),
            status,
            with: with.clone(),
        };
        let basic = login.as_ref().map(|l| (l.username.as_str(), l.password.as_str()));
        let (scheme, params) = parse_challenge(challenge);
        if scheme.eq_ignore_ascii_case("basic") {
            return match basic {
                Some((u, p)) => {
                    Ok(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))))
                }
                None => Err(refused(401)),
            };
        }
        let realm = params.get("realm").ok_or_else(|| RegistryError::Protocol {
            what: format!("registry {}", image.registry),
            why: format!("unsupported authentication challenge {challenge:?}"),
        })?;
        // The registry's token service is reached as the registry is (its CA).
        let mut req = self
            .http_for(&image.registry)
            .get(realm)
            .query(&[("scope", format!("repository:{}:pull", image.repository))]);
        if let Some(service) = params.get("service") {
            req = req.query(&[("service", service)]);
        }
        if let Some((u, p)) = basic {
            req = req.basic_auth(u, Some(p));
        }
        let resp = self.exchange(image, Operation::Token, req).await?;
        if !resp.status().is_success() {
            return Err(refused(resp.status().as_u16()));
        }
        let what = format!("token from {realm}");
        let body = read_bounded(resp, 64 << 10, &what).await?;
        let t: TokenResponse =
            serde_json::from_slice(&body).map_err(|e| RegistryError::Protocol { what, why: e.to_string() })?;
        let token = if t.token.is_empty() { t.access_token } else { t.token };
        let ttl = Duration::from_secs(t.expires_in.unwrap_or(60).clamp(10, 300)) - Duration::from_secs(5);
        if let Ok(mut m) = self.tokens.lock() {
            m.insert(
                (image.registry.clone(), image.repository.clone(), auth.scope()),
                (token.clone(), Instant::now() + ttl),
            );
        }
        Ok(format!("Bearer {token}"))
    }

    /// Sends one HTTP request: counted, and with metrics, counted by its
    /// answer's status (`error` or `timeout` without one) and timed to its
    /// response's headers.
    async fn exchange(
        &self,
        image: &ImageRef,
        op: Operation,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, RegistryError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let start = Instant::now();
        let sent = req.send().await;
        if let Some(m) = &self.metrics {
            let status;
            let code = match &sent {
                Ok(resp) => {
                    status = resp.status().as_u16().to_string();
                    status.as_str()
                }
                Err(e) if e.is_timeout() => "timeout",
                Err(_) => "error",
            };
            m.registry_request(&image.registry, op.as_str(), code, start.elapsed().as_secs_f64());
        }
        match &sent {
            Ok(_) => self.gate(&image.registry).answered(),
            Err(e) if e.is_timeout() => self.gate(&image.registry).timed_out(),
            Err(_) => {}
        }
        sent.map_err(|e| self.transport_error(image, e))
    }

    fn transport_error(&self, image: &ImageRef, e: reqwest::Error) -> RegistryError {
        if e.is_timeout() {
            RegistryError::Timeout { registry: image.registry.clone(), secs: self.limits.request_timeout.as_secs_f64() }
        } else {
            // The root cause says it best ("Connection refused", "failed to lookup address").
            let mut root: &dyn std::error::Error = &e;
            while let Some(s) = root.source() {
                root = s;
            }
            RegistryError::Unreachable { registry: image.registry.clone(), why: root.to_string() }
        }
    }
}

/// Reads a response body, failing as soon as it passes `limit` bytes.
/// Where [`Registry::said_manifest`] keeps what a HEAD said of `digest`.
fn said_key(image: &ImageRef, auth: &Auth, digest: &Digest) -> (String, String, String, Digest) {
    (image.registry.clone(), image.repository.clone(), auth.scope(), digest.clone())
}

async fn read_bounded(mut resp: reqwest::Response, limit: usize, what: &str) -> Result<Bytes, RegistryError> {
    let too_large = || RegistryError::TooLarge { what: what.to_string(), limit };
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    // Room for what it announces (within the limit), so that reading does
    // not grow it by doubling.
    let mut buf = BytesMut::with_capacity(resp.content_length().map_or(0, |n| n.min(limit as u64) as usize));
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                if buf.len() + c.len() > limit {
                    return Err(too_large());
                }
                buf.extend_from_slice(&c);
            }
            Ok(None) => return Ok(buf.freeze()),
            Err(e) if e.is_timeout() => {
                return Err(RegistryError::Protocol {
                    what: what.to_string(),
                    why: "the registry stopped sending it (timed out)".into(),
                })
            }
            Err(e) => {
                return Err(RegistryError::Protocol { what: what.to_string(), why: format!("reading body: {e}") })
            }
        }
    }
}

/// Media types of what a manifest reference can name.
const MANIFEST_TYPES: [&str; 4] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// Checks that a body served for a manifest reference is one: a JSON object
/// with `schemaVersion` 2 and a manifest media type (in the body, or, for
/// OCI manifests that omit it, in the Content-Type), and a config or layers
/// (an image) or manifests (an index).
fn check_manifest(body: &[u8], content_type: Option<&str>) -> Result<(), String> {
    use listing::Kind;
    let shape = listing::Shape::of(body)?;
    if shape.schema_version != Some(Kind::Unsigned(2)) {
        return Err("not a manifest (no schemaVersion 2)".into());
    }
    let declared = match &shape.media_type {
        Some(Kind::Str(t)) => Some(t.as_str()),
        _ => None,
    };
    let served = content_type.map(|c| c.split(';').next().unwrap_or("").trim());
    let media_type = declared.or(served).unwrap_or("");
    if !MANIFEST_TYPES.contains(&media_type) {
        return Err(format!("not a manifest (media type {media_type:?})"));
    }
    let shaped = shape.manifests == Some(Kind::Array)
        || (shape.config == Some(Kind::Object) && shape.layers == Some(Kind::Array));
    if !shaped {
        return Err("not a manifest (neither layers nor manifests)".into());
    }
    Ok(())
}

/// Why a registry client cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("registry CA bundle: {0}")]
    CaBundle(String),
    #[error("building the registry client: {0}")]
    Client(String),
    #[error("{host}: {why}")]
    ForHost { host: String, why: Box<SetupError> },
}

/// A registry client: bounded in time, following few redirects, trusting
/// `roots` besides the system roots (read at its first TLS handshake).
fn client(limits: &Limits, roots: &[Vec<u8>]) -> Result<reqwest::Client, SetupError> {
    let mut extra = Vec::new();
    for pem in roots {
        use rustls::pki_types::pem::PemObject;
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| SetupError::CaBundle(e.to_string()))?;
            // Refused now, not at the first handshake.
            rustls::RootCertStore::empty().add(cert.clone()).map_err(|e| SetupError::CaBundle(e.to_string()))?;
            extra.push(cert);
        }
    }
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| SetupError::Client(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(SystemRoots::new(extra, provider)))
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .connect_timeout(limits.connect_timeout)
        .timeout(limits.request_timeout)
        .redirect(reqwest::redirect::Policy::limited(5))
        .user_agent(concat!("portcullis/", env!("CARGO_PKG_VERSION")))
        .tls_backend_preconfigured(tls)
        .build()
        .map_err(|e| SetupError::Client(e.to_string()))
}

/// The verifier reqwest would build (rustls-platform-verifier: the system
/// roots and `extra`), built at the first TLS handshake instead of with the
/// client. Loading the system roots (a bundle and a directory of files,
/// each root parsed twice) costs about 4 ms of every `portcullis check`,
/// whose registry may well speak plain HTTP on loopback; and every server
/// certificate is still verified by that same verifier, unchanged.
#[derive(Debug)]
struct SystemRoots {
    extra: Vec<rustls::pki_types::CertificateDer<'static>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    verifier: std::sync::OnceLock<Result<rustls_platform_verifier::Verifier, rustls::Error>>,
}

impl SystemRoots {
    fn new(
        extra: Vec<rustls::pki_types::CertificateDer<'static>>,
        provider: Arc<rustls::crypto::CryptoProvider>,
    ) -> Self {
        SystemRoots { extra, provider, verifier: std::sync::OnceLock::new() }
    }
}

impl rustls::client::danger::ServerCertVerifier for SystemRoots {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let verifier = self.verifier.get_or_init(|| {
            rustls_platform_verifier::Verifier::new_with_extra_roots(self.extra.iter().cloned(), self.provider.clone())
        });
        match verifier {
            Ok(v) => v.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now),
            Err(e) => Err(e.clone()),
        }
    }

    // The handshake's signatures are checked as the platform verifier
    // checks them (its inner WebPKI verifier): by the provider's algorithms,
    // which need no roots.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// Parses `Bearer realm="…",service="…",scope="…"`.
fn parse_challenge(h: &str) -> (String, HashMap<String, String>) {
    let (scheme, rest) = h.trim().split_once(' ').unwrap_or((h.trim(), ""));
    let mut params = HashMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let Some((k, after)) = rest.split_once('=') else {
            break;
        };
        let k = k.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (v, next) = if let Some(q) = after.strip_prefix('"') {
            match q.find('"') {
                Some(end) => (&q[..end], &q[end + 1..]),
                None => (q, ""),
            }
        } else {
            after.split_once(',').unwrap_or((after, ""))
        };
        params.insert(k, v.to_string());
        rest = next.trim_start_matches([',', ' ']);
    }
    (scheme.to_string(), params)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A registry's credit for the kept half of the bytes in flight: what
    /// it holds there stays within what it sent in full since it last timed
    /// out, and is given back when a charge ends.
    #[test]
    fn a_registry_holds_of_the_kept_bytes_at_most_what_it_sent() {
        let gate = Arc::new(Gate {
            slots: Arc::new(tokio::sync::Semaphore::new(1)),
            waiting: AtomicUsize::new(0),
            health: Mutex::default(),
        });
        assert!(!gate.take_credit(1), "nothing sent, no credit");
        gate.delivered(1000);
        assert!(!gate.take_credit(1001), "more than it sent");
        assert!(gate.take_credit(600));
        let first = Credit(gate.clone(), 600);
        assert!(!gate.take_credit(401), "600 already held of 1000");
        assert!(gate.take_credit(400));
        gate.give_credit(400);
        drop(first);
        assert!(gate.take_credit(1000), "given back");
        gate.give_credit(1000);
        gate.timed_out();
        assert!(!gate.take_credit(1), "a timeout takes the credit away");
        gate.delivered(usize::MAX);
        gate.delivered(usize::MAX);
        assert!(gate.take_credit(u64::MAX), "counts saturate");
        assert!(!gate.take_credit(1));
    }

    #[test]
    fn registry_errors_reach_the_core_in_the_same_words() {
        let s = String::from;
        let rows = [
            RegistryError::Unreachable { registry: s("r.example"), why: s("connection refused") },
            RegistryError::Timeout { registry: s("r.example"), secs: 2.5 },
            RegistryError::NotFound { what: s("manifest r.example/app:v1") },
            RegistryError::Unauthorized {
                registry: s("r.example"),
                repository: s("app"),
                status: 401,
                with: s("anonymous"),
            },
            RegistryError::Credentials(CredentialsError(s("config.json: not a Docker config.json: eof"))),
            RegistryError::Status { registry: s("r.example"), what: s("manifest"), status: 500 },
            RegistryError::TooLarge { what: s("manifest"), limit: 4096 },
            RegistryError::DigestMismatch { what: s("manifest"), expected: s("sha256:00") },
            RegistryError::Protocol { what: s("manifest"), why: s("not JSON") },
            RegistryError::Saturated { registry: s("r.example"), waiting: 64 },
        ];
        for e in rows {
            let unauthorized = matches!(e, RegistryError::Unauthorized { .. });
            let core = LookupError::from(e.clone());
            assert_eq!(core.to_string(), e.to_string());
            assert_eq!(core.unauthorized(), unauthorized, "{e}");
        }
    }

    #[test]
    fn only_manifests_are_hashed_as_digests() {
        let image =
            r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}"#;
        let index = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        let untyped = r#"{"schemaVersion":2,"config":{},"layers":[]}"#;
        // (body, Content-Type, accepted)
        let rows: &[(&str, Option<&str>, bool)] = &[
            (image, None, true),
            (index, Some("application/vnd.oci.image.index.v1+json"), true),
            (untyped, Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8"), true),
            (untyped, Some("application/json"), false),
            ("{}", Some("application/json"), false),
            (r#"{"repositories":[]}"#, None, false),
            ("<html>login</html>", Some("text/html"), false),
            (
                r#"{"schemaVersion":1,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}"#,
                None,
                false,
            ),
            (r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#, None, false),
        ];
        for (body, ct, ok) in rows {
            assert_eq!(check_manifest(body.as_bytes(), *ct).is_ok(), *ok, "{body} {ct:?}");
        }
    }

    #[test]
    fn parses_bearer_challenges() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#,
        );
        assert_eq!(s, "Bearer");
        assert_eq!(p["realm"], "https://auth.docker.io/token");
        assert_eq!(p["service"], "registry.docker.io");
        assert_eq!(p["scope"], "repository:library/nginx:pull");
        let (s, p) = parse_challenge(r#"Basic realm="Registry Realm""#);
        assert_eq!((s.as_str(), p["realm"].as_str()), ("Basic", "Registry Realm"));
    }
}
