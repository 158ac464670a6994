//! What re-evaluation finds, as a `PolicyReport` per namespace
//! (`wgpolicyk8s.io/v1alpha2`, the format Kyverno, Kubewarden and
//! policy-reporter read): built purely ([`policy_report`]), written by
//! server-side apply.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{json, Value};

use crate::kinds::{self, ObjectId};
use crate::watch::memory::Memory;
use crate::watch::report::{Row, Status};

/// The name of the PolicyReport Portcullis writes in each namespace.
pub const REPORT_NAME: &str = "portcullis";
/// The field manager of its server-side applies.
const MANAGER: &str = "portcullis";
/// The PolicyReport API.
fn report_api() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("wgpolicyk8s.io", "v1alpha2", "PolicyReport"))
}

/// The PolicyReport of one namespace: one result per workload and image,
/// with the same reasons as an admission denial.
pub fn policy_report(namespace: &str, rows: &[&Row], policy_digest: &str, now: DateTime<Utc>) -> Value {
    let mut summary: BTreeMap<&str, u64> =
        ["pass", "fail", "warn", "error", "skip"].into_iter().map(|k| (k, 0)).collect();
    let results: Vec<Value> = rows
        .iter()
        .map(|r| {
            let result = match r.status {
                Status::Compliant => "pass",
                Status::ExceptionExpiring => "warn",
                Status::ScanStale | Status::Unverified | Status::Violating => "fail",
                Status::Error => "error",
            };
            *summary.entry(result).or_default() += 1;
            let message = match r.status {
                Status::Compliant => {
                    format!("{} passes tier {}", r.running.reference(), r.tier.as_deref().unwrap_or("-"))
                }
                _ => crate::policy::decide::truncate(&r.why(), 2048),
            };
            let mut properties = serde_json::Map::new();
            properties.insert("image".into(), json!(r.running.image));
            if let Some(d) = &r.running.digest {
                properties.insert("digest".into(), json!(d.as_str()));
            }
            properties.insert("status".into(), json!(r.status.as_str()));
            if let Some(t) = &r.tier {
                properties.insert("tier".into(), json!(t));
            }
            if let Some(v) = &r.verdict {
                let reasons: Vec<&str> = v.reasons.iter().map(|x| x.as_str()).collect();
                if !reasons.is_empty() {
                    properties.insert("reasons".into(), json!(reasons.join(",")));
                }
                if !v.evidence.is_empty() {
                    properties.insert("evidence".into(), json!(v.evidence.join(",")));
                }
            }
            properties.insert("policyDigest".into(), json!(policy_digest));
            json!({
                "policy": format!("portcullis/{}", r.tier.as_deref().unwrap_or("none")),
                "rule": "promotion",
                "category": "Supply chain",
                "source": "portcullis",
                "result": result,
                "scored": true,
                "message": message,
                "timestamp": {"seconds": now.timestamp(), "nanos": 0},
                "resources": [workload_ref(namespace, &r.running.workload)],
                "properties": properties,
            })
        })
        .collect();
    json!({
        "apiVersion": "wgpolicyk8s.io/v1alpha2",
        "kind": "PolicyReport",
        "metadata": {
            "name": REPORT_NAME,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "portcullis"},
        },
        "summary": summary,
        "results": results,
    })
}

/// A workload (`Deployment/shop`) as an object reference.
fn workload_ref(namespace: &str, workload: &ObjectId) -> Value {
    serde_json::to_value(object_ref(namespace, workload)).unwrap_or(Value::Null)
}

pub(super) fn object_ref(namespace: &str, workload: &ObjectId) -> ObjectReference {
    let api_version = kinds::named(&workload.kind).map(|k| k.api_version()).unwrap_or_else(|| "v1".into());
    ObjectReference {
        api_version: Some(api_version),
        kind: Some(workload.kind.clone()),
        name: Some(workload.name.clone()),
        namespace: Some(namespace.into()),
        ..Default::default()
    }
}

/// Why writing the reports stopped.
pub(super) enum WriteError {
    NoCrd,
    Api(kube::Error),
}

/// One PolicyReport per namespace with running images; an emptied one for
/// a namespace that had a report and has none now.
pub(super) async fn write_reports(
    client: &Client,
    rows: &[Row],
    memory: &mut Memory,
    policy_digest: &str,
    now: DateTime<Utc>,
) -> Result<(), WriteError> {
    let mut by_ns: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
    for r in rows {
        by_ns.entry(r.running.namespace.as_str()).or_default().push(r);
    }
    let gone: Vec<String> = memory.reported.iter().filter(|ns| !by_ns.contains_key(ns.as_str())).cloned().collect();
    for ns in &gone {
        by_ns.insert(ns.as_str(), vec![]);
    }
    let ar = report_api();
    let params = PatchParams::apply(MANAGER).force();
    let mut result = Ok(());
    let mut reported = BTreeSet::new();
    for (ns, rows) in by_ns {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
        let report = policy_report(ns, &rows, policy_digest, now);
        match api.patch(REPORT_NAME, &params, &Patch::Apply(&report)).await {
            Ok(_) => {
                if !rows.is_empty() {
                    reported.insert(ns.to_string());
                }
            }
            // The namespace exists (its Pods do): only the resource can be missing.
            Err(kube::Error::Api(s)) if s.code == 404 => return Err(WriteError::NoCrd),
            Err(e) => result = Err(WriteError::Api(e)),
        }
    }
    memory.reported = reported;
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Reason;
    use crate::watch::testing::{at, row};

    #[test]
    fn a_report_per_namespace_with_one_result_per_workload_image() {
        let rows = [
            row("Deployment/ok", &[], &[]),
            row("Deployment/bad", &["1 critical vulnerability exceeds the limit 0"], &[Reason::Vulnerabilities]),
        ];
        let refs: Vec<&Row> = rows.iter().collect();
        let r = policy_report("shop", &refs, "sha256:abc", at(0));
        assert_eq!(r["metadata"]["name"], REPORT_NAME);
        assert_eq!(r["summary"], json!({"pass": 1, "fail": 1, "warn": 0, "error": 0, "skip": 0}));
        let bad = &r["results"][1];
        assert_eq!(bad["result"], "fail");
        assert_eq!(bad["policy"], "portcullis/production");
        assert_eq!(bad["message"], "1 critical vulnerability exceeds the limit 0");
        assert_eq!(
            bad["resources"][0],
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "bad", "namespace": "shop"})
        );
        assert_eq!(bad["properties"]["status"], "violating");
        assert_eq!(bad["properties"]["reasons"], "vulnerabilities");
        assert_eq!(r["results"][0]["result"], "pass");
        assert_eq!(r["results"][0]["message"], "r.example/api:1 passes tier production");
        let empty = policy_report("gone", &[], "sha256:abc", at(0));
        assert_eq!(empty["results"], json!([]));
    }
}
