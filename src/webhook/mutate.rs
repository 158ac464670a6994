//! `/mutate`: pins image tags to the digests `/validate` then judges, and
//! stamps break-glass grants on the pod templates of workloads.
//!
//! Mutating webhooks run before validating ones. Pinning `name:tag` to
//! `name:tag@sha256:…` with the digest resolved here (and cached, so the
//! validator judges the same one) closes the gap between the check and the
//! kubelet's pull: what is judged is what runs, whatever the tag does later
//! and whatever a registry tells different clients. This step never denies:
//! anything it cannot do is left to the validator, which fails closed.

use std::collections::BTreeSet;

use kube::core::admission::{AdmissionRequest, AdmissionResponse};
use kube::core::DynamicObject;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::{AppState, Review, Subject};
use crate::engine::LookupError;
use crate::gate::Place;
use crate::image::{Digest, ImageRef};
use crate::kinds;
use crate::policy::{self, Presented};

/// Which objects `/mutate` pins to digests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum PinImages {
    /// Never: only break-glass grants are stamped.
    Never,
    /// Pods only: the kubelet pulls what was judged, and workload manifests
    /// (what GitOps tools compare) stay as written.
    #[default]
    Pods,
    /// Pods and the pod templates of workloads applied by users (not the
    /// copies controllers make, which inherit their owner's pins).
    All,
}

/// JSON pointer escaping of one path segment (RFC 6901).
fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

pub(super) async fn mutate(st: &AppState, review: &Review, deadline: Instant) -> AdmissionResponse {
    let req = &review.req;
    let resp = AdmissionResponse::from(req);
    let Some(subject) = Subject::of(review) else { return resp };
    let Ok(all) = kinds::images(subject.kind, subject.object) else { return resp };
    let mut warnings: Vec<String> = Vec::new();
    let mut patch: Vec<Value> = Vec::new();

    // The validator's bound on images per review holds here too: nothing is
    // resolved for an object it will deny.
    let distinct: BTreeSet<&str> = all.iter().map(|c| c.image.as_str()).collect();
    if distinct.len() > st.max_images {
        let mut resp = resp;
        resp.warnings = Some(vec![format!(
            "portcullis pinned nothing on {} {}: it names {} distinct images, more than the limit of {} per review",
            subject.kind.kind,
            req.name,
            distinct.len(),
            st.max_images
        )]);
        return resp;
    }

    // What to pin: new or changed images of the objects in scope, written
    // by tag. A tier that requires digests has the pod templates users
    // apply pinned too, whatever `--pin-images` says (but never): by tag,
    // they would be denied.
    let policy = st.policy();
    let tier = st.gate.tier(Place::Namespace(&subject.namespace), &policy).await;
    let requires_digest = tier.as_ref().ok().and_then(|t| policy.tier(t.as_str())).is_some_and(|t| t.require_digest);
    let copy = kinds::controller(subject.object).is_some();
    let in_scope = match st.pin {
        PinImages::Never => false,
        PinImages::Pods if !requires_digest => !subject.kind.is_template(),
        PinImages::Pods | PinImages::All => !subject.kind.is_template() || !copy,
    };
    // On UPDATE only images that changed: pinning an unchanged one would
    // restart its container for nothing.
    let changed: BTreeSet<String> =
        subject.changed(all.clone(), &req.operation).into_iter().map(|c| c.pointer).collect();
    let parsed: Vec<Option<ImageRef>> = all.iter().map(|c| ImageRef::parse(&c.image).ok()).collect();
    let to_pin: Vec<usize> = if in_scope {
        (0..all.len())
            .filter(|&i| changed.contains(&all[i].pointer) && parsed[i].as_ref().is_some_and(|r| r.digest.is_none()))
            .collect()
    } else {
        vec![]
    };

    // A grant, for a user allowed to break glass who asks for it on a
    // workload by writing the justification in this very request (copies a
    // controller makes carry it from the template; a justification someone
    // wrote earlier asks nothing of this request's user).
    let asks = subject.break_glass_request(req, st);
    let wants_grant = subject.kind.is_template() && asks.written && !asks.controller && !copy;

    // One round of resolutions for both (cached: the validator reuses them).
    let needed: Vec<usize> = if wants_grant { (0..all.len()).collect() } else { to_pin.clone() };
    let refs: Vec<ImageRef> = needed.iter().filter_map(|&i| parsed[i].clone()).collect();
    let keys = if refs.is_empty() { Default::default() } else { subject.keychain(st, deadline).await };
    let resolved = st.gate.engine().resolve_all(&refs, &keys, deadline).await;
    let mut digest_of: Vec<Option<Result<Digest, LookupError>>> = vec![None; all.len()];
    let mut it = resolved.into_iter();
    for &i in &needed {
        if parsed[i].is_some() {
            digest_of[i] = it.next();
        }
    }

    for &i in &to_pin {
        match &digest_of[i] {
            Some(Ok(d)) => patch.push(
                json!({"op": "replace", "path": all[i].pointer, "value": format!("{}@{d}", all[i].image.trim())}),
            ),
            Some(Err(e)) => warnings.push(format!("portcullis could not pin {} to a digest: {e}", all[i].image)),
            None => {}
        }
    }

    if wants_grant {
        match grant(st, req, &subject, &all, &digest_of).await {
            Ok(Some(token)) => patch.extend(grant_patch(&subject, &token)),
            Ok(None) => {}
            Err(why) => warnings.push(format!("no break-glass grant stamped on {}: {why}", req.name)),
        }
    }

    let mut resp = resp;
    if !warnings.is_empty() {
        resp.warnings = Some(crate::policy::decide::bound_warnings(warnings));
    }
    if patch.is_empty() {
        return resp;
    }
    match serde_json::from_value::<json_patch::Patch>(Value::Array(patch))
        .map_err(|e| e.to_string())
        .and_then(|p| resp.clone().with_patch(p).map_err(|e| e.to_string()))
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "could not build the mutation patch");
            resp
        }
    }
}

/// The grant token to stamp, `None` when the object already carries a grant
/// that still holds (re-stamping would change the template and roll the
/// workload out again), or why none can be made.
async fn grant(
    st: &AppState,
    req: &AdmissionRequest<DynamicObject>,
    subject: &Subject<'_>,
    all: &[kinds::ContainerImage],
    digest_of: &[Option<Result<Digest, LookupError>>],
) -> Result<Option<String>, String> {
    let policy = st.policy();
    let now = st.gate.now();
    let tier = st.gate.tier(Place::Namespace(&subject.namespace), &policy).await?;
    let tier_spec = policy.tier(tier.as_str()).ok_or_else(|| format!("tier {tier} is not defined in the policy"))?;
    let object = kinds::object_id(subject.kind, subject.object, &req.name);
    if object.name.is_empty() {
        return Err("a grant is made on a named object (this one has only a generateName)".into());
    }
    let mut images = Vec::new();
    for (c, d) in all.iter().zip(digest_of) {
        match d {
            Some(Ok(d)) => images.push((c.image.clone(), Some(d.clone()))),
            Some(Err(e)) => return Err(format!("could not resolve {}: {e}", c.image)),
            None => return Err(format!("{} is not a valid image reference", c.image)),
        }
    }
    let request = subject.break_glass_request(req, st);
    let digests: BTreeSet<String> = images.iter().filter_map(|(_, d)| d.as_ref().map(|d| d.to_string())).collect();
    let fresh = policy::new_grant(&subject.namespace, &tier, tier_spec, object.clone(), digests, &request, now)?;
    // Keep a grant that still holds for the same justification, ticket and
    // user, from this object or its previous version.
    let by = subject.presenter(req, st);
    let presented = Presented { namespace: &subject.namespace, tier: &tier, object, controller: None, images, by };
    for o in [subject.object, subject.old] {
        let kept = kinds::grant(subject.kind, o).and_then(|t| st.gate.grant_keys().open(t).ok().map(|g| (t, g)));
        if let Some((token, g)) = kept {
            let same = g.justification == fresh.justification && g.ticket == fresh.ticket && g.user == fresh.user;
            let holds = policy::check_grant(&g, &presented, policy::break_glass_max_duration(tier_spec), now).is_ok();
            if same && holds {
                let here = kinds::grant(subject.kind, subject.object);
                return Ok((here != Some(token)).then(|| token.to_string()));
            }
        }
    }
    tracing::info!(user = ?fresh.user, ns = ?fresh.namespace, object = ?fresh.object.to_string(), digests = fresh.digests.len(), "break-glass grant stamped");
    Ok(Some(st.gate.grant_keys().sign(&fresh)))
}

/// JSON patch operations that set the grant annotation on the pod
/// (template) metadata, creating the maps on the way.
fn grant_patch(subject: &Subject<'_>, token: &str) -> Vec<Value> {
    let key = policy::BREAK_GLASS_GRANT_ANNOTATION;
    let meta = subject.kind.metadata;
    match subject.object.pointer(meta) {
        None | Some(Value::Null) => vec![json!({"op": "add", "path": meta, "value": {"annotations": {key: token}}})],
        Some(m) if m.get("annotations").is_none_or(Value::is_null) => {
            vec![json!({"op": "add", "path": format!("{meta}/annotations"), "value": {key: token}})]
        }
        Some(_) => vec![json!({"op": "add", "path": format!("{meta}/annotations/{}", escape(key)), "value": token})],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_patches_apply_whatever_the_template_has() {
        let kind = kinds::of("apps", "Deployment").unwrap();
        fn subject<'o>(kind: &'static kinds::Kind, object: &'o Value) -> Subject<'o> {
            Subject { kind, object, old: &Value::Null, namespace: "prod".into() }
        }
        for object in [
            json!({"spec": {"template": {"spec": {}}}}),
            json!({"spec": {"template": {"metadata": {"labels": {"a": "b"}}, "spec": {}}}}),
            json!({"spec": {"template": {"metadata": {"annotations": null}, "spec": {}}}}),
            json!({"spec": {"template": {"metadata": {"annotations": {"other": "x", policy::BREAK_GLASS_GRANT_ANNOTATION: "old"}}, "spec": {}}}}),
        ] {
            let s = subject(kind, &object);
            let p: json_patch::Patch = serde_json::from_value(Value::Array(grant_patch(&s, "v1.token"))).unwrap();
            let mut patched = object.clone();
            json_patch::patch(&mut patched, &p).unwrap_or_else(|e| panic!("{object}: {e}"));
            assert_eq!(kinds::grant(kind, &patched), Some("v1.token"), "{object}");
        }
    }
}
