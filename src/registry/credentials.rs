//! Registry credentials from a Docker `config.json` (`auths`), the format of
//! `kubernetes.io/dockerconfigjson` pull secrets.

use std::collections::HashMap;

use base64::Engine as _;
use serde::Deserialize;

#[derive(Clone, Debug, Default)]
pub struct Credentials {
    by_registry: HashMap<String, (String, String)>,
}

#[derive(Debug, thiserror::Error)]
#[error("registry credentials: {0}")]
pub struct CredentialsError(String);

#[derive(Deserialize)]
struct Config {
    #[serde(default)]
    auths: HashMap<String, Entry>,
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

impl Credentials {
    pub fn from_docker_config(json: &[u8]) -> Result<Self, CredentialsError> {
        let c: Config =
            serde_json::from_slice(json).map_err(|e| CredentialsError(format!("not a Docker config.json: {e}")))?;
        let mut by_registry = HashMap::new();
        for (host, e) in c.auths {
            let pair = match (e.auth, e.username, e.password) {
                (Some(a), _, _) => {
                    let raw = base64::engine::general_purpose::STANDARD
                        .decode(a.trim())
                        .map_err(|_| CredentialsError(format!("{host}: auth is not base64")))?;
                    let s =
                        String::from_utf8(raw).map_err(|_| CredentialsError(format!("{host}: auth is not UTF-8")))?;
                    let (u, p) = s
                        .split_once(':')
                        .ok_or_else(|| CredentialsError(format!("{host}: auth is not user:password")))?;
                    (u.to_string(), p.to_string())
                }
                (None, Some(u), Some(p)) => (u, p),
                _ => continue,
            };
            by_registry.insert(normalise_host(&host), pair);
        }
        Ok(Credentials { by_registry })
    }

    pub fn get(&self, registry: &str) -> Option<(&str, &str)> {
        self.by_registry.get(registry).map(|(u, p)| (u.as_str(), p.as_str()))
    }
}

/// `https://index.docker.io/v1/` and friends name Docker Hub.
fn normalise_host(h: &str) -> String {
    let h = h.trim_start_matches("https://").trim_start_matches("http://");
    let h = h.split('/').next().unwrap_or(h);
    match h {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => crate::image::DOCKER_HUB.to_string(),
        other => other.to_string(),
    }
}
