use super::*;

fn file(text: &str) -> tempfile_path::Path {
    tempfile_path::Path::new(text)
}

mod tempfile_path {
    pub struct Path(pub std::path::PathBuf);
    impl Path {
        pub fn new(text: &str) -> Path {
            let p = std::env::temp_dir().join(format!(
                "stompgate-config-{}-{}.toml",
                std::process::id(),
                rand::random::<u32>()
            ));
            std::fs::write(&p, text).unwrap();
            Path(p)
        }
        pub fn arg(&self) -> String {
            format!("--config={}", self.0.display())
        }
    }
    impl Drop for Path {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

#[test]
fn flags_win_over_the_file_which_fills_the_rest() {
    let f =
        file("port = 9001\ndemo-rate = 7.5\ndemo-markets = [\"A-B\", \"C-D\"]\nws-batch = false\n");
    let c = Config::load(["stompgate", &f.arg(), "--port", "9002"]).unwrap();
    assert_eq!(c.port, 9002);
    assert_eq!(c.demo_rate, 7.5);
    assert_eq!(c.demo_markets, ["A-B", "C-D"]);
    assert!(!c.ws_batch);
}

#[test]
fn invalid_settings_name_the_setting() {
    let f = file("prot = 1\n");
    let e = Config::load(["stompgate", &f.arg()]).unwrap_err();
    assert!(e.contains("unknown setting 'prot'"), "{e}");
    let f = file("port = \"eighty\"\n");
    let e = Config::load(["stompgate", &f.arg()]).unwrap_err();
    assert!(e.contains("--port"), "{e}");
    let invalid = |args: &[&str]| {
        let c = Config::load(["stompgate"].iter().chain(args)).unwrap();
        c.validate().unwrap_err()
    };
    let e = invalid(&["--outbox-bytes", "10"]);
    assert!(e.contains("--outbox-bytes"), "{e}");
    let e = invalid(&["--demo-markets", "bad id"]);
    assert!(e.contains("--demo-markets"), "{e}");
    let e = Config::load(["stompgate", "--kafka-config", "novalue"]).unwrap_err();
    assert!(
        e.contains("--kafka-config") && e.contains("key=value"),
        "{e}"
    );
    let c = Config::load([
        "stompgate",
        "--kafka-config",
        "security.protocol=SASL_SSL,sasl.mechanisms=PLAIN",
        "--kafka-producer-config",
        "linger.ms=0",
    ])
    .unwrap();
    assert_eq!(c.kafka_config.len(), 2);
    assert_eq!(c.kafka_producer_config, [("linger.ms".into(), "0".into())]);
    let e = Config::load(["stompgate", "--config", "/nonexistent.toml"]).unwrap_err();
    assert!(e.contains("cannot read"), "{e}");
}

#[test]
fn routes_come_from_the_config_file() {
    let f = file(
        r#"
kafka-brokers = "k:9092"
[[routes.inbound]]
topic = "topic-upbit"
destination = "/topic/market/{key}"
conflatable = true

[[routes.send]]
destination = "/app/order/{market}"
topic = "orders"
key = "{market}"
event-types = ["order.new"]
allow = "any"
"#,
    );
    let c = Config::load(["stompgate", &f.arg()]).unwrap();
    assert_eq!(c.kafka_brokers.as_deref(), Some("k:9092"));
    let r = c.router().unwrap();
    assert_eq!(r.topics(), ["trades", "chat", "topic-upbit"]);
    let send = r.send_route("/app/order/KRW-BTC").unwrap();
    assert_eq!(send.topic, "orders");
    // Without a [routes] table the routes are today's.
    let r = Config::load(["stompgate"]).unwrap().router().unwrap();
    assert_eq!(r.topics(), ["trades", "chat"]);
    assert!(r.send_route("/app/market/KRW-BTC/chat").is_none());
}

#[test]
fn the_example_routes_load() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/routes.toml");
    let c = Config::load(["stompgate", "--config", path]).unwrap();
    let r = c.router().unwrap();
    assert_eq!(
        r.topics(),
        ["trades", "chat", "topic-upbit", "topic-bithumb", "fills"]
    );
    assert!(r.check_subscribe("/topic/fills/upbit/*").is_ok());
    assert!(r.send_route("/app/order/KRW-BTC").is_some());
}

#[test]
fn bad_routes_name_the_route_and_the_placeholder() {
    let router_err = |text: &str| {
        let f = file(text);
        match Config::load(["stompgate", &f.arg()]) {
            Ok(c) => c.router().unwrap_err(),
            Err(e) => e,
        }
    };
    let e = router_err("[[routes.inbound]]\ntopic = \"t\"\ndestination = \"/topic/market/{id}\"\n");
    assert!(
        e.contains("topic 't'") && e.contains("unknown placeholder '{id}'"),
        "{e}"
    );
    let e = router_err(
        "[[routes.send]]\ndestination = \"/app/order/{market}\"\ntopic = \"orders\"\nkey = \"{mkt}\"\nevent-types = [\"o\"]\n",
    );
    assert!(
        e.contains("'/app/order/{market}'") && e.contains("unknown placeholder '{mkt}'"),
        "{e}"
    );
    let e = router_err(
        "[[routes.send]]\ndestination = \"/app/o/{m}\"\ntopic = \"o\"\nkey = \"{m}\"\nevent-types = [\"o\"]\nallow = \"authenticated\"\n",
    );
    assert!(e.contains("needs authentication on"), "{e}");
    let e = router_err("[[routes.inbound]]\ntopic = \"t\"\ndestnation = \"/x\"\n");
    assert!(e.contains("[routes]") && e.contains("destnation"), "{e}");
}
