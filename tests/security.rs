//! The ways around the gate an attacker with namespace-edit rights tried,
//! each kept as a regression test: break-glass bound to its grant, digests
//! not tags, every image source judged, no starvation, bounded clients,
//! strict input. Real registry, real cosign, the real HTTPS endpoints; the
//! controllers' requests are written as the real ones send them (the
//! end-to-end suite makes them with the real kube-controller-manager).

use crate::common;

use std::time::Duration;

use base64::Engine as _;
use common::*;
use portcullis::engine::EngineConfig;
use portcullis::webhook::{PinImages, ServerLimits};
use serde_json::{json, Value};

const SRE: &[&str] = &["sre-oncall"];
const EDITOR: &[&str] = &["developers"];
const CONTROLLER: &str = "system:serviceaccount:kube-system:replicaset-controller";
const DEPLOYMENT_CONTROLLER: &str = "system:serviceaccount:kube-system:deployment-controller";

fn glass() -> Value {
    json!({"portcullis.dev/break-glass": "payments outage, rolling forward the hotfix", "portcullis.dev/break-glass-ticket": "INC-4242"})
}

fn message(resp: &Value) -> String {
    resp["status"]["message"].as_str().unwrap_or_default().to_string()
}

fn warnings(resp: &Value) -> String {
    resp["warnings"]
        .as_array()
        .map(|w| w.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("\n"))
        .unwrap_or_default()
}

/// An AdmissionReview of `object` (`group/version`, `kind`) by `user`.
fn review(api: &str, kind: &str, op: &str, object: &Value, old: Option<&Value>, user: &str, groups: &[&str]) -> Value {
    let (group, version) = api.split_once('/').unwrap_or(("", api));
    let resource = format!("{}s", kind.to_lowercase());
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": format!("uid-{}-{}", kind, rand_id()),
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": resource},
            "name": object["metadata"]["name"],
            "namespace": object["metadata"]["namespace"],
            "operation": op,
            "userInfo": {"username": user, "groups": groups},
            "object": object,
            "oldObject": old.cloned().unwrap_or(Value::Null),
            "dryRun": false
        }
    })
}

fn rand_id() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A review of `copy` as the controller that makes it sends it (a
/// ReplicaSet by the deployment controller, a Pod by the replicaset one).
fn by_controller(copy: &Value) -> Value {
    let kind = copy["kind"].as_str().unwrap();
    let user = if kind == "ReplicaSet" { DEPLOYMENT_CONTROLLER } else { CONTROLLER };
    review(copy["apiVersion"].as_str().unwrap(), kind, "CREATE", copy, None, user, &[])
}

async fn send(hook: &Webhook, path: &str, review: &Value) -> Value {
    let r = hook.client.post(format!("{}{path}?timeout=10s", hook.url)).json(review).send().await.unwrap();
    assert_eq!(r.status(), 200, "{path}");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["response"]["uid"], review["request"]["uid"]);
    v["response"].clone()
}

/// The API server's admission chain: `/mutate`, its patch applied, then
/// `/validate` of the result. Returns the validating answer and the object
/// as it would be stored.
async fn admit(hook: &Webhook, mut review: Value) -> (Value, Value) {
    let m = send(hook, "/mutate", &review).await;
    assert_eq!(m["allowed"], true, "the mutating step never denies: {m}");
    if let Some(p) = m["patch"].as_str() {
        let p: json_patch::Patch =
            serde_json::from_slice(&base64::engine::general_purpose::STANDARD.decode(p).unwrap()).unwrap();
        json_patch::patch(&mut review["request"]["object"], &p).unwrap();
    }
    let v = send(hook, "/validate", &review).await;
    (v, review["request"]["object"].clone())
}

/// A Deployment in `prod`, `annotations` on its pod template (where
/// break-glass goes, so that its Pods carry it).
fn deployment(name: &str, images: &[&str], annotations: Value) -> Value {
    let containers: Vec<Value> =
        images.iter().enumerate().map(|(i, im)| json!({"name": format!("c{i}"), "image": im})).collect();
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": name, "namespace": "prod"},
           "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                    "template": {"metadata": {"labels": {"app": name}, "annotations": annotations}, "spec": {"containers": containers}}}})
}

/// What a controller makes from `owner`'s pod template: a ReplicaSet (from a
/// Deployment) or a Pod (from a ReplicaSet or ReplicationController), with
/// the template's metadata and spec copied and a controller owner reference.
fn copy_of(owner: &Value, kind: &str, name: &str) -> Value {
    let template = &owner["spec"]["template"];
    let owner_ref = json!([{"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"], "uid": "u-1", "controller": true}]);
    let mut metadata = template["metadata"].clone();
    metadata["name"] = json!(name);
    metadata["namespace"] = owner["metadata"]["namespace"].clone();
    metadata["ownerReferences"] = owner_ref;
    match kind {
        "Pod" => json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template["spec"]}),
        _ => json!({"apiVersion": "apps/v1", "kind": kind,
                    "metadata": {"name": name, "namespace": owner["metadata"]["namespace"], "ownerReferences": metadata["ownerReferences"]},
                    "spec": {"replicas": 1, "selector": owner["spec"]["selector"], "template": template}}),
    }
}

fn grant_of(object: &Value) -> Option<String> {
    object["spec"]["template"]["metadata"]["annotations"]["portcullis.dev/break-glass-grant"].as_str().map(String::from)
}

/// Finding 1: a Pod from any kube-system service account with a controller
/// owner reference got its break-glass with no group check, and
/// ReplicationControllers were not sent: any editor could run an unverified
/// image in production through one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn break_glass_is_not_granted_to_a_controller_account() {
    let w = world().await;
    w.image("shop/rc", "crit", Some(("scanner", criticals())), Some(("ci", passed()))).await;
    let crit = format!("{}/shop/rc:crit", w.reg.host);
    let hook = Webhook::start(&w.policy, EngineConfig::default()).await;

    let mut rc = deployment("legacy", &[&crit], glass());
    rc["apiVersion"] = json!("v1");
    rc["kind"] = json!("ReplicationController");
    rc["spec"]["selector"] = json!({"app": "legacy"});
    let (resp, rc) = admit(&hook, review("v1", "ReplicationController", "CREATE", &rc, None, "eve", EDITOR)).await;
    assert_eq!(resp["allowed"], false, "a ReplicationController is judged like any workload: {resp}");
    assert!(message(&resp).contains("break-glass refused: user eve is not in a group allowed"), "{}", message(&resp));

    // Had it been created, the Pods the replication controller makes carry
    // the annotation but no grant: denied.
    let pod = copy_of(&rc, "Pod", "legacy-x1");
    let user = "system:serviceaccount:kube-system:replication-controller";
    let (resp, _) = admit(&hook, review("v1", "Pod", "CREATE", &pod, None, user, &["system:serviceaccounts"])).await;
    assert_eq!(resp["allowed"], false, "{resp}");
    assert!(
        message(&resp).contains("carries break-glass only through the portcullis.dev/break-glass-grant"),
        "{}",
        message(&resp)
    );
    let audit = hook.audit();
    assert_eq!(audit.last().unwrap()["breakGlass"]["breakGlass"], "refused");
}

/// Finding 2: a break-glass refused on a Deployment (its images passed, so it
/// was admitted) was honoured on the ReplicaSet and Pods the controllers made
/// later, after the tag had moved to an unattested image.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_break_glass_is_never_carried_to_copies() {
    let w = world().await;
    w.image("shop/web", "release", Some(("scanner", clean())), Some(("ci", passed()))).await;
    let tag = format!("{}/shop/web:release", w.reg.host);
    let hook = Webhook::start(&w.policy, EngineConfig::default()).await;
    let (resp, dep) = admit(
        &hook,
        review("apps/v1", "Deployment", "CREATE", &deployment("web", &[&tag], glass()), None, "eve", EDITOR),
    )
    .await;
    assert_eq!(resp["allowed"], true, "its images pass: {resp}");
    assert_eq!(hook.audit().last().unwrap()["breakGlass"]["breakGlass"], "refused");
    assert_eq!(grant_of(&dep), None, "no grant for a user outside the break-glass groups");

    // The tag moves to an unattested image; a replica whose cache has not
    // seen the tag (or this one, after the tag TTL) judges the copies.
    w.image("shop/web", "release", None, None).await;
    let replica = Webhook::start(&w.policy, EngineConfig::default()).await;
    let rs = copy_of(&dep, "ReplicaSet", "web-5d8f9");
    let (resp, rs) = admit(&replica, by_controller(&rs)).await;
    assert_eq!(resp["allowed"], false, "{resp}");
    assert!(
        message(&resp).contains("no attestations found") && message(&resp).contains("break-glass refused"),
        "{}",
        message(&resp)
    );
    let pod = copy_of(&rs, "Pod", "web-5d8f9-abcde");
    let (resp, _) = admit(&replica, by_controller(&pod)).await;
    assert_eq!(resp["allowed"], false, "{resp}");
}

/// A grant made to an allowed user reaches the copies controllers make of
/// that workload, for exactly its digests, until it expires; nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_granted_break_glass_reaches_its_copies_and_nothing_else() {
    let w = world().await;
    w.image("shop/hot", "fix", Some(("scanner", criticals())), Some(("ci", passed()))).await;
    let bare = w.image("shop/hot", "bare", None, None).await;
    let hotfix = format!("{}/shop/hot:fix", w.reg.host);
    let hook = Webhook::start(&w.policy, EngineConfig::default()).await;
    let (resp, dep) = admit(
        &hook,
        review("apps/v1", "Deployment", "CREATE", &deployment("web", &[&hotfix], glass()), None, "alice", SRE),
    )
    .await;
    assert_eq!(resp["allowed"], true, "{resp}");
    assert!(warnings(&resp).contains("BREAK-GLASS by alice"), "{}", warnings(&resp));
    let token = grant_of(&dep).expect("the mutating step stamps a grant on the pod template");
    let record = hook.audit().last().unwrap().clone();
    assert_eq!(record["breakGlass"]["breakGlass"], "granted");
    assert!(record["breakGlass"]["expires"].as_str().is_some());

    // The copies, made by controllers: honoured through the grant, audited as alice's.
    let rs = copy_of(&dep, "ReplicaSet", "web-5d8f9");
    let (resp, rs) = admit(&hook, by_controller(&rs)).await;
    assert_eq!(resp["allowed"], true, "{resp}");
    assert!(warnings(&resp).contains("BREAK-GLASS by alice (grant on Deployment/web)"), "{}", warnings(&resp));
    let pod = copy_of(&rs, "Pod", "web-5d8f9-abcde");
    let (resp, _) = admit(&hook, by_controller(&pod)).await;
    assert_eq!(resp["allowed"], true, "{resp}");
    let record = hook.audit().last().unwrap().clone();
    assert_eq!(record["breakGlass"]["carried"]["grantedOn"], "Deployment/web");
    assert_eq!(record["breakGlass"]["carried"]["presentedBy"], CONTROLLER);
    assert_eq!(record["breakGlass"]["user"], "alice");

    // Re-applying the granted Deployment keeps its grant (no new rollout).
    let (resp, again) = admit(&hook, review("apps/v1", "Deployment", "UPDATE", &dep, Some(&dep), "alice", SRE)).await;
    assert_eq!(resp["allowed"], true);
    assert_eq!(grant_of(&again).as_deref(), Some(token.as_str()));

    // (case, the object presented, text of the refusal)
    let mut wider = copy_of(&rs, "Pod", "web-5d8f9-wider");
    wider["spec"]["containers"].as_array_mut().unwrap().push(json!({"name": "side", "image": bare}));
    let mut elsewhere = deployment("api", &[&hotfix], json!({}));
    elsewhere["spec"]["template"]["metadata"]["annotations"] = json!({"portcullis.dev/break-glass-grant": token});
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (payload, mac) = token.trim_start_matches("v1.").split_once('.').unwrap();
    let mut edited: Value = serde_json::from_slice(&b64.decode(payload).unwrap()).unwrap();
    edited["digests"].as_array_mut().unwrap().push(json!(bare.rsplit('@').next().unwrap()));
    let forged = format!("v1.{}.{mac}", b64.encode(serde_json::to_vec(&edited).unwrap()));
    let mut widened = wider.clone();
    widened["metadata"]["annotations"]["portcullis.dev/break-glass-grant"] = json!(forged);
    let mut expired: portcullis::policy::Grant = serde_json::from_slice(&b64.decode(payload).unwrap()).unwrap();
    expired.iat -= 48 * 3600;
    expired.exp -= 48 * 3600;
    let mut stale = copy_of(&rs, "Pod", "web-5d8f9-stale");
    stale["metadata"]["annotations"]["portcullis.dev/break-glass-grant"] =
        json!(portcullis::policy::GrantKeys::from_text(GRANT_KEY).unwrap().sign(&expired));
    let other_key = Webhook::start_with(
        &w.policy,
        HookOptions { grant_key: "another-replica-key-0123456789abcdef".into(), ..Default::default() },
    )
    .await;
    let rows: Vec<(&str, &Webhook, Value, &str)> = vec![
        ("a copy with an image the grant does not cover", &hook, wider, "the grant does not cover"),
        (
            "the grant copied onto another workload",
            &hook,
            elsewhere,
            "the grant was made on Deployment/web, and Deployment/api is neither it nor made from it",
        ),
        ("the grant's digests widened", &hook, widened, "signature does not verify"),
        ("an expired grant", &hook, stale, "the grant expired at"),
        (
            "a server without the grant key",
            &other_key,
            copy_of(&rs, "Pod", "web-5d8f9-other"),
            "signature does not verify",
        ),
    ];
    for (case, hook, object, text) in rows {
        let (resp, _) = admit(hook, by_controller(&object)).await;
        assert_eq!(resp["allowed"], false, "{case}: {resp}");
        assert!(message(&resp).contains(text), "{case}: {}", message(&resp));
    }
}

/// The object as `/mutate` alone leaves it (its patch applied).
async fn mutated(hook: &Webhook, review: &Value) -> Value {
    let m = send(hook, "/mutate", review).await;
    assert_eq!(m["allowed"], true, "the mutating step never denies: {m}");
    let mut object = review["request"]["object"].clone();
    if let Some(p) = m["patch"].as_str() {
        let p: json_patch::Patch =
            serde_json::from_slice(&base64::engine::general_purpose::STANDARD.decode(p).unwrap()).unwrap();
        json_patch::patch(&mut object, &p).unwrap();
    }
    object
}

/// Issue 21, finding 1: anyone who reached the webhook port could post a
/// forged `/mutate` in the name of bob (sre-oncall) and get a validly signed
/// grant back; alice (an editor) then applied the Deployment carrying only
/// that grant, and it, its ReplicaSet and its Pod were admitted in
/// production. A grant counts only for the user it names, on their own
/// request, or on the copies a workload controller makes of the object it
/// was stamped on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_minted_for_one_user_is_useless_to_another() {
    let w = world().await;
    let bare = w.image("shop/mint", "bare", None, None).await;
    let hook = Webhook::start(&w.policy, EngineConfig::default()).await;

    // The forged review: bob's name, break-glass annotations, an unattested image.
    let forged = review("apps/v1", "Deployment", "CREATE", &deployment("web", &[&bare], glass()), None, "bob", SRE);
    let token = grant_of(&mutated(&hook, &forged).await).expect("a grant stamped for bob");
    let carried = deployment("web", &[&bare], json!({"portcullis.dev/break-glass-grant": token}));

    // alice applies the workload with only the grant: refused, whatever the kind.
    let (resp, _) = admit(&hook, review("apps/v1", "Deployment", "CREATE", &carried, None, "alice", EDITOR)).await;
    assert_eq!(resp["allowed"], false, "{resp}");
    assert!(
        message(&resp).contains("the grant was made for bob, and on Deployment/web itself it counts only on bob's own requests, not alice's"),
        "{}",
        message(&resp)
    );
    let mut updated = carried.clone();
    updated["metadata"]["labels"] = json!({"team": "payments"});
    let old = deployment("web", &[&format!("{}/shop/mint:old", w.reg.host)], json!({}));
    let (resp, _) =
        admit(&hook, review("apps/v1", "Deployment", "UPDATE", &updated, Some(&old), "alice", EDITOR)).await;
    assert_eq!(resp["allowed"], false, "an update carrying the grant: {resp}");
    // The copies alice makes herself, claiming the granted Deployment as owner.
    let rs = copy_of(&carried, "ReplicaSet", "web-5d8f9");
    let pod = copy_of(&rs, "Pod", "web-5d8f9-abcde");
    for (kind, api, copy) in [("ReplicaSet", "apps/v1", &rs), ("Pod", "v1", &pod)] {
        let (resp, _) = admit(&hook, review(api, kind, "CREATE", copy, None, "alice", EDITOR)).await;
        assert_eq!(resp["allowed"], false, "{kind} created by alice: {resp}");
        assert!(
            message(&resp).contains("counts only when a workload controller creates it, and alice is not one"),
            "{kind}: {}",
            message(&resp)
        );
    }
    let audit = hook.audit();
    assert!(audit.iter().rev().take(4).all(|r| r["breakGlass"]["breakGlass"] == "refused"), "{audit:#?}");

    // What a grant is for still works: bob's own request, and the
    // controllers' copies of the object it was stamped on.
    let (resp, _) = admit(&hook, review("apps/v1", "Deployment", "CREATE", &carried, None, "bob", SRE)).await;
    assert_eq!(resp["allowed"], true, "{resp}");
    let (resp, _) = admit(&hook, by_controller(&rs)).await;
    assert_eq!(resp["allowed"], true, "{resp}");
    let (resp, _) = admit(&hook, by_controller(&pod)).await;
    assert_eq!(resp["allowed"], true, "{resp}");
    assert_eq!(hook.audit().last().unwrap()["breakGlass"]["carried"]["presentedBy"], CONTROLLER);
}

/// Issue 21, finding 3: alice (an editor) put a break-glass justification in
/// a Deployment whose images passed, then moved its tag to an unattested
/// image; bob (sre-oncall) ran `kubectl annotate deploy/web team=payments`,
/// `/mutate` minted a grant in bob's name over the unattested digest with
/// alice's text, and the rollout was admitted. Break-glass is asked only by
/// the request that writes (adds or changes) the justification.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn break_glass_is_never_laundered_through_a_colleagues_change() {
    let w = world().await;
    w.image("shop/laundry", "release", Some(("scanner", clean())), Some(("ci", passed()))).await;
    let tag = format!("{}/shop/laundry:release", w.reg.host);
    let hook = Webhook::start(&w.policy, EngineConfig::default()).await;
    let (resp, dep) = admit(
        &hook,
        review("apps/v1", "Deployment", "CREATE", &deployment("web", &[&tag], glass()), None, "alice", EDITOR),
    )
    .await;
    assert_eq!(resp["allowed"], true, "its images pass: {resp}");
    assert_eq!(grant_of(&dep), None);
    w.image("shop/laundry", "release", None, None).await;

    // bob's routine change: a label on the Deployment, nothing else.
    let mut annotated = dep.clone();
    annotated["metadata"]["annotations"] = json!({"team": "payments"});
    let fresh = Webhook::start(&w.policy, EngineConfig::default()).await;
    let (resp, stored) =
        admit(&fresh, review("apps/v1", "Deployment", "UPDATE", &annotated, Some(&dep), "bob", SRE)).await;
    assert_eq!(resp["allowed"], true, "{resp}");
    assert_eq!(grant_of(&stored), None, "no grant from a justification bob did not write");
    assert_ne!(fresh.audit().last().map(|r| r["breakGlass"]["breakGlass"].clone()), Some(json!("granted")));
    // The copies the controllers would make are judged without break-glass.
    let (resp, _) = admit(&fresh, by_controller(&copy_of(&stored, "ReplicaSet", "web-7c4d2"))).await;
    assert_eq!(resp["allowed"], false, "{resp}");

    // bob changes the image, leaving alice's justification as it was: no
    // direct break-glass either.
    let mut bumped = dep.clone();
    bumped["spec"]["template"]["spec"]["containers"][0]["image"] = json!(format!("{tag}-2"));
    w.image("shop/laundry", "release-2", None, None).await;
    let (resp, stored) =
        admit(&fresh, review("apps/v1", "Deployment", "UPDATE", &bumped, Some(&dep), "bob", SRE)).await;
    assert_eq!(resp["allowed"], false, "{resp}");
    assert!(
        message(&resp).contains("the portcullis.dev/break-glass justification was not written by this request"),
        "{}",
        message(&resp)
    );
    assert_eq!(grant_of(&stored), None);

    // Writing a justification of his own is bob's break-glass.
    let mut own = bumped.clone();
    own["spec"]["template"]["metadata"]["annotations"]["portcullis.dev/break-glass"] =
        json!("bob: checkout outage, rolling forward");
    let (resp, stored) = admit(&fresh, review("apps/v1", "Deployment", "UPDATE", &own, Some(&dep), "bob", SRE)).await;
    assert_eq!(resp["allowed"], true, "{resp}");
    assert!(warnings(&resp).contains("BREAK-GLASS by bob"), "{}", warnings(&resp));
    assert!(grant_of(&stored).is_some());
}

/// Issue 21, finding 6: `/mutate` had none of the validator's bounds: one
/// Pod naming 5,000 distinct tags caused 1,815 registry requests and 813 KB
/// of warnings. Such a review is now refused as it is read (its decoded
/// form is bounded); one within that bound, past the images a review may
/// name, looks nothing up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mutating_step_is_bounded_like_the_validating_one() {
    let w = world().await;
    let hook = Webhook::start(&w.policy, EngineConfig::default()).await;
    let flood = |n: usize| {
        let many: Vec<String> = (0..n).map(|i| format!("{}/flood/i{i}:v1", w.reg.host)).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        pod_review("prod", &refs, json!({}), &[])
    };
    // 5,000: more than a review may hold of what Portcullis reads.
    let m = send(&hook, "/mutate", &flood(5000)).await;
    assert_eq!(m["allowed"], false, "{m}");
    assert!(message(&m).contains("the object holds more than 1048576 bytes of what Portcullis reads"), "{m}");
    // 500: more distinct images than a review may name.
    let m = send(&hook, "/mutate", &flood(500)).await;
    assert!(m["patch"].is_null(), "{m}");
    assert_eq!(
        warnings(&m),
        "portcullis pinned nothing on Pod web: it names 500 distinct images, more than the limit of 64 per review"
    );
    assert_eq!(
        hook.state.gate.engine().registry_requests(),
        0,
        "nothing is looked up for an object the validator denies"
    );

    // Within the bound, the warnings of images that cannot be pinned are
    // bounded as the validator's are.
    let missing: Vec<String> = (0..64).map(|i| format!("{}/shop/missing{i}:v1", w.reg.host)).collect();
    let refs: Vec<&str> = missing.iter().map(String::as_str).collect();
    let m = send(&hook, "/mutate", &pod_review("prod", &refs, json!({}), &[])).await;
    let said = m["warnings"].as_array().unwrap();
    assert_eq!(said.len(), 16, "{m}");
    assert!(said.iter().all(|w| w.as_str().unwrap().len() <= 256), "{m}");
    assert!(said[15].as_str().unwrap().starts_with("… and 49 more warnings"), "{m}");
}

/// Finding 3: the validator judged the digest a tag named then, the kubelet
/// pulled later. Pinned by `/mutate`, what is judged is what runs; a tier
/// may require digests outright.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_are_pinned_to_the_digest_judged() {
    let w = world().await;
    let clean_img = w.image("shop/pin", "release", Some(("scanner", clean())), Some(("ci", passed()))).await;
    let clean_digest = clean_img.rsplit('@').next().unwrap().to_string();
    let tag = format!("{}/shop/pin:release", w.reg.host);
    let policy = format!(
        "{}    locked:\n      requireDigest: true\n      vulnerabilities: {{ signedBy: [scanner], max: {{ critical: 0 }} }}\n",
        w.policy.replace("    dev: development\n", "    dev: development\n    locked: locked\n")
    );
    let hook = Webhook::start(&policy, EngineConfig::default()).await;
    let pod = |ns: &str, image: &str| pod_review(ns, &[image], json!({}), &[]);

    let (resp, stored) = admit(&hook, pod("prod", &tag)).await;
    assert_eq!(resp["allowed"], true, "{resp}");
    assert_eq!(
        stored["spec"]["containers"][0]["image"],
        format!("{tag}@{clean_digest}"),
        "pinned, tag kept for people"
    );
    // Idempotent: a pinned reference is left as it is.
    let m = send(&hook, "/mutate", &pod("prod", &format!("{tag}@{clean_digest}"))).await;
    assert!(m["patch"].is_null(), "{m}");

    // The tag moves to an image with criticals: the pinned Pod still runs,
    // and is judged as, the digest that was checked; a new Pod gets the new one.
    w.image("shop/pin", "release", Some(("scanner", criticals())), Some(("ci", passed()))).await;
    let v = send(&hook, "/validate", &pod("prod", stored["spec"]["containers"][0]["image"].as_str().unwrap())).await;
    assert_eq!(v["allowed"], true, "{v}");
    let fresh = Webhook::start(&policy, EngineConfig::default()).await;
    let (resp, stored) = admit(&fresh, pod("prod", &tag)).await;
    assert_eq!(resp["allowed"], false);
    let moved = stored["spec"]["containers"][0]["image"].as_str().unwrap();
    assert!(moved.starts_with(&format!("{tag}@sha256:")) && !moved.ends_with(&clean_digest), "{moved}");
    assert!(message(&resp).contains(moved.rsplit('@').next().unwrap()), "the denial names the pinned digest");

    // requireDigest: a tag is denied with how to pin it; a digest admitted.
    let v = send(&hook, "/validate", &pod("locked", &tag)).await;
    assert_eq!(v["allowed"], false);
    assert!(message(&v).contains("is not pinned by digest, and tier locked requires digests"), "{}", message(&v));
    let v = send(&hook, "/validate", &pod("locked", &clean_img)).await;
    assert_eq!(v["allowed"], true, "{v}");
    // In such a tier the pod templates users apply are pinned too (by tag
    // they would be denied), and the message says what pins them.
    let mut locked = deployment("web", &[&tag], json!({}));
    locked["metadata"]["namespace"] = json!("locked");
    let r = review("apps/v1", "Deployment", "CREATE", &locked, None, "eve", EDITOR);
    let v = send(&hook, "/validate", &r).await;
    assert!(
        message(&v).contains("or install Portcullis' mutating webhook, which pins tags in tiers that require digests")
    );
    let (resp, stored) = admit(&hook, r).await;
    assert_eq!(resp["allowed"], true, "{resp}");
    assert_eq!(stored["spec"]["template"]["spec"]["containers"][0]["image"], format!("{tag}@{clean_digest}"));
    let never = Webhook::start_with(&policy, HookOptions { pin: PinImages::Never, ..Default::default() }).await;
    let m = send(&never, "/mutate", &review("apps/v1", "Deployment", "CREATE", &locked, None, "eve", EDITOR)).await;
    assert!(m["patch"].is_null(), "--pin-images never pins nothing: {m}");

    // Scope: Pods by default; workload templates only with --pin-images all,
    // and never the copies controllers make (they inherit their owner's pins).
    let dep = deployment("web", &[&tag], json!({}));
    let m = send(&hook, "/mutate", &review("apps/v1", "Deployment", "CREATE", &dep, None, "eve", EDITOR)).await;
    assert!(m["patch"].is_null(), "Pods only by default: {m}");
    let all = Webhook::start_with(&policy, HookOptions { pin: PinImages::All, ..Default::default() }).await;
    let m = send(&all, "/mutate", &review("apps/v1", "Deployment", "CREATE", &dep, None, "eve", EDITOR)).await;
    assert!(m["patch"].is_string(), "{m}");
    let m = send(&all, "/mutate", &by_controller(&copy_of(&dep, "ReplicaSet", "web-1"))).await;
    assert!(m["patch"].is_null(), "{m}");
    // An UPDATE that keeps an image does not touch it (no restart).
    let p = pod("prod", &tag);
    let mut upd = p.clone();
    upd["request"]["operation"] = json!("UPDATE");
    upd["request"]["oldObject"] = p["request"]["object"].clone();
    let m = send(&hook, "/mutate", &upd).await;
    assert!(m["patch"].is_null(), "{m}");
}

/// Finding 4: one Pod of 300 images on a registry that never answers filled
/// the global lookup slots, and production reviews against other registries
/// were denied for ~40 s; nothing capped images per review.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_registry_cannot_starve_reviews_of_other_registries() {
    let (tarpit, held) = silent_registry().await;
    let w = world().await;
    let good = w.image("shop/ok", "v1", Some(("scanner", clean())), Some(("ci", passed()))).await;
    // The tarpit's first lookups hold their connections for the whole test.
    let limits = portcullis::registry::Limits {
        request_timeout: Duration::from_secs(120),
        lookup_timeout: Duration::from_secs(120),
        ..Default::default()
    };
    let hook = std::sync::Arc::new(
        Webhook::start_with(&w.policy, HookOptions { deadline: Duration::from_secs(3), limits, ..Default::default() })
            .await,
    );
    // 300 lookups against the tarpit, in reviews of 60 images (under the cap).
    let flood: Vec<_> = (0..5)
        .map(|r| {
            let hook = hook.clone();
            let images: Vec<String> = (0..60).map(|i| format!("{tarpit}/flood/r{r}i{i}:v1")).collect();
            tokio::spawn(async move {
                let refs: Vec<&str> = images.iter().map(String::as_str).collect();
                hook.admit_pod("dev", &refs, json!({}), &[]).await
            })
        })
        .collect();
    // Wait until the tarpit holds its share of lookups, then review production.
    let until = std::time::Instant::now() + Duration::from_secs(20);
    while held.connections().await < 8 {
        assert!(std::time::Instant::now() < until, "the flood never reached the tarpit");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let resp = hook.admit_pod("prod", &[&good], json!({}), &[]).await;
    assert_eq!(resp["allowed"], true, "a healthy registry's review is decided on its evidence: {resp}");
    for f in flood {
        assert_eq!(f.await.unwrap()["allowed"], true, "dev fails open on errors");
    }
    assert_eq!(held.connections().await, 8, "only the per-registry share of lookups reached the tarpit");
    let saturated = hook
        .audit()
        .iter()
        .flat_map(|r| r["images"].as_array().cloned().unwrap_or_default())
        .filter(|v| v["error"].as_str().is_some_and(|e| e.contains("is saturated")))
        .count();
    assert!(saturated > 0, "lookups past the registry's queue fail at once");

    // More distinct images than the cap: denied, saying so, before any lookup.
    let many: Vec<String> = (0..65).map(|i| format!("{tarpit}/many/i{i}:v1")).collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    let resp = hook.admit_pod("prod", &refs, json!({}), &[]).await;
    assert_eq!(resp["allowed"], false);
    assert!(
        message(&resp).contains("names 65 distinct images, more than the limit of 64 per review"),
        "{}",
        message(&resp)
    );
    // The denial of 64 bad images stays within the message bound.
    let bad: Vec<String> = (0..64).map(|i| format!("{}/shop/missing{i}:v1", w.reg.host)).collect();
    let refs: Vec<&str> = bad.iter().map(String::as_str).collect();
    let resp = hook.admit_pod("prod", &refs, json!({}), &[]).await;
    assert_eq!(resp["allowed"], false);
    assert!(message(&resp).len() <= portcullis::webhook::MAX_MESSAGE, "{}", message(&resp).len());
    assert!(message(&resp).contains("more images denied (the audit record lists every one)"));
    assert_eq!(hook.audit().last().unwrap()["images"].as_array().unwrap().len(), 64);
}

/// Finding 5: connections that sent half a request stayed open for 65 s and
/// more. Every stage is now bounded, and a review is decided meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_reviews_still_decided() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let w = world().await;
    let good = w.image("shop/fast", "v1", Some(("scanner", clean())), Some(("ci", passed()))).await;
    let second = Duration::from_secs(1);
    let server = ServerLimits {
        max_connections: 64,
        handshake_timeout: second,
        first_request_timeout: second,
        header_timeout: second,
        body_timeout: second,
        idle_timeout: 2 * second,
        ..ServerLimits::default()
    };
    let hook = Webhook::start_with(&w.policy, HookOptions { server, ..Default::default() }).await;
    let addr = hook.url.trim_start_matches("https://").to_string();
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    roots.add(rustls::pki_types::CertificateDer::from_pem_slice(hook.ca_pem.as_bytes()).unwrap()).unwrap();
    let mut cfg = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg));
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();

    // More slow clients than connection slots, of every kind.
    let mut raw = Vec::new();
    for _ in 0..20 {
        raw.push(tokio::net::TcpStream::connect(&addr).await.unwrap()); // never starts TLS
    }
    let mut slow = Vec::new();
    for i in 0..80 {
        let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let mut tls = match tokio::time::timeout(Duration::from_secs(30), connector.connect(name.clone(), tcp)).await {
            Ok(Ok(t)) => t,
            _ => continue, // past the slots, a handshake waits for one: not needed here
        };
        let half = match i % 3 {
            0 => "POST /validate HTTP/1.1\r\nHost: portcullis\r\nContent-Ty".to_string(), // half the headers
            1 => "POST /validate HTTP/1.1\r\nHost: portcullis\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"apiVersion\"".to_string(), // half a body
            _ => String::new(), // nothing at all
        };
        tls.write_all(half.as_bytes()).await.unwrap();
        slow.push(tls);
        if slow.len() == 50 {
            break;
        }
    }
    let resp = hook.admit_pod("prod", &[&good], json!({}), &[]).await;
    assert_eq!(resp["allowed"], true, "{resp}");

    // Each slow connection is closed by the server (bounded wait: a server
    // that keeps them, as before, fails here).
    for (i, mut c) in slow.into_iter().enumerate() {
        let mut buf = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(30), c.read_to_end(&mut buf)).await;
        assert!(r.is_ok(), "slow connection {i} still open after 30s");
    }
    for (i, mut c) in raw.into_iter().enumerate() {
        let mut buf = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(30), c.read_to_end(&mut buf)).await;
        assert!(r.is_ok(), "connection {i} that never started TLS still open after 30s");
    }
}

/// Issue 21, finding 5: bodies being read at once are bounded in bytes, and
/// clients sending large bodies slowly hold only what they sent, never
/// delaying the reviews every API server sends (a few kilobytes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_read_slowly_never_delay_ordinary_reviews() {
    use tokio::io::AsyncWriteExt;
    let w = world().await;
    let good = w.image("shop/calm", "v1", Some(("scanner", clean())), Some(("ci", passed()))).await;
    let budget = portcullis::webhook::MAX_BODY;
    // A body that never completes is held until the (long) body timeout:
    // were ordinary reviews to wait behind it, they would wait that long.
    let server = ServerLimits { body_timeout: Duration::from_secs(120), ..Default::default() };
    let hook = Webhook::start_with(&w.policy, HookOptions { reading: budget, server, ..Default::default() }).await;
    let addr = hook.url.trim_start_matches("https://").to_string();
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    roots.add(rustls::pki_types::CertificateDer::from_pem_slice(hook.ca_pem.as_bytes()).unwrap()).unwrap();
    let mut cfg = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg));
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    // Two clients each declare a 7 MB body and send all but the last bytes.
    let mut hogs = Vec::new();
    for _ in 0..2 {
        let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let mut tls = connector.connect(name.clone(), tcp).await.unwrap();
        let head = "POST /validate HTTP/1.1\r\nHost: portcullis\r\nContent-Type: application/json\r\nContent-Length: 7000000\r\n\r\n";
        tls.write_all(head.as_bytes()).await.unwrap();
        let filler = vec![b' '; 64 << 10];
        let hog = tokio::spawn(async move {
            for _ in 0..100 {
                if tls.write_all(&filler).await.is_err() {
                    break;
                }
            }
            tls
        });
        hogs.push(hog);
    }
    // Wait until the hogs hold the whole budget between them.
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while hook.state.reading.available_permits() > 0 {
        assert!(std::time::Instant::now() < until, "the slow bodies never took the budget");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // An ordinary review is read and decided meanwhile.
    let resp = hook.admit_pod("prod", &[&good], json!({}), &[]).await;
    assert_eq!(resp["allowed"], true, "{resp}");
    assert_eq!(hook.state.reading.available_permits(), 0, "the budget is still held by the slow bodies");
    for h in hogs {
        h.abort();
    }
}

/// Finding 6 and friends: image volumes, ReplicationControllers and
/// PodTemplates are judged; a pod-bearing object whose spec cannot be read
/// is denied, not let through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_image_source_is_judged() {
    let w = world().await;
    let clean_img = w.image("shop/vol", "clean", Some(("scanner", clean())), Some(("ci", passed()))).await;
    let crit = w.image("shop/vol", "crit", Some(("scanner", criticals())), Some(("ci", passed()))).await;
    let hook = Webhook::start(&w.policy, EngineConfig::default()).await;
    let mut with_volume = pod_review("prod", &[&clean_img], json!({}), &[]);
    with_volume["request"]["object"]["spec"]["volumes"] =
        json!([{"name": "models", "image": {"reference": crit, "pullPolicy": "IfNotPresent"}}]);
    let mut template = json!({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t", "namespace": "prod"},
                              "template": {"metadata": {}, "spec": {"containers": [{"name": "c", "image": crit}]}}});
    let broken = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "b", "namespace": "prod"},
                        "spec": {"template": {"spec": {"containers": {"name": "c", "image": crit}}}}});
    let mut empty = review("apps/v1", "Deployment", "CREATE", &broken, None, "eve", EDITOR);
    empty["request"]["object"] = Value::Null;
    // (case, review, allowed, text)
    let crit_digest = crit.rsplit('@').next().unwrap().to_string();
    let rows = vec![
        ("an image volume (the only failing image)", with_volume, false, crit_digest.as_str()),
        ("a PodTemplate", review("v1", "PodTemplate", "CREATE", &template, None, "eve", EDITOR), false, "2 critical"),
        (
            "a Deployment whose pod spec cannot be read",
            review("apps/v1", "Deployment", "CREATE", &broken, None, "eve", EDITOR),
            false,
            "the pod spec of this Deployment cannot be read",
        ),
        ("a create without an object", empty, false, "the object is missing"),
    ];
    for (case, r, allowed, text) in rows {
        let resp = send(&hook, "/validate", &r).await;
        assert_eq!(resp["allowed"], allowed, "{case}: {resp}");
        assert!(message(&resp).contains(text), "{case}: {}", message(&resp));
    }
    // An image volume is pinned like a container image.
    template["template"]["spec"] = json!({"containers": [{"name": "c", "image": clean_img}], "volumes": [{"name": "m", "image": {"reference": format!("{}/shop/vol:clean", w.reg.host)}}]});
    let mut p = pod_review("prod", &[&clean_img], json!({}), &[]);
    p["request"]["object"]["spec"]["volumes"] = template["template"]["spec"]["volumes"].clone();
    let (resp, stored) = admit(&hook, p).await;
    assert_eq!(resp["allowed"], true, "{resp}");
    assert_eq!(
        stored["spec"]["volumes"][0]["image"]["reference"],
        format!("{}/shop/vol:clean@{}", w.reg.host, clean_img.rsplit('@').next().unwrap())
    );
}

/// Finding 7: 33 legacy attestations denied an image forever; past the
/// limit the newest are read, and a note says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_attestation_limit_the_newest_are_read() {
    let w = world().await;
    let image = w.image("shop/many", "v1", Some(("scanner", clean())), Some(("ci", passed()))).await;
    // 31 older (junk) attestations before cosign's two: 33 in all.
    let tag = att_tag(&image);
    let mut m = w.reg.get_manifest("shop/many", &tag).await;
    let junk = w.reg.get_manifest("shop/many", &tag).await["layers"][0].clone();
    let mut junk = junk;
    let old = br#"{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[]}"#;
    junk["digest"] = json!(w.reg.put_blob_public("shop/many", old).await);
    junk["size"] = json!(old.len());
    let mut layers = vec![junk; 31];
    layers.extend(m["layers"].as_array().unwrap().iter().cloned());
    m["layers"] = json!(layers);
    w.reg.put_manifest("shop/many", &tag, &m).await;
    let hook = Webhook::start(&w.policy, EngineConfig::default()).await;
    let resp = hook.admit_pod("prod", &[&image], json!({}), &[]).await;
    assert_eq!(resp["allowed"], true, "{resp}");
    assert!(warnings(&resp).contains("1 older attestation of sha256:"), "{}", warnings(&resp));
    assert!(warnings(&resp).contains("was not read: only the newest 32 are"), "{}", warnings(&resp));
}

/// Finding 8: references outside the distribution grammar (`..`, `?`, `#`)
/// were accepted, and whatever body came back was hashed as a digest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn references_and_manifests_are_strict() {
    let (host, held) = silent_registry().await;
    let w = world().await;
    let hook = Webhook::start(&w.policy, EngineConfig::default()).await;
    for bad in [
        format!("{host}/shop/../v2/x"),
        format!("{host}/shop/api?x=1"),
        format!("{host}/shop/api#frag"),
        format!("{host}/shop/api:v1#x"),
    ] {
        let resp = hook.admit_pod("prod", &[&bad], json!({}), &[]).await;
        assert_eq!(resp["allowed"], false, "{bad}");
        assert!(message(&resp).contains("invalid image reference"), "{bad}: {}", message(&resp));
    }
    assert_eq!(held.connections().await, 0, "no such reference reaches a registry");

    // A "registry" that answers a manifest request with something else (no
    // real registry does; written here for that reason).
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/v2/odd/app/manifests/{reference}",
        get(|| async { ([("content-type", "application/json")], "{\"repositories\":[]}") })
            .head(|| async { ([("content-type", "application/json")], "") }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let odd = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let resp = hook.admit_pod("prod", &[&format!("{odd}/odd/app:v1")], json!({}), &[]).await;
    assert_eq!(resp["allowed"], false);
    assert!(message(&resp).contains("not a manifest"), "{}", message(&resp));
}

/// Finding 8: `result` and `Result` in one signed predicate: Go's JSON
/// decoder reads the last (case-insensitively), serde the exact one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_readers_disagree_on_is_malformed() {
    let w = world().await;
    let mut two_faced = passed();
    two_faced["Result"] = json!("FAILED");
    let image = w.image("shop/amb", "v1", Some(("scanner", clean())), Some(("ci", two_faced))).await;
    let hook = Webhook::start(&w.policy, EngineConfig::default()).await;
    let resp = hook.admit_pod("prod", &[&image], json!({}), &[]).await;
    assert_eq!(resp["allowed"], false, "{resp}");
    let m = message(&resp);
    assert!(
        m.contains("payload is ambiguous JSON: an object has both")
            && m.contains("\"result\"")
            && m.contains("\"Result\""),
        "{m}"
    );
}

/// Finding 8: a newline in a justification (or a name) forged a line of the
/// text log. The real binary, its real log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_text_cannot_forge_log_lines() {
    use std::io::BufRead;
    let w = world().await;
    let crit = w.image("shop/log", "v1", Some(("scanner", criticals())), Some(("ci", passed()))).await;
    let dir = tempfile::tempdir().unwrap();
    let tls = test_tls();
    std::fs::write(dir.path().join("tls.crt"), &tls.cert_pem).unwrap();
    std::fs::write(dir.path().join("tls.key"), &tls.key_pem).unwrap();
    std::fs::write(dir.path().join("policy.yaml"), &w.policy).unwrap();
    std::fs::write(dir.path().join("grant.key"), GRANT_KEY).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["serve", "--listen", "127.0.0.1:0", "--cluster", "never", "--log-format", "text", "--audit-log"])
        .arg(dir.path().join("audit.jsonl"))
        .arg("--policy")
        .arg(dir.path().join("policy.yaml"))
        .arg("--grant-key")
        .arg(dir.path().join("grant.key"))
        .arg("--tls-cert")
        .arg(dir.path().join("tls.crt"))
        .arg("--tls-key")
        .arg(dir.path().join("tls.key"))
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("portcullis exited").unwrap();
        if let Some(rest) = line.split("portcullis serving https://").nth(1) {
            break rest.split('/').next().unwrap().to_string();
        }
    };
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(tls.ca_pem.as_bytes()).unwrap()])
        .build()
        .unwrap();
    let forged = "outage\n2026-11-23T10:00:00.000000Z  INFO portcullis: FORGED break-glass approved by security";
    let mut r = pod_review(
        "prod",
        &[&crit],
        json!({"portcullis.dev/break-glass": forged, "portcullis.dev/break-glass-ticket": "INC-1\nFORGED ticket"}),
        &["sre-oncall"],
    );
    r["request"]["name"] = json!("web\nFORGED name");
    let v: Value = client.post(format!("https://{addr}/validate")).json(&r).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["response"]["allowed"], true, "break-glass granted, and logged: {v}");
    let _ = child.kill();
    let _ = child.wait();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l.contains("break-glass admission")), "{rest:#?}");
    for l in &rest {
        assert!(!l.starts_with("2026-11-23T10:00:00") && !l.starts_with("FORGED"), "a forged log line: {l:?}");
    }
}

/// Finding 8: a namespace labelled `Production` went to the fail-open
/// webhook. The shipped selectors send every tier but the lenient ones,
/// written exactly, to the fail-closed entry.
#[test]
fn the_shipped_selectors_fail_closed_on_any_other_tier_value() {
    let text = std::fs::read_to_string("manifests/40-webhook.yaml").unwrap();
    let cfg: Value = serde_yaml_ng::from_str(&text).unwrap();
    let webhooks = cfg["webhooks"].as_array().unwrap();
    let matches = |selector: &Value, labels: &[(&str, &str)]| {
        selector["matchExpressions"].as_array().unwrap().iter().all(|e| {
            let key = e["key"].as_str().unwrap();
            let value = labels.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
            let values: Vec<&str> =
                e["values"].as_array().map(|v| v.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
            match e["operator"].as_str().unwrap() {
                "In" => value.is_some_and(|v| values.contains(&v)),
                "NotIn" => value.is_none_or(|v| !values.contains(&v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                op => panic!("operator {op}"),
            }
        })
    };
    // (tier label, failure policy expected)
    let rows: &[(Option<&str>, &str)] = &[
        (Some("production"), "Fail"),
        (Some("Production"), "Fail"),
        (Some("PRODUCTION"), "Fail"),
        (Some("staging"), "Fail"),
        (Some("prod"), "Fail"),
        (Some(""), "Fail"),
        (Some("development "), "Fail"),
        (Some("Development"), "Fail"),
        (Some("development"), "Ignore"),
        (None, "Ignore"),
    ];
    for (tier, want) in rows {
        let mut labels = vec![("kubernetes.io/metadata.name", "shop")];
        if let Some(t) = tier {
            labels.push(("portcullis.dev/tier", t));
        }
        let sent: Vec<&str> = webhooks
            .iter()
            .filter(|w| matches(&w["namespaceSelector"], &labels))
            .map(|w| w["failurePolicy"].as_str().unwrap())
            .collect();
        assert_eq!(sent, [*want], "tier label {tier:?} goes to exactly one entry");
    }
    // Every entry sends every pod-bearing resource.
    for w in webhooks {
        let resources: Vec<&str> = w["rules"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r["resources"].as_array().unwrap())
            .filter_map(Value::as_str)
            .collect();
        for r in [
            "pods",
            "pods/ephemeralcontainers",
            "podtemplates",
            "replicationcontrollers",
            "deployments",
            "replicasets",
            "statefulsets",
            "daemonsets",
            "jobs",
            "cronjobs",
        ] {
            assert!(resources.contains(&r), "{} does not send {r}", w["name"]);
        }
    }
}

/// Issue 21, finding 1: anyone who could reach the webhook port could ask.
/// A forged review to /mutate came back with a signed break-glass grant; a
/// forged /validate wrote Events, audit records and metrics. With
/// `--client-ca`, only a client whose certificate chains to that CA (and,
/// with `--client-name`, carries the name) is answered on /validate and
/// /mutate; probes and scrapers still reach /healthz, /readyz and /metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_clients_certified_by_the_client_ca_may_ask_for_reviews() {
    let w = world().await;
    let crit = w.image("shop/forged", "v1", Some(("scanner", criticals())), Some(("ci", passed()))).await;
    let (ca_pem, issuer) = test_ca("API server client CA");
    let (_, other_issuer) = test_ca("some other CA");
    let apiserver = client_cert(&issuer, "kube-apiserver", &[]);
    let by_san = client_cert(&issuer, "front", &["apiserver.cluster.internal"]);
    let alice = client_cert(&issuer, "alice", &[]);
    let impostor = client_cert(&other_issuer, "kube-apiserver", &[]);
    // A forged break-glass: bob "of sre-oncall" asks for a grant on a Deployment.
    let forged = review("apps/v1", "Deployment", "CREATE", &deployment("forged", &[&crit], glass()), None, "bob", SRE);
    let with_names = |names: &[&str]| HookOptions {
        client_ca: Some(ca_pem.clone()),
        client_names: names.iter().map(|n| n.to_string()).collect(),
        ..Default::default()
    };
    #[derive(Debug, PartialEq)]
    enum Got {
        Status(u16),
        /// The TLS handshake failed: no HTTP answer at all.
        NoAnswer,
    }
    // (case, --client-name, client certificate, method and path, answer)
    type Row<'a> = (&'a str, &'a [&'a str], Option<&'a ClientCert>, &'a str, Got);
    let rows: Vec<Row<'_>> = vec![
        ("no certificate, /mutate", &[], None, "POST /mutate", Got::Status(403)),
        ("no certificate, /validate", &[], None, "POST /validate", Got::Status(403)),
        ("a certificate from another CA, /mutate", &[], Some(&impostor), "POST /mutate", Got::NoAnswer),
        ("a certificate from another CA, /validate", &[], Some(&impostor), "POST /validate", Got::NoAnswer),
        ("no certificate, /healthz", &[], None, "GET /healthz", Got::Status(200)),
        ("no certificate, /readyz", &[], None, "GET /readyz", Got::Status(200)),
        ("no certificate, /metrics", &[], None, "GET /metrics", Got::Status(200)),
        ("the client CA's certificate, /mutate", &[], Some(&alice), "POST /mutate", Got::Status(200)),
        ("the client CA's certificate, /validate", &[], Some(&apiserver), "POST /validate", Got::Status(200)),
        ("the name, as its CN", &["kube-apiserver"], Some(&apiserver), "POST /validate", Got::Status(200)),
        ("the name, as a DNS SAN", &["apiserver.cluster.internal"], Some(&by_san), "POST /mutate", Got::Status(200)),
        (
            "the client CA's certificate for another name",
            &["kube-apiserver"],
            Some(&alice),
            "POST /mutate",
            Got::Status(403),
        ),
        (
            "the client CA's certificate for another name",
            &["kube-apiserver"],
            Some(&alice),
            "POST /validate",
            Got::Status(403),
        ),
        (
            "another CA's certificate with the name",
            &["kube-apiserver"],
            Some(&impostor),
            "POST /validate",
            Got::NoAnswer,
        ),
    ];
    for (case, names, identity, request, want) in rows {
        let hook = Webhook::start_with(&w.policy, with_names(names)).await;
        let client = hook.client_as(identity, None);
        let (method, path) = request.split_once(' ').unwrap();
        let url = format!("{}{path}?timeout=10s", hook.url);
        let sent = match method {
            "POST" => client.post(url).json(&forged).send().await,
            _ => client.get(url).send().await,
        };
        let (got, body) = match sent {
            Ok(r) => (Got::Status(r.status().as_u16()), r.text().await.unwrap_or_default()),
            Err(_) => (Got::NoAnswer, String::new()),
        };
        assert_eq!(got, want, "{case}: {request}: {body}");
        let refused = want != Got::Status(200);
        if refused {
            assert!(hook.audit().is_empty(), "{case}: a refused review leaves no audit record");
            let m = hook.metrics().await;
            assert_eq!(metric(&m, "portcullis_break_glass_total"), 0.0, "{case}: nothing counted");
            assert_eq!(metric(&m, "portcullis_admission_decisions_total"), 0.0, "{case}: nothing counted");
        }
        if got == Got::Status(403) {
            assert!(body.contains("client certificate"), "{case}: the refusal says why: {body}");
        }
        // The forged break-glass is answered (with its grant) only to a certified client.
        let granted = body.contains("\"patch\"");
        assert_eq!(granted, path == "/mutate" && !refused, "{case}: {body}");
    }
}

/// `--metrics-listen`: health and metrics on a port of their own, which
/// never asks for a client certificate and serves no review, so that a
/// NetworkPolicy can open the webhook port to the API server alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_have_a_port_of_their_own() {
    let w = world().await;
    let (ca_pem, issuer) = test_ca("API server client CA");
    let hook = Webhook::start_with(&w.policy, HookOptions { client_ca: Some(ca_pem), ..Default::default() }).await;
    let (url, server) = hook.serve_metrics().await;
    let apiserver = client_cert(&issuer, "kube-apiserver", &[]);
    let review = pod_review("prod", &[], json!({}), &[]);
    // (case, client certificate, method and path, status)
    let rows: Vec<(&str, Option<&ClientCert>, &str, u16)> = vec![
        ("metrics", None, "GET /metrics", 200),
        ("liveness", None, "GET /healthz", 200),
        ("readiness", None, "GET /readyz", 200),
        ("no review, even for the API server", Some(&apiserver), "POST /validate", 404),
        ("no mutation, even for the API server", Some(&apiserver), "POST /mutate", 404),
    ];
    for (case, identity, request, want) in rows {
        let client = hook.client_as(identity, None);
        let (method, path) = request.split_once(' ').unwrap();
        let r = match method {
            "POST" => client.post(format!("{url}{path}")).json(&review).send().await,
            _ => client.get(format!("{url}{path}")).send().await,
        };
        assert_eq!(r.map(|r| r.status().as_u16()).unwrap_or(0), want, "{case}");
    }
    let m = hook.client_as(None, None).get(format!("{url}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(m.contains("portcullis_build_info"), "{m}");
    server.handle.shutdown();
}

/// The client CA is reloaded when its file changes: a certificate of the
/// new CA is answered, one of the old CA no longer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_ca_is_reloaded_when_it_changes() {
    let w = world().await;
    let (old_pem, old_issuer) = test_ca("old client CA");
    let (new_pem, new_issuer) = test_ca("new client CA");
    let hook = Webhook::start_with(&w.policy, HookOptions { client_ca: Some(old_pem), ..Default::default() }).await;
    hook.watch_tls(Duration::from_millis(100));
    let old = hook.client_as(Some(&client_cert(&old_issuer, "kube-apiserver", &[])), None);
    let new = hook.client_as(Some(&client_cert(&new_issuer, "kube-apiserver", &[])), None);
    let review = pod_review("prod", &[], json!({}), &[]);
    let ask = |c: &reqwest::Client| {
        let r = c.post(format!("{}/validate", hook.url)).json(&review).send();
        async move { r.await.map(|r| r.status().as_u16()).unwrap_or(0) }
    };
    assert_eq!(ask(&old).await, 200);
    assert_eq!(ask(&new).await, 0, "a certificate of a CA not yet trusted fails the handshake");
    std::fs::write(hook.client_ca_file(), &new_pem).unwrap();
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while ask(&new).await != 200 {
        assert!(std::time::Instant::now() < until, "the new client CA was not loaded within 30s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Connections the old CA authenticated are closed too: the old client,
    // kept alive until now, must authenticate again, and cannot.
    while ask(&old).await != 0 {
        assert!(std::time::Instant::now() < until, "a connection of the old CA still answered 30s after the reload");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let fresh = hook.client_as(Some(&client_cert(&old_issuer, "kube-apiserver", &[])), None);
    assert_eq!(ask(&fresh).await, 0, "the old CA's certificates are refused once it is replaced");
}

/// An HTTP/2 connection that sends PINGs every 200 ms and no request (or
/// one GET of /healthz first, when `one_request`). Resolves when the server
/// closes it.
async fn pinging(hook: &Webhook, one_request: bool) -> tokio::sync::oneshot::Receiver<()> {
    let tls = hook.tls_connect(b"h2", None).await.unwrap();
    let (mut send, mut conn) = h2::client::handshake(tls).await.unwrap();
    let mut pings = conn.ping_pong().unwrap();
    let (closed, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let _ = conn.await;
        let _ = closed.send(());
    });
    if one_request {
        send = send.ready().await.unwrap();
        let req = axum::http::Request::get(format!("{}/healthz", hook.url)).body(()).unwrap();
        let (resp, _) = send.send_request(req, true).unwrap();
        assert_eq!(resp.await.unwrap().status(), 200);
    }
    tokio::spawn(async move {
        let _keep = send; // with no handle left, the client would close the connection itself
        while pings.ping(h2::Ping::opaque()).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    rx
}

/// Issue 21, finding 8: HTTP/2 connections that send a preface and then
/// PINGs held every connection slot (any bytes reset the idle timer), and
/// reviews waited for a slot until they timed out. Now a connection that
/// has answered no request is closed after the first-request timeout, and
/// one that has after the idle timeout, PINGs or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_only_ping_are_closed_and_reviews_still_decided() {
    let w = world().await;
    let good = w.image("shop/pinged", "v1", Some(("scanner", clean())), Some(("ci", passed()))).await;
    let second = Duration::from_secs(1);
    let server = ServerLimits {
        max_connections: 8,
        first_request_timeout: second,
        idle_timeout: 2 * second,
        ..ServerLimits::default()
    };
    let hook = Webhook::start_with(&w.policy, HookOptions { server, ..Default::default() }).await;
    // Every slot taken: half the connections never ask, half asked once.
    let mut held = Vec::new();
    for i in 0..8 {
        held.push(pinging(&hook, i % 2 == 1).await);
    }
    // A review waits in the backlog for a slot, and is decided.
    let images = [good.as_str()];
    let review = hook.admit_pod("prod", &images, json!({}), &[]);
    let resp = tokio::time::timeout(Duration::from_secs(30), review).await.expect("the review was not answered in 30s");
    assert_eq!(resp["allowed"], true, "{resp}");
    for (i, closed) in held.into_iter().enumerate() {
        let r = tokio::time::timeout(Duration::from_secs(30), closed).await;
        assert!(r.is_ok(), "connection {i}, which only pings, still open after 30s");
    }
}

/// Issue 21, finding 8: one peer could hold every connection slot. Now one
/// source address holds at most `--max-connections-per-peer`; its further
/// connections are closed at once, and another peer's reviews are answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_peer_cannot_take_every_connection_slot() {
    let w = world().await;
    let good = w.image("shop/peers", "v1", Some(("scanner", clean())), Some(("ci", passed()))).await;
    let server = ServerLimits {
        max_connections: 8,
        max_connections_per_peer: 4,
        first_request_timeout: Duration::from_secs(120),
        ..ServerLimits::default()
    };
    let hook = Webhook::start_with(&w.policy, HookOptions { server, ..Default::default() }).await;
    let (a, b): (std::net::IpAddr, std::net::IpAddr) = ("127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap());
    // Peer a opens ten connections and sends nothing on them.
    let mut held = Vec::new();
    let mut closed = 0;
    for _ in 0..10 {
        match tokio::time::timeout(Duration::from_secs(10), hook.tls_connect(b"h2", Some(a))).await {
            Ok(Ok(c)) => held.push(c),
            _ => closed += 1,
        }
    }
    assert_eq!((held.len(), closed), (4, 6), "peer a holds its cap of 4 connections, and no more");
    // Its reviews are refused while it holds its cap; peer b's are answered.
    let review = pod_review("prod", &[&good], json!({}), &[]);
    let ask = |from| {
        let r =
            hook.client_as(None, Some(from)).post(format!("{}/validate?timeout=10s", hook.url)).json(&review).send();
        async move { r.await.ok().map(|r| r.status().as_u16()) }
    };
    assert_eq!(ask(b).await, Some(200), "peer b is answered");
    assert_eq!(ask(a).await, None, "peer a, at its cap, is not");
    // Closing them gives peer a its connections back.
    drop(held);
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while ask(a).await != Some(200) {
        assert!(std::time::Instant::now() < until, "peer a still refused 30s after closing its connections");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Issue 21, finding 1 (c): `--pull-secrets` makes Portcullis log in with
/// the secrets a review names; without client authentication anyone who
/// reaches the port could name any namespace's. It refuses to start so,
/// unless the risk is accepted by name.
#[test]
fn pull_secrets_need_client_authentication() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("client-ca.crt");
    std::fs::write(&ca, test_ca("client CA").0).unwrap();
    let ca = ca.to_str().unwrap();
    let needs_a_cluster = "--pull-secrets needs a cluster";
    // (case, flags, what the error says)
    let rows: &[(&str, &[&str], &str)] = &[
        ("without --client-ca", &["--pull-secrets"], "--pull-secrets needs --client-ca"),
        ("with --client-ca", &["--pull-secrets", "--client-ca", ca], needs_a_cluster),
        ("the risk accepted", &["--pull-secrets", "--pull-secrets-without-client-auth"], needs_a_cluster),
    ];
    for (case, flags, says) in rows {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["serve", "--cluster", "never", "--listen", "127.0.0.1:0"])
            .args(*flags)
            .env_remove("KUBECONFIG")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{case}: {err}");
        assert!(err.contains(says), "{case}: want {says:?} in {err}");
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["serve", "--pull-secrets", "--cluster", "never"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("anyone who can reach the webhook port"), "the error says why: {err}");
}

/// Finding 9: eight tarpit registries, each holding its 8 per-registry
/// slots, took all 32 global lookup slots, and production reviews of images
/// on a healthy registry were denied at the deadline. Registries not known
/// to answer (never heard from, or timed out lately) now share at most half
/// of the global slots, however many they are; the rest is kept for
/// registries that answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_registries_cannot_take_every_lookup_slot() {
    let w = world().await;
    let warm = w.image("shop/warm", "v1", Some(("scanner", clean())), Some(("ci", passed()))).await;
    let good = w.image("shop/fresh", "v1", Some(("scanner", clean())), Some(("ci", passed()))).await;
    let mut tarpits = Vec::new();
    for _ in 0..8 {
        tarpits.push(silent_registry().await);
    }
    // The tarpits' lookups hold their connections for the whole test.
    let limits = portcullis::registry::Limits {
        request_timeout: Duration::from_secs(120),
        lookup_timeout: Duration::from_secs(120),
        ..Default::default()
    };
    let hook = std::sync::Arc::new(Webhook::start_with(&w.policy, HookOptions { limits, ..Default::default() }).await);
    // The healthy registry has answered before, as a production registry does.
    let resp = hook.admit_pod("prod", &[&warm], json!({}), &[]).await;
    assert_eq!(resp["allowed"], true, "{resp}");
    // Each tarpit is asked for more lookups than its own share.
    let flood: Vec<_> = tarpits
        .iter()
        .enumerate()
        .map(|(t, (host, _))| {
            let hook = hook.clone();
            let images: Vec<String> = (0..12).map(|i| format!("{host}/flood/t{t}i{i}:v1")).collect();
            tokio::spawn(async move {
                let refs: Vec<&str> = images.iter().map(String::as_str).collect();
                hook.admit_pod("dev", &refs, json!({}), &[]).await
            })
        })
        .collect();
    let held = || async {
        let mut n = 0;
        for (_, h) in &tarpits {
            n += h.connections().await;
        }
        n
    };
    let until = std::time::Instant::now() + Duration::from_secs(20);
    while held().await < 16 {
        assert!(std::time::Instant::now() < until, "the flood never reached the tarpits");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let resp = hook.admit_pod("prod", &[&good], json!({}), &[]).await;
    assert_eq!(resp["allowed"], true, "a healthy registry's review is decided on its evidence: {resp}");
    assert!(message(&resp).is_empty() && warnings(&resp).is_empty(), "{resp}");
    for f in flood {
        assert_eq!(f.await.unwrap()["allowed"], true, "dev fails open on errors");
    }
    assert_eq!(held().await, 16, "registries never heard from held their shared half of the slots, no more");
}

/// Issue 21, low: 32 SBOMs attested after the scan and the test results
/// pushed both out (past the per-image limit the newest were read), and the
/// image was denied for evidence it has. The newest attestation of each
/// predicate type is read first now (the `.att` layer's `predicateType`
/// annotation, unsigned, only chooses what is read; what counts is what
/// verifies).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_one_predicate_type_cannot_push_out_another() {
    let w = world().await;
    let image = w.image("shop/sboms", "v1", Some(("scanner", clean())), Some(("ci", passed()))).await;
    let sbom = json!({"bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1, "components": []});
    w.cosign.attest("ci", &image, "cyclonedx", &sbom);
    // cosign appended the SBOM after the scan and the tests; 32 more of it,
    // newer still (the same signed layer, listed again).
    let tag = att_tag(&image);
    let mut m = w.reg.get_manifest("shop/sboms", &tag).await;
    let layers = m["layers"].as_array().unwrap().clone();
    assert_eq!(layers.len(), 3);
    let claimed: Vec<&str> = layers.iter().map(|l| l["annotations"]["predicateType"].as_str().unwrap()).collect();
    assert_eq!(
        claimed,
        [portcullis::evidence::COSIGN_VULN_V1, TEST_RESULT, "https://cyclonedx.org/bom"],
        "what cosign writes"
    );
    let mut flooded = layers.clone();
    flooded.extend(std::iter::repeat_n(layers[2].clone(), 32));
    m["layers"] = json!(flooded);
    w.reg.put_manifest("shop/sboms", &tag, &m).await;

    let hook = Webhook::start(&w.policy, EngineConfig::default()).await;
    let resp = hook.admit_pod("prod", &[&image], json!({}), &[]).await;
    assert_eq!(resp["allowed"], true, "judged on its scan and tests: {resp}");
    let w = warnings(&resp);
    assert!(w.contains("3 older attestations of sha256:") && w.contains("only the newest 32 are"), "{w}");
    let record = hook.audit().last().unwrap().clone();
    let kinds: Vec<&str> =
        record["images"][0]["attestations"].as_array().unwrap().iter().map(|a| a["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"vulnerabilities") && kinds.contains(&"tests"), "{record}");
}

/// A "registry" (no real one can be made to stall a body) serving one image
/// manifest under tag `v1` and its digest in every repository, and for its
/// `.att` one attestation layer: in repository `small`, a small body it
/// sends in full; in every other, 16 MiB whose body never comes. Counts the
/// stalled body reads.
struct Stalling {
    host: String,
    digest: String,
    stalled: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Stalling {
    async fn start() -> Stalling {
        use axum::http::header;
        use axum::response::IntoResponse;
        use axum::routing::get;
        let sha = |b: &[u8]| format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b)));
        let config = json!({"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{}", "0".repeat(64)), "size": 2});
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": config, "layers": []
        }))
        .unwrap();
        let digest = sha(&manifest);
        let small_body = bytes::Bytes::from_static(b"{\"payloadType\":\"x\",\"payload\":\"\",\"signatures\":[]}");
        let small = sha(&small_body);
        let att = |layer: &str, size: usize| {
            serde_json::to_vec(&json!({
                "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": config,
                "layers": [{"mediaType": "application/vnd.dsse.envelope.v1+json", "digest": layer, "size": size}]
            }))
            .unwrap()
        };
        let (att_small, att_big) =
            (att(&small, small_body.len()), att(&format!("sha256:{}", "1".repeat(64)), 16 << 20));
        let stalled = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (m, d, s) = (manifest.clone(), digest.clone(), stalled.clone());
        let app = axum::Router::new()
            .route(
                "/v2/stall/{repo}/manifests/{reference}",
                get(move |axum::extract::Path((repo, reference)): axum::extract::Path<(String, String)>| {
                    let (m, d) = (m.clone(), d.clone());
                    let att = if repo == "small" { att_small.clone() } else { att_big.clone() };
                    async move {
                        let oci = [(header::CONTENT_TYPE, "application/vnd.oci.image.manifest.v1+json".to_string())];
                        if reference == "v1" || reference == d {
                            (axum::http::StatusCode::OK, oci, m).into_response()
                        } else if reference.ends_with(".att") {
                            (axum::http::StatusCode::OK, oci, att).into_response()
                        } else {
                            axum::http::StatusCode::NOT_FOUND.into_response()
                        }
                    }
                }),
            )
            .route("/v2/stall/{repo}/referrers/{digest}", get(|| async { axum::http::StatusCode::NOT_FOUND }))
            .route(
                "/v2/stall/{repo}/blobs/{digest}",
                get(move |axum::extract::Path((_, blob)): axum::extract::Path<(String, String)>| {
                    let (small, small_body, s) = (small.clone(), small_body.clone(), s.clone());
                    async move {
                        if blob == small {
                            return small_body.into_response();
                        }
                        s.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let never = futures::stream::pending::<Result<bytes::Bytes, std::io::Error>>();
                        ([(header::CONTENT_LENGTH, (16u64 << 20).to_string())], axum::body::Body::from_stream(never))
                            .into_response()
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Stalling { host, digest, stalled }
    }

    /// The image of `repo`, by digest.
    fn image(&self, repo: &str) -> String {
        format!("{}/stall/{repo}@{}", self.host, self.digest)
    }

    fn stalled(&self) -> usize {
        self.stalled.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits until `n` body reads have stalled.
    async fn until_stalled(&self, n: usize) {
        let until = std::time::Instant::now() + Duration::from_secs(20);
        while self.stalled() < n {
            assert!(std::time::Instant::now() < until, "no blob was asked of the stalling registry");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Registry reads that never time out on their own (120 s), so that only
/// the split of the bytes in flight decides whether a healthy lookup goes on.
fn patient() -> HookOptions {
    let limits = portcullis::registry::Limits {
        request_timeout: Duration::from_secs(120),
        lookup_timeout: Duration::from_secs(120),
        ..Default::default()
    };
    HookOptions { limits, ..Default::default() }
}

/// A lookup of the stalling registry's 16 MiB body that never comes, and
/// meanwhile a production admission of a healthy registry's image, which
/// must still be read and allowed. With `answered_first`, the stalling
/// registry first answers one lookup in full (manifests, a small body).
async fn a_stalled_body_beside_a_healthy_lookup(answered_first: bool) -> Stalling {
    let w = world().await;
    let warm = w.image("shop/warm", "v1", Some(("scanner", clean())), Some(("ci", passed()))).await;
    let good = w.image("shop/fresh", "v1", Some(("scanner", clean())), Some(("ci", passed()))).await;
    let stall = Stalling::start().await;
    let hook = std::sync::Arc::new(Webhook::start_with(&w.policy, patient()).await);
    let resp = hook.admit_pod("prod", &[&warm], json!({}), &[]).await;
    assert_eq!(resp["allowed"], true, "{resp}");
    if answered_first {
        let resp = hook.admit_pod("dev", &[&stall.image("small")], json!({}), &[]).await;
        assert_eq!(resp["allowed"], true, "dev fails open on errors: {resp}");
        assert_eq!(stall.stalled(), 0);
    }
    let flood = {
        let (hook, image) = (hook.clone(), stall.image("big"));
        tokio::spawn(async move { hook.admit_pod("dev", &[&image], json!({}), &[]).await })
    };
    stall.until_stalled(1).await;
    let resp = hook.admit_pod("prod", &[&good], json!({}), &[]).await;
    assert_eq!(resp["allowed"], true, "a healthy registry's attestations are still read: {resp}");
    assert_eq!(flood.await.unwrap()["allowed"], true, "dev fails open on errors");
    stall
}

/// The bytes of registry bodies held at once are bounded (Finding 4), and
/// half of that budget is kept for registries that answer: a lookup of a
/// registry never heard from, which then sends a blob's headers and never
/// its body, holds only the other half, so reviews of images on registries
/// that answer still read their attestations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registries_that_stall_bodies_cannot_hold_the_bytes_in_flight() {
    let stall = a_stalled_body_beside_a_healthy_lookup(false).await;
    assert_eq!(stall.stalled(), 1, "the stalled body held the other half");
}

/// A registry that has answered is not trusted with the kept half of the
/// bytes in flight beyond what it has delivered: one that served manifests
/// and a small body in full, then sends a 16 MiB blob's headers and never
/// its body, holds the other half with it, so a healthy registry's lookup
/// still reads its attestations. (Before, any answer made it "answering":
/// its 16 MiB charge held all of the kept half until its read timed out,
/// and the healthy lookup waited past the admission deadline.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_answered_cannot_hold_more_of_the_kept_bytes_than_it_delivered() {
    let stall = a_stalled_body_beside_a_healthy_lookup(true).await;
    assert_eq!(stall.stalled(), 1, "the stalled body held the other half");
}
