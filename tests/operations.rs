//! Operations: metrics move as traffic flows, and SIGTERM shuts the binary down in order
//! (not ready → ERROR to clients → exit 0 within the deadline).

mod common;

use common::{Client, http_get, metric, start};
use std::io::{BufRead, BufReader};
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};
use stompgate::stomp::Command;

#[tokio::test]
async fn metrics_move_with_traffic() {
    let server = start(&["--demo-rate", "100"]).await;
    let addr = server.addr;
    let (status, before) = http_get(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(metric(&before, "stompgate_connections "), 0.0);
    let mut c = Client::connect(addr, "m").await;
    c.send("SUBSCRIBE\nid:0\ndestination:/topic/market/*\n\n\0")
        .await;
    for _ in 0..20 {
        c.expect(Command::Message).await;
    }
    c.send("SEND\ndestination:/app/market/KRW-BTC/chat\nreceipt:r\n\n{\"text\":\"hi\"}\0")
        .await;
    c.expect_skipping_messages(Command::Receipt).await;
    let (_, during) = http_get(addr, "/metrics").await;
    assert_eq!(metric(&during, "stompgate_connections "), 1.0);
    assert_eq!(metric(&during, "stompgate_sessions{version=\"1.2\"}"), 1.0);
    assert_eq!(metric(&during, "stompgate_subscriptions "), 1.0);
    assert_eq!(metric(&during, "stompgate_sends_total{result=\"ok\"}"), 1.0);
    for name in [
        "stompgate_publications_in_total{source=\"local\"}",
        "stompgate_messages_out_total",
        "stompgate_bytes_out_total",
        "stompgate_writes_total",
        "stompgate_delivery_delay_seconds_count",
    ] {
        assert!(
            metric(&during, name) > metric(&before, name),
            "{name} did not move:\n{during}"
        );
    }
    assert!(metric(&during, "stompgate_messages_out_total") >= 20.0);
    c.send("DISCONNECT\n\n\0").await;
    c.closed().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, after) = http_get(addr, "/metrics").await;
    assert_eq!(metric(&after, "stompgate_connections "), 0.0);
    assert_eq!(metric(&after, "stompgate_subscriptions "), 0.0);
    assert_eq!(
        metric(
            &after,
            "stompgate_disconnects_total{reason=\"client_disconnect\"}"
        ),
        1.0
    );
    server.shutdown().await;
}

/// A client that gets a message now and then (far apart: not streaming) has each one in
/// the delivery-delay histogram as soon as it is written, not a second or two later.
#[tokio::test]
async fn a_delivery_far_from_the_last_is_counted_at_once() {
    let server = start(&["--demo-rate", "0"]).await;
    let addr = server.addr;
    let mut sub = Client::connect(addr, "sub").await;
    sub.send("SUBSCRIBE\nid:0\ndestination:/topic/market/KRW-ETH\nreceipt:s\n\n\0")
        .await;
    sub.expect(Command::Receipt).await;
    let mut publisher = Client::connect(addr, "pub").await;
    let count = || async {
        let (_, text) = http_get(addr, "/metrics").await;
        metric(&text, "stompgate_delivery_delay_seconds_count")
    };
    for n in 1..=3 {
        publisher
            .send(&format!(
                "SEND\ndestination:/app/market/KRW-ETH/chat\n\n{{\"text\":\"{n}\"}}\0"
            ))
            .await;
        sub.expect(Command::Message).await;
        // The write is counted before the next poll of the session: give it a moment, far
        // less than the second that batches the counts of a streaming session.
        let deadline = Instant::now() + Duration::from_millis(200);
        while count().await < n as f64 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            count().await,
            n as f64,
            "delivery {n} not counted within 200 ms"
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_order_and_exits_zero() {
    let mut child = Process::new(env!("CARGO_BIN_EXE_stompgate"))
        .args([
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
            "--demo-rate",
            "50",
            "--drain-delay-ms",
            "1500",
            "--shutdown-grace-ms",
            "3000",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the stompgate binary starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no listening line: {line:?}"));
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut clients = Vec::new();
    for i in 0..3 {
        let mut c = Client::connect(addr, &format!("c{i}")).await;
        c.send("SUBSCRIBE\nid:0\ndestination:/topic/market/*\n\n\0")
            .await;
        c.expect(Command::Message).await;
        clients.push(c);
    }
    assert_eq!(http_get(addr, "/readyz").await.0, 200);

    let signalled = Instant::now();
    let killed = Process::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    // 1. Not ready, while clients are still being served.
    let mut not_ready = None;
    while signalled.elapsed() < Duration::from_secs(1) {
        if http_get(addr, "/readyz").await.0 == 503 {
            not_ready = Some(signalled.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let not_ready = not_ready.expect("/readyz turned 503 right after SIGTERM");
    clients[0].expect(Command::Message).await;
    // 2. Every client then gets ERROR "server shutting down" and a going-away close.
    for c in &mut clients {
        let e = c.expect_skipping_messages(Command::Error).await;
        assert_eq!(e.header("message"), Some("server shutting down"));
        assert!(signalled.elapsed() > not_ready);
        assert_eq!(c.closed().await, Some(1001));
    }
    // 3. Exit 0 within the deadline (drain delay + grace + a margin).
    let deadline = Instant::now() + Duration::from_secs(8);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "no exit within the deadline");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status}");
}
