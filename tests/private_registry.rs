//! Private registries: a real `registry` behind htpasswd Basic auth, and one
//! behind token auth over TLS with a test CA (its token service in process).
//! Images are looked up with the credentials a request may use, in the
//! kubelet's order (pull secrets, then Portcullis' own, then anonymous);
//! what one login learns is never served to a request without it. Also
//! Portcullis' own credentials file, and a credential helper on PATH.

use crate::common;

use std::sync::Arc;

use common::keyless::*;
use common::token::TokenIssuer;
use common::*;
use portcullis::engine::{Engine, EngineConfig, Keychain};
use portcullis::image::ImageRef;
use portcullis::policy::Policy;
use portcullis::registry::{Credentials, Limits, Registry as Client};

/// A registry holding one attested image, reachable only with `ci:pw`.
async fn private(kind: &str) -> (Registry, TestTls, String, Sigstore) {
    let tls = test_tls();
    let auth = match kind {
        "basic" => RegistryAuth::Basic { user: "ci".into(), password: "pw".into() },
        _ => {
            let issuer = TokenIssuer::new(&[("ci", "pw")]);
            let realm = issuer.serve(&tls).await;
            RegistryAuth::Token { issuer, realm }
        }
    };
    let reg = Registry::start_with(RegistryOptions { tls: Some(tls.clone()), auth, ..Default::default() }).await;
    let sigstore = Sigstore::new();
    let image = reg.push_image("private/app", "v1", kind).await;
    attest(&reg, &image, &sigstore, RELEASE, "https://github.com/acme/shop", "bundle").await;
    (reg, tls, image, sigstore)
}

fn policy(sigstore: &Sigstore) -> Arc<Policy> {
    Arc::new(Policy::from_file(&policy_file(sigstore)).unwrap())
}

/// A pull secret's credentials for `host`, as the cluster would hand them over.
fn secret(name: &str, host: &str, user: &str, password: &str) -> Arc<Credentials> {
    let config = serde_json::json!({"auths": {host: {"username": user, "password": password}}});
    Arc::new(Credentials::from_config(config.to_string().as_bytes(), &format!("pull secret prod/{name}")).unwrap())
}

fn engine_for(reg: &Registry, tls: &TestTls, own: Credentials) -> Arc<Engine> {
    let client = Client::new(Limits::default(), vec![], own, &[])
        .unwrap()
        .with_host_ca(&reg.host, tls.ca_pem.as_bytes())
        .unwrap();
    Engine::new(client, &EngineConfig::default(), Default::default())
}

async fn judge(engine: &Arc<Engine>, policy: &Arc<Policy>, image: &str, keys: &Keychain) -> (bool, String) {
    let image = ImageRef::parse(image).unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let v = engine
        .evaluate_images(
            policy,
            &policy.tier_name("production").unwrap(),
            &[image],
            keys,
            chrono::Utc::now(),
            deadline,
            &[],
        )
        .await;
    (v[0].admitted, v[0].problems.join("; "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_secrets_in_the_kubelets_order_and_never_across_logins() {
    portcullis::install_crypto_provider();
    for kind in ["basic", "token"] {
        let (reg, tls, image, sigstore) = private(kind).await;
        let policy = policy(&sigstore);
        let engine = engine_for(&reg, &tls, Credentials::default());
        let tag = format!("{}/private/app:v1", reg.host);
        let right = Keychain { secrets: vec![secret("regcred", &reg.host, "ci", "pw")], ..Default::default() };
        let wrong = Keychain { secrets: vec![secret("stale", &reg.host, "ci", "nope")], ..Default::default() };
        let other_host =
            Keychain { secrets: vec![secret("elsewhere", "other.example", "ci", "pw")], ..Default::default() };
        let both = Keychain {
            secrets: vec![secret("stale", &reg.host, "ci", "nope"), secret("regcred", &reg.host, "ci", "pw")],
            ..Default::default()
        };
        let unreadable =
            Keychain { unreadable: vec!["pull secret prod/gone (404 not found)".into()], ..Default::default() };
        let none = Keychain::default();
        let refused = format!("authentication failed at registry {} for repository private/app", reg.host);
        // (case, keychain, image, admitted, text in the denial); in this order: the right
        // login's evidence is cached before the requests without it come.
        let rows: Vec<(&str, &Keychain, &str, bool, String)> = vec![
            ("the right pull secret", &right, &tag, true, String::new()),
            ("by digest too", &right, &image, true, String::new()),
            ("no credentials: not served from the right login's cache", &none, &tag, false, format!("{refused} (401) with no credentials (anonymous)")),
            ("a digest already judged, without credentials", &none, &image, false, refused.clone()),
            ("a wrong password, then anonymous", &wrong, &tag, false, format!("{refused} with every credential tried: pull secret prod/stale (401), no credentials (anonymous) (401)")),
            ("a secret for another registry is not tried", &other_host, &tag, false, format!("{refused} (401) with no credentials (anonymous)")),
            ("a wrong secret, then the right one", &both, &tag, true, String::new()),
            ("a secret that could not be read is named", &unreadable, &tag, false, format!("{refused} (401) with no credentials (anonymous); not read: pull secret prod/gone (404 not found)")),
        ];
        for (case, keys, image, admitted, text) in rows {
            let (got, said) = judge(&engine, &policy, image, keys).await;
            assert_eq!(got, admitted, "{kind}: {case}: {said}");
            assert!(said.contains(&text), "{kind}: {case}: want {text:?} in {said:?}");
            if !admitted {
                assert!(
                    !said.contains("no attestations"),
                    "{kind}: {case}: an auth failure is not missing evidence: {said}"
                );
            }
        }

        // Portcullis' own credentials file serves every request.
        let own = serde_json::json!({"auths": {reg.host.clone(): {"username": "ci", "password": "pw"}}});
        let engine = engine_for(&reg, &tls, Credentials::from_docker_config(own.to_string().as_bytes()).unwrap());
        let (ok, said) = judge(&engine, &policy, &tag, &Keychain::default()).await;
        assert!(ok, "{kind}: own credentials: {said}");
        let bad = serde_json::json!({"auths": {reg.host.clone(): {"username": "ci", "password": "bad"}}});
        let engine = engine_for(&reg, &tls, Credentials::from_docker_config(bad.to_string().as_bytes()).unwrap());
        let (ok, said) = judge(&engine, &policy, &tag, &Keychain::default()).await;
        assert!(!ok && said.contains("with Portcullis' credentials file"), "{kind}: {said}");

        // Every request is counted by what it is for and how it was
        // answered: the challenge (401), the token, then the reads.
        let metrics = Arc::new(portcullis::metrics::Metrics::new());
        let client = Client::new(Limits::default(), vec![], Credentials::default(), &[])
            .unwrap()
            .with_host_ca(&reg.host, tls.ca_pem.as_bytes())
            .unwrap()
            .with_metrics(metrics.clone());
        let engine = Engine::new(client, &EngineConfig::default(), metrics.clone());
        let (ok, said) = judge(&engine, &policy, &tag, &right).await;
        assert!(ok, "{kind}: {said}");
        let text = metrics.render();
        let requests = |op: &str, code: &str| {
            let series = format!(
                "portcullis_registry_requests_total{{registry=\"{}\",operation=\"{op}\",code=\"{code}\"}}",
                reg.host
            );
            metric(&text, &series)
        };
        assert!(requests("manifest", "401") >= 1.0, "{kind}: {text}");
        assert!(requests("manifest", "200") >= 1.0, "{kind}: {text}");
        assert_eq!(requests("token", "200") >= 1.0, kind == "token", "{kind}: {text}");
        assert_eq!(metric(&text, "portcullis_cache_requests_total{cache=\"tag\",result=\"miss\"}"), 1.0, "{text}");
    }
}

/// The registry's certificate is verified at the handshake (the system
/// roots and the registry's CA bundle, read only then): a registry whose
/// certificate chains to neither is refused, whatever the credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_certificate_from_an_untrusted_ca_is_refused() {
    portcullis::install_crypto_provider();
    let (reg, tls, image, sigstore) = private("basic").await;
    let policy = policy(&sigstore);
    let right = Keychain { secrets: vec![secret("regcred", &reg.host, "ci", "pw")], ..Default::default() };
    let other = test_tls();
    // (case, whose CA bundle is trusted for the registry, admitted, text in the denial)
    let rows = [("its own CA", &tls, true, ""), ("another CA", &other, false, "certificate")];
    for (case, ca, admitted, text) in rows {
        let engine = engine_for(&reg, ca, Credentials::default());
        let (got, said) = judge(&engine, &policy, &image, &right).await;
        assert_eq!(got, admitted, "{case}: {said}");
        assert!(said.contains(text), "{case}: want {text:?} in {said:?}");
    }
}

/// `credHelpers` and `credsStore` run `docker-credential-<name> get`, as
/// docker and crane do: here a script on PATH standing in for ECR's, GCR's
/// or ACR's helper (none of which can reach their cloud from here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_helpers_on_path() {
    portcullis::install_crypto_provider();
    let (reg, tls, _, sigstore) = private("token").await;
    let policy = policy(&sigstore);
    let bin = tempfile::tempdir().unwrap();
    let script = |name: &str, body: &str| {
        use std::os::unix::fs::PermissionsExt as _;
        let p = bin.path().join(format!("docker-credential-{name}"));
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    // The helper reads the server on stdin and answers for it only.
    script("fake", &format!("read server; [ \"$server\" = \"{}\" ] && echo '{{\"ServerURL\":\"'$server'\",\"Username\":\"ci\",\"Secret\":\"pw\"}}' || {{ echo 'credentials not found in native keychain'; exit 1; }}", reg.host));
    script("broken", "echo 'cannot reach the cloud' >&2; echo 'boom'; exit 3");
    let path = format!("{}:{}", bin.path().display(), std::env::var("PATH").unwrap_or_default());
    std::env::set_var("PATH", path);
    let tag = format!("{}/private/app:v1", reg.host);
    // (case, config, admitted, text)
    let rows = [
        (
            "credHelpers for the registry",
            format!(r#"{{"credHelpers": {{"{}": "fake"}}}}"#, reg.host),
            true,
            String::new(),
        ),
        ("credsStore for every registry", r#"{"credsStore": "fake"}"#.to_string(), true, String::new()),
        (
            "a helper that fails says so",
            format!(r#"{{"credHelpers": {{"{}": "broken"}}}}"#, reg.host),
            false,
            "credential helper docker-credential-broken".to_string(),
        ),
        (
            "a helper that is not there says so",
            format!(r#"{{"credHelpers": {{"{}": "missing"}}}}"#, reg.host),
            false,
            "cannot run it".to_string(),
        ),
    ];
    for (case, config, admitted, text) in rows {
        let engine = engine_for(&reg, &tls, Credentials::from_docker_config(config.as_bytes()).unwrap());
        let (ok, said) = judge(&engine, &policy, &tag, &Keychain::default()).await;
        assert_eq!(ok, admitted, "{case}: {said}");
        assert!(said.contains(&text), "{case}: want {text:?} in {said}");
    }
}
