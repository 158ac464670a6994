//! The HTTPS server, with every client bounded: how many connections are
//! open at once, and from one peer; how long the TLS handshake, the first
//! request, the request headers and the request body may take; and how long
//! a connection may stay open without a request.
//!
//! Written on hyper-util and tokio-rustls rather than axum-server because the
//! connection cap must stop *accepting* (leaving further clients in the
//! kernel's backlog, as Go's `netutil.LimitListener` does), which a server
//! that accepts first and limits afterwards cannot do.
//!
//! Idle is counted in requests, not bytes: a connection is idle while no
//! request is in flight, and HTTP/2 PINGs, SETTINGS or WINDOW_UPDATEs do not
//! make it busy. One that has answered no request is closed after
//! `first_request_timeout`, one that has after `idle_timeout`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;
use tower::ServiceExt as _;

use super::tls::{self, Caller, ClientPolicy, ListenerTls};

/// Bounds on what one client may hold.
#[derive(Clone, Debug)]
pub struct ServerLimits {
    /// Most connections open at once; further clients wait to be accepted.
    pub max_connections: usize,
    /// Most connections open at once from one source address; further ones
    /// from it are closed as soon as they are accepted.
    pub max_connections_per_peer: usize,
    /// Longest TLS handshake.
    pub handshake_timeout: Duration,
    /// A connection that has answered no request this long after its
    /// handshake, and has none in flight, is closed.
    pub first_request_timeout: Duration,
    /// Longest wait for a request's headers (HTTP/1.1), from its first byte
    /// or, on a kept-alive connection, from the end of the previous response.
    pub header_timeout: Duration,
    /// Longest wait for a whole request body.
    pub body_timeout: Duration,
    /// A connection with no request in flight and none started this long is
    /// closed; frames that are not requests (PINGs) do not count. Keep it
    /// above the API server's idle-connection timeout (90s), so the client
    /// closes idle connections first.
    pub idle_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: 1024,
            max_connections_per_peer: 256,
            handshake_timeout: Duration::from_secs(10),
            first_request_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
        }
    }
}

/// How long a connection being closed for idleness may take to say goodbye
/// (an HTTP/2 GOAWAY) before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// How long a connection closed because another client CA was loaded may
/// take to finish the requests in flight (a review: its body, then the
/// decision) before it is dropped.
const REAUTHENTICATE_GRACE: Duration = Duration::from_secs(30);

/// Stops a running [`Server`].
#[derive(Clone, Debug)]
pub struct Handle {
    stop: Arc<watch::Sender<Option<Option<Duration>>>>,
}

impl Handle {
    /// Stops at once: open connections are dropped.
    pub fn shutdown(&self) {
        let _ = self.stop.send(Some(None));
    }

    /// Stops accepting; open connections finish their requests, for at most `grace`.
    pub fn graceful_shutdown(&self, grace: Option<Duration>) {
        let _ = self.stop.send(Some(Some(grace.unwrap_or(Duration::MAX))));
    }
}

/// Waits for a stop: `None` to stop at once, `Some(grace)` to drain. Without
/// any handle left, never.
async fn stopped(stop: &mut watch::Receiver<Option<Option<Duration>>>) -> Option<Duration> {
    loop {
        if stop.changed().await.is_err() {
            return std::future::pending().await;
        }
        if let Some(how) = *stop.borrow() {
            return how;
        }
    }
}

/// A running server.
pub struct Server {
    pub addr: SocketAddr,
    pub handle: Handle,
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Open connections per source address.
#[derive(Default)]
struct Peers(Mutex<HashMap<IpAddr, PeerCount>>);

#[derive(Default)]
struct PeerCount {
    open: usize,
    /// A refusal was logged since the peer last went below its cap.
    warned: bool,
}

/// One connection counted against its peer; uncounted when dropped.
struct PeerSlot {
    peers: Arc<Peers>,
    ip: IpAddr,
}

impl Peers {
    /// Counts a connection from `ip`, unless it already holds `cap`.
    fn take(self: &Arc<Self>, ip: IpAddr, cap: usize) -> Result<PeerSlot, bool> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let count = map.entry(ip).or_default();
        if count.open >= cap {
            // Said once per stretch at the cap, so a client that keeps
            // knocking cannot flood the log.
            let first = !count.warned;
            count.warned = true;
            return Err(first);
        }
        count.open += 1;
        Ok(PeerSlot { peers: self.clone(), ip })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut map = self.peers.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = map.get_mut(&self.ip) {
            count.open = count.open.saturating_sub(1);
            count.warned = false;
            if count.open == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// What a connection has done, in requests.
#[derive(Clone, Copy, Debug)]
struct Activity {
    in_flight: usize,
    answered: u64,
    /// When a request last started or ended (the handshake, before any).
    since: Instant,
}

impl Activity {
    /// When the connection is to be closed for idleness: none while a
    /// request is in flight.
    fn idle_until(&self, limits: &ServerLimits) -> Option<Instant> {
        (self.in_flight == 0)
            .then(|| self.since + if self.answered == 0 { limits.first_request_timeout } else { limits.idle_timeout })
    }
}

/// One request in flight on a connection; ended when dropped (answered or
/// abandoned).
struct InFlight {
    activity: watch::Sender<Activity>,
    answered: bool,
}

impl InFlight {
    fn start(activity: &watch::Sender<Activity>) -> InFlight {
        activity.send_modify(|a| {
            a.in_flight += 1;
            a.since = Instant::now();
        });
        InFlight { activity: activity.clone(), answered: false }
    }

    /// The request was answered.
    fn answered(mut self) {
        self.answered = true;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let answered = self.answered;
        self.activity.send_modify(|a| {
            a.in_flight = a.in_flight.saturating_sub(1);
            a.since = Instant::now();
            a.answered += u64::from(answered);
        });
    }
}

/// The review routes' guard: only a caller the connection's handshake
/// proved may ask (see [`tls::caller`]). A request that did not come
/// through [`serve`] carries no caller and is refused too.
pub async fn only_certified_callers(req: Request, next: Next) -> Response {
    match req.extensions().get::<Caller>() {
        Some(Caller::Anyone | Caller::Certified(_)) => next.run(req).await,
        Some(Caller::Refused(why)) => {
            let peer = req.extensions().get::<Peer>().map(|p| p.0.to_string()).unwrap_or_default();
            tracing::warn!(%peer, path = %req.uri().path(), error = %why, "review request refused");
            (StatusCode::FORBIDDEN, format!("portcullis: {why}")).into_response()
        }
        None => (StatusCode::FORBIDDEN, "portcullis: the client is unknown").into_response(),
    }
}

/// The client's address, as a request extension.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

/// Serves `app` over TLS on `listen` (port 0 picks a free port) within
/// `limits`; each request carries its connection's [`Caller`] under
/// `tls.clients`, and its [`Peer`].
pub async fn serve(app: Router, listen: SocketAddr, tls: ListenerTls, limits: ServerLimits) -> std::io::Result<Server> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let (stop_tx, mut stop) = watch::channel(None::<Option<Duration>>);
    let handle = Handle { stop: Arc::new(stop_tx) };
    let task = tokio::spawn(async move {
        let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
        let peers = Arc::new(Peers::default());
        let (drain_tx, drain) = watch::channel(false);
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
        builder.http2().timer(TokioTimer::new()).max_concurrent_streams(256);
        let builder = Arc::new(builder);
        let clients = Arc::new(tls.clients.clone());
        let mut connections = tokio::task::JoinSet::new();
        let how = loop {
            // A free slot first: at the cap, the listener is not polled and
            // new clients wait in the backlog.
            let slot = tokio::select! {
                s = slots.clone().acquire_owned() => match s { Ok(s) => s, Err(_) => break None },
                how = stopped(&mut stop) => break how,
            };
            let (tcp, peer) = tokio::select! {
                a = listener.accept() => match a {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors, or a connection reset
                        // before it was accepted: note it and go on, after a
                        // pause that keeps a persistent error from spinning.
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                how = stopped(&mut stop) => break how,
            };
            let ip = peer.ip().to_canonical();
            let counted = match peers.take(ip, limits.max_connections_per_peer.max(1)) {
                Ok(c) => c,
                Err(first) => {
                    if first {
                        tracing::warn!(peer = %ip, cap = limits.max_connections_per_peer, "a peer holds as many connections as it may (--max-connections-per-peer); closing its further ones");
                    }
                    continue; // the connection and its slot are dropped
                }
            };
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.config.get_inner());
            // The client CA in force now authenticates this connection.
            let mut client_ca_loads = tls.client_ca_loads.clone();
            client_ca_loads.mark_unchanged();
            let conn = Connection {
                app: app.clone(),
                builder: builder.clone(),
                clients: clients.clone(),
                limits: limits.clone(),
                drain: drain.clone(),
                client_ca_loads,
                peer,
            };
            connections.spawn(async move {
                let _slot = slot;
                let _counted = counted;
                conn.run(tcp, acceptor).await;
            });
            // Reap finished connection tasks as we go.
            while connections.try_join_next().is_some() {}
        };
        drop(listener);
        match how {
            Some(grace) => {
                let _ = drain_tx.send(true);
                let _ = tokio::time::timeout(grace, async { while connections.join_next().await.is_some() {} }).await;
                connections.abort_all();
            }
            _ => connections.abort_all(),
        }
        Ok(())
    });
    Ok(Server { addr, handle, task })
}

/// One accepted connection and what it needs.
struct Connection {
    app: Router,
    builder: Arc<auto::Builder<TokioExecutor>>,
    clients: Arc<ClientPolicy>,
    limits: ServerLimits,
    /// Becomes true when the server drains.
    drain: watch::Receiver<bool>,
    /// Changes when another client CA is loaded.
    client_ca_loads: watch::Receiver<u64>,
    peer: SocketAddr,
}

impl Connection {
    async fn run(mut self, tcp: tokio::net::TcpStream, acceptor: tokio_rustls::TlsAcceptor) {
        let peer = self.peer;
        let _ = tcp.set_nodelay(true);
        let stream = match tokio::time::timeout(self.limits.handshake_timeout, acceptor.accept(tcp)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "TLS handshake failed"),
            Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
        };
        let presented = stream.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| c.as_ref());
        let caller = tls::caller(&self.clients, presented);
        let (activity, mut changes) = watch::channel(Activity { in_flight: 0, answered: 0, since: Instant::now() });
        let app = self.app.clone();
        let svc = tower::service_fn(move |mut req: Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(caller.clone());
            req.extensions_mut().insert(Peer(peer));
            let in_flight = InFlight::start(&activity);
            let app = app.clone();
            async move {
                let resp = app.oneshot(req).await;
                in_flight.answered();
                resp
            }
        });
        let conn = self.builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc)).into_owned();
        tokio::pin!(conn);
        // Set once the connection is asked to close: when it is to be
        // dropped if it has not closed by itself (never, when draining: the
        // server's grace bounds that).
        let mut closing: Option<Option<Instant>> = None;
        let never = Instant::now() + Duration::from_secs(365 * 24 * 3600);
        loop {
            let idle_until = changes.borrow_and_update().idle_until(&self.limits);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    return;
                }
                Ok(()) = changes.changed() => {}
                _ = tokio::time::sleep_until(idle_until.unwrap_or(never)), if closing.is_none() && idle_until.is_some() => {
                    tracing::debug!(%peer, "closing a connection without requests");
                    conn.as_mut().graceful_shutdown();
                    closing = Some(Some(Instant::now() + CLOSE_GRACE));
                }
                Ok(_) = self.drain.wait_for(|d| *d), if closing.is_none() => {
                    conn.as_mut().graceful_shutdown();
                    closing = Some(None);
                }
                Ok(()) = self.client_ca_loads.changed(), if closing.is_none() => {
                    tracing::debug!(%peer, "closing a connection authenticated by the client CA before");
                    conn.as_mut().graceful_shutdown();
                    closing = Some(Some(Instant::now() + REAUTHENTICATE_GRACE));
                }
                _ = tokio::time::sleep_until(closing.flatten().unwrap_or(never)), if closing.flatten().is_some() => {
                    return tracing::debug!(%peer, "connection dropped: it did not close in time");
                }
            }
        }
    }
}
