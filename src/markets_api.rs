//! The market registry over REST, served by every replica: `GET /api/markets` lists,
//! `POST /api/markets` adds (201, or 200 if already there), `DELETE
//! /api/markets/<exchange>/<symbol>` removes (204). Changes need `Authorization: Bearer`
//! with the `--admin-token` or a JWT carrying `"admin": true`: 401 without, 403 wrong.

use crate::gateway::Gateway;
use crate::registry::{ACCEPTED, Market};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{delete, get};
use std::sync::Arc;
use std::time::Duration;

/// The whole registry API: reads and changes.
pub fn routes() -> Router<Arc<Gateway>> {
    Router::new()
        .route("/api/markets", get(list).post(add))
        .route("/api/markets/{exchange}/{symbol}", delete(remove))
}

/// The public port's share when `--internal-port` is set: the list, and a refusal that
/// says where changes go.
pub fn read_only_routes() -> Router<Arc<Gateway>> {
    Router::new()
        .route("/api/markets", get(list).post(internal_only))
        .route("/api/markets/{exchange}/{symbol}", delete(internal_only))
}

async fn internal_only(State(gw): State<Arc<Gateway>>) -> Response {
    refuse(
        &gw,
        StatusCode::NOT_FOUND,
        "internal_only",
        "registry changes are served on the internal port (--internal-port) only; \
         send them there"
            .into(),
    )
}

/// A refusal: counted by reason, with a JSON body that says why and what to do.
fn refuse(gw: &Gateway, status: StatusCode, reason: &str, message: String) -> Response {
    gw.metrics.api_refusals.with_label_values(&[reason]).inc();
    let mut response = (status, Json(serde_json::json!({ "error": message }))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            "Bearer".parse().expect("valid header"),
        );
    }
    response
}

/// Compares without leaking where two tokens differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// None when the request may change the registry, else the refusal.
fn refusal(gw: &Gateway, headers: &HeaderMap) -> Option<Response> {
    let how = "send Authorization: Bearer <token> with the gateway's --admin-token or a JWT with the claim \"admin\": true";
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Some(refuse(
            gw,
            StatusCode::UNAUTHORIZED,
            "markets_unauthorized",
            format!("changing markets needs an admin token: {how}"),
        ));
    };
    let Some(token) = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
    else {
        return Some(refuse(
            gw,
            StatusCode::UNAUTHORIZED,
            "markets_unauthorized",
            format!("the Authorization header is not 'Bearer <token>': {how}"),
        ));
    };
    if gw
        .config
        .admin_token
        .as_deref()
        .is_some_and(|admin| same(admin, token))
    {
        return None;
    }
    let forbidden = |message: String| {
        Some(refuse(
            gw,
            StatusCode::FORBIDDEN,
            "markets_forbidden",
            message,
        ))
    };
    match gw.sessions_cx.auth.admin_claim(token) {
        Some(Ok(true)) => None,
        Some(Ok(false)) => forbidden("the token is valid but has no \"admin\": true claim".into()),
        Some(Err(e)) if gw.config.admin_token.is_none() => forbidden(format!("{e}")),
        Some(Err(_)) => forbidden("the token is neither the --admin-token nor a valid admin JWT".into()),
        None if gw.config.admin_token.is_some() => {
            forbidden("the token is not the gateway's --admin-token".into())
        }
        None => forbidden(
            "this gateway accepts no admin credentials: start it with --admin-token (or --jwt-secret / --jwt-public-key for admin JWTs)".into(),
        ),
    }
}

async fn list(State(gw): State<Arc<Gateway>>) -> Response {
    if !gw.registry.wait_loaded(Duration::from_secs(5)).await {
        return refuse(
            &gw,
            StatusCode::SERVICE_UNAVAILABLE,
            "markets_unavailable",
            format!(
                "the market registry has not been read from Kafka topic '{}' yet; retry shortly",
                gw.config.markets_topic
            ),
        );
    }
    Json(gw.registry.list()).into_response()
}

#[derive(serde::Deserialize)]
struct NewMarket {
    exchange: String,
    symbol: String,
}

async fn add(State(gw): State<Arc<Gateway>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = refusal(&gw, &headers) {
        return r;
    }
    let new: NewMarket = match serde_json::from_slice(&body) {
        Ok(n) => n,
        Err(e) => {
            return refuse(
                &gw,
                StatusCode::BAD_REQUEST,
                "markets_bad_request",
                format!(
                    "the body must be JSON {{\"exchange\":\"upbit\",\"symbol\":\"KRW-BTC\"}} ({e}); {ACCEPTED}"
                ),
            );
        }
    };
    let market = match Market::new(&new.exchange, &new.symbol) {
        Ok(m) => m,
        Err(e) => return refuse(&gw, StatusCode::BAD_REQUEST, "markets_bad_request", e),
    };
    store(
        &gw,
        gw.registry.add(market.clone()).await.map(|created| {
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            (status, Json(market)).into_response()
        }),
    )
}

async fn remove(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    Path((exchange, symbol)): Path<(String, String)>,
) -> Response {
    if let Some(r) = refusal(&gw, &headers) {
        return r;
    }
    let market = match Market::new(&exchange, &symbol) {
        Ok(m) => m,
        Err(e) => return refuse(&gw, StatusCode::BAD_REQUEST, "markets_bad_request", e),
    };
    store(
        &gw,
        gw.registry
            .remove(&market)
            .await
            .map(|_| StatusCode::NO_CONTENT.into_response()),
    )
}

fn store(gw: &Gateway, result: Result<Response, crate::registry::StoreError>) -> Response {
    result.unwrap_or_else(|e| {
        refuse(
            gw,
            StatusCode::SERVICE_UNAVAILABLE,
            "markets_unavailable",
            e.to_string(),
        )
    })
}
