//! `portcullis report`: what runs in the cluster, judged as admission would judge it today.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use portcullis::cluster::TierSource;
use portcullis::engine::{Engine, EngineConfig};
use portcullis::gate::Gate;
use portcullis::metrics::Metrics;
use portcullis::policy::GrantKeys;
use portcullis::webhook;

use super::args::*;
use super::{cluster_client, load_policy, registry};

/// `portcullis report`: lists the Pods and namespaces once, judges every
/// distinct running image in its namespace's tier, prints the rows.
pub(crate) async fn report(a: ReportArgs) -> anyhow::Result<ExitCode> {
    use k8s_openapi::api::core::v1::Namespace;
    // Each Pod read as far as it says what it runs, not whole.
    use portcullis::watch::report::table;
    use portcullis::watch::running::Pod;
    let policy = Arc::new(load_policy(a.policy.as_ref())?);
    let client = cluster_client(a.kubeconfig.as_deref()).await?;
    let list = kube::api::ListParams::default();
    let pods = match &a.namespace {
        Some(ns) => kube::Api::<Pod>::namespaced(client.clone(), ns).list(&list).await,
        None => kube::Api::<Pod>::all(client.clone()).list(&list).await,
    }
    .context("listing Pods")?
    .items;
    let pull_secrets =
        a.pull_secrets.then(|| portcullis::cluster::PullSecrets::new(client.clone(), Duration::from_secs(60)));
    let namespaces: std::collections::HashMap<String, Option<String>> = kube::Api::<Namespace>::all(client)
        .list(&list)
        .await
        .context("listing namespaces")?
        .items
        .into_iter()
        .map(|n| {
            let tier = n.metadata.labels.as_ref().and_then(|l| l.get(&a.tier_label).cloned());
            (n.metadata.name.unwrap_or_default(), tier)
        })
        .collect();
    let now = a.at.unwrap_or_else(webhook::portcullis_now);
    let engine = Engine::new(registry(&a.registry)?, &EngineConfig::default(), Arc::new(Metrics::default()));
    // The namespaces' tiers were read above, once: the gate is asked by tier.
    let keys = GrantKeys::random()?;
    let gate = Gate::new(engine, policy.clone(), TierSource::Static, keys).with_clock(Arc::new(move || now));
    let deadline = tokio::time::Instant::now() + a.timeout;
    let running = portcullis::watch::running::images(&pods)
        .into_iter()
        .filter(|r| a.namespace.is_some() || !a.exclude_namespaces.contains(&r.namespace))
        .map(|r| {
            let labelled = namespaces.get(&r.namespace).cloned().flatten();
            let tier = portcullis::cluster::tier_named(&r.namespace, labelled, &a.tier_label, &policy);
            (r, tier.map_err(|e| e.to_string()))
        })
        .collect();
    let rows = portcullis::watch::report::judge(&gate, pull_secrets.as_ref(), running, deadline).await;
    let failing = rows.iter().filter(|r| !r.status.passes()).count();
    match a.output {
        Output::Json => outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "policyDigest": policy.digest.to_string(),
                "evaluatedAt": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "failing": failing,
                "rows": rows,
            }))?
        ),
        Output::Text => out!("{}", table(&rows, a.all)),
    }
    Ok(ExitCode::from(if failing == 0 { 0 } else { 1 }))
}
