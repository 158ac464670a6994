//! Namespace tiers, from the namespace label read through a kube reflector
//! (a watched cache, no API call per request), or from the policy's static
//! map when running without a cluster.

use k8s_openapi::api::core::v1::Namespace;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::policy::Policy;

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
