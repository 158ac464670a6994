//! What the cluster knows: namespace tiers, from the namespace label read
//! through a kube reflector (a watched cache, no API call per request), or
//! from the policy's static map when running without a cluster; and pull
//! secrets, read on demand.

use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::engine::Keychain;
use crate::policy::Policy;
use crate::registry::Credentials;

/// The default namespace label naming the tier.
pub const TIER_LABEL: &str = "portcullis.dev/tier";

/// Why a namespace has no tier to judge its objects in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TierError {
    #[error("could not read namespace {namespace}: {why}")]
    Unreadable { namespace: String, why: String },
    #[error("namespace {namespace} is in tier {tier:?}, which the policy does not define (defined: {defined})")]
    Undefined { namespace: String, tier: String, defined: String },
    #[error(
        "namespace {namespace} has no {label} label and the policy sets no defaultTier; label the namespace with one of: {defined}"
    )]
    Unlabelled { namespace: String, label: String, defined: String },
}

/// The tier of `namespace`, whose tier label says `labelled`: that tier, or
/// the policy's `defaultTier` when it has none; an error when neither names
/// a tier the policy defines.
pub fn tier_named(
    namespace: &str,
    labelled: Option<String>,
    label: &str,
    policy: &Policy,
) -> Result<String, TierError> {
    let defined = || policy.tier_names().join(", ");
    match labelled.or_else(|| policy.file.spec.default_tier.clone()) {
        Some(t) if policy.tier(&t).is_some() => Ok(t),
        Some(tier) => Err(TierError::Undefined { namespace: namespace.to_string(), tier, defined: defined() }),
        None => Err(TierError::Unlabelled {
            namespace: namespace.to_string(),
            label: label.to_string(),
            defined: defined(),
        }),
    }
}

#[derive(Clone)]
pub enum TierSource {
    /// `spec.namespaceTiers` of the policy, then `spec.defaultTier`.
    Static,
    /// The namespace label, from a reflector over all namespaces.
    Cluster { store: Store<Namespace>, client: Client, label: String, ready: Arc<AtomicBool> },
}

impl TierSource {
    /// Starts a namespace reflector on `client`; the returned source is ready
    /// once the first list has completed (see [`TierSource::ready`]).
    pub fn cluster(client: Client, label: String) -> Self {
        let (store, writer) = reflector::store();
        let api: Api<Namespace> = Api::all(client.clone());
        let stream = watcher(api, watcher::Config::default()).default_backoff().reflect(writer).applied_objects();
        tokio::spawn(async move {
            use futures::StreamExt;
            futures::pin_mut!(stream);
            while let Some(ev) = stream.next().await {
                if let Err(e) = ev {
                    tracing::warn!(error = %e, "namespace watch error; retrying");
                }
            }
        });
        let ready = Arc::new(AtomicBool::new(false));
        let (r, s) = (ready.clone(), store.clone());
        tokio::spawn(async move {
            if s.wait_until_ready().await.is_ok() {
                r.store(true, Ordering::Release);
                tracing::info!(namespaces = s.state().len(), "namespace cache ready");
            }
        });
        TierSource::Cluster { store, client, label, ready }
    }

    pub fn ready(&self) -> bool {
        match self {
            TierSource::Static => true,
            TierSource::Cluster { ready, .. } => ready.load(Ordering::Acquire),
        }
    }

    /// The tier of `namespace`, or why there is none.
    pub async fn tier_of(&self, namespace: &str, policy: &Policy) -> Result<String, TierError> {
        let spec = &policy.file.spec;
        let labelled: Option<String> = match self {
            TierSource::Static => spec.namespace_tiers.get(namespace).cloned(),
            TierSource::Cluster { store, client, label, .. } => {
                let labels = match store.get(&ObjectRef::new(namespace)) {
                    Some(ns) => ns.metadata.labels.clone(),
                    // Not in the cache yet (created a moment ago): ask once.
                    None => match Api::<Namespace>::all(client.clone()).get_opt(namespace).await {
                        Ok(Some(ns)) => ns.metadata.labels,
                        Ok(None) => None,
                        Err(e) => {
                            return Err(TierError::Unreadable { namespace: namespace.to_string(), why: e.to_string() })
                        }
                    },
                };
                labels.and_then(|l| l.get(label).cloned())
            }
        };
        tier_named(namespace, labelled, self.label(), policy)
    }

    pub fn label(&self) -> &str {
        match self {
            TierSource::Static => TIER_LABEL,
            TierSource::Cluster { label, .. } => label,
        }
    }
}

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
