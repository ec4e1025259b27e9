//! The market registry on the embedded default: `/api/markets` round trip and its refusals,
//! and the demo feed following it (a market added trades at once, a deleted one stops).

mod common;

use common::{Client, start};
use std::net::SocketAddr;
use std::time::Duration;
use stompgate::stomp::Command;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP request (status, body).
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn registry_round_trip_and_refusals() {
    let server = start(&[
        "--demo-rate",
        "0",
        "--demo-markets",
        "KRW-BTC",
        "--admin-token",
        "s3cret",
    ])
    .await;
    let a = server.addr;
    let (status, body) = http(a, "GET", "/api/markets", None, "").await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        r#"[{"exchange":"bithumb","symbol":"KRW-BTC"},{"exchange":"upbit","symbol":"KRW-BTC"}]"#
    );
    let sol = r#"{"exchange":"upbit","symbol":"KRW-SOL"}"#;
    let (status, body) = http(a, "POST", "/api/markets", None, sol).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("Authorization: Bearer"), "{body}");
    let (status, body) = http(a, "POST", "/api/markets", Some("wrong"), sol).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("--admin-token"), "{body}");
    assert_eq!(
        http(a, "POST", "/api/markets", Some("s3cret"), sol).await,
        (201, sol.into())
    );
    assert_eq!(
        http(a, "POST", "/api/markets", Some("s3cret"), sol).await,
        (200, sol.into())
    );
    let (status, body) = http(
        a,
        "POST",
        "/api/markets",
        Some("s3cret"),
        r#"{"exchange":"ftx","symbol":"KRW-SOL"}"#,
    )
    .await;
    assert_eq!(status, 400);
    assert!(body.contains("upbit, bithumb"), "{body}");
    let (status, body) = http(
        a,
        "POST",
        "/api/markets",
        Some("s3cret"),
        r#"{"exchange":"upbit","symbol":"sol"}"#,
    )
    .await;
    assert_eq!(status, 400);
    assert!(body.contains("malformed symbol 'sol'"), "{body}");
    let (status, _) = http(a, "DELETE", "/api/markets/upbit/KRW-SOL", None, "").await;
    assert_eq!(status, 401);
    let (status, body) = http(
        a,
        "DELETE",
        "/api/markets/upbit/KRW-SOL",
        Some("s3cret"),
        "",
    )
    .await;
    assert_eq!((status, body.as_str()), (204, ""));
    let (_, body) = http(a, "GET", "/api/markets", None, "").await;
    assert!(!body.contains("KRW-SOL"), "{body}");
    let (_, metrics) = common::http_get(a, "/metrics").await;
    assert_eq!(
        common::metric(
            &metrics,
            "stompgate_api_refusals_total{reason=\"markets_unauthorized\"}"
        ),
        2.0
    );
    server.shutdown().await;
}

#[tokio::test]
async fn the_demo_feed_follows_the_registry() {
    let server = start(&[
        "--demo-rate",
        "50",
        "--demo-markets",
        "KRW-BTC",
        "--admin-token",
        "s3cret",
    ])
    .await;
    let a = server.addr;
    let mut c = Client::connect(a, "watcher").await;
    c.send("SUBSCRIBE\nid:0\ndestination:/topic/market/KRW-SOL\n\n\0")
        .await;
    assert!(
        c.quiet_for(Duration::from_millis(500)).await,
        "not registered: no trades"
    );
    let (status, _) = http(
        a,
        "POST",
        "/api/markets",
        Some("s3cret"),
        r#"{"exchange":"bithumb","symbol":"KRW-SOL"}"#,
    )
    .await;
    assert_eq!(status, 201);
    for _ in 0..10 {
        let m = c.expect(Command::Message).await;
        let v: serde_json::Value = serde_json::from_slice(&m.body).unwrap();
        assert_eq!(v["market"], "KRW-SOL");
        assert_eq!(
            v["exchange"], "bithumb",
            "only on the exchange it is registered on"
        );
    }
    let (status, _) = http(
        a,
        "DELETE",
        "/api/markets/bithumb/KRW-SOL",
        Some("s3cret"),
        "",
    )
    .await;
    assert_eq!(status, 204);
    // What was queued before the delete may still arrive; then nothing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut quiet = false;
    for _ in 0..5 {
        if c.quiet_for(Duration::from_millis(500)).await {
            quiet = true;
            break;
        }
    }
    assert!(
        quiet && c.quiet_for(Duration::from_secs(1)).await,
        "trades after the delete"
    );
    server.shutdown().await;
}

#[test]
fn live_feed_is_for_the_embedded_default() {
    use stompgate::config::Config;
    let c = Config::load(["stompgate", "--live-feed", "--kafka-brokers", "k:9092"]).unwrap();
    let e = c.validate().unwrap_err();
    assert!(e.contains("stompgate feed"), "{e}");
    let c = Config::load(["stompgate", "--live-feed"]).unwrap();
    c.validate().unwrap();
    assert_eq!(c.exchanges.upbit_url, "wss://api.upbit.com/websocket/v1");
}
