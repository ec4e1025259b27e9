//! History on the embedded default (the in-process bus keeps its own): `x-history` replays
//! recent demo trades and chat, `x-resume-after` continues after a cursor without a gap or
//! a duplicate, and the RECEIPT says whether anything was missing.

mod common;

use common::{Client, start};
use std::time::Duration;
use stompgate::stomp::Command;

const MARKET: &str = "/topic/market/KRW-BTC";

async fn subscribe(c: &mut Client, headers: &str) {
    c.send(&format!(
        "SUBSCRIBE\nid:h\ndestination:{MARKET}\nreceipt:sub\n{headers}\n\0"
    ))
    .await;
}

#[tokio::test]
async fn x_history_replays_demo_trades_oldest_first_then_live() {
    let server = start(&["--demo-rate", "200", "--demo-markets", "KRW-BTC"]).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut c = Client::connect(server.addr, "late").await;
    subscribe(&mut c, "x-history:30\n").await;
    let mut replayed = Vec::new();
    let mut live = 0;
    let mut offsets = Vec::new();
    let mut receipt = None;
    while live < 5 {
        let f = c.frame().await;
        match f.command {
            Command::Receipt => receipt = Some(f),
            Command::Message => {
                let id = f.header("message-id").unwrap().to_string();
                offsets.push(id.rsplit('-').next().unwrap().parse::<i64>().unwrap());
                assert!(
                    f.header("x-cursor")
                        .is_some_and(|c| c.starts_with("trades-0-"))
                );
                if f.header("x-replay") == Some("true") {
                    assert_eq!(live, 0, "replayed frames come before live ones");
                    replayed.push(id);
                } else {
                    live += 1;
                }
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(replayed.len(), 30, "{replayed:?}");
    assert!(
        offsets.windows(2).all(|w| w[1] == w[0] + 1),
        "oldest first, then live, no gap and no duplicate at the seam: {offsets:?}"
    );
    let receipt = receipt.expect("RECEIPT after the replay");
    assert_eq!(
        receipt.header("x-recovered"),
        None,
        "only a resume says recovered"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn x_resume_after_continues_exactly_after_the_cursor() {
    let server = start(&["--demo-rate", "200", "--demo-markets", "KRW-BTC"]).await;
    let mut a = Client::connect(server.addr, "a").await;
    subscribe(&mut a, "").await;
    let mut cursor = String::new();
    let mut last = 0;
    let mut got = 0;
    while got < 10 {
        let f = a.frame().await;
        if f.command == Command::Message {
            cursor = f.header("x-cursor").unwrap().to_string();
            last = f
                .header("message-id")
                .unwrap()
                .rsplit('-')
                .next()
                .unwrap()
                .parse::<i64>()
                .unwrap();
            got += 1;
        }
    }
    drop(a);
    // Away for a while: the demo feed goes on.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut b = Client::connect(server.addr, "b").await;
    subscribe(&mut b, &format!("x-resume-after:{cursor}\n")).await;
    let mut next = last + 1;
    let mut receipt = None;
    while next < last + 60 {
        let f = b.frame().await;
        match f.command {
            Command::Receipt => receipt = Some(f),
            Command::Message => {
                let n: i64 = f
                    .header("message-id")
                    .unwrap()
                    .rsplit('-')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert_eq!(n, next, "no gap, no duplicate");
                next += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    let receipt = receipt.expect("RECEIPT");
    assert_eq!(receipt.header("x-recovered"), Some("true"));
    server.shutdown().await;
}

#[tokio::test]
async fn a_cursor_older_than_history_says_not_recovered() {
    let server = start(&[
        "--demo-rate",
        "500",
        "--demo-markets",
        "KRW-BTC",
        "--history-size",
        "20",
    ])
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut c = Client::connect(server.addr, "c").await;
    subscribe(&mut c, "x-resume-after:trades-0-0\n").await;
    let receipt = c.expect_skipping_messages(Command::Receipt).await;
    assert_eq!(receipt.header("x-recovered"), Some("false"));
    server.shutdown().await;
}

#[tokio::test]
async fn chat_history_reaches_a_new_subscriber() {
    let server = start(&["--demo-rate", "0"]).await;
    let mut alice = Client::connect(server.addr, "alice").await;
    for text in ["one", "two"] {
        alice
            .send(&format!(
                "SEND\ndestination:/app/market/KRW-ETH/chat\nreceipt:{text}\n\n{text}\0"
            ))
            .await;
        alice.expect(Command::Receipt).await;
    }
    let mut bob = Client::connect(server.addr, "bob").await;
    bob.send("SUBSCRIBE\nid:0\ndestination:/topic/market/KRW-ETH\nx-history:10\n\n\0")
        .await;
    for text in ["one", "two"] {
        let m = bob.expect(Command::Message).await;
        assert_eq!(m.header("x-replay"), Some("true"));
        assert_eq!(m.header("event-type"), Some("chat.send"));
        let v: serde_json::Value = serde_json::from_slice(&m.body).unwrap();
        assert_eq!(v["text"], text);
    }
    server.shutdown().await;
}
