//! Where evidence comes from, as the engine sees it: one trait, whatever
//! answers it. The registry is the source of `serve`, `report`,
//! re-evaluation and `check IMAGE`; attestation files are the source of
//! `check --attestation`; [`super::Memory`] is the source of the engine's
//! own tests. The engine above it caches, coalesces, tries logins in order
//! and keeps deadlines the same way for every source.

use futures::future::BoxFuture;

use crate::evidence::{Attestation, LookupError};
use crate::image::{Digest, ImageRef};
use crate::platform::Entry;
use crate::registry::{Attestations, Auth, PlatformManifest, Reader, Registry};

/// What the engine asks of a source of images and their attestations.
///
/// Errors are [`LookupError`]s in the source's own words; an
/// [`LookupError::Unauthorized`] makes the engine try the next login.
pub trait Source: Send + Sync + 'static {
    /// The digest `image` names now (its own, when it is pinned).
    fn resolve<'a>(&'a self, image: &'a ImageRef, auth: &'a Auth) -> BoxFuture<'a, Result<Digest, LookupError>>;

    /// The attestations of `digest`, each handed to `read` as it is found
    /// (which verifies it and keeps what it says); and, when `digest` is an
    /// image index, the entries it lists; with `with_base`, the base image
    /// its manifest names.
    fn attestations<'a>(
        &'a self,
        image: &'a ImageRef,
        auth: &'a Auth,
        digest: &'a Digest,
        with_base: bool,
        read: Reader<Attestation>,
    ) -> BoxFuture<'a, Result<Attestations<Attestation>, LookupError>>;

    /// What each entry an index lists is, as the choice of what a node runs
    /// sees it. Only asked for an index ([`Attestations::platforms`]).
    fn index_entries<'a>(
        &'a self,
        image: &'a ImageRef,
        auth: &'a Auth,
        index: &'a Digest,
        listed: &'a [PlatformManifest],
    ) -> BoxFuture<'a, Result<Vec<Entry>, LookupError>>;

    /// When the image `digest` names was built (its config's `created`),
    /// when the source can tell: asked for a base image that has moved on.
    fn created<'a>(
        &'a self,
        _image: &'a ImageRef,
        _auth: &'a Auth,
        _digest: &'a Digest,
    ) -> BoxFuture<'a, Result<Option<chrono::DateTime<chrono::Utc>>, LookupError>> {
        Box::pin(async { Ok(None) })
    }

    /// Requests sent so far (HTTP requests, for a registry).
    fn requests(&self) -> u64 {
        0
    }

    /// How many lookups of one registry a caller judging many images at
    /// once (a re-evaluation pass, `report`) should start together: well
    /// within what one registry lets run and wait, so that none is refused
    /// as saturating it, and admission keeps room beside them.
    fn lookups_at_once(&self) -> usize {
        usize::MAX
    }
}

impl Source for Registry {
    fn resolve<'a>(&'a self, image: &'a ImageRef, auth: &'a Auth) -> BoxFuture<'a, Result<Digest, LookupError>> {
        Box::pin(async move { Ok(Registry::resolve(self, image, auth).await?) })
    }

    fn attestations<'a>(
        &'a self,
        image: &'a ImageRef,
        auth: &'a Auth,
        digest: &'a Digest,
        with_base: bool,
        read: Reader<Attestation>,
    ) -> BoxFuture<'a, Result<Attestations<Attestation>, LookupError>> {
        Box::pin(async move { Ok(Registry::attestations(self, image, auth, digest, with_base, read).await?) })
    }

    fn index_entries<'a>(
        &'a self,
        image: &'a ImageRef,
        auth: &'a Auth,
        index: &'a Digest,
        listed: &'a [PlatformManifest],
    ) -> BoxFuture<'a, Result<Vec<Entry>, LookupError>> {
        Box::pin(async move { Ok(Registry::index_entries(self, image, auth, index, listed).await?) })
    }

    fn created<'a>(
        &'a self,
        image: &'a ImageRef,
        auth: &'a Auth,
        digest: &'a Digest,
    ) -> BoxFuture<'a, Result<Option<chrono::DateTime<chrono::Utc>>, LookupError>> {
        Box::pin(async move { Ok(Registry::created(self, image, auth, digest).await?) })
    }

    fn requests(&self) -> u64 {
        Registry::requests(self)
    }

    fn lookups_at_once(&self) -> usize {
        let l = self.limits();
        ((l.concurrent_lookups_per_registry + l.queued_lookups_per_registry) / 2).max(1)
    }
}
