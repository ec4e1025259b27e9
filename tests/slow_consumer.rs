//! A client that stops reading never delays the others: with `disconnect` it is closed as a
//! slow consumer; with `conflate` it skips to the newest trade per market and stays.

mod common;

use common::{Client, http_get, metric, start};
use std::time::Duration;
use stompgate::stomp::Command;

fn delay_ms(m: &stompgate::stomp::Frame) -> i64 {
    stompgate::clock::now_ms() - m.header("timestamp").unwrap().parse::<i64>().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_reader_is_disconnected_while_others_keep_receiving_on_time() {
    let server = start(&[
        "--demo-rate",
        "0",
        "--outbox-bytes",
        "1048576",
        "--send-rate",
        "0",
    ])
    .await;
    let addr = server.addr;
    let mut fast = Client::connect(addr, "fast").await;
    fast.send("SUBSCRIBE\nid:0\ndestination:/topic/market/X\nreceipt:r\n\n\0")
        .await;
    fast.expect(Command::Receipt).await;
    let mut stalled = Client::open_with(addr, &["v12.stomp"], Some(4096)).await;
    stalled
        .send("CONNECT\naccept-version:1.2\nhost:x\n\n\0")
        .await;
    stalled.expect(Command::Connected).await;
    stalled
        .send("SUBSCRIBE\nid:0\ndestination:/topic/market/X\nreceipt:r\n\n\0")
        .await;
    stalled.expect(Command::Receipt).await;
    // From here on the stalled client reads nothing.

    const N: usize = 8000;
    let text = "x".repeat(1900);
    let publisher = tokio::spawn(async move {
        let mut p = Client::connect(addr, "pub").await;
        // About 1,000 messages (2 MB) per second: a steady stream, not one burst.
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        for _ in 0..N {
            tick.tick().await;
            p.send(&format!(
                "SEND\ndestination:/app/market/X/chat\n\n{{\"text\":\"{text}\"}}\0"
            ))
            .await;
        }
        p.send("DISCONNECT\nreceipt:end\n\n\0").await;
        p.expect(Command::Receipt).await;
    });
    let mut worst = 0;
    for _ in 0..N {
        let m = fast.expect(Command::Message).await;
        worst = worst.max(delay_ms(&m));
    }
    publisher.await.unwrap();
    assert!(
        worst < 1000,
        "the fast client waited {worst} ms for a message"
    );

    let mut disconnected = 0.0;
    for _ in 0..50 {
        let (_, metrics) = http_get(addr, "/metrics").await;
        disconnected = metric(
            &metrics,
            "stompgate_disconnects_total{reason=\"slow_consumer\"}",
        );
        if disconnected > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(disconnected, 1.0, "one slow consumer disconnect");
    // The stalled client, once it reads again, finds the end of its connection.
    let mut received = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stalled.ws_next()).await {
            Ok(Some(true)) => received += 1,
            Ok(_) => break,
            Err(_) => panic!("stalled client was not disconnected"),
        }
    }
    assert!(
        received < N,
        "the stalled client got everything ({received})"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflation_keeps_a_slow_reader_on_the_newest_trades() {
    let server = start(&[
        "--demo-rate",
        "4000",
        "--slow-consumer",
        "conflate",
        "--outbox-bytes",
        "16384",
    ])
    .await;
    let addr = server.addr;
    let mut fast = Client::connect(addr, "fast").await;
    fast.send("SUBSCRIBE\nid:0\ndestination:/topic/market/*\n\n\0")
        .await;
    let mut slow = Client::open_with(addr, &["v12.stomp"], Some(4096)).await;
    slow.send("CONNECT\naccept-version:1.2\nhost:x\n\n\0").await;
    slow.expect(Command::Connected).await;
    slow.send("SUBSCRIBE\nid:0\ndestination:/topic/market/*\n\n\0")
        .await;

    // The slow client reads nothing for three seconds while the fast one keeps up.
    let until = tokio::time::Instant::now() + Duration::from_secs(3);
    let mut worst = 0;
    while tokio::time::Instant::now() < until {
        let m = fast.expect(Command::Message).await;
        worst = worst.max(delay_ms(&m));
    }
    assert!(worst < 1000, "the fast client waited {worst} ms");
    let (_, metrics) = http_get(addr, "/metrics").await;
    assert!(
        metric(&metrics, "stompgate_conflated_total") > 0.0,
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            "stompgate_disconnects_total{reason=\"slow_consumer\"}"
        ),
        0.0
    );
    // Reading again, the slow client catches up to trades that are fresh. It first reads
    // what the kernel's socket buffers hold (megabytes, seconds of trades, beyond the
    // outbox's reach) while new trades keep coming at 4,000/s: on a machine whose cores
    // are taken by other work that took over 10 s (54,000-70,000 trades read, the freshest
    // still 0.4-0.7 s old), so the wait is generous; a client left behind for good fails.
    let (mut read, mut freshest) = (0u64, i64::MAX);
    let caught_up = tokio::time::timeout(Duration::from_secs(40), async {
        loop {
            let m = slow.expect(Command::Message).await;
            let delay = delay_ms(&m);
            read += 1;
            freshest = freshest.min(delay);
            if delay < 200 {
                return;
            }
        }
    })
    .await;
    assert!(
        caught_up.is_ok(),
        "the slow client never caught up: {read} trades read, the freshest {freshest} ms old"
    );
    server.shutdown().await;
}
