//! A registry token service (the Docker registry token protocol), in
//! process: checks Basic credentials and issues ES256 JWTs that a real
//! `registry` configured with `auth: token` trusts by the certificate in
//! their `x5c` header. For tests of registries behind token auth over TLS.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use base64::Engine as _;
use serde_json::json;

pub const ISSUER: &str = "portcullis-test-token-issuer";
pub const SERVICE: &str = "portcullis-test-registry";

pub struct TokenIssuer {
    key: aws_lc_rs::signature::EcdsaKeyPair,
    cert_der: Vec<u8>,
    /// The signing certificate: the registry's `rootcertbundle`.
    pub cert_pem: String,
    users: Vec<(String, String)>,
}

impl TokenIssuer {
    /// An issuer accepting these `(user, password)` pairs.
    pub fn new(users: &[(&str, &str)]) -> Arc<TokenIssuer> {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, "token signer");
        let cert = params.self_signed(&kp).unwrap();
        let key = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &kp.serialize_der(),
        )
        .unwrap();
        Arc::new(TokenIssuer {
            key,
            cert_der: cert.der().to_vec(),
            cert_pem: cert.pem(),
            users: users.iter().map(|(u, p)| (u.to_string(), p.to_string())).collect(),
        })
    }

    /// A token for `subject` granting `actions` on `repository`.
    pub fn mint(&self, subject: &str, repository: &str, actions: &[&str]) -> String {
        let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let now = chrono::Utc::now().timestamp();
        let header = json!({"alg": "ES256", "typ": "JWT", "x5c": [base64::engine::general_purpose::STANDARD.encode(&self.cert_der)]});
        let claims = json!({
            "iss": ISSUER, "sub": subject, "aud": SERVICE, "exp": now + 300, "nbf": now - 10, "iat": now,
            "jti": format!("{subject}-{now}-{repository}"),
            "access": [{"type": "repository", "name": repository, "actions": actions}],
        });
        let signing = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
        let sig = self.key.sign(&aws_lc_rs::rand::SystemRandom::new(), signing.as_bytes()).unwrap();
        format!("{signing}.{}", b64(sig.as_ref()))
    }

    /// Serves `GET /token` over TLS on a free loopback port; returns the realm URL.
    pub async fn serve(self: &Arc<Self>, tls: &super::TestTls) -> String {
        let app = axum::Router::new().route("/token", axum::routing::get(token)).with_state(self.clone());
        let config = axum_server::tls_rustls::RustlsConfig::from_pem(
            tls.cert_pem.clone().into_bytes(),
            tls.key_pem.clone().into_bytes(),
        )
        .await
        .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = axum_server::from_tcp_rustls(listener, config).unwrap();
        tokio::spawn(async move { server.serve(app.into_make_service()).await });
        format!("https://127.0.0.1:{port}/token")
    }
}

#[derive(serde::Deserialize)]
struct TokenQuery {
    #[serde(default)]
    scope: String,
}

async fn token(
    State(issuer): State<Arc<TokenIssuer>>,
    headers: HeaderMap,
    Query(q): Query<TokenQuery>,
) -> impl IntoResponse {
    let basic = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    let user = basic.and_then(|b| {
        let (u, p) = b.split_once(':')?;
        issuer.users.iter().any(|(uu, pp)| uu == u && pp == p).then(|| u.to_string())
    });
    let Some(user) = user else { return (StatusCode::UNAUTHORIZED, "bad credentials").into_response() };
    // scope: repository:<name>:<actions>
    let mut parts = q.scope.splitn(3, ':');
    let (_, repository, actions) = (parts.next(), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let actions: Vec<&str> = actions.split(',').filter(|a| !a.is_empty()).collect();
    axum::Json(json!({"token": issuer.mint(&user, repository, &actions), "expires_in": 300})).into_response()
}
