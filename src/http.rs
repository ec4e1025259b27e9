//! The HTTP face of the gateway: `/ws` (STOMP over WebSocket), `/healthz`, `/readyz`,
//! `/metrics`, `/api/stats` and the dashboard files.

use crate::disconnect::Disconnect;
use crate::gateway::Gateway;
use crate::session::Session;
use crate::stomp::Version;
use crate::transport::Transport;
use axum::Router;
use axum::body::Body;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use rust_embed::RustEmbed;
use std::net::SocketAddr;
use std::sync::Arc;

/// The dashboard, built into the binary so it is served from any working directory.
#[derive(RustEmbed)]
#[folder = "static/"]
struct StaticFiles;

pub fn router(gw: Arc<Gateway>) -> Router {
    let router = Router::new()
        .route("/ws", get(websocket))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/stats", get(stats))
        .merge(crate::markets_api::routes());
    let router = match &gw.config.static_dir {
        Some(dir) => router.fallback_service(tower_http::services::ServeDir::new(dir)),
        None => router.fallback(embedded),
    };
    router.with_state(gw)
}

async fn websocket(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
    ws: WebSocketUpgrade,
) -> Response {
    if gw.draining() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "server shutting down; reconnect to another replica\n",
        )
            .into_response();
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let origin = header("origin");
    if !crate::origin::allowed(origin, header("host"), &gw.config.allowed_origins) {
        gw.metrics.errors.with_label_values(&["origin"]).inc();
        tracing::info!(%peer, origin, "websocket refused: origin not allowed");
        return (
            StatusCode::FORBIDDEN,
            format!(
                "origin {} is not allowed to open a WebSocket here; add it to --allowed-origins\n",
                origin.unwrap_or_default()
            ),
        )
            .into_response();
    }
    let client_ip = match (gw.config.trust_forwarded_for, header("x-forwarded-for")) {
        (true, Some(xff)) => xff
            .split(',')
            .next()
            .and_then(|ip| ip.trim().parse().ok())
            .unwrap_or(peer.ip()),
        _ => peer.ip(),
    };
    let token = header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::to_string)
        .or_else(|| query_param(uri.query(), "access_token"));
    let ip_slot = gw.per_ip.acquire(client_ip);
    let permit = gw.connections.clone().try_acquire_owned().ok();
    let max_message = gw.config.max_body_bytes * 2 + 64 * 1024;
    // A 1 KiB read buffer (tungstenite's default is 128 KiB): clients send little, and it
    // grows to fit a larger message when one comes. 10.0 -> 7.0 KB RSS per idle connection
    // at 19,000 connections (loadgen --mode idle).
    ws.protocols(Version::ALL.iter().rev().map(|v| v.subprotocol()))
        .read_buffer_size(1024)
        .write_buffer_size(0)
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .on_upgrade(move |socket| async move {
            let transport = Transport::websocket(socket);
            let Some(ip_slot) = ip_slot else {
                crate::server::refuse(gw, transport, Disconnect::TooManyFromAddress).await;
                return;
            };
            let Some(permit) = permit else {
                crate::server::refuse(gw, transport, Disconnect::ServerFull).await;
                return;
            };
            let peer = SocketAddr::new(client_ip, peer.port());
            let session = Session::new(gw.sessions_cx.clone(), peer, token);
            gw.sessions.track_future(session.run(transport)).await;
            drop((permit, ip_slot));
        })
}

/// The value of `name` in a URL query string (percent-decoding `%XX` and `+`).
fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn readyz(State(gw): State<Arc<Gateway>>) -> Response {
    if gw.serving() {
        (StatusCode::OK, "ready\n").into_response()
    } else if gw.draining() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: shutting down\n",
        )
            .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: the {} bus is not connected; check the brokers in --kafka-brokers\n",
                gw.bus.name()
            ),
        )
            .into_response()
    }
}

async fn metrics(State(gw): State<Arc<Gateway>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        gw.metrics.render(),
    )
        .into_response()
}

async fn stats(State(gw): State<Arc<Gateway>>) -> Json<serde_json::Value> {
    let m = &gw.metrics;
    let publications: u64 = ["kafka", "local"]
        .iter()
        .map(|s| m.publications_in.with_label_values(&[s]).get())
        .sum();
    Json(serde_json::json!({
        "connections": m.connections.get(),
        "subscriptions": m.subscriptions.get(),
        "messages_out": m.messages_out.get(),
        "publications_in": publications,
        "bus": gw.bus.name(),
        "ready": gw.serving(),
        "group_id": gw.bus.group_id(),
        "uptime_s": gw.uptime().as_secs(),
    }))
}

async fn embedded(uri: Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    match StaticFiles::get(path) {
        Some(file) => Response::builder()
            .header(header::CONTENT_TYPE, file.metadata.mimetype())
            .header(header::CACHE_CONTROL, "no-cache")
            .body(Body::from(file.data.into_owned()))
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()),
        None => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters() {
        assert_eq!(
            query_param(Some("a=1&access_token=x.y%2Dz&b"), "access_token").as_deref(),
            Some("x.y-z")
        );
        assert_eq!(query_param(Some("a=1"), "access_token"), None);
        assert_eq!(query_param(None, "access_token"), None);
        assert_eq!(percent_decode("%E2%82%AC+%zz%"), "\u{20ac} %zz%");
    }
}
