//! Prometheus metrics of the feed, per exchange, exported on the feed's `/metrics`.

use prometheus::{
    Encoder, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder, core::Collector,
};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

pub struct FeedMetrics {
    registry: Registry,
    /// 1 while the WebSocket to the exchange is open and subscribed.
    pub connected: IntGaugeVec,
    /// Connections lost or refused, after which the feed reconnected.
    pub reconnects: IntCounterVec,
    /// Trades read from the exchange (before de-duplication).
    pub trades_in: IntCounterVec,
    /// Trades dropped as repeats (the SNAPSHOT after a resubscription).
    pub duplicates: IntCounterVec,
    /// Trades handed to Kafka and acknowledged.
    pub produced: IntCounterVec,
    /// Trades Kafka did not take, by exchange.
    pub produce_errors: IntCounterVec,
    /// Error replies and unreadable messages, by exchange and reason.
    pub errors: IntCounterVec,
    /// Seconds since the last trade of each exchange (set on every scrape).
    last_trade_age: prometheus::GaugeVec,
    /// When the last trade arrived, per exchange (std Mutex: never held across an await).
    last_trade: Mutex<HashMap<String, Instant>>,
}

impl FeedMetrics {
    pub fn new() -> FeedMetrics {
        let registry = Registry::new_custom(Some("stompgate_feed".into()), None)
            .expect("metrics registry prefix is valid");
        fn reg<C: Collector + Clone + 'static>(r: &Registry, c: C) -> C {
            r.register(Box::new(c.clone())).expect("unique metric");
            c
        }
        let counter = |name: &str, help: &str, labels: &[&str]| {
            reg(
                &registry,
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        FeedMetrics {
            connected: reg(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "connected",
                        "1 while connected and subscribed to the exchange",
                    ),
                    &["exchange"],
                )
                .expect("valid metric"),
            ),
            reconnects: counter(
                "reconnects_total",
                "Connections lost or refused, then retried",
                &["exchange"],
            ),
            trades_in: counter(
                "trades_in_total",
                "Trades read from the exchange",
                &["exchange"],
            ),
            duplicates: counter(
                "duplicates_dropped_total",
                "Trades dropped as repeats",
                &["exchange"],
            ),
            produced: counter(
                "trades_produced_total",
                "Trades acknowledged by Kafka",
                &["exchange"],
            ),
            produce_errors: counter(
                "produce_errors_total",
                "Trades Kafka did not take",
                &["exchange"],
            ),
            errors: counter(
                "errors_total",
                "Error replies and unreadable messages from the exchange",
                &["exchange", "reason"],
            ),
            last_trade_age: reg(
                &registry,
                prometheus::GaugeVec::new(
                    Opts::new(
                        "last_trade_age_seconds",
                        "Seconds since the last trade from the exchange",
                    ),
                    &["exchange"],
                )
                .expect("valid metric"),
            ),
            last_trade: Mutex::new(HashMap::new()),
            registry,
        }
    }

    pub fn trade_seen(&self, exchange: &str) {
        self.last_trade
            .lock()
            .expect("last_trade lock poisoned")
            .insert(exchange.to_string(), Instant::now());
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        for (exchange, at) in self
            .last_trade
            .lock()
            .expect("last_trade lock poisoned")
            .iter()
        {
            self.last_trade_age
                .with_label_values(&[exchange])
                .set(at.elapsed().as_secs_f64());
        }
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding cannot fail");
        String::from_utf8(out).expect("prometheus text is UTF-8")
    }
}

impl Default for FeedMetrics {
    fn default() -> Self {
        FeedMetrics::new()
    }
}
