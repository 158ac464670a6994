//! Acting on a running workload that no longer passes its tier, where the
//! tier asks for it (`onViolation`): `annotate` marks the workload;
//! `rollback` rolls a Deployment back to its newest previous revision whose
//! images all pass today — never to one that fails, never deleting anything
//! — as `kubectl rollout undo` would. Which revision is pure ([`choose`]);
//! reading the ReplicaSets and patching the Deployment is [`roll_back`]'s.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client};
use serde::Serialize;
use serde_json::json;

/// The annotation on a Deployment its revision is kept in.
const REVISION: &str = "deployment.kubernetes.io/revision";
/// What Portcullis writes on a workload it annotates or rolls back.
pub const VIOLATION_ANNOTATION: &str = "portcullis.dev/violation";
pub const ROLLED_BACK_ANNOTATION: &str = "portcullis.dev/rolled-back";

/// A previous revision of a Deployment: its ReplicaSet, and the pod
/// template that ReplicaSet holds (what a rollback to it applies).
#[derive(Clone, Debug, PartialEq)]
pub struct Revision {
    pub number: i64,
    pub replica_set: String,
    pub images: Vec<String>,
    pub template: PodTemplateSpec,
}

/// The revision to roll back to: the newest older than `current` whose
/// every image passes (`passes` says which do). Two ReplicaSets claiming
/// one revision number (one planted by someone who may create ReplicaSets)
/// make the history ambiguous: an error, and nothing is rolled back.
pub fn choose(
    revisions: &[Revision],
    current: i64,
    passes: impl Fn(&str) -> bool,
) -> Result<Option<&Revision>, RollbackError> {
    let mut by_number: BTreeMap<i64, &str> = BTreeMap::new();
    for r in revisions {
        if let Some(first) = by_number.insert(r.number, &r.replica_set) {
            return Err(RollbackError::DuplicateRevision {
                number: r.number,
                replica_sets: [first.to_string(), r.replica_set.clone()],
            });
        }
    }
    let mut older: Vec<&Revision> = revisions.iter().filter(|r| r.number < current).collect();
    older.sort_by_key(|r| std::cmp::Reverse(r.number));
    Ok(older.into_iter().find(|r| !r.images.is_empty() && r.images.iter().all(|i| passes(i))))
}

/// Every image of a pod template, as admission reads them (init, regular
/// and ephemeral containers, image volumes); empty when the template cannot
/// be read (such a revision is never rolled back to).
pub fn template_images(t: &PodTemplateSpec) -> Vec<String> {
    let Ok(template) = serde_json::to_value(t) else { return vec![] };
    let mut out: Vec<String> = crate::kinds::images(&crate::kinds::POD_TEMPLATE, &json!({ "template": template }))
        .map(|images| images.into_iter().map(|c| c.image).collect())
        .unwrap_or_default();
    out.sort();
    out.dedup();
    out
}

/// What a rollback did, as the audit trail records it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RolledBack {
    pub action: &'static str,
    pub time: String,
    pub namespace: String,
    #[serde(serialize_with = "crate::kinds::ObjectId::serialize_as_text")]
    pub workload: crate::kinds::ObjectId,
    pub tier: String,
    pub from_revision: i64,
    pub to_revision: i64,
    pub replica_set: String,
    pub images_from: Vec<String>,
    pub images_to: Vec<String>,
    pub why: String,
    pub policy_digest: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RollbackError {
    #[error("reading Deployment {0}: {1}")]
    Read(String, kube::Error),
    #[error("Deployment {0} has no revision annotation yet")]
    NoRevision(String),
    #[error("patching Deployment {0}: {1}")]
    Patch(String, kube::Error),
    #[error(
        "revision {number} is claimed by two ReplicaSets ({}, {}): the history is ambiguous, so nothing is rolled back",
        .replica_sets[0],
        .replica_sets[1]
    )]
    DuplicateRevision { number: i64, replica_sets: [String; 2] },
}

/// The Deployment `namespace/name` and its previous revisions.
pub async fn revisions(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<(i64, Vec<String>, Vec<Revision>), RollbackError> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let d = deployments.get(name).await.map_err(|e| RollbackError::Read(name.into(), e))?;
    let current = revision_of(d.metadata.annotations.as_ref()).ok_or_else(|| RollbackError::NoRevision(name.into()))?;
    let uid = d.metadata.uid.clone().unwrap_or_default();
    let running = d.spec.as_ref().map(|s| template_images(&s.template)).unwrap_or_default();
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), namespace);
    let list = sets.list(&ListParams::default()).await.map_err(|e| RollbackError::Read(name.into(), e))?;
    let mut out = Vec::new();
    for rs in list.items {
        let owned = rs.metadata.owner_references.iter().flatten().any(|o| o.controller == Some(true) && o.uid == uid);
        let (Some(number), Some(template)) =
            (revision_of(rs.metadata.annotations.as_ref()), rs.spec.and_then(|s| s.template))
        else {
            continue;
        };
        if owned {
            let images = template_images(&template);
            out.push(Revision { number, replica_set: rs.metadata.name.unwrap_or_default(), images, template });
        }
    }
    Ok((current, running, out))
}

fn revision_of(a: Option<&BTreeMap<String, String>>) -> Option<i64> {
    a?.get(REVISION)?.parse().ok()
}

/// Rolls the Deployment's pod template back to `template` (the chosen
/// revision's, without its `pod-template-hash` label, as `kubectl rollout
/// undo` does) and says why on the Deployment.
pub async fn roll_back(
    client: &Client,
    namespace: &str,
    name: &str,
    mut template: PodTemplateSpec,
    note: &str,
) -> Result<(), RollbackError> {
    if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove("pod-template-hash");
    }
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let patch = json!([{"op": "replace", "path": "/spec/template", "value": template}]);
    let patch: json_patch::Patch =
        serde_json::from_value(patch).map_err(|e| RollbackError::Patch(name.into(), kube::Error::SerdeError(e)))?;
    api.patch(name, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
        .map_err(|e| RollbackError::Patch(name.into(), e))?;
    annotate(client, namespace, name, ROLLED_BACK_ANNOTATION, note).await
}

/// Marks the Deployment with `key: value`.
pub async fn annotate(
    client: &Client,
    namespace: &str,
    name: &str,
    key: &str,
    value: &str,
) -> Result<(), RollbackError> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let patch = json!({"metadata": {"annotations": {key: crate::policy::decide::truncate(value, 1024)}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| RollbackError::Patch(name.into(), e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(number: i64, images: &[&str]) -> Revision {
        let containers: Vec<_> =
            images.iter().enumerate().map(|(i, im)| json!({"name": format!("c{i}"), "image": im})).collect();
        let template: PodTemplateSpec = serde_json::from_value(json!({"spec": {"containers": containers}})).unwrap();
        Revision { number, replica_set: format!("svc-{number}"), images: template_images(&template), template }
    }

    /// The audit record names the workload as `Kind/name` (a contract).
    #[test]
    fn the_rollback_record_names_the_workload_as_text() {
        let record = RolledBack {
            action: "rollback",
            time: "2026-06-01T00:00:00Z".into(),
            namespace: "shop".into(),
            workload: crate::kinds::ObjectId::new("Deployment", "rollfwd"),
            tier: "production".into(),
            from_revision: 3,
            to_revision: 1,
            replica_set: "rollfwd-1".into(),
            images_from: vec![],
            images_to: vec![],
            why: String::new(),
            policy_digest: "sha256:abc".into(),
        };
        let written = serde_json::to_value(&record).unwrap();
        assert_eq!(written["workload"], "Deployment/rollfwd");
        assert_eq!(written["namespace"], "shop");
    }

    #[test]
    fn the_newest_previous_revision_that_passes() {
        let passes = |i: &str| !i.contains("bad");
        let chosen = |revisions: &[Revision], current| choose(revisions, current, passes).unwrap().map(|r| r.number);
        let revisions =
            [rev(1, &["r/a:1"]), rev(2, &["r/b:bad"]), rev(3, &["r/c:bad"]), rev(4, &["r/d:1", "r/side:1"])];
        // Current 3 (fails): 2 fails too, 1 passes.
        assert_eq!(chosen(&revisions, 3), Some(1));
        // Current 5: 4 passes (every image).
        assert_eq!(chosen(&revisions, 5), Some(4));
        // Never forward, never the current one.
        assert_eq!(chosen(&revisions, 1), None);
        // Nothing passes: no rollback.
        let failing = [rev(1, &["r/x:bad"]), rev(2, &["r/y:bad"])];
        assert_eq!(chosen(&failing, 3), None);
        // A revision with one failing image among passing ones fails.
        let mixed = [rev(1, &["r/a:1", "r/side:bad"])];
        assert_eq!(chosen(&mixed, 2), None);
        // A revision without images is no candidate.
        assert_eq!(chosen(&[rev(1, &[])], 2), None);
        // The revision chosen carries its own ReplicaSet's template.
        let picked = choose(&revisions, 5, passes).unwrap().unwrap();
        assert_eq!(template_images(&picked.template), ["r/d:1", "r/side:1"]);
    }

    /// Issue 21, finding 7: a ReplicaSet an editor planted with the chosen
    /// revision's number (owned by the Deployment) was applied instead of
    /// the chosen one, and the trail recorded a rollback that did not
    /// happen. Two ReplicaSets of one revision: nothing is rolled back.
    #[test]
    fn a_revision_claimed_twice_is_never_rolled_back_to() {
        let passes = |i: &str| !i.contains("bad");
        let mut planted = rev(1, &["r/evil:unattested"]);
        planted.replica_set = "svc-planted".into();
        let revisions = [rev(1, &["r/a:1"]), rev(2, &["r/b:bad"]), planted];
        let e = choose(&revisions, 3, passes).unwrap_err();
        assert!(
            matches!(&e, RollbackError::DuplicateRevision { number: 1, replica_sets } if replica_sets == &["svc-1".to_string(), "svc-planted".to_string()]),
            "{e}"
        );
        // Even when the duplicate is not the revision that would be chosen.
        let revisions = [rev(1, &["r/a:1"]), rev(2, &["r/b:bad"]), rev(2, &["r/c:1"])];
        assert!(choose(&revisions, 3, passes).is_err());
    }

    #[test]
    fn every_image_of_a_template_counts() {
        let t: PodTemplateSpec = serde_json::from_value(json!({"spec": {
            "initContainers": [{"name": "i", "image": "r/init:1"}],
            "containers": [{"name": "c", "image": "r/app:1"}],
            "volumes": [{"name": "m", "image": {"reference": "r/model:1"}}]
        }}))
        .unwrap();
        assert_eq!(template_images(&t), ["r/app:1", "r/init:1", "r/model:1"]);
    }
}
