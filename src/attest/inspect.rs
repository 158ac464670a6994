//! What an attestation says about itself, before and after verification:
//! `portcullis inspect`. Its predicate type, subjects and (keyless) the
//! identity its certificate names are read unverified, to be shown as
//! claims; whether it verifies, and as which signer of a policy, is
//! [`super::verify`]'s answer for each subject it names.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::keyless::{claimed_identity, SignerIdentity};
use super::{verify, BundlePeek, Signed, Trust};
use crate::image::Digest;

/// Most subjects shown for one attestation.
const MAX_SUBJECTS: usize = 16;

/// One subject as the Statement names it (unverified).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Subject {
    pub name: String,
    /// `sha256:<hex>`, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// What an attestation says, and whether it verifies.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Inspected {
    /// `DSSE envelope`, `sigstore bundle (keyless)`, `sigstore bundle (key)`,
    /// `cosign keyless layer`.
    pub form: &'static str,
    /// The predicate type the Statement claims (unverified).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predicate_type: Option<String>,
    /// The subjects it claims (unverified), at most 16.
    pub subjects: Vec<Subject>,
    /// For a keyless signature, who the certificate names (unverified until
    /// `verified` says so).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<SignerIdentity>,
    /// The policy's signers it verifies as, for its first subject; empty
    /// when it does not verify.
    pub verified_as: Vec<String>,
    /// Why it does not verify, when it does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_verified: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnvelopePeek {
    #[serde(default)]
    payload: String,
}

#[derive(Deserialize)]
struct StatementPeek {
    #[serde(default, rename = "predicateType")]
    predicate_type: Option<String>,
    #[serde(default)]
    subject: Vec<SubjectPeek>,
}

#[derive(Deserialize)]
struct SubjectPeek {
    #[serde(default)]
    name: String,
    #[serde(default)]
    digest: std::collections::BTreeMap<String, String>,
}

/// The Statement of a DSSE envelope (JSON), unverified.
fn statement(envelope: &[u8]) -> Option<StatementPeek> {
    let env: EnvelopePeek = serde_json::from_slice(envelope).ok()?;
    let payload = base64::engine::general_purpose::STANDARD.decode(env.payload.trim()).ok()?;
    serde_json::from_slice(&payload).ok()
}

/// Reads what `signed` claims, then verifies it under `trust` for the first
/// subject it names.
pub fn inspect(signed: &Signed, trust: &Trust) -> Inspected {
    let (form, envelope, identity): (&'static str, Option<Vec<u8>>, Option<SignerIdentity>) = match signed {
        Signed::Envelope(b) => ("DSSE envelope", Some(b.to_vec()), None),
        Signed::Bundle(b) => {
            let peek = BundlePeek::of(b).ok();
            let keyed =
                peek.as_ref().and_then(|p| p.verification_material.as_ref()).is_some_and(|m| m.public_key.is_some());
            let envelope = peek.and_then(|p| p.dsse_envelope).map(|e| e.get().as_bytes().to_vec());
            let identity = if keyed {
                None
            } else {
                std::str::from_utf8(b)
                    .ok()
                    .and_then(|j| sigstore_verify::types::Bundle::from_json(j).ok())
                    .and_then(|bundle| claimed_identity(&bundle))
            };
            (if keyed { "sigstore bundle (key)" } else { "sigstore bundle (keyless)" }, envelope, identity)
        }
        Signed::Legacy(layer) => {
            let identity = layer.to_bundle().ok().flatten().and_then(|b| claimed_identity(&b));
            ("cosign keyless layer", Some(layer.envelope.to_vec()), identity)
        }
    };
    let st = envelope.as_deref().and_then(statement);
    let subjects: Vec<Subject> = st
        .as_ref()
        .map(|s| {
            s.subject
                .iter()
                .take(MAX_SUBJECTS)
                .map(|x| Subject {
                    name: x.name.clone(),
                    digest: x.digest.get("sha256").map(|h| format!("sha256:{}", h.to_ascii_lowercase())),
                })
                .collect()
        })
        .unwrap_or_default();
    let first = subjects.iter().find_map(|s| s.digest.as_deref().and_then(|d| Digest::parse(d).ok()));
    let (verified_as, not_verified, identity) = match first {
        None => {
            (vec![], Some("it names no subject by sha256 digest, so it vouches for no image".to_string()), identity)
        }
        Some(d) => match verify(signed, trust, &d) {
            // Verified: the identity as verification read it (with its root).
            Ok(v) => (v.signers.clone(), None, v.identity.clone().or(identity)),
            Err(p) => (vec![], Some(p.to_string()), identity),
        },
    };
    Inspected {
        form,
        predicate_type: st.and_then(|s| s.predicate_type).or_else(|| signed.claimed_predicate_type()),
        subjects,
        identity,
        verified_as,
        not_verified,
    }
}
