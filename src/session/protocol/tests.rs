//! The state machine without sockets: frames in, effects and ERRORs out.

use super::*;
use crate::auth::{Auth, AuthSettings};
use crate::bus::local::LocalBus;
use crate::bus::{InboundRecord, RecordSink};
use crate::chat::Chat;
use crate::hub::Hub;
use crate::hub::outbox::SlowConsumerPolicy;
use crate::metrics::Metrics;
use crate::session::{SessionContext, SessionSettings};
use crate::stomp::Limits;
use tokio_util::sync::CancellationToken;

struct Nowhere;
impl RecordSink for Nowhere {
    fn record(&self, _: &InboundRecord, _: &'static str) {}
    fn history(&self, _: &InboundRecord, _: &'static str) {}
    fn partition_start(&self, _: &str, _: i32, _: i64) {}
}

fn context() -> SessionContext {
    let metrics = Arc::new(Metrics::new());
    let hub = Arc::new(Hub::new(metrics.clone(), Default::default()));
    let chat = Arc::new(Chat::new("chat"));
    let ingest = Arc::new(crate::ingest::Ingest {
        router: crate::route::Router::defaults("trades", "chat"),
        hub: hub.clone(),
        chat: chat.clone(),
        metrics: metrics.clone(),
        direct_writes: true,
    });
    SessionContext::new(
        hub,
        ingest,
        Arc::new(LocalBus::new(Arc::new(Nowhere))),
        chat,
        Auth::new(&AuthSettings::default()).unwrap(),
        metrics,
        CancellationToken::new(),
        SessionSettings {
            frame_limits: Limits {
                max_body_bytes: 65536,
                max_headers: 32,
                max_header_line: 4096,
            },
            connect_timeout: Duration::from_secs(10),
            heartbeat_ms: 10_000,
            write_timeout: Duration::from_secs(10),
            ws_batch: true,
            direct_writes: true,
            max_write_bytes: 65536,
            outbox_bytes: 1 << 20,
            slow_consumer: SlowConsumerPolicy::Disconnect,
            max_subscriptions: 4,
            max_subscription_bytes: 200,
            max_pending_acks: 100,
            max_transactions: 2,
            max_transaction_ops: 3,
            max_transaction_bytes: 1 << 20,
            send_rate: 0.0,
            send_burst: 1.0,
            shutdown_grace: Duration::from_secs(1),
        },
    )
}

/// Parses frame text as a client would send it (`\0` ends it).
fn frame(text: &str) -> Frame {
    let mut buf = bytes::BytesMut::from(text.as_bytes());
    match crate::stomp::parse(&mut buf, Version::V1_2, &context().settings.frame_limits) {
        Ok(Some(crate::stomp::Parsed::Frame(f))) => f,
        other => panic!("not a frame: {other:?}"),
    }
}

struct Harness {
    cx: SessionContext,
    p: Protocol,
}

impl Harness {
    fn new() -> Harness {
        let cx = context();
        let p = Protocol::new(&cx, 7, "127.0.0.1:1".parse().unwrap(), None);
        Harness { cx, p }
    }

    fn connected(version: &str) -> Harness {
        let mut h = Harness::new();
        let out = h
            .ok(&format!("CONNECT\naccept-version:{version}\n\n\0"))
            .into_iter()
            .find_map(|e| match e {
                Effect::Reply(f) => Some(f),
                _ => None,
            })
            .unwrap();
        assert_eq!(out.command, Command::Connected);
        h
    }

    fn run(&mut self, text: &str) -> (Vec<Effect>, Result<(), Close>) {
        let mut out = Vec::new();
        let r = self.p.on_frame(frame(text), &self.cx, &mut out);
        (out, r)
    }

    fn ok(&mut self, text: &str) -> Vec<Effect> {
        let (out, r) = self.run(text);
        if let Err(c) = r {
            panic!("{text:?} was refused: {:?}", c.error);
        }
        out
    }

    /// The ERROR a frame gets: (message header, body, receipt-id).
    fn refused(&mut self, text: &str) -> (String, String, Option<String>) {
        let (_, r) = self.run(text);
        let close = r.expect_err("expected an ERROR");
        assert_eq!(close.reason, Disconnect::ProtocolError);
        let e = close.error.unwrap();
        assert_eq!(e.command, Command::Error);
        (
            e.header("message").unwrap().to_string(),
            String::from_utf8_lossy(&e.body).into_owned(),
            e.header("receipt-id").map(str::to_string),
        )
    }
}

fn receipts(effects: &[Effect]) -> Vec<&str> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Receipt(id) => Some(id.as_str()),
            Effect::Subscribe {
                receipt: Some(id), ..
            } => Some(id.as_str()),
            Effect::Produce {
                receipt: Some(id), ..
            } => Some(id.as_str()),
            _ => None,
        })
        .collect()
}

#[test]
fn version_negotiation_takes_the_highest_offered() {
    let mut h = Harness::new();
    let out = h.ok("CONNECT\naccept-version:1.0,1.1\n\n\0");
    let Some(Effect::Reply(connected)) = out.iter().find(|e| matches!(e, Effect::Reply(_))) else {
        panic!("no CONNECTED");
    };
    assert_eq!(connected.header("version"), Some("1.1"));
    assert_eq!(h.p.connected(), Some(Version::V1_1));

    let mut h = Harness::new();
    h.ok("CONNECT\n\n\0");
    assert_eq!(h.p.connected(), Some(Version::V1_0), "no header means 1.0");

    let mut h = Harness::new();
    let (_, r) = h.run("STOMP\naccept-version:2.0,3.1\n\n\0");
    let e = r.unwrap_err().error.unwrap();
    assert_eq!(e.header("message"), Some("unsupported protocol version"));
    assert_eq!(e.header("version"), Some("1.0,1.1,1.2"));
}

#[test]
fn heart_beats_are_negotiated_as_the_larger_of_both_sides() {
    let mut h = Harness::new();
    h.ok("CONNECT\naccept-version:1.2\nheart-beat:5000,20000\n\n\0");
    // The client sends every 5 s (we expect at least every 10 s); it wants ours every 20 s.
    assert_eq!(h.p.heartbeat_out, Some(Duration::from_millis(20_000)));
    assert_eq!(h.p.heartbeat_in, Some(Duration::from_millis(10_000)));

    let mut h = Harness::new();
    h.ok("CONNECT\naccept-version:1.2\nheart-beat:0,0\n\n\0");
    assert_eq!((h.p.heartbeat_out, h.p.heartbeat_in), (None, None));

    let mut h = Harness::new();
    h.ok("CONNECT\nheart-beat:1000,1000\n\n\0");
    assert_eq!(
        (h.p.heartbeat_out, h.p.heartbeat_in),
        (None, None),
        "1.0 has no heart-beats"
    );
}

#[test]
fn frames_before_connect_and_server_frames_are_errors() {
    let mut h = Harness::new();
    let (message, body, receipt) = h.refused("SEND\ndestination:/x\nreceipt:9\n\n\0");
    assert_eq!(message, "not connected");
    assert!(body.contains("CONNECT"), "{body}");
    assert_eq!(receipt.as_deref(), Some("9"), "the ERROR names the receipt");

    let mut h = Harness::connected("1.2");
    assert_eq!(h.refused("MESSAGE\n\n\0").0, "unexpected frame");
    let mut h = Harness::connected("1.2");
    assert_eq!(h.refused("CONNECT\n\n\0").0, "already connected");
}

#[test]
fn receipts_follow_the_frames_that_asked_for_them_in_order() {
    let mut h = Harness::connected("1.2");
    let mut all = Vec::new();
    all.extend(h.ok("SUBSCRIBE\nid:0\ndestination:/topic/market/A\nreceipt:r1\n\n\0"));
    all.extend(h.ok("SEND\ndestination:/app/market/A/chat\nreceipt:r2\n\nhello\0"));
    all.extend(h.ok("UNSUBSCRIBE\nid:0\nreceipt:r3\n\n\0"));
    assert_eq!(receipts(&all), ["r1", "r2", "r3"]);
    assert!(
        matches!(all[0], Effect::Subscribe { .. }),
        "subscribed before its receipt"
    );
    let Some(Effect::Produce { records, .. }) =
        all.iter().find(|e| matches!(e, Effect::Produce { .. }))
    else {
        panic!("no record");
    };
    assert_eq!(records[0].topic, "chat");
    assert_eq!(records[0].key, "A");

    let out = h.ok("DISCONNECT\nreceipt:bye\n\n\0");
    assert!(matches!(&out[..], [Effect::Disconnect(Some(r))] if r == "bye"));
    assert!(
        h.ok("SEND\ndestination:/app/market/A/chat\n\nlate\0")
            .is_empty(),
        "frames after DISCONNECT are ignored"
    );
}

#[test]
fn subscriptions_are_checked_and_bounded() {
    let mut h = Harness::connected("1.2");
    let (m, body, _) = h.refused("SUBSCRIBE\nid:0\ndestination:/queue/x\n\n\0");
    assert_eq!(m, "unknown destination");
    assert!(body.contains("/topic/market/"), "{body}");

    let mut h = Harness::connected("1.2");
    assert_eq!(
        h.refused("SUBSCRIBE\ndestination:/topic/market/A\n\n\0").0,
        "missing header 'id'"
    );

    let mut h = Harness::connected("1.2");
    assert_eq!(
        h.refused("SUBSCRIBE\nid:0\nack:sometimes\ndestination:/topic/market/A\n\n\0")
            .0,
        "invalid ack mode"
    );

    let mut h = Harness::connected("1.2");
    h.ok("SUBSCRIBE\nid:0\ndestination:/topic/market/A\n\n\0");
    let (m, _, _) = h.refused("SUBSCRIBE\nid:0\ndestination:/topic/market/B\n\n\0");
    assert_eq!(m, "duplicate subscription id");

    let mut h = Harness::connected("1.2");
    h.ok("SUBSCRIBE\nid:0\ndestination:/topic/market/A\n\n\0");
    let (m, body, _) = h.refused("SUBSCRIBE\nid:1\ndestination:/topic/market/A\n\n\0");
    assert_eq!(m, "already subscribed");
    assert!(body.contains("id '0'"), "{body}");

    let mut h = Harness::connected("1.2");
    for i in 0..4 {
        h.ok(&format!(
            "SUBSCRIBE\nid:{i}\ndestination:/topic/market/M{i}\n\n\0"
        ));
    }
    assert_eq!(
        h.refused("SUBSCRIBE\nid:4\ndestination:/topic/market/M4\n\n\0")
            .0,
        "too many subscriptions"
    );

    let mut h = Harness::connected("1.2");
    let long = "x".repeat(190);
    assert_eq!(
        h.refused(&format!(
            "SUBSCRIBE\nid:{long}\ndestination:/topic/market/A\n\n\0"
        ))
        .0,
        "too many subscriptions",
        "ids and destinations are bounded in bytes"
    );

    let mut h = Harness::connected("1.2");
    h.ok("SUBSCRIBE\nid:0\ndestination:/topic/market/A\n\n\0");
    h.ok("UNSUBSCRIBE\nid:0\n\n\0");
    assert_eq!(
        h.refused("UNSUBSCRIBE\nid:0\n\n\0").0,
        "unknown subscription"
    );
}

/// Subscribes with `ack` and records `n` deliveries as the writer would.
fn delivered(h: &mut Harness, ack: &str, n: usize) -> Arc<Subscription> {
    let out = h.ok(&format!(
        "SUBSCRIBE\nid:s\nack:{ack}\ndestination:/topic/market/A\n\n\0"
    ));
    let Some(Effect::Subscribe { sub, .. }) = out.into_iter().next() else {
        panic!("no subscription");
    };
    for i in 0..n {
        h.p.acks.track(&sub, &format!("trades-0-{i}").into());
    }
    sub
}

#[test]
fn client_ack_is_cumulative() {
    let mut h = Harness::connected("1.2");
    delivered(&mut h, "client", 3);
    h.ok("ACK\nid:1\n\n\0");
    assert_eq!(h.p.acks.pending(), 1, "0 and 1 settled by one ACK");
    assert_eq!(h.refused("ACK\nid:0\nreceipt:a\n\n\0").0, "unknown message");
}

#[test]
fn client_individual_ack_settles_one() {
    let mut h = Harness::connected("1.2");
    delivered(&mut h, "client-individual", 3);
    h.ok("NACK\nid:2\n\n\0");
    h.ok("ACK\nid:0\n\n\0");
    assert_eq!(h.p.acks.pending(), 1);
    assert_eq!(h.refused("ACK\nid:zzz\n\n\0").0, "unknown message");
}

#[test]
fn before_1_2_acks_name_the_message_id() {
    let mut h = Harness::connected("1.1");
    delivered(&mut h, "client-individual", 2);
    h.ok("ACK\nmessage-id:trades-0-1\nsubscription:s\n\n\0");
    assert_eq!(h.p.acks.pending(), 1);
    assert_eq!(
        h.refused("ACK\nid:0\n\n\0").0,
        "missing header 'message-id'"
    );
}

#[test]
fn transactions_stage_and_commit_in_order() {
    let mut h = Harness::connected("1.2");
    delivered(&mut h, "client-individual", 2);
    let mut all = h.ok("BEGIN\ntransaction:t\nreceipt:b\n\n\0");
    all.extend(h.ok("SEND\ndestination:/app/market/A/chat\ntransaction:t\n\none\0"));
    all.extend(h.ok("ACK\nid:1\ntransaction:t\n\n\0"));
    all.extend(h.ok("SEND\ndestination:/app/market/A/chat\ntransaction:t\n\ntwo\0"));
    assert_eq!(h.p.acks.pending(), 2, "nothing applied before COMMIT");
    assert!(!all.iter().any(|e| matches!(e, Effect::Produce { .. })));
    let out = h.ok("COMMIT\ntransaction:t\nreceipt:c\n\n\0");
    let [Effect::Produce { records, receipt }] = &out[..] else {
        panic!("{out:?}");
    };
    assert_eq!(receipt.as_deref(), Some("c"));
    let texts: Vec<String> = records
        .iter()
        .map(|r| serde_json::from_slice::<serde_json::Value>(&r.value).unwrap()["text"].to_string())
        .collect();
    assert_eq!(texts, ["\"one\"", "\"two\""]);
    assert_eq!(h.p.acks.pending(), 1);
    assert_eq!(
        h.refused("COMMIT\ntransaction:t\n\n\0").0,
        "unknown transaction"
    );
}

#[test]
fn abort_drops_everything_staged() {
    let mut h = Harness::connected("1.2");
    delivered(&mut h, "client-individual", 1);
    h.ok("BEGIN\ntransaction:t\n\n\0");
    h.ok("ACK\nid:0\ntransaction:t\n\n\0");
    let out = h.ok("ABORT\ntransaction:t\nreceipt:x\n\n\0");
    assert_eq!(receipts(&out), ["x"]);
    assert_eq!(h.p.acks.pending(), 1);
}

#[test]
fn transaction_errors_and_bounds() {
    let mut h = Harness::connected("1.2");
    let (m, _, r) =
        h.refused("SEND\ndestination:/app/market/A/chat\ntransaction:nope\nreceipt:q\n\nx\0");
    assert_eq!(m, "unknown transaction");
    assert_eq!(r.as_deref(), Some("q"));

    let mut h = Harness::connected("1.2");
    h.ok("BEGIN\ntransaction:a\n\n\0");
    assert_eq!(
        h.refused("BEGIN\ntransaction:a\n\n\0").0,
        "transaction already begun"
    );

    let mut h = Harness::connected("1.2");
    h.ok("BEGIN\ntransaction:a\n\n\0");
    h.ok("BEGIN\ntransaction:b\n\n\0");
    assert_eq!(
        h.refused("BEGIN\ntransaction:c\n\n\0").0,
        "too many transactions"
    );

    let mut h = Harness::connected("1.2");
    delivered(&mut h, "client-individual", 1);
    h.ok("BEGIN\ntransaction:a\n\n\0");
    assert_eq!(
        h.refused("ACK\nid:5\ntransaction:a\n\n\0").0,
        "unknown message",
        "an ACK is checked when it arrives, not at COMMIT"
    );

    let mut h = Harness::connected("1.2");
    delivered(&mut h, "client-individual", 1);
    h.ok("BEGIN\ntransaction:a\n\n\0");
    for _ in 0..3 {
        h.ok("ACK\nid:0\ntransaction:a\n\n\0");
    }
    assert_eq!(
        h.refused("ACK\nid:0\ntransaction:a\n\n\0").0,
        "transaction too large"
    );
}

#[test]
fn commit_is_all_or_nothing() {
    let mut h = Harness::connected("1.2");
    delivered(&mut h, "client-individual", 2);
    h.ok("BEGIN\ntransaction:t\n\n\0");
    h.ok("SEND\ndestination:/app/market/A/chat\ntransaction:t\n\nhi\0");
    h.ok("ACK\nid:0\ntransaction:t\n\n\0");
    // Settled outside the transaction before COMMIT: the staged ACK now names nothing.
    h.ok("ACK\nid:0\n\n\0");
    let (out, r) = h.run("COMMIT\ntransaction:t\n\n\0");
    assert!(r.is_err());
    assert!(out.is_empty(), "nothing produced: {out:?}");
}

#[test]
fn chat_refusals_are_errors_with_reasons() {
    let mut h = Harness::connected("1.2");
    let (m, body, _) = h.refused("SEND\ndestination:/topic/market/A\n\nhi\0");
    assert_eq!(m, "unknown destination");
    assert!(body.contains("/app/market/<market-id>/chat"), "{body}");

    let mut h = Harness::connected("1.2");
    let (m, _, _) =
        h.refused("SEND\ndestination:/app/market/A/chat\nevent-type:chat.modify\n\n{\"id\":\"x\",\"text\":\"y\"}\0");
    assert_eq!(m, "forbidden", "an unknown message cannot be changed");

    let mut h = Harness::connected("1.2");
    let (m, _, _) = h.refused("SEND\ndestination:/app/market/A/chat\nevent-type:chat.shout\n\nx\0");
    assert_eq!(m, "invalid chat message");
}

#[test]
fn traceparent_crosses_from_send_to_record() {
    let mut h = Harness::connected("1.2");
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let out = h.ok(&format!(
        "SEND\ndestination:/app/market/A/chat\ntraceparent:{tp}\n\nhi\0"
    ));
    let [Effect::Produce { records, .. }] = &out[..] else {
        panic!("{out:?}");
    };
    assert!(
        records[0]
            .headers
            .contains(&("traceparent".into(), tp.into()))
    );
    let out = h.ok("SEND\ndestination:/app/market/A/chat\ntraceparent:bogus\n\nhi\0");
    let [Effect::Produce { records, .. }] = &out[..] else {
        panic!("{out:?}");
    };
    assert!(!records[0].headers.iter().any(|(k, _)| k == "traceparent"));
}

#[test]
fn token_refresh_needs_authentication() {
    let mut h = Harness::connected("1.2");
    let (m, _, _) = h.refused("SEND\ndestination:/app/session/token\n\nnot-a-token\0");
    assert_eq!(
        m, "token refresh refused",
        "without JWT there is nothing to refresh"
    );
}

#[test]
fn history_and_resume_headers_become_the_replay() {
    let mut h = Harness::connected("1.2");
    let out = h.ok("SUBSCRIBE\nid:0\ndestination:/topic/market/A\nx-history:20\n\n\0");
    assert!(matches!(
        &out[..],
        [Effect::Subscribe {
            replay: Replay::Last(20),
            ..
        }]
    ));
    let out = h.ok(
        "SUBSCRIBE\nid:1\ndestination:/topic/market/B\nx-history:5\nx-resume-after:trades-0-9,chat-2-1\nreceipt:r\n\n\0",
    );
    let [
        Effect::Subscribe {
            replay: Replay::After(c),
            receipt,
            ..
        },
    ] = &out[..]
    else {
        panic!("{out:?}");
    };
    assert_eq!(c.len(), 2);
    assert_eq!(receipt.as_deref(), Some("r"));
    let mut h = Harness::connected("1.2");
    assert_eq!(
        h.refused("SUBSCRIBE\nid:0\ndestination:/topic/market/A\nx-history:lots\n\n\0")
            .0,
        "invalid x-history"
    );
    let mut h = Harness::connected("1.2");
    assert_eq!(
        h.refused("SUBSCRIBE\nid:0\ndestination:/topic/market/A\nx-resume-after:yesterday\n\n\0")
            .0,
        "invalid x-resume-after"
    );
}
