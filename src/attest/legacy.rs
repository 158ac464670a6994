//! cosign's legacy keyless attestations: what `cosign attest` (v2, without
//! `--new-bundle-format`) writes to the `sha256-<hex>.att` tag. The layer is
//! the DSSE envelope; the signing certificate, its chain, the Rekor entry's
//! signed entry timestamp and an RFC 3161 timestamp sit in the layer's
//! annotations. They are rewritten here into the sigstore bundle (v0.1, the
//! version made for exactly this material) that cosign itself builds from
//! them, so one verifier checks both forms.

use base64::Engine as _;
use bytes::Bytes;
use serde::Deserialize;

pub const CERTIFICATE_ANNOTATION: &str = "dev.sigstore.cosign/certificate";
pub const CHAIN_ANNOTATION: &str = "dev.sigstore.cosign/chain";
pub const BUNDLE_ANNOTATION: &str = "dev.sigstore.cosign/bundle";
pub const RFC3161_ANNOTATION: &str = "dev.sigstore.cosign/rfc3161timestamp";

/// A legacy `.att` layer: the envelope and the annotations that matter.
#[derive(Clone, Debug, Default)]
pub struct LegacyLayer {
    pub envelope: Bytes,
    pub certificate: Option<String>,
    pub chain: Option<String>,
    pub rekor_bundle: Option<String>,
    pub rfc3161: Option<String>,
}

/// `dev.sigstore.cosign/bundle`: Rekor's answer, as cosign stores it.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RekorBundle {
    signed_entry_timestamp: String,
    payload: RekorPayload,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RekorPayload {
    body: String,
    integrated_time: i64,
    log_index: i64,
    #[serde(rename = "logID")]
    log_id: String,
}

#[derive(Deserialize)]
struct EntryKind {
    kind: String,
    #[serde(rename = "apiVersion")]
    api_version: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Rfc3161 {
    #[serde(rename = "SignedRFC3161Timestamp")]
    signed: String,
}

impl LegacyLayer {
    /// From a layer's annotations (missing ones are absent).
    pub fn new(envelope: Bytes, annotations: Option<&std::collections::BTreeMap<String, String>>) -> LegacyLayer {
        let get = |k: &str| annotations.and_then(|a| a.get(k)).filter(|v| !v.trim().is_empty()).cloned();
        LegacyLayer {
            envelope,
            certificate: get(CERTIFICATE_ANNOTATION),
            chain: get(CHAIN_ANNOTATION),
            rekor_bundle: get(BUNDLE_ANNOTATION),
            rfc3161: get(RFC3161_ANNOTATION),
        }
    }

    /// The sigstore bundle this layer amounts to, or None when it carries no
    /// certificate (signed with a key: the envelope alone is verified).
    pub fn to_bundle(&self) -> Result<Option<sigstore_verify::types::Bundle>, String> {
        let Some(cert) = &self.certificate else { return Ok(None) };
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let mut certificates = Vec::new();
        for text in std::iter::once(cert).chain(self.chain.iter()) {
            let blocks = pem::parse_many(text.as_bytes()).map_err(|e| format!("certificate annotation: {e}"))?;
            for block in blocks.iter().filter(|b| b.tag() == "CERTIFICATE") {
                certificates.push(serde_json::json!({ "rawBytes": b64(block.contents()) }));
            }
        }
        if certificates.is_empty() {
            return Err(format!("the {CERTIFICATE_ANNOTATION} annotation holds no PEM certificate"));
        }
        // The envelope is passed on as it is, never built into a document.
        let envelope: &serde_json::value::RawValue =
            serde_json::from_slice(&self.envelope).map_err(|e| format!("not a DSSE envelope: {e}"))?;
        let mut tlog_entries = Vec::new();
        if let Some(text) = &self.rekor_bundle {
            let rb: RekorBundle =
                serde_json::from_str(text).map_err(|e| format!("the {BUNDLE_ANNOTATION} annotation: {e}"))?;
            let body = base64::engine::general_purpose::STANDARD
                .decode(rb.payload.body.as_bytes())
                .map_err(|e| format!("Rekor entry body is not base64: {e}"))?;
            let kind: EntryKind =
                serde_json::from_slice(&body).map_err(|e| format!("Rekor entry body is not an entry: {e}"))?;
            let log_id = hex::decode(&rb.payload.log_id).map_err(|e| format!("Rekor logID is not hex: {e}"))?;
            tlog_entries.push(serde_json::json!({
                "logIndex": rb.payload.log_index.to_string(),
                "logId": { "keyId": b64(&log_id) },
                "kindVersion": { "kind": kind.kind, "version": kind.api_version },
                "integratedTime": rb.payload.integrated_time.to_string(),
                "inclusionPromise": { "signedEntryTimestamp": rb.signed_entry_timestamp },
                "canonicalizedBody": rb.payload.body,
            }));
        }
        let mut timestamps = Vec::new();
        if let Some(text) = &self.rfc3161 {
            let ts: Rfc3161 =
                serde_json::from_str(text).map_err(|e| format!("the {RFC3161_ANNOTATION} annotation: {e}"))?;
            timestamps.push(serde_json::json!({ "signedTimestamp": ts.signed }));
        }
        // v0.1 requires the signed entry timestamp; with a timestamp only, v0.2.
        let media_type = if tlog_entries.is_empty() {
            "application/vnd.dev.sigstore.bundle+json;version=0.2"
        } else {
            "application/vnd.dev.sigstore.bundle+json;version=0.1"
        };
        #[derive(serde::Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Out<'a> {
            media_type: &'a str,
            verification_material: serde_json::Value,
            dsse_envelope: &'a serde_json::value::RawValue,
        }
        let bundle = serde_json::to_string(&Out {
            media_type,
            verification_material: serde_json::json!({
                "x509CertificateChain": { "certificates": certificates },
                "tlogEntries": tlog_entries,
                "timestampVerificationData": { "rfc3161Timestamps": timestamps },
            }),
            dsse_envelope: envelope,
        })
        .map_err(|e| e.to_string())?;
        sigstore_verify::types::Bundle::from_json(&bundle)
            .map(Some)
            .map_err(|e| format!("cosign's keyless annotations do not make a sigstore bundle: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layer_without_a_certificate_is_keyed() {
        let layer = LegacyLayer::new(Bytes::from_static(b"{}"), None);
        assert!(layer.to_bundle().unwrap().is_none());
    }

    #[test]
    fn broken_annotations_are_clear_errors() {
        let env = Bytes::from_static(
            br#"{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[{"sig":"AA=="}]}"#,
        );
        let mut a = std::collections::BTreeMap::new();
        a.insert(CERTIFICATE_ANNOTATION.to_string(), "not pem".to_string());
        let err = LegacyLayer::new(env.clone(), Some(&a)).to_bundle().unwrap_err();
        assert!(err.contains("certificate"), "{err}");
        a.insert(
            CERTIFICATE_ANNOTATION.to_string(),
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_string(),
        );
        a.insert(BUNDLE_ANNOTATION.to_string(), r#"{"SignedEntryTimestamp":"x"}"#.to_string());
        let err = LegacyLayer::new(env, Some(&a)).to_bundle().unwrap_err();
        assert!(err.contains(BUNDLE_ANNOTATION), "{err}");
    }
}
