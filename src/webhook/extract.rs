//! Images of an object: a Pod, or the pod template of any object that
//! carries one. Every place an image can be named is read: containers, init
//! containers, ephemeral containers and image volumes.

use serde_json::{Map, Value};

use crate::policy::ObjectId;

/// Where a pod-bearing kind keeps its pod spec and the metadata of its pod
/// (template), as JSON pointers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub kind: &'static str,
    pub spec: &'static str,
    pub metadata: &'static str,
}

const POD: Shape = Shape { kind: "Pod", spec: "/spec", metadata: "/metadata" };
const POD_TEMPLATE: Shape = Shape { kind: "PodTemplate", spec: "/template/spec", metadata: "/template/metadata" };
const CRON_JOB: Shape = Shape {
    kind: "CronJob",
    spec: "/spec/jobTemplate/spec/template/spec",
    metadata: "/spec/jobTemplate/spec/template/metadata",
};

const fn workload(kind: &'static str) -> Shape {
    Shape { kind, spec: "/spec/template/spec", metadata: "/spec/template/metadata" }
}

/// The shape of a pod-bearing kind (by API group and kind), or None for
/// kinds that carry no pod spec. Every built-in kind that carries one is here.
pub fn shape(group: &str, kind: &str) -> Option<Shape> {
    Some(match (group, kind) {
        ("", "Pod") => POD,
        ("", "PodTemplate") => POD_TEMPLATE,
        ("", "ReplicationController") => workload("ReplicationController"),
        ("apps", "Deployment") => workload("Deployment"),
        ("apps", "ReplicaSet") => workload("ReplicaSet"),
        ("apps", "StatefulSet") => workload("StatefulSet"),
        ("apps", "DaemonSet") => workload("DaemonSet"),
        ("batch", "Job") => workload("Job"),
        ("batch", "CronJob") => CRON_JOB,
        _ => return None,
    })
}

impl Shape {
    /// True for kinds whose pod template controllers copy into other objects.
    pub fn is_template(&self) -> bool {
        self.kind != "Pod"
    }
}

/// One image and where it was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerImage {
    /// `containers[app]`, `initContainers[migrate]`, `volumes[models]`.
    pub path: String,
    /// JSON pointer of the reference in the object (`/spec/containers/0/image`).
    pub pointer: String,
    /// The reference as written; empty when it is missing or not a string
    /// (denied as an empty reference rather than skipped).
    pub image: String,
}

/// The pull secrets a pod spec names (`imagePullSecrets[].name`) and its
/// service account (`serviceAccountName`, `default` when unset).
pub fn pull_secrets(shape: &Shape, object: &Value) -> (Vec<String>, String) {
    let spec = object.pointer(shape.spec);
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
pub fn images(shape: &Shape, object: &Value) -> Result<Vec<ContainerImage>, ExtractError> {
    let err = |why: String| ExtractError { kind: shape.kind, why };
    if !object.is_object() {
        return Err(err("the object is missing".into()));
    }
    let spec = object
        .pointer(shape.spec)
        .ok_or_else(|| err(format!("{} is missing", shape.spec)))?
        .as_object()
        .ok_or_else(|| err(format!("{} is not an object", shape.spec)))?;
    let list = |field: &str| -> Result<&[Value], ExtractError> {
        match spec.get(field) {
            None | Some(Value::Null) => Ok(&[]),
            Some(Value::Array(a)) => Ok(a),
            Some(_) => Err(err(format!("{}/{field} is not a list", shape.spec))),
        }
    };
    let mut out = Vec::new();
    for field in ["initContainers", "containers", "ephemeralContainers"] {
        for (i, c) in list(field)?.iter().enumerate() {
            let c = c.as_object().ok_or_else(|| err(format!("{field}[{i}] is not an object")))?;
            out.push(ContainerImage {
                path: format!("{field}[{}]", name_of(c, i)),
                pointer: format!("{}/{field}/{i}/image", shape.spec),
                image: c.get("image").and_then(Value::as_str).unwrap_or("").to_string(),
            });
        }
    }
    for (i, v) in list("volumes")?.iter().enumerate() {
        let v = v.as_object().ok_or_else(|| err(format!("volumes[{i}] is not an object")))?;
        match v.get("image") {
            None | Some(Value::Null) => {}
            Some(Value::Object(source)) => out.push(ContainerImage {
                path: format!("volumes[{}]", name_of(v, i)),
                pointer: format!("{}/volumes/{i}/image/reference", shape.spec),
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
pub fn annotations<'a>(shape: &Shape, object: &'a Value) -> Vec<&'a Map<String, Value>> {
    let mut out: Vec<&Map<String, Value>> = Vec::new();
    for pointer in ["/metadata/annotations".to_string(), format!("{}/annotations", shape.metadata)] {
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
pub fn grant<'a>(shape: &Shape, object: &'a Value) -> Option<&'a str> {
    object
        .pointer(&format!("{}/annotations", shape.metadata))
        .and_then(|a| a.get(crate::policy::BREAK_GLASS_GRANT_ANNOTATION))
        .and_then(Value::as_str)
}

/// `Kind/name` of the object.
pub fn object_id(shape: &Shape, object: &Value, name: &str) -> ObjectId {
    let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or(name);
    ObjectId { kind: shape.kind.to_string(), name: name.to_string() }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        for (group, kind, obj) in rows {
            let shape = shape(group, kind).unwrap_or_else(|| panic!("{kind} carries a pod spec"));
            let got = images(&shape, &obj).unwrap();
            let refs: Vec<&str> = got.iter().map(|c| c.image.as_str()).collect();
            assert_eq!(refs, ["a", "b", "c", "d"], "{kind}");
            for c in &got {
                assert_eq!(
                    obj.pointer(&c.pointer).and_then(Value::as_str),
                    Some(c.image.as_str()),
                    "{kind} {}",
                    c.pointer
                );
            }
            assert_eq!(got[3].path, "volumes[models]");
        }
        assert!(shape("", "ConfigMap").is_none());
        // A kind of the same name in another API group is not a pod.
        assert!(shape("example.com", "Deployment").is_none());
    }

    #[test]
    fn an_unreadable_pod_spec_is_an_error_not_a_pass() {
        let dep = shape("apps", "Deployment").unwrap();
        for obj in [
            Value::Null,
            json!({}),
            json!({"spec": {}}),
            json!({"spec": {"template": {"spec": "nope"}}}),
            json!({"spec": {"template": {"spec": {"containers": {"name": "x"}}}}}),
            json!({"spec": {"template": {"spec": {"containers": ["x"]}}}}),
            json!({"spec": {"template": {"spec": {"volumes": [{"name": "v", "image": "x"}]}}}}),
        ] {
            assert!(images(&dep, &obj).is_err(), "{obj}");
        }
        // A container without an image is kept, with an empty reference, to be denied.
        let got = images(&dep, &json!({"spec": {"template": {"spec": {"containers": [{"name": "x"}]}}}})).unwrap();
        assert_eq!(got[0].image, "");
    }

    #[test]
    fn owner_and_grant_locations() {
        let dep = shape("apps", "Deployment").unwrap();
        let obj = json!({
            "metadata": {"name": "web-1", "annotations": {"portcullis.dev/break-glass": "outage"},
                         "ownerReferences": [{"kind": "Deployment", "name": "other"}, {"kind": "Deployment", "name": "web", "controller": true}]},
            "spec": {"template": {"metadata": {"annotations": {"portcullis.dev/break-glass-grant": "v1.x.y"}}, "spec": {}}}
        });
        assert_eq!(controller(&obj), Some(ObjectId { kind: "Deployment".into(), name: "web".into() }));
        assert_eq!(grant(&dep, &obj), Some("v1.x.y"));
        assert_eq!(annotation(&annotations(&dep, &obj), "portcullis.dev/break-glass"), Some("outage"));
        // A grant on the object's own metadata is not where controllers copy from.
        let misplaced = json!({"metadata": {"annotations": {"portcullis.dev/break-glass-grant": "v1.x.y"}}, "spec": {"template": {"spec": {}}}});
        assert_eq!(grant(&dep, &misplaced), None);
        let pod = shape("", "Pod").unwrap();
        let p = json!({"metadata": {"annotations": {"portcullis.dev/break-glass-grant": "g"}}, "spec": {}});
        assert_eq!(grant(&pod, &p), Some("g"));
        assert_eq!(annotations(&pod, &p).len(), 1);
    }
}
