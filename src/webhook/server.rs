//! The HTTPS server, with every client bounded: how many connections are
//! open at once, how long the TLS handshake, the request headers and the
//! request body may take, and how long a connection may sit idle.
//!
//! Written on hyper-util and tokio-rustls rather than axum-server because the
//! connection cap must stop *accepting* (leaving further clients in the
//! kernel's backlog, as Go's `netutil.LimitListener` does), which a server
//! that accepts first and limits afterwards cannot do.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum_server::tls_rustls::RustlsConfig;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

/// Bounds on what one client may hold.
#[derive(Clone, Debug)]
pub struct ServerLimits {
    /// Most connections open at once; further clients wait to be accepted.
    pub max_connections: usize,
    /// Longest TLS handshake.
    pub handshake_timeout: Duration,
    /// Longest wait for a request's headers (HTTP/1.1), from its first byte
    /// or, on a kept-alive connection, from the end of the previous response.
    pub header_timeout: Duration,
    /// Longest wait for a whole request body.
    pub body_timeout: Duration,
    /// A connection on which nothing is read or written this long is closed.
    /// Keep it above the API server's idle-connection timeout (90s), so the
    /// client closes idle connections first.
    pub idle_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: 1024,
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
        }
    }
}

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

/// Serves `app` over TLS on `listen` (port 0 picks a free port) within `limits`.
pub async fn serve(
    app: Router,
    listen: SocketAddr,
    tls: RustlsConfig,
    limits: ServerLimits,
) -> std::io::Result<Server> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let (stop_tx, mut stop) = watch::channel(None::<Option<Duration>>);
    let handle = Handle { stop: Arc::new(stop_tx) };
    let task = tokio::spawn(async move {
        let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
        builder.http2().timer(TokioTimer::new()).max_concurrent_streams(256);
        let builder = Arc::new(builder);
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
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.get_inner());
            let svc = TowerToHyperService::new(app.clone());
            let builder = builder.clone();
            let watcher = graceful.watcher();
            let limits = limits.clone();
            connections.spawn(async move {
                let _slot = slot;
                let _ = tcp.set_nodelay(true);
                let mut io = tokio_io_timeout::TimeoutStream::new(tcp);
                io.set_read_timeout(Some(limits.idle_timeout));
                io.set_write_timeout(Some(limits.idle_timeout));
                let tls = match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(Box::pin(io))).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
                };
                let conn = builder.serve_connection(TokioIo::new(tls), svc).into_owned();
                if let Err(e) = watcher.watch(conn).await {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            });
            // Reap finished connection tasks as we go.
            while connections.try_join_next().is_some() {}
        };
        drop(listener);
        match how {
            Some(grace) => {
                let _ = tokio::time::timeout(grace, graceful.shutdown()).await;
            }
            _ => connections.abort_all(),
        }
        Ok(())
    });
    Ok(Server { addr, handle, task })
}
