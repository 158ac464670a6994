//! The base image an image was built on, as its manifest says
//! (`org.opencontainers.image.base.name` and
//! `org.opencontainers.image.base.digest`, written by buildah, podman and ko,
//! and by BuildKit when asked), and what the base's name points to now. Reading the annotations
//! is pure ([`annotated`]); resolving the name now is the engine's, with the
//! same credentials and caches as every lookup; judging it is the policy's
//! (`baseImage`).

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::image::Digest;

/// The annotation naming the base image (a reference with its tag).
pub const NAME: &str = "org.opencontainers.image.base.name";
/// The annotation giving the digest of the base image built on.
pub const DIGEST: &str = "org.opencontainers.image.base.digest";
/// Longest base name read: a reference is far shorter.
const MAX_NAME: usize = 512;

/// What an image's manifest says it was built on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Annotated {
    /// The base's name as written (`docker.io/library/alpine:3.20`).
    pub name: String,
    /// The digest built on, or why it cannot be read (missing, malformed).
    pub digest: Result<Digest, String>,
}

/// The base annotations of a manifest (an image manifest or an index), when
/// it names a base. A manifest that does not parse names none here: what it
/// is is judged elsewhere.
pub fn annotated(manifest: &[u8]) -> Option<Annotated> {
    #[derive(Deserialize)]
    struct Manifest {
        #[serde(default)]
        annotations: Option<std::collections::BTreeMap<String, String>>,
    }
    let m: Manifest = serde_json::from_slice(manifest).ok()?;
    let mut a = m.annotations?;
    let name = a.remove(NAME)?.trim().to_string();
    if name.is_empty() {
        return None;
    }
    if name.len() > MAX_NAME {
        return Some(Annotated {
            name: format!("{}…", name.chars().take(64).collect::<String>()),
            digest: Err(format!("the {NAME} annotation is longer than {MAX_NAME} bytes")),
        });
    }
    let digest = match a.remove(DIGEST) {
        None => Err(format!("the manifest names its base ({NAME}) but not its digest ({DIGEST})")),
        Some(d) => Digest::parse(d.trim()).map_err(|e| format!("the {DIGEST} annotation: {e}")),
    };
    Some(Annotated { name, digest })
}

/// The base of an image: what it was built on, and what its name is now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseImage {
    pub name: String,
    /// The digest built on, or why it is not known.
    pub built_on: Result<Digest, String>,
    /// What the name resolves to now, or why that is not known (the
    /// registry refused, the name does not parse).
    pub now: Result<Current, String>,
}

/// What a base's name resolves to now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Current {
    pub digest: Digest,
    /// The `created` time of its config, when it could be read (for an
    /// index, of its first image).
    pub created: Option<DateTime<Utc>>,
    /// When Portcullis first saw the name resolve to it.
    pub first_seen: DateTime<Utc>,
}

impl Current {
    /// Since when this digest has been available, as far as can be told:
    /// its config's `created`, bounded by when Portcullis first saw it (a
    /// config may claim any time; the first sight is a fact).
    pub fn since(&self) -> DateTime<Utc> {
        self.created.map_or(self.first_seen, |c| c.min(self.first_seen))
    }
}

/// The `created` time of an image config, when it has a valid one.
pub fn created(config: &[u8]) -> Option<DateTime<Utc>> {
    #[derive(Deserialize)]
    struct Config {
        created: Option<String>,
    }
    let c: Config = serde_json::from_slice(config).ok()?;
    DateTime::parse_from_rfc3339(c.created?.trim()).ok().map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

    #[test]
    fn annotations_are_read_as_build_tools_write_them() {
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
               "annotations":{{"{NAME}":"docker.io/library/alpine:3.20","{DIGEST}":"{D}"}}}}"#
        );
        let a = annotated(m.as_bytes()).unwrap();
        assert_eq!(a.name, "docker.io/library/alpine:3.20");
        assert_eq!(a.digest.unwrap().as_str(), D);
    }

    #[test]
    fn what_names_no_base_names_none_and_what_is_half_named_says_so() {
        let cases: &[(&str, Option<&str>)] = &[
            (r#"{"schemaVersion":2}"#, None),
            (r#"{"annotations":{"org.opencontainers.image.created":"2026-01-01T00:00:00Z"}}"#, None),
            (r#"{"annotations":{"org.opencontainers.image.base.name":"  "}}"#, None),
            ("not json", None),
            (r#"{"annotations":{"org.opencontainers.image.base.name":"alpine:3"}}"#, Some("but not its digest")),
            (
                r#"{"annotations":{"org.opencontainers.image.base.name":"alpine:3","org.opencontainers.image.base.digest":"md5:x"}}"#,
                Some("base.digest annotation"),
            ),
        ];
        for (m, want) in cases {
            let got = annotated(m.as_bytes());
            match want {
                None => assert!(got.is_none(), "{m}: {got:?}"),
                Some(w) => {
                    let e = got.expect(m).digest.unwrap_err();
                    assert!(e.contains(w), "{m}: {e}");
                }
            }
        }
        let long = format!(r#"{{"annotations":{{"{NAME}":"{}","{DIGEST}":"{D}"}}}}"#, "a".repeat(600));
        assert!(annotated(long.as_bytes()).unwrap().digest.unwrap_err().contains("longer than"));
    }

    #[test]
    fn a_config_time_is_bounded_by_the_first_sight() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        assert_eq!(created(br#"{"created":"2026-11-01T10:00:00.5Z","os":"linux"}"#), Some(t("2026-11-01T10:00:00.5Z")));
        assert_eq!(created(br#"{"os":"linux"}"#), None);
        assert_eq!(created(br#"{"created":"yesterday"}"#), None);
        let digest = Digest::parse(D).unwrap();
        let seen = t("2026-11-20T00:00:00Z");
        let c = |created| Current { digest: digest.clone(), created, first_seen: seen };
        // Built before it was seen: its build time.
        assert_eq!(c(Some(t("2026-11-10T00:00:00Z"))).since(), t("2026-11-10T00:00:00Z"));
        // A config claiming the future: when it was seen.
        assert_eq!(c(Some(t("2030-01-01T00:00:00Z"))).since(), seen);
        assert_eq!(c(None).since(), seen);
    }
}
