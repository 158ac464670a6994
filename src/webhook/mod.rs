//! The admission webhook: HTTPS server, AdmissionReview in and out.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use axum_server::tls_rustls::RustlsConfig;
use bytes::Bytes;
use chrono::{SecondsFormat, Utc};
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::DynamicObject;
use serde_json::Value;
use tokio::time::Instant;

use crate::audit::{AuditLog, Record};
use crate::cluster::TierSource;
use crate::engine::Engine;
use crate::image::ImageRef;
use crate::metrics::Metrics;
use crate::policy::{self, BreakGlass, BreakGlassRequest, Policy, Verdict};

pub mod extract;

/// Largest AdmissionReview accepted (an object and its old version, each up
/// to the API server's 3 MiB request limit).
pub const MAX_BODY: usize = 7 << 20;
/// Longest single warning returned (the API server truncates longer ones).
const MAX_WARNING: usize = 256;

/// Everything a request handler needs; shared by all requests.
pub struct AppState {
    pub engine: Arc<Engine>,
    pub policy: RwLock<Arc<Policy>>,
    pub tiers: TierSource,
    pub metrics: Arc<Metrics>,
    pub audit: AuditLog,
    /// Time budget for one decision, kept below the webhook's timeoutSeconds.
    pub deadline: Duration,
    /// When set, every AdmissionReview received is written here (debugging,
    /// fixtures). The files hold whole objects: keep the directory private.
    pub record_dir: Option<PathBuf>,
}

impl AppState {
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.read().map(|p| p.clone()).unwrap_or_else(|e| e.into_inner().clone())
    }

    pub fn set_policy(&self, p: Policy) {
        match self.policy.write() {
            Ok(mut g) => *g = Arc::new(p),
            Err(e) => *e.into_inner() = Arc::new(p),
        }
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/validate", post(validate))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

async fn readyz(State(st): State<Arc<AppState>>) -> Response {
    if st.tiers.ready() {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "namespace cache not synced yet").into_response()
    }
}

async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], st.metrics.render()).into_response()
}

/// A running server.
pub struct Server {
    pub addr: SocketAddr,
    pub handle: axum_server::Handle<SocketAddr>,
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Serves `router(state)` over TLS on `listen` (port 0 picks a free port).
pub async fn serve(state: Arc<AppState>, listen: SocketAddr, tls: RustlsConfig) -> std::io::Result<Server> {
    let handle = axum_server::Handle::new();
    let app = router(state);
    let h = handle.clone();
    let task =
        tokio::spawn(
            async move { axum_server::bind_rustls(listen, tls).handle(h).serve(app.into_make_service()).await },
        );
    match handle.listening().await {
        Some(addr) => Ok(Server { addr, handle, task }),
        None => match task.await {
            Ok(Err(e)) => Err(e),
            _ => Err(std::io::Error::other(format!("could not listen on {listen}"))),
        },
    }
}

/// Watches the policy file and the serving certificate; reloads what changed.
/// A policy that fails validation is rejected and the last good one stays.
pub fn spawn_reloader(
    state: Arc<AppState>,
    policy_path: Option<PathBuf>,
    tls: RustlsConfig,
    cert: PathBuf,
    key: PathBuf,
    every: Duration,
) {
    tokio::spawn(async move {
        let read = |p: PathBuf| async move { tokio::fs::read(&p).await.ok() };
        // The last content looked at, so a rejected version is reported once.
        let mut last_policy: Option<Vec<u8>> = None;
        let mut last_cert = (read(cert.clone()).await, read(key.clone()).await);
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Some(p) = &policy_path {
                let now = read(p.clone()).await;
                // Compared with the policy in force, not with the file at start-up:
                // a change made before the first look is not missed.
                let changed =
                    now.as_deref().is_some_and(|b| crate::image::Digest::of(b).as_str() != state.policy().digest);
                if now.is_some() && now != last_policy && changed {
                    let text = String::from_utf8_lossy(now.as_deref().unwrap_or_default()).into_owned();
                    match Policy::from_yaml(&text, &p.display().to_string()) {
                        Ok(pol) => {
                            tracing::info!(digest = %pol.digest, path = %p.display(), "policy reloaded");
                            state.set_policy(pol);
                            state.metrics.policy_reload("success");
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "new policy rejected; the last good policy stays in force");
                            state.metrics.policy_reload("rejected");
                        }
                    }
                    last_policy = now;
                }
            }
            let now = (read(cert.clone()).await, read(key.clone()).await);
            if now.0.is_some() && now.1.is_some() && now != last_cert {
                match tls.reload_from_pem_file(&cert, &key).await {
                    Ok(()) => tracing::info!("serving certificate reloaded"),
                    Err(e) => {
                        tracing::error!(error = %e, "serving certificate reload failed; keeping the old one")
                    }
                }
                last_cert = now;
            }
        }
    });
}

async fn record(dir: &std::path::Path, body: &[u8]) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let path = dir.join(format!("review-{:06}.json", N.fetch_add(1, Ordering::Relaxed)));
    if let Err(e) = tokio::fs::write(&path, body).await {
        tracing::warn!(error = %e, path = %path.display(), "could not record the AdmissionReview");
    }
}

/// A denial as the API server shows it: 403 Forbidden with our message.
fn deny(resp: AdmissionResponse, msg: String) -> AdmissionResponse {
    let mut resp = resp.deny(msg);
    resp.result.code = 403;
    resp.result.reason = "Forbidden".to_string();
    resp
}

fn review_response(resp: AdmissionResponse) -> Response {
    let review = resp.into_review();
    (StatusCode::OK, axum::Json(review)).into_response()
}

/// A body that is not a usable AdmissionReview: answered with a clear error.
/// With a request uid the API server can attribute it, so it is an
/// AdmissionReview answer; without one, a 400.
fn invalid(body: &[u8], why: String) -> Response {
    tracing::warn!(error = %why, "invalid AdmissionReview");
    let uid = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.pointer("/request/uid").and_then(Value::as_str).map(String::from));
    let mut resp = AdmissionResponse::invalid(format!("portcullis: invalid AdmissionReview: {why}"));
    match uid {
        Some(uid) => {
            resp.uid = uid;
            review_response(resp)
        }
        None => (StatusCode::BAD_REQUEST, axum::Json(resp.into_review())).into_response(),
    }
}

async fn validate(
    State(st): State<Arc<AppState>>,
    Query(query): Query<HashMap<String, String>>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let start = Instant::now();
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            let status = e.status();
            let msg = if status == StatusCode::PAYLOAD_TOO_LARGE {
                format!("portcullis: AdmissionReview body is larger than the limit of {MAX_BODY} bytes")
            } else {
                format!("portcullis: could not read the request body: {e}")
            };
            return (status, msg).into_response();
        }
    };
    if let Some(dir) = &st.record_dir {
        record(dir, &body).await;
    }
    let review: AdmissionReview<DynamicObject> = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return invalid(&body, e.to_string()),
    };
    let req: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(r) => r,
        Err(e) => return invalid(&body, e.to_string()),
    };
    // The API server says how long it waits (`?timeout=10s`); answer before that.
    let mut budget = st.deadline;
    if let Some(t) = query.get("timeout").and_then(|t| policy::parse_duration(t).ok()) {
        budget = budget.min(t.saturating_sub(Duration::from_millis(500)));
    }
    let (resp, record) = decide(&st, &req, start + budget).await;
    let elapsed = start.elapsed().as_secs_f64();
    let record = Record { latency_ms: elapsed * 1000.0, ..record };
    let result = match (&record.allowed, record.images.iter().any(|v| v.error.is_some()), record.warnings.is_empty()) {
        (false, _, _) => "denied",
        (true, true, _) => "error",
        (true, false, false) => "warned",
        (true, false, true) => "allowed",
    };
    st.metrics.decision(record.tier.as_deref().unwrap_or("none"), result, elapsed);
    // Every judged request is audited: one with a tier, or one denied before
    // a tier was known. Objects without pod specs, and unchanged updates, are not.
    if record.tier.is_some() || !record.allowed {
        st.audit.write(&record);
    }
    tracing::info!(uid = %record.uid, ns = %record.namespace, name = %record.name, kind = %record.kind, allowed = record.allowed, ms = record.latency_ms, "decision");
    review_response(resp)
}

fn is_deny(v: &Verdict) -> bool {
    !v.admitted
}

/// Decides one admission request.
pub async fn decide(
    st: &AppState,
    req: &AdmissionRequest<DynamicObject>,
    deadline: Instant,
) -> (AdmissionResponse, Record) {
    let policy = st.policy();
    // Millisecond precision, as recorded, so that a replay at `evaluatedAt` is exact.
    let now = portcullis_now();
    let kind = req.kind.kind.clone();
    let object = req.object.as_ref().and_then(|o| serde_json::to_value(o).ok()).unwrap_or(Value::Null);
    let namespace = req
        .namespace
        .clone()
        .or_else(|| object.pointer("/metadata/namespace").and_then(Value::as_str).map(String::from))
        .unwrap_or_default();
    let mut record = Record {
        time: now.to_rfc3339_opts(SecondsFormat::Millis, true),
        uid: req.uid.clone(),
        operation: format!("{:?}", req.operation).to_uppercase(),
        kind: match &req.sub_resource {
            Some(s) => format!("{kind}/{s}"),
            None => kind.clone(),
        },
        namespace: namespace.clone(),
        name: req.name.clone(),
        user: req.user_info.username.clone().unwrap_or_default(),
        tier: None,
        allowed: true,
        dry_run: req.dry_run,
        policy_digest: policy.digest.clone(),
        evaluated_at: now.to_rfc3339_opts(SecondsFormat::Millis, true),
        images: vec![],
        break_glass: BreakGlass::NotRequested,
        message: None,
        warnings: vec![],
        latency_ms: 0.0,
    };
    let allow = AdmissionResponse::from(req);
    if !matches!(req.operation, Operation::Create | Operation::Update) {
        return (allow, record);
    }
    let Some(spec) = extract::pod_spec(&kind, &object) else {
        return (allow, record);
    };
    let mut images = extract::images(spec);
    if req.operation == Operation::Update {
        // Only images that change are evaluated: an update that keeps the
        // images (labels, scaling, status) is not re-judged.
        let old = req.old_object.as_ref().and_then(|o| serde_json::to_value(o).ok()).unwrap_or(Value::Null);
        let before: BTreeSet<String> = extract::pod_spec(&kind, &old)
            .map(extract::images)
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.image)
            .collect();
        // A break-glass annotation added or changed is judged with all images,
        // so that a controller copying it later copies a granted one.
        let glass = |o: &Value| {
            extract::pod_annotations(&kind, o)
                .iter()
                .find_map(|a| a.get(policy::BREAK_GLASS_ANNOTATION).and_then(Value::as_str).map(String::from))
        };
        let glass_changed = glass(&object).is_some() && glass(&object) != glass(&old);
        if !glass_changed {
            images.retain(|c| !before.contains(&c.image));
        }
    }
    if images.is_empty() {
        return (allow, record);
    }
    let policy_tag = format!("[policy {}]", &policy.digest[..std::cmp::min(policy.digest.len(), 19)]);
    let tier = match st.tiers.tier_of(&namespace, &policy).await {
        Ok(t) => t,
        Err(why) => {
            let msg = format!("portcullis: {why} {policy_tag}");
            record.allowed = false;
            record.message = Some(msg.clone());
            return (deny(allow, msg), record);
        }
    };
    record.tier = Some(tier.clone());
    let Some(tier_spec) = policy.tier(&tier).cloned() else {
        let msg = format!("portcullis: tier {tier} is not defined in the policy {policy_tag}");
        record.allowed = false;
        record.message = Some(msg.clone());
        return (deny(allow, msg), record);
    };

    // Parse references; a bad one is denied on the spot.
    let mut refs: Vec<ImageRef> = Vec::new();
    let mut verdicts: Vec<Verdict> = Vec::new();
    let mut seen = BTreeSet::new();
    for c in &images {
        if !seen.insert(c.image.clone()) {
            continue;
        }
        match ImageRef::parse(&c.image) {
            Ok(r) => refs.push(r),
            Err(e) => verdicts.push(Verdict {
                image: c.image.clone(),
                name: String::new(),
                digest: None,
                tier: tier.clone(),
                admitted: false,
                problems: vec![format!("{}: {e}", c.path)],
                notes: vec![],
                exceptions: vec![],
                evidence: vec![],
                error: None,
            }),
        }
    }
    verdicts.extend(st.engine.evaluate_images(&policy, &tier, &refs, now, deadline).await);
    for v in &verdicts {
        st.metrics.image(&tier, v.admitted);
    }

    let mut warnings: Vec<String> = Vec::new();
    for v in &verdicts {
        if v.admitted && !v.problems.is_empty() {
            warnings.push(format!(
                "{} (mode warn: admitted)",
                v.denial_message().replacen(" denied for tier ", " would be denied for tier ", 1)
            ));
        }
        warnings.extend(v.notes.iter().cloned());
    }
    let denied: Vec<&Verdict> = verdicts.iter().filter(|v| is_deny(v)).collect();

    let annotations = extract::pod_annotations(&kind, &object);
    let ann = |k: &str| annotations.iter().find_map(|a| a.get(k).and_then(Value::as_str));
    let bg = policy::break_glass(
        &tier,
        &tier_spec,
        &BreakGlassRequest {
            justification: ann(policy::BREAK_GLASS_ANNOTATION),
            ticket: ann(policy::BREAK_GLASS_TICKET_ANNOTATION),
            user: req.user_info.username.as_deref().unwrap_or(""),
            groups: req.user_info.groups.as_deref().unwrap_or(&[]),
            by_controller: is_controller_copy(req, &object),
        },
    );
    record.break_glass = bg.clone();
    record.images = verdicts.clone();

    let resp = if denied.is_empty() {
        allow
    } else if let BreakGlass::Granted { user, justification, ticket } = &bg {
        st.metrics.break_glass(&tier);
        tracing::warn!(%user, %justification, ticket = ?ticket, ns = %namespace, "break-glass admission");
        warnings.insert(
            0,
            format!(
                "BREAK-GLASS by {user}: admitted despite policy failures (audited): {}",
                denied.iter().map(|v| v.denial_message()).collect::<Vec<_>>().join(" | ")
            ),
        );
        allow
    } else {
        let mut msg = denied.iter().map(|v| v.denial_message()).collect::<Vec<_>>().join("\n");
        if let BreakGlass::Refused { why } = &bg {
            msg.push_str(&format!("\nbreak-glass refused: {why}"));
        }
        msg.push(' ');
        msg.push_str(&policy_tag);
        record.allowed = false;
        record.message = Some(msg.clone());
        deny(allow, msg)
    };
    let mut resp = resp;
    let mut seen = BTreeSet::new();
    let warnings: Vec<String> =
        warnings.into_iter().filter(|w| seen.insert(w.clone())).map(|w| truncate(&w, MAX_WARNING)).collect();
    if !warnings.is_empty() {
        resp.warnings = Some(warnings.clone());
    }
    record.warnings = warnings;
    (resp, record)
}

/// True when a built-in controller (kube-system service account) creates an
/// object on behalf of its owner (a ReplicaSet for a Deployment, a Pod for a
/// ReplicaSet): the owner's pod template, annotations included, was judged
/// when the owner was admitted, so its break-glass is not asked again of the
/// controller's own groups.
fn is_controller_copy(req: &AdmissionRequest<DynamicObject>, object: &Value) -> bool {
    let system_controller =
        req.user_info.username.as_deref().is_some_and(|u| u.starts_with("system:serviceaccount:kube-system:"));
    let owned = object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| refs.iter().any(|r| r.get("controller").and_then(Value::as_bool) == Some(true)));
    system_controller && owned
}

/// The current time at the precision decisions record it (milliseconds).
pub fn portcullis_now() -> chrono::DateTime<Utc> {
    let now = Utc::now();
    chrono::DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max - 3;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}
