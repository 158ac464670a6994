//! `vsa`: a SLSA Verification Summary Attestation
//! (<https://slsa.dev/spec/v1.1/verification_summary>, predicate type
//! `https://slsa.dev/verification_summary/v1`) for each image, inside an
//! in-toto Statement v1 whose subject is the image's digest: what
//! Portcullis decided, on which attestations and under which policy, for a
//! pipeline to sign (`cosign attest --type
//! https://slsa.dev/verification_summary/v1 --predicate …`) so that the
//! decision travels with the image.
//!
//! The shape: one Statement per image, each on a line of its own (JSON
//! Lines, as `cosign` and `gh attestation download` write bundles); with
//! one image the file is that one Statement, a JSON document. An image
//! named twice (by tag and by digest) is one Statement.
//!
//! The fields, as the specification defines them:
//! - `verifier.id` is [`VERIFIER_ID`], `verifier.version` this crate's
//!   version as `{"portcullis": …}`;
//! - `timeVerified` is when the decision was made (`check --at` when
//!   replaying);
//! - `resourceUri` is the image as judged, `registry/repository@sha256:…`
//!   (what a consumer pulls);
//! - `policy` is the policy file ([`super::policy_uri`]) and the digest of
//!   its bytes (the one every decision reports);
//! - `inputAttestations` is every attestation a verdict rests on, by the
//!   digest of the envelope or bundle as stored, with where to fetch it:
//!   the blob in the image's repository (`crane blob
//!   registry/repository@sha256:…`), or the attestation file; then each
//!   VEX document that took findings out of the count without being
//!   attested (`--vex`, or named by the policy), with its file;
//! - `verificationResult` is `PASSED` only when every tier asked admits
//!   the image without a problem: denied, admitted by a warn-mode tier
//!   despite problems, or not judged for an error (even one the tier
//!   tolerates) is `FAILED`;
//! - `verifiedLevels` names each tier passed, `PORTCULLIS_TIER_<tier>`
//!   (custom values, which the specification allows as long as they do not
//!   start with `SLSA_`); `SLSA_BUILD_LEVEL_1` when a tier passed requires
//!   build provenance and the verdict cites the provenance that satisfied
//!   it (provenance exists, is signed by a signer the tier trusts, and
//!   names the source and builder it expects: what the SLSA build track
//!   asks a verifier to check at level 1). Higher build levels are never
//!   claimed: they depend on the builder being hosted and hardened, which
//!   the policy does not say. `FAILED` is added when the result is;
//! - `dependencyLevels` is left out: Portcullis makes no claim about an
//!   image's dependencies (the specification reads its absence so);
//! - `slsaVersion` is [`SLSA_VERSION`].

use serde_json::{json, Value};

use portcullis::policy::{EvidenceKind, Verdict};

use super::{judged, standing, Checked, Judged, Origin, Standing};

/// The Statement's `_type`.
pub(crate) const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The VSA's predicate type.
pub(crate) const PREDICATE_TYPE: &str = "https://slsa.dev/verification_summary/v1";
/// Who verified: `portcullis check`. A consumer pairs it with the key or
/// identity that signs the VSA (the pipeline's), as the specification asks.
pub(crate) const VERIFIER_ID: &str = "https://portcullis.dev/check";
/// The version of the SLSA specification followed (`verifier.version` is
/// the VSA's 1.1 field).
pub(crate) const SLSA_VERSION: &str = "1.1";
/// The prefix of a tier's name in `verifiedLevels`.
pub(crate) const TIER_LEVEL: &str = "PORTCULLIS_TIER_";

/// One image, as each tier judged it.
struct Image<'a> {
    /// As [`judged`] writes it: the key images are grouped by.
    judged: String,
    /// `registry/repository` (empty for an image named by digest alone).
    name: String,
    /// `sha256:…`, when known.
    digest: Option<String>,
    verdicts: Vec<(&'a Judged, &'a Verdict)>,
}

impl Image<'_> {
    /// The name and digest a verdict judged; for an image pinned by digest
    /// that could not be looked up (the verdict then has no digest), those
    /// of its reference.
    fn of(v: &Verdict) -> (String, Option<String>) {
        match (&v.digest, portcullis::image::ImageRef::parse(&v.image)) {
            (Some(d), _) => (v.name.clone(), Some(d.clone())),
            (None, Ok(r)) if r.digest.is_some() => (r.name(), r.digest.map(|d| d.to_string())),
            (None, _) => (v.name.clone(), None),
        }
    }

    /// `registry/repository@sha256:…`, or the digest alone.
    fn resource_uri(&self) -> String {
        match &self.digest {
            Some(d) if !self.name.is_empty() => format!("{}@{d}", self.name),
            Some(d) => d.clone(),
            None => self.judged.clone(),
        }
    }
}

/// The Statements, one a line; or which images have no digest to be the
/// subject of one (a tag that could not be resolved, a reference that did
/// not parse).
pub(super) fn statements(c: &Checked) -> Result<Vec<u8>, String> {
    let mut images: Vec<Image<'_>> = Vec::new();
    for t in &c.tiers {
        for v in &t.decision.verdicts {
            let key = judged(v);
            match images.iter_mut().find(|i| i.judged == key) {
                Some(i) => i.verdicts.push((t, v)),
                None => {
                    let (name, digest) = Image::of(v);
                    images.push(Image { judged: key, name, digest, verdicts: vec![(t, v)] })
                }
            }
        }
    }
    let unpinned: Vec<String> = images
        .iter()
        .filter(|i| i.digest.is_none())
        .map(|i| {
            let why = i.verdicts.iter().find_map(|(_, v)| v.error.clone().or_else(|| v.problems.first().cloned()));
            format!("{}: {}", i.judged, why.unwrap_or_else(|| "no digest was resolved".into()))
        })
        .collect();
    if !unpinned.is_empty() {
        return Err(format!(
            "a verification summary names its image by digest, and the digest of {} is not known ({}); \
             name the image by digest (NAME@sha256:…) or make its registry reachable",
            if unpinned.len() == 1 { "this image" } else { "these images" },
            unpinned.join("; ")
        ));
    }
    let policy_hex = c
        .policy_digest
        .strip_prefix("sha256:")
        .ok_or_else(|| format!("the policy digest {} is not a sha256 digest", c.policy_digest))?;
    let mut out = Vec::new();
    for image in &images {
        let statement = statement(c, image, policy_hex);
        out.extend(serde_json::to_vec(&statement).unwrap_or_default());
        out.push(b'\n');
    }
    Ok(out)
}

/// Whether a tier passed the image: admitted, with nothing wrong.
fn passed(v: &Verdict) -> bool {
    standing(v) == Standing::Admitted && v.error.is_none()
}

/// A ResourceDescriptor: the digest, and where to fetch it when known.
fn descriptor(uri: Option<String>, hex: &str) -> Value {
    match uri {
        Some(uri) => json!({"uri": uri, "digest": {"sha256": hex}}),
        None => json!({"digest": {"sha256": hex}}),
    }
}

fn statement(c: &Checked, image: &Image<'_>, policy_hex: &str) -> Value {
    let digest = image.digest.as_deref().unwrap_or_default();
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    // Each tier asked, in order: passed when every verdict of it on this image did.
    let mut levels: Vec<String> = Vec::new();
    let mut all_passed = true;
    let mut provenance = false;
    for t in &c.tiers {
        let mine: Vec<&Verdict> = image.verdicts.iter().filter(|(j, _)| j.tier == t.tier).map(|(_, v)| *v).collect();
        if !mine.is_empty() && mine.iter().all(|v| passed(v)) {
            levels.push(format!("{TIER_LEVEL}{}", t.tier));
            provenance |= t.requires.contains(&EvidenceKind::Provenance)
                && mine.iter().all(|v| v.attestations.iter().any(|a| a.kind == EvidenceKind::Provenance));
        } else {
            all_passed = false;
        }
    }
    if provenance {
        levels.push("SLSA_BUILD_LEVEL_1".into());
    }
    if !all_passed {
        levels.push("FAILED".into());
    }
    // Every attestation any verdict rests on, once.
    let mut inputs: Vec<Value> = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for (_, v) in &image.verdicts {
        for a in &v.attestations {
            if seen.contains(&a.digest.as_str()) {
                continue;
            }
            seen.push(&a.digest);
            let hex = a.digest.strip_prefix("sha256:").unwrap_or(&a.digest);
            let uri = match &c.origin {
                Origin::Registry if !image.name.is_empty() => Some(format!("{}@{}", image.name, a.digest)),
                Origin::Registry => None,
                Origin::Files(files) => files.get(&a.digest).map(|p| super::file_uri(p)),
            };
            inputs.push(descriptor(uri, hex));
        }
    }
    // VEX documents that took findings out of the count without being
    // attested on the image (given with `--vex`, or named by the policy).
    for (_, v) in &image.verdicts {
        for s in &v.vex_suppressed {
            if seen.contains(&s.document.as_str()) {
                continue;
            }
            seen.push(&s.document);
            let hex = s.document.strip_prefix("sha256:").unwrap_or(&s.document);
            inputs.push(descriptor(c.documents.get(&s.document).map(|p| super::file_uri(p)), hex));
        }
    }
    let name = if image.name.is_empty() { "_" } else { image.name.as_str() };
    json!({
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": hex}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "verifier": {
                "id": VERIFIER_ID,
                "version": {"portcullis": env!("CARGO_PKG_VERSION")},
            },
            "timeVerified": c.evaluated_at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            "resourceUri": image.resource_uri(),
            "policy": {"uri": c.policy_uri, "digest": {"sha256": policy_hex}},
            "inputAttestations": inputs,
            "verificationResult": if all_passed { "PASSED" } else { "FAILED" },
            "verifiedLevels": levels,
            "slsaVersion": SLSA_VERSION,
        },
    })
}
