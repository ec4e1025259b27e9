use super::*;

fn rec(topic: &str, key: Option<&str>, value: &str) -> InboundRecord {
    InboundRecord {
        topic: topic.into(),
        partition: 2,
        offset: 41,
        key: key.map(|k| Bytes::from(k.to_string())),
        headers: vec![],
        value: Bytes::from(value.to_string()),
        timestamp_ms: 1_700_000_000_000,
    }
}

#[test]
fn per_exchange_trade_topics() {
    let r = Router::defaults("trades", "chat").with_trade_topics(&[
        "topic-upbit".into(),
        "trades".into(),
        "".into(),
    ]);
    assert_eq!(r.topics(), ["trades", "chat", "topic-upbit"]);
    let p = r
        .publication(&rec("topic-upbit", Some("KRW-BTC"), "{}"))
        .unwrap();
    assert_eq!(&*p.destination, "/topic/market/KRW-BTC");
    assert_eq!(p.event_type, "trade");
    assert!(p.conflatable);
}

#[test]
fn trade_record_routes_by_key() {
    let r = Router::defaults("trades", "chat");
    let p = r
        .publication(&rec("trades", Some("KRW-BTC"), "{}"))
        .unwrap();
    assert_eq!(&*p.destination, "/topic/market/KRW-BTC");
    assert_eq!(p.event_type, "trade");
    assert_eq!(p.message_id, "trades-2-41");
    assert!(p.conflatable);
}

#[test]
fn chat_record_takes_event_type_header() {
    let r = Router::defaults("trades", "chat");
    let mut record = rec("chat", Some("KRW-BTC"), "{}");
    record
        .headers
        .push(("event-type".into(), "chat.delete".into()));
    let p = r.publication(&record).unwrap();
    assert_eq!(p.event_type, "chat.delete");
    assert!(!p.conflatable);
    let p = r.publication(&rec("chat", Some("KRW-BTC"), "{}")).unwrap();
    assert_eq!(p.event_type, "chat.send");
}

#[test]
fn records_without_key_or_route_are_skipped() {
    let r = Router::defaults("trades", "chat");
    assert_eq!(
        r.publication(&rec("trades", None, "{}")).unwrap_err(),
        SkipReason::NoKey
    );
    assert!(matches!(
        r.publication(&rec("other", Some("a"), "{}")).unwrap_err(),
        SkipReason::NoRoute(_)
    ));
    assert!(matches!(
        r.publication(&rec("trades", Some("bad key"), "{}"))
            .unwrap_err(),
        SkipReason::BadMarket(_)
    ));
}

#[test]
fn json_field_template() {
    let r = Router::new(
        vec![Route {
            topic: "ticks".into(),
            destination: "/topic/market/{json.symbol}".into(),
            event_type: EventType::Fixed("tick".into()),
            conflatable: true,
        }],
        1024,
    )
    .unwrap();
    let p = r
        .publication(&rec("ticks", None, r#"{"symbol":"KRW-SOL"}"#))
        .unwrap();
    assert_eq!(&*p.destination, "/topic/market/KRW-SOL");
    assert!(matches!(
        r.publication(&rec("ticks", None, "{}")).unwrap_err(),
        SkipReason::MissingField(_)
    ));
    let big = "x".repeat(2000);
    assert!(matches!(
        r.publication(&rec("ticks", None, &big)).unwrap_err(),
        SkipReason::TooLarge(2000)
    ));
}

#[test]
fn a_bad_inbound_route_names_its_topic() {
    let e = Router::new(
        vec![Route {
            topic: "t".into(),
            destination: "/topic/{market}".into(),
            event_type: EventType::Fixed("trade".into()),
            conflatable: true,
        }],
        1024,
    )
    .unwrap_err();
    assert!(
        e.starts_with("inbound route of topic 't': destination '/topic/{market}' unknown placeholder '{market}'"),
        "{e}"
    );
}

#[test]
fn a_bad_send_route_names_its_pattern() {
    let e = SendRoute::new(
        "/app/order/{market}",
        "orders",
        "{id}",
        vec!["o".into()],
        Senders::Any,
    )
    .unwrap_err();
    assert!(
        e.starts_with("SEND route '/app/order/{market}': key '{id}' unknown placeholder '{id}'"),
        "{e}"
    );
    let e = SendRoute::new(
        "/topic/x/{m}",
        "orders",
        "{m}",
        vec!["o".into()],
        Senders::Any,
    )
    .unwrap_err();
    assert!(e.contains("under /app/"), "{e}");
    let e = SendRoute::new("/app/x/{m}", "orders", "{m}", vec![], Senders::Any).unwrap_err();
    assert!(e.contains("event-types"), "{e}");
}

#[test]
fn send_route_builds_the_record() {
    let route = SendRoute::new(
        "/app/order/{market}",
        "orders",
        "{market}",
        vec!["order.new".into(), "order.cancel".into()],
        Senders::Permission,
    )
    .unwrap();
    let r = Router::defaults("trades", "chat").with_send(vec![route]);
    assert!(r.send_route("/app/market/KRW-BTC/chat").is_none());
    assert!(r.send_route("/app/order/bad id").is_none());
    assert!(r.send_route("/app/order/KRW-BTC/x").is_none());
    let route = r.send_route("/app/order/KRW-BTC").unwrap();
    let rec = route
        .record("/app/order/KRW-BTC", None, br#"{"qty":"1"}"#, "alice")
        .unwrap();
    assert_eq!(rec.topic, "orders");
    assert_eq!(rec.key, "KRW-BTC");
    assert_eq!(&rec.value[..], br#"{"qty":"1"}"#);
    assert_eq!(
        rec.headers,
        [
            ("event-type".to_string(), "order.new".to_string()),
            ("user".to_string(), "alice".to_string())
        ]
    );
    let rec = route
        .record("/app/order/KRW-BTC", Some("order.cancel"), b"{}", "alice")
        .unwrap();
    assert_eq!(rec.headers[0].1, "order.cancel");
    let e = route
        .record("/app/order/KRW-BTC", Some("order.steal"), b"{}", "alice")
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "event type 'order.steal' is not accepted on '/app/order/KRW-BTC': use one of order.new, order.cancel"
    );
}

#[test]
fn configured_inbound_routes_add_to_and_replace_the_defaults() {
    let r = Router::defaults("trades", "chat")
        .with_inbound(vec![
            Route {
                topic: "topic-upbit".into(),
                destination: "/topic/market/{key}".into(),
                event_type: EventType::Fixed("trade".into()),
                conflatable: true,
            },
            Route {
                topic: "trades".into(),
                destination: "/topic/ticks/{json.exchange}/{key}".into(),
                event_type: EventType::Fixed("tick".into()),
                conflatable: true,
            },
        ])
        .unwrap();
    assert_eq!(r.topics(), ["chat", "topic-upbit", "trades"]);
    let twice = Router::defaults("trades", "chat").with_inbound(vec![
        Route {
            topic: "t".into(),
            destination: "/topic/a/{key}".into(),
            event_type: EventType::Fixed("trade".into()),
            conflatable: true,
        };
        2
    ]);
    assert!(twice.unwrap_err().contains("two inbound routes"));
    let p = r
        .publication(&rec("trades", Some("KRW-BTC"), r#"{"exchange":"upbit"}"#))
        .unwrap();
    assert_eq!(&*p.destination, "/topic/ticks/upbit/KRW-BTC");
    assert_eq!(p.event_type, "tick");
    assert!(r.check_subscribe("/topic/ticks/upbit/KRW-BTC").is_ok());
    assert!(r.check_subscribe("/topic/ticks/upbit/*").is_ok());
    assert!(r.check_subscribe("/topic/market/KRW-ETH").is_ok());
    let e = r
        .check_subscribe("/topic/orders/x")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("/topic/ticks/<id>/<id> or /topic/ticks/<id>/*"),
        "{e}"
    );
}
