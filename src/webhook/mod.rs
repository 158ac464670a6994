//! The admission webhook: HTTPS server, AdmissionReview in and out.
//!
//! `/validate` judges every image of every object that carries a pod spec;
//! `/mutate` (opt-in) pins tags to the digests `/validate` then judges, and
//! stamps break-glass grants on the pod templates of workloads.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::{SecondsFormat, Utc};
use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};
use kube::core::DynamicObject;
use serde_json::Value;
use tokio::time::Instant;
use tracing::Instrument as _;

use crate::audit::{AuditLog, Record};
use crate::cluster::events::Notice;
use crate::engine::Keychain;
use crate::gate::{Ask, BreakGlassAsk, CarriedGrant, Gate, Keys, Place, Written};
use crate::image::Digest;
use crate::metrics::Metrics;
use crate::policy::{self, BreakGlass, BreakGlassRequest, Decision, Outcome, Policy, Presenter, Verdict};

mod mutate;
pub mod ping;
pub mod review;
mod server;
mod tls;

pub use mutate::PinImages;
pub use server::{Handle, Server, ServerLimits};
pub use tls::{caller, Caller, ClientAuth, ClientPolicy, ListenerTls, Refusal, ServingTls, TlsError};

use crate::kinds::{self, ContainerImage, Kind};
use review::Review;

/// Largest AdmissionReview accepted (an object and its old version, each up
/// to the API server's 3 MiB request limit).
pub const MAX_BODY: usize = 7 << 20;
/// Default of [`AppState::reading`]: bytes of AdmissionReview bodies past
/// each one's first [`FREE_BODY_BYTES`], read and decoded at once across
/// requests (four of the largest).
pub const READING_BYTES: usize = 4 * MAX_BODY;
pub use crate::policy::decide::MAX_MESSAGE;

/// Everything a request handler needs; shared by all requests.
pub struct AppState {
    /// What every decision goes through: the policy in force, the tier
    /// source, the engine, the grant keys and the clock.
    pub gate: Arc<Gate>,
    pub metrics: Arc<Metrics>,
    pub audit: AuditLog,
    /// Time budget for one decision, kept below the webhook's timeoutSeconds.
    pub deadline: Duration,
    /// When set, every AdmissionReview received is written here (debugging,
    /// fixtures). The files hold whole objects: keep the directory private.
    pub record_dir: Option<PathBuf>,
    /// Most distinct images judged in one review; more are denied.
    pub max_images: usize,
    /// What `/mutate` pins to digests.
    pub pin: PinImages,
    /// Longest wait for a request body.
    pub body_timeout: Duration,
    /// Pull secrets, when Portcullis may read them (`--pull-secrets`).
    pub pull_secrets: Option<crate::cluster::PullSecrets>,
    /// Where break-glass Events go, when there is a cluster.
    pub events: Option<crate::cluster::events::Events>,
    /// Time to remediation and to promotion, as decisions go by.
    pub timelines: crate::timelines::Timelines,
    /// Users of workload controllers besides kube-controller-manager's
    /// ([`policy::CONTROLLER_USERS`]), who may present a break-glass grant on
    /// the copies they make (`--controller-user`).
    pub controller_users: Vec<String>,
    /// Bytes of request bodies being read and decoded at once, past each
    /// one's first [`FREE_BODY_BYTES`]: each byte takes its share as it
    /// arrives, so that concurrent reviews cannot together hold more.
    pub reading: Arc<tokio::sync::Semaphore>,
}

impl AppState {
    /// The policy in force (the gate's).
    pub fn policy(&self) -> Arc<Policy> {
        self.gate.policy()
    }

    /// Puts `p` in force for the next decision on.
    pub fn set_policy(&self, p: Policy) {
        self.gate.set_policy(p)
    }
}

/// The webhook's routes: the reviews (only for the callers the server's
/// client policy admits), health and metrics (for anyone: kubelet probes
/// and scrapers present no client certificate).
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/validate", post(validate))
        .route("/mutate", post(mutate))
        .route_layer(axum::middleware::from_fn(server::only_certified_callers))
        .with_state(state.clone())
        .merge(metrics_router(state))
}

/// Health and metrics alone, for a port of their own (`--metrics-listen`).
pub fn metrics_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(st): State<Arc<AppState>>) -> Response {
    if st.gate.tiers().ready() {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "namespace cache not synced yet").into_response()
    }
}

async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    st.metrics.refresh(&st.policy(), portcullis_now());
    st.metrics.catch_up(st.audit.write_errors(), st.events.as_ref().map_or(0, crate::cluster::events::Events::lost));
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], st.metrics.render()).into_response()
}

/// Serves `router(state)` over TLS on `listen` (port 0 picks a free port),
/// with the client policy of `tls`.
pub async fn serve(
    state: Arc<AppState>,
    listen: SocketAddr,
    tls: &ServingTls,
    limits: ServerLimits,
) -> std::io::Result<Server> {
    server::serve(router(state), listen, tls.webhook(), limits).await
}

/// Serves `metrics_router(state)` over TLS on `listen`, never asking for a
/// client certificate.
pub async fn serve_metrics(
    state: Arc<AppState>,
    listen: SocketAddr,
    tls: &ServingTls,
    limits: ServerLimits,
) -> std::io::Result<Server> {
    server::serve(metrics_router(state), listen, tls.open(), limits).await
}

/// Watches the policy file, the serving certificate and the client CA;
/// reloads what changed. A policy that fails validation is rejected and the
/// last good one stays.
pub fn spawn_reloader(state: Arc<AppState>, policy_path: Option<PathBuf>, tls: ServingTls, every: Duration) {
    tokio::spawn(async move {
        let read = |p: PathBuf| async move { tokio::fs::read(&p).await.ok() };
        // The last content looked at, so a rejected version is reported once.
        let mut last_policy: Option<Vec<u8>> = None;
        let mut last_roots: Vec<Option<crate::image::Digest>> = Vec::new();
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Some(p) = &policy_path {
                let now = read(p.clone()).await;
                // Compared with the policy in force, not with the file at start-up:
                // a change made before the first look is not missed.
                let in_force = state.policy();
                let changed = now.as_deref().is_some_and(|b| crate::image::Digest::of(b) != in_force.digest);
                // A trusted root file the policy names changed (a ConfigMap
                // updated out of band): the same policy text, loaded anew.
                let mut roots = Vec::new();
                for (path, _) in &in_force.root_files {
                    roots.push(read(PathBuf::from(path)).await.map(|b| crate::image::Digest::of(&b)));
                }
                let root_changed = roots != last_roots
                    && roots
                        .iter()
                        .zip(&in_force.root_files)
                        .any(|(now, (_, was))| now.as_ref().is_some_and(|d| d != was));
                if now.is_some() && ((now != last_policy && changed) || root_changed) {
                    let path = p.clone();
                    let loaded =
                        tokio::task::spawn_blocking(move || Policy::from_file(&path)).await.unwrap_or_else(|e| {
                            Err(crate::policy::PolicyFileError::Read {
                                path: p.display().to_string(),
                                why: e.to_string(),
                            })
                        });
                    match loaded {
                        Ok(pol) => {
                            tracing::info!(digest = %pol.digest, path = ?p.display(), "policy reloaded");
                            for w in pol.warnings(portcullis_now(), crate::attest::keyless::EXPIRY_WARNING) {
                                tracing::warn!("{w}");
                            }
                            state.metrics.policy_info(pol.digest.as_str(), &p.display().to_string());
                            state.set_policy(pol);
                            state.metrics.policy_reload("success");
                        }
                        Err(e) => {
                            tracing::error!(error = ?e.to_string(), "new policy rejected; the last good policy stays in force");
                            state.metrics.policy_reload("rejected");
                        }
                    }
                    last_policy = now;
                    last_roots = roots;
                }
            }
            tls.reload_if_changed().await;
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

fn review_response(mut resp: AdmissionResponse) -> Response {
    let patch = resp.patch.take();
    let review = resp.into_review();
    // The usual answer is serialised once, straight to the body. A JSON patch
    // travels base64-encoded, as the API documents it (kube's type would
    // write the bytes as a list of numbers).
    let body = match patch {
        None => serde_json::to_vec(&review),
        Some(p) => serde_json::to_value(&review).and_then(|mut v| {
            use base64::Engine as _;
            v["response"]["patch"] = Value::String(base64::engine::general_purpose::STANDARD.encode(p));
            serde_json::to_vec(&v)
        }),
    };
    match body {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("portcullis: encoding the answer: {e}")).into_response(),
    }
}

/// A body that is not a usable AdmissionReview: answered with a clear error.
/// With a request uid the API server can attribute it, so it is an
/// AdmissionReview answer; without one, a 400.
fn invalid(body: &[u8], why: String) -> Response {
    tracing::warn!(error = ?why, "invalid AdmissionReview");
    let uid = review::uid_of(body);
    let mut resp = AdmissionResponse::invalid(format!("portcullis: invalid AdmissionReview: {why}"));
    match uid {
        Some(uid) => {
            resp.uid = uid;
            review_response(resp)
        }
        None => (StatusCode::BAD_REQUEST, axum::Json(resp.into_review())).into_response(),
    }
}

enum BodyError {
    TooLarge,
    Read(String),
}

/// Bytes of each request body read without a share of
/// [`AppState::reading`]: every real review fits (a Pod's is a few
/// kilobytes), so a client sending large bodies slowly never delays them.
pub const FREE_BODY_BYTES: usize = 64 << 10;

/// A request body, within `limit` bytes: each frame is copied into one
/// buffer and let go as it arrives (collecting the frames first kept them
/// alive in the buffers they were cut from). Past [`FREE_BODY_BYTES`], each
/// byte takes its share of `reading` before it is kept, and holds it until
/// the request's review is decoded: bodies being read at once hold at most
/// that budget, and a client holds only what it has actually sent.
async fn collect(
    mut body: Body,
    limit: usize,
    capacity: usize,
    reading: &Arc<tokio::sync::Semaphore>,
) -> Result<(Vec<u8>, Option<tokio::sync::OwnedSemaphorePermit>), BodyError> {
    use http_body_util::BodyExt as _;
    let mut out = Vec::with_capacity(capacity.min(limit));
    let mut held: Option<tokio::sync::OwnedSemaphorePermit> = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyError::Read(e.to_string()))?;
        let Ok(data) = frame.into_data() else { continue };
        let total = out.len() + data.len();
        if total > limit {
            return Err(BodyError::TooLarge);
        }
        let owed = total.saturating_sub(FREE_BODY_BYTES) - held.as_ref().map_or(0, |p| p.num_permits());
        if owed > 0 {
            let more = u32::try_from(owed).map_err(|_| BodyError::TooLarge)?;
            let permit = reading.clone().acquire_many_owned(more).await.map_err(|e| BodyError::Read(e.to_string()))?;
            match &mut held {
                Some(p) => p.merge(permit),
                None => held = Some(permit),
            }
        }
        out.extend_from_slice(&data);
    }
    Ok((out, held))
}

/// Reads and decodes an AdmissionReview: the body within [`MAX_BODY`] and
/// the server's body timeout (and its share of [`AppState::reading`]),
/// decoded to what a decision reads ([`review`]); and the time budget from
/// the API server's `?timeout=` (answering before it gives up).
async fn read_review(
    st: &AppState,
    endpoint: &'static str,
    query: &HashMap<String, String>,
    headers: &axum::http::HeaderMap,
    body: Body,
) -> Result<(Review, Instant), Response> {
    let start = Instant::now();
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let too_large = || {
        let msg = format!("portcullis: AdmissionReview body is larger than the limit of {MAX_BODY} bytes");
        (StatusCode::PAYLOAD_TOO_LARGE, msg).into_response()
    };
    // A body declared larger than the limit is still read up to it, so that
    // the client, done sending, reads why it was refused.
    let capacity = declared.map_or(0, |n| usize::try_from(n).unwrap_or(MAX_BODY));
    let (body, _reading) =
        match tokio::time::timeout(st.body_timeout, collect(body, MAX_BODY, capacity, &st.reading)).await {
            Ok(Ok(b)) => b,
            Ok(Err(BodyError::TooLarge)) => return Err(too_large()),
            Ok(Err(BodyError::Read(e))) => {
                return Err((StatusCode::BAD_REQUEST, format!("portcullis: could not read the request body: {e}"))
                    .into_response());
            }
            Err(_) => {
                let msg = format!("portcullis: the request body did not arrive within {:?}", st.body_timeout);
                return Err((StatusCode::REQUEST_TIMEOUT, msg).into_response());
            }
        };
    if let Some(dir) = &st.record_dir {
        record(dir, &body).await;
    }
    let review = match review::decode(&body) {
        Ok(r) => r,
        Err(e) => {
            // Unjudged, and on the record all the same.
            let why = e.to_string();
            let uid = review::uid_of(&body);
            st.audit
                .write(crate::audit::Invalid::of(endpoint, uid, &body, &why, &st.policy().digest, st.gate.now()))
                .await;
            return Err(invalid(&body, why));
        }
    };
    let mut budget = st.deadline;
    if let Some(t) = query.get("timeout").and_then(|t| policy::parse_duration(t).ok()) {
        budget = budget.min(t.saturating_sub(Duration::from_millis(500)));
    }
    Ok((review, start + budget))
}

async fn validate(
    State(st): State<Arc<AppState>>,
    Query(query): Query<HashMap<String, String>>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Response {
    let start = Instant::now();
    let (review, deadline) = match read_review(&st, "/validate", &query, &headers, body).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    // Every line logged while deciding carries the request's uid.
    let span = tracing::info_span!("admission", uid = %loggable(&review.req.uid));
    async {
        let (resp, record) = decide(&st, &review, deadline).await;
        let elapsed = start.elapsed().as_secs_f64();
        let record = Record { latency_ms: elapsed * 1000.0, ..record };
        account(&st, &review, &record, elapsed);
        // Names and messages come from the request: Debug-formatted, so that no
        // newline in them can forge a line of a text log.
        tracing::info!(ns = ?record.namespace, name = ?record.name, kind = ?record.kind, allowed = record.allowed, result = record.result.as_str(), reason = %record.reason, ms = record.latency_ms, "decision");
        // Every judged request is audited: one with a tier, or one denied before
        // a tier was known. Objects without pod specs, and unchanged updates, are not.
        // The record is serialised and written by the audit writer, not here.
        if record.tier.is_some() || !record.allowed {
            st.audit.write(record).await;
        }
        review_response(resp)
    }
    .instrument(span)
    .await
}

/// `s` as it is when it is a plain token (a uid the API server made), else
/// quoted and escaped, so that no newline in it can forge a line of a text log.
fn loggable(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.is_empty() && s.len() <= 128 && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c)) {
        std::borrow::Cow::Borrowed(s)
    } else {
        std::borrow::Cow::Owned(format!("{s:?}"))
    }
}

/// What a decision adds to the metrics, the timelines and the Events.
fn account(st: &AppState, review: &Review, record: &Record, elapsed: f64) {
    let req = &review.req;
    let tier = record.tier.as_deref().unwrap_or("none");
    st.metrics.decision(tier, record.result.as_str(), &record.reason, elapsed);
    for v in &record.images {
        st.metrics.image(
            tier,
            match (v.admitted, v.problems.is_empty()) {
                (true, true) => "admitted",
                (true, false) => "warned",
                (false, _) => "denied",
            },
        );
        for s in &v.vex_suppressed {
            st.metrics.vex_suppressed(tier, s.status.as_str());
        }
    }
    match &record.break_glass {
        BreakGlass::Granted { .. } if record.result == Outcome::BreakGlass => st.metrics.break_glass(tier, "granted"),
        BreakGlass::Refused { .. } => st.metrics.break_glass(tier, "refused"),
        _ => {}
    }
    if req.dry_run || record.tier.is_none() {
        return;
    }
    let now = portcullis_now();
    // How old the evidence admissions rest on is.
    if record.allowed && record.result != Outcome::BreakGlass {
        for a in record.images.iter().filter(|v| v.admitted).flat_map(|v| &v.attestations) {
            if let Some(t) = a.finished_on {
                st.metrics.evidence_age(tier, a.kind.as_str(), (now - t).num_milliseconds().max(0) as f64 / 1000.0);
            }
        }
    }
    let kind = record.kind.split('/').next().unwrap_or_default();
    let workload = record.owner.clone().unwrap_or_else(|| format!("{kind}/{}", object_name(review)));
    let seen = st.timelines.observe(&crate::timelines::Seen {
        namespace: &record.namespace,
        workload: &workload,
        tier,
        outcome: record.result,
        verdicts: &record.images,
        now,
    });
    if let Some(s) = seen.remediation {
        st.metrics.remediation(tier, s);
    }
    for s in seen.promotions {
        st.metrics.promotion(tier, s);
    }
    if let Some(events) = &st.events {
        let overrode: Vec<String> = record.images.iter().filter(|v| !v.admitted).map(Verdict::denial_message).collect();
        if let Some(n) = Notice::of_break_glass(
            regarding(review, record),
            &record.break_glass,
            &record.user,
            record.allowed,
            &overrode,
        ) {
            events.publish(n);
        }
    }
}

async fn mutate(
    State(st): State<Arc<AppState>>,
    Query(query): Query<HashMap<String, String>>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Response {
    let (review, deadline) = match read_review(&st, "/mutate", &query, &headers, body).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let span = tracing::info_span!("mutation", uid = %loggable(&review.req.uid));
    review_response(mutate::mutate(&st, &review, deadline).instrument(span).await)
}

/// The object under review, when it is of a kind that carries a pod spec and
/// the operation can change its images: the review's own (decoded once,
/// never copied).
pub(crate) struct Subject<'r> {
    pub kind: &'static Kind,
    pub object: &'r Value,
    pub old: &'r Value,
    pub namespace: String,
}

impl<'r> Subject<'r> {
    pub(crate) fn of(review: &'r Review) -> Option<Subject<'r>> {
        let req = &review.req;
        if !matches!(req.operation, Operation::Create | Operation::Update) {
            return None;
        }
        let kind = kinds::of(&req.kind.group, &req.kind.kind)?;
        let namespace = req
            .namespace
            .clone()
            .or_else(|| review.object.pointer("/metadata/namespace").and_then(Value::as_str).map(String::from))
            .unwrap_or_default();
        Some(Subject { kind, object: &review.object, old: &review.old, namespace })
    }

    /// The break-glass annotations as the object carries them (justification,
    /// ticket, grant): a change to any of them is judged with every image.
    pub(crate) fn glass(&self, object: &Value) -> [Option<String>; 3] {
        let ann = kinds::annotations(self.kind, object);
        [
            kinds::annotation(&ann, policy::BREAK_GLASS_ANNOTATION).map(String::from),
            kinds::annotation(&ann, policy::BREAK_GLASS_TICKET_ANNOTATION).map(String::from),
            kinds::grant(self.kind, object).map(String::from),
        ]
    }

    /// What the request asks of break-glass: the annotations, whether this
    /// request wrote the justification, and who asks (no grant yet: that is
    /// checked against what was judged).
    pub(crate) fn break_glass_request<'a>(
        &'a self,
        req: &'a AdmissionRequest<DynamicObject>,
        st: &AppState,
    ) -> BreakGlassRequest<'a>
    where
        'r: 'a,
    {
        let ann = kinds::annotations(self.kind, self.object);
        let justification = kinds::annotation(&ann, policy::BREAK_GLASS_ANNOTATION);
        let user = req.user_info.username.as_deref().unwrap_or("");
        BreakGlassRequest {
            justification,
            ticket: kinds::annotation(&ann, policy::BREAK_GLASS_TICKET_ANNOTATION),
            written: justification.is_some() && self.writes_justification(&req.operation),
            user,
            groups: req.user_info.groups.as_deref().unwrap_or(&[]),
            controller: policy::is_controller(user, &st.controller_users),
            grant: None,
        }
    }

    /// Who presents what the object carries.
    pub(crate) fn presenter<'a>(&self, req: &'a AdmissionRequest<DynamicObject>, st: &AppState) -> Presenter<'a> {
        let user = req.user_info.username.as_deref().unwrap_or("");
        Presenter { user, controller: policy::is_controller(user, &st.controller_users) }
    }

    /// Whether this request writes the break-glass justification: creates
    /// the object with one, or adds or changes it. Break-glass is asked by
    /// whoever writes it, never derived from what an earlier request wrote.
    pub(crate) fn writes_justification(&self, op: &Operation) -> bool {
        let of = |o: &Value| {
            kinds::annotation(&kinds::annotations(self.kind, o), policy::BREAK_GLASS_ANNOTATION).map(String::from)
        };
        match op {
            Operation::Create => of(self.object).is_some(),
            Operation::Update => {
                let now = of(self.object);
                now.is_some() && now != of(self.old)
            }
            _ => false,
        }
    }

    /// The images to judge: every one on CREATE; on UPDATE those that
    /// changed, or all when the break-glass annotations changed.
    pub(crate) fn judged(&self, all: Vec<ContainerImage>, op: &Operation) -> Vec<ContainerImage> {
        if *op != Operation::Update {
            return all;
        }
        let glass = self.glass(self.object);
        if glass.iter().any(Option::is_some) && glass != self.glass(self.old) {
            return all;
        }
        self.changed(all, op)
    }

    /// The credentials its images may be looked up with: its pull secrets
    /// and its service account's (from its own namespace), when Portcullis
    /// reads them; then Portcullis' own. Reading them waits at most
    /// [`PULL_SECRET_WAIT`] and never past `deadline`.
    pub(crate) async fn keychain(&self, st: &AppState, deadline: Instant) -> Keychain {
        let Some(ps) = &st.pull_secrets else { return Keychain::default() };
        let (names, account) = kinds::pull_secrets(self.kind, self.object);
        let until = deadline.min(Instant::now() + PULL_SECRET_WAIT);
        match tokio::time::timeout_at(until, ps.keychain(&self.namespace, &names, &account)).await {
            Ok(k) => k,
            Err(_) => Keychain {
                unreadable: vec!["pull secrets (the API server did not answer in time)".into()],
                ..Default::default()
            },
        }
    }

    /// The images that are new: every one on CREATE; on UPDATE those whose
    /// reference the previous version did not have.
    pub(crate) fn changed(&self, all: Vec<ContainerImage>, op: &Operation) -> Vec<ContainerImage> {
        if *op != Operation::Update {
            return all;
        }
        let before: BTreeSet<String> =
            kinds::images(self.kind, self.old).unwrap_or_default().into_iter().map(|c| c.image).collect();
        all.into_iter().filter(|c| !before.contains(&c.image)).collect()
    }
}

impl Record {
    /// The record of a request, before anything is decided: admitted.
    fn of(req: &AdmissionRequest<DynamicObject>, now: chrono::DateTime<Utc>, policy_digest: &Digest) -> Record {
        let at = now.to_rfc3339_opts(SecondsFormat::Millis, true);
        Record {
            time: at.clone(),
            uid: req.uid.clone(),
            operation: format!("{:?}", req.operation).to_uppercase(),
            kind: match &req.sub_resource {
                Some(s) => format!("{}/{s}", req.kind.kind),
                None => req.kind.kind.clone(),
            },
            namespace: req.namespace.clone().unwrap_or_default(),
            name: req.name.clone(),
            owner: None,
            user: req.user_info.username.clone().unwrap_or_default(),
            groups: req.user_info.groups.clone().unwrap_or_default(),
            tier: None,
            allowed: true,
            result: Outcome::Allowed,
            reason: "none".into(),
            dry_run: req.dry_run,
            policy_digest: policy_digest.to_string(),
            evaluated_at: at,
            images: vec![],
            exceptions: vec![],
            break_glass: BreakGlass::NotRequested,
            message: None,
            warnings: vec![],
            latency_ms: 0.0,
        }
    }

    /// The record with what was decided (the verdicts move into it).
    fn decided(self, d: Decision) -> Record {
        let mut exceptions: Vec<String> = Vec::new();
        for e in d.verdicts.iter().flat_map(|v| &v.exceptions) {
            if !exceptions.contains(e) {
                exceptions.push(e.clone());
            }
        }
        Record {
            allowed: d.allowed,
            result: d.outcome,
            reason: d.reason.to_string(),
            images: d.verdicts,
            exceptions,
            break_glass: d.break_glass,
            message: d.message,
            // The whole text: what the user saw was cut to Kubernetes' bounds.
            warnings: d.recorded_warnings,
            ..self
        }
    }
}

/// The name of the object under review: its metadata's, else the request's
/// (a Pod created with `generateName` has none yet).
fn object_name(review: &Review) -> &str {
    review
        .object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .unwrap_or(&review.req.name)
}

/// The object a request is about, as an Event refers to it.
fn regarding(review: &Review, record: &Record) -> k8s_openapi::api::core::v1::ObjectReference {
    let req = &review.req;
    k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some(if req.kind.group.is_empty() {
            req.kind.version.clone()
        } else {
            format!("{}/{}", req.kind.group, req.kind.version)
        }),
        kind: Some(req.kind.kind.clone()),
        name: Some(object_name(review).to_string()),
        namespace: Some(record.namespace.clone()),
        uid: review.object.pointer("/metadata/uid").and_then(Value::as_str).map(String::from),
        ..Default::default()
    }
}

/// Longest wait for the API server when reading pull secrets.
pub const PULL_SECRET_WAIT: Duration = Duration::from_secs(2);

/// Decides one admission request: gathers what the pure decision needs
/// (the object's images, its namespace's tier, a verdict per image, its
/// break-glass request with any grant it carries checked), then answers as
/// [`policy::decide`] decides.
pub async fn decide(st: &AppState, review: &Review, deadline: Instant) -> (AdmissionResponse, Record) {
    let req = &review.req;
    let gate = &st.gate;
    let subject = Subject::of(review);
    let namespace = subject.as_ref().map(|s| s.namespace.clone()).or_else(|| req.namespace.clone()).unwrap_or_default();
    let owner = subject.as_ref().and_then(|s| kinds::controller(s.object)).map(|o| o.to_string());
    let record_at = |now, digest: &Digest| {
        let mut record = Record::of(req, now, digest);
        record.namespace = namespace.clone();
        record.owner = owner.clone();
        record
    };
    let answer = |record: Record, decision: Decision| {
        let mut resp = AdmissionResponse::from(req);
        if let Some(msg) = decision.message.as_ref().filter(|_| !decision.allowed) {
            resp = deny(resp, msg.clone());
        }
        if !decision.warnings.is_empty() {
            resp.warnings = Some(decision.warnings.clone());
        }
        (resp, record.decided(decision))
    };
    // What is not judged: no pod spec, or nothing new in it.
    let (policy, now) = (gate.policy(), gate.now());
    let allow = AdmissionResponse::from(req);
    let Some(subject) = subject else {
        return (allow, record_at(now, &policy.digest));
    };
    let all = match kinds::images(subject.kind, subject.object) {
        Ok(i) => i,
        Err(e) => {
            let refused = policy::decide::refuse(&policy.digest, "invalid_object", &format!("{}: {e}", req.name));
            return answer(record_at(now, &policy.digest), refused);
        }
    };
    let images = subject.judged(all, &req.operation);
    if images.is_empty() {
        return (allow, record_at(now, &policy.digest));
    }

    // The rest is the gate's: the review only says what to ask.
    let paths: Vec<String> = images.iter().map(ContainerImage::path).collect();
    let object = kinds::object_id(subject.kind, subject.object, &req.name);
    let carried = kinds::grant(subject.kind, subject.object);
    let judgement = gate
        .judge(Ask {
            place: Place::Namespace(&subject.namespace),
            what: format!("{} {}", subject.kind.kind, req.name),
            images: images.iter().zip(&paths).map(|(c, path)| Written::new(&c.image, path)).collect(),
            max_images: Some(st.max_images),
            keychain: Keys::later(subject.keychain(st, deadline)),
            break_glass: BreakGlassAsk {
                request: subject.break_glass_request(req, st),
                grant: carried.map(|token| CarriedGrant {
                    token,
                    object: object.clone(),
                    controller: kinds::controller(subject.object),
                    by: subject.presenter(req, st),
                }),
                template_without_grant: (subject.kind.is_template() && carried.is_none()).then(|| object.to_string()),
            },
            deadline,
            vex: &[],
        })
        .await;
    let mut record = record_at(judgement.now, &judgement.policy.digest);
    record.tier = judgement.tier.as_ref().map(|t| t.to_string());
    let decision = judgement.decision;
    if let (Outcome::BreakGlass, BreakGlass::Granted { user, justification, ticket, carried, .. }) =
        (decision.outcome, &decision.break_glass)
    {
        // Debug-formatted: the justification is the user's text.
        tracing::warn!(user = ?user, justification = ?justification, ticket = ?ticket, ns = ?subject.namespace, object = ?object.to_string(), carried = carried.is_some(), "break-glass admission");
    }
    answer(record, decision)
}

/// The current time at the precision decisions record it (milliseconds).
pub fn portcullis_now() -> chrono::DateTime<Utc> {
    crate::gate::now()
}

#[cfg(test)]
mod tests {
    use super::loggable;

    #[test]
    fn only_plain_uids_are_logged_as_they_are() {
        assert_eq!(loggable("0b9c1f6e-7c1a-4d2e-9f1b-2a3c4d5e6f70"), "0b9c1f6e-7c1a-4d2e-9f1b-2a3c4d5e6f70");
        assert_eq!(loggable("a\nforged=1"), "\"a\\nforged=1\"");
        assert_eq!(loggable(""), "\"\"");
    }
}
