//! Admission through the HTTPS endpoint, against a real registry with
//! attestations made by the real cosign. One row per case.

use crate::common;

use chrono::{Duration as Age, Utc};
use common::*;
use portcullis::engine::EngineConfig;
use serde_json::{json, Value};

fn message(resp: &Value) -> String {
    resp["status"]["message"].as_str().unwrap_or_default().to_string()
}

fn warnings(resp: &Value) -> String {
    resp["warnings"]
        .as_array()
        .map(|w| w.iter().map(|x| x.as_str().unwrap_or("").to_string()).collect::<Vec<_>>().join("\n"))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_table() {
    let w = world().await;
    let h = &w.reg.host;
    let clean_img = w.image("shop/api", "clean", Some(("scanner", clean())), Some(("ci", passed()))).await;
    let crit_img = w.image("shop/api", "crit", Some(("scanner", criticals())), Some(("ci", passed()))).await;
    let bare_img = w.image("shop/api", "bare", None, None).await;
    let rogue_img = w.image("shop/api", "rogue", Some(("rogue", clean())), Some(("rogue", passed()))).await;
    let stale_img = w
        .image(
            "shop/api",
            "stale",
            Some(("scanner", vuln_predicate(&[], Utc::now() - Age::hours(48)))),
            Some(("ci", passed())),
        )
        .await;
    let failed_img = w
        .image(
            "shop/api",
            "failed",
            Some(("scanner", clean())),
            Some(("ci", test_predicate("FAILED", &["payments", "refunds"]))),
        )
        .await;
    let wrong_signer_img = w.image("shop/api", "wrongsigner", Some(("ci", clean())), Some(("ci", passed()))).await;
    // Copied: the other image's attestations under this image's attestation tag.
    let copied_img = w.image("shop/api", "copied", None, None).await;
    w.reg.copy_attestations("shop/api", &clean_img, &copied_img).await;
    // Tampered: criticals attested, then the payload edited to claim none.
    let tampered_img = w.image("shop/api", "tampered", Some(("scanner", criticals())), Some(("ci", passed()))).await;
    w.reg
        .tamper_attestation("shop/api", &tampered_img, |p| {
            let mut st: Value = serde_json::from_str(p).unwrap();
            st["predicate"]["scanner"]["result"]["Results"][0]["Vulnerabilities"] = json!([]);
            st.to_string()
        })
        .await;
    let hook = Webhook::start(&w.policy, EngineConfig::default()).await;

    // (case, namespace, image, allowed, text the message or warnings must contain)
    let tag = |t: &str| format!("{h}/shop/api:{t}");
    let rows: Vec<(&str, &str, String, bool, &str)> = vec![
        ("clean image, production, by tag", "prod", tag("clean"), true, ""),
        ("clean image, production, by digest", "prod", clean_img.clone(), true, ""),
        ("criticals, production", "prod", tag("crit"), false, "2 critical vulnerabilities exceed the limit 0 (CVE-2024-1111 in openssl 3.0.1, fixed in 3.0.13; CVE-2024-2222 in zlib 1.2.11, fixed in 1.2.13)"),
        ("criticals, development (warn)", "dev", tag("crit"), true, " would be denied in development: upgrade openssl to 3.0.13 (and the others: portcullis check shows them), rebuild and rescan (2 critical vulnerabilities exceed the limit 0)"),
        ("no attestation, production", "prod", tag("bare"), false, "no attestations found (looked for 127.0.0.1"),
        ("untrusted key, production", "prod", rogue_img.clone(), false, "does not verify with any trusted key"),
        ("subject digest mismatch, production", "prod", copied_img.clone(), false, "attestation is for another image"),
        ("scan older than maxAge, production", "prod", stale_img.clone(), false, "older than the maxAge 24h of tier production"),
        ("FAILED tests, production", "prod", failed_img.clone(), false, "test result is FAILED (2 failed: payments, refunds), tier production requires PASSED"),
        ("payload tampered after signing, production", "prod", tampered_img.clone(), false, "does not verify with any trusted key"),
        ("scan signed by the wrong signer, production", "prod", wrong_signer_img.clone(), false, "the vulnerability scan is signed by ci, but tier production accepts only scanner"),
        ("tag that does not exist, production", "prod", tag("nope"), false, "not found in registry"),
        ("bad reference, production", "prod", "Not A Valid/Image".to_string(), false, "invalid image reference"),
        ("no tier for the namespace", "elsewhere", tag("clean"), false, "namespace elsewhere has no portcullis.dev/tier label"),
    ];
    let mut failures = Vec::new();
    for (case, ns, image, allowed, text) in &rows {
        let resp = hook.admit_pod(ns, &[image], json!({}), &[]).await;
        let got_allowed = resp["allowed"].as_bool().unwrap();
        let said = format!("{}\n{}", message(&resp), warnings(&resp));
        if got_allowed != *allowed || !said.contains(text) {
            failures.push(format!("{case}: allowed={got_allowed}, want {allowed}; expected {text:?} in:\n{said}"));
        }
        if !allowed {
            let m = message(&resp);
            assert!(m.contains("[policy sha256:"), "{case}: the denial names the policy digest: {m}");
            assert_eq!(resp["status"]["code"], 403, "{case}");
        }
    }
    assert!(failures.is_empty(), "{} rows failed:\n{}", failures.len(), failures.join("\n\n"));

    // A denial names the image by digest, for the tier.
    let resp = hook.admit_pod("prod", &[&tag("crit")], json!({}), &[]).await;
    let crit_digest = crit_img.rsplit('@').next().unwrap();
    assert!(
        message(&resp).starts_with(&format!("{h}/shop/api@{crit_digest} denied for tier production: ")),
        "{}",
        message(&resp)
    );

    // Several images: each denied one is named; the clean one is not.
    let resp = hook.admit_pod("prod", &[&tag("clean"), &tag("crit"), &tag("bare")], json!({}), &[]).await;
    let m = message(&resp);
    assert_eq!(resp["allowed"], false);
    assert!(m.contains(crit_digest) && m.contains(bare_img.rsplit('@').next().unwrap()), "{m}");
    assert!(!m.contains(clean_img.rsplit('@').next().unwrap()), "{m}");

    // Break-glass: justified, by an allowed group, with a ticket: admitted and said loudly.
    let bg = json!({"portcullis.dev/break-glass": "payments outage, rolling forward the hotfix", "portcullis.dev/break-glass-ticket": "INC-4242"});
    let resp = hook.admit_pod("prod", &[&tag("crit")], bg.clone(), &["sre-oncall"]).await;
    assert_eq!(resp["allowed"], true, "{resp}");
    assert!(warnings(&resp).contains("BREAK-GLASS by alice@example.com"), "{}", warnings(&resp));
    // ... but not by someone outside the group.
    let resp = hook.admit_pod("prod", &[&tag("crit")], bg, &["developers"]).await;
    assert_eq!(resp["allowed"], false);
    assert!(
        message(&resp).contains("break-glass refused: user alice@example.com is not in a group allowed"),
        "{}",
        message(&resp)
    );
    assert!(hook.metrics().await.contains("portcullis_break_glass_total{tier=\"production\",result=\"granted\"} 1"));
    // Metrics move as decisions are made: each with its result and reason.
    let m = hook.metrics().await;
    let decisions = |result: &str, reason: &str| {
        metric(
            &m,
            &format!(
                "portcullis_admission_decisions_total{{tier=\"production\",result=\"{result}\",reason=\"{reason}\"}}"
            ),
        )
    };
    assert_eq!(decisions("break_glass", "vulnerabilities"), 1.0, "{m}");
    assert_eq!(decisions("denied", "stale_evidence"), 1.0, "{m}");
    assert_eq!(decisions("denied", "tests"), 1.0, "{m}");
    assert_eq!(decisions("denied", "no_attestations"), 1.0, "{m}");
    assert!(decisions("denied", "vulnerabilities") >= 2.0, "{m}");
    assert_eq!(metric(&m, "portcullis_break_glass_total{tier=\"production\",result=\"refused\"}"), 1.0, "{m}");
    // The clean image was the only one admitted in production on its evidence: its scan's age.
    let age = |kind: &str| {
        metric(&m, &format!("portcullis_evidence_age_seconds_count{{tier=\"production\",kind=\"{kind}\"}}"))
    };
    assert!(age("vulnerabilities") >= 2.0, "{m}");
    // The test results carry no finish time, so they have no age.
    assert_eq!(age("tests"), 0.0, "{m}");
    assert_eq!(metric(&m, "portcullis_time_to_promotion_seconds_count{tier=\"production\"}"), 1.0, "{m}");
    // Pod web, denied (criticals), then admitted (clean): one remediation.
    let remediated =
        || async { metric(&hook.metrics().await, "portcullis_time_to_remediation_seconds_count{tier=\"production\"}") };
    let before = remediated().await;
    assert_eq!(hook.admit_pod("prod", &[&tag("crit")], json!({}), &[]).await["allowed"], false);
    assert_eq!(remediated().await, before, "a denial starts the clock");
    assert_eq!(hook.admit_pod("prod", &[&tag("clean")], json!({}), &[]).await["allowed"], true);
    assert_eq!(remediated().await, before + 1.0, "an admission after a denial is a remediation");
    assert_eq!(hook.admit_pod("prod", &[&tag("clean")], json!({}), &[]).await["allowed"], true);
    assert_eq!(remediated().await, before + 1.0, "an admission without a denial before is not");

    // A built-in controller's account is not a break-glass group: a Pod it
    // makes with a controller owner reference carries break-glass only
    // through a grant (tests/security.rs), owned or not.
    let controller_pod = |owned: bool| {
        let mut r = pod_review(
            "prod",
            &[&tag("crit")],
            json!({"portcullis.dev/break-glass": "payments outage, rolling forward the hotfix", "portcullis.dev/break-glass-ticket": "INC-4242"}),
            &[],
        );
        r["request"]["userInfo"] = json!({"username": "system:serviceaccount:kube-system:replicaset-controller", "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system"]});
        if owned {
            r["request"]["object"]["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d8f", "uid": "1", "controller": true}]);
        }
        r
    };
    for owned in [true, false] {
        let r = hook.client.post(format!("{}/validate", hook.url)).json(&controller_pod(owned)).send().await.unwrap();
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["response"]["allowed"], false, "owned={owned}: {v}");
    }

    // Every decision left an audit record with what is needed to replay it.
    let audit = hook.audit();
    assert_eq!(audit.len(), rows.len() + 9, "one audit record per decision");
    let policy_digest = hook.state.policy().digest.clone();
    for r in &audit {
        assert_eq!(r["policyDigest"], policy_digest.as_str());
        assert!(r["evaluatedAt"].as_str().is_some_and(|t| t.ends_with('Z')), "{r}");
    }
    let glass = audit.iter().find(|r| r["breakGlass"]["breakGlass"] == "granted").expect("break-glass is audited");
    assert_eq!(glass["breakGlass"]["ticket"], "INC-4242");
    assert_eq!(glass["breakGlass"]["user"], "alice@example.com");
    let denied = audit
        .iter()
        .find(|r| r["allowed"] == false && r["images"][0]["evidence"].as_array().is_some_and(|e| !e.is_empty()))
        .unwrap();
    assert!(denied["images"][0]["evidence"][0].as_str().unwrap().starts_with("sha256:"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_for_a_new_image_share_one_lookup() {
    let w = world().await;
    let img = w.image("shop/web", "v1", Some(("scanner", clean())), Some(("ci", passed()))).await;
    let hook = Webhook::start(&w.policy, EngineConfig::default()).await;
    let tagged = format!("{}/shop/web:v1", w.reg.host);
    let images = [tagged.as_str()];
    let reqs = (0..16).map(|_| hook.admit_pod("prod", &images, json!({}), &[]));
    for resp in futures::future::join_all(reqs).await {
        assert_eq!(resp["allowed"], true, "{resp}");
    }
    let m = hook.metrics().await;
    assert_eq!(metric(&m, "portcullis_cache_requests_total{cache=\"tag\",result=\"miss\"}"), 1.0, "{m}");
    assert_eq!(metric(&m, "portcullis_cache_requests_total{cache=\"evidence\",result=\"miss\"}"), 1.0, "{m}");
    // The other 15 waited for that one lookup, or found its result.
    assert_eq!(metric(&m, "portcullis_cache_requests_total{cache=\"tag\",result=\"hit\"}"), 15.0, "{m}");
    // Pinned by digest, the same evidence is reused with no new lookup.
    let resp = hook.admit_pod("prod", &[&img], json!({}), &[]).await;
    assert_eq!(resp["allowed"], true);
    assert_eq!(
        metric(&hook.metrics().await, "portcullis_cache_requests_total{cache=\"evidence\",result=\"miss\"}"),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_tag_is_reevaluated_after_the_tag_cache_expires() {
    let w = world().await;
    let first = w.image("shop/cart", "release", Some(("scanner", clean())), Some(("ci", passed()))).await;
    let ttl = std::time::Duration::from_millis(1500);
    let hook = Webhook::start(&w.policy, EngineConfig { tag_ttl: ttl, ..EngineConfig::default() }).await;
    let tagged = format!("{}/shop/cart:release", w.reg.host);
    // The resolution is cached during this request, so it expires no sooner than `cached_at + ttl`.
    let cached_at = std::time::Instant::now();
    let resp = hook.admit_pod("prod", &[&tagged], json!({}), &[]).await;
    assert_eq!(resp["allowed"], true, "{resp}");

    // The tag moves to an image with criticals.
    let second = w.image("shop/cart", "release", Some(("scanner", criticals())), Some(("ci", passed()))).await;
    assert_ne!(first, second);
    let second_digest = second.rsplit('@').next().unwrap();

    // Inside the TTL the cached resolution still answers (unless attesting took longer than the TTL).
    let resp = hook.admit_pod("prod", &[&tagged], json!({}), &[]).await;
    if cached_at.elapsed() < ttl {
        assert_eq!(resp["allowed"], true, "within the tag TTL the old digest is still used: {resp}");
    }
    // After it, the new digest is resolved and judged on its own evidence.
    let until = std::time::Instant::now() + ttl * 10;
    loop {
        let resp = hook.admit_pod("prod", &[&tagged], json!({}), &[]).await;
        if resp["allowed"] == false {
            assert!(message(&resp).contains(second_digest), "the denial names the new digest: {}", message(&resp));
            assert!(cached_at.elapsed() >= ttl, "re-resolved before the TTL expired");
            break;
        }
        assert!(std::time::Instant::now() < until, "the moved tag was never re-resolved");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_reviews_get_clear_errors() {
    let w = world().await;
    let hook = Webhook::start(&w.policy, EngineConfig::default()).await;
    let post = |body: Vec<u8>| {
        hook.client.post(format!("{}/validate", hook.url)).header("content-type", "application/json").body(body).send()
    };

    // Not JSON at all: 400 with a reason.
    let r = post(b"this is not json".to_vec()).await.unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(v["response"]["status"]["message"].as_str().unwrap().contains("invalid AdmissionReview"), "{v}");
    assert_eq!(v["response"]["allowed"], false);

    // JSON with a uid but missing fields: answered as a review, with the uid, not allowed.
    let r = post(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u-1"}}"#.to_vec())
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["response"]["uid"], "u-1");
    assert_eq!(v["response"]["allowed"], false);
    assert!(v["response"]["status"]["message"].as_str().unwrap().contains("invalid AdmissionReview"), "{v}");

    // A review without a request.
    let r = post(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec()).await.unwrap();
    assert_eq!(r.status(), 400);

    // Oversized: refused before parsing, with the limit named.
    let mut big = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":""#.to_vec();
    big.extend(std::iter::repeat_n(b'a', portcullis::webhook::MAX_BODY + 10));
    big.extend(br#""}}"#);
    let r = post(big).await.unwrap();
    assert_eq!(r.status(), 413);
    assert!(r.text().await.unwrap().contains("larger than the limit"));

    // Still serving.
    let r = hook.client.get(format!("{}/healthz", hook.url)).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // Each undecodable review left a record: what it was, and why (not its
    // bytes: a digest of them, to match a body recorded elsewhere).
    let records = hook.audit();
    let invalid: Vec<&Value> = records.iter().filter(|r| r["result"] == "invalid").collect();
    assert_eq!(invalid.len(), 3, "{records:?}");
    assert_eq!(invalid[0]["uid"], "");
    assert_eq!(invalid[1]["uid"], "u-1");
    for r in &invalid {
        assert_eq!(r["allowed"], false, "{r}");
        assert_eq!(r["reason"], "invalid_review", "{r}");
        assert_eq!(r["endpoint"], "/validate", "{r}");
        assert!(r["message"].as_str().is_some_and(|m| m.contains("invalid AdmissionReview")), "{r}");
        assert!(r["bodySha256"].as_str().is_some_and(|d| d.starts_with("sha256:")), "{r}");
        assert!(r["policyDigest"].as_str().is_some_and(|d| d.starts_with("sha256:")), "{r}");
    }
    let resp = hook.admit_pod("prod", &[&format!("{}/shop/none:v1", w.reg.host)], json!({}), &[]).await;
    assert_eq!(resp["allowed"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_kinds_pass_untouched_and_workloads_are_checked() {
    let w = world().await;
    w.image("shop/svc", "v1", Some(("scanner", criticals())), Some(("ci", passed()))).await;
    let hook = Webhook::start(&w.policy, EngineConfig::default()).await;
    let image = format!("{}/shop/svc:v1", w.reg.host);
    let hook = &hook;
    let send = |review: Value| async move {
        let r = hook.client.post(format!("{}/validate", hook.url)).json(&review).send().await.unwrap();
        r.json::<Value>().await.unwrap()["response"].clone()
    };
    // A ConfigMap is allowed without a look.
    let mut cm = pod_review("prod", &[], json!({}), &[]);
    cm["request"]["kind"] = json!({"group": "", "version": "v1", "kind": "ConfigMap"});
    cm["request"]["object"] =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "b"}});
    assert_eq!(send(cm).await["allowed"], true);
    // A Deployment's pod template is checked like a Pod.
    let mut dep = pod_review("prod", &[&image], json!({}), &[]);
    let spec = dep["request"]["object"]["spec"].clone();
    dep["request"]["kind"] = json!({"group": "apps", "version": "v1", "kind": "Deployment"});
    dep["request"]["object"] = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "prod"},
        "spec": {"selector": {}, "template": {"metadata": {}, "spec": spec}}});
    let resp = send(dep).await;
    assert_eq!(resp["allowed"], false);
    assert!(message(&resp).contains("critical"), "{resp}");
    // An UPDATE that keeps the images is not re-judged.
    let mut upd = pod_review("prod", &[&image], json!({}), &[]);
    upd["request"]["operation"] = json!("UPDATE");
    upd["request"]["oldObject"] = upd["request"]["object"].clone();
    assert_eq!(send(upd.clone()).await["allowed"], true);
    // An UPDATE that changes an image is.
    upd["request"]["oldObject"]["spec"]["containers"][0]["image"] = json!("registry.example/other:v0");
    assert_eq!(send(upd).await["allowed"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_registry_does_not_hold_the_answer() {
    let (host, held) = silent_registry().await;
    let w = world().await;
    let deadline = std::time::Duration::from_secs(1);
    let hook = Webhook::start_with_deadline(&w.policy, EngineConfig::default(), deadline).await;
    let image = format!("{host}/shop/slow:v1");
    for (ns, allowed) in [("prod", false), ("dev", true)] {
        let started = std::time::Instant::now();
        let resp = hook.admit_pod(ns, &[&image], json!({}), &[]).await;
        let took = started.elapsed();
        assert_eq!(resp["allowed"], allowed, "{ns}: {resp}");
        let said = format!("{}{}", message(&resp), warnings(&resp));
        assert!(said.contains("did not answer before the admission deadline"), "{ns}: {said}");
        // Answered at the deadline, well inside the API server's timeoutSeconds (10s).
        assert!(took < deadline * 4, "{ns}: answered after {took:?}");
    }
    assert!(held.connections().await > 0, "the registry was really asked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_policy_is_reloaded_and_a_bad_one_rejected() {
    let w = world().await;
    w.image("shop/pay", "v1", Some(("scanner", criticals())), Some(("ci", passed()))).await;
    let image = format!("{}/shop/pay:v1", w.reg.host);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.yaml");
    std::fs::write(&path, &w.policy).unwrap();
    let hook = Webhook::start(&w.policy, EngineConfig::default()).await;
    hook.watch_policy(&path, std::time::Duration::from_millis(50));
    let first = hook.state.policy().digest.clone();
    assert_eq!(hook.admit_pod("prod", &[&image], json!({}), &[]).await["allowed"], false);

    // Production now tolerates two criticals: the running server picks it up.
    let lenient =
        w.policy.replace("max: { critical: 0, high: 0, medium: 10 }", "max: { critical: 2, high: 0, medium: 10 }");
    assert_ne!(lenient, w.policy);
    std::fs::write(&path, &lenient).unwrap();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while hook.state.policy().digest == first {
        assert!(std::time::Instant::now() < until, "the changed policy was never loaded");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let second = hook.state.policy().digest.clone();
    let resp = hook.admit_pod("prod", &[&image], json!({}), &[]).await;
    assert_eq!(resp["allowed"], true, "{resp}");

    // A broken version is rejected; the last good one stays in force.
    std::fs::write(&path, lenient.replace("signedBy: [scanner]", "signedBy: [nobody]")).unwrap();
    while metric(&hook.metrics().await, "portcullis_policy_reloads_total{result=\"rejected\"}") < 1.0 {
        assert!(std::time::Instant::now() < until, "the broken policy was never looked at");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(hook.state.policy().digest, second);
    assert_eq!(hook.admit_pod("prod", &[&image], json!({}), &[]).await["allowed"], true);
}

/// AdmissionReviews recorded from a real kube-apiserver by the end-to-end
/// suite (`PORTCULLIS_UPDATE_FIXTURES=1 make e2e`), replayed against a live registry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviews_recorded_from_a_real_api_server() {
    let w = world().await;
    w.image("shop/api", "crit", Some(("scanner", criticals())), Some(("ci", passed()))).await;
    let hook = Webhook::start(&w.policy, EngineConfig::default()).await;
    // (fixture, allowed, text in the message or warnings)
    let rows = [
        ("pod-create-prod.json", false, "denied for tier production: 2 critical vulnerabilities exceed the limit 0"),
        (
            "deployment-create-prod.json",
            false,
            "denied for tier production: 2 critical vulnerabilities exceed the limit 0",
        ),
        ("pod-create-dev.json", true, "would be denied in development: upgrade openssl to 3.0.13"),
        // kubectl debug: an ephemeral container added through the subresource.
        ("pod-update-prod.json", false, "denied for tier production: 2 critical vulnerabilities exceed the limit 0"),
    ];
    for (file, allowed, text) in rows {
        let raw = std::fs::read_to_string(format!("tests/fixtures/recorded/{file}")).unwrap();
        let review: Value = serde_json::from_str(&raw.replace("registry.invalid:5000", &w.reg.host)).unwrap();
        let r = hook.client.post(format!("{}/validate?timeout=10s", hook.url)).json(&review).send().await.unwrap();
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["response"]["uid"], review["request"]["uid"], "{file}");
        assert_eq!(v["response"]["allowed"], allowed, "{file}: {v}");
        let said = format!("{}{}", message(&v["response"]), warnings(&v["response"]));
        assert!(said.contains(text), "{file}: {said}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signer_may_have_several_keys_for_rotation() {
    let w = world().await;
    // Signed with the new key (here "rogue"), which only the rotated policy lists.
    let image = w.image("shop/rot", "v1", Some(("rogue", clean())), Some(("ci", passed()))).await;
    let read = |k: &str| std::fs::read_to_string(w.cosign.path().join(format!("{k}.pub"))).unwrap();
    let hook = Webhook::start(&w.policy, EngineConfig::default()).await;
    assert_eq!(hook.admit_pod("prod", &[&image], json!({}), &[]).await["allowed"], false);
    let indent = |p: String| p.trim().lines().map(|l| format!("          {l}")).collect::<Vec<_>>().join("\n");
    let scanner_block = format!(
        "    scanner:\n      publicKey: |\n{}\n",
        read("scanner").trim().lines().map(|l| format!("        {l}")).collect::<Vec<_>>().join("\n")
    );
    assert!(w.policy.contains(&scanner_block), "{}", w.policy);
    let rotated = w.policy.replace(
        &scanner_block,
        &format!(
            "    scanner:\n      publicKeys:\n        - |\n{}\n        - |\n{}\n",
            indent(read("scanner")),
            indent(read("rogue"))
        ),
    );
    let hook = Webhook::start(&rotated, EngineConfig::default()).await;
    let resp = hook.admit_pod("prod", &[&image], json!({}), &[]).await;
    assert_eq!(resp["allowed"], true, "{resp}");
}

/// A hostile registry, written here because no real registry misbehaves on
/// purpose: it serves a manifest that never ends. The read is cut at the
/// manifest limit and the image denied, with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_from_a_hostile_registry_are_bounded() {
    use axum::body::Body;
    use axum::routing::get;
    let digest = format!("sha256:{}", "ab".repeat(32));
    let d = digest.clone();
    let app = axum::Router::new().route(
        "/v2/evil/app/manifests/{reference}",
        get(move |axum::extract::Path(reference): axum::extract::Path<String>| {
            let d = d.clone();
            async move {
                if reference == "v1" {
                    return axum::response::Response::builder()
                        .header("docker-content-digest", d)
                        .body(Body::from("{}"))
                        .unwrap();
                }
                // Endless: 64 KiB chunks, no Content-Length.
                let chunk = bytes::Bytes::from(vec![b' '; 64 << 10]);
                let stream = futures::stream::repeat_with(move || Ok::<_, std::io::Error>(chunk.clone()));
                axum::response::Response::builder().body(Body::from_stream(stream)).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let w = world().await;
    let hook = Webhook::start(&w.policy, EngineConfig::default()).await;
    let resp = hook.admit_pod("prod", &[&format!("{host}/evil/app:v1")], json!({}), &[]).await;
    assert_eq!(resp["allowed"], false);
    let m = message(&resp);
    assert!(
        m.contains(&format!(
            "{host}/evil/app:sha256-{}.att is larger than the limit of 4194304 bytes",
            "ab".repeat(32)
        )),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_error_is_remembered_briefly() {
    let w = world().await;
    let hook = Webhook::start(&w.policy, EngineConfig::default()).await;
    // Nothing listens on port 1: connection refused.
    for _ in 0..5 {
        let resp = hook.admit_pod("prod", &["127.0.0.1:1/shop/api:v1"], json!({}), &[]).await;
        assert_eq!(resp["allowed"], false);
        assert!(message(&resp).contains("registry 127.0.0.1:1 unreachable"), "{}", message(&resp));
    }
    // A burst of requests asked the registry once (error TTL 5s by default).
    assert_eq!(metric(&hook.metrics().await, "portcullis_cache_requests_total{cache=\"tag\",result=\"miss\"}"), 1.0);
    let m = hook.metrics().await;
    let refused = "portcullis_registry_requests_total{registry=\"127.0.0.1:1\",operation=\"manifest\",code=\"error\"}";
    assert_eq!(metric(&m, refused), 1.0, "{m}");
}

/// cosign v3 attaches attestations as sigstore bundles, OCI 1.1 referrers of
/// the image; this registry has no referrers API, so cosign (and Portcullis)
/// use the `sha256-<hex>` referrers tag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstore_bundles_attached_as_oci_referrers() {
    let w = world().await;
    let bundled = |repo: &'static str, tag: &'static str, key: &'static str, scan: Value| {
        let w = &w;
        async move {
            let image = w.reg.push_image(repo, tag, &format!("{repo}:{tag}:bundle")).await;
            w.cosign.attest_bundle(key, &image, VULN, &scan);
            w.cosign.attest_bundle("ci", &image, TEST_RESULT, &passed());
            image
        }
    };
    let clean_img = bundled("shop/v3", "clean", "scanner", clean()).await;
    let crit_img = bundled("shop/v3", "crit", "scanner", criticals()).await;
    let rogue_img = bundled("shop/v3", "rogue", "rogue", clean()).await;
    let hook = Webhook::start(&w.policy, EngineConfig::default()).await;
    // (image, allowed, text)
    let rows = [
        (&clean_img, true, ""),
        (
            &crit_img,
            false,
            "2 critical vulnerabilities exceed the limit 0 (CVE-2024-1111 in openssl 3.0.1, fixed in 3.0.13",
        ),
        (&rogue_img, false, "does not verify with any trusted key"),
    ];
    for (image, allowed, text) in rows {
        let resp = hook.admit_pod("prod", &[image], json!({}), &[]).await;
        assert_eq!(resp["allowed"], allowed, "{image}: {resp}");
        assert!(message(&resp).contains(text), "{image}: {}", message(&resp));
    }
    // The decision cites the bundle blobs it rests on.
    let audit = hook.audit();
    let evidence = audit[0]["images"][0]["evidence"].as_array().unwrap();
    assert_eq!(evidence.len(), 2, "{}", audit[0]);
    for d in evidence {
        let layer = d.as_str().unwrap();
        let blob = w.reg.get_blob("shop/v3", layer).await;
        let bundle: Value = serde_json::from_slice(&blob).unwrap();
        assert!(bundle["mediaType"].as_str().unwrap().starts_with("application/vnd.dev.sigstore.bundle"), "{bundle}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_lookups_in_flight_are_capped() {
    let (host, held) = silent_registry().await;
    let w = world().await;
    let limits = portcullis::registry::Limits { concurrent_lookups: 1, ..Default::default() };
    let hook =
        Webhook::start_with_limits(&w.policy, EngineConfig::default(), std::time::Duration::from_secs(1), limits).await;
    let (a, b) = (format!("{host}/shop/a:v1"), format!("{host}/shop/b:v1"));
    let resp = hook.admit_pod("prod", &[&a, &b], json!({}), &[]).await;
    assert_eq!(resp["allowed"], false);
    // Both images timed out at the deadline, but only one lookup reached the registry.
    assert_eq!(held.connections().await, 1, "the second lookup waited for the first");
}

/// Multi-arch images: an index is judged by its own attestations if it has
/// any, else by every platform's (each must pass, the failing one named);
/// buildx's attestation manifests are not platforms; a tier may narrow the
/// platforms or judge the index only. With cosign's legacy `.att` and with
/// sigstore bundles. Warm, an admission asks the registry nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_arch_images_are_judged_per_platform() {
    let w = world().await;
    // cosign v2's legacy `.att` (false), or cosign v3's sigstore bundles (true).
    let attest = |image: &str, scan: Value, v3: bool| {
        if v3 {
            w.cosign.attest_v3("scanner", image, VULN, &scan);
            w.cosign.attest_v3("ci", image, TEST_RESULT, &passed());
        } else {
            w.cosign.attest("scanner", image, VULN, &scan);
            w.cosign.attest("ci", image, TEST_RESULT, &passed());
        }
    };
    let two = ["linux/amd64", "linux/arm64/v8"];
    // Attested at the index only (cosign v2), and with cosign v3.
    let (at_index, _) = w.reg.push_index("shop/multi", "at-index", &two, false).await;
    attest(&at_index, clean(), false);
    let (at_index_v3, _) = w.reg.push_index("shop/multi", "at-index-v3", &two, false).await;
    attest(&at_index_v3, clean(), true);
    // Attested per platform, all clean (buildx-style, with attestation manifests).
    let (per_platform, imgs) = w.reg.push_index("shop/multi", "per-platform", &two, true).await;
    imgs.iter().for_each(|i| attest(i, clean(), false));
    // Per platform, arm64 with criticals.
    let (one_bad, imgs) = w.reg.push_index("shop/multi", "one-bad", &two, false).await;
    attest(&imgs[0], clean(), false);
    attest(&imgs[1], criticals(), false);
    let bad_arm = imgs[1].rsplit('@').next().unwrap()[..19].to_string();
    // Per platform, with cosign v3 (sigstore bundles as OCI referrers).
    let (bundled, imgs) = w.reg.push_index("shop/multi", "bundled", &two, false).await;
    imgs.iter().for_each(|i| attest(i, clean(), true));
    // Single-platform indexes that are not linux/amd64.
    let (arm_only, imgs) = w.reg.push_index("shop/multi", "arm-only", &["linux/arm64"], false).await;
    attest(&imgs[0], clean(), false);
    let (windows_only, imgs) = w.reg.push_index("shop/multi", "windows-only", &["windows/amd64"], true).await;
    attest(&imgs[0], clean(), false);

    let hook = Webhook::start(&w.policy, EngineConfig::default()).await;
    let tag = |i: &str| format!("{}/shop/multi:{i}", w.reg.host);
    // (case, image, admitted, text in the denial, platforms judged)
    let rows = [
        ("attested at the index", tag("at-index"), true, "", 0),
        ("attested at the index with cosign v3", tag("at-index-v3"), true, "", 0),
        ("attested per platform, with attestation manifests", per_platform.clone(), true, "", 2),
        ("one platform fails", tag("one-bad"), false, "platform linux/arm64/v8 (", 2),
        ("and says what fails", one_bad.clone(), false, "2 critical vulnerabilities exceed the limit 0", 2),
        ("per platform, with cosign v3", tag("bundled"), true, "", 2),
        ("an arm64-only index", tag("arm-only"), true, "", 1),
        ("a Windows-only index", tag("windows-only"), true, "", 1),
    ];
    for (case, image, admitted, text, judged) in &rows {
        let resp = hook.admit_pod("prod", &[image], json!({}), &[]).await;
        assert_eq!(resp["allowed"], json!(admitted), "{case}: {resp}");
        let msg = resp["status"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(text), "{case}: want {text:?} in {msg}");
        let verdict = hook.audit().last().unwrap()["images"][0].clone();
        let platforms = verdict["platforms"].as_array().map_or(0, Vec::len);
        assert_eq!(platforms, *judged, "{case}: {verdict}");
    }
    let resp = hook.admit_pod("prod", &[&one_bad], json!({}), &[]).await;
    assert!(resp["status"]["message"].as_str().unwrap().contains(&bad_arm), "names the platform's digest: {resp}");
    let _ = (at_index, bundled, arm_only, windows_only);

    // Warm: the same admissions again ask the registry nothing.
    let requests = || async { metric(&hook.metrics().await, "portcullis_registry_requests_total") };
    let before = requests().await;
    for (_, image, admitted, _, _) in &rows {
        assert_eq!(hook.admit_pod("prod", &[image], json!({}), &[]).await["allowed"], json!(admitted));
    }
    assert_eq!(requests().await, before, "warm admissions asked the registry");

    // Cold, a 2-platform index attested per platform: its requests, printed.
    let cold = Webhook::start(&w.policy, EngineConfig::default()).await;
    assert_eq!(cold.admit_pod("prod", &[&tag("per-platform")], json!({}), &[]).await["allowed"], true);
    let n = metric(&cold.metrics().await, "portcullis_registry_requests_total");
    println!("registry requests for a cold admission of a 2-platform index attested per platform: {n}");
    assert!(n > 0.0);

    // A tier may narrow the platforms, or judge the index only.
    let narrowed = w.policy.replace(
        "      tests: { signedBy: [ci], require: PASSED }",
        "      tests: { signedBy: [ci], require: PASSED }\n      platforms: [linux/amd64]",
    );
    assert_ne!(narrowed, w.policy);
    let hook = Webhook::start(&narrowed, EngineConfig::default()).await;
    assert_eq!(hook.admit_pod("prod", &[&tag("one-bad")], json!({}), &[]).await["allowed"], true);
    let resp = hook.admit_pod("prod", &[&tag("arm-only")], json!({}), &[]).await;
    assert!(resp["status"]["message"].as_str().unwrap().contains("none of its platforms (linux/arm64)"), "{resp}");
    let index_only = narrowed.replace("platforms: [linux/amd64]", "platforms: [index]");
    let hook = Webhook::start(&index_only, EngineConfig::default()).await;
    assert_eq!(hook.admit_pod("prod", &[&tag("at-index")], json!({}), &[]).await["allowed"], true);
    let resp = hook.admit_pod("prod", &[&tag("per-platform")], json!({}), &[]).await;
    assert_eq!(resp["allowed"], false, "{resp}");
    assert!(resp["status"]["message"].as_str().unwrap().contains("no attestations found"), "{resp}");
}

/// Every child of an index that containerd could run is judged, read as
/// containerd v2.1.5 reads it (`core/images.Manifest` with
/// github.com/containerd/platforms v1.0.0-rc.1): an annotation does not make
/// an entry an attestation, an empty OS is the node's own, an entry without a
/// platform is run by its config's, `x86_64` is amd64, keys are matched
/// whatever their case, and an index inside the index is looked into by
/// containerd, so it is judged or denied. Each index pairs an attested clean
/// `linux/amd64` image with an unattested one containerd would run; each
/// must be denied, in a tier judging every platform and in one narrowed to
/// `linux/amd64`. buildx's own attestation manifests (in-toto layers) are
/// still left out, even under a runnable platform.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_children_containerd_could_run_are_judged() {
    let w = world().await;
    let repo = "shop/arch";
    let reg = &w.reg;
    let good = w.image(repo, "good", Some(("scanner", clean())), Some(("ci", passed()))).await;
    let good_arm = w.image(repo, "good-arm", Some(("scanner", clean())), Some(("ci", passed()))).await;
    let bare = w.image(repo, "bare", None, None).await;
    let digest = |i: &str| i.rsplit('@').next().unwrap().to_string();
    let short = |i: &str| digest(i)[..19].to_string();
    let entry = |d: Value, platform: Option<Value>, annotations: Option<Value>| {
        let mut e = d;
        if let Some(p) = platform {
            e["platform"] = p;
        }
        if let Some(a) = annotations {
            e["annotations"] = a;
        }
        e
    };
    let amd64 = || Some(json!({"os": "linux", "architecture": "amd64"}));
    let arm64 = || Some(json!({"os": "linux", "architecture": "arm64"}));
    let (good_d, good_arm_d, bare_d) = (
        reg.descriptor(repo, &digest(&good)).await,
        reg.descriptor(repo, &digest(&good_arm)).await,
        reg.descriptor(repo, &digest(&bare)).await,
    );
    let good_entry = entry(good_d.clone(), amd64(), None);

    // The attestation annotation on a runnable linux/amd64 image, listed first.
    let claims_attestation =
        json!({"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": digest(&good)});
    let annotated = reg
        .push_raw_index(
            repo,
            "annotated",
            vec![entry(bare_d.clone(), amd64(), Some(claims_attestation.clone())), good_entry.clone()],
        )
        .await;
    // An empty OS: the node's own.
    let no_os = reg
        .push_raw_index(
            repo,
            "no-os",
            vec![entry(bare_d.clone(), Some(json!({"os": "", "architecture": "amd64"})), None), good_entry.clone()],
        )
        .await;
    // No platform: containerd runs it on amd64 nodes by its config (linux/amd64).
    let no_platform =
        reg.push_raw_index(repo, "no-platform", vec![entry(good_arm_d.clone(), arm64(), None), bare_d.clone()]).await;
    // `x86_64` is amd64, listed before the attested amd64 image.
    let x86_64 = reg
        .push_raw_index(
            repo,
            "x86-64",
            vec![
                entry(bare_d.clone(), Some(json!({"os": "Linux", "architecture": "x86_64"})), None),
                good_entry.clone(),
            ],
        )
        .await;
    // An index inside the index, without a platform: containerd looks into it.
    let inner = reg.push_raw_index(repo, "inner", vec![entry(bare_d.clone(), amd64(), None)]).await;
    let inner_d = reg.descriptor(repo, &digest(&inner)).await;
    let nested = reg.push_raw_index(repo, "nested", vec![entry(good_arm_d.clone(), arm64(), None), inner_d]).await;
    // The platform twice, differing in case: Go's decoder keeps the last (linux/amd64).
    let twice = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":{},"platform":{{"os":"windows","architecture":"amd64"}},"PLATFORM":{{"os":"linux","architecture":"amd64"}}}},{good_entry}]}}"#,
        digest(&bare),
        bare_d["size"]
    );
    let twice = reg.push_manifest_bytes(repo, "twice", "application/vnd.oci.image.index.v1+json", &twice).await;
    // buildx-style: attested per platform, with real attestation manifests.
    let (buildx, imgs) = reg.push_index(repo, "buildx", &["linux/amd64", "linux/arm64"], true).await;
    for i in &imgs {
        w.cosign.attest("scanner", i, VULN, &clean());
        w.cosign.attest("ci", i, TEST_RESULT, &passed());
    }
    // A real attestation manifest listed as linux/amd64, before the image: its
    // content (in-toto layers) is not runnable, whatever the index says.
    let att = reg.push_attestation_manifest(repo, "att", &digest(&good)).await;
    let att_d = reg.descriptor(repo, &att).await;
    let att_first = reg.push_raw_index(repo, "att-first", vec![entry(att_d, amd64(), None), good_entry.clone()]).await;

    // Bounds: 33 entries with something to run (one image, listed 33 times),
    // and 65 entries at all, which are refused before any is read.
    let many = |n: usize| vec![good_entry.clone(); n];
    let runnable_33 = reg.push_raw_index(repo, "runnable-33", many(33)).await;
    let entries_65 = reg.push_raw_index(repo, "entries-65", many(65)).await;

    let narrowed = w.policy.replace(
        "      tests: { signedBy: [ci], require: PASSED }",
        "      tests: { signedBy: [ci], require: PASSED }\n      platforms: [linux/amd64]",
    );
    assert_ne!(narrowed, w.policy);
    // (case, image, admitted, text in the denial)
    let rows = [
        ("the attestation annotation on a runnable image", &annotated, false, short(&bare)),
        ("an empty OS", &no_os, false, short(&bare)),
        ("an entry without a platform", &no_platform, false, short(&bare)),
        ("x86_64 is amd64", &x86_64, false, short(&bare)),
        ("a nested index", &nested, false, "an index inside the index".to_string()),
        ("the platform twice, differing in case", &twice, false, "\"PLATFORM\"".to_string()),
        ("buildx's attestation manifests are left out", &buildx, true, String::new()),
        ("an attestation manifest listed as linux/amd64", &att_first, true, String::new()),
        (
            "at most 32 entries with something to run",
            &runnable_33,
            false,
            "33 platforms, more than the limit 32".into(),
        ),
        ("at most 64 entries", &entries_65, false, "65 entries, more than the limit 64".into()),
    ];
    let mut wrong = Vec::new();
    for (tier, policy) in [("every platform", &w.policy), ("linux/amd64", &narrowed)] {
        let hook = Webhook::start(policy, EngineConfig::default()).await;
        for (case, image, admitted, text) in &rows {
            let resp = hook.admit_pod("prod", &[image], json!({}), &[]).await;
            if resp["allowed"] != json!(admitted) || !message(&resp).contains(text.as_str()) {
                wrong.push(format!("{tier}: {case}: want allowed {admitted} and {text:?} in {resp}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Under load no audit record is lost: thousands of concurrent admissions,
/// each answered once and recorded once, with what it was told, in one
/// intact chain (`Webhook::audit` verifies it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admission_under_load_has_its_audit_record() {
    use futures::StreamExt as _;
    let w = world().await;
    let clean_img = w.image("shop/api", "clean", Some(("scanner", clean())), Some(("ci", passed()))).await;
    let crit_img = w.image("shop/api", "crit", Some(("scanner", criticals())), Some(("ci", passed()))).await;
    let hook = Webhook::start(&w.policy, EngineConfig::default()).await;
    const N: usize = 3000;
    let responses: Vec<Value> = futures::stream::iter(0..N)
        .map(|i| {
            let image = if i % 3 == 0 { crit_img.clone() } else { clean_img.clone() };
            let hook = &hook;
            async move { hook.admit_pod("prod", &[&image], json!({}), &[]).await }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let told: std::collections::HashMap<String, bool> =
        responses.iter().map(|r| (r["uid"].as_str().unwrap().to_string(), r["allowed"].as_bool().unwrap())).collect();
    assert_eq!(told.len(), N, "every request answered, each uid once");
    assert_eq!(told.values().filter(|a| !**a).count(), N / 3);
    let audit = hook.audit();
    assert_eq!(audit.len(), N, "one record per admission, none lost");
    let recorded: std::collections::HashMap<String, bool> =
        audit.iter().map(|r| (r["uid"].as_str().unwrap().to_string(), r["allowed"].as_bool().unwrap())).collect();
    assert_eq!(recorded, told, "each record says what its response said");
}
