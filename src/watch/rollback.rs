//! Acting on a running workload that no longer passes its tier, where the
//! tier asks for it (`onViolation`): `annotate` marks the workload;
//! `rollback` rolls it back to its newest previous revision whose images all
//! pass today — never to one that fails, never forward, never deleting
//! anything — as `kubectl rollout undo` would. A Deployment keeps its
//! revisions in ReplicaSets; a StatefulSet or a DaemonSet in
//! ControllerRevisions. Which revision is pure ([`choose`], and reading a
//! revision's template, [`controller_revision_template`]); reading the
//! history and patching the workload is [`revisions`]' and [`roll_back`]'s.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Api, Client};
use serde::Serialize;
use serde_json::{json, Value};

use crate::kinds::{self, Kind, ObjectId};

/// The annotation on a Deployment its revision is kept in.
const REVISION: &str = "deployment.kubernetes.io/revision";
/// What Portcullis writes on a workload it annotates or rolls back.
pub const VIOLATION_ANNOTATION: &str = "portcullis.dev/violation";
pub const ROLLED_BACK_ANNOTATION: &str = "portcullis.dev/rolled-back";

/// A workload Portcullis can annotate and roll back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    Deployment,
    StatefulSet,
    DaemonSet,
}

impl Workload {
    /// Every workload kind Portcullis can roll back (what the optional
    /// rollback RBAC grants `get` and `patch` on).
    pub const ALL: [Self; 3] = [Self::Deployment, Self::StatefulSet, Self::DaemonSet];

    /// The workload kind named `kind`, or None for the kinds Portcullis
    /// only reports (Jobs, bare Pods, ReplicaSets of no Deployment…).
    pub fn of(kind: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|w| w.kind().kind == kind)
    }

    /// The pod-bearing kind this workload is.
    pub fn kind(self) -> &'static Kind {
        match self {
            Self::Deployment => &kinds::DEPLOYMENT,
            Self::StatefulSet => &kinds::STATEFUL_SET,
            Self::DaemonSet => &kinds::DAEMON_SET,
        }
    }

    /// Where its revisions are kept, as (API group, plural resource): what
    /// the rollback RBAC grants `list` on.
    pub fn history(self) -> (&'static str, &'static str) {
        match self {
            Self::Deployment => (kinds::REPLICA_SET.group, kinds::REPLICA_SET.plural),
            Self::StatefulSet | Self::DaemonSet => ("apps", "controllerrevisions"),
        }
    }

    fn resource(self) -> ApiResource {
        match self {
            Self::Deployment => ApiResource::erase::<Deployment>(&()),
            Self::StatefulSet => ApiResource::erase::<StatefulSet>(&()),
            Self::DaemonSet => ApiResource::erase::<DaemonSet>(&()),
        }
    }

    fn api(self, client: &Client, namespace: &str) -> Api<DynamicObject> {
        Api::namespaced_with(client.clone(), namespace, &self.resource())
    }
}

/// Where a previous revision is kept: the audit record names it
/// (`replicaSet` or `controllerRevision`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum KeptIn {
    ReplicaSet(String),
    ControllerRevision(String),
}

impl fmt::Display for KeptIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ReplicaSet(name) => write!(f, "ReplicaSet {name}"),
            Self::ControllerRevision(name) => write!(f, "ControllerRevision {name}"),
        }
    }
}

/// A previous revision of a workload: where it is kept, and the pod
/// template it holds (what a rollback to it applies).
#[derive(Clone, Debug, PartialEq)]
pub struct Revision {
    pub number: i64,
    pub kept_in: KeptIn,
    pub images: Vec<String>,
    pub template: PodTemplateSpec,
}

/// The revision to roll back to: the newest older than `current` whose
/// every image passes (`passes` says which do). Two objects claiming one
/// revision number (one planted by someone who may create ReplicaSets or
/// ControllerRevisions) make the history ambiguous: an error, and nothing
/// is rolled back.
pub fn choose(
    revisions: &[Revision],
    current: i64,
    passes: impl Fn(&str) -> bool,
) -> Result<Option<&Revision>, RollbackError> {
    let mut by_number: BTreeMap<i64, &KeptIn> = BTreeMap::new();
    for r in revisions {
        if let Some(first) = by_number.insert(r.number, &r.kept_in) {
            return Err(RollbackError::DuplicateRevision {
                number: r.number,
                kept_in: [first.clone(), r.kept_in.clone()],
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

/// The pod template a StatefulSet's or DaemonSet's ControllerRevision
/// keeps: its `data` is the strategic merge patch `kubectl rollout undo`
/// applies, `{"spec": {"template": {…, "$patch": "replace"}}}`. None when
/// the data holds no template that reads as one.
pub fn controller_revision_template(data: &Value) -> Option<PodTemplateSpec> {
    let mut template = data.pointer("/spec/template")?.clone();
    let fields = template.as_object_mut()?;
    fields.remove("$patch");
    serde_json::from_value(template).ok()
}

/// What a rollback did, as the audit trail records it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RolledBack {
    pub action: &'static str,
    pub time: String,
    pub namespace: String,
    #[serde(serialize_with = "crate::kinds::ObjectId::serialize_as_text")]
    pub workload: ObjectId,
    pub tier: String,
    pub from_revision: i64,
    pub to_revision: i64,
    /// `replicaSet` (a Deployment's) or `controllerRevision` (a
    /// StatefulSet's or DaemonSet's): the revision rolled back to.
    #[serde(flatten)]
    pub kept_in: KeptIn,
    pub images_from: Vec<String>,
    pub images_to: Vec<String>,
    pub why: String,
    pub policy_digest: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RollbackError {
    #[error("reading {0}: {1}")]
    Read(ObjectId, kube::Error),
    #[error("{0} has no revision yet")]
    NoRevision(ObjectId),
    #[error("patching {0}: {1}")]
    Patch(ObjectId, kube::Error),
    #[error(
        "revision {number} is claimed by two objects ({} and {}): the history is ambiguous, so nothing is rolled back",
        .kept_in[0],
        .kept_in[1]
    )]
    DuplicateRevision { number: i64, kept_in: [KeptIn; 2] },
}

/// The revision a workload runs, the images of its pod template, and its
/// previous revisions.
pub struct History {
    pub current: i64,
    pub running: Vec<String>,
    pub revisions: Vec<Revision>,
}

/// The history of `kind/name` in `namespace`: a Deployment's from its
/// ReplicaSets (its revision is its annotation), a StatefulSet's or
/// DaemonSet's from its ControllerRevisions (its revision is the newest, as
/// `kubectl rollout history` counts). Only objects the workload controls
/// count.
pub async fn revisions(
    client: &Client,
    namespace: &str,
    workload: Workload,
    id: &ObjectId,
) -> Result<History, RollbackError> {
    let read = |e| RollbackError::Read(id.clone(), e);
    let object = workload.api(client, namespace).get(&id.name).await.map_err(read)?;
    let uid = object.metadata.uid.clone().unwrap_or_default();
    let running = object
        .data
        .pointer("/spec/template")
        .and_then(|t| serde_json::from_value::<PodTemplateSpec>(t.clone()).ok())
        .map(|t| template_images(&t))
        .unwrap_or_default();
    let controlled =
        |m: &ObjectMeta| m.owner_references.iter().flatten().any(|o| o.controller == Some(true) && o.uid == uid);
    let mut revisions = Vec::new();
    let current = match workload {
        Workload::Deployment => {
            let current = revision_of(object.metadata.annotations.as_ref())
                .ok_or_else(|| RollbackError::NoRevision(id.clone()))?;
            let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), namespace);
            for rs in sets.list(&ListParams::default()).await.map_err(read)?.items {
                let (Some(number), Some(template)) =
                    (revision_of(rs.metadata.annotations.as_ref()), rs.spec.and_then(|s| s.template))
                else {
                    continue;
                };
                if controlled(&rs.metadata) {
                    let images = template_images(&template);
                    let kept_in = KeptIn::ReplicaSet(rs.metadata.name.unwrap_or_default());
                    revisions.push(Revision { number, kept_in, images, template });
                }
            }
            current
        }
        Workload::StatefulSet | Workload::DaemonSet => {
            let kept: Api<ControllerRevision> = Api::namespaced(client.clone(), namespace);
            for cr in kept.list(&ListParams::default()).await.map_err(read)?.items {
                if !controlled(&cr.metadata) {
                    continue;
                }
                // A revision whose data holds no template is kept with no
                // images: never chosen, but still counted (its number is
                // still claimed, and may be the current one).
                let template = cr.data.as_ref().and_then(|d| controller_revision_template(&d.0));
                let images = template.as_ref().map(template_images).unwrap_or_default();
                let kept_in = KeptIn::ControllerRevision(cr.metadata.name.unwrap_or_default());
                revisions.push(Revision {
                    number: cr.revision,
                    kept_in,
                    images,
                    template: template.unwrap_or_default(),
                });
            }
            revisions.iter().map(|r| r.number).max().ok_or_else(|| RollbackError::NoRevision(id.clone()))?
        }
    };
    Ok(History { current, running, revisions })
}

fn revision_of(a: Option<&BTreeMap<String, String>>) -> Option<i64> {
    a?.get(REVISION)?.parse().ok()
}

/// Rolls the workload's pod template back to `template` (the chosen
/// revision's, without the `pod-template-hash` label a Deployment's
/// ReplicaSet adds, as `kubectl rollout undo` does) and says why on the
/// workload.
pub async fn roll_back(
    client: &Client,
    namespace: &str,
    workload: Workload,
    id: &ObjectId,
    mut template: PodTemplateSpec,
    note: &str,
) -> Result<(), RollbackError> {
    if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove("pod-template-hash");
    }
    let patch = json!([{"op": "replace", "path": "/spec/template", "value": template}]);
    let patch: json_patch::Patch =
        serde_json::from_value(patch).map_err(|e| RollbackError::Patch(id.clone(), kube::Error::SerdeError(e)))?;
    workload
        .api(client, namespace)
        .patch(&id.name, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
        .map_err(|e| RollbackError::Patch(id.clone(), e))?;
    annotate(client, namespace, workload, id, ROLLED_BACK_ANNOTATION, note).await
}

/// Marks the workload with `key: value`.
pub async fn annotate(
    client: &Client,
    namespace: &str,
    workload: Workload,
    id: &ObjectId,
    key: &str,
    value: &str,
) -> Result<(), RollbackError> {
    let patch = json!({"metadata": {"annotations": {key: crate::policy::decide::truncate(value, 1024)}}});
    workload
        .api(client, namespace)
        .patch(&id.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| RollbackError::Patch(id.clone(), e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(number: i64, images: &[&str]) -> Revision {
        let containers: Vec<_> =
            images.iter().enumerate().map(|(i, im)| json!({"name": format!("c{i}"), "image": im})).collect();
        let template: PodTemplateSpec = serde_json::from_value(json!({"spec": {"containers": containers}})).unwrap();
        let kept_in = KeptIn::ReplicaSet(format!("svc-{number}"));
        Revision { number, kept_in, images: template_images(&template), template }
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
            kept_in: KeptIn::ReplicaSet("rollfwd-1".into()),
            images_from: vec![],
            images_to: vec![],
            why: String::new(),
            policy_digest: "sha256:abc".into(),
        };
        let written = serde_json::to_value(&record).unwrap();
        assert_eq!(written["workload"], "Deployment/rollfwd");
        assert_eq!(written["namespace"], "shop");
        assert_eq!(written["replicaSet"], "rollfwd-1");
        let record = RolledBack {
            workload: crate::kinds::ObjectId::new("StatefulSet", "db"),
            kept_in: KeptIn::ControllerRevision("db-7c9f".into()),
            ..record
        };
        let written = serde_json::to_value(&record).unwrap();
        assert_eq!(
            (&written["workload"], &written["controllerRevision"]),
            (&json!("StatefulSet/db"), &json!("db-7c9f"))
        );
        assert!(written.get("replicaSet").is_none(), "{written}");
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
        planted.kept_in = KeptIn::ReplicaSet("svc-planted".into());
        let revisions = [rev(1, &["r/a:1"]), rev(2, &["r/b:bad"]), planted];
        let e = choose(&revisions, 3, passes).unwrap_err();
        assert!(
            matches!(&e, RollbackError::DuplicateRevision { number: 1, kept_in } if kept_in == &[KeptIn::ReplicaSet("svc-1".into()), KeptIn::ReplicaSet("svc-planted".into())]),
            "{e}"
        );
        assert!(e.to_string().contains("claimed by two objects (ReplicaSet svc-1 and ReplicaSet svc-planted)"), "{e}");
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

    /// A StatefulSet's ControllerRevision as the StatefulSet controller
    /// writes it (the template as a strategic merge patch that replaces):
    /// its template is read whole; data that holds none is no template.
    #[test]
    fn a_controller_revision_keeps_its_template_as_a_patch() {
        let data = json!({"spec": {"template": {
            "$patch": "replace",
            "metadata": {"labels": {"app": "db"}, "annotations": {"portcullis.dev/break-glass": "why"}},
            "spec": {"initContainers": [{"name": "i", "image": "r/init:1"}],
                     "containers": [{"name": "db", "image": "r/db:2"}]}
        }}});
        let t = controller_revision_template(&data).expect("a template");
        assert_eq!(template_images(&t), ["r/db:2", "r/init:1"]);
        assert_eq!(t.metadata.unwrap().labels.unwrap()["app"], "db");
        for bad in [
            json!({}),
            json!({"spec": {"template": "x"}}),
            json!({"spec": {"template": {"spec": {"containers": 3}}}}),
            json!(null),
        ] {
            assert_eq!(controller_revision_template(&bad), None, "{bad}");
        }
    }

    /// The rules are the kind's: a StatefulSet's or DaemonSet's revisions
    /// (ControllerRevisions) are chosen as a Deployment's are, and one
    /// revision claimed by two ControllerRevisions is never rolled back to.
    #[test]
    fn controller_revisions_are_chosen_by_the_same_rules() {
        let passes = |i: &str| !i.contains("bad");
        let cr = |number, image: &str| {
            let mut r = rev(number, &[image]);
            r.kept_in = KeptIn::ControllerRevision(format!("db-{number}"));
            r
        };
        let revisions = [cr(1, "r/db:1"), cr(2, "r/db:bad"), cr(3, "r/db:bad2")];
        let chosen = choose(&revisions, 3, passes).unwrap().unwrap();
        assert_eq!((chosen.number, &chosen.kept_in), (1, &KeptIn::ControllerRevision("db-1".into())));
        // A revision that could not be read (no images) is never chosen.
        let unreadable = Revision { images: vec![], ..cr(2, "r/db:2") };
        assert_eq!(choose(&[cr(1, "r/db:bad"), unreadable], 3, passes).unwrap(), None);
        let e = choose(&[cr(1, "r/db:1"), cr(1, "r/db:planted"), cr(2, "r/db:bad")], 2, passes).unwrap_err();
        assert!(e.to_string().contains("ControllerRevision db-1 and ControllerRevision db-1"), "{e}");
        assert!(Workload::of("CronJob").is_none() && Workload::of("ReplicaSet").is_none());
        assert_eq!(Workload::of("DaemonSet"), Some(Workload::DaemonSet));
    }
}
