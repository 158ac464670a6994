//! DSSE envelopes, in-toto Statements and signature verification.
//!
//! A cosign attestation is a DSSE envelope
//! `{payloadType, payload, signatures: [{keyid, sig}]}` whose signature covers
//! `PAE(payloadType, payload)`, and whose payload is an in-toto Statement.
//! An attestation is accepted only when a signature verifies against a
//! trusted key and the Statement's subject names the image's digest.

use std::fmt;

use base64::Engine as _;
use serde::Deserialize;
use sigstore::crypto::{CosignVerificationKey, Signature};

use crate::image::Digest;

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

/// The keys an attestation may be signed with, each under its signer's name.
#[derive(Clone, Default)]
pub struct Keyring {
    keys: Vec<TrustedKey>,
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

impl Keyring {
    /// Builds a keyring from `(signer, PEM)` pairs.
    pub fn new<'a>(pems: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, KeyError> {
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
        Ok(Keyring { keys, fingerprint: hex::encode(h.finalize()) })
    }

    /// Changes whenever a signer or key changes; part of the evidence cache key.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
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

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.keys.iter().map(|k| k.signer.as_str()).collect();
        f.debug_struct("Keyring").field("signers", &names).finish()
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
            Problem::SubjectMismatch { subjects } => write!(
                f,
                "attestation is for another image (subject {}), not this digest; it was copied from another image",
                if subjects.is_empty() { "none".to_string() } else { subjects.join(", ") }
            ),
        }
    }
}

/// An attestation whose signature and subject have been verified.
#[derive(Clone, Debug)]
pub struct VerifiedStatement {
    pub predicate_type: String,
    pub predicate: serde_json::Value,
    /// Signer names (from the keyring) whose keys verified the envelope.
    pub signers: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    payload_type: String,
    payload: String,
    #[serde(default)]
    signatures: Vec<EnvelopeSignature>,
}

#[derive(Deserialize)]
struct EnvelopeSignature {
    #[serde(default)]
    sig: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Statement {
    #[serde(rename = "_type")]
    type_: String,
    #[serde(default)]
    subject: Vec<Subject>,
    predicate_type: String,
    #[serde(default)]
    predicate: serde_json::Value,
}

#[derive(Deserialize)]
struct Subject {
    #[serde(default)]
    digest: std::collections::BTreeMap<String, String>,
}

const MAX_SIGNATURES: usize = 16;

/// Verifies one DSSE envelope (as stored in the registry) for `image`.
pub fn verify_envelope(bytes: &[u8], keyring: &Keyring, image: &Digest) -> Result<VerifiedStatement, Problem> {
    let malformed = |why: String| Problem::Malformed { why };
    let env: Envelope = serde_json::from_slice(bytes).map_err(|e| malformed(format!("not a DSSE envelope: {e}")))?;
    if env.payload_type != IN_TOTO_PAYLOAD_TYPE {
        return Err(malformed(format!("payloadType {:?}, expected {IN_TOTO_PAYLOAD_TYPE}", env.payload_type)));
    }
    let payload = base64::engine::general_purpose::STANDARD
        .decode(env.payload.as_bytes())
        .map_err(|e| malformed(format!("payload is not base64: {e}")))?;
    let sigs: Vec<&EnvelopeSignature> = env.signatures.iter().filter(|s| !s.sig.is_empty()).collect();
    if sigs.is_empty() {
        return Err(Problem::Unsigned);
    }
    let msg = pae(&env.payload_type, &payload);
    let mut signers = Vec::new();
    for s in sigs.into_iter().take(MAX_SIGNATURES) {
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(s.sig.as_bytes()) else {
            continue;
        };
        signers.extend(keyring.signers_of(&raw, &msg));
    }
    signers.sort();
    signers.dedup();
    if signers.is_empty() {
        return Err(Problem::UntrustedSignature);
    }
    // Only now, with the payload authenticated, is it worth interpreting.
    unambiguous(&payload).map_err(|e| malformed(format!("payload is ambiguous JSON: {e}")))?;
    let st: Statement =
        serde_json::from_slice(&payload).map_err(|e| malformed(format!("payload is not an in-toto Statement: {e}")))?;
    if !STATEMENT_TYPES.contains(&st.type_.as_str()) {
        return Err(malformed(format!("unknown Statement _type {:?}", st.type_)));
    }
    if !st.subject.iter().any(|s| s.digest.get("sha256").map(String::as_str) == Some(image.hex())) {
        let subjects = st
            .subject
            .iter()
            .filter_map(|s| {
                s.digest.get("sha256").map(|h| format!("sha256:{}", h.chars().take(12).collect::<String>()))
            })
            .collect();
        return Err(Problem::SubjectMismatch { subjects });
    }
    Ok(VerifiedStatement { predicate_type: st.predicate_type, predicate: st.predicate, signers })
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

    fn fold(key: &str) -> String {
        key.chars()
            .map(|c| match c {
                '\u{17f}' => 's',
                '\u{212a}' => 'k',
                c => c,
            })
            .flat_map(char::to_lowercase)
            .collect()
    }

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
                if let Some(first) = seen.insert(fold(&key), key.clone()) {
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
    struct Peek {
        payload: String,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct PeekStatement {
        predicate_type: String,
    }
    let env: Peek = serde_json::from_slice(bytes).ok()?;
    let payload = base64::engine::general_purpose::STANDARD.decode(env.payload.as_bytes()).ok()?;
    serde_json::from_slice::<PeekStatement>(&payload).ok().map(|s| s.predicate_type)
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
        let kr = Keyring::default();
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
        let err =
            Keyring::new([("scanner", "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----")]).unwrap_err();
        assert!(err.to_string().contains("scanner"), "{err}");
    }
}
