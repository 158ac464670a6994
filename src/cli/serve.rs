//! `portcullis serve`: the webhook, wired from its flags: the policy and its reload, the registry, the engine and the gate, the cluster's tiers, pull secrets, events and leader, re-evaluation, the audit trail, the servers, and a clean shutdown.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use portcullis::audit::{AuditKeys, AuditLog, AuditOptions};
use portcullis::cluster::TierSource;
use portcullis::engine::{Engine, EngineConfig};
use portcullis::gate::Gate;
use portcullis::metrics::Metrics;
use portcullis::policy::GrantKeys;
use portcullis::webhook::{self, AppState};

use super::args::*;
use super::{cluster_client, load_policy, registry};

pub(crate) async fn serve(a: ServeArgs) -> anyhow::Result<()> {
    if a.pull_secrets && a.client_ca.is_none() && !a.pull_secrets_without_client_auth {
        anyhow::bail!(
            "--pull-secrets needs --client-ca: Portcullis logs in to registries with the pull secrets an \
             AdmissionReview names, and without client authentication anyone who can reach the webhook port can \
             send a forged review naming any namespace's secrets. Give --client-ca (the CA of the API server's \
             client certificate), or accept the risk with --pull-secrets-without-client-auth"
        );
    }
    let policy = load_policy(a.policy.as_ref()).context("refusing to start on an invalid policy")?;
    let source = a.policy.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "embedded default".into());
    tracing::info!(digest = %policy.digest, source = %source, "policy loaded");
    for w in policy.warnings(webhook::portcullis_now(), portcullis::attest::keyless::EXPIRY_WARNING) {
        tracing::warn!("{w}");
    }
    let Cluster { tiers, pull_secrets, events, reevaluation } = cluster(&a).await?;
    let metrics = Arc::new(Metrics::new());
    metrics.policy_info(policy.digest.as_str(), &source);
    let cfg = EngineConfig {
        tag_ttl: a.tag_cache_ttl,
        evidence_ttl: a.evidence_cache_ttl,
        negative_ttl: a.negative_cache_ttl,
        error_ttl: a.error_cache_ttl,
        ..EngineConfig::default()
    };
    let engine = Engine::new(registry(&a.registry)?.with_metrics(metrics.clone()), &cfg, metrics.clone());
    let (grant_keys, audit_keys) = (grant_keys(&a)?, audit_keys(&a)?);
    let state = Arc::new(AppState {
        gate: Arc::new(Gate::new(engine, policy, tiers, grant_keys)),
        metrics,
        audit: AuditLog::open_with(
            &a.audit_log,
            AuditOptions {
                max_bytes: a.audit_max_bytes,
                anchor_interval: a.audit_anchor_interval,
                keys: audit_keys,
                sync: a.audit_sync.into(),
                ..AuditOptions::default()
            },
        )
        .with_context(|| format!("opening audit log {}", a.audit_log))?,
        deadline: a.deadline,
        record_dir: a.record_dir.clone(),
        max_images: a.max_images_per_review,
        pin: a.pin_images,
        body_timeout: a.body_timeout,
        pull_secrets,
        events,
        timelines: Default::default(),
        controller_users: a.controller_users.clone(),
        reading: Arc::new(tokio::sync::Semaphore::new(a.review_bytes_in_flight.max(webhook::MAX_BODY))),
    });
    let client_auth = a.client_ca.clone().map(|ca| webhook::ClientAuth { ca, names: a.client_names.clone() });
    match &client_auth {
        Some(c) => {
            tracing::info!(client_ca = %c.ca.display(), names = ?c.names, "only clients with a certificate from the client CA may ask for reviews")
        }
        None => tracing::warn!(
            "no --client-ca: anyone who can reach the webhook port may ask for reviews; \
             keep the port reachable from the API server only (README, Security model)"
        ),
    }
    let tls = webhook::ServingTls::load(&a.tls_cert, &a.tls_key, client_auth)
        .await
        .context("loading the serving certificate and key (`make certs` makes dev ones) and the client CA")?;
    if let Some((client, cfg)) = reevaluation {
        tracing::info!(every = ?cfg.every, lease = %cfg.lease_namespace, "re-evaluating running workloads (one replica)");
        portcullis::watch::reevaluate::start(state.clone(), client, cfg);
    }
    webhook::spawn_reloader(state.clone(), a.policy.clone(), tls.clone(), a.reload_interval);
    let (server, handles) = listen(&a, &state, &tls).await?;
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        for handle in handles {
            handle.graceful_shutdown(Some(Duration::from_secs(10)));
        }
    });
    let served = server.task.await.context("server task").and_then(|r| r.context("server"));
    // Every decision made is written before the process ends, unless the
    // audit destination takes none of it for AUDIT_CLOSE_WAIT (a pipe no
    // one reads): then the process ends all the same, saying so.
    if tokio::time::timeout(AUDIT_CLOSE_WAIT, state.audit.close()).await.is_err() {
        tracing::error!(
            waited = ?AUDIT_CLOSE_WAIT,
            "the audit destination took nothing for the whole wait at shutdown: the records still queued are not written"
        );
    }
    served
}

/// Longest wait at shutdown for the audit writer to write what is queued.
pub(crate) const AUDIT_CLOSE_WAIT: Duration = Duration::from_secs(10);

pub(crate) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// What the cluster gives `serve`: the tier source, and, with a cluster,
/// pull secrets (when asked for), Events and re-evaluation.
struct Cluster {
    tiers: TierSource,
    pull_secrets: Option<portcullis::cluster::PullSecrets>,
    events: Option<portcullis::cluster::events::Events>,
    reevaluation: Option<(kube::Client, portcullis::watch::reevaluate::Config)>,
}

async fn cluster(a: &ServeArgs) -> anyhow::Result<Cluster> {
    let (mut pull_secrets, mut events, mut reevaluation) = (None, None, None);
    let tiers = match a.cluster {
        ClusterMode::Never => TierSource::Static,
        mode => match cluster_client(a.kubeconfig.as_deref()).await {
            Ok(client) => {
                tracing::info!(label = %a.tier_label, "tiers from namespace labels (cluster)");
                if a.pull_secrets {
                    tracing::info!("images looked up with the pull secrets of each object's namespace, then Portcullis' own credentials");
                    pull_secrets = Some(portcullis::cluster::PullSecrets::new(client.clone(), a.pull_secret_ttl));
                }
                let instance = std::env::var("POD_NAME")
                    .ok()
                    .or_else(|| std::env::var("HOSTNAME").ok())
                    .unwrap_or_else(|| "portcullis".into());
                events = Some(portcullis::cluster::events::Events::start(
                    client.clone(),
                    instance.clone(),
                    a.event_series_window,
                ));
                if a.policy.is_none() && !a.reevaluate_every.is_zero() {
                    tracing::info!(
                        "no re-evaluation on the embedded default policy: give --policy to re-judge running workloads"
                    );
                }
                reevaluation = (!a.reevaluate_every.is_zero() && a.policy.is_some()).then(|| {
                    (
                        client.clone(),
                        portcullis::watch::reevaluate::Config {
                            every: a.reevaluate_every,
                            lease_namespace: a.lease_namespace.clone(),
                            identity: instance,
                            skip: a.exclude_namespaces.clone(),
                        },
                    )
                });
                TierSource::cluster(client, a.tier_label.clone())
            }
            Err(e) if mode == ClusterMode::Always || a.kubeconfig.is_some() => {
                return Err(anyhow::anyhow!("no Kubernetes configuration: {e:#}"))
            }
            Err(_) => {
                tracing::info!("no Kubernetes configuration: tiers from the policy's namespaceTiers and defaultTier");
                TierSource::Static
            }
        },
    };
    if a.pull_secrets && pull_secrets.is_none() {
        anyhow::bail!(
            "--pull-secrets needs a cluster to read the secrets from (no Kubernetes configuration, or --cluster never)"
        );
    }
    Ok(Cluster { tiers, pull_secrets, events, reevaluation })
}

/// The break-glass grant keys (`--grant-key`), or a random key of this process.
fn grant_keys(a: &ServeArgs) -> anyhow::Result<GrantKeys> {
    Ok(match &a.grant_key {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading grant key {}", p.display()))?;
            GrantKeys::from_text(&text).with_context(|| format!("grant key {}", p.display()))?
        }
        None => {
            tracing::warn!(
                "no --grant-key: break-glass grants are signed with a random key of this process; \
                 with several replicas, give them all the same key file"
            );
            GrantKeys::random()?
        }
    })
}

/// The audit trail's keys (`--audit-key`), if any.
fn audit_keys(a: &ServeArgs) -> anyhow::Result<Option<AuditKeys>> {
    Ok(match &a.audit_key {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Some(AuditKeys::from_text(&text).with_context(|| format!("audit key {}", p.display()))?)
        }
        None => None,
    })
}

/// The review server, and the metrics server when it has a port of its own
/// (`--metrics-listen`); and the handles that stop them.
async fn listen(
    a: &ServeArgs,
    state: &Arc<AppState>,
    tls: &webhook::ServingTls,
) -> anyhow::Result<(webhook::Server, Vec<webhook::Handle>)> {
    let limits = webhook::ServerLimits {
        max_connections: a.max_connections,
        max_connections_per_peer: a.max_connections_per_peer,
        first_request_timeout: a.first_request_timeout,
        header_timeout: a.header_timeout,
        body_timeout: a.body_timeout,
        idle_timeout: a.idle_timeout,
        ..Default::default()
    };
    let mut handles = Vec::new();
    if let Some(listen) = a.metrics_listen {
        let metrics = webhook::serve_metrics(state.clone(), listen, tls, limits.clone())
            .await
            .with_context(|| format!("listening on {listen} (metrics)"))?;
        tracing::info!(metrics_addr = %metrics.addr, "metrics on https://{}/metrics", metrics.addr);
        handles.push(metrics.handle.clone());
    }
    let server = webhook::serve(state.clone(), a.listen, tls, limits)
        .await
        .with_context(|| format!("listening on {}", a.listen))?;
    tracing::info!(addr = %server.addr, "portcullis serving https://{}/validate", server.addr);
    handles.push(server.handle.clone());
    Ok((server, handles))
}
