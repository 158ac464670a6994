//! DSSE envelopes, in-toto Statements and signature verification.
//!
//! A cosign attestation is a DSSE envelope
//! `{payloadType, payload, signatures: [{keyid, sig}]}` whose signature covers
//! `PAE(payloadType, payload)`, and whose payload is an in-toto Statement.
//! It arrives bare (signed with a key), inside a sigstore bundle (with a
//! public-key hint, or with a Fulcio certificate: keyless), or as cosign's
//! legacy keyless layer (certificate and Rekor bundle in annotations).
//! An attestation is accepted only when it verifies against a trusted key or
//! a trusted root and identity, and the Statement's subject names the image's
//! digest.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sigstore::crypto::{CosignVerificationKey, Signature};

use crate::image::Digest;

pub mod inspect;
pub mod keyless;
mod legacy;

pub use keyless::{IdentityRule, KeylessSigner, Match, Root, SignerIdentity};
pub use legacy::{LegacyLayer, BUNDLE_ANNOTATION, CERTIFICATE_ANNOTATION, CHAIN_ANNOTATION, RFC3161_ANNOTATION};

/// Media type prefix of a sigstore bundle (`…bundle+json;version=0.1`,
/// `…bundle.v0.3+json`).
pub const BUNDLE_MEDIA_TYPE_PREFIX: &str = "application/vnd.dev.sigstore.bundle";

/// Signed material as found: what the registry or a file holds.
#[derive(Clone, Debug)]
pub enum Signed {
    /// A bare DSSE envelope (cosign's legacy `.att` layer signed with a key).
    Envelope(Bytes),
    /// A sigstore bundle (JSON, v0.1 to v0.3), signed with a key or keyless.
    Bundle(Bytes),
    /// cosign's legacy keyless `.att` layer: the envelope, with the
    /// certificate, chain and Rekor bundle in the layer's annotations.
    Legacy(Box<LegacyLayer>),
}

impl Signed {
    /// Reads one attestation file: a DSSE envelope or a sigstore bundle, told
    /// apart by their fields. (JSON Lines of bundles are split by the caller.)
    pub fn from_json(bytes: Bytes) -> Result<Signed, String> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Peek {
            #[serde(default)]
            media_type: Option<String>,
            #[serde(default)]
            payload_type: Option<String>,
        }
        let peek: Peek = serde_json::from_slice(&bytes).map_err(|e| format!("not JSON: {e}"))?;
        match (peek.media_type, peek.payload_type) {
            (Some(m), _) if m.starts_with(BUNDLE_MEDIA_TYPE_PREFIX) => Ok(Signed::Bundle(bytes)),
            (Some(m), _) => Err(format!("mediaType {m:?} is not a sigstore bundle")),
            (None, Some(_)) => Ok(Signed::Envelope(bytes)),
            (None, None) => {
                Err("neither a DSSE envelope (payloadType, payload, signatures) nor a sigstore bundle (mediaType)"
                    .to_string())
            }
        }
    }

    /// Reads an attestation file: one DSSE envelope or sigstore bundle, or
    /// JSON Lines of bundles (as `gh attestation download` writes them).
    /// At most `max` items are read.
    pub fn from_file(bytes: &[u8], max: usize) -> Result<Vec<Signed>, String> {
        if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok() {
            return Ok(vec![Signed::from_json(Bytes::copy_from_slice(bytes))?]);
        }
        let mut out = Vec::new();
        for (n, line) in bytes.split(|b| *b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if out.len() == max {
                return Err(format!("more than {max} attestations"));
            }
            let item = Signed::from_json(Bytes::copy_from_slice(line)).map_err(|e| format!("line {}: {e}", n + 1))?;
            out.push(item);
        }
        if out.is_empty() {
            return Err("no attestation in it (empty)".into());
        }
        Ok(out)
    }

    /// The bytes as found, whose digest decisions cite.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Signed::Envelope(b) | Signed::Bundle(b) => b,
            Signed::Legacy(l) => &l.envelope,
        }
    }

    /// The predicate type the payload claims, unverified: only for wording
    /// messages about attestations that failed verification.
    pub fn claimed_predicate_type(&self) -> Option<String> {
        match self {
            Signed::Envelope(b) => peek_predicate_type(b),
            Signed::Legacy(l) => peek_predicate_type(&l.envelope),
            Signed::Bundle(b) => peek_predicate_type(BundlePeek::of(b).ok()?.dsse_envelope?.get().as_bytes()),
        }
    }
}

/// Whether a sigstore bundle holds a DSSE envelope (an attestation), read
/// without building it; anything that is not JSON is handed on, to be found
/// malformed when verified.
pub fn holds_dsse(bundle: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Peek {
        #[serde(rename = "dsseEnvelope")]
        dsse: Option<serde::de::IgnoredAny>,
    }
    serde_json::from_slice::<Peek>(bundle).map_or(true, |p| p.dsse.is_some())
}

/// The payload type of an in-toto Statement in a DSSE envelope.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
const STATEMENT_TYPES: [&str; 2] = ["https://in-toto.io/Statement/v0.1", "https://in-toto.io/Statement/v1"];

/// DSSE pre-authentication encoding: what the signature covers.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + payload_type.len() + 32);
    out.extend_from_slice(format!("DSSEv1 {} {} {} ", payload_type.len(), payload_type, payload.len()).as_bytes());
    out.extend_from_slice(payload);
    out
}

/// A named trusted key.
#[derive(Clone)]
pub struct TrustedKey {
    /// The signer's name in the policy (`scanner`, `ci`).
    pub signer: String,
    key: CosignVerificationKey,
}

/// What an attestation may be signed with, each under its signer's name:
/// public keys, and keyless identities under trusted roots.
#[derive(Clone, Default)]
pub struct Trust {
    keys: Vec<TrustedKey>,
    keyless: Vec<KeylessSigner>,
    roots: Vec<Arc<Root>>,
    fingerprint: String,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "signer {signer:?}: public key is not a PEM public key cosign can use (ECDSA P-256/P-384, RSA, Ed25519): {why}"
)]
pub struct KeyError {
    pub signer: String,
    pub why: String,
}

impl Trust {
    /// Public keys only, from `(signer, PEM)` pairs.
    pub fn new<'a>(pems: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, KeyError> {
        Trust::with_keyless(pems, vec![], vec![], "")
    }

    /// Public keys from `(signer, PEM)` pairs, and keyless signers whose
    /// `root` indexes `roots`. `keyless_fingerprint` must change whenever a
    /// keyless signer or a root's content does (it joins the keys' in the
    /// evidence cache key).
    pub fn with_keyless<'a>(
        pems: impl IntoIterator<Item = (&'a str, &'a str)>,
        keyless: Vec<KeylessSigner>,
        roots: Vec<Arc<Root>>,
        keyless_fingerprint: &str,
    ) -> Result<Self, KeyError> {
        use sha2::Digest as _;
        let mut keys = Vec::new();
        let mut h = sha2::Sha256::new();
        for (signer, pem) in pems {
            let key = CosignVerificationKey::try_from_pem(pem.trim().as_bytes())
                .map_err(|e| KeyError { signer: signer.to_string(), why: e.to_string() })?;
            h.update(signer.as_bytes());
            h.update([0]);
            h.update(pem.trim().as_bytes());
            h.update([0]);
            keys.push(TrustedKey { signer: signer.to_string(), key });
        }
        h.update(keyless_fingerprint.as_bytes());
        Ok(Trust { keys, keyless, roots, fingerprint: hex::encode(h.finalize()) })
    }

    /// Changes whenever a signer, key, identity or root changes; part of the
    /// evidence cache key.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.keyless.is_empty()
    }

    /// The trusted roots keyless signers use.
    pub fn roots(&self) -> &[Arc<Root>] {
        &self.roots
    }

    /// Names of the signers whose key verifies `sig` over `msg`.
    fn signers_of(&self, sig: &[u8], msg: &[u8]) -> Vec<String> {
        let mut out: Vec<String> = self
            .keys
            .iter()
            .filter(|k| k.key.verify_signature(Signature::Raw(sig), msg).is_ok())
            .map(|k| k.signer.clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

impl fmt::Debug for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.keys.iter().map(|k| k.signer.as_str()).collect();
        let keyless: Vec<&str> = self.keyless.iter().map(|k| k.signer.as_str()).collect();
        f.debug_struct("Trust").field("keys", &names).field("keyless", &keyless).finish()
    }
}

/// Why an attestation was not accepted. Each is a distinct, actionable reason.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "problem", rename_all = "camelCase")]
pub enum Problem {
    /// Not a DSSE envelope, or its payload is not an in-toto Statement.
    Malformed { why: String },
    /// The envelope carries no signature.
    Unsigned,
    /// No signature verifies with any trusted key: signed by another key, or
    /// changed after signing.
    UntrustedSignature,
    /// Signed with a key, but every signer of the policy is keyless.
    KeyedButOnlyKeyless,
    /// Signed keyless (a certificate), but no signer of the policy is.
    KeylessButOnlyKeys { identity: Box<SignerIdentity> },
    /// A keyless signature that does not verify against any trusted root the
    /// policy's keyless signers use (certificate, log entry, timestamp or
    /// signature). The identity is what the certificate claims, unverified.
    UntrustedCertificate { identity: Option<Box<SignerIdentity>>, roots: Vec<String>, why: String },
    /// A keyless signature that verifies, by an identity no signer accepts.
    UnknownIdentity { identity: Box<SignerIdentity> },
    /// Correctly signed, but for another image.
    SubjectMismatch { subjects: Vec<String> },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Malformed { why } => write!(f, "malformed attestation ({why})"),
            Problem::Unsigned => f.write_str("attestation carries no signature"),
            Problem::UntrustedSignature => f.write_str(
                "attestation signature does not verify with any trusted key (signed with another key, or modified after signing)",
            ),
            Problem::KeyedButOnlyKeyless => f.write_str(
                "attestation is signed with a key, but the policy's signers are keyless (certificate identities); \
                 sign it keyless, or add the key to a signer",
            ),
            Problem::KeylessButOnlyKeys { identity } => write!(
                f,
                "attestation is signed keyless by {identity}, but the policy's signers are public keys; \
                 add a keyless signer trusting that identity, or sign with a key"
            ),
            Problem::UntrustedCertificate { identity, roots, why } => write!(
                f,
                "keyless signature{} does not verify against trusted root {}: {why}",
                identity.as_ref().map(|i| format!(" (certificate claims {i})")).unwrap_or_default(),
                roots.join(", ")
            ),
            Problem::UnknownIdentity { identity } => {
                write!(f, "attestation is signed keyless by {identity}, an identity no signer of the policy accepts")
            }
            Problem::SubjectMismatch { subjects } => write!(
                f,
                "attestation is for another image (subject {}), not this digest; it was copied from another image",
                if subjects.is_empty() { "none".to_string() } else { subjects.join(", ") }
            ),
        }
    }
}

/// An attestation whose signature and subject have been verified.
#[derive(Clone)]
pub struct VerifiedStatement {
    pub predicate_type: String,
    /// Signer names (of the policy) whose keys or identities verified it.
    pub signers: Vec<String>,
    /// For keyless signatures, who the certificate says signed.
    pub identity: Option<SignerIdentity>,
    /// The Statement's subjects, as written.
    pub subjects: Vec<StatementSubject>,
    /// The buffer the authenticated Statement was read from, and where in
    /// it the predicate's JSON text is (none: null).
    buf: Vec<u8>,
    predicate: Option<std::ops::Range<usize>>,
}

impl VerifiedStatement {
    /// A statement whose predicate is the JSON text `predicate` (for
    /// attestations read from elsewhere, and tests).
    pub fn new(predicate_type: &str, predicate: &str, signers: Vec<String>, identity: Option<SignerIdentity>) -> Self {
        let buf = predicate.as_bytes().to_vec();
        VerifiedStatement {
            predicate_type: predicate_type.to_string(),
            signers,
            identity,
            subjects: vec![],
            predicate: Some(0..buf.len()),
            buf,
        }
    }

    /// The predicate's JSON text, as signed (`null` when there is none).
    pub fn predicate(&self) -> &str {
        self.predicate.clone().and_then(|r| std::str::from_utf8(&self.buf[r]).ok()).unwrap_or("null")
    }
}

impl fmt::Debug for VerifiedStatement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedStatement")
            .field("predicate_type", &self.predicate_type)
            .field("signers", &self.signers)
            .field("identity", &self.identity)
            .field("predicate_bytes", &self.predicate.as_ref().map(|r| r.len()))
            .finish()
    }
}

/// A DSSE envelope, its text borrowed from the bytes it is read from.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a> {
    #[serde(borrow)]
    payload_type: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    payload: std::borrow::Cow<'a, str>,
    #[serde(default)]
    signatures: Signatures<'a>,
}

/// The first [`MAX_SIGNATURES`] signatures of an envelope that are not
/// empty; the rest are skipped unread.
#[derive(Default)]
struct Signatures<'a>(Vec<std::borrow::Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for Signatures<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct One<'a> {
            #[serde(default, borrow)]
            sig: std::borrow::Cow<'a, str>,
        }
        struct First<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for First<'a> {
            type Value = Signatures<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of signatures")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while out.len() < MAX_SIGNATURES {
                    match seq.next_element::<One<'de>>()? {
                        Some(one) if !one.sig.is_empty() => out.push(one.sig),
                        Some(_) => {}
                        None => return Ok(Signatures(out)),
                    }
                }
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Signatures(out))
            }
        }
        d.deserialize_seq(First(std::marker::PhantomData))
    }
}

/// The parts of a sigstore bundle read before choosing how to verify it,
/// borrowed from its bytes.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BundlePeek<'a> {
    #[serde(borrow, default)]
    dsse_envelope: Option<&'a serde_json::value::RawValue>,
    #[serde(default)]
    verification_material: Option<MaterialPeek>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MaterialPeek {
    #[serde(default)]
    public_key: Option<serde::de::IgnoredAny>,
}

impl<'a> BundlePeek<'a> {
    fn of(bytes: &'a [u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// An in-toto Statement: its subjects' sha256 digests, its predicate type,
/// and where its predicate is.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Statement<'a> {
    #[serde(rename = "_type")]
    type_: String,
    #[serde(default)]
    subject: Subjects,
    predicate_type: String,
    #[serde(borrow, default)]
    predicate: Option<&'a serde_json::value::RawValue>,
}

/// Most subjects a Statement may name.
const MAX_SUBJECTS: usize = 4096;

/// The sha256 digests of a Statement's subjects, and each subject as
/// written (its name and digests; other fields skipped).
#[derive(Default)]
struct Subjects(Vec<String>, Vec<StatementSubject>);

/// A subject of a verified Statement: its name and its digests by algorithm.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StatementSubject {
    pub name: String,
    pub digest: std::collections::BTreeMap<String, String>,
}

impl<'de> Deserialize<'de> for Subjects {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Subject {
            #[serde(default)]
            name: Option<String>,
            #[serde(default)]
            digest: Option<std::collections::BTreeMap<String, String>>,
        }
        struct List;
        impl<'de> serde::de::Visitor<'de> for List {
            type Value = Subjects;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of subjects")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Subjects, A::Error> {
                let mut out = Vec::new();
                let mut named = Vec::new();
                let mut n = 0;
                while let Some(s) = seq.next_element::<Subject>()? {
                    n += 1;
                    if n > MAX_SUBJECTS {
                        return Err(serde::de::Error::custom(format!("more than {MAX_SUBJECTS} subjects")));
                    }
                    let digest = s.digest.unwrap_or_default();
                    out.extend(digest.get("sha256").cloned());
                    named.push(StatementSubject { name: s.name.unwrap_or_default(), digest });
                }
                Ok(Subjects(out, named))
            }
        }
        d.deserialize_seq(List)
    }
}

const MAX_SIGNATURES: usize = 16;

/// Verifies signed material, whatever its form, for `image`.
pub fn verify(signed: &Signed, trust: &Trust, image: &Digest) -> Result<VerifiedStatement, Problem> {
    match signed {
        Signed::Envelope(bytes) => verify_envelope(bytes, trust, image),
        Signed::Bundle(bytes) => verify_bundle(bytes, trust, image),
        Signed::Legacy(layer) => match layer.to_bundle() {
            // Signed with a key: the annotations carry no certificate.
            Ok(None) => verify_envelope(&layer.envelope, trust, image),
            Ok(Some(bundle)) => verify_keyless(bundle, trust, image),
            Err(why) => Err(Problem::Malformed { why }),
        },
    }
}

/// A sigstore bundle: with a public-key hint its DSSE envelope is verified
/// with the policy's keys; with a certificate, keyless.
fn verify_bundle(bytes: &[u8], trust: &Trust, image: &Digest) -> Result<VerifiedStatement, Problem> {
    let malformed = |why: String| Problem::Malformed { why };
    let peek = BundlePeek::of(bytes).map_err(|e| malformed(format!("sigstore bundle is not JSON: {e}")))?;
    let Some(envelope) = peek.dsse_envelope else {
        return Err(malformed(
            "the sigstore bundle holds a signature over an artifact (cosign sign, sign-blob), not an attestation"
                .into(),
        ));
    };
    if peek.verification_material.is_some_and(|m| m.public_key.is_some()) {
        return verify_envelope(envelope.get().as_bytes(), trust, image);
    }
    let json = std::str::from_utf8(bytes).map_err(|e| malformed(format!("sigstore bundle is not UTF-8: {e}")))?;
    let bundle = sigstore_verify::types::Bundle::from_json(json)
        .map_err(|e| malformed(format!("not a sigstore bundle: {e}")))?;
    verify_keyless(bundle, trust, image)
}

/// A bundle with a certificate, against every root a keyless signer uses;
/// then its identity against each signer's identities, then its Statement.
fn verify_keyless(
    bundle: sigstore_verify::types::Bundle,
    trust: &Trust,
    image: &Digest,
) -> Result<VerifiedStatement, Problem> {
    let owned = bundle;
    let bundle = &owned;
    use sigstore_verify::types::SignatureContent;
    let malformed = |why: String| Problem::Malformed { why };
    let SignatureContent::DsseEnvelope(env) = &bundle.content else {
        return Err(malformed("the sigstore bundle holds no DSSE envelope, so it is not an attestation".into()));
    };
    if env.payload_type != IN_TOTO_PAYLOAD_TYPE {
        return Err(malformed(format!("payloadType {:?}, expected {IN_TOTO_PAYLOAD_TYPE}", env.payload_type)));
    }
    let payload = env.payload.as_bytes();
    if trust.keyless.is_empty() {
        let identity = keyless::claimed_identity(bundle).unwrap_or_default();
        return Err(Problem::KeylessButOnlyKeys { identity: Box::new(identity) });
    }
    // The signature is checked over the subject the Statement names: this
    // image's digest if it is among them, else another, so that a correctly
    // signed attestation for another image is reported as exactly that.
    let subjects = sha256_subjects(payload);
    let artifact = subjects.iter().find(|h| h.as_str() == image.hex()).or(subjects.first());
    let Some(artifact) = artifact else {
        return Err(malformed("the Statement names no sha256 subject".into()));
    };
    let mut used: Vec<usize> = trust.keyless.iter().map(|k| k.root).collect();
    used.sort_unstable();
    used.dedup();
    let mut verified = Vec::new();
    let mut failures = Vec::new();
    for i in used {
        let root = &trust.roots[i];
        match root.verify(bundle, artifact) {
            Ok(result) => verified.push((i, result)),
            Err(why) => failures.push((root.name.clone(), why)),
        }
    }
    let Some((first, result)) = verified.first() else {
        let roots = failures.iter().map(|(n, _)| n.clone()).collect();
        let mut why: Vec<String> = failures.into_iter().map(|(_, w)| w).collect();
        why.dedup();
        return Err(Problem::UntrustedCertificate {
            identity: keyless::claimed_identity(bundle).map(Box::new),
            roots,
            why: why.join("; "),
        });
    };
    let identity = match result.certificate() {
        Some(cert) if result.certificate_verified() => SignerIdentity::of(cert, &trust.roots[*first].name),
        _ => return Err(malformed("the bundle's certificate was not verified".into())),
    };
    let mut signers: Vec<String> = trust
        .keyless
        .iter()
        .filter(|k| verified.iter().any(|(i, _)| *i == k.root))
        .filter(|k| k.identities.iter().any(|r| r.matches(&identity)))
        .map(|k| k.signer.clone())
        .collect();
    signers.sort();
    signers.dedup();
    if signers.is_empty() {
        return Err(Problem::UnknownIdentity { identity: Box::new(identity) });
    }
    let (predicate_type, predicate, subjects) = statement(payload, 0, image)?;
    // The payload, taken out of the bundle rather than copied.
    let buf = match owned.content {
        SignatureContent::DsseEnvelope(env) => env.payload.into_bytes(),
        _ => return Err(malformed("the sigstore bundle holds no DSSE envelope".into())),
    };
    Ok(VerifiedStatement { predicate_type, signers, identity: Some(identity), subjects, buf, predicate })
}

/// The sha256 subject digests a payload names, unverified.
fn sha256_subjects(payload: &[u8]) -> Vec<String> {
    #[derive(Deserialize)]
    struct Subjects {
        #[serde(default)]
        subject: self::Subjects,
    }
    serde_json::from_slice::<Subjects>(payload).map(|s| s.subject.0).unwrap_or_default()
}

/// PAE(`payload_type`, payload) with the payload decoded from base64 `b64`
/// in place: the message signed, and where the payload starts in it. One
/// buffer the size of the payload, not three.
fn pae_of_base64(payload_type: &str, b64: &str) -> Result<(Vec<u8>, usize, usize), String> {
    let head = |n: usize| format!("DSSEv1 {} {} {} ", payload_type.len(), payload_type, n);
    let most = base64::decoded_len_estimate(b64.len());
    let room = head(most).len();
    let mut buf = vec![0u8; room + most];
    let n = base64::engine::general_purpose::STANDARD
        .decode_slice(b64.as_bytes(), &mut buf[room..])
        .map_err(|e| e.to_string())?;
    buf.truncate(room + n);
    let head = head(n);
    let start = room - head.len();
    buf[start..room].copy_from_slice(head.as_bytes());
    Ok((buf, start, room))
}

/// Verifies one DSSE envelope signed with a key, for `image`.
pub fn verify_envelope(bytes: &[u8], trust: &Trust, image: &Digest) -> Result<VerifiedStatement, Problem> {
    let malformed = |why: String| Problem::Malformed { why };
    let env: Envelope<'_> =
        serde_json::from_slice(bytes).map_err(|e| malformed(format!("not a DSSE envelope: {e}")))?;
    if env.payload_type != IN_TOTO_PAYLOAD_TYPE {
        return Err(malformed(format!("payloadType {:?}, expected {IN_TOTO_PAYLOAD_TYPE}", env.payload_type)));
    }
    let (buf, start, payload_at) =
        pae_of_base64(&env.payload_type, &env.payload).map_err(|e| malformed(format!("payload is not base64: {e}")))?;
    if env.signatures.0.is_empty() {
        return Err(Problem::Unsigned);
    }
    let msg = &buf[start..];
    let mut signers = Vec::new();
    for s in &env.signatures.0 {
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(s.as_bytes()) else {
            continue;
        };
        signers.extend(trust.signers_of(&raw, msg));
    }
    signers.sort();
    signers.dedup();
    if signers.is_empty() {
        return Err(if trust.keys.is_empty() && !trust.keyless.is_empty() {
            Problem::KeyedButOnlyKeyless
        } else {
            Problem::UntrustedSignature
        });
    }
    drop(env);
    let (predicate_type, predicate, subjects) = statement(&buf[payload_at..], payload_at, image)?;
    Ok(VerifiedStatement { predicate_type, signers, identity: None, subjects, buf, predicate })
}

/// An authenticated payload read as an in-toto Statement about `image`:
/// its predicate type, where its predicate is (offset by `at`, where the
/// payload starts in its buffer), and its subjects.
type Read = (String, Option<std::ops::Range<usize>>, Vec<StatementSubject>);

fn statement(payload: &[u8], at: usize, image: &Digest) -> Result<Read, Problem> {
    let malformed = |why: String| Problem::Malformed { why };
    // Only now, with the payload authenticated, is it worth interpreting.
    unambiguous(payload).map_err(|e| malformed(format!("payload is ambiguous JSON: {e}")))?;
    let st: Statement<'_> =
        serde_json::from_slice(payload).map_err(|e| malformed(format!("payload is not an in-toto Statement: {e}")))?;
    if !STATEMENT_TYPES.contains(&st.type_.as_str()) {
        return Err(malformed(format!("unknown Statement _type {:?}", st.type_)));
    }
    if !st.subject.0.iter().any(|h| h == image.hex()) {
        let subjects =
            st.subject.0.iter().map(|h| format!("sha256:{}", h.chars().take(12).collect::<String>())).collect();
        return Err(Problem::SubjectMismatch { subjects });
    }
    let predicate = st.predicate.map(|raw| {
        let from = raw.get().as_ptr() as usize - payload.as_ptr() as usize;
        at + from..at + from + raw.get().len()
    });
    Ok((st.predicate_type, predicate, st.subject.1))
}

/// A JSON object key as Go's `encoding/json` compares it with a field's
/// name: case folded, `ſ` (U+017F) as `s` and the Kelvin sign (U+212A) as `k`.
pub fn fold_key(key: &str) -> String {
    key.chars()
        .map(|c| match c {
            '\u{17f}' => 's',
            '\u{212a}' => 'k',
            c => c,
        })
        .flat_map(char::to_lowercase)
        .collect()
}

/// Refuses JSON that readers can disagree on: an object with two keys that
/// are equal, or equal but for case. Go's `encoding/json` (cosign, most
/// producers and verifiers) matches keys case-insensitively and keeps the last
/// one, serde keeps the exact one: `{"result": "PASSED", "Result": "FAILED"}`
/// would mean PASSED here and FAILED there. Go folds `ſ` (U+017F) to `s` and
/// the Kelvin sign (U+212A) to `k`; they are folded here too.
pub fn unambiguous(json: &[u8]) -> Result<(), String> {
    use serde::de::{DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor};

    struct Check;

    impl<'de> DeserializeSeed<'de> for Check {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(Check)
        }
    }

    impl<'de> Visitor<'de> for Check {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("JSON")
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while seq.next_element_seed(Check)?.is_some() {}
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut seen: std::collections::HashMap<String, String> = Default::default();
            while let Some(key) = map.next_key::<String>()? {
                if let Some(first) = seen.insert(fold_key(&key), key.clone()) {
                    return Err(A::Error::custom(format!("an object has both {first:?} and {key:?}")));
                }
                map.next_value_seed(Check)?;
            }
            Ok(())
        }
    }

    let mut de = serde_json::Deserializer::from_slice(json);
    Check.deserialize(&mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())
}

/// Reads the predicate type a payload claims, without verifying anything.
/// Only for wording messages about attestations that failed verification.
pub fn peek_predicate_type(bytes: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Peek<'a> {
        #[serde(borrow)]
        payload: std::borrow::Cow<'a, str>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct PeekStatement {
        predicate_type: String,
    }
    let env: Peek<'_> = serde_json::from_slice(bytes).ok()?;
    // Decoded as it is read, never held whole.
    let mut text = env.payload.as_bytes();
    let payload = base64::read::DecoderReader::new(&mut text, &base64::engine::general_purpose::STANDARD);
    serde_json::from_reader::<_, PeekStatement>(std::io::BufReader::new(payload)).ok().map(|s| s.predicate_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_dsse_spec_example() {
        // From the DSSE protocol specification.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        let kr = Trust::default();
        let d = Digest::of(b"x");
        for bytes in [
            &b""[..],
            b"{}",
            b"[1,2]",
            b"{\"payloadType\":\"application/vnd.in-toto+json\",\"payload\":\"!!\",\"signatures\":[]}",
        ] {
            assert!(
                matches!(verify_envelope(bytes, &kr, &d), Err(Problem::Malformed { .. })),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        let unsigned = br#"{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[]}"#;
        assert_eq!(verify_envelope(unsigned, &kr, &d).unwrap_err(), Problem::Unsigned);
    }

    #[test]
    fn json_that_readers_can_disagree_on_is_refused() {
        // (json, accepted)
        let rows: &[(&str, bool)] = &[
            (r#"{"result":"PASSED","passedTests":["a"]}"#, true),
            (r#"{"result":"PASSED","Result":"FAILED"}"#, false),
            (r#"{"result":"PASSED","result":"FAILED"}"#, false),
            (
                r#"{"predicate":{"scanner":{"result":{"Results":[{"Vulnerabilities":[],"vulnerabilities":[{"x":1}]}]}}}}"#,
                false,
            ),
            (r#"{"reſult":"FAILED","result":"PASSED"}"#, false),
            (r#"{"Key":1,"key":2}"#, false),
            (r#"[{"a":1},{"a":2}]"#, true),
            (r#"{"a":{"b":1},"b":{"a":1}}"#, true),
            (r#"{"a":1} trailing"#, false),
        ];
        for (json, ok) in rows {
            assert_eq!(unambiguous(json.as_bytes()).is_ok(), *ok, "{json}: {:?}", unambiguous(json.as_bytes()));
        }
    }

    #[test]
    fn bad_pem_is_a_clear_error() {
        let err = Trust::new([("scanner", "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----")]).unwrap_err();
        assert!(err.to_string().contains("scanner"), "{err}");
    }
}
