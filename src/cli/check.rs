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
use super::outputs::{self, Checked, Judged, Origin};
use super::{load_policy, registry, tiers_named};
use portcullis::policy::EvidenceKind;

pub(crate) async fn check(a: CheckArgs) -> anyhow::Result<ExitCode> {
    let policy = Arc::new(load_policy(a.policy.as_ref())?);
    // `--tier staging,production`: each judged, the answer decided once.
    let tiers = tiers_named(&policy, Some(&a.tier))?;
    let now = a.at.unwrap_or_else(portcullis::gate::now);
    // One gate whatever the evidence's source: the registry, or the files given.
    let (source, refs, origin): (Arc<dyn Source>, Vec<ImageRef>, Origin) = if a.attestations.is_empty() {
        let refs = a.images.iter().map(|i| ImageRef::parse(i)).collect::<Result<Vec<_>, _>>()?;
        (Arc::new(registry(&a.registry)?), refs, Origin::Registry)
    } else {
        let files = Files::read(&a.attestations)?;
        let mut origins = std::collections::BTreeMap::new();
        for (digest, path) in files.origins() {
            origins.entry(digest.to_string()).or_insert_with(|| path.to_path_buf());
        }
        (Arc::new(files), pinned_images(&a.images)?, Origin::Files(origins))
    };
    let vex = super::tools::vex_files(&a.vex)?;
    // What the verdicts may rest on besides attestations: the VEX files given, and the files the policy names.
    let mut documents = std::collections::BTreeMap::new();
    for (source, path) in vex.iter().zip(&a.vex) {
        documents.entry(source.digest.clone()).or_insert_with(|| path.clone());
    }
    for (path, digest) in &policy.root_files {
        documents.entry(digest.to_string()).or_insert_with(|| path.into());
    }
    let engine = Engine::with_source(source, &EngineConfig::default(), Arc::new(Metrics::new()));
    // No break-glass in a pipeline: its keys are never used.
    let gate =
        Gate::new(engine, policy.clone(), TierSource::Static, GrantKeys::random()?).with_clock(Arc::new(move || now));
    // One deadline for every tier; the engine's caches look each image up once.
    let deadline = tokio::time::Instant::now() + a.timeout;
    let mut judged = Vec::new();
    for tier in &tiers {
        let judgement = gate
            .judge(Ask {
                place: Place::Tier(tier),
                what: "the images given".into(),
                images: refs.iter().map(Written::parsed).collect(),
                max_images: None,
                keychain: Default::default(),
                break_glass: Default::default(),
                deadline,
                vex: &vex,
            })
            .await;
        judged.push(Judged { requires: requires(&policy, tier), tier: tier.to_string(), decision: judgement.decision });
    }
    let checked = Checked {
        tiers: judged,
        policy_digest: policy.digest.to_string(),
        policy_uri: outputs::policy_uri(a.policy.as_deref()),
        evaluated_at: now,
        origin,
        documents,
    };
    let code = checked.exit_code();
    Ok(match outputs::write(&checked, &a.outputs)? {
        // A bad output is an error, said after the others are written.
        false => ExitCode::from(2),
        true => ExitCode::from(code),
    })
}

/// What the tier requires, by kind of evidence.
fn requires(policy: &portcullis::policy::Policy, tier: &str) -> Vec<EvidenceKind> {
    let Some(spec) = policy.tier(tier) else { return Vec::new() };
    let mut kinds = Vec::new();
    if spec.vulnerabilities.is_some() {
        kinds.push(EvidenceKind::Vulnerabilities);
    }
    if spec.tests.is_some() {
        kinds.push(EvidenceKind::Tests);
    }
    if spec.provenance.is_some() {
        kinds.push(EvidenceKind::Provenance);
    }
    if !spec.attestations.is_empty() {
        kinds.push(EvidenceKind::Attestation);
    }
    if spec.licenses.is_some() {
        kinds.push(EvidenceKind::Licenses);
    }
    if spec.base_image.is_some() {
        kinds.push(EvidenceKind::BaseImage);
    }
    kinds
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
