//! Images of an object: a Pod, or the pod template of a workload.

use serde_json::Value;

/// One container image and where it was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerImage {
    /// `containers[app]`, `initContainers[migrate]`, `ephemeralContainers[debugger]`.
    pub path: String,
    pub image: String,
}

/// The pod spec inside an object of `kind`, if it has one.
pub fn pod_spec<'a>(kind: &str, object: &'a Value) -> Option<&'a Value> {
    match kind {
        "Pod" => object.get("spec"),
        "CronJob" => object.pointer("/spec/jobTemplate/spec/template/spec"),
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" | "Job" | "ReplicationController" | "PodTemplate" => {
            object.pointer("/spec/template/spec").or_else(|| object.pointer("/template/spec"))
        }
        _ => None,
    }
}

/// Metadata of the pod template (or the Pod itself), where break-glass
/// annotations are read from.
pub fn pod_annotations<'a>(kind: &str, object: &'a Value) -> Vec<&'a serde_json::Map<String, Value>> {
    let mut out = Vec::new();
    if let Some(a) = object.pointer("/metadata/annotations").and_then(Value::as_object) {
        out.push(a);
    }
    let tmpl = match kind {
        "CronJob" => object.pointer("/spec/jobTemplate/spec/template/metadata/annotations"),
        "Pod" => None,
        _ => object.pointer("/spec/template/metadata/annotations"),
    };
    if let Some(a) = tmpl.and_then(Value::as_object) {
        out.push(a);
    }
    out
}

/// Every container image of a pod spec: containers, initContainers and
/// ephemeralContainers. A container without an image string is reported with
/// an empty image, so that it is denied rather than skipped.
pub fn images(spec: &Value) -> Vec<ContainerImage> {
    let mut out = Vec::new();
    for field in ["initContainers", "containers", "ephemeralContainers"] {
        for c in spec.get(field).and_then(Value::as_array).into_iter().flatten() {
            let name = c.get("name").and_then(Value::as_str).unwrap_or("?");
            out.push(ContainerImage {
                path: format!("{field}[{name}]"),
                image: c.get("image").and_then(Value::as_str).unwrap_or("").to_string(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_images_in_every_kind() {
        let spec = json!({"initContainers":[{"name":"i","image":"a"}],"containers":[{"name":"c","image":"b"}],"ephemeralContainers":[{"name":"e","image":"c"}]});
        let rows = [
            ("Pod", json!({"spec": spec})),
            ("Deployment", json!({"spec":{"template":{"spec": spec}}})),
            ("StatefulSet", json!({"spec":{"template":{"spec": spec}}})),
            ("Job", json!({"spec":{"template":{"spec": spec}}})),
            ("CronJob", json!({"spec":{"jobTemplate":{"spec":{"template":{"spec": spec}}}}})),
        ];
        for (kind, obj) in rows {
            let got: Vec<String> = images(pod_spec(kind, &obj).unwrap()).into_iter().map(|c| c.image).collect();
            assert_eq!(got, ["a", "b", "c"], "{kind}");
        }
        assert!(pod_spec("ConfigMap", &json!({"data":{}})).is_none());
    }
}
