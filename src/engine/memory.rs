//! A source held in memory, for tests of what the engine does above any
//! source (coalescing, caching and its lifetimes, logins, deadlines)
//! without a registry. It counts what it is asked, can refuse logins, and
//! can hold every answer until released (or for ever).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use futures::future::BoxFuture;
use tokio::sync::Semaphore;

use super::Source;
use crate::attest::Signed;
use crate::evidence::{Attestation, LookupError, Unread};
use crate::image::{Digest, ImageRef};
use crate::platform::Entry;
use crate::registry::{Attestations, Auth, PlatformManifest, Reader};

/// Tags, attestations and errors, as a test sets them.
#[derive(Default)]
pub struct Memory {
    tags: Mutex<HashMap<String, Digest>>,
    attestations: Mutex<HashMap<Digest, Vec<Signed>>>,
    errors: Mutex<HashMap<String, LookupError>>,
    /// The base each digest's manifest names, and each digest's config time.
    bases: Mutex<HashMap<Digest, crate::evidence::base::Annotated>>,
    created: Mutex<HashMap<Digest, chrono::DateTime<chrono::Utc>>>,
    /// Logins refused, by their cache scope (`""` for Portcullis' own).
    refused: Mutex<Vec<String>>,
    resolves: AtomicU64,
    lookups: AtomicU64,
    /// When set, each answer waits for a permit (see [`Memory::hold`]).
    held: Mutex<Option<std::sync::Arc<Semaphore>>>,
}

impl Memory {
    pub fn new() -> Memory {
        Memory::default()
    }

    /// `reference` (as written, `r.example/app:v1`) names `digest`.
    pub fn tag(&self, reference: &str, digest: &Digest) {
        self.tags.lock().unwrap().insert(reference.to_string(), digest.clone());
    }

    /// `signed` is attached to `digest`.
    pub fn attest(&self, digest: &Digest, signed: Signed) {
        self.attestations.lock().unwrap().entry(digest.clone()).or_default().push(signed);
    }

    /// `digest`'s manifest names `base` (`name`, built on `on`).
    pub fn base(&self, digest: &Digest, name: &str, on: &Digest) {
        let a = crate::evidence::base::Annotated { name: name.to_string(), digest: Ok(on.clone()) };
        self.bases.lock().unwrap().insert(digest.clone(), a);
    }

    /// `digest`'s config says it was created at `at`.
    pub fn created_at(&self, digest: &Digest, at: chrono::DateTime<chrono::Utc>) {
        self.created.lock().unwrap().insert(digest.clone(), at);
    }

    /// Every lookup of `reference` (as written), or of a digest's
    /// attestations when it is `sha256:…`, fails so.
    pub fn fail(&self, what: &str, error: LookupError) {
        self.errors.lock().unwrap().insert(what.to_string(), error);
    }

    /// Lookups with `auth` are refused (401), as a registry refuses a login.
    pub fn refuse(&self, auth: &Auth) {
        self.refused.lock().unwrap().push(auth.scope());
    }

    /// From now on every answer waits until [`Memory::release`] lets it go
    /// (never, if it is not called).
    pub fn hold(&self) {
        *self.held.lock().unwrap() = Some(std::sync::Arc::new(Semaphore::new(0)));
    }

    /// Lets `n` held answers go.
    pub fn release(&self, n: usize) {
        if let Some(s) = self.held.lock().unwrap().as_ref() {
            s.add_permits(n);
        }
    }

    /// Tag resolutions asked so far.
    pub fn resolves(&self) -> u64 {
        self.resolves.load(Ordering::SeqCst)
    }

    /// Attestation lookups asked so far.
    pub fn lookups(&self) -> u64 {
        self.lookups.load(Ordering::SeqCst)
    }

    async fn wait(&self) {
        let held = self.held.lock().unwrap().clone();
        if let Some(s) = held {
            // Closed never: a held answer waits for its permit.
            if let Ok(p) = s.acquire().await {
                p.forget();
            }
        }
    }

    fn login(&self, image: &ImageRef, auth: &Auth) -> Result<(), LookupError> {
        if self.refused.lock().unwrap().contains(&auth.scope()) {
            let with = match auth {
                Auth::Own => "no credentials".to_string(),
                Auth::Secret(_) => auth.scope(),
            };
            return Err(LookupError::Unauthorized {
                registry: image.registry.clone(),
                repository: image.repository.clone(),
                status: 401,
                with,
            });
        }
        Ok(())
    }
}

impl Source for Memory {
    fn resolve<'a>(&'a self, image: &'a ImageRef, auth: &'a Auth) -> BoxFuture<'a, Result<Digest, LookupError>> {
        Box::pin(async move {
            self.resolves.fetch_add(1, Ordering::SeqCst);
            self.wait().await;
            self.login(image, auth)?;
            let written = image.to_string();
            if let Some(e) = self.errors.lock().unwrap().get(&written) {
                return Err(e.clone());
            }
            self.tags
                .lock()
                .unwrap()
                .get(&written)
                .cloned()
                .ok_or_else(|| LookupError::Source(format!("{written}: not found")))
        })
    }

    fn attestations<'a>(
        &'a self,
        image: &'a ImageRef,
        auth: &'a Auth,
        digest: &'a Digest,
        _with_base: bool,
        read: Reader<Attestation>,
    ) -> BoxFuture<'a, Result<Attestations<Attestation>, LookupError>> {
        Box::pin(async move {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            self.wait().await;
            self.login(image, auth)?;
            if let Some(e) = self.errors.lock().unwrap().get(&digest.to_string()) {
                return Err(e.clone());
            }
            let signed = self.attestations.lock().unwrap().get(digest).cloned().unwrap_or_default();
            Ok(Attestations {
                location: format!("memory, for {digest}"),
                found: signed.into_iter().enumerate().map(|(i, s)| read(i, (Digest::of(s.bytes()), s))).collect(),
                unread: Unread::default(),
                platforms: None,
                base: self.bases.lock().unwrap().get(digest).cloned(),
            })
        })
    }

    fn created<'a>(
        &'a self,
        image: &'a ImageRef,
        auth: &'a Auth,
        digest: &'a Digest,
    ) -> BoxFuture<'a, Result<Option<chrono::DateTime<chrono::Utc>>, LookupError>> {
        Box::pin(async move {
            self.login(image, auth)?;
            Ok(self.created.lock().unwrap().get(digest).copied())
        })
    }

    fn index_entries<'a>(
        &'a self,
        _: &'a ImageRef,
        _: &'a Auth,
        _: &'a Digest,
        _: &'a [PlatformManifest],
    ) -> BoxFuture<'a, Result<Vec<Entry>, LookupError>> {
        // Memory holds no index.
        Box::pin(async { Ok(vec![]) })
    }

    fn requests(&self) -> u64 {
        self.resolves() + self.lookups()
    }
}
