//! `portcullis ping`: one AdmissionReview sent to a running Portcullis over
//! HTTPS, and what came back (the chart's `helm test`, and anyone asking
//! "does the webhook answer, with the certificate the API server trusts?").
//!
//! The review is a dry-run CREATE of a ConfigMap: an object without a pod
//! spec, which Portcullis answers `allowed` without judging, auditing or
//! looking anything up, so a ping changes nothing but a decision counter
//! (tier `none`). The answer is read within [`MAX_ANSWER`] bytes and the
//! caller's timeout.

use std::time::Duration;

use serde_json::{json, Value};

/// Most bytes of an answer read (one AdmissionReview answer is a few hundred).
pub const MAX_ANSWER: usize = 64 << 10;

/// What the server did with the review.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// An AdmissionReview answer to this review.
    Answered { allowed: bool },
    /// 403 before any review: the server asks for a client certificate
    /// (`--client-ca`) and this client has none.
    Refused { message: String },
}

#[derive(Debug, thiserror::Error)]
pub enum PingError {
    #[error("the CA bundle {path}: {why}")]
    Ca { path: String, why: String },
    #[error("building the HTTPS client: {0}")]
    Client(String),
    #[error("{url}: {why}")]
    Transport { url: String, why: String },
    #[error("{url}: no answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("{url}: the answer is larger than {MAX_ANSWER} bytes")]
    TooLarge { url: String },
    #[error("{url}: HTTP {status}: {body}")]
    Status { url: String, status: u16, body: String },
    #[error("{url}: not an AdmissionReview answer to this review: {why}")]
    NotAnAnswer { url: String, why: String },
}

/// The review a ping sends, with its `uid`.
pub fn review(uid: &str) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "ConfigMap"},
            "resource": {"group": "", "version": "v1", "resource": "configmaps"},
            "name": "portcullis-ping",
            "namespace": "portcullis-ping",
            "operation": "CREATE",
            "userInfo": {"username": "portcullis-ping"},
            "object": {"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": "portcullis-ping", "namespace": "portcullis-ping"}},
            "dryRun": true
        }
    })
}

/// What an HTTP answer to the review with `uid` says.
pub fn read_answer(url: &str, status: u16, body: &[u8], uid: &str) -> Result<Answer, PingError> {
    let text = || String::from_utf8_lossy(&body[..body.len().min(512)]).trim().to_string();
    match status {
        200 => {}
        403 => return Ok(Answer::Refused { message: text() }),
        _ => return Err(PingError::Status { url: url.into(), status, body: text() }),
    }
    let not = |why: String| PingError::NotAnAnswer { url: url.into(), why };
    let v: Value = serde_json::from_slice(body).map_err(|e| not(e.to_string()))?;
    if v["kind"] != "AdmissionReview" {
        return Err(not(format!("kind {}", v["kind"])));
    }
    let resp = &v["response"];
    if resp["uid"] != uid {
        return Err(not(format!("uid {} instead of {uid:?}", resp["uid"])));
    }
    let allowed = resp["allowed"].as_bool().ok_or_else(|| not("no response.allowed".into()))?;
    Ok(Answer::Answered { allowed })
}

/// Sends [`review`] to `url` (e.g. `https://portcullis.portcullis-system.svc/validate`),
/// trusting only the CA bundle `ca` (PEM) when given, else the system roots,
/// through no proxy, within `timeout` in all.
pub async fn ping(url: &str, ca: Option<(&str, &[u8])>, timeout: Duration) -> Result<Answer, PingError> {
    let mut b = reqwest::Client::builder()
        .timeout(timeout)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .https_only(true)
        .user_agent(concat!("portcullis-ping/", env!("CARGO_PKG_VERSION")));
    if let Some((path, pem)) = ca {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| PingError::Ca { path: path.into(), why: e.to_string() })?;
        if certs.is_empty() {
            return Err(PingError::Ca { path: path.into(), why: "holds no certificate".into() });
        }
        b = b.tls_certs_only(certs);
    }
    let client = b.build().map_err(|e| PingError::Client(e.to_string()))?;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let uid = format!("portcullis-ping-{nanos}");
    let exchange = async {
        let mut resp = client
            .post(url)
            .json(&review(&uid))
            .send()
            .await
            .map_err(|e| PingError::Transport { url: url.into(), why: error_chain(&e) })?;
        let status = resp.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) =
            resp.chunk().await.map_err(|e| PingError::Transport { url: url.into(), why: error_chain(&e) })?
        {
            if body.len() + chunk.len() > MAX_ANSWER {
                return Err(PingError::TooLarge { url: url.into() });
            }
            body.extend_from_slice(&chunk);
        }
        read_answer(url, status, &body, &uid)
    };
    tokio::time::timeout(timeout, exchange).await.map_err(|_| PingError::Timeout { url: url.into(), timeout })?
}

/// An error with its causes (reqwest's own message hides the TLS reason).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        let ok = |allowed: bool, uid: &str| {
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                   "response": {"uid": uid, "allowed": allowed}})
            .to_string()
        };
        // (case, status, body, expected: Ok(answer) or Err(the error's start))
        let rows: Vec<(&str, u16, String, Result<Answer, &str>)> = vec![
            ("allowed", 200, ok(true, "u1"), Ok(Answer::Answered { allowed: true })),
            ("denied is an answer too", 200, ok(false, "u1"), Ok(Answer::Answered { allowed: false })),
            (
                "no client certificate",
                403,
                "portcullis: no client certificate".into(),
                Ok(Answer::Refused { message: "portcullis: no client certificate".into() }),
            ),
            ("another review's answer", 200, ok(true, "u2"), Err("u: not an AdmissionReview answer")),
            ("not JSON", 200, "ok".into(), Err("u: not an AdmissionReview answer")),
            ("not a review", 200, r#"{"kind":"Status"}"#.into(), Err("u: not an AdmissionReview answer")),
            (
                "no verdict",
                200,
                r#"{"kind":"AdmissionReview","response":{"uid":"u1"}}"#.into(),
                Err("u: not an AdmissionReview answer"),
            ),
            ("not the webhook", 404, "not found".into(), Err("u: HTTP 404: not found")),
            ("too large for the server", 413, String::new(), Err("u: HTTP 413")),
        ];
        for (case, status, body, want) in rows {
            let got = read_answer("u", status, body.as_bytes(), "u1");
            match (&got, &want) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{case}"),
                (Err(e), Err(start)) => assert!(e.to_string().starts_with(start), "{case}: {e}"),
                _ => panic!("{case}: {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn the_review_is_not_judged() {
        // What the server reads of it: a ConfigMap, no pod spec, a dry run.
        let r = crate::webhook::review::decode(review("u1").to_string().as_bytes()).unwrap();
        assert!(r.req.dry_run);
        assert_eq!(r.req.kind.kind, "ConfigMap");
        assert!(crate::webhook::Subject::of(&r).is_none());
    }
}
