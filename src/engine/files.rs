//! Attestation files as a source (`check --attestation`): the envelopes,
//! sigstore bundles and JSON Lines of bundles read from disk, offered for
//! every digest asked about. Each is verified against the digest judged, as
//! a registry's are, so one set of files can hold the evidence of several
//! images. No tag means anything here: images are named by digest.

use std::path::{Path, PathBuf};

use futures::future::BoxFuture;

use super::Source;
use crate::attest::Signed;
use crate::evidence::{Attestation, LookupError, Unread};
use crate::image::{Digest, ImageRef};
use crate::platform::Entry;
use crate::registry::{Attestations, Auth, PlatformManifest, Reader};

/// Most attestations read, over all files.
pub const MAX_FILE_ATTESTATIONS: usize = 1024;
/// The largest file read, in bytes.
pub const MAX_ATTESTATION_FILE: u64 = 64 << 20;

/// Why attestation files could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("reading {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: larger than {MAX_ATTESTATION_FILE} bytes")]
    TooLarge { path: String },
    #[error("more than {MAX_FILE_ATTESTATIONS} attestations in the files given")]
    TooMany,
    #[error("{path}: {why}")]
    Unreadable { path: String, why: String },
}

/// The attestations of some files, each under the digest of its bytes.
pub struct Files {
    found: Vec<(Digest, Signed)>,
    /// The file each of `found` was read from, in the same order.
    paths: Vec<PathBuf>,
    location: String,
}

impl Files {
    /// Reads every file, within [`MAX_ATTESTATION_FILE`] each and
    /// [`MAX_FILE_ATTESTATIONS`] in all.
    pub fn read(paths: &[PathBuf]) -> Result<Files, FilesError> {
        let shown = |p: &Path| p.display().to_string();
        let mut found = Vec::new();
        let mut read_from = Vec::new();
        for path in paths {
            if found.len() >= MAX_FILE_ATTESTATIONS {
                return Err(FilesError::TooMany);
            }
            let io = |source| FilesError::Read { path: shown(path), source };
            if std::fs::metadata(path).map_err(io)?.len() > MAX_ATTESTATION_FILE {
                return Err(FilesError::TooLarge { path: shown(path) });
            }
            let bytes = std::fs::read(path).map_err(io)?;
            let items = Signed::from_file(&bytes, MAX_FILE_ATTESTATIONS - found.len())
                .map_err(|e| FilesError::Unreadable { path: shown(path), why: e.to_string() })?;
            found.extend(items.into_iter().map(|s| (Digest::of(s.bytes()), s)));
            read_from.resize(found.len(), path.clone());
        }
        let location =
            format!("the attestation files {}", paths.iter().map(|p| shown(p)).collect::<Vec<_>>().join(", "));
        Ok(Files { found, paths: read_from, location })
    }

    /// Each attestation's digest (as a verdict cites it) and the file it was
    /// read from: where a summary of the decision says it can be fetched.
    pub fn origins(&self) -> impl Iterator<Item = (&Digest, &Path)> {
        self.found.iter().zip(&self.paths).map(|((d, _), p)| (d, p.as_path()))
    }
}

impl Source for Files {
    fn resolve<'a>(&'a self, image: &'a ImageRef, _: &'a Auth) -> BoxFuture<'a, Result<Digest, LookupError>> {
        Box::pin(async move {
            image.digest.clone().ok_or_else(|| {
                LookupError::Source(format!(
                    "{image}: with attestation files, name images by digest, since no registry is asked what a tag \
                     means"
                ))
            })
        })
    }

    fn attestations<'a>(
        &'a self,
        _: &'a ImageRef,
        _: &'a Auth,
        _: &'a Digest,
        _: bool,
        read: Reader<Attestation>,
    ) -> BoxFuture<'a, Result<Attestations<Attestation>, LookupError>> {
        Box::pin(async move {
            Ok(Attestations {
                location: self.location.clone(),
                found: self.found.iter().enumerate().map(|(i, found)| read(i, found.clone())).collect(),
                unread: Unread::default(),
                platforms: None,
                base: None,
            })
        })
    }

    fn index_entries<'a>(
        &'a self,
        _: &'a ImageRef,
        _: &'a Auth,
        _: &'a Digest,
        _: &'a [PlatformManifest],
    ) -> BoxFuture<'a, Result<Vec<Entry>, LookupError>> {
        // Files never list an index.
        Box::pin(async { Ok(vec![]) })
    }
}
