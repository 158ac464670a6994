//! The ways around the gate an attacker with namespace-edit rights tried,
//! each kept as a regression test: break-glass bound to its grant, digests
//! not tags, every image source judged, no starvation, bounded clients,
//! strict input. Real registry, real cosign, the real HTTPS endpoints; the
//! controllers' requests are written as the real ones send them (the
//! end-to-end suite makes them with the real kube-controller-manager).

mod common;

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
        header_timeout: second,
        body_timeout: second,
        idle_timeout: 2 * second,
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

/// The bytes of registry bodies held at once are bounded (Finding 4), and
/// half of that budget is kept for registries that answer: a registry that
/// sends a blob's headers and never its body holds only the other half, so
/// reviews of images on registries that answer still read their
/// attestations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registries_that_stall_bodies_cannot_hold_the_bytes_in_flight() {
    use axum::http::header;
    use axum::routing::get;
    let w = world().await;
    let warm = w.image("shop/warm", "v1", Some(("scanner", clean())), Some(("ci", passed()))).await;
    let good = w.image("shop/fresh", "v1", Some(("scanner", clean())), Some(("ci", passed()))).await;
    // A "registry" (no real one can be made to stall a body) whose images'
    // `.att` list one attestation of 16 MiB, whose body never comes.
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{}", "0".repeat(64)), "size": 2},
        "layers": []
    }))
    .unwrap();
    let digest = format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&manifest)));
    let att = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{}", "0".repeat(64)), "size": 2},
        "layers": [{"mediaType": "application/vnd.dsse.envelope.v1+json", "digest": format!("sha256:{}", "1".repeat(64)), "size": 16 << 20}]
    }))
    .unwrap();
    let stalled = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (m, a, d, s) = (manifest.clone(), att.clone(), digest.clone(), stalled.clone());
    let app = axum::Router::new()
        .route(
            "/v2/stall/{repo}/manifests/{reference}",
            get(move |axum::extract::Path((_, reference)): axum::extract::Path<(String, String)>| {
                let (m, a, d) = (m.clone(), a.clone(), d.clone());
                async move {
                    let oci = [(header::CONTENT_TYPE, "application/vnd.oci.image.manifest.v1+json".to_string())];
                    if reference == "v1" || reference == d {
                        (axum::http::StatusCode::OK, oci, m).into_response()
                    } else if reference.ends_with(".att") {
                        (axum::http::StatusCode::OK, oci, a).into_response()
                    } else {
                        axum::http::StatusCode::NOT_FOUND.into_response()
                    }
                }
            }),
        )
        .route("/v2/stall/{repo}/referrers/{digest}", get(|| async { axum::http::StatusCode::NOT_FOUND }))
        .route(
            "/v2/stall/{repo}/blobs/{digest}",
            get(move || {
                s.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async move {
                    let never = futures::stream::pending::<Result<bytes::Bytes, std::io::Error>>();
                    ([(header::CONTENT_LENGTH, (16u64 << 20).to_string())], axum::body::Body::from_stream(never))
                }
            }),
        );
    use axum::response::IntoResponse;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let limits = portcullis::registry::Limits {
        request_timeout: Duration::from_secs(120),
        lookup_timeout: Duration::from_secs(120),
        ..Default::default()
    };
    let hook = std::sync::Arc::new(Webhook::start_with(&w.policy, HookOptions { limits, ..Default::default() }).await);
    let resp = hook.admit_pod("prod", &[&warm], json!({}), &[]).await;
    assert_eq!(resp["allowed"], true, "{resp}");
    let flood = {
        let hook = hook.clone();
        let images: Vec<String> = (0..4).map(|i| format!("{host}/stall/a{i}@{digest}")).collect();
        tokio::spawn(async move {
            let refs: Vec<&str> = images.iter().map(String::as_str).collect();
            hook.admit_pod("dev", &refs, json!({}), &[]).await
        })
    };
    let until = std::time::Instant::now() + Duration::from_secs(20);
    while stalled.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(std::time::Instant::now() < until, "no blob was asked of the stalling registry");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let resp = hook.admit_pod("prod", &[&good], json!({}), &[]).await;
    assert_eq!(resp["allowed"], true, "a healthy registry's attestations are still read: {resp}");
    assert_eq!(flood.await.unwrap()["allowed"], true, "dev fails open on errors");
    assert_eq!(stalled.load(std::sync::atomic::Ordering::SeqCst), 1, "one stalled body held the other half");
}
