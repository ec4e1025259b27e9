//! The HTTP face of the gateway: `/ws` (STOMP over WebSocket), `/healthz`, `/readyz`,
//! `/metrics`, `/api/stats`, the market registry and the dashboard files. With
//! `--internal-port`, `/metrics`, `/api/stats` and the registry's changes move to a router
//! of their own on that port (the public one keeps `GET /api/markets`).

use crate::admission::Refusal;
use crate::gateway::Gateway;
use crate::handshake::Handshake;
use crate::session::Session;
use crate::stomp::Version;
use crate::transport::{PingLimit, Transport};
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use rust_embed::RustEmbed;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tower_service::Service;

/// The initial read buffer of a WebSocket, in bytes.
const READ_BUFFER_BYTES: usize = 256;

/// The dashboard, built into the binary so it is served from any working directory.
#[derive(RustEmbed)]
#[folder = "static/"]
struct StaticFiles;

/// The public routes. With `--internal-port` the operator routes (`/metrics`,
/// `/api/stats`, registry changes) are left out: they are served by [`internal_router`].
pub fn router(gw: Arc<Gateway>) -> Router {
    let router = Router::new()
        .route("/ws", get(websocket))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz));
    let router = if gw.config.internal_port.is_none() {
        operator_routes(router).merge(crate::markets_api::routes())
    } else {
        router.merge(crate::markets_api::read_only_routes())
    };
    let router = match &gw.config.static_dir {
        Some(_) => router.fallback(static_dir),
        None => router.fallback(embedded),
    };
    router.with_state(gw)
}

/// The routes of `--internal-port`: metrics, stats, health and the market registry's
/// changes, nothing clients use.
pub fn internal_router(gw: Arc<Gateway>) -> Router {
    operator_routes(Router::new())
        .merge(crate::markets_api::routes())
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .with_state(gw)
}

fn operator_routes(router: Router<Arc<Gateway>>) -> Router<Arc<Gateway>> {
    router
        .route("/metrics", get(metrics))
        .route("/api/stats", get(stats))
}

fn refusal(r: Refusal) -> Response {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::FORBIDDEN);
    let mut response = (status, r.message).into_response();
    if status == StatusCode::TOO_MANY_REQUESTS {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    response
}

async fn websocket(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request,
) -> Response {
    if gw.draining() {
        gw.metrics
            .refused
            .with_label_values(&["shutting_down"])
            .inc();
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "server shutting down; reconnect to another replica\n",
        )
            .into_response();
    }
    let protocols: Vec<&'static str> = Version::ALL.iter().rev().map(|v| v.subprotocol()).collect();
    let handshake = match Handshake::check(&mut req, &protocols) {
        Ok(h) => h,
        Err(refused) => {
            // Not a WebSocket handshake (a plain GET, a wrong version, no key): counted like
            // every other refusal at the edge, the answer says what was wrong.
            gw.metrics
                .refused
                .with_label_values(&["bad_handshake"])
                .inc();
            tracing::debug!(%peer, status = %refused.status, why = refused.why, "websocket handshake refused");
            return refused.into_response();
        }
    };
    let (headers, uri) = (req.headers(), req.uri());
    let admission = gw.admission.clone();
    let client_ip = admission.client_ip(peer.ip(), headers);
    if let Err(r) = admission.check_origin(headers) {
        tracing::info!(%client_ip, reason = r.reason, "websocket refused: origin not allowed");
        return refusal(r);
    }
    if let Err(r) = admission.check_rate(client_ip) {
        tracing::info!(%client_ip, reason = r.reason, "websocket refused: connection rate");
        return refusal(r);
    }
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::to_string)
        .or_else(|| query_param(uri.query(), "access_token"));
    let ticket = admission.admit(client_ip);
    let max_message = gw.config.max_body_bytes * 2 + 64 * 1024;
    let pings = PingLimit::new(
        gw.config.max_pings_per_second,
        gw.metrics.refused.with_label_values(&["ping_flood"]),
    );
    // A 256 B read buffer (tungstenite's default is 128 KiB): clients send little, and it
    // grows to fit a larger message when one comes (it also caps one read syscall, so a
    // 64 KiB SEND takes ~256 reads: fine for clients that mostly receive). 1 KiB -> 256 B,
    // with the session as its own task and cold state on first use: 8.1 -> 4.0 KB RSS per
    // idle connection at 19,000 (loadgen --mode idle). The write buffer is bounded:
    // pongs and replies to a client that does not read stop there (tungstenite's default
    // is unbounded).
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_write_buffer_size(gw.config.ws_max_write_buffer_bytes)
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message));
    handshake.accept(config, move |socket| async move {
        let transport = Transport::websocket_limited(socket, pings, gw.config.frame_limits());
        let ticket = match ticket {
            Ok(t) => t,
            Err(reason) => {
                tracing::info!(%client_ip, %reason, "websocket refused");
                admission.refuse(transport, reason).await;
                return;
            }
        };
        let peer = SocketAddr::new(client_ip, peer.port());
        let session = Session::new(gw.sessions_cx.clone(), peer, token);
        // A task of its own, so the upgrade task ends here and frees what it held:
        // awaited inside it, the session lived beside the upgrade's own state for the
        // whole connection (~3 KB more per idle connection).
        let run = Box::pin(session.run(transport));
        gw.sessions.spawn(async move {
            run.await;
            drop(ticket);
        });
    })
}

/// The value of `name` in a URL query string (`application/x-www-form-urlencoded`).
fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
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

/// `--static-dir`: files under the folder only. Dotfiles (`.env`, `.git/`) are never
/// served, and a path whose real location (symbolic links resolved) is outside the folder
/// is not found.
async fn static_dir(State(gw): State<Arc<Gateway>>, request: Request) -> Response {
    let not_found = || (StatusCode::NOT_FOUND, "not found\n").into_response();
    let Some(dir) = gw.config.static_dir.clone() else {
        return not_found();
    };
    let Ok(path) = percent_encoding::percent_decode_str(request.uri().path()).decode_utf8() else {
        return not_found();
    };
    let segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if segments
        .iter()
        .any(|s| s.starts_with('.') || s.contains('\\') || s.contains('\0'))
    {
        return not_found();
    }
    let inside = tokio::task::spawn_blocking(move || {
        let root = std::fs::canonicalize(&dir).ok()?;
        let mut target = root.clone();
        target.extend(&segments);
        let real = std::fs::canonicalize(&target).ok()?;
        let real = if real.is_dir() {
            std::fs::canonicalize(real.join("index.html")).ok()?
        } else {
            real
        };
        real.starts_with(&root).then_some(())
    })
    .await
    .ok()
    .flatten();
    if inside.is_none() {
        return not_found();
    }
    match tower_http::services::ServeDir::new(gw.config.static_dir.as_ref().expect("checked"))
        .call(request)
        .await
    {
        Ok(response) => response.into_response(),
        Err(never) => match never {},
    }
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
        assert_eq!(
            query_param(Some("access_token=%E2%82%AC+%zz%"), "access_token").as_deref(),
            Some("\u{20ac} %zz%")
        );
        assert_eq!(
            query_param(Some("access%5Ftoken=t"), "access_token").as_deref(),
            Some("t")
        );
    }
}
