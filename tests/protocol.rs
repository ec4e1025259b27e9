//! STOMP over WebSocket against a real gateway on 127.0.0.1:0, with exact bytes.

mod common;

use common::{Client, Event, http_get, metric, start};
use std::time::Duration;
use stompgate::stomp::Command;

const FAST: &[&str] = &["--demo-rate", "200"];

#[tokio::test]
async fn subscribers_receive_demo_trades_with_all_headers() {
    let server = start(FAST).await;
    let mut c = Client::connect(server.addr, "alice").await;
    c.send("SUBSCRIBE\nid:sub-1\ndestination:/topic/market/KRW-BTC\n\n\0")
        .await;
    let m = c.expect(Command::Message).await;
    assert_eq!(m.header("destination"), Some("/topic/market/KRW-BTC"));
    assert_eq!(m.header("subscription"), Some("sub-1"));
    assert_eq!(m.header("content-type"), Some("application/json"));
    assert_eq!(m.header("event-type"), Some("trade"));
    assert!(m.header("message-id").unwrap().starts_with("trades-0-"));
    assert!(m.header("timestamp").unwrap().parse::<i64>().unwrap() > 0);
    let trade: serde_json::Value = serde_json::from_slice(&m.body).unwrap();
    assert_eq!(trade["market"], "KRW-BTC");
    assert!(trade["price"].as_str().unwrap().parse::<f64>().unwrap() > 0.0);
    server.shutdown().await;
}

#[tokio::test]
async fn a_plain_request_to_the_websocket_path_is_told_what_to_send() {
    let server = start(&[]).await;
    let (status, body) = http_get(server.addr, "/ws").await;
    assert_eq!(status, 426, "{body}");
    assert!(body.contains("'Upgrade: websocket'"), "{body}");
    server.shutdown().await;
}

/// Pongs go out through the WebSocket layer while MESSAGE frames are written straight to the
/// socket: both arrive whole, in between each other, while trades stream.
#[tokio::test]
async fn pings_are_answered_between_streamed_messages() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let server = start(FAST).await;
    let mut c = Client::connect(server.addr, "pinger").await;
    c.send("SUBSCRIBE\nid:s\ndestination:/topic/market/*\n\n\0")
        .await;
    c.expect(Command::Message).await;
    let mut pongs = Vec::new();
    let mut messages = 0;
    for i in 0..5u8 {
        c.ws.send(Message::Ping(vec![b'p', i].into()))
            .await
            .unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while pongs.len() < 5 || messages < 20 {
        let next = tokio::time::timeout_at(deadline, c.ws.next()).await;
        match next
            .expect("5 pongs and 20 messages within 5 s")
            .unwrap()
            .unwrap()
        {
            Message::Pong(p) => pongs.push(p.to_vec()),
            Message::Text(t) => {
                // Every data message is whole STOMP frames (a heart-beat or MESSAGEs).
                for frame in t.as_str().split_terminator('\0') {
                    let frame = frame.trim_start_matches('\n');
                    if !frame.is_empty() {
                        assert!(frame.starts_with("MESSAGE\n"), "{frame:?}");
                        messages += 1;
                    }
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let want: Vec<Vec<u8>> = (0..5u8).map(|i| vec![b'p', i]).collect();
    assert_eq!(pongs, want);
    server.shutdown().await;
}

/// A chat SEND is fanned out by the sender's session, which writes each copy to an idle
/// subscriber's socket itself while it keeps up: the pongs the subscriber asks for go out
/// between those copies, every frame arrives whole and in order, and the metrics count them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_a_publisher_writes_itself_arrive_whole_in_order_between_pongs() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    const N: usize = 300;
    let server = start(&[
        "--demo-rate",
        "0",
        "--max-pings-per-second",
        "1000",
        "--send-rate",
        "0",
    ])
    .await;
    let mut bob = Client::connect(server.addr, "bob").await;
    bob.send("SUBSCRIBE\nid:0\ndestination:/topic/market/KRW-ETH\nreceipt:s\n\n\0")
        .await;
    bob.expect(Command::Receipt).await;
    let mut alice = Client::connect(server.addr, "alice").await;
    let sender = tokio::spawn(async move {
        for i in 0..N {
            alice
                .send(&format!(
                    "SEND\ndestination:/app/market/KRW-ETH/chat\ncontent-type:application/json\n\n{{\"text\":\"m{i}\"}}\0"
                ))
                .await;
            // Paced, so that the sender's session keeps up with it.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        alice
    });
    let (mut got, mut pings, mut pongs) = (0, 0u8, 0u8);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while got < N || pongs < pings {
        if got >= usize::from(pings) * 10 && pings < 25 {
            bob.ws
                .send(Message::Ping(vec![pings].into()))
                .await
                .unwrap();
            pings += 1;
        }
        let next = tokio::time::timeout_at(deadline, bob.ws.next()).await;
        match next
            .expect("every copy and every pong within 20 s")
            .unwrap()
            .unwrap()
        {
            Message::Pong(p) => {
                assert_eq!(p.to_vec(), vec![pongs], "pongs in order");
                pongs += 1;
            }
            Message::Text(t) => {
                for frame in t.as_str().split_terminator('\0') {
                    let frame = frame.trim_start_matches('\n');
                    if frame.is_empty() {
                        continue;
                    }
                    assert!(frame.starts_with("MESSAGE\nsubscription:0\n"), "{frame:?}");
                    let body = frame.split_once("\n\n").expect("a body").1;
                    let v: serde_json::Value = serde_json::from_str(body).unwrap();
                    assert_eq!(v["text"], format!("m{got}"), "copies in order");
                    got += 1;
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    sender.await.unwrap();
    let (_, text) = http_get(server.addr, "/metrics").await;
    let direct = metric(&text, "stompgate_direct_writes_total");
    println!("{N} copies, {pings} pings: {direct} copies written by the publisher");
    assert!(direct > 0.0, "no copy was written by the publisher");
    assert!(metric(&text, "stompgate_messages_out_total") >= N as f64);
    assert!(metric(&text, "stompgate_bytes_out_total") >= direct * 100.0);
    server.shutdown().await;
}

#[tokio::test]
async fn subprotocols_are_negotiated() {
    let server = start(&[]).await;
    for (offered, chosen) in [
        (vec!["v10.stomp"], Some("v10.stomp")),
        (vec!["v11.stomp", "v12.stomp"], Some("v12.stomp")),
        (vec!["v11.stomp"], Some("v11.stomp")),
        (vec!["v12.stomp"], Some("v12.stomp")),
        (vec![], None),
    ] {
        let mut c = Client::open(server.addr, &offered).await;
        assert_eq!(c.protocol.as_deref(), chosen, "offered {offered:?}");
        c.send("CONNECT\naccept-version:1.0,1.1,1.2\nhost:x\n\n\0")
            .await;
        let f = c.expect(Command::Connected).await;
        assert_eq!(f.header("version"), Some("1.2"));
        assert!(f.header("session").is_some());
        assert!(f.header("server").unwrap().starts_with("stompgate/"));
        assert!(f.header("heart-beat").is_some());
    }
    server.shutdown().await;
}

#[tokio::test]
async fn versions_1_0_and_1_1_are_negotiated() {
    let server = start(&[]).await;
    let mut c = Client::open(server.addr, &[]).await;
    c.send("CONNECT\n\n\0").await;
    assert_eq!(
        c.expect(Command::Connected).await.header("version"),
        Some("1.0")
    );
    let mut c = Client::open(server.addr, &[]).await;
    c.send("STOMP\naccept-version:1.1\nhost:x\n\n\0").await;
    assert_eq!(
        c.expect(Command::Connected).await.header("version"),
        Some("1.1")
    );
    let mut c = Client::open(server.addr, &[]).await;
    c.send("CONNECT\naccept-version:2.0\nhost:x\n\n\0").await;
    let e = c.expect_error().await;
    assert_eq!(e.header("version"), Some("1.0,1.1,1.2"));
    server.shutdown().await;
}

#[tokio::test]
async fn wildcard_subscription_receives_every_market() {
    let server = start(FAST).await;
    let mut c = Client::connect(server.addr, "w").await;
    c.send("SUBSCRIBE\nid:all\ndestination:/topic/market/*\n\n\0")
        .await;
    let mut seen = std::collections::HashSet::new();
    while seen.len() < 3 {
        let m = c.expect(Command::Message).await;
        assert_eq!(m.header("subscription"), Some("all"));
        seen.insert(m.header("destination").unwrap().to_string());
    }
    assert!(seen.contains("/topic/market/KRW-ETH"));
    server.shutdown().await;
}

#[tokio::test]
async fn chat_is_broadcast_with_identity_stamped_and_receipt() {
    let server = start(&["--demo-rate", "0"]).await;
    let mut bob = Client::connect(server.addr, "bob").await;
    bob.send("SUBSCRIBE\nid:0\ndestination:/topic/market/KRW-ETH\nreceipt:s\n\n\0")
        .await;
    assert_eq!(
        bob.expect(Command::Receipt).await.header("receipt-id"),
        Some("s")
    );
    let mut alice = Client::connect(server.addr, "alice").await;
    alice
        .send("SEND\ndestination:/app/market/KRW-ETH/chat\nreceipt:r-1\ncontent-type:application/json\n\n{\"text\":\"gm\",\"user\":\"mallory\"}\0")
        .await;
    assert_eq!(
        alice.expect(Command::Receipt).await.header("receipt-id"),
        Some("r-1")
    );
    let m = bob.expect(Command::Message).await;
    assert_eq!(m.header("event-type"), Some("chat.send"));
    let v: serde_json::Value = serde_json::from_slice(&m.body).unwrap();
    assert_eq!(v["user"], "alice");
    assert_eq!(v["text"], "gm");
    assert_eq!(v["market"], "KRW-ETH");
    let id = v["id"].as_str().unwrap().to_string();

    // Nobody else may change Alice's message.
    let mut mallory = Client::connect(server.addr, "mallory").await;
    mallory
        .send(&format!(
            "SEND\ndestination:/app/market/KRW-ETH/chat\nevent-type:chat.delete\n\n{{\"id\":\"{id}\"}}\0"
        ))
        .await;
    let e = mallory.expect_error().await;
    assert_eq!(e.header("message"), Some("forbidden"));
    assert!(String::from_utf8_lossy(&e.body).contains("alice"));

    for (event, body) in [
        (
            "chat.modify",
            format!("{{\"id\":\"{id}\",\"text\":\"gn\"}}"),
        ),
        ("chat.delete", format!("{{\"id\":\"{id}\"}}")),
    ] {
        alice
            .send(&format!(
                "SEND\ndestination:/app/market/KRW-ETH/chat\nevent-type:{event}\n\n{body}\0"
            ))
            .await;
        let m = bob.expect(Command::Message).await;
        assert_eq!(m.header("event-type"), Some(event));
        let v: serde_json::Value = serde_json::from_slice(&m.body).unwrap();
        assert_eq!(v["id"], id.as_str());
    }
    server.shutdown().await;
}

#[tokio::test]
async fn transactions_apply_at_commit_and_never_on_abort() {
    let server = start(&["--demo-rate", "0"]).await;
    let mut sub = Client::connect(server.addr, "s").await;
    sub.send("SUBSCRIBE\nid:0\ndestination:/topic/market/M\nreceipt:s\n\n\0")
        .await;
    sub.expect(Command::Receipt).await;
    let mut c = Client::connect(server.addr, "t").await;
    c.send("BEGIN\ntransaction:tx1\n\n\0").await;
    c.send("SEND\ndestination:/app/market/M/chat\ntransaction:tx1\n\n{\"text\":\"aborted\"}\0")
        .await;
    c.send("ABORT\ntransaction:tx1\nreceipt:a\n\n\0").await;
    assert_eq!(
        c.expect(Command::Receipt).await.header("receipt-id"),
        Some("a")
    );
    c.send("BEGIN\ntransaction:tx2\n\n\0").await;
    c.send("SEND\ndestination:/app/market/M/chat\ntransaction:tx2\n\n{\"text\":\"one\"}\0")
        .await;
    c.send("SEND\ndestination:/app/market/M/chat\ntransaction:tx2\n\n{\"text\":\"two\"}\0")
        .await;
    assert!(
        sub.quiet_for(Duration::from_millis(300)).await,
        "delivered before COMMIT"
    );
    c.send("COMMIT\ntransaction:tx2\nreceipt:c\n\n\0").await;
    assert_eq!(
        c.expect(Command::Receipt).await.header("receipt-id"),
        Some("c")
    );
    for text in ["one", "two"] {
        let m = sub.expect(Command::Message).await;
        let v: serde_json::Value = serde_json::from_slice(&m.body).unwrap();
        assert_eq!(v["text"], text);
    }
    assert!(
        sub.quiet_for(Duration::from_millis(200)).await,
        "aborted SEND delivered"
    );
    c.send("COMMIT\ntransaction:tx2\n\n\0").await;
    let e = c.expect_error().await;
    assert_eq!(e.header("message"), Some("unknown transaction"));
    server.shutdown().await;
}

#[tokio::test]
async fn client_acks() {
    let server = start(FAST).await;
    let mut c = Client::connect(server.addr, "a").await;
    c.send("SUBSCRIBE\nid:0\ndestination:/topic/market/KRW-BTC\nack:client-individual\n\n\0")
        .await;
    let m1 = c.expect(Command::Message).await;
    let m2 = c.expect(Command::Message).await;
    let (a1, a2) = (m1.header("ack").unwrap(), m2.header("ack").unwrap());
    assert_ne!(a1, a2);
    c.send(&format!("ACK\nid:{a2}\nreceipt:k2\n\n\0")).await;
    assert_eq!(
        c.expect_skipping_messages(Command::Receipt)
            .await
            .header("receipt-id"),
        Some("k2")
    );
    c.send(&format!("NACK\nid:{a1}\nreceipt:k1\n\n\0")).await;
    assert_eq!(
        c.expect_skipping_messages(Command::Receipt)
            .await
            .header("receipt-id"),
        Some("k1")
    );
    // Acknowledging twice names no pending message.
    c.send(&format!("ACK\nid:{a1}\nreceipt:again\n\n\0")).await;
    let e = c.expect_error().await;
    assert_eq!(e.header("message"), Some("unknown message"));
    assert_eq!(e.header("receipt-id"), Some("again"));

    // Cumulative ACK in client mode, inside a transaction.
    let mut c = Client::connect(server.addr, "b").await;
    c.send("SUBSCRIBE\nid:0\ndestination:/topic/market/KRW-BTC\nack:client\n\n\0")
        .await;
    let first = c.expect(Command::Message).await;
    let _second = c.expect(Command::Message).await;
    let third = c.expect(Command::Message).await;
    c.send("BEGIN\ntransaction:t\n\n\0").await;
    c.send(&format!(
        "ACK\nid:{}\ntransaction:t\n\n\0",
        third.header("ack").unwrap()
    ))
    .await;
    c.send("COMMIT\ntransaction:t\nreceipt:done\n\n\0").await;
    c.expect_skipping_messages(Command::Receipt).await;
    c.send(&format!("ACK\nid:{}\n\n\0", first.header("ack").unwrap()))
        .await;
    assert_eq!(
        c.expect_error().await.header("message"),
        Some("unknown message")
    );
    server.shutdown().await;
}

#[tokio::test]
async fn frames_split_across_messages_and_batched_in_one() {
    let server = start(&["--demo-rate", "0"]).await;
    let mut c = Client::open(server.addr, &["v12.stomp"]).await;
    for part in ["CONN", "ECT\naccept-version:1.2\nhost:x\n", "\n\0"] {
        c.send(part).await;
    }
    c.expect(Command::Connected).await;
    c.send("SUBSCRIBE\nid:a\ndestination:/topic/market/X\nreceipt:1\n\n\0\n\nSUBSCRIBE\nid:b\ndestination:/topic/market/Y\nreceipt:2\n\n\0")
        .await;
    assert_eq!(
        c.expect(Command::Receipt).await.header("receipt-id"),
        Some("1")
    );
    assert_eq!(
        c.expect(Command::Receipt).await.header("receipt-id"),
        Some("2")
    );
    // A binary message with a content-length body holding NUL bytes.
    c.send_bytes(b"SEND\ndestination:/app/market/X/chat\ncontent-length:19\nreceipt:3\n\n{\"text\":\"a\\u0000b\"}\0")
        .await;
    let m = c.expect(Command::Message).await;
    let v: serde_json::Value = serde_json::from_slice(&m.body).unwrap();
    assert_eq!(v["text"], "a\0b");
    assert_eq!(
        c.expect(Command::Receipt).await.header("receipt-id"),
        Some("3")
    );
    server.shutdown().await;
}

#[tokio::test]
async fn bad_input_gets_an_error_and_other_clients_are_unaffected() {
    let server = start(&[
        "--demo-rate",
        "50",
        "--max-subscriptions",
        "2",
        "--max-body-bytes",
        "100",
        "--max-headers",
        "4",
    ])
    .await;
    let mut bystander = Client::connect(server.addr, "calm").await;
    bystander
        .send("SUBSCRIBE\nid:0\ndestination:/topic/market/*\n\n\0")
        .await;
    bystander.expect(Command::Message).await;

    let cases: Vec<(&str, &str, &str)> = vec![
        ("FOO\n\n\0", "malformed frame", "unknown command"),
        (
            "SUBSCRIBE\nid:0\ndestination:/queue/jobs\nreceipt:r\n\n\0",
            "unknown destination",
            "/queue/jobs",
        ),
        (
            "SEND\ndestination:/topic/market/KRW-BTC\n\n{}\0",
            "unknown destination",
            "/topic/market/KRW-BTC",
        ),
        (
            "SEND\ndestination:/app/market/X/chat\nevent-type:chat.shout\n\n{}\0",
            "invalid chat message",
            "chat.shout",
        ),
        (
            "SUBSCRIBE\ndestination:/topic/market/X\n\n\0",
            "missing header 'id'",
            "id",
        ),
        (
            "SUBSCRIBE\nid:1\ndestination:/topic/market/X\nack:sometimes\n\n\0",
            "invalid ack mode",
            "ack",
        ),
        ("UNSUBSCRIBE\nid:nope\n\n\0", "unknown subscription", "nope"),
        ("MESSAGE\n\n\0", "unexpected frame", "server frame"),
        (
            "SEND\na:1\nb:2\nc:3\nd:4\ne:5\n\n\0",
            "malformed frame",
            "more than 4 headers",
        ),
        ("SEND\na:\\t\n\n\0", "malformed frame", "invalid escape"),
    ];
    let big = format!(
        "SEND\ndestination:/app/market/X/chat\n\n{}\0",
        "x".repeat(200)
    );
    for (raw, message, detail) in
        cases
            .into_iter()
            .chain([(big.as_str(), "malformed frame", "exceeds the limit of 100")])
    {
        let mut c = Client::connect(server.addr, "bad").await;
        c.send(raw).await;
        let e = c.expect_error().await;
        assert_eq!(e.header("message"), Some(message), "for {raw:?}");
        let body = String::from_utf8_lossy(&e.body);
        assert!(body.contains(detail), "for {raw:?}: {body}");
    }
    // Frames before CONNECT.
    let mut c = Client::open(server.addr, &[]).await;
    c.send("SUBSCRIBE\nid:0\ndestination:/topic/market/X\n\n\0")
        .await;
    assert_eq!(
        c.expect_error().await.header("message"),
        Some("not connected")
    );
    // Subscription limit.
    let mut c = Client::connect(server.addr, "many").await;
    for i in 0..3 {
        c.send(&format!(
            "SUBSCRIBE\nid:{i}\ndestination:/topic/market/M{i}\n\n\0"
        ))
        .await;
    }
    assert_eq!(
        c.expect_error().await.header("message"),
        Some("too many subscriptions")
    );

    // The bystander kept receiving, and the errors were counted.
    bystander.expect(Command::Message).await;
    let (_, metrics) = http_get(server.addr, "/metrics").await;
    assert!(
        metric(&metrics, "stompgate_errors_total{reason=\"parse\"}") >= 4.0,
        "{metrics}"
    );
    assert!(
        metric(
            &metrics,
            "stompgate_errors_total{reason=\"bad_destination\"}"
        ) >= 2.0
    );
    server.shutdown().await;
}

#[tokio::test]
async fn heart_beats_both_ways() {
    let server = start(&["--demo-rate", "0", "--heartbeat-ms", "100"]).await;
    // The client wants beats every 100 ms and sends none itself.
    let mut c = Client::open(server.addr, &["v12.stomp"]).await;
    c.send("CONNECT\naccept-version:1.2\nhost:x\nheart-beat:0,100\n\n\0")
        .await;
    let f = c.expect(Command::Connected).await;
    assert_eq!(f.header("heart-beat"), Some("100,100"));
    let mut beats = 0;
    let start = tokio::time::Instant::now();
    while beats < 3 {
        match c.next().await {
            Event::Heartbeat => beats += 1,
            other => panic!("expected heart-beats, got {other:?}"),
        }
    }
    assert!(start.elapsed() < Duration::from_secs(3));
    // A client that promises beats every 100 ms and goes silent is closed.
    let mut silent = Client::open(server.addr, &["v12.stomp"]).await;
    silent
        .send("CONNECT\naccept-version:1.2\nhost:x\nheart-beat:100,0\n\n\0")
        .await;
    silent.expect(Command::Connected).await;
    let e = silent.expect_error().await;
    assert_eq!(e.header("message"), Some("heart-beat timeout"));
    server.shutdown().await;
}

#[tokio::test]
async fn disconnect_with_receipt_then_close() {
    let server = start(&["--demo-rate", "0"]).await;
    let mut c = Client::connect(server.addr, "d").await;
    c.send("SEND\ndestination:/app/market/X/chat\n\n{\"text\":\"bye\"}\0")
        .await;
    c.send("DISCONNECT\nreceipt:77\n\n\0").await;
    assert_eq!(
        c.expect(Command::Receipt).await.header("receipt-id"),
        Some("77")
    );
    assert_eq!(c.closed().await, Some(1000));
    server.shutdown().await;
}

#[tokio::test]
async fn connection_limit_answers_with_error() {
    let server = start(&["--demo-rate", "0", "--max-connections", "2"]).await;
    let _a = Client::connect(server.addr, "a").await;
    let _b = Client::connect(server.addr, "b").await;
    let mut c = Client::open(server.addr, &["v12.stomp"]).await;
    let e = c.expect_error().await;
    assert_eq!(e.header("message"), Some("server full"));
    assert!(String::from_utf8_lossy(&e.body).contains("limit: 2"));
    drop(_a);
    // A slot frees up once a client leaves.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _d = Client::connect(server.addr, "d").await;
    server.shutdown().await;
}

#[tokio::test]
async fn raw_tcp_stomp() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = start(&["--demo-rate", "200", "--tcp-port", "0"]).await;
    let mut s = tokio::net::TcpStream::connect(server.tcp_addr.unwrap())
        .await
        .unwrap();
    s.write_all(b"CONNECT\naccept-version:1.2\nhost:x\n\n\0SUBSCRIBE\nid:0\ndestination:/topic/market/KRW-XRP\n\n\0")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("destination:/topic/market/KRW-XRP") {
        let n = tokio::time::timeout(common::WAIT, s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"CONNECTED\n"));
    server.shutdown().await;
}

#[tokio::test]
async fn health_readiness_stats_and_dashboard() {
    let server = start(&[]).await;
    assert_eq!(http_get(server.addr, "/healthz").await.0, 200);
    assert_eq!(http_get(server.addr, "/readyz").await.0, 200);
    let (status, body) = http_get(server.addr, "/api/stats").await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["bus"], "local");
    let (status, page) = http_get(server.addr, "/").await;
    assert_eq!(status, 200);
    assert!(page.to_lowercase().contains("<!doctype html"));
    assert_eq!(http_get(server.addr, "/nope.txt").await.0, 404);
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_says_goodbye_with_going_away() {
    let server = start(&["--demo-rate", "20"]).await;
    let addr = server.addr;
    let mut c = Client::connect(addr, "s").await;
    c.send("SUBSCRIBE\nid:0\ndestination:/topic/market/*\n\n\0")
        .await;
    c.expect(Command::Message).await;
    let stop = tokio::spawn(server.shutdown());
    let e = c.expect_skipping_messages(Command::Error).await;
    assert_eq!(e.header("message"), Some("server shutting down"));
    assert_eq!(c.closed().await, Some(1001));
    stop.await.unwrap();
}
