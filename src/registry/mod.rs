//! OCI registry access: tag -> digest resolution and cosign attestation discovery.
//!
//! Every read is bounded in size (manifests, blobs, the number of layers) and
//! in time (a connect and a per-request timeout, and a budget for a whole
//! lookup, waiting included). Lookups in flight are limited per registry and
//! across registries, and a registry's queue of waiting lookups is bounded, so
//! a registry that hangs cannot starve reviews of images elsewhere. Digests of
//! what is fetched by digest are verified. Registries on loopback, and those
//! configured as insecure, are reached over plain HTTP; all others over HTTPS.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use oci_client::manifest::{OciImageIndex, OciImageManifest};
use reqwest::{header, StatusCode};
use serde::Deserialize;

use crate::attest::{LegacyLayer, Signed};
use crate::image::{Digest, ImageRef};
use crate::platform::{self, Platform};

mod credentials;
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

/// Signed material found for an image, under the digest of the registry blob
/// that held it (a legacy `.att` layer, or a sigstore bundle), which
/// decisions cite.
pub type Found = (Digest, Signed);

/// Attestations found for an image: the legacy `.att` layers in the
/// registry's order, then the sigstore bundles among its OCI referrers.
#[derive(Clone, Debug, Default)]
pub struct Attestations {
    /// Where they were looked for, for messages.
    pub location: String,
    pub found: Vec<Found>,
    /// Older attestations not read, past [`Limits::attestation_layers`] (in
    /// each scheme, the newest are read).
    pub skipped: usize,
    /// When the digest is an image index (a multi-arch image): its entries,
    /// as it lists them (their content not read yet: see
    /// [`Registry::index_entries`]). None for a single manifest.
    pub platforms: Option<Vec<PlatformManifest>>,
}

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

/// One registry's share of the lookup slots.
struct Gate {
    slots: Arc<tokio::sync::Semaphore>,
    waiting: AtomicUsize,
}

/// Counts a lookup as waiting until it gets its slot or gives up.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A lookup's slots, held until it ends: its registry's and the global one
/// (and the gate, so that it is not forgotten while in use).
#[allow(dead_code)]
struct Turn<'a>(Arc<Gate>, tokio::sync::OwnedSemaphorePermit, tokio::sync::SemaphorePermit<'a>);

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
    gates: Mutex<HashMap<String, Arc<Gate>>>,
    /// HTTP requests sent to registries (token requests included).
    requests: std::sync::atomic::AtomicU64,
    /// Where each request is counted and timed, when set.
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

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
        Ok(Registry {
            http,
            per_host: HashMap::new(),
            insecure: insecure.into_iter().collect(),
            credentials,
            limits,
            tokens: Mutex::default(),
            lookups,
            gates: Mutex::default(),
            requests: Default::default(),
            metrics: None,
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
                    return Ok(d);
                }
            }
            // No usable header: fetch the manifest and hash it, once it is
            // known to be a manifest (never an error page, never anything else).
            let resp = self.send(image, auth, Operation::Manifest, reqwest::Method::GET, &url, &what).await?;
            let content_type = resp.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(String::from);
            let body = read_bounded(resp, self.limits.manifest_bytes, &what).await?;
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
        match tokio::time::timeout(self.limits.lookup_timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(RegistryError::Timeout {
                registry: image.registry.clone(),
                secs: self.limits.lookup_timeout.as_secs_f64(),
            }),
        }
    }

    /// Finds the cosign attestations of `digest`, in both schemes cosign
    /// writes: the legacy tag `sha256-<hex>.att` in the image's repository,
    /// and sigstore bundles attached as OCI 1.1 referrers (cosign v3's
    /// default, `--new-bundle-format` before), through the referrers API or,
    /// where the registry has none, the `sha256-<hex>` referrers tag. Finding
    /// none is not an error.
    pub async fn attestations(
        &self,
        image: &ImageRef,
        auth: &Auth,
        digest: &Digest,
    ) -> Result<Attestations, RegistryError> {
        self.bounded(image, async {
            let _turn = self.turn(image).await?;
            let location =
                format!("{}:sha256-{}.att and the OCI referrers of {}", image.name(), digest.hex(), digest.short());
            let (legacy, bundles, platforms) = tokio::join!(
                self.legacy_attestations(image, auth, digest),
                self.bundles(image, auth, digest),
                self.platforms(image, auth, digest)
            );
            let (mut found, skipped_legacy) = legacy?;
            let (bundles, skipped_bundles) = bundles?;
            found.extend(bundles);
            Ok(Attestations { location, found, skipped: skipped_legacy + skipped_bundles, platforms: platforms? })
        })
        .await
    }

    /// The image's own manifest, read to learn whether it is an index: then
    /// its entries, read as containerd reads them (Go's JSON decoding, keys in
    /// any case; a field named twice is refused), at most
    /// [`MAX_INDEX_ENTRIES`]. Nothing is left out here: what each entry holds
    /// is read by [`Registry::index_entries`], when the index is judged by
    /// its platforms.
    async fn platforms(
        &self,
        image: &ImageRef,
        auth: &Auth,
        digest: &Digest,
    ) -> Result<Option<Vec<PlatformManifest>>, RegistryError> {
        let what = image.pinned(digest);
        let Some(body) = self.manifest_by_digest(image, auth, digest, &what).await? else {
            return Err(RegistryError::NotFound { what });
        };
        let protocol = |why: String| RegistryError::Protocol { what: what.clone(), why };
        // An index is what has a `manifests` list (its mediaType is optional).
        let Some(listed) = platform::read_index(&body, MAX_INDEX_ENTRIES).map_err(protocol)? else { return Ok(None) };
        listed
            .into_iter()
            .map(|l| {
                let digest = Digest::parse(&l.digest).map_err(|e| protocol(e.to_string()))?;
                Ok(PlatformManifest { platform: l.platform, written: l.written, digest })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
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
        if size < 0 || size as u64 > self.limits.manifest_bytes as u64 {
            return None;
        }
        let body = self.blob(image, auth, &d, self.limits.manifest_bytes).await.ok()?;
        platform::read_config_platform(&body).ok()
    }

    /// The DSSE layers of the legacy `.att` manifest: the newest (cosign
    /// appends) up to the limit, and how many older ones were left. A layer
    /// signed keyless carries its certificate and Rekor bundle in its
    /// annotations.
    async fn legacy_attestations(
        &self,
        image: &ImageRef,
        auth: &Auth,
        digest: &Digest,
    ) -> Result<(Vec<Found>, usize), RegistryError> {
        let tag = format!("sha256-{}.att", digest.hex());
        let location = format!("{}:{tag}", image.name());
        let Some(body) = self.manifest(image, auth, &tag, &location).await? else { return Ok((vec![], 0)) };
        let manifest: OciImageManifest = serde_json::from_slice(&body).map_err(|e| RegistryError::Protocol {
            what: location.clone(),
            why: format!("not an image manifest: {e}"),
        })?;
        let layers: Vec<_> = manifest.layers.iter().filter(|l| l.media_type == DSSE_MEDIA_TYPE).collect();
        let skipped = layers.len().saturating_sub(self.limits.attestation_layers);
        let fetches = layers[skipped..].iter().map(|l| async {
            let d = self.descriptor(&l.digest, l.size, &location)?;
            let bytes = self.blob(image, auth, &d, self.limits.attestation_bytes).await?;
            let layer = LegacyLayer::new(bytes, l.annotations.as_ref());
            let signed = if layer.certificate.is_some() {
                Signed::Legacy(Box::new(layer))
            } else {
                Signed::Envelope(layer.envelope)
            };
            Ok::<_, RegistryError>((d, signed))
        });
        Ok((futures::future::try_join_all(fetches).await?, skipped))
    }

    /// The sigstore bundles holding DSSE envelopes among the image's referrers.
    async fn bundles(
        &self,
        image: &ImageRef,
        auth: &Auth,
        digest: &Digest,
    ) -> Result<(Vec<Found>, usize), RegistryError> {
        let what = format!("referrers of {}", image.pinned(digest));
        let url = format!("{}/referrers/{digest}", self.base(image));
        let index = match self.send(image, auth, Operation::Referrers, reqwest::Method::GET, &url, &what).await {
            Ok(resp) => read_bounded(resp, self.limits.manifest_bytes, &what).await?,
            // No referrers API here: the referrers tag schema.
            Err(RegistryError::NotFound { .. }) | Err(RegistryError::Status { status: 400 | 405 | 501, .. }) => {
                let tag = format!("sha256-{}", digest.hex());
                match self.manifest(image, auth, &tag, &format!("{}:{tag}", image.name())).await? {
                    Some(b) => b,
                    None => return Ok((vec![], 0)),
                }
            }
            Err(e) => return Err(e),
        };
        let index: OciImageIndex = serde_json::from_slice(&index)
            .map_err(|e| RegistryError::Protocol { what: what.clone(), why: format!("not an image index: {e}") })?;
        // Newest last; more than the limit keeps the newest.
        let skip = index.manifests.len().saturating_sub(self.limits.attestation_layers);
        let fetches = index.manifests.iter().skip(skip).map(|entry| self.bundle(image, auth, &entry.digest, &what));
        let found = futures::future::try_join_all(fetches).await?;
        Ok((found.into_iter().flatten().collect(), skip))
    }

    /// One referrer: a sigstore bundle holding a DSSE envelope, or None for
    /// anything else (an SBOM, a plain signature). The index's artifactType
    /// is not trusted; the referrer manifest itself is read.
    async fn bundle(
        &self,
        image: &ImageRef,
        auth: &Auth,
        manifest_digest: &str,
        what: &str,
    ) -> Result<Option<Found>, RegistryError> {
        let d = Digest::parse(manifest_digest)
            .map_err(|e| RegistryError::Protocol { what: what.to_string(), why: e.to_string() })?;
        let referrer = format!("referrer {}", d.short());
        let Some(body) = self.manifest_by_digest(image, auth, &d, &referrer).await? else { return Ok(None) };
        let Ok(m) = serde_json::from_slice::<OciImageManifest>(&body) else { return Ok(None) };
        let is_bundle = |t: &str| t.starts_with(BUNDLE_MEDIA_TYPE_PREFIX);
        let Some(layer) = m.layers.iter().find(|l| is_bundle(&l.media_type)) else { return Ok(None) };
        let source = self.descriptor(&layer.digest, layer.size, what)?;
        let blob = self.blob(image, auth, &source, self.limits.attestation_bytes).await?;
        // A bundle holds a DSSE envelope (attestations) or a message signature (cosign sign).
        let bundle: serde_json::Value = serde_json::from_slice(&blob).map_err(|e| RegistryError::Protocol {
            what: format!("sigstore bundle {}", source.short()),
            why: format!("not JSON: {e}"),
        })?;
        if bundle.get("dsseEnvelope").is_none() {
            return Ok(None);
        }
        Ok(Some((source, Signed::Bundle(blob))))
    }

    /// Waits for a lookup slot: first one of the registry's own
    /// ([`Limits::concurrent_lookups_per_registry`]), then a global one
    /// ([`Limits::concurrent_lookups`]), so a registry that hangs holds at most
    /// its own share of the global slots. Past
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
        let global = self.lookups.acquire().await.map_err(closed)?;
        drop(counted);
        Ok(Turn(gate.clone(), own, global))
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
            gates.retain(|_, g| Arc::strong_count(g) > 1);
        }
        let g = Arc::new(Gate {
            slots: Arc::new(tokio::sync::Semaphore::new(self.limits.concurrent_lookups_per_registry.max(1))),
            waiting: AtomicUsize::new(0),
        });
        gates.insert(registry.to_string(), g.clone());
        g
    }

    /// A manifest by tag or digest, bounded; None when there is none.
    async fn manifest(
        &self,
        image: &ImageRef,
        auth: &Auth,
        reference: &str,
        what: &str,
    ) -> Result<Option<Bytes>, RegistryError> {
        let url = format!("{}/manifests/{reference}", self.base(image));
        match self.send(image, auth, Operation::Manifest, reqwest::Method::GET, &url, what).await {
            Ok(resp) => Ok(Some(read_bounded(resp, self.limits.manifest_bytes, what).await?)),
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
    ) -> Result<Option<Bytes>, RegistryError> {
        let Some(body) = self.manifest(image, auth, digest.as_str(), what).await? else { return Ok(None) };
        if Digest::of(&body) != *digest {
            return Err(RegistryError::DigestMismatch { what: what.to_string(), expected: digest.to_string() });
        }
        Ok(Some(body))
    }

    /// A layer descriptor's digest, its declared size within the attestation limit.
    fn descriptor(&self, digest: &str, size: i64, what: &str) -> Result<Digest, RegistryError> {
        let d = Digest::parse(digest)
            .map_err(|e| RegistryError::Protocol { what: what.to_string(), why: e.to_string() })?;
        if size < 0 || size as u64 > self.limits.attestation_bytes as u64 {
            return Err(RegistryError::TooLarge {
                what: format!("attestation {}", d.short()),
                limit: self.limits.attestation_bytes,
            });
        }
        Ok(d)
    }

    /// Fetches a blob by digest, bounded to `limit` bytes, and checks its digest.
    pub async fn blob(
        &self,
        image: &ImageRef,
        auth: &Auth,
        digest: &Digest,
        limit: usize,
    ) -> Result<Bytes, RegistryError> {
        let what = format!("blob {} in {}", digest.short(), image.name());
        let url = format!("{}/blobs/{digest}", self.base(image));
        let resp = self.send(image, auth, Operation::Blob, reqwest::Method::GET, &url, &what).await?;
        let body = read_bounded(resp, limit, &what).await?;
        if Digest::of(&body) != *digest {
            return Err(RegistryError::DigestMismatch { what, expected: digest.to_string() });
        }
        Ok(body)
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
async fn read_bounded(mut resp: reqwest::Response, limit: usize, what: &str) -> Result<Bytes, RegistryError> {
    let too_large = || RegistryError::TooLarge { what: what.to_string(), limit };
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut buf = BytesMut::new();
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
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| format!("not a manifest (not JSON: {e})"))?;
    if v.get("schemaVersion").and_then(serde_json::Value::as_u64) != Some(2) {
        return Err("not a manifest (no schemaVersion 2)".into());
    }
    let declared = v.get("mediaType").and_then(serde_json::Value::as_str);
    let served = content_type.map(|c| c.split(';').next().unwrap_or("").trim());
    let media_type = declared.or(served).unwrap_or("");
    if !MANIFEST_TYPES.contains(&media_type) {
        return Err(format!("not a manifest (media type {media_type:?})"));
    }
    let shaped = v.get("manifests").is_some_and(serde_json::Value::is_array)
        || (v.get("config").is_some_and(serde_json::Value::is_object)
            && v.get("layers").is_some_and(serde_json::Value::is_array));
    if !shaped {
        return Err("not a manifest (neither layers nor manifests)".into());
    }
    Ok(())
}

/// A registry client: bounded in time, following few redirects, trusting
/// `roots` besides the system roots.
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

fn client(limits: &Limits, roots: &[Vec<u8>]) -> Result<reqwest::Client, SetupError> {
    let mut b = reqwest::Client::builder()
        .connect_timeout(limits.connect_timeout)
        .timeout(limits.request_timeout)
        .redirect(reqwest::redirect::Policy::limited(5))
        .user_agent(concat!("portcullis/", env!("CARGO_PKG_VERSION")));
    for pem in roots {
        for cert in reqwest::Certificate::from_pem_bundle(pem).map_err(|e| SetupError::CaBundle(e.to_string()))? {
            b = b.add_root_certificate(cert);
        }
    }
    b.build().map_err(|e| SetupError::Client(e.to_string()))
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
