//! `portcullis check`: the gate's decision from a pipeline, on a registry or on attestation files.

use std::process::ExitCode;
use std::sync::Arc;

use portcullis::cluster::TierSource;
use portcullis::engine::{Engine, EngineConfig, Files, Source};
use portcullis::gate::{Ask, Gate, Place, Written};
use portcullis::image::ImageRef;
use portcullis::metrics::Metrics;
use portcullis::policy::GrantKeys;

use super::args::*;
use super::{load_policy, registry};

pub(crate) async fn check(a: CheckArgs) -> anyhow::Result<ExitCode> {
    let policy = Arc::new(load_policy(a.policy.as_ref())?);
    anyhow::ensure!(
        policy.tier_name(&a.tier).is_some(),
        "tier {:?} is not defined in the policy (defined: {})",
        a.tier,
        policy.tier_names().join(", ")
    );
    let now = a.at.unwrap_or_else(portcullis::gate::now);
    // One gate whatever the evidence's source: the registry, or the files given.
    let (source, refs): (Arc<dyn Source>, Vec<ImageRef>) = if a.attestations.is_empty() {
        let refs = a.images.iter().map(|i| ImageRef::parse(i)).collect::<Result<Vec<_>, _>>()?;
        (Arc::new(registry(&a.registry)?), refs)
    } else {
        (Arc::new(Files::read(&a.attestations)?), pinned_images(&a.images)?)
    };
    let engine = Engine::with_source(source, &EngineConfig::default(), Arc::new(Metrics::new()));
    // No break-glass in a pipeline: its keys are never used.
    let gate =
        Gate::new(engine, policy.clone(), TierSource::Static, GrantKeys::random()?).with_clock(Arc::new(move || now));
    let judgement = gate
        .judge(Ask {
            place: Place::Tier(&a.tier),
            what: "the images given".into(),
            images: refs.iter().map(Written::parsed).collect(),
            max_images: None,
            keychain: Default::default(),
            break_glass: Default::default(),
            deadline: tokio::time::Instant::now() + a.timeout,
        })
        .await;
    let decision = judgement.decision;
    let verdicts = &decision.verdicts;
    match a.output {
        Output::Json => {
            let out = serde_json::json!({
                "allowed": decision.allowed,
                "result": decision.outcome,
                "reason": decision.reason,
                "message": decision.message,
                // In full: a pipeline has no 256-byte bound on a warning.
                "warnings": decision.recorded_warnings,
                "tier": a.tier,
                "policyDigest": policy.digest.to_string(),
                "evaluatedAt": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "verdicts": verdicts,
            });
            outln!("{}", serde_json::to_string_pretty(&out)?);
        }
        Output::Text => {
            for v in verdicts {
                // An image written with its digest (or as the digest alone) already names it.
                let digest =
                    v.digest.as_deref().filter(|d| !v.image.ends_with(d)).map(|d| format!("@{d}")).unwrap_or_default();
                if v.error.is_some() && !v.admitted {
                    outln!("ERROR  {}", v.denial_message());
                } else if !v.admitted {
                    outln!("DENY   {}", v.denial_message());
                } else if !v.problems.is_empty() {
                    outln!(
                        "WARN   {}{digest} admitted in tier {} (mode warn) despite: {}",
                        v.image,
                        v.tier,
                        v.problems.join("; ")
                    );
                } else {
                    outln!("ADMIT  {}{digest} for tier {}", v.image, v.tier);
                }
                for n in &v.notes {
                    outln!("       note: {n}");
                }
                for e in &v.exceptions {
                    outln!("       exception: {e}");
                }
            }
            outln!("policy {} evaluated at {}", policy.digest, now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        }
    }
    Ok(ExitCode::from(match decision.outcome {
        portcullis::policy::Outcome::Error => 2,
        _ if decision.allowed => 0,
        _ => 1,
    }))
}

/// `check --attestation`: the images, each named by digest (no registry is
/// asked what a tag means).
pub(crate) fn pinned_images(images: &[String]) -> anyhow::Result<Vec<ImageRef>> {
    use portcullis::image::Digest;
    images
        .iter()
        .map(|i| {
            let r = match Digest::parse(i) {
                Ok(d) => ImageRef::digest_only(d),
                Err(_) => ImageRef::parse(i)?,
            };
            anyhow::ensure!(
                r.digest.is_some(),
                "{i}: with --attestation, name images by digest (sha256:<hex> or {}@sha256:<hex>), since no registry is asked what a tag means",
                r.name()
            );
            Ok(r)
        })
        .collect()
}
