//! Reading an AdmissionReview: once, straight from the body, keeping only
//! what a decision reads.
//!
//! An object in review can be megabytes of JSON Portcullis never looks at
//! (`env`, `args`, `command`, managed fields), and a `serde_json::Value` of
//! it costs about thirty times its text: one 7 MiB review of a long array
//! took 412 MB decoded as a whole. Here the object and its old version are
//! pruned while they are read: of each pod spec only the images and the
//! names around them, pull secrets and service account; of metadata only
//! the name, namespace, uid, owner references and Portcullis' own
//! annotations. Everything else is skipped without being built. What is
//! kept is charged against a budget ([`MAX_RETAINED`]), so no request can
//! make its decoded form large, whatever its shape. A value of the wrong
//! type where a decision reads one (a `containers` that is not a list) is
//! kept as an empty value of its own type, so that the reader still sees,
//! and denies, the malformed object.

use std::cell::Cell;
use std::fmt;

use kube::core::admission::{AdmissionRequest, Operation};
use kube::core::{DynamicObject, GroupVersionKind, GroupVersionResource, TypeMeta};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

/// Most bytes of what a review's decoded form keeps (its object and old
/// object, pruned, and the user's groups). A Pod of a hundred containers
/// keeps a few kilobytes.
pub const MAX_RETAINED: usize = 1 << 20;

/// Annotations kept: Portcullis' own (break-glass, ticket, grant).
const ANNOTATION_PREFIX: &str = "portcullis.dev/";

/// What each node of an object keeps, by where it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Keep {
    /// The object: `metadata`, a Pod's `spec`, a PodTemplate's `template`.
    Object,
    Metadata,
    /// Only Portcullis' own keys.
    Annotations,
    OwnerReferences,
    OwnerReference,
    /// An object's `spec`: a Pod's spec, or a workload's (its `template`,
    /// a CronJob's `jobTemplate`).
    Spec,
    JobTemplate,
    JobSpec,
    Template,
    PodSpec,
    Containers,
    Container,
    Volumes,
    Volume,
    VolumeImage,
    PullSecrets,
    PullSecret,
    /// A string (or any scalar) kept as it is.
    Scalar,
    /// The user: name, uid, groups.
    User,
    /// A list of strings (the user's groups).
    Strings,
    /// Everything, as it is (the request's own small fields), charged.
    All,
}

impl Keep {
    /// What the member `key` of a map here keeps, if anything.
    fn member(self, key: &str) -> Option<Keep> {
        use Keep::*;
        Some(match (self, key) {
            (Object, "apiVersion" | "kind") => Scalar,
            (Object, "metadata") | (Template, "metadata") => Metadata,
            (Object, "spec") => Spec,
            (Object, "template") | (Spec, "template") | (JobSpec, "template") => Template,
            (Metadata, "name" | "generateName" | "namespace" | "uid") => Scalar,
            (Metadata, "annotations") => Annotations,
            (Metadata, "ownerReferences") => OwnerReferences,
            (Annotations, k) if k.starts_with(ANNOTATION_PREFIX) => Scalar,
            (OwnerReference, "apiVersion" | "kind" | "name" | "uid" | "controller") => Scalar,
            (Spec, "jobTemplate") => JobTemplate,
            (JobTemplate, "spec") => JobSpec,
            (Template, "spec") => PodSpec,
            (Spec | PodSpec, "containers" | "initContainers" | "ephemeralContainers") => Containers,
            (Spec | PodSpec, "volumes") => Volumes,
            (Spec | PodSpec, "imagePullSecrets") => PullSecrets,
            (Spec | PodSpec, "serviceAccountName" | "serviceAccount") => Scalar,
            (Container, "name" | "image") => Scalar,
            (Volume, "name") => Scalar,
            (Volume, "image") => VolumeImage,
            (VolumeImage, "reference") => Scalar,
            (PullSecret, "name") => Scalar,
            (User, "username" | "uid") => Scalar,
            (User, "groups") => Strings,
            (All, _) => All,
            _ => return None,
        })
    }

    /// What each item of a list here keeps; None when no list is expected.
    fn item(self) -> Option<Keep> {
        Some(match self {
            Keep::OwnerReferences => Keep::OwnerReference,
            Keep::Containers => Keep::Container,
            Keep::Volumes => Keep::Volume,
            Keep::PullSecrets => Keep::PullSecret,
            Keep::Strings => Keep::Scalar,
            Keep::All => Keep::All,
            _ => return None,
        })
    }

    fn is_scalar(self) -> bool {
        matches!(self, Keep::Scalar | Keep::All)
    }
}

/// What a decoded review has kept so far, in bytes.
struct Budget {
    used: Cell<usize>,
    max: usize,
}

/// A rough cost of one kept node: its value, a map entry's bookkeeping.
const NODE: usize = 64;

impl Budget {
    fn charge<E: de::Error>(&self, bytes: usize) -> Result<(), E> {
        let used = self.used.get().saturating_add(bytes).saturating_add(NODE);
        self.used.set(used);
        if used > self.max {
            return Err(E::custom(format_args!(
                "the object holds more than {} bytes of what Portcullis reads (containers and their images, \
                 volumes, pull secrets, owner references, its portcullis.dev annotations, the user's groups)",
                self.max
            )));
        }
        Ok(())
    }
}

/// Reads one value, keeping what `keep` says.
struct Prune<'b> {
    keep: Keep,
    budget: &'b Budget,
}

impl<'de> DeserializeSeed<'de> for Prune<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Prune<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        if !self.keep.is_scalar() {
            // A string where a map or list is read: its type is what counts.
            return Ok(Value::String(String::new()));
        }
        self.budget.charge(v.len())?;
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        if !self.keep.is_scalar() {
            return Ok(Value::String(String::new()));
        }
        self.budget.charge(v.len())?;
        Ok(Value::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        match self.keep.item() {
            Some(keep) => {
                while let Some(v) = seq.next_element_seed(Prune { keep, budget: self.budget })? {
                    self.budget.charge::<A::Error>(0)?;
                    out.push(v);
                }
            }
            // A list where something else is read: kept empty.
            None => while seq.next_element::<IgnoredAny>()?.is_some() {},
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            match self.keep.member(&key) {
                Some(keep) => {
                    self.budget.charge::<A::Error>(key.len())?;
                    let v = map.next_value_seed(Prune { keep, budget: self.budget })?;
                    out.insert(key, v);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(out))
    }
}

/// An AdmissionReview as Portcullis reads it: the request's own fields (in
/// kube's type, without its object), and the object and its old version,
/// pruned (`Value::Null` when absent).
#[derive(Debug)]
pub struct Review {
    pub req: AdmissionRequest<DynamicObject>,
    pub object: Value,
    pub old: Value,
}

/// Why a body is not a usable AdmissionReview.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error("the AdmissionReview has no request")]
    NoRequest,
}

/// The request's fields Portcullis reads, besides the objects.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Fields {
    uid: String,
    kind: GroupVersionKind,
    resource: GroupVersionResource,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    operation: Operation,
    #[serde(default)]
    dry_run: bool,
}

/// The user, of whom the name and groups are read.
#[derive(Default)]
struct User {
    username: Option<String>,
    uid: Option<String>,
    groups: Option<Vec<String>>,
}

impl User {
    fn read(v: Value) -> User {
        let text = |k: &str| v.get(k).and_then(Value::as_str).map(String::from);
        User {
            username: text("username"),
            uid: text("uid"),
            groups: v
                .get("groups")
                .and_then(Value::as_array)
                .map(|g| g.iter().filter_map(Value::as_str).map(String::from).collect()),
        }
    }
}

/// Decodes an AdmissionReview body within [`MAX_RETAINED`] bytes kept.
pub fn decode(body: &[u8]) -> Result<Review, ReviewError> {
    decode_within(body, MAX_RETAINED)
}

fn decode_within(body: &[u8], max: usize) -> Result<Review, ReviewError> {
    let budget = Budget { used: Cell::new(0), max };
    let mut de = serde_json::Deserializer::from_slice(body);
    let top = ReviewSeed { budget: &budget }.deserialize(&mut de)?;
    de.end()?;
    let Top { api_version, kind, request } = top;
    let (fields, user, object, old) = request.ok_or(ReviewError::NoRequest)?;
    let fields: Fields = serde_json::from_value(fields)?;
    let user = user.map(User::read).unwrap_or_default();
    let req = AdmissionRequest {
        types: TypeMeta { api_version, kind },
        uid: fields.uid,
        kind: fields.kind,
        resource: fields.resource,
        sub_resource: fields.sub_resource,
        request_kind: None,
        request_resource: None,
        request_sub_resource: None,
        name: fields.name,
        namespace: fields.namespace,
        operation: fields.operation,
        user_info: k8s_openapi::api::authentication::v1::UserInfo {
            username: user.username,
            uid: user.uid,
            groups: user.groups,
            extra: None,
        },
        object: None,
        old_object: None,
        dry_run: fields.dry_run,
        options: None,
    };
    Ok(Review { req, object, old })
}

/// The review's top level.
struct Top {
    api_version: String,
    kind: String,
    /// (the request's small fields, its userInfo, object, oldObject)
    request: Option<(Value, Option<Value>, Value, Value)>,
}

struct ReviewSeed<'b> {
    budget: &'b Budget,
}

impl<'de> DeserializeSeed<'de> for ReviewSeed<'_> {
    type Value = Top;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Top, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ReviewSeed<'_> {
    type Value = Top;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an AdmissionReview object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top, A::Error> {
        let mut top = Top { api_version: String::new(), kind: String::new(), request: None };
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "apiVersion" => top.api_version = map.next_value()?,
                "kind" => top.kind = map.next_value()?,
                "request" => top.request = map.next_value_seed(RequestSeed { budget: self.budget })?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(top)
    }
}

struct RequestSeed<'b> {
    budget: &'b Budget,
}

impl<'de> DeserializeSeed<'de> for RequestSeed<'_> {
    type Value = Option<(Value, Option<Value>, Value, Value)>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for RequestSeed<'_> {
    type Value = Option<(Value, Option<Value>, Value, Value)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an AdmissionRequest object")
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Map::new();
        let (mut user, mut object, mut old) = (None, Value::Null, Value::Null);
        while let Some(key) = map.next_key::<String>()? {
            let budget = self.budget;
            match key.as_str() {
                "object" => object = map.next_value_seed(Prune { keep: Keep::Object, budget })?,
                "oldObject" => old = map.next_value_seed(Prune { keep: Keep::Object, budget })?,
                "userInfo" => user = Some(map.next_value_seed(Prune { keep: Keep::User, budget })?),
                "uid" | "kind" | "resource" | "subResource" | "name" | "namespace" | "operation" | "dryRun" => {
                    let v = map.next_value_seed(Prune { keep: Keep::All, budget })?;
                    fields.insert(key, v);
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Some((Value::Object(fields), user, object, old)))
    }
}

/// The request uid of a body that is not a usable review, read without
/// building anything else, so that the refusal can be attributed.
pub fn uid_of(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Outer {
        request: Option<Inner>,
    }
    #[derive(Deserialize)]
    struct Inner {
        uid: Option<String>,
    }
    serde_json::from_slice::<Outer>(body).ok()?.request?.uid
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::{self, Kind};
    use serde_json::json;

    /// Everything a decision reads of `object`, as `kind` reads it.
    fn read(kind: &Kind, object: &Value) -> String {
        let ann = kinds::annotations(kind, object);
        format!(
            "{:?} | {:?} | {:?} {:?} {:?} | {:?} | {:?} | {:?}",
            kinds::images(kind, object),
            kinds::pull_secrets(kind, object),
            kinds::annotation(&ann, crate::policy::BREAK_GLASS_ANNOTATION),
            kinds::annotation(&ann, crate::policy::BREAK_GLASS_TICKET_ANNOTATION),
            kinds::grant(kind, object),
            kinds::controller(object),
            kinds::object_id(kind, object, "x"),
            object.pointer("/metadata/namespace"),
        )
    }

    fn review_of(object: &Value) -> Vec<u8> {
        let api = object["apiVersion"].as_str().unwrap_or("v1");
        let (group, version) = api.split_once('/').unwrap_or(("", api));
        let kind = object["kind"].as_str().unwrap_or("Pod");
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": "u-1", "kind": {"group": group, "version": version, "kind": kind},
                "resource": {"group": group, "version": version, "resource": "x"},
                "name": "web", "namespace": "prod", "operation": "CREATE",
                "userInfo": {"username": "alice", "groups": ["a", "b"], "extra": {"k": ["v"]}},
                "object": object, "dryRun": true
            }
        }))
        .unwrap()
    }

    /// What the pruned object says is what the whole object says, for every
    /// pod-bearing kind and for the reviews a real API server sent.
    #[test]
    fn a_decision_reads_the_same_from_the_pruned_object() {
        let spec = json!({
            "initContainers": [{"name": "i", "image": "a", "env": [{"name": "E", "value": "1"}]}],
            "containers": [{"name": "c", "image": "b", "args": vec!["x"; 100]}, {"image": "b2"}, {"name": "n"}],
            "ephemeralContainers": [{"name": "e", "image": "c"}],
            "volumes": [{"name": "cfg", "configMap": {"name": "x"}}, {"name": "m", "image": {"reference": "d", "pullPolicy": "IfNotPresent"}}],
            "imagePullSecrets": [{"name": "regcred"}, {}],
            "serviceAccountName": "runner",
            "nodeSelector": {"a": "b"}
        });
        let meta = json!({
            "name": "web", "namespace": "prod", "uid": "1234", "labels": {"app": "web"},
            "annotations": {"portcullis.dev/break-glass": "outage, rolling forward", "portcullis.dev/break-glass-ticket": "INC-1", "other": "x"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "uid": "u", "controller": true, "blockOwnerDeletion": true}],
            "managedFields": [{"manager": "kubectl"}]
        });
        let template =
            json!({"labels": {"a": "b"}, "annotations": {"portcullis.dev/break-glass-grant": "v1.x.y", "b": "c"}});
        // Every pod-bearing kind, with what a decision does not read around its pod spec.
        let objects: Vec<Value> = kinds::KINDS
            .iter()
            .map(|k| {
                let mut o = kinds::example(k, meta.clone(), template.clone(), spec.clone());
                o["status"] = json!({"phase": "Running", "replicas": 2});
                o
            })
            .collect();
        let mut reviews: Vec<Vec<u8>> = objects.iter().map(review_of).collect();
        for f in ["deployment-create-prod.json", "pod-create-dev.json", "pod-create-prod.json", "pod-update-prod.json"]
        {
            reviews.push(std::fs::read(format!("tests/fixtures/recorded/{f}")).unwrap());
        }
        for body in reviews {
            let whole: Value = serde_json::from_slice(&body).unwrap();
            let r = decode(&body).unwrap();
            let kind = kinds::of(&r.req.kind.group, &r.req.kind.kind).unwrap();
            for (pruned, full) in [(&r.object, &whole["request"]["object"]), (&r.old, &whole["request"]["oldObject"])] {
                let full = if full.is_null() { &Value::Null } else { full };
                assert_eq!(read(kind, pruned), read(kind, full), "{}", kind.kind);
            }
            let w = &whole["request"];
            assert_eq!(r.req.uid, w["uid"].as_str().unwrap());
            assert_eq!(r.req.name, w["name"].as_str().unwrap());
            assert_eq!(r.req.namespace.as_deref(), w["namespace"].as_str());
            assert_eq!(r.req.user_info.username.as_deref(), w["userInfo"]["username"].as_str());
            assert_eq!(serde_json::to_value(&r.req.user_info.groups).unwrap(), w["userInfo"]["groups"]);
            assert_eq!(r.req.dry_run, w["dryRun"].as_bool().unwrap_or(false));
            assert_eq!(serde_json::to_value(&r.req.operation).unwrap(), w["operation"]);
        }
    }

    #[test]
    fn what_is_not_read_is_not_kept() {
        let pod = |spec: Value| json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "annotations": {"a": "1"}}, "spec": spec});
        // A long array, many env entries: decoded within 4 KiB kept.
        let long = pod(
            json!({"containers": [{"name": "c", "image": "i", "args": vec![0; 100_000], "env": vec![json!({"name": "E", "value": "v"}); 10_000]}]}),
        );
        let r = decode_within(&review_of(&long), 4096).unwrap();
        assert_eq!(
            r.object,
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "annotations": {}}, "spec": {"containers": [{"name": "c", "image": "i"}]}})
        );
        // What is read, past the budget: refused, saying why.
        let many = pod(json!({"containers": vec![json!({"name": "c", "image": "registry.example/app:1"}); 20_000]}));
        let e = decode(&review_of(&many)).unwrap_err().to_string();
        assert!(e.contains("the object holds more than 1048576 bytes of what Portcullis reads"), "{e}");
        let groups: Vec<String> = (0..100_000).map(|i| format!("group-{i}")).collect();
        let mut body: Value = serde_json::from_slice(&review_of(&pod(json!({})))).unwrap();
        body["request"]["userInfo"]["groups"] = json!(groups);
        assert!(decode(&serde_json::to_vec(&body).unwrap()).is_err());
    }

    /// A value of the wrong type where one is read stays of its type, so
    /// the reader denies the object as it would the whole one.
    #[test]
    fn malformed_pod_specs_stay_malformed() {
        let dep = kinds::of("apps", "Deployment").unwrap();
        for spec in [
            json!("nope"),
            json!({"containers": {"name": "x", "image": "a"}}),
            json!({"containers": ["x"]}),
            json!({"containers": [{"name": "c", "image": 7}]}),
            json!({"containers": [{"name": "c", "image": {"ref": "a"}}]}),
            json!({"volumes": [{"name": "v", "image": "x"}]}),
            json!({"initContainers": 3}),
        ] {
            let object = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"template": {"spec": spec}}});
            let r = decode(&review_of(&object)).unwrap();
            assert_eq!(read(dep, &r.object), read(dep, &object), "{spec}");
        }
    }

    #[test]
    fn bad_bodies_are_errors_and_their_uid_is_found() {
        for bad in [&b"{"[..], b"[]", b"{\"request\": null}", b"{\"request\": {\"uid\": \"u\"}}", b"{} {}"] {
            assert!(decode(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(uid_of(br#"{"request": {"uid": "u-9", "object": {"spec": [1, 2, 3]}}}"#).as_deref(), Some("u-9"));
        assert_eq!(uid_of(b"{"), None);
    }
}
