//! Keyless signatures: sigstore bundles signed with a short-lived Fulcio
//! certificate bound to a CI's OIDC identity.
//!
//! The cryptography is `sigstore-verify`'s, offline, against a trusted root
//! given here: the chain to a Fulcio CA of the root at every verified signing
//! time, the embedded SCT, the Rekor entry (inclusion proof and checkpoint,
//! or signed entry timestamp; Rekor v1 and v2), RFC 3161 timestamps, the DSSE
//! signature and the Statement's subject. Nothing is fetched. What is written
//! here is the part that is policy: which roots, which identities (exact or
//! regular expression on subject and issuer), and the words of a denial.

use std::fmt;

use serde::Serialize;
use sigstore_trust_root::{SigstoreInstance, TrustedRoot};
use sigstore_verify::crypto::CertificateInfo;
use sigstore_verify::{VerificationPolicy, Verifier};

/// The built-in roots, embedded in the binary (refreshed with the crate).
pub const PUBLIC_GOOD: &str = "public-good";
pub const GITHUB: &str = "github";

/// How long before a root's newest key ends that Portcullis starts warning.
pub const EXPIRY_WARNING: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

/// A trusted root, ready to verify with, and the rules of its domain.
pub struct Root {
    /// `public-good`, `github`, or the file's path as the policy wrote it.
    pub name: String,
    verifier: Verifier,
    /// The root lists a transparency log: an entry in it is required.
    tlog: bool,
    /// The root lists a certificate transparency log: an SCT is required.
    sct: bool,
    /// For each kind of key, when its newest one stops being valid (None:
    /// open-ended).
    pub validity: Vec<KeyValidity>,
}

/// When the newest key of one kind in a root stops being valid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValidity {
    /// `fulcio`, `rekor`, `ctlog` or `tsa`.
    pub kind: &'static str,
    pub until: Option<chrono::DateTime<chrono::Utc>>,
}

impl fmt::Debug for Root {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Root").field("name", &self.name).field("tlog", &self.tlog).field("sct", &self.sct).finish()
    }
}

impl Root {
    /// A built-in root by name, or None if `name` is not one.
    pub fn built_in(name: &str) -> Option<Result<Root, String>> {
        let instance = match name {
            PUBLIC_GOOD => SigstoreInstance::PublicGood,
            GITHUB => SigstoreInstance::GitHub,
            _ => return None,
        };
        Some(Root::from_json(name, instance.embedded_trusted_root_json()))
    }

    /// A root from `trusted_root.json` text (the sigstore protobuf-specs
    /// format `cosign --trusted-root` reads).
    ///
    /// Its domain's rules follow from what it lists: a transparency log makes
    /// a log entry required, a CT log makes an SCT required. GitHub's root
    /// lists neither (its private-repository attestations carry an RFC 3161
    /// timestamp and no Rekor entry), so its bundles are verified by their
    /// timestamp; every other root keeps the full checks.
    pub fn from_json(name: &str, json: &str) -> Result<Root, String> {
        let root = TrustedRoot::from_json(json).map_err(|e| format!("not a trusted root: {e}"))?;
        let verifier = Verifier::new(&root).map_err(|e| format!("unusable trusted root: {e}"))?;
        if root.certificate_authorities.is_empty() {
            return Err("the trusted root lists no certificate authority, so no keyless signature can verify".into());
        }
        let newest = |ends: Vec<Option<jiff::Timestamp>>| -> Option<Option<chrono::DateTime<chrono::Utc>>> {
            if ends.is_empty() {
                return None;
            }
            // Open-ended beats any end; otherwise the latest end.
            Some(if ends.iter().any(Option::is_none) {
                None
            } else {
                ends.into_iter().flatten().max().and_then(|t| chrono::DateTime::from_timestamp(t.as_second(), 0))
            })
        };
        let end = |r: Option<sigstore_trust_root::TimeRange>| r.and_then(|r| r.end);
        let mut validity = Vec::new();
        let kinds: [(&'static str, Vec<Option<jiff::Timestamp>>); 4] = [
            ("fulcio", root.certificate_authorities.iter().map(|c| end(c.valid_for)).collect()),
            ("rekor", root.tlogs.iter().map(|l| end(l.public_key.valid_for)).collect()),
            ("ctlog", root.ctlogs.iter().map(|l| end(l.public_key.valid_for)).collect()),
            ("tsa", root.timestamp_authorities.iter().map(|t| end(t.valid_for)).collect()),
        ];
        for (kind, ends) in kinds {
            if let Some(until) = newest(ends) {
                validity.push(KeyValidity { kind, until });
            }
        }
        Ok(Root {
            name: name.to_string(),
            tlog: !root.tlogs.is_empty(),
            sct: !root.ctlogs.is_empty(),
            verifier,
            validity,
        })
    }

    /// The kinds of key whose newest one ends before `now + within`.
    pub fn expiring(&self, now: chrono::DateTime<chrono::Utc>, within: std::time::Duration) -> Vec<&KeyValidity> {
        let horizon = now + chrono::Duration::from_std(within).unwrap_or(chrono::Duration::MAX);
        self.validity.iter().filter(|v| v.until.is_some_and(|t| t < horizon)).collect()
    }

    fn policy(&self) -> VerificationPolicy {
        // Identities are matched afterwards, by every signer of this root.
        let mut p = VerificationPolicy::any_identity();
        if !self.tlog {
            p = p.skip_tlog_unsafe();
        }
        if !self.sct {
            p = p.skip_sct();
        }
        p
    }

    /// Verifies `bundle` for the artifact `sha256_hex` against this root.
    pub fn verify(
        &self,
        bundle: &sigstore_verify::types::Bundle,
        sha256_hex: &str,
    ) -> Result<sigstore_verify::VerificationResult, String> {
        let digest = sigstore_verify::types::Sha256Hash::from_hex(sha256_hex).map_err(|e| e.to_string())?;
        self.verifier.verify(digest, bundle, &self.policy()).map_err(|e| e.to_string())
    }

    /// Verifies a managed-key bundle (a public-key hint, no certificate) with
    /// `key_pem`, its log entry and timestamps checked against this root as
    /// a keyless one's would be.
    pub fn verify_with_key(
        &self,
        bundle: &sigstore_verify::types::Bundle,
        sha256_hex: &str,
        key_pem: &str,
    ) -> Result<sigstore_verify::VerificationResult, String> {
        let digest = sigstore_verify::types::Sha256Hash::from_hex(sha256_hex).map_err(|e| e.to_string())?;
        let key = sigstore_verify::types::DerPublicKey::from_pem(key_pem).map_err(|e| e.to_string())?;
        let mut policy = sigstore_verify::PublicKeyVerificationPolicy::new(key);
        if !self.tlog {
            policy = policy.skip_tlog_unsafe();
        }
        self.verifier.verify(digest, bundle, &policy).map_err(|e| e.to_string())
    }
}

/// A string matched exactly or by a regular expression (unanchored, as
/// cosign's `--certificate-identity-regexp`: write `^…$`).
#[derive(Clone, Debug)]
pub enum Match {
    Exact(String),
    Pattern(regex::Regex),
}

impl Match {
    pub fn is_match(&self, s: &str) -> bool {
        match self {
            Match::Exact(e) => e == s,
            Match::Pattern(r) => r.is_match(s),
        }
    }
}

impl fmt::Display for Match {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Match::Exact(e) => f.write_str(e),
            Match::Pattern(r) => write!(f, "/{}/", r.as_str()),
        }
    }
}

/// One identity a keyless signer accepts: the certificate's OIDC issuer and
/// subject (its SAN: a workflow URI, an email).
#[derive(Clone, Debug)]
pub struct IdentityRule {
    pub issuer: Match,
    pub subject: Match,
}

impl IdentityRule {
    pub fn matches(&self, id: &SignerIdentity) -> bool {
        self.issuer.is_match(&id.issuer) && self.subject.is_match(&id.subject)
    }
}

impl fmt::Display for IdentityRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "subject {} from issuer {}", self.subject, self.issuer)
    }
}

/// A keyless signer of the policy: a root and the identities it accepts.
#[derive(Clone, Debug)]
pub struct KeylessSigner {
    pub signer: String,
    /// Index into [`super::Trust`]'s roots.
    pub root: usize,
    pub identities: Vec<IdentityRule>,
}

/// Who a verified certificate says signed, with the CI claims Fulcio copied
/// from the workload's token (GitHub, GitLab, Buildkite set them).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SignerIdentity {
    pub issuer: String,
    pub subject: String,
    /// The trusted root it verified against.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub root: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_repository: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_repository_ref: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_repository_digest: Option<String>,
    /// The workflow (build configuration) that ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build_config: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runner_environment: Option<String>,
}

impl SignerIdentity {
    pub fn of(cert: &CertificateInfo, root: &str) -> SignerIdentity {
        let c = &cert.ci_claims;
        SignerIdentity {
            issuer: cert.issuer.clone().unwrap_or_default(),
            subject: cert.identity.as_ref().map(|i| i.as_str().to_string()).unwrap_or_default(),
            root: root.to_string(),
            source_repository: c.source_repository_uri.clone(),
            source_repository_ref: c.source_repository_ref.clone(),
            source_repository_digest: c.source_repository_digest.clone(),
            build_config: c.build_config_uri.clone(),
            runner_environment: c.runner_environment.clone(),
        }
    }
}

impl fmt::Display for SignerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let or_none = |s: &str| if s.is_empty() { "(none)".to_string() } else { s.to_string() };
        write!(f, "subject {} from issuer {}", or_none(&self.subject), or_none(&self.issuer))
    }
}

/// The identity a certificate claims, read without verifying it: only for
/// wording messages about bundles that failed verification.
pub fn claimed_identity(bundle: &sigstore_verify::types::Bundle) -> Option<SignerIdentity> {
    let cert = bundle.signing_certificate()?;
    sigstore_verify::crypto::parse_certificate_info(cert).ok().map(|c| SignerIdentity::of(&c, ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_roots_load_with_their_domain_rules() {
        let pg = Root::built_in(PUBLIC_GOOD).unwrap().unwrap();
        assert!(pg.tlog && pg.sct, "public-good requires a log entry and an SCT");
        let gh = Root::built_in(GITHUB).unwrap().unwrap();
        assert!(!gh.tlog && !gh.sct, "GitHub's instance has no Rekor and no CT log");
        assert!(Root::built_in("staging").is_none(), "only the named built-ins");
        assert!(pg.validity.iter().any(|v| v.kind == "fulcio" && v.until.is_none()));
    }

    #[test]
    fn bad_roots_are_clear_errors() {
        for (json, want) in [
            ("", "not a trusted root"),
            ("{}", "not a trusted root"),
            (
                r#"{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}"#,
                "no certificate authority",
            ),
        ] {
            let err = Root::from_json("x", json).unwrap_err();
            assert!(err.contains(want), "{json}: {err}");
        }
    }

    #[test]
    fn identities_match_exactly_or_by_pattern() {
        let id = SignerIdentity {
            issuer: "https://token.actions.githubusercontent.com".into(),
            subject: "https://github.com/acme/shop/.github/workflows/release.yml@refs/heads/main".into(),
            ..Default::default()
        };
        let exact = |s: &str| Match::Exact(s.into());
        let re = |s: &str| Match::Pattern(regex::Regex::new(s).unwrap());
        // (issuer, subject, matches)
        let rows = [
            (exact(&id.issuer), exact(&id.subject), true),
            (exact(&id.issuer), exact("https://github.com/acme/shop/.github/workflows/release.yml"), false),
            (exact("https://accounts.google.com"), exact(&id.subject), false),
            (re(r"^https://token\.actions\.githubusercontent\.com$"), re(r"^https://github\.com/acme/.+$"), true),
            (re(r"^https://token\.actions\.githubusercontent\.com$"), re(r"^https://github\.com/evil/.+$"), false),
            (re("githubusercontent"), re("acme"), true),
        ];
        for (issuer, subject, want) in rows {
            let rule = IdentityRule { issuer, subject };
            assert_eq!(rule.matches(&id), want, "{rule}");
        }
    }

    #[test]
    fn a_root_near_its_end_is_reported() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-07-01T00:00:00Z").unwrap().to_utc();
        let root = Root {
            validity: vec![
                KeyValidity { kind: "fulcio", until: None },
                KeyValidity { kind: "tsa", until: Some(now + chrono::Duration::days(10)) },
                KeyValidity { kind: "rekor", until: Some(now + chrono::Duration::days(90)) },
            ],
            ..Root::built_in(PUBLIC_GOOD).unwrap().unwrap()
        };
        let kinds: Vec<&str> = root.expiring(now, EXPIRY_WARNING).iter().map(|v| v.kind).collect();
        assert_eq!(kinds, ["tsa"]);
    }
}
