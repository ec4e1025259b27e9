//! Starting and stopping the gateway: listeners (HTTP/WebSocket, optional raw TCP STOMP)
//! and the graceful shutdown order: not ready → refuse new connections → sessions get
//! ERROR "server shutting down" and drain → exit within the deadline.

use crate::config::Config;
use crate::disconnect::Disconnect;
use crate::gateway::Gateway;
use crate::session::Session;
use crate::stomp::{Frame, Version, encode_frame};
use crate::transport::Transport;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub struct Server {
    /// The HTTP/WebSocket address actually bound.
    pub addr: SocketAddr,
    /// The raw TCP STOMP address, when enabled.
    pub tcp_addr: Option<SocketAddr>,
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

        let app = crate::http::router(gateway.clone());
        let stop = accept_stop.clone();
        let http = tokio::spawn(async move {
            let service = app.into_make_service_with_connect_info::<SocketAddr>();
            if let Err(e) = axum::serve(listener, service)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
            {
                tracing::error!(error = %e, "http server failed");
            }
        });
        tracing::info!(%addr, ?tcp_addr, bus = gateway.bus.name(), "stompgate listening");
        Ok(Server {
            addr,
            tcp_addr,
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
        let ip_slot = gw.per_ip.acquire(peer.ip());
        let permit = gw.connections.clone().try_acquire_owned();
        let gw2 = gw.clone();
        gw.sessions.spawn(async move {
            let transport = Transport::Tcp(stream);
            let Some(ip_slot) = ip_slot else {
                refuse(gw2, transport, Disconnect::TooManyFromAddress).await;
                return;
            };
            let Ok(permit) = permit else {
                refuse(gw2, transport, Disconnect::ServerFull).await;
                return;
            };
            Session::new(gw2.sessions_cx.clone(), peer, None)
                .run(transport)
                .await;
            drop((permit, ip_slot));
        });
    }
}

/// Refuses a connection over a limit (`ServerFull`, `TooManyFromAddress`) with a clear
/// ERROR, then closes it.
pub async fn refuse(gw: Arc<Gateway>, mut transport: Transport, reason: Disconnect) {
    gw.metrics
        .disconnects
        .with_label_values(&[reason.label()])
        .inc();
    gw.metrics.errors.with_label_values(&[reason.label()]).inc();
    let (message, detail) = reason.error_text().unwrap_or_default();
    let limit = match reason {
        Disconnect::TooManyFromAddress => gw.config.max_connections_per_ip,
        _ => gw.config.max_connections,
    };
    let detail = format!("{detail} (limit: {limit} connections)");
    let mut out = Vec::new();
    encode_frame(&Frame::error(message, &detail), Version::V1_2, &mut out);
    let _ = tokio::time::timeout(Duration::from_secs(1), transport.send(vec![out])).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), transport.close(reason)).await;
}
