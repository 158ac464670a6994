//! Pull secrets, read on demand: the credentials a Pod's own
//! `imagePullSecrets` and its service account's give, for looking its images
//! up as the kubelet would pull them.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::{Api, Client};

use crate::engine::Keychain;
use crate::registry::Credentials;

/// Pull secrets, read on demand from the API (`get` on secrets and service
/// accounts; never list or watch) and kept briefly. A secret is only ever
/// read from the namespace of the object under review, so one namespace's
/// credentials never serve another's images.
pub struct PullSecrets {
    client: Client,
    secrets: moka::future::Cache<(String, String), Result<Arc<Credentials>, String>>,
    accounts: moka::future::Cache<(String, String), Result<Vec<String>, String>>,
}

/// Most pull secrets one request may name (its own and its service account's).
pub const MAX_PULL_SECRETS: usize = 16;

impl PullSecrets {
    /// `ttl`: how long a secret or service account read is reused.
    pub fn new(client: Client, ttl: std::time::Duration) -> Self {
        PullSecrets {
            client,
            secrets: moka::future::Cache::builder().max_capacity(10_000).time_to_live(ttl).build(),
            accounts: moka::future::Cache::builder().max_capacity(10_000).time_to_live(ttl).build(),
        }
    }

    /// The credentials a Pod in `namespace` may pull with, in the kubelet's
    /// order: its own `imagePullSecrets`, then its service account's.
    pub async fn keychain(&self, namespace: &str, pod_secrets: &[String], service_account: &str) -> Keychain {
        let mut keys = Keychain::default();
        let mut names: Vec<String> = pod_secrets.to_vec();
        match self.account_secrets(namespace, service_account).await {
            Ok(more) => names.extend(more),
            Err(e) => keys.unreadable.push(format!("service account {namespace}/{service_account} ({e})")),
        }
        let mut seen = std::collections::HashSet::new();
        names.retain(|n| seen.insert(n.clone()));
        if names.len() > MAX_PULL_SECRETS {
            keys.unreadable
                .push(format!("{} pull secrets past the first {MAX_PULL_SECRETS}", names.len() - MAX_PULL_SECRETS));
            names.truncate(MAX_PULL_SECRETS);
        }
        for name in names {
            match self.secret(namespace, &name).await {
                Ok(c) => keys.secrets.push(c),
                Err(e) => keys.unreadable.push(format!("pull secret {namespace}/{name} ({e})")),
            }
        }
        keys
    }

    async fn account_secrets(&self, namespace: &str, name: &str) -> Result<Vec<String>, String> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
        let name = name.to_string();
        self.accounts
            .get_with((namespace.to_string(), name.clone()), async move {
                match api.get_opt(&name).await {
                    Ok(Some(sa)) => Ok(sa.image_pull_secrets.unwrap_or_default().into_iter().map(|r| r.name).collect()),
                    // Not created yet: the Pod would not be admitted by the API server either.
                    Ok(None) => Ok(vec![]),
                    Err(e) => Err(short(&e)),
                }
            })
            .await
    }

    async fn secret(&self, namespace: &str, name: &str) -> Result<Arc<Credentials>, String> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let (ns, name) = (namespace.to_string(), name.to_string());
        self.secrets
            .get_with((ns.clone(), name.clone()), async move {
                let secret = api.get_opt(&name).await.map_err(|e| short(&e))?.ok_or("not found")?;
                let source = format!("pull secret {ns}/{name}");
                let data = secret.data.unwrap_or_default();
                let parsed = match secret.type_.as_deref() {
                    Some("kubernetes.io/dockerconfigjson") => data
                        .get(".dockerconfigjson")
                        .map(|b| Credentials::from_config(&b.0, &source))
                        .ok_or("no .dockerconfigjson in it")?,
                    Some("kubernetes.io/dockercfg") => data
                        .get(".dockercfg")
                        .map(|b| Credentials::from_dockercfg(&b.0, &source))
                        .ok_or("no .dockercfg in it")?,
                    other => return Err(format!("not a pull secret (type {})", other.unwrap_or("none"))),
                };
                parsed.map(Arc::new).map_err(|e| e.to_string())
            })
            .await
    }
}

/// An API error in a few words (`forbidden`, `not found`).
fn short(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} {}", s.code, s.reason.to_lowercase()),
        other => other.to_string(),
    }
}
