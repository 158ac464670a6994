//! What is running: the images of running Pods, by workload, with the
//! digest the kubelet actually pulled. Pure: Pods in, images out; listing
//! or watching the Pods is the caller's.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Deserializer, Serialize};

use crate::image::Digest;
use crate::kinds::{self, ObjectId};

/// A Pod as re-evaluation and `report` read it, decoded straight from the
/// API server's answer: its metadata, and of its spec and status only what
/// says which images it runs (the names and images of its containers and
/// image volumes, its pull secrets and service account, its phase, the
/// digests its container statuses report). Everything else a Pod holds
/// (environment, resources, probes, other volumes, conditions) is skipped
/// as it is read, never built: a Pod cache of ten thousand of these is a
/// fraction of one of `k8s_openapi`'s `Pod`s, whose every container alone
/// is 2 KiB before its first field (`make bench` measures the store).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct Pod {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "nullable")]
    pub spec: PodSpec,
    #[serde(default, deserialize_with = "nullable")]
    pub status: PodStatus,
}

/// What a Pod's spec says it runs (the names are the API's, for
/// [`kinds::images`] to read it as it reads any pod spec).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PodSpec {
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<Container>,
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Vec::is_empty")]
    pub init_containers: Vec<Container>,
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Vec::is_empty")]
    pub ephemeral_containers: Vec<Container>,
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<Named>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
}

/// A container (init, app or ephemeral): its name and image.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct Container {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

/// A volume: its name, and its image when it is an image volume.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct Volume {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageVolume>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct ImageVolume {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// A pull secret named by a Pod.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct Named {
    pub name: String,
}

/// A Pod's phase and the digests its containers were pulled at.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PodStatus {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Vec::is_empty")]
    pub init_container_statuses: Vec<ContainerStatus>,
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Vec::is_empty")]
    pub container_statuses: Vec<ContainerStatus>,
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Vec::is_empty")]
    pub ephemeral_container_statuses: Vec<ContainerStatus>,
}

/// A container's status: the digest the kubelet pulled (`imageID`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct ContainerStatus {
    pub name: String,
    #[serde(rename = "imageID")]
    pub image_id: String,
}

/// `null` read as the field's empty value, as the API's own types read it.
fn nullable<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

impl kube::Resource for Pod {
    type DynamicType = ();
    type Scope = kube::core::NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "Pod".into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        "".into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        "v1".into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        "pods".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// One image as it runs in one workload.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunningImage {
    pub namespace: String,
    /// The workload the Pods belong to: their controller's owner when it is
    /// a ReplicaSet of a Deployment (`Deployment/shop`), else their
    /// controller (`StatefulSet/db`, `Job/migrate-29`), else the Pod itself.
    #[serde(serialize_with = "ObjectId::serialize_as_text")]
    pub workload: ObjectId,
    /// The image as the Pod spec writes it.
    pub image: String,
    /// The digest the kubelet pulled (`status.containerStatuses[].imageID`),
    /// when it reports one; else the digest the reference pins, if any.
    pub digest: Option<Digest>,
    /// The Pods running it, by name.
    pub pods: Vec<String>,
    /// The pull secrets its Pods name, and their service account: what the
    /// kubelet pulls it with, and what it is looked up with when Portcullis
    /// may read pull secrets (as at admission). Not an output field.
    #[serde(skip)]
    pub pull: PodPull,
}

/// The pull secrets a Pod names and its service account (whose pull secrets
/// count too).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PodPull {
    pub secrets: Vec<String>,
    pub service_account: String,
}

impl RunningImage {
    /// The reference to judge: pinned to the digest that runs, when known.
    pub fn reference(&self) -> String {
        match &self.digest {
            Some(d) => {
                let name = self.image.split('@').next().unwrap_or(&self.image);
                format!("{name}@{d}")
            }
            None => self.image.clone(),
        }
    }
}

/// The images of the Pods that run (phase Pending or Running), one entry per
/// namespace, workload, image and digest: every image admission judges
/// (init, app and ephemeral containers, image volumes), read by the one
/// walker ([`kinds::images`]).
pub fn images<'a>(pods: impl IntoIterator<Item = &'a Pod>) -> Vec<RunningImage> {
    // (namespace, workload, image, digest) -> (Pods, what they pull with).
    type Key = (String, ObjectId, String, Option<Digest>);
    let mut out: BTreeMap<Key, (Vec<String>, PodPull)> = BTreeMap::new();
    for pod in pods {
        let phase = pod.status.phase.as_deref().unwrap_or("Pending");
        if !matches!(phase, "Pending" | "Running") {
            continue;
        }
        let Ok(object) = serde_json::to_value(pod) else { continue };
        let Ok(found) = kinds::images(&kinds::POD, &object) else { continue };
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let workload = workload_of(pod, &object);
        let (secrets, service_account) = kinds::pull_secrets(&kinds::POD, &object);
        let pull = PodPull { secrets, service_account };
        let s = &pod.status;
        let statuses: Vec<&ContainerStatus> = s
            .init_container_statuses
            .iter()
            .chain(&s.container_statuses)
            .chain(&s.ephemeral_container_statuses)
            .collect();
        for c in found {
            if c.image.is_empty() {
                continue;
            }
            // A container's status names the digest pulled; an image
            // volume's digest is the one its reference pins, if any.
            let pulled = c
                .is_container()
                .then(|| statuses.iter().find(|s| s.name == c.name).and_then(|s| digest_in(&s.image_id)))
                .flatten();
            let digest = pulled.or_else(|| c.image.rsplit_once('@').and_then(|(_, d)| Digest::parse(d).ok()));
            // The Pods of one workload share their template: the first one's
            // pull secrets stand for all.
            let (pods, _) = out
                .entry((namespace.clone(), workload.clone(), c.image, digest))
                .or_insert_with(|| (Vec::new(), pull.clone()));
            if !pods.contains(&name) {
                pods.push(name.clone());
            }
        }
    }
    out.into_iter()
        .map(|((namespace, workload, image, digest), (pods, pull))| RunningImage {
            namespace,
            workload,
            image,
            digest,
            pods,
            pull,
        })
        .collect()
}

/// `docker-pullable://r/app@sha256:…`, `r/app@sha256:…` or `sha256:…`: the
/// digest in a container status' imageID.
fn digest_in(image_id: &str) -> Option<Digest> {
    let at = image_id.rfind("sha256:")?;
    Digest::parse(&image_id[at..]).ok()
}

/// The workload a Pod belongs to (see [`RunningImage::workload`]), by the
/// controller chain ([`kinds::workload`]).
fn workload_of(pod: &Pod, object: &serde_json::Value) -> ObjectId {
    let labels = pod.metadata.labels.as_ref();
    kinds::workload(kinds::controller(object), pod.metadata.name.as_deref().unwrap_or_default(), |l| {
        labels.and_then(|m| m.get(l)).map(String::as_str)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    const A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn running_images_by_workload_with_the_digest_pulled() {
        let replica = |name: &str, phase: &str, image_id: &str| {
            pod(json!({
                "metadata": {"name": name, "namespace": "shop", "labels": {"pod-template-hash": "5d9c"},
                             "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "api-5d9c", "uid": "1", "controller": true}]},
                "spec": {"containers": [{"name": "api", "image": "r.example/api:1"}],
                         "initContainers": [{"name": "migrate", "image": format!("r.example/migrate@{B}")}]},
                "status": {"phase": phase, "containerStatuses": [{"name": "api", "image": "r.example/api:1", "imageID": image_id,
                                                                  "ready": true, "restartCount": 0}]}
            }))
        };
        let bare = pod(json!({
            "metadata": {"name": "debug", "namespace": "ops"},
            "spec": {"containers": [{"name": "sh", "image": "busybox"}]},
            "status": {"phase": "Running"}
        }));
        let job = pod(json!({
            "metadata": {"name": "m-1-x", "namespace": "ops",
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "m-1", "uid": "2", "controller": true}]},
            "spec": {"containers": [{"name": "m", "image": "r.example/m:2"}]},
            "status": {"phase": "Succeeded"}
        }));
        let got = images(&[
            replica("api-5d9c-a", "Running", &format!("docker-pullable://r.example/api@{A}")),
            replica("api-5d9c-b", "Running", &format!("r.example/api@{A}")),
            // A moved tag: the third replica pulled another digest.
            replica("api-5d9c-c", "Pending", B),
            bare,
            job,
        ]);
        let rows: Vec<(&str, String, &str, Option<&str>, usize)> = got
            .iter()
            .map(|r| {
                (
                    r.namespace.as_str(),
                    r.workload.to_string(),
                    r.image.as_str(),
                    r.digest.as_ref().map(Digest::as_str),
                    r.pods.len(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                ("ops", "Pod/debug".into(), "busybox", None, 1),
                ("shop", "Deployment/api".into(), "r.example/api:1", Some(A), 2),
                ("shop", "Deployment/api".into(), "r.example/api:1", Some(B), 1),
                ("shop", "Deployment/api".into(), &format!("r.example/migrate@{B}"), Some(B), 3),
            ]
        );
        assert_eq!(got[1].reference(), format!("r.example/api:1@{A}"));
        // The workload as report JSON writes it (a contract): `Kind/name`.
        let written = serde_json::to_value(&got[1]).unwrap();
        assert_eq!(written["workload"], "Deployment/api");
        assert_eq!(got[0].reference(), "busybox");
        assert_eq!(got[3].reference(), format!("r.example/migrate@{B}"));
    }

    /// Admission denies on an image volume (`volumes[].image.reference`):
    /// what runs from one is judged by `report` and re-evaluation too.
    #[test]
    fn image_volumes_are_running_images() {
        let p = pod(json!({
            "metadata": {"name": "web-0", "namespace": "shop",
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": "1", "controller": true}]},
            "spec": {"containers": [{"name": "app", "image": "r.example/app:1"}],
                     "volumes": [{"name": "cfg", "configMap": {"name": "x"}},
                                 {"name": "app", "image": {"reference": format!("r.example/models@{B}"), "pullPolicy": "IfNotPresent"}}]},
            "status": {"phase": "Running", "containerStatuses": [{"name": "app", "image": "r.example/app:1",
                       "imageID": format!("r.example/app@{A}"), "ready": true, "restartCount": 0}]}
        }));
        let got: Vec<(String, String, Option<String>)> = images(&[p])
            .into_iter()
            .map(|r| (r.workload.to_string(), r.image, r.digest.map(|d| d.to_string())))
            .collect();
        assert_eq!(
            got,
            vec![
                ("StatefulSet/web".into(), "r.example/app:1".into(), Some(A.into())),
                // The digest its reference pins, never a container's of the same name.
                ("StatefulSet/web".into(), format!("r.example/models@{B}"), Some(B.into())),
            ]
        );
    }

    /// What each running image is pulled with: its Pods' pull secrets and
    /// their service account (`default` when none is named), as admission
    /// reads them.
    #[test]
    fn running_images_know_their_pull_secrets() {
        let p = |name: &str, spec: serde_json::Value| {
            let mut spec = spec;
            spec["containers"] = json!([{"name": "app", "image": "private.example/app:1"}]);
            pod(
                json!({"metadata": {"name": name, "namespace": "team-a"}, "spec": spec, "status": {"phase": "Running"}}),
            )
        };
        let got: Vec<PodPull> = images(&[
            p("a", json!({"imagePullSecrets": [{"name": "regcred"}, {"name": ""}], "serviceAccountName": "builder"})),
            p("b", json!({})),
        ])
        .into_iter()
        .map(|r| r.pull)
        .collect();
        assert_eq!(
            got,
            vec![
                PodPull { secrets: vec!["regcred".into()], service_account: "builder".into() },
                PodPull { secrets: vec![], service_account: "default".into() },
            ]
        );
    }
}
