//! Registry credentials: Docker `config.json` (`auths`, `credHelpers`,
//! `credsStore`), the format of `kubernetes.io/dockerconfigjson` pull
//! secrets, and the older `.dockercfg` of `kubernetes.io/dockercfg` ones.
//!
//! A lookup authenticates as an [`Auth`]: Portcullis' own credentials (its
//! credentials file, and the credential helpers it names, run as docker and
//! crane run them), or a pull secret's login, which only ever serves the
//! namespace the secret lives in.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::Deserialize;

/// A username and password for one registry, and where they came from.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Login {
    /// For messages: `pull secret shop/regcred`, `credential helper ecr-login`.
    pub source: String,
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Login").field("source", &self.source).field("username", &self.username).finish()
    }
}

impl Login {
    /// Identifies the login without revealing it (a digest of the secret
    /// part): for cache keys.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest as _;
        let h = sha2::Sha256::digest(format!("{}\0{}\0{}", self.source, self.username, self.password));
        hex::encode(&h[..8])
    }
}

/// How one lookup authenticates.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Auth {
    /// Portcullis' own credentials for the registry (credentials file,
    /// credential helpers), else anonymous. What is learnt this way serves
    /// every namespace, as the node's credentials serve every Pod.
    Own,
    /// A pull secret's login: what is learnt with it serves only lookups
    /// made with the same login.
    Secret(Login),
}

impl Auth {
    /// The cache scope of what this login learns: empty for Portcullis' own.
    pub fn scope(&self) -> String {
        match self {
            Auth::Own => String::new(),
            Auth::Secret(l) => format!("{}#{}", l.source, l.fingerprint()),
        }
    }
}

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
#[error("registry credentials: {0}")]
pub struct CredentialsError(pub String);

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Config {
    #[serde(default)]
    auths: HashMap<String, Entry>,
    #[serde(default)]
    cred_helpers: HashMap<String, String>,
    #[serde(default)]
    creds_store: Option<String>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// Logins by registry host, from one config.
#[derive(Default)]
pub struct Credentials {
    /// Where these came from, for messages (`pull secret shop/regcred`).
    source: String,
    by_registry: HashMap<String, (String, String)>,
    helpers: HashMap<String, String>,
    store: Option<String>,
    /// Helper answers, kept for [`HELPER_TTL`].
    helped: Mutex<HashMap<String, (Option<Login>, Instant)>>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let registries: Vec<&String> = self.by_registry.keys().collect();
        f.debug_struct("Credentials")
            .field("source", &self.source)
            .field("registries", &registries)
            .field("helpers", &self.helpers)
            .field("store", &self.store)
            .finish()
    }
}

/// How long a credential helper's answer is reused.
pub const HELPER_TTL: Duration = Duration::from_secs(300);
/// How long a credential helper may run.
pub const HELPER_TIMEOUT: Duration = Duration::from_secs(10);
/// Most output read from a credential helper.
const HELPER_OUTPUT: usize = 64 << 10;

impl Credentials {
    /// A Docker `config.json`; `source` names it in messages.
    pub fn from_docker_config(json: &[u8]) -> Result<Self, CredentialsError> {
        Credentials::from_config(json, "Portcullis' credentials file")
    }

    pub fn from_config(json: &[u8], source: &str) -> Result<Self, CredentialsError> {
        let bad = |why: String| CredentialsError(format!("{source}: not a Docker config.json: {why}"));
        let v: serde_json::Value = serde_json::from_slice(json).map_err(|e| bad(e.to_string()))?;
        if !v.is_object() {
            return Err(bad("not a JSON object".into()));
        }
        let c: Config = serde_json::from_value(v).map_err(|e| bad(e.to_string()))?;
        let mut out = Credentials::from_auths(c.auths, source)?;
        out.helpers = c.cred_helpers.into_iter().map(|(h, n)| (normalise_host(&h), n)).collect();
        out.store = c.creds_store.filter(|s| !s.is_empty());
        for name in out.helpers.values().chain(out.store.iter()) {
            check_helper_name(name)?;
        }
        Ok(out)
    }

    /// The older `.dockercfg` format: the `auths` map alone.
    pub fn from_dockercfg(json: &[u8], source: &str) -> Result<Self, CredentialsError> {
        let auths: HashMap<String, Entry> =
            serde_json::from_slice(json).map_err(|e| CredentialsError(format!("{source}: not a .dockercfg: {e}")))?;
        Credentials::from_auths(auths, source)
    }

    fn from_auths(auths: HashMap<String, Entry>, source: &str) -> Result<Self, CredentialsError> {
        let mut by_registry = HashMap::new();
        for (host, e) in auths {
            let pair = match (e.auth, e.username, e.password) {
                (Some(a), _, _) if !a.trim().is_empty() => {
                    let bad = |why: &str| CredentialsError(format!("{source}: {host}: auth is not {why}"));
                    let raw = base64::engine::general_purpose::STANDARD.decode(a.trim()).map_err(|_| bad("base64"))?;
                    let s = String::from_utf8(raw).map_err(|_| bad("UTF-8"))?;
                    let (u, p) = s.split_once(':').ok_or_else(|| bad("user:password"))?;
                    (u.to_string(), p.to_string())
                }
                (_, Some(u), Some(p)) => (u, p),
                _ => continue,
            };
            by_registry.insert(normalise_host(&host), pair);
        }
        Ok(Credentials { source: source.to_string(), by_registry, ..Default::default() })
    }

    /// Where these credentials came from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The login stored for `registry`, without running helpers.
    pub fn stored(&self, registry: &str) -> Option<Login> {
        self.by_registry.get(registry).map(|(u, p)| Login {
            source: self.source.clone(),
            username: u.clone(),
            password: p.clone(),
        })
    }

    /// The login for `registry`: its credential helper's (`credHelpers`),
    /// else one stored in `auths`, else the default store's (`credsStore`),
    /// as docker resolves them. None: anonymous.
    pub async fn login(&self, registry: &str) -> Result<Option<Login>, CredentialsError> {
        if let Some(helper) = self.helpers.get(registry) {
            return self.helped(helper, registry).await;
        }
        if let Some(l) = self.stored(registry) {
            return Ok(Some(l));
        }
        match &self.store {
            Some(store) => self.helped(store, registry).await,
            None => Ok(None),
        }
    }

    /// `docker-credential-<name> get`, the server on stdin, bounded in time
    /// and output; its answer reused for [`HELPER_TTL`].
    async fn helped(&self, name: &str, registry: &str) -> Result<Option<Login>, CredentialsError> {
        let key = format!("{name}\0{registry}");
        if let Some((l, at)) = self.helped.lock().ok().and_then(|m| m.get(&key).cloned()) {
            if at.elapsed() < HELPER_TTL {
                return Ok(l);
            }
        }
        let login = run_helper(name, registry).await?;
        if let Ok(mut m) = self.helped.lock() {
            m.insert(key, (login.clone(), Instant::now()));
        }
        Ok(login)
    }
}

/// A helper's name becomes part of a program name: letters, digits, `-`, `_`, `.` only.
fn check_helper_name(name: &str) -> Result<(), CredentialsError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(CredentialsError(format!("credential helper name {name:?} is not a plain name")))
    }
}

/// The docker credential helper protocol: `docker-credential-<name> get`
/// reads the server URL on stdin and answers `{"ServerURL", "Username",
/// "Secret"}`, or fails with "credentials not found" on stdout.
async fn run_helper(name: &str, registry: &str) -> Result<Option<Login>, CredentialsError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let program = format!("docker-credential-{name}");
    let err = |why: String| CredentialsError(format!("credential helper {program} for {registry}: {why}"));
    let mut child = tokio::process::Command::new(&program)
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| err(format!("cannot run it ({e}); is it on PATH?")))?;
    let run = async {
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(registry.as_bytes()).await.map_err(|e| err(e.to_string()))?;
        }
        let mut out = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            stdout.take(HELPER_OUTPUT as u64 + 1).read_to_end(&mut out).await.map_err(|e| err(e.to_string()))?;
        }
        let status = child.wait().await.map_err(|e| err(e.to_string()))?;
        Ok::<_, CredentialsError>((status, out))
    };
    let (status, out) = tokio::time::timeout(HELPER_TIMEOUT, run)
        .await
        .map_err(|_| err(format!("no answer within {HELPER_TIMEOUT:?}")))??;
    if out.len() > HELPER_OUTPUT {
        return Err(err(format!("answered more than {HELPER_OUTPUT} bytes")));
    }
    if !status.success() {
        let text = String::from_utf8_lossy(&out);
        if text.to_ascii_lowercase().contains("credentials not found") {
            return Ok(None);
        }
        return Err(err(format!("failed ({status}): {}", text.trim().chars().take(200).collect::<String>())));
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Answer {
        username: String,
        secret: String,
    }
    let a: Answer =
        serde_json::from_slice(&out).map_err(|e| err(format!("answered something else than credentials: {e}")))?;
    Ok(Some(Login { source: format!("credential helper {name}"), username: a.username, password: a.secret }))
}

/// `https://index.docker.io/v1/` and friends name Docker Hub.
pub fn normalise_host(h: &str) -> String {
    let h = h.trim_start_matches("https://").trim_start_matches("http://");
    let h = h.split('/').next().unwrap_or(h);
    match h {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => crate::image::DOCKER_HUB.to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_in_every_form() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let json = format!(
            r#"{{"auths": {{"https://index.docker.io/v1/": {{"auth": "{}"}}, "r.example:5000": {{"username": "u", "password": "p"}}, "empty.example": {{}}}},
               "credHelpers": {{"123.dkr.ecr.us-east-1.amazonaws.com": "ecr-login"}}, "credsStore": "desktop"}}"#,
            b64("hub:s3cr3t-pw")
        );
        let c = Credentials::from_config(json.as_bytes(), "pull secret shop/regcred").unwrap();
        let hub = c.stored("docker.io").unwrap();
        assert_eq!(
            (hub.username.as_str(), hub.password.as_str(), hub.source.as_str()),
            ("hub", "s3cr3t-pw", "pull secret shop/regcred")
        );
        assert_eq!(c.stored("r.example:5000").unwrap().password, "p");
        assert!(c.stored("empty.example").is_none());
        assert_eq!(c.helpers.get("123.dkr.ecr.us-east-1.amazonaws.com").map(String::as_str), Some("ecr-login"));
        assert_eq!(c.store.as_deref(), Some("desktop"));
        let old = format!(r#"{{"r.example": {{"auth": "{}", "email": "x@example.com"}}}}"#, b64("old:pw"));
        assert_eq!(
            Credentials::from_dockercfg(old.as_bytes(), "s").unwrap().stored("r.example").unwrap().username,
            "old"
        );
        // Debug never shows the password.
        assert!(!format!("{hub:?}").contains("s3cr3t") && !format!("{c:?}").contains("s3cr3t"));
    }

    #[test]
    fn bad_configs_are_clear_errors() {
        for (json, want) in [
            ("[]", "not a Docker config.json"),
            (r#"{"auths": {"r": {"auth": "!!"}}}"#, "auth is not base64"),
            (r#"{"auths": {"r": {"auth": "bm9jb2xvbg=="}}}"#, "auth is not user:password"),
            (r#"{"credsStore": "../../bin/sh"}"#, "is not a plain name"),
        ] {
            let e = Credentials::from_config(json.as_bytes(), "f").unwrap_err();
            assert!(e.to_string().contains(want), "{json}: {e}");
        }
    }

    #[test]
    fn scopes_separate_logins_without_revealing_them() {
        let l = |p: &str| Login { source: "pull secret a/s".into(), username: "u".into(), password: p.into() };
        assert_eq!(Auth::Own.scope(), "");
        assert_ne!(Auth::Secret(l("one")).scope(), Auth::Secret(l("two")).scope());
        assert!(!Auth::Secret(l("hunter2")).scope().contains("hunter2"));
    }
}
