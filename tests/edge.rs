//! Hostile clients at the connection edge, against the real `stompgate` binary: each attack
//! is bounded and stops by itself in seconds; each test asserts that the gateway's memory
//! (VmRSS of the child process) stays bounded, that it still answers `/healthz`, and that
//! the refusal is counted by reason in `/metrics`. Figures are printed (`--nocapture`).

mod common;

use common::process::GatewayProcess;
use common::{Client, http_get, metric};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use stompgate::stomp::Command;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// The gateway process, with the probes these tests make from addresses of their own.
struct Gateway(GatewayProcess);

impl std::ops::Deref for Gateway {
    type Target = GatewayProcess;
    fn deref(&self) -> &GatewayProcess {
        &self.0
    }
}

impl Gateway {
    fn spawn(args: &[&str]) -> Gateway {
        Gateway(GatewayProcess::spawn(args))
    }

    /// `/metrics`, asked from 127.0.0.3 (not an attacker's address).
    async fn metrics(&self) -> String {
        let addr = self.internal.unwrap_or(self.addr);
        let mut s = connect_from(addr, "127.0.0.3".parse().unwrap(), None).await;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        String::from_utf8_lossy(&out).into_owned()
    }

    async fn refused(&self, reason: &str) -> f64 {
        metric(
            &self.metrics().await,
            &format!("stompgate_refused_total{{reason=\"{reason}\"}}"),
        )
    }

    /// `/healthz` answers 200 within a second, from another address than the attacker's.
    async fn healthy(&self) -> bool {
        let probe = async {
            let mut s = connect_from(self.addr, "127.0.0.2".parse().unwrap(), None).await;
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await
                .ok()?;
            let mut out = Vec::new();
            s.read_to_end(&mut out).await.ok()?;
            Some(out.starts_with(b"HTTP/1.1 200"))
        };
        tokio::time::timeout(Duration::from_secs(1), probe)
            .await
            .ok()
            .flatten()
            .unwrap_or(false)
    }
}

async fn connect_from(addr: SocketAddr, local: IpAddr, recv_buffer: Option<u32>) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).unwrap();
    }
    socket.bind(SocketAddr::new(local, 0)).unwrap();
    socket.connect(addr).await.unwrap()
}

/// A WebSocket upgrade done by hand, so the client can then send exact frames and never read.
async fn raw_websocket(addr: SocketAddr, recv_buffer: Option<u32>) -> TcpStream {
    let mut s = connect_from(addr, "127.0.0.1".parse().unwrap(), recv_buffer).await;
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
          Sec-WebSocket-Protocol: v12.stomp\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

/// A masked client WebSocket frame (mask 0: the payload goes as is).
fn ws_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n < 65536 => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&[0, 0, 0, 0]);
    f.extend_from_slice(payload);
    f
}

/// Sends pings as fast as the socket takes them for `secs`, never reading; returns how many.
async fn ping_flood(addr: SocketAddr, secs: u64) -> u64 {
    let mut s = raw_websocket(addr, Some(4096)).await;
    let batch: Vec<u8> = (0..1000)
        .flat_map(|_| ws_frame(0x9, &[b'p'; 125]))
        .collect();
    let end = Instant::now() + Duration::from_secs(secs);
    let mut sent = 0;
    while Instant::now() < end {
        match tokio::time::timeout(Duration::from_millis(500), s.write_all(&batch)).await {
            Ok(Ok(())) => sent += 1000,
            Ok(Err(_)) => break,
            Err(_) => {}
        }
    }
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_flood_from_a_client_that_never_reads() {
    // Pings limited: the flooder is closed within its first second.
    let gw = Gateway::spawn(&["--demo-rate", "0"]);
    let before = gw.rss_kib();
    let sent = ping_flood(gw.addr, 3).await;
    let after = gw.rss_kib();
    println!(
        "ping flood, --max-pings-per-second 10: {sent} pings sent, RSS {before} -> {after} KiB"
    );
    assert!(gw.healthy().await);
    assert!(
        after < before + 32 * 1024,
        "RSS grew {before} -> {after} KiB"
    );
    assert_eq!(gw.refused("ping_flood").await, 1.0);

    // Pings unlimited: the bounded write buffer alone holds memory.
    let gw = Gateway::spawn(&["--demo-rate", "0", "--max-pings-per-second", "0"]);
    let before = gw.rss_kib();
    let sent = ping_flood(gw.addr, 3).await;
    let after = gw.rss_kib();
    println!("ping flood, unlimited pings: {sent} pings sent, RSS {before} -> {after} KiB");
    assert!(sent > 10_000, "the flood did not run: {sent}");
    assert!(gw.healthy().await);
    assert!(
        after < before + 32 * 1024,
        "RSS grew {before} -> {after} KiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_half_sent_http_requests_are_capped_and_timed_out() {
    let gw = Gateway::spawn(&[
        "--demo-rate",
        "0",
        "--http-header-timeout-ms",
        "1000",
        "--max-http-connections-per-ip",
        "50",
    ]);
    let before = gw.rss_kib();
    let here: IpAddr = "127.0.0.1".parse().unwrap();
    let mut socks = Vec::new();
    for i in 0..300 {
        let mut s = connect_from(gw.addr, here, None).await;
        if i % 2 == 0 {
            let _ = s.write_all(b"GET /api/stats HTTP/1.1\r\nHost: x\r\n").await;
        }
        socks.push(s);
    }
    assert!(
        gw.healthy().await,
        "/healthz from another address during the attack"
    );
    // Beyond the cap: closed at once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let capped = gw.refused("http_too_many_from_address").await;
    // The rest: closed when the header deadline passes.
    let started = Instant::now();
    let mut open = 0;
    for s in &mut socks {
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await {
            Ok(_) => {}
            Err(_) => open += 1,
        }
    }
    let waited = started.elapsed();
    let timed_out = gw.refused("http_header_timeout").await;
    let after = gw.rss_kib();
    println!(
        "300 silent/half-sent HTTP connections: {capped} refused at accept, {timed_out} closed by the header timeout, {open} still open after {waited:?}; RSS {before} -> {after} KiB"
    );
    assert_eq!(capped, 250.0);
    assert_eq!(timed_out, 50.0);
    assert_eq!(open, 0);
    assert!(gw.healthy().await);
    assert!(after < before + 16 * 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_connections_per_second_per_address_get_429() {
    let gw = Gateway::spawn(&[
        "--demo-rate",
        "0",
        "--connect-rate-per-ip",
        "2",
        "--connect-burst-per-ip",
        "5",
    ]);
    let here: IpAddr = "127.0.0.1".parse().unwrap();
    let mut opened = Vec::new();
    let mut refused = 0;
    for _ in 0..12 {
        match Client::try_open(gw.addr, "/ws", &["v12.stomp"], &[], None, Some(here)).await {
            Ok(c) => opened.push(c),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 429);
                assert_eq!(
                    response.headers().get("retry-after").map(|v| v.as_bytes()),
                    Some(&b"1"[..])
                );
                let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
                    .into_owned();
                assert!(body.contains("--connect-rate-per-ip"), "{body}");
                refused += 1;
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    println!(
        "12 upgrades at once, rate 2/s burst 5: {} opened, {refused} got 429",
        opened.len()
    );
    assert!(opened.len() >= 5 && opened.len() <= 6, "{}", opened.len());
    assert_eq!(gw.refused("connect_rate").await, refused as f64);
    // Another address is not affected; the first one recovers after a second.
    let other = "127.0.0.2".parse().unwrap();
    let mut c = Client::try_open(gw.addr, "/ws", &["v12.stomp"], &[], None, Some(other))
        .await
        .expect("another address connects");
    c.send("CONNECT\naccept-version:1.2\nhost:x\n\n\0").await;
    c.expect(Command::Connected).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(
        Client::try_open(gw.addr, "/ws", &["v12.stomp"], &[], None, Some(here))
            .await
            .is_ok()
    );
    assert!(gw.healthy().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_port_serves_metrics_and_stats_alone() {
    let gw = Gateway::spawn(&[
        "--demo-rate",
        "0",
        "--internal-port",
        "0",
        "--admin-token",
        "operator-secret",
    ]);
    let internal = gw.internal.expect("internal address printed");
    for path in ["/metrics", "/api/stats"] {
        assert_eq!(http_get(gw.addr, path).await.0, 404, "public {path}");
        assert_eq!(http_get(internal, path).await.0, 200, "internal {path}");
    }
    for path in ["/healthz", "/readyz", "/"] {
        assert_eq!(http_get(gw.addr, path).await.0, 200, "public {path}");
    }
    assert_eq!(http_get(internal, "/ws").await.0, 404);
    assert_eq!(http_get(internal, "/").await.0, 404);
    // The registry: read on the public port, changed on the internal one only.
    assert_eq!(http_get(gw.addr, "/api/markets").await.0, 200);
    let body = r#"{"exchange":"upbit","symbol":"KRW-ADA"}"#;
    let (status, text) = http_request(gw.addr, "POST", "/api/markets", body).await;
    assert_eq!(status, 404, "public POST /api/markets: {text}");
    assert!(
        text.contains("internal port"),
        "the refusal says where: {text}"
    );
    let (status, _) = http_request(gw.addr, "DELETE", "/api/markets/upbit/KRW-BTC", "").await;
    assert_eq!(status, 404, "public DELETE");
    let (status, text) = http_request(internal, "POST", "/api/markets", body).await;
    assert_eq!(status, 201, "internal POST /api/markets: {text}");
    assert!(
        http_get(gw.addr, "/api/markets")
            .await
            .1
            .contains("KRW-ADA")
    );
    let mut c = Client::connect(gw.addr, "alice").await;
    c.send("DISCONNECT\n\n\0").await;
    // Without the flag they stay public.
    let open = Gateway::spawn(&["--demo-rate", "0"]);
    assert_eq!(http_get(open.addr, "/metrics").await.0, 200);
    assert_eq!(http_get(open.addr, "/api/stats").await.0, 200);
}

/// One HTTP request with the test's admin token; status and body.
async fn http_request(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer operator-secret\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// A chat SEND with a receipt, round trip in ms (receipt and own echo).
async fn chat_round_trip(c: &mut Client, n: usize) -> f64 {
    let start = Instant::now();
    c.send(&format!(
        "SEND\ndestination:/app/market/KRW-BTC/chat\nreceipt:r{n}\n\n{{\"text\":\"hi {n}\"}}\0"
    ))
    .await;
    loop {
        let f = c.frame().await;
        if f.command == Command::Receipt {
            return start.elapsed().as_secs_f64() * 1000.0;
        }
    }
}

async fn median_round_trip(c: &mut Client, from: usize) -> f64 {
    let mut v = Vec::new();
    for i in 0..15 {
        v.push(chat_round_trip(c, from + i).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Sends one frame with 32 header lines of 4 KiB, then its body a byte per WebSocket
/// message, for `secs`; returns the messages sent.
async fn trickle(addr: SocketAddr, secs: u64) -> u64 {
    let mut s = raw_websocket(addr, None).await;
    let mut head = String::from("SEND\n");
    for i in 0..31 {
        head.push_str(&format!("h{i:02}:{}\n", "x".repeat(4090)));
    }
    head.push_str("destination:/app/market/KRW-BTC/chat\n\n");
    let _ = s
        .write_all(&ws_frame(0x2, head.as_bytes()[..60_000].as_ref()))
        .await;
    let _ = s
        .write_all(&ws_frame(0x2, &head.as_bytes()[60_000..]))
        .await;
    let one = ws_frame(0x2, b"y");
    let batch: Vec<u8> = (0..100).flat_map(|_| one.clone()).collect();
    let end = Instant::now() + Duration::from_secs(secs);
    let mut sent = 0;
    while Instant::now() < end {
        if s.write_all(&batch).await.is_err() {
            break;
        }
        sent += 100;
        // About 0.25 MB/s per connection, as in the report.
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_arriving_a_byte_at_a_time_costs_linear_time() {
    let gw = Gateway::spawn(&[
        "--demo-rate",
        "0",
        "--send-rate",
        "0",
        "--max-body-bytes",
        "1000000",
    ]);
    let mut victim = Client::connect(gw.addr, "victim").await;
    let baseline = median_round_trip(&mut victim, 0).await;
    let cpu_before = gw.cpu();
    let attack = tokio::spawn(async move {
        let addr = gw.addr;
        let a = tokio::spawn(trickle(addr, 4));
        let b = tokio::spawn(trickle(addr, 4));
        let sent = a.await.unwrap() + b.await.unwrap();
        (gw, sent)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = median_round_trip(&mut victim, 100).await;
    let (gw, sent) = attack.await.unwrap();
    let cpu = gw.cpu() - cpu_before;
    println!(
        "2 connections trickling a 128 KiB-header frame a byte per message: {sent} messages, gateway CPU {cpu:?} ({:.1} µs per message); victim chat round trip median {baseline:.2} ms -> {during:.2} ms",
        cpu.as_secs_f64() * 1e6 / sent.max(1) as f64
    );
    assert!(sent > 1000, "the attack did not run");
    assert!(
        during <= (2.0 * baseline).max(baseline + 5.0),
        "victim round trip {baseline:.2} -> {during:.2} ms"
    );
    assert!(gw.healthy().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_its_responses_is_closed_when_idle() {
    let gw = Gateway::spawn(&["--demo-rate", "0", "--http-idle-timeout-ms", "500"]);
    let before = gw.rss_kib();
    let mut s = connect_from(gw.addr, "127.0.0.1".parse().unwrap(), Some(4096)).await;
    // Pipelined requests whose responses the client never reads: once the socket buffers are
    // full no byte moves either way.
    let requests = b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n".repeat(5000);
    let _ = tokio::time::timeout(Duration::from_secs(2), s.write_all(&requests)).await;
    let mut closed = 0.0;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        closed = gw.refused("http_idle_timeout").await;
        if closed > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = gw.rss_kib();
    println!(
        "pipelined requests never read: closed as idle = {closed}; RSS {before} -> {after} KiB"
    );
    assert_eq!(closed, 1.0);
    assert!(gw.healthy().await);
    assert!(after < before + 16 * 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgraded_connections_leave_the_plain_http_cap() {
    let gw = Gateway::spawn(&[
        "--demo-rate",
        "0",
        "--max-http-connections-per-ip",
        "10",
        "--connect-rate-per-ip",
        "0",
    ]);
    let mut clients = Vec::new();
    for i in 0..60 {
        clients.push(Client::connect(gw.addr, &format!("c{i}")).await);
    }
    let (_, stats) = http_get(gw.addr, "/api/stats").await;
    assert!(stats.contains("\"connections\":60"), "{stats}");
    assert_eq!(gw.refused("http_too_many_from_address").await, 0.0);
}
