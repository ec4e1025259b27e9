//! Authentication, permissions and limits: every rejection gives the client a clear ERROR
//! (or HTTP error), is counted, and leaves other clients unaffected.

mod common;

use common::{Client, http_get, metric, start};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::json;
use std::net::SocketAddr;
use std::time::Duration;
use stompgate::stomp::Command;

const SECRET: &str = "a-test-secret-of-some-length";

fn now() -> u64 {
    (stompgate::clock::now_ms() / 1000) as u64
}

fn token_with(secret: &str, claims: serde_json::Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn token(sub: &str) -> String {
    token_with(SECRET, json!({"sub": sub, "exp": now() + 3600}))
}

async fn connect_with(addr: SocketAddr, headers: &str) -> Client {
    let mut c = Client::open(addr, &["v12.stomp"]).await;
    c.send(&format!(
        "CONNECT\naccept-version:1.2\nhost:x\n{headers}\n\0"
    ))
    .await;
    c
}

/// A client on `/topic/market/*` that must keep receiving whatever others do.
async fn bystander(addr: SocketAddr) -> Client {
    let mut c = connect_with(addr, &format!("passcode:{}\n", token("calm"))).await;
    c.expect(Command::Connected).await;
    c.send("SUBSCRIBE\nid:0\ndestination:/topic/market/*\n\n\0")
        .await;
    c.expect(Command::Message).await;
    c
}

/// A trade arrives (chat on the same market destinations may come first).
async fn still_receiving(c: &mut Client) {
    c.expect_skipping_messages(Command::Message).await;
    for _ in 0..1000 {
        let m = c.expect(Command::Message).await;
        if m.header("event-type") == Some("trade") {
            return;
        }
    }
    panic!("no trade among 1000 messages");
}

async fn errors(addr: SocketAddr, reason: &str) -> f64 {
    let (_, text) = http_get(addr, "/metrics").await;
    metric(
        &text,
        &format!("stompgate_errors_total{{reason=\"{reason}\"}}"),
    )
}

#[tokio::test]
async fn valid_tokens_from_every_place_identify_the_user() {
    let server = start(&["--jwt-secret", SECRET, "--demo-rate", "50"]).await;
    let addr = server.addr;
    // CONNECT passcode.
    let mut c = connect_with(
        addr,
        &format!("login:mallory\npasscode:{}\n", token("alice")),
    )
    .await;
    assert_eq!(
        c.expect(Command::Connected).await.header("user-name"),
        Some("alice")
    );
    // CONNECT Authorization header.
    let mut c2 = connect_with(addr, &format!("Authorization:Bearer {}\n", token("bob"))).await;
    assert_eq!(
        c2.expect(Command::Connected).await.header("user-name"),
        Some("bob")
    );
    // access_token on the WebSocket URL, and Authorization on the upgrade request.
    let path = format!("/ws?access_token={}", token("carol"));
    let bearer = format!("Bearer {}", token("dave"));
    for (path, headers, user) in [
        (path.as_str(), vec![], "carol"),
        ("/ws", vec![("Authorization", bearer.as_str())], "dave"),
    ] {
        let mut c = Client::try_open(addr, path, &["v12.stomp"], &headers, None, None)
            .await
            .unwrap();
        c.send("CONNECT\naccept-version:1.2\nhost:x\n\n\0").await;
        assert_eq!(
            c.expect(Command::Connected).await.header("user-name"),
            Some(user)
        );
    }
    // The chat sender is the token's subject, whatever the client claims.
    c2.send("SUBSCRIBE\nid:0\ndestination:/topic/market/KRW-BTC\nreceipt:s\n\n\0")
        .await;
    c2.expect_skipping_messages(Command::Receipt).await;
    c.send("SEND\ndestination:/app/market/KRW-BTC/chat\nuser:bob\n\n{\"text\":\"hi\",\"user\":\"bob\"}\0")
        .await;
    loop {
        let m = c2.expect(Command::Message).await;
        if m.header("event-type") == Some("chat.send") {
            let v: serde_json::Value = serde_json::from_slice(&m.body).unwrap();
            assert_eq!(v["user"], "alice");
            break;
        }
    }
    server.shutdown().await;
}

#[tokio::test]
async fn bad_expired_and_wrongly_signed_tokens_are_refused() {
    let server = start(&[
        "--jwt-secret",
        SECRET,
        "--demo-rate",
        "50",
        "--anonymous-subscribe",
        "",
    ])
    .await;
    let addr = server.addr;
    let mut calm = bystander(addr).await;
    let expired = token_with(SECRET, json!({"sub": "x", "exp": now() - 600}));
    let forged = token_with(
        "another-secret-entirely",
        json!({"sub": "x", "exp": now() + 600}),
    );
    for (headers, detail, reason) in [
        ("passcode:not.a.jwt\n", "malformed", "auth_malformed"),
        (&*format!("passcode:{expired}\n"), "expired", "auth_expired"),
        (
            &*format!("passcode:{forged}\n"),
            "signature",
            "auth_bad_signature",
        ),
        ("login:guest\n", "a token is required", "auth_missing"),
    ] {
        let mut c = connect_with(addr, headers).await;
        let e = c.expect_error().await;
        assert_eq!(e.header("message"), Some("authentication failed"));
        let body = String::from_utf8_lossy(&e.body);
        assert!(body.contains(detail), "{headers}: {body}");
        assert_eq!(errors(addr, reason).await, 1.0, "{reason} counted");
    }
    still_receiving(&mut calm).await;
    server.shutdown().await;
}

#[tokio::test]
async fn permissions_limit_subscribe_and_send() {
    let server = start(&["--jwt-secret", SECRET, "--demo-rate", "50"]).await;
    let addr = server.addr;
    let mut calm = bystander(addr).await;
    let narrow = token_with(
        SECRET,
        json!({"sub": "n", "exp": now() + 600, "subscribe": ["/topic/market/KRW-BTC"], "send": []}),
    );
    let mut c = connect_with(addr, &format!("passcode:{narrow}\n")).await;
    c.expect(Command::Connected).await;
    c.send("SUBSCRIBE\nid:0\ndestination:/topic/market/KRW-BTC\nreceipt:ok\n\n\0")
        .await;
    c.expect_skipping_messages(Command::Receipt).await;
    c.send("SUBSCRIBE\nid:1\ndestination:/topic/market/KRW-ETH\n\n\0")
        .await;
    let e = c.expect_error().await;
    assert_eq!(e.header("message"), Some("forbidden"));
    assert!(String::from_utf8_lossy(&e.body).contains("/topic/market/KRW-ETH"));

    let mut c = connect_with(addr, &format!("passcode:{narrow}\n")).await;
    c.expect(Command::Connected).await;
    c.send("SEND\ndestination:/app/market/KRW-BTC/chat\n\n{\"text\":\"x\"}\0")
        .await;
    assert_eq!(c.expect_error().await.header("message"), Some("forbidden"));

    // Anonymous clients may subscribe to market data but never send.
    let mut anon = connect_with(addr, "").await;
    anon.expect(Command::Connected).await;
    anon.send("SUBSCRIBE\nid:0\ndestination:/topic/market/KRW-XRP\n\n\0")
        .await;
    anon.expect(Command::Message).await;
    anon.send("SEND\ndestination:/app/market/KRW-XRP/chat\n\n{\"text\":\"x\"}\0")
        .await;
    let e = anon.expect_error().await;
    assert_eq!(e.header("message"), Some("forbidden"));
    assert!(String::from_utf8_lossy(&e.body).contains("token"));
    assert_eq!(errors(addr, "forbidden").await, 3.0);
    still_receiving(&mut calm).await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_session_ends_when_its_token_expires() {
    let server = start(&["--jwt-secret", SECRET, "--demo-rate", "0"]).await;
    let short = token_with(SECRET, json!({"sub": "s", "exp": now() + 2}));
    let mut c = connect_with(server.addr, &format!("passcode:{short}\n")).await;
    c.expect(Command::Connected).await;
    let e = c.expect_error().await;
    assert_eq!(e.header("message"), Some("token expired"));
    server.shutdown().await;
}

#[tokio::test]
async fn public_keys_verify_es256_tokens() {
    let dir = std::env::temp_dir().join(format!("stompgate-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let private = dir.join("private.pem");
    let public = dir.join("public.pem");
    let run = |args: &[&str]| {
        let ok = std::process::Command::new("openssl")
            .args(args)
            .status()
            .unwrap()
            .success();
        assert!(ok, "openssl {args:?}");
    };
    run(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        private.to_str().unwrap(),
    ]);
    run(&[
        "pkey",
        "-in",
        private.to_str().unwrap(),
        "-pubout",
        "-out",
        public.to_str().unwrap(),
    ]);
    let server = start(&[
        "--jwt-public-key",
        public.to_str().unwrap(),
        "--demo-rate",
        "0",
    ])
    .await;
    let key = EncodingKey::from_ec_pem(&std::fs::read(&private).unwrap()).unwrap();
    let good = encode(
        &Header::new(Algorithm::ES256),
        &json!({"sub": "ec-user", "exp": now() + 60}),
        &key,
    )
    .unwrap();
    let mut c = connect_with(server.addr, &format!("passcode:{good}\n")).await;
    assert_eq!(
        c.expect(Command::Connected).await.header("user-name"),
        Some("ec-user")
    );
    // An HS256 token is not accepted where a public key is configured.
    let mut c = connect_with(server.addr, &format!("passcode:{}\n", token("x"))).await;
    assert_eq!(
        c.expect_error().await.header("message"),
        Some("authentication failed")
    );
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn foreign_origins_are_refused() {
    let server = start(&["--demo-rate", "50"]).await;
    let addr = server.addr;
    let mut calm = bystander(addr).await;
    let refused = Client::try_open(
        addr,
        "/ws",
        &["v12.stomp"],
        &[("Origin", "https://evil.example")],
        None,
        None,
    )
    .await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403);
            let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
                .into_owned();
            assert!(body.contains("--allowed-origins"), "{body}");
        }
        Err(other) => panic!("expected HTTP 403, got {other}"),
        Ok(_) => panic!("a foreign origin opened a WebSocket"),
    }
    assert_eq!(errors(addr, "origin").await, 1.0);
    let host = addr.to_string();
    let same = format!("http://{host}");
    for origin in ["http://localhost:5173", same.as_str()] {
        let mut c = Client::try_open(
            addr,
            "/ws",
            &["v12.stomp"],
            &[("Origin", origin)],
            None,
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("{origin} refused: {e}"));
        c.send("CONNECT\naccept-version:1.2\nhost:x\n\n\0").await;
        c.expect(Command::Connected).await;
    }
    still_receiving(&mut calm).await;
    server.shutdown().await;
}

#[tokio::test]
async fn send_rate_limit() {
    let server = start(&["--demo-rate", "50", "--send-rate", "5", "--send-burst", "5"]).await;
    let addr = server.addr;
    let mut calm = Client::connect(addr, "calm").await;
    calm.send("SUBSCRIBE\nid:0\ndestination:/topic/market/*\n\n\0")
        .await;
    let mut c = Client::connect(addr, "spammer").await;
    for _ in 0..6 {
        c.send("SEND\ndestination:/app/market/KRW-BTC/chat\n\n{\"text\":\"spam\"}\0")
            .await;
    }
    let e = c.expect_error().await;
    assert_eq!(e.header("message"), Some("rate limit exceeded"));
    assert_eq!(errors(addr, "rate_limited").await, 1.0);
    still_receiving(&mut calm).await;
    server.shutdown().await;
}

#[tokio::test]
async fn connections_per_address_are_limited() {
    let server = start(&["--demo-rate", "50", "--max-connections-per-ip", "2"]).await;
    let addr = server.addr;
    let here = Some("127.0.0.1".parse().unwrap());
    let mut first = Client::try_open(addr, "/ws", &["v12.stomp"], &[], None, here)
        .await
        .unwrap();
    first
        .send("CONNECT\naccept-version:1.2\nhost:x\n\n\0")
        .await;
    first.expect(Command::Connected).await;
    first
        .send("SUBSCRIBE\nid:0\ndestination:/topic/market/*\n\n\0")
        .await;
    let _second = Client::try_open(addr, "/ws", &["v12.stomp"], &[], None, here)
        .await
        .unwrap();
    let mut third = Client::try_open(addr, "/ws", &["v12.stomp"], &[], None, here)
        .await
        .unwrap();
    let e = third.expect_error().await;
    assert_eq!(
        e.header("message"),
        Some("too many connections from your address")
    );
    assert!(String::from_utf8_lossy(&e.body).contains("limit: 2"));
    // Another address is not affected, and neither are the first address's open sessions.
    let other = Some("127.0.0.2".parse().unwrap());
    let mut c = Client::try_open(addr, "/ws", &["v12.stomp"], &[], None, other)
        .await
        .unwrap();
    c.send("CONNECT\naccept-version:1.2\nhost:x\n\n\0").await;
    c.expect(Command::Connected).await;
    first.expect(Command::Message).await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    server.shutdown().await;
}

#[tokio::test]
async fn hostile_token_claims_are_refused_or_clamped() {
    let server = start(&[
        "--jwt-secret",
        SECRET,
        "--jwt-issuer",
        "https://idp.example",
        "--demo-rate",
        "0",
    ])
    .await;
    let addr = server.addr;
    let claims = |extra: serde_json::Value| {
        let mut c = json!({"sub": "alice", "exp": now() + 600, "iss": "https://idp.example"});
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        token_with(SECRET, c)
    };
    // exp = 2^64-1: connects, and the session ends cleanly (no panic, no phantom connection).
    let forever = claims(json!({"exp": u64::MAX}));
    let mut c = connect_with(addr, &format!("passcode:{forever}\n")).await;
    c.expect(Command::Connected).await;
    c.send("DISCONNECT\nreceipt:bye\n\n\0").await;
    c.expect(Command::Receipt).await;
    c.closed().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, text) = http_get(addr, "/metrics").await;
    assert_eq!(metric(&text, "stompgate_connections "), 0.0);
    for (token, detail) in [
        (claims(json!({"sub": "alice\nuser-name:root"})), "printable"),
        (
            token_with(SECRET, json!({"sub": "alice", "exp": now() + 600})),
            "required claim 'iss'",
        ),
        (
            claims(json!({"nbf": now() + 365 * 24 * 3600})),
            "not yet valid",
        ),
        (claims(json!({"iss": "https://evil.example"})), "issuer"),
    ] {
        let mut c = connect_with(addr, &format!("passcode:{token}\n")).await;
        let e = c.expect_error().await;
        assert_eq!(e.header("message"), Some("authentication failed"));
        let body = String::from_utf8_lossy(&e.body);
        assert!(body.contains(detail), "{body}");
        assert!(!body.contains("Error") && !body.contains("Json"), "{body}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn null_and_look_alike_origins_are_refused() {
    let server = start(&["--demo-rate", "0"]).await;
    let addr = server.addr;
    for origin in [
        "null",
        "http://localhost.evil.example:3000",
        "http://127.0.0.1.evil.example",
        "https://localhost@evil.example",
    ] {
        let refused = Client::try_open(
            addr,
            "/ws",
            &["v12.stomp"],
            &[("Origin", origin)],
            None,
            None,
        )
        .await;
        match refused {
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 403),
            _ => panic!("{origin} was not refused"),
        }
    }
    // A byte that is not ASCII: undecodable, refused (it used to count as "no Origin").
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: http://localhost:3000\xc3\xa9\r\n\r\n".to_vec();
        s.write_all(&request).await.unwrap();
        let mut head = [0u8; 12];
        s.read_exact(&mut head).await.unwrap();
        assert_eq!(&head, b"HTTP/1.1 403");
    }
    let (_, text) = http_get(addr, "/metrics").await;
    assert_eq!(
        metric(&text, "stompgate_refused_total{reason=\"origin\"}"),
        5.0
    );
    server.shutdown().await;
}

#[tokio::test]
async fn static_dir_serves_no_dotfiles_and_no_links_out() {
    let dir = std::env::temp_dir().join(format!("stompgate-static-{}", std::process::id()));
    let outside = std::env::temp_dir().join(format!("stompgate-outside-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("sub/.git")).unwrap();
    std::fs::write(dir.join("index.html"), "<p>dash</p>").unwrap();
    std::fs::write(dir.join(".env"), "SECRET=1").unwrap();
    std::fs::write(dir.join("sub/.git/config"), "[core]").unwrap();
    std::fs::write(dir.join("sub/app.js"), "x").unwrap();
    std::fs::write(&outside, "outside").unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("out.txt")).unwrap();
    std::os::unix::fs::symlink(dir.join("sub/app.js"), dir.join("in.js")).unwrap();
    let server = start(&["--demo-rate", "0", "--static-dir", dir.to_str().unwrap()]).await;
    for (path, status) in [
        ("/", 200),
        ("/index.html", 200),
        ("/sub/app.js", 200),
        ("/in.js", 200),
        ("/.env", 404),
        ("/%2eenv", 404),
        ("/sub/.git/config", 404),
        ("/sub/%2Egit/config", 404),
        ("/out.txt", 404),
        ("/../outside", 404),
        ("/sub/../../etc/passwd", 404),
    ] {
        let (got, body) = http_get(server.addr, path).await;
        assert_eq!(got, status, "{path}: {body}");
        assert!(
            !body.contains("SECRET") && !body.contains("outside"),
            "{path}"
        );
    }
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&outside);
}

/// The next chat record of `event` on the watcher's market (trades skipped).
async fn next_chat(watcher: &mut Client, event: &str) -> serde_json::Value {
    loop {
        let m = watcher.expect(Command::Message).await;
        if m.header("event-type") == Some(event) {
            return serde_json::from_slice(&m.body).unwrap();
        }
    }
}

async fn chat(c: &mut Client, event: &str, body: &str) {
    c.send(&format!(
        "SEND\ndestination:/app/market/KRW-BTC/chat\nevent-type:{event}\n\n{body}\0"
    ))
    .await;
}

/// Chat ownership over real sockets. Without a token, the CONNECT login is a display name:
/// a second session declaring the author's login cannot edit or delete the author's
/// message. With JWT, the subject owns: a `chat.send` that names another user's message id
/// gets a new id of its own (no takeover), and a delete of the other's message is refused.
#[tokio::test]
async fn chat_messages_belong_to_their_sender_not_to_a_name_or_a_chosen_id() {
    // No token: the same login in two sessions.
    let server = start(&["--demo-rate", "0"]).await;
    let addr = server.addr;
    let mut watcher = Client::connect(addr, "watcher").await;
    watcher
        .send("SUBSCRIBE\nid:0\ndestination:/topic/market/KRW-BTC\nreceipt:w\n\n\0")
        .await;
    watcher.expect(Command::Receipt).await;
    let mut alice = Client::connect(addr, "alice").await;
    let mut impostor = Client::connect(addr, "alice").await;
    chat(&mut alice, "chat.send", r#"{"text":"mine"}"#).await;
    let sent = next_chat(&mut watcher, "chat.send").await;
    let id = sent["id"].as_str().unwrap().to_string();
    chat(
        &mut impostor,
        "chat.modify",
        &format!(r#"{{"id":"{id}","text":"pwned"}}"#),
    )
    .await;
    let e = impostor.expect_error().await;
    assert_eq!(e.header("message"), Some("forbidden"), "{e:?}");
    chat(
        &mut alice,
        "chat.modify",
        &format!(r#"{{"id":"{id}","text":"edited"}}"#),
    )
    .await;
    let edited = next_chat(&mut watcher, "chat.modify").await;
    assert_eq!(
        (edited["id"].as_str(), edited["text"].as_str()),
        (Some(id.as_str()), Some("edited"))
    );
    server.shutdown().await;

    // JWT: the subject owns; a chosen id is not taken over.
    let server = start(&["--jwt-secret", SECRET, "--demo-rate", "0"]).await;
    let addr = server.addr;
    let mut watcher = connect_with(addr, &format!("passcode:{}\n", token("watcher"))).await;
    watcher.expect(Command::Connected).await;
    watcher
        .send("SUBSCRIBE\nid:0\ndestination:/topic/market/KRW-BTC\nreceipt:w\n\n\0")
        .await;
    watcher.expect(Command::Receipt).await;
    let mut a = connect_with(addr, &format!("passcode:{}\n", token("alice"))).await;
    a.expect(Command::Connected).await;
    let mut b = connect_with(addr, &format!("passcode:{}\n", token("bob"))).await;
    b.expect(Command::Connected).await;
    chat(&mut a, "chat.send", r#"{"text":"mine"}"#).await;
    let id = next_chat(&mut watcher, "chat.send").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    chat(
        &mut b,
        "chat.send",
        &format!(r#"{{"id":"{id}","text":"now mine"}}"#),
    )
    .await;
    let taken = next_chat(&mut watcher, "chat.send").await;
    assert_eq!(taken["user"], "bob");
    assert_ne!(taken["id"].as_str(), Some(id.as_str()), "{taken}");
    chat(&mut b, "chat.delete", &format!(r#"{{"id":"{id}"}}"#)).await;
    let e = b.expect_error().await;
    assert_eq!(e.header("message"), Some("forbidden"), "{e:?}");
    chat(&mut a, "chat.delete", &format!(r#"{{"id":"{id}"}}"#)).await;
    let deleted = next_chat(&mut watcher, "chat.delete").await;
    assert_eq!(deleted["id"].as_str(), Some(id.as_str()));
    server.shutdown().await;
}
