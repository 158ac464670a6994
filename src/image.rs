//! Container image references in every form users write them.
//!
//! `name`, `name:tag`, `name@sha256:…`, `name:tag@sha256:…` (the digest wins),
//! Docker Hub short names (`nginx` is `docker.io/library/nginx:latest`), and
//! registries with ports (`127.0.0.1:5000/shop/api`).

use std::fmt;

/// The default registry for references without one, as Docker resolves them.
pub const DOCKER_HUB: &str = "docker.io";

/// A `sha256:<64 hex>` content digest (serialised as that text).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct Digest(String);

impl Digest {
    /// Parses `sha256:<64 lowercase hex>`.
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        let hex = s.strip_prefix("sha256:").ok_or_else(|| ReferenceError::Digest(s.to_string()))?;
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
            return Err(ReferenceError::Digest(s.to_string()));
        }
        Ok(Digest(s.to_string()))
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        use sha2::Digest as _;
        Digest(format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes))))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 64 hex characters after `sha256:`.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    /// A short form for messages: `sha256:0123456789ab`.
    pub fn short(&self) -> &str {
        &self.0[..("sha256:".len() + 12)]
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    #[error("image reference is empty")]
    Empty,
    #[error("image reference {0:?} is too long (more than 512 characters)")]
    TooLong(String),
    #[error("invalid digest {0:?}: expected sha256: followed by 64 lowercase hex characters")]
    Digest(String),
    #[error("invalid image reference {reference:?}: {why}")]
    Invalid { reference: String, why: &'static str },
}

/// A parsed, normalised image reference.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// What the user wrote, for messages.
    pub original: String,
    /// Registry host, with port if any (`docker.io`, `127.0.0.1:5000`).
    pub registry: String,
    /// Repository path (`library/nginx`, `shop/api`).
    pub repository: String,
    /// Tag, if written (or `latest` when neither tag nor digest was written).
    pub tag: Option<String>,
    /// Digest, if written. When both are written the digest wins.
    pub digest: Option<Digest>,
}

impl ImageRef {
    /// Parses a reference as the distribution grammar defines it (the grammar
    /// `docker pull` and the kubelet use): hosts are DNS names, IPv4 or
    /// bracketed IPv6 addresses with an optional port; path components are
    /// lowercase alphanumerics joined by single `.`, `_`, `__` or dashes;
    /// tags are `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`; digests are sha256.
    /// Anything else (`..`, `?`, `#`, spaces) is refused, so a reference can
    /// never address anything but a manifest in a repository.
    ///
    /// Admission sees the same references again and again, and parsing one
    /// (the grammar's regular expression above all) costs more than looking
    /// it up: each answer is remembered, within [`PARSED_BYTES`].
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if s.len() > 512 {
            return Err(ReferenceError::TooLong(s.chars().take(64).collect()));
        }
        static PARSED: std::sync::OnceLock<moka::sync::Cache<String, Result<ImageRef, ReferenceError>>> =
            std::sync::OnceLock::new();
        let parsed = PARSED.get_or_init(|| {
            moka::sync::Cache::builder()
                .weigher(|k: &String, _| weight(PARSED_PER_BYTE * k.len() + std::mem::size_of::<ImageRef>()))
                .max_capacity(PARSED_BYTES)
                .build()
        });
        if let Some(r) = parsed.get(s) {
            return r;
        }
        let r = ImageRef::parse_now(s);
        parsed.insert(s.to_string(), r.clone());
        r
    }

    /// [`ImageRef::parse`] of a trimmed reference of 1 to 512 characters,
    /// not remembered.
    fn parse_now(s: &str) -> Result<Self, ReferenceError> {
        let invalid = |why| ReferenceError::Invalid { reference: s.to_string(), why };
        check_grammar(s).map_err(invalid)?;
        let (name_tag, digest) = match s.split_once('@') {
            Some((n, d)) => (n, Some(Digest::parse(d)?)),
            None => (s, None),
        };
        // A tag follows the last ':' after the last '/' (a ':' before it is a port).
        let last_slash = name_tag.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match name_tag[last_slash..].rfind(':') {
            Some(i) => {
                let i = last_slash + i;
                (&name_tag[..i], Some(name_tag[i + 1..].to_string()))
            }
            None => (name_tag, None),
        };
        if let Some(t) = &tag {
            // The grammar's `\w` is ASCII in the distribution (Go) grammar.
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
                && !t.starts_with(['.', '-']);
            if !ok {
                return Err(invalid("bad tag"));
            }
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest)) if first.contains(['.', ':', '[']) || first == "localhost" => {
                (first.to_string(), rest.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let registry = match registry.as_str() {
            "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
            _ => registry,
        };
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        // The grammar leaves a first component with capitals to be a host;
        // without a '.' or ':' it is not one here, and paths are lowercase.
        if !repository.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/".contains(&b)) {
            return Err(invalid("repository must be lowercase path components"));
        }
        let tag = match (&tag, &digest) {
            (None, None) => Some("latest".to_string()),
            _ => tag,
        };
        Ok(ImageRef { original: s.to_string(), registry, repository, tag, digest })
    }

    /// An image known only by its digest (`sha256:…`), as `portcullis check
    /// --attestation` takes it: no registry, no name.
    pub fn digest_only(digest: Digest) -> Self {
        ImageRef {
            original: digest.to_string(),
            registry: String::new(),
            repository: String::new(),
            tag: None,
            digest: Some(digest),
        }
    }

    /// `registry/repository`, the name attestations are stored under (empty
    /// for an image known only by its digest).
    pub fn name(&self) -> String {
        if self.registry.is_empty() {
            return self.repository.clone();
        }
        format!("{}/{}", self.registry, self.repository)
    }

    /// This image pinned to `digest`: `registry/repository@sha256:…`.
    pub fn pinned(&self, digest: &Digest) -> String {
        format!("{}@{}", self.name(), digest)
    }

    /// True for registries on the loopback interface, which are reached over
    /// plain HTTP (as cosign and crane do).
    pub fn is_loopback_registry(&self) -> bool {
        let host = match self.registry.strip_prefix('[') {
            Some(rest) => rest.split(']').next().unwrap_or(""),
            None => self.registry.split(':').next().unwrap_or(""),
        };
        host == "localhost" || host.parse::<std::net::IpAddr>().map(|ip| ip.is_loopback()).unwrap_or(false)
    }
}

/// What an entry of a cache keyed by text costs besides that text
/// (measured: about 230 bytes of moka's bookkeeping and a small value).
const ENTRY_BYTES: usize = 256;

/// A cache entry's weight in bytes, for caches bounded by bytes: its key's
/// `text` length and [`ENTRY_BYTES`].
pub fn weight(text: usize) -> u32 {
    u32::try_from(text.saturating_add(ENTRY_BYTES)).unwrap_or(u32::MAX)
}

/// Bytes the memo of parsed references holds: about 3,000 references of
/// 100 characters (16,384 references, whatever their length, held 5.4 MB
/// with 10,000 images admitted, when only the grammar's answer was kept).
const PARSED_BYTES: u64 = 2 << 20;

/// What a remembered reference holds per character of its text, about:
/// the key, the original and the registry and repository it splits into.
const PARSED_PER_BYTE: usize = 3;

/// distribution/reference's `ReferenceRegexp`: name (an optional domain,
/// then lowercase path components), tag, digest. Go's `\w` is ASCII, so it
/// is compiled without Unicode classes: the same grammar, and about 1 MiB
/// where a Unicode `\w` made the compiled expression cost some 48 MiB of
/// resident memory (once, in every process).
const REFERENCE: &str = concat!(
    r"^(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*",
    r"(?::[0-9]+)?/)?",
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*",
    r"(?::[\w][\w.-]{0,127})?",
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$",
);

fn reference_grammar() -> Option<&'static regex::Regex> {
    static RE: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    RE.get_or_init(|| regex::RegexBuilder::new(REFERENCE).unicode(false).build().ok()).as_ref()
}

/// Longest repository name the distribution accepts.
const NAME_MAX: usize = 255;

/// The distribution reference grammar (distribution/reference's
/// `ReferenceRegexp`, as `docker pull` and the kubelet read references),
/// checked by its own regular expression. That grammar predates bracketed
/// IPv6 hosts, which the distribution accepts today: such a host is checked
/// as an address and the rest of the reference by the grammar.
fn check_grammar(s: &str) -> Result<(), &'static str> {
    let checked = match s.strip_prefix('[') {
        Some(rest) => {
            let (addr, after) = rest.split_once(']').ok_or("unterminated IPv6 address")?;
            addr.parse::<std::net::Ipv6Addr>().map_err(|_| "bad IPv6 address")?;
            if !after.starts_with([':', '/']) {
                return Err("an IPv6 host must be followed by a port or a path");
            }
            format!("ipv6.invalid{after}")
        }
        None => s.to_string(),
    };
    let grammar = reference_grammar().ok_or("the reference grammar did not compile")?;
    if !grammar.is_match(&checked) {
        let name = checked.split(['@']).next().unwrap_or("");
        let path = name.rsplit_once('/').map_or(name, |(_, last)| last);
        return Err(if name.bytes().any(|b| b.is_ascii_uppercase()) && !path.contains(':') {
            "repository must be lowercase path components"
        } else if path.contains(':') && !checked.contains('@') {
            "bad tag"
        } else if checked.contains('@') {
            "digest must be sha256: followed by 64 lowercase hex characters"
        } else {
            "not a reference in the distribution grammar (host[:port]/path[:tag][@sha256:digest]; \
             path components are lowercase letters and digits joined by '.', '_', '__' or '-')"
        });
    }
    // The repository (the name without its domain) is at most 255 long.
    let name = checked.split('@').next().unwrap_or("");
    let last_slash = name.rfind('/').map(|i| i + 1).unwrap_or(0);
    let name = match name[last_slash..].rfind(':') {
        Some(i) => &name[..last_slash + i],
        None => name,
    };
    let repository = match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => rest,
        _ => name,
    };
    if repository.len() > NAME_MAX {
        return Err("repository name is longer than 255 characters");
    }
    Ok(())
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// A remembered answer is the answer: asked again (trimmed or not), a
    /// reference parses, or is refused, exactly as it was the first time.
    #[test]
    fn a_remembered_reference_is_parsed_the_same() {
        let at = format!("shop/api@{D}");
        for input in ["nginx", " r.example:5000/shop/api:v1 ", at.as_str(), "Shop/API", "a..b", "x@sha256:00", ""] {
            let first = ImageRef::parse(input);
            for _ in 0..2 {
                assert_eq!(ImageRef::parse(input), first, "{input:?}");
                assert_eq!(ImageRef::parse(&format!("\t{input} ")), first, "{input:?}");
            }
            match input.trim() {
                "" => assert_eq!(first, Err(ReferenceError::Empty)),
                s => assert_eq!(ImageRef::parse_now(s), first, "{input:?}"),
            }
        }
    }

    #[test]
    fn forms_users_write() {
        // (input, registry, repository, tag, digest)
        let rows: &[(&str, &str, &str, Option<&str>, bool)] = &[
            ("nginx", "docker.io", "library/nginx", Some("latest"), false),
            ("nginx:1.27", "docker.io", "library/nginx", Some("1.27"), false),
            ("bitnami/redis", "docker.io", "bitnami/redis", Some("latest"), false),
            ("index.docker.io/library/nginx:1", "docker.io", "library/nginx", Some("1"), false),
            ("ghcr.io/acme/api:v2", "ghcr.io", "acme/api", Some("v2"), false),
            ("127.0.0.1:5000/shop/api:v1", "127.0.0.1:5000", "shop/api", Some("v1"), false),
            ("localhost/shop/api", "localhost", "shop/api", Some("latest"), false),
            ("localhost:5000/api", "localhost:5000", "api", Some("latest"), false),
            ("[::1]:5000/shop/api:v1", "[::1]:5000", "shop/api", Some("v1"), false),
            ("ghcr.io/acme/my__app-x.y:V1_2.3-rc", "ghcr.io", "acme/my__app-x.y", Some("V1_2.3-rc"), false),
            (&format!("nginx@{D}"), "docker.io", "library/nginx", None, true),
            (&format!("127.0.0.1:5000/shop/api:v1@{D}"), "127.0.0.1:5000", "shop/api", Some("v1"), true),
        ];
        for (input, registry, repository, tag, has_digest) in rows {
            let r = ImageRef::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.registry, *registry, "{input}");
            assert_eq!(r.repository, *repository, "{input}");
            assert_eq!(r.tag.as_deref(), *tag, "{input}");
            assert_eq!(r.digest.is_some(), *has_digest, "{input}");
        }
    }

    #[test]
    fn rejects_bad_references() {
        let rows = [
            "",
            "UPPER/case",
            "nginx:",
            "nginx@sha256:abc",
            "a//b",
            "nginx:-x",
            &format!("nginx@{}", D.to_uppercase()),
            // Nothing but a manifest in a repository may be addressed.
            "registry.example.com/shop/../v2",
            "registry.example.com/shop/..",
            "registry.example.com/shop/.hidden",
            "registry.example.com/shop/api?ns=other",
            "registry.example.com/shop/api#frag",
            "registry.example.com?x/shop/api",
            "registry.example.com/shop/api:v1?x",
            "registry example.com/shop/api",
            "registry.example.com/shop/api:t\u{e9}",
            "registry.example.com/shop/api@sha512:abcd",
            "[not-an-address]:5000/shop/api",
            "[::1]x/shop/api",
            "-leading.example.com/shop/api",
            // Go's `\w` is ASCII: a Unicode letter is no tag character.
            "registry.example.com/shop/api:\u{3b1}beta",
            // The repository is at most 255 long.
            &format!("registry.example.com/{}", "a".repeat(256)),
        ];
        for bad in rows {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn loopback_detection() {
        for (r, lo) in [
            ("127.0.0.1:5000/a", true),
            ("localhost:1/a", true),
            ("[::1]:5000/a", true),
            ("ghcr.io/a", false),
            ("10.0.0.1:5000/a", false),
        ] {
            assert_eq!(ImageRef::parse(r).unwrap().is_loopback_registry(), lo, "{r}");
        }
    }
}
