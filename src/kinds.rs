//! Every pod-bearing Kubernetes kind, once, and the one walker that reads
//! them.
//!
//! [`KINDS`] says, for each built-in kind that carries a pod spec, its API
//! group, version and kind; its plural (the resource webhook rules and RBAC
//! name) and the subresources admission judges too; where its pod spec and
//! the metadata of its pod (template) live; and which controller makes it
//! (the controller chain: a Deployment makes ReplicaSets, a CronJob makes
//! Jobs). Adding a kind is one row here: the YAML lists of kinds (the
//! webhook configurations in `manifests/` and the chart, RBAC) are tested
//! against it.
//!
//! The walker reads an object as JSON: every image ([`images`]: init
//! containers, containers, ephemeral containers and image volumes), pull
//! secrets, annotations, the break-glass grant and the controller owner.
//! Every door reads through it: admission (`webhook/`), `portcullis report`
//! and re-evaluation (running Pods), and rollback (the pod templates of
//! previous revisions). Pure: JSON in, typed values out.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A pod-bearing kind.
#[derive(Debug, PartialEq, Eq)]
pub struct Kind {
    /// The API group: `""` (core), `apps`, `batch`.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// The resource, as webhook rules and RBAC name it.
    pub plural: &'static str,
    /// Subresources whose requests carry the whole object and are judged
    /// too (`pods/ephemeralcontainers`, which `kubectl debug` updates).
    pub subresources: &'static [&'static str],
    /// JSON pointer to the pod spec.
    pub spec: &'static str,
    /// JSON pointer to the metadata of the pod (template).
    pub metadata: &'static str,
    /// The controller that makes objects of this kind from its own pod
    /// template, when one does.
    pub made_by: Option<Maker>,
}

/// A link of the controller chain: the kind of the controller that makes
/// objects of a kind from its own pod template, naming each
/// `<its own name>-<suffix>`.
#[derive(Debug, PartialEq, Eq)]
pub struct Maker {
    pub kind: &'static str,
    /// The label the Pods of a made object carry whose value is that
    /// suffix (`pod-template-hash` on a Deployment's ReplicaSets' Pods),
    /// when there is one: only then does a Pod show which controller made
    /// its owner.
    pub suffix_label: Option<&'static str>,
}

pub const POD: Kind = Kind {
    group: "",
    version: "v1",
    kind: "Pod",
    plural: "pods",
    subresources: &["ephemeralcontainers"],
    spec: "/spec",
    metadata: "/metadata",
    made_by: None,
};
pub const POD_TEMPLATE: Kind = Kind {
    group: "",
    version: "v1",
    kind: "PodTemplate",
    plural: "podtemplates",
    subresources: &[],
    spec: "/template/spec",
    metadata: "/template/metadata",
    made_by: None,
};
pub const REPLICATION_CONTROLLER: Kind = templated("", "ReplicationController", "replicationcontrollers", None);
pub const DEPLOYMENT: Kind = templated("apps", "Deployment", "deployments", None);
pub const REPLICA_SET: Kind = templated(
    "apps",
    "ReplicaSet",
    "replicasets",
    Some(Maker { kind: "Deployment", suffix_label: Some("pod-template-hash") }),
);
pub const STATEFUL_SET: Kind = templated("apps", "StatefulSet", "statefulsets", None);
pub const DAEMON_SET: Kind = templated("apps", "DaemonSet", "daemonsets", None);
pub const JOB: Kind = templated("batch", "Job", "jobs", Some(Maker { kind: "CronJob", suffix_label: None }));
pub const CRON_JOB: Kind = Kind {
    group: "batch",
    version: "v1",
    kind: "CronJob",
    plural: "cronjobs",
    subresources: &[],
    spec: "/spec/jobTemplate/spec/template/spec",
    metadata: "/spec/jobTemplate/spec/template/metadata",
    made_by: None,
};

/// Every built-in kind that carries a pod spec. Any other kind passes
/// admission untouched.
pub static KINDS: [Kind; 9] =
    [POD, POD_TEMPLATE, REPLICATION_CONTROLLER, DEPLOYMENT, REPLICA_SET, STATEFUL_SET, DAEMON_SET, JOB, CRON_JOB];

/// A kind whose pod template is at `/spec/template`.
const fn templated(group: &'static str, kind: &'static str, plural: &'static str, made_by: Option<Maker>) -> Kind {
    Kind {
        group,
        version: "v1",
        kind,
        plural,
        subresources: &[],
        spec: "/spec/template/spec",
        metadata: "/spec/template/metadata",
        made_by,
    }
}

/// The pod-bearing kind of API group `group` named `kind`, or None for
/// kinds that carry no pod spec.
pub fn of(group: &str, kind: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.group == group && k.kind == kind)
}

/// The pod-bearing kind named `kind`, for where a kind is named without its
/// group (owner references, workloads).
pub fn named(kind: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.kind == kind)
}

impl Kind {
    /// True for kinds whose pod template controllers copy into other objects.
    pub fn is_template(&self) -> bool {
        self.kind != POD.kind
    }

    /// `v1`, `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The kind of the objects this kind's controller makes from its pod
    /// template (a Deployment: ReplicaSets), if any.
    pub fn makes(&self) -> Option<&'static Kind> {
        KINDS.iter().find(|k| k.made_by.as_ref().is_some_and(|m| m.kind == self.kind))
    }
}

/// A Kubernetes object, as `Kind/name`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjectId {
    pub kind: String,
    pub name: String,
}

impl ObjectId {
    pub fn new(kind: impl Into<String>, name: impl Into<String>) -> ObjectId {
        ObjectId { kind: kind.into(), name: name.into() }
    }
}

impl ObjectId {
    /// Serialises `id` as its text, `Kind/name`: how report JSON,
    /// PolicyReports and audit records name a workload.
    pub fn serialize_as_text<S: serde::Serializer>(id: &ObjectId, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(id)
    }
}

/// `Kind/name` that names no kind or no object.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not Kind/name")]
pub struct ObjectIdError(String);

impl std::str::FromStr for ObjectId {
    type Err = ObjectIdError;

    /// `Deployment/web`, as [`fmt::Display`] writes it.
    fn from_str(s: &str) -> Result<ObjectId, ObjectIdError> {
        match s.split_once('/') {
            Some((kind, name)) if !kind.is_empty() && !name.is_empty() => Ok(ObjectId::new(kind, name)),
            _ => Err(ObjectIdError(s.to_string())),
        }
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

/// True when `made` is an object a controller `maker` makes from its pod
/// template, by the controller chain: a link from `maker`'s kind to
/// `made`'s, and `made` named `<maker's name>-<suffix>`.
pub fn made_by(made: &ObjectId, maker: &ObjectId) -> bool {
    named(&made.kind).and_then(|k| k.made_by.as_ref()).is_some_and(|m| m.kind == maker.kind)
        && made.name.strip_prefix(maker.name.as_str()).is_some_and(|rest| rest.len() > 1 && rest.starts_with('-'))
}

/// The workload a Pod belongs to: its controller, or the controller that
/// made its controller when the Pod proves it (a ReplicaSet named
/// `<deployment>-<hash>` whose Pods carry `pod-template-hash: <hash>`: the
/// Deployment; the name is all a Pod knows of it); else the Pod itself.
/// `label` reads the Pod's labels.
pub fn workload<'a>(controller: Option<ObjectId>, pod: &str, label: impl Fn(&str) -> Option<&'a str>) -> ObjectId {
    let Some(owner) = controller else { return ObjectId::new(POD.kind, pod) };
    let maker = named(&owner.kind).and_then(|k| k.made_by.as_ref()).and_then(|m| {
        let (name, suffix) = owner.name.rsplit_once('-')?;
        (label(m.suffix_label?) == Some(suffix)).then(|| ObjectId::new(m.kind, name))
    });
    maker.unwrap_or(owner)
}

/// One image and where it was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerImage {
    /// The list of the pod spec it is in: `initContainers`, `containers`,
    /// `ephemeralContainers` or `volumes`.
    pub field: &'static str,
    /// The name of its container or volume (its index when it has none).
    pub name: String,
    /// JSON pointer of the reference in the object (`/spec/containers/0/image`).
    pub pointer: String,
    /// The reference as written; empty when it is missing or not a string
    /// (denied as an empty reference rather than skipped).
    pub image: String,
}

impl ContainerImage {
    /// `containers[app]`, `initContainers[migrate]`, `volumes[models]`.
    pub fn path(&self) -> String {
        format!("{}[{}]", self.field, self.name)
    }

    /// True for a container's image, false for an image volume's.
    pub fn is_container(&self) -> bool {
        self.field != "volumes"
    }
}

/// The pull secrets a pod spec names (`imagePullSecrets[].name`) and its
/// service account (`serviceAccountName`, `default` when unset).
pub fn pull_secrets(kind: &Kind, object: &Value) -> (Vec<String>, String) {
    let spec = object.pointer(kind.spec);
    let names = spec
        .and_then(|s| s.get("imagePullSecrets"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("name").and_then(Value::as_str))
        .filter(|n| !n.is_empty())
        .map(String::from)
        .collect();
    let account = spec
        .and_then(|s| s.get("serviceAccountName").or_else(|| s.get("serviceAccount")))
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .unwrap_or("default")
        .to_string();
    (names, account)
}

/// A pod spec that cannot be read: denied, never skipped.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the pod spec of this {kind} cannot be read: {why}")]
pub struct ExtractError {
    pub kind: &'static str,
    pub why: String,
}

/// Every image of the pod spec of `object`: init containers, containers,
/// ephemeral containers, then image volumes (`volumes[].image.reference`).
pub fn images(kind: &Kind, object: &Value) -> Result<Vec<ContainerImage>, ExtractError> {
    let err = |why: String| ExtractError { kind: kind.kind, why };
    if !object.is_object() {
        return Err(err("the object is missing".into()));
    }
    let spec = object
        .pointer(kind.spec)
        .ok_or_else(|| err(format!("{} is missing", kind.spec)))?
        .as_object()
        .ok_or_else(|| err(format!("{} is not an object", kind.spec)))?;
    let list = |field: &str| -> Result<&[Value], ExtractError> {
        match spec.get(field) {
            None | Some(Value::Null) => Ok(&[]),
            Some(Value::Array(a)) => Ok(a),
            Some(_) => Err(err(format!("{}/{field} is not a list", kind.spec))),
        }
    };
    let mut out = Vec::new();
    for field in ["initContainers", "containers", "ephemeralContainers"] {
        for (i, c) in list(field)?.iter().enumerate() {
            let c = c.as_object().ok_or_else(|| err(format!("{field}[{i}] is not an object")))?;
            out.push(ContainerImage {
                field,
                name: name_of(c, i),
                pointer: format!("{}/{field}/{i}/image", kind.spec),
                image: c.get("image").and_then(Value::as_str).unwrap_or("").to_string(),
            });
        }
    }
    for (i, v) in list("volumes")?.iter().enumerate() {
        let v = v.as_object().ok_or_else(|| err(format!("volumes[{i}] is not an object")))?;
        match v.get("image") {
            None | Some(Value::Null) => {}
            Some(Value::Object(source)) => out.push(ContainerImage {
                field: "volumes",
                name: name_of(v, i),
                pointer: format!("{}/volumes/{i}/image/reference", kind.spec),
                image: source.get("reference").and_then(Value::as_str).unwrap_or("").to_string(),
            }),
            Some(_) => return Err(err(format!("volumes[{i}].image is not an object"))),
        }
    }
    Ok(out)
}

fn name_of(o: &Map<String, Value>, i: usize) -> String {
    o.get("name").and_then(Value::as_str).map(String::from).unwrap_or_else(|| i.to_string())
}

/// The annotations break-glass is read from: the object's own, then its pod
/// template's (the same map for a Pod).
pub fn annotations<'a>(kind: &Kind, object: &'a Value) -> Vec<&'a Map<String, Value>> {
    let mut out: Vec<&Map<String, Value>> = Vec::new();
    for pointer in ["/metadata/annotations".to_string(), format!("{}/annotations", kind.metadata)] {
        if let Some(a) = object.pointer(&pointer).and_then(Value::as_object) {
            if !out.iter().any(|o| std::ptr::eq(*o, a)) {
                out.push(a);
            }
        }
    }
    out
}

/// The first string value of `key` in `annotations`.
pub fn annotation<'a>(annotations: &[&'a Map<String, Value>], key: &str) -> Option<&'a str> {
    annotations.iter().find_map(|a| a.get(key).and_then(Value::as_str))
}

/// The grant annotation of the pod (template): only there, where the
/// mutating webhook stamps it and controllers copy it from.
pub fn grant<'a>(kind: &Kind, object: &'a Value) -> Option<&'a str> {
    object
        .pointer(&format!("{}/annotations", kind.metadata))
        .and_then(|a| a.get(crate::policy::BREAK_GLASS_GRANT_ANNOTATION))
        .and_then(Value::as_str)
}

/// `Kind/name` of the object.
pub fn object_id(kind: &Kind, object: &Value, name: &str) -> ObjectId {
    let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or(name);
    ObjectId::new(kind.kind, name)
}

/// The controller owner reference of the object, if it has one.
pub fn controller(object: &Value) -> Option<ObjectId> {
    object.pointer("/metadata/ownerReferences").and_then(Value::as_array)?.iter().find_map(|r| {
        (r.get("controller").and_then(Value::as_bool) == Some(true)).then(|| ObjectId {
            kind: r.get("kind").and_then(Value::as_str).unwrap_or("").to_string(),
            name: r.get("name").and_then(Value::as_str).unwrap_or("").to_string(),
        })
    })
}

/// An object of `kind` whose pod spec is `spec`, with `metadata` as its
/// own metadata and `template` as its pod template's (a Pod has only its
/// own): what a test needs of any kind.
#[cfg(test)]
pub(crate) fn example(kind: &Kind, metadata: Value, template: Value, spec: Value) -> Value {
    fn put(object: &mut Value, pointer: &str, value: Value) {
        let mut at = object;
        for key in pointer.trim_start_matches('/').split('/') {
            if !at.is_object() {
                *at = Value::Object(Map::new());
            }
            at = at.as_object_mut().expect("an object").entry(key).or_insert(Value::Null);
        }
        *at = value;
    }
    let mut object = serde_json::json!({"apiVersion": kind.api_version(), "kind": kind.kind, "metadata": metadata});
    if kind.is_template() {
        put(&mut object, kind.metadata, template);
    }
    put(&mut object, kind.spec, spec);
    object
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_kind_once() {
        for (i, k) in KINDS.iter().enumerate() {
            assert_eq!(of(k.group, k.kind), Some(k), "{}", k.kind);
            // Owner references and workloads name a kind without its group.
            assert_eq!(named(k.kind), Some(k), "{} is named once", k.kind);
            assert!(KINDS[..i].iter().all(|o| o.plural != k.plural), "{}", k.plural);
            assert!(k.spec.starts_with('/') && k.metadata.starts_with('/'), "{}", k.kind);
            if let Some(m) = &k.made_by {
                let maker = named(m.kind).unwrap_or_else(|| panic!("{} is made by a kind listed here", k.kind));
                assert_eq!((maker.group, maker.makes()), (k.group, Some(k)), "{}", k.kind);
            }
        }
        assert_eq!(POD.api_version(), "v1");
        assert_eq!(CRON_JOB.api_version(), "batch/v1");
        assert!(!POD.is_template() && DEPLOYMENT.is_template());
        assert_eq!(DEPLOYMENT.makes(), Some(&REPLICA_SET));
        assert_eq!(STATEFUL_SET.makes(), None);
    }

    /// The controller chain, asked both ways: may `made` be a copy a
    /// controller `maker` made (break-glass grants), and which workload a
    /// Pod belongs to (report, re-evaluation).
    #[test]
    fn the_controller_chain() {
        let id = |k: &str, n: &str| ObjectId::new(k, n);
        // (case, made, maker, made by it)
        let rows = [
            ("a Deployment's ReplicaSet", id("ReplicaSet", "web-5d8f9"), id("Deployment", "web"), true),
            ("a CronJob's Job", id("Job", "nightly-29001"), id("CronJob", "nightly"), true),
            ("a name with dashes", id("ReplicaSet", "web-api-5d8f9"), id("Deployment", "web-api"), true),
            ("another Deployment's", id("ReplicaSet", "api-5d8f9"), id("Deployment", "web"), false),
            ("no suffix", id("ReplicaSet", "web-"), id("Deployment", "web"), false),
            ("no dash", id("ReplicaSet", "web5d8f9"), id("Deployment", "web"), false),
            ("the same name, no link", id("StatefulSet", "web-0"), id("Deployment", "web"), false),
            ("a link the other way", id("Deployment", "web-1"), id("ReplicaSet", "web"), false),
            ("a Job of a Deployment", id("Job", "web-1"), id("Deployment", "web"), false),
            ("itself", id("Deployment", "web"), id("Deployment", "web"), false),
        ];
        for (case, made, maker, want) in rows {
            assert_eq!(made_by(&made, &maker), want, "{case}");
        }
        // (case, controller, the Pod's pod-template-hash label, workload)
        let rows = [
            ("a Deployment's Pod", Some(id("ReplicaSet", "api-5d9c")), Some("5d9c"), id("Deployment", "api")),
            (
                "a hash that does not match",
                Some(id("ReplicaSet", "api-5d9c")),
                Some("77"),
                id("ReplicaSet", "api-5d9c"),
            ),
            ("a ReplicaSet of its own", Some(id("ReplicaSet", "api-5d9c")), None, id("ReplicaSet", "api-5d9c")),
            ("a CronJob's Job: a Pod cannot tell", Some(id("Job", "m-29")), None, id("Job", "m-29")),
            ("a StatefulSet", Some(id("StatefulSet", "db-x")), Some("x"), id("StatefulSet", "db-x")),
            ("a bare Pod", None, Some("5d9c"), id("Pod", "debug")),
        ];
        for (case, controller, hash, want) in rows {
            let got = workload(controller.clone(), "debug", |l| hash.filter(|_| l == "pod-template-hash"));
            assert_eq!(got, want, "{case}");
            // A Pod traced past its controller: that controller is a copy the workload made.
            if let Some(c) = controller.filter(|c| *c != got) {
                assert!(made_by(&c, &got), "{case}: one chain");
            }
        }
    }

    /// A workload's text, both ways: `Kind/name`.
    #[test]
    fn object_ids_as_text() {
        // (text, parsed)
        let rows = [
            ("Deployment/web", Some(ObjectId::new("Deployment", "web"))),
            ("Pod/web-5d9c-x", Some(ObjectId::new("Pod", "web-5d9c-x"))),
            ("Deployment/", None),
            ("/web", None),
            ("web", None),
            ("", None),
        ];
        for (text, want) in rows {
            let got = text.parse::<ObjectId>().ok();
            assert_eq!(got, want, "{text:?}");
            if let Some(id) = got {
                assert_eq!(id.to_string(), text);
                let mut s = serde_json::Serializer::new(Vec::new());
                ObjectId::serialize_as_text(&id, &mut s).unwrap();
                assert_eq!(String::from_utf8(s.into_inner()).unwrap(), format!("\"{text}\""));
            }
        }
    }

    #[test]
    fn finds_images_in_every_kind() {
        let spec = json!({
            "initContainers": [{"name": "i", "image": "a"}],
            "containers": [{"name": "c", "image": "b"}],
            "ephemeralContainers": [{"name": "e", "image": "c"}],
            "volumes": [{"name": "cfg", "configMap": {"name": "x"}}, {"name": "models", "image": {"reference": "d", "pullPolicy": "IfNotPresent"}}]
        });
        let template = json!({"spec": {"template": {"spec": spec}}});
        let rows = [
            ("", "Pod", json!({"spec": spec})),
            ("", "PodTemplate", json!({"template": {"spec": spec}})),
            ("", "ReplicationController", template.clone()),
            ("apps", "Deployment", template.clone()),
            ("apps", "ReplicaSet", template.clone()),
            ("apps", "StatefulSet", template.clone()),
            ("apps", "DaemonSet", template.clone()),
            ("batch", "Job", template.clone()),
            ("batch", "CronJob", json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": spec}}}}})),
        ];
        for k in &KINDS {
            assert!(rows.iter().any(|(g, n, _)| (*g, *n) == (k.group, k.kind)), "a row for {}", k.kind);
        }
        for (group, name, obj) in rows {
            let kind = of(group, name).unwrap_or_else(|| panic!("{name} carries a pod spec"));
            let got = images(kind, &obj).unwrap();
            let refs: Vec<&str> = got.iter().map(|c| c.image.as_str()).collect();
            assert_eq!(refs, ["a", "b", "c", "d"], "{name}");
            for c in &got {
                assert_eq!(
                    obj.pointer(&c.pointer).and_then(Value::as_str),
                    Some(c.image.as_str()),
                    "{name} {}",
                    c.pointer
                );
            }
            assert_eq!(got[3].path(), "volumes[models]");
        }
        assert!(of("", "ConfigMap").is_none());
        // A kind of the same name in another API group is not a pod.
        assert!(of("example.com", "Deployment").is_none());
    }

    /// Every door sees the same images of every kind: admission (the
    /// object), `report` and re-evaluation (the Pods its controller runs),
    /// rollback (its pod template as a revision keeps it); init, app and
    /// ephemeral containers and image volumes alike.
    #[test]
    fn every_door_sees_the_same_images_of_every_kind() {
        use k8s_openapi::api::core::v1::PodTemplateSpec;
        let spec = json!({
            "initContainers": [{"name": "init", "image": "r.example/init:1"}],
            "containers": [{"name": "app", "image": "r.example/app:1"}, {"name": "side", "image": "r.example/side:1"}],
            "ephemeralContainers": [{"name": "debug", "image": "r.example/debug:1"}],
            "volumes": [{"name": "cfg", "configMap": {"name": "x"}}, {"name": "models", "image": {"reference": "r.example/models:1"}}]
        });
        let all =
            ["r.example/app:1", "r.example/debug:1", "r.example/init:1", "r.example/models:1", "r.example/side:1"];
        // (kind, the owner its Pods name, the workload report names, images every door sees)
        let rows = [
            (&POD, None, "Pod/web-x", all),
            (&POD_TEMPLATE, None, "Pod/web-x", all),
            (&REPLICATION_CONTROLLER, Some("ReplicationController/web"), "ReplicationController/web", all),
            (&DEPLOYMENT, Some("ReplicaSet/web-5d9c"), "Deployment/web", all),
            (&REPLICA_SET, Some("ReplicaSet/web"), "ReplicaSet/web", all),
            (&STATEFUL_SET, Some("StatefulSet/web"), "StatefulSet/web", all),
            (&DAEMON_SET, Some("DaemonSet/web"), "DaemonSet/web", all),
            (&JOB, Some("Job/web"), "Job/web", all),
            (&CRON_JOB, Some("Job/web-29001"), "Job/web-29001", all),
        ];
        for k in &KINDS {
            assert!(rows.iter().any(|r| r.0 == k), "a row for {}", k.kind);
        }
        for (kind, owner, workload, want) in rows {
            let object = example(kind, json!({"name": "web", "namespace": "shop"}), json!({}), spec.clone());
            // Admission.
            let mut admitted: Vec<String> = images(kind, &object).unwrap().into_iter().map(|c| c.image).collect();
            admitted.sort();
            // report and re-evaluation: the Pod made from the object's pod spec.
            let owner_refs: Vec<Value> = owner
                .iter()
                .map(|o: &&str| {
                    let (k, n) = o.split_once('/').unwrap();
                    json!({"apiVersion": "v1", "kind": k, "name": n, "uid": "u", "controller": true})
                })
                .collect();
            let pod: crate::watch::running::Pod = serde_json::from_value(json!({
                "metadata": {"name": "web-x", "namespace": "shop", "ownerReferences": owner_refs,
                             "labels": {"pod-template-hash": "5d9c"}},
                "spec": object.pointer(kind.spec).unwrap(),
                "status": {"phase": "Running"}
            }))
            .unwrap();
            let running = crate::watch::running::images([&pod]);
            let mut reported: Vec<String> = running.iter().map(|r| r.image.clone()).collect();
            reported.sort();
            assert!(running.iter().all(|r| r.workload.to_string() == workload), "{}: {running:?}", kind.kind);
            // Rollback: the pod template as a revision keeps it.
            let template_at = kind.spec.strip_suffix("/spec").unwrap_or("");
            let template: PodTemplateSpec = if kind.is_template() {
                serde_json::from_value(object.pointer(template_at).unwrap().clone()).unwrap()
            } else {
                serde_json::from_value(json!({"metadata": object["metadata"], "spec": object["spec"]})).unwrap()
            };
            let rolled = crate::watch::rollback::template_images(&template);
            for (door, got) in [("admission", &admitted), ("report", &reported), ("rollback", &rolled)] {
                assert_eq!(got, &want, "{} through {door}", kind.kind);
            }
        }
    }

    #[test]
    fn an_unreadable_pod_spec_is_an_error_not_a_pass() {
        let dep = of("apps", "Deployment").unwrap();
        for obj in [
            Value::Null,
            json!({}),
            json!({"spec": {}}),
            json!({"spec": {"template": {"spec": "nope"}}}),
            json!({"spec": {"template": {"spec": {"containers": {"name": "x"}}}}}),
            json!({"spec": {"template": {"spec": {"containers": ["x"]}}}}),
            json!({"spec": {"template": {"spec": {"volumes": [{"name": "v", "image": "x"}]}}}}),
        ] {
            assert!(images(dep, &obj).is_err(), "{obj}");
        }
        // A container without an image is kept, with an empty reference, to be denied.
        let got = images(dep, &json!({"spec": {"template": {"spec": {"containers": [{"name": "x"}]}}}})).unwrap();
        assert_eq!(got[0].image, "");
    }

    #[test]
    fn owner_and_grant_locations() {
        let dep = of("apps", "Deployment").unwrap();
        let obj = json!({
            "metadata": {"name": "web-1", "annotations": {"portcullis.dev/break-glass": "outage"},
                         "ownerReferences": [{"kind": "Deployment", "name": "other"}, {"kind": "Deployment", "name": "web", "controller": true}]},
            "spec": {"template": {"metadata": {"annotations": {"portcullis.dev/break-glass-grant": "v1.x.y"}}, "spec": {}}}
        });
        assert_eq!(controller(&obj), Some(ObjectId { kind: "Deployment".into(), name: "web".into() }));
        assert_eq!(grant(dep, &obj), Some("v1.x.y"));
        assert_eq!(annotation(&annotations(dep, &obj), "portcullis.dev/break-glass"), Some("outage"));
        // A grant on the object's own metadata is not where controllers copy from.
        let misplaced = json!({"metadata": {"annotations": {"portcullis.dev/break-glass-grant": "v1.x.y"}}, "spec": {"template": {"spec": {}}}});
        assert_eq!(grant(dep, &misplaced), None);
        let pod = of("", "Pod").unwrap();
        let p = json!({"metadata": {"annotations": {"portcullis.dev/break-glass-grant": "g"}}, "spec": {}});
        assert_eq!(grant(pod, &p), Some("g"));
        assert_eq!(annotations(pod, &p).len(), 1);
    }
}
