//! Starting and stopping the gateway: listeners (HTTP/WebSocket, optional raw TCP STOMP,
//! optional internal port) and the graceful shutdown order: not ready → refuse new
//! connections → sessions get ERROR "server shutting down" and drain → exit within the
//! deadline.
//!
//! HTTP connections are served by hyper directly rather than `axum::serve`, for the
//! bounds a public listener needs: plain-HTTP connections are capped per address and in
//! total at accept (`admission`), the request header must arrive within
//! `--http-header-timeout-ms` (that also bounds the wait for the next request on a
//! keep-alive connection), and a connection on which no byte moves for
//! `--http-idle-timeout-ms` is closed (a client that does not read its response or its
//! `101 Switching Protocols`). Each close is counted in `stompgate_refused_total{reason}`.

use crate::config::Config;
use crate::gateway::Gateway;
use crate::session::Session;
use crate::transport::Transport;
use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower_service::Service;

pub struct Server {
    /// The HTTP/WebSocket address actually bound.
    pub addr: SocketAddr,
    /// The raw TCP STOMP address, when enabled.
    pub tcp_addr: Option<SocketAddr>,
    /// The internal (metrics, stats) address, when `--internal-port` is set.
    pub internal_addr: Option<SocketAddr>,
    pub gateway: Arc<Gateway>,
    /// Stops accepting connections.
    accept_stop: CancellationToken,
    http: JoinHandle<()>,
}

impl Server {
    /// Binds the listeners and starts serving.
    pub async fn start(config: Config) -> Result<Server, String> {
        let http_addr = SocketAddr::new(config.bind, config.port);
        let tcp_port = config.tcp_port;
        let gateway = Gateway::start(config)?;
        let listener = listen(http_addr).map_err(|e| {
            format!("cannot listen on {http_addr}: {e}; pick another --port or --bind")
        })?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let accept_stop = CancellationToken::new();

        let tcp_addr = match tcp_port {
            Some(port) => {
                let tcp_bind = SocketAddr::new(http_addr.ip(), port);
                let tcp = listen(tcp_bind).map_err(|e| {
                    format!("cannot listen on {tcp_bind} for STOMP over TCP: {e}; pick another --tcp-port")
                })?;
                let bound = tcp.local_addr().map_err(|e| e.to_string())?;
                tokio::spawn(accept_tcp(tcp, gateway.clone(), accept_stop.clone()));
                Some(bound)
            }
            None => None,
        };

        let internal_addr = match gateway.config.internal_port {
            Some(port) => {
                let bind = SocketAddr::new(http_addr.ip(), port);
                let internal = listen(bind).map_err(|e| {
                    format!("cannot listen on {bind} for the internal port: {e}; pick another --internal-port")
                })?;
                let bound = internal.local_addr().map_err(|e| e.to_string())?;
                let app = crate::http::internal_router(gateway.clone());
                tokio::spawn(serve_http(
                    internal,
                    app,
                    gateway.clone(),
                    accept_stop.clone(),
                ));
                Some(bound)
            }
            None => None,
        };

        let app = crate::http::router(gateway.clone());
        let http = tokio::spawn(serve_http(
            listener,
            app,
            gateway.clone(),
            accept_stop.clone(),
        ));
        tracing::info!(%addr, ?tcp_addr, ?internal_addr, bus = gateway.bus.name(), "stompgate listening");
        Ok(Server {
            addr,
            tcp_addr,
            internal_addr,
            gateway,
            accept_stop,
            http,
        })
    }

    /// Graceful shutdown; returns when every session ended or the grace deadline passed.
    pub async fn shutdown(self) {
        let gw = self.gateway;
        let grace = Duration::from_millis(gw.config.shutdown_grace_ms);
        tracing::info!(
            sessions = gw.metrics.connections.get(),
            "shutting down: not ready, refusing new connections, draining sessions"
        );
        gw.begin_drain();
        // Load balancers see /readyz fail before clients are told to leave; new WebSocket
        // upgrades are refused from now on.
        tokio::time::sleep(Duration::from_millis(gw.config.drain_delay_ms)).await;
        self.accept_stop.cancel();
        gw.close_sessions();
        gw.sessions.close();
        // Sessions have the grace period to drain; allow a little more to close sockets.
        let all_done = tokio::time::timeout(grace + Duration::from_secs(2), gw.sessions.wait())
            .await
            .is_ok();
        let _ = tokio::time::timeout(Duration::from_secs(1), self.http).await;
        tracing::info!(all_done, "shutdown complete");
    }
}

/// A listening socket with a deep accept backlog: in a connect storm the default (1,024)
/// overflowed and clients waited a second for their SYN to be retransmitted.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

async fn accept_tcp(listener: TcpListener, gw: Arc<Gateway>, stop: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "tcp accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let admission = gw.admission.clone();
        let ticket = match admission.check_rate(peer.ip()) {
            Ok(()) => admission.admit(peer.ip()),
            Err(r) => {
                tracing::info!(%peer, reason = r.reason, "tcp connection refused");
                drop(stream);
                continue;
            }
        };
        let gw2 = gw.clone();
        let limits = gw.config.frame_limits();
        gw.sessions.spawn(async move {
            let transport = Transport::tcp(stream, limits);
            let ticket = match ticket {
                Ok(t) => t,
                Err(reason) => {
                    admission.refuse(transport, reason).await;
                    return;
                }
            };
            Session::new(gw2.sessions_cx.clone(), peer, None)
                .run(transport)
                .await;
            drop(ticket);
        });
    }
}

/// Accepts HTTP connections on `listener` and serves `app` on each until `stop`.
async fn serve_http(listener: TcpListener, app: Router, gw: Arc<Gateway>, stop: CancellationToken) {
    let header_timeout = Duration::from_millis(gw.config.http_header_timeout_ms);
    let idle_timeout = Duration::from_millis(gw.config.http_idle_timeout_ms);
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors, most likely: wait for some to be freed rather
                // than spin.
                tracing::warn!(error = %e, "http accept failed");
                gw.metrics
                    .refused
                    .with_label_values(&["accept_error"])
                    .inc();
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let ticket = match gw.admission.admit_http(peer.ip()) {
            Ok(t) => t,
            Err(reason) => {
                tracing::debug!(%peer, reason, "http connection refused");
                // Best effort, never waits: the connection is closed either way.
                let _ = stream.try_write(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: 60\r\n\r\ntoo many open HTTP connections from your address; try later\n",
                );
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let gw = gw.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            serve_connection(stream, peer, app, &gw, header_timeout, idle_timeout, stop).await;
            drop(ticket);
        });
    }
}

/// One HTTP connection, until it closes, times out or is upgraded.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    gw: &Gateway,
    header_timeout: Duration,
    idle_timeout: Duration,
    stop: CancellationToken,
) {
    let started = Instant::now();
    let activity = Arc::new(AtomicU64::new(0));
    let io = TokioIo::new(Watched {
        inner: stream,
        started,
        activity: activity.clone(),
    });
    let service = WithPeer { app, peer };
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(io, service)
        .with_upgrades();
    tokio::pin!(conn);
    let count = |reason: &str| gw.metrics.refused.with_label_values(&[reason]).inc();
    let mut stopping = false;
    loop {
        let last = started + Duration::from_millis(activity.load(Ordering::Relaxed));
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    if e.is_timeout() {
                        count("http_header_timeout");
                        tracing::debug!(%peer, "http connection closed: header not received in time");
                    } else {
                        tracing::debug!(%peer, error = %e, "http connection ended");
                    }
                }
                return;
            }
            _ = tokio::time::sleep_until((last + idle_timeout).into()) => {
                let now = started + Duration::from_millis(activity.load(Ordering::Relaxed));
                if now == last {
                    count("http_idle_timeout");
                    tracing::debug!(%peer, "http connection closed: idle");
                    return;
                }
            }
            _ = stop.cancelled(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// The router with the client's socket address in each request (for `ConnectInfo`).
#[derive(Clone)]
struct WithPeer {
    app: Router,
    peer: SocketAddr,
}

impl hyper::service::Service<hyper::Request<Incoming>> for WithPeer {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = axum::routing::future::RouteFuture<std::convert::Infallible>;

    fn call(&self, mut request: hyper::Request<Incoming>) -> Self::Future {
        request.extensions_mut().insert(ConnectInfo(self.peer));
        self.app.clone().call(request)
    }
}

/// A socket that records when a byte last moved (ms since `started`), for the idle timeout.
pub(crate) struct Watched {
    inner: TcpStream,
    started: Instant,
    activity: Arc<AtomicU64>,
}

impl Watched {
    /// The socket, once the connection is no longer HTTP's (upgraded).
    pub(crate) fn into_inner(self) -> TcpStream {
        self.inner
    }

    fn touch(&self) {
        self.activity
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
