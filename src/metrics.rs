//! Prometheus metrics of the gateway, exported on `/metrics`.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    /// Open transport connections (WebSocket and TCP).
    pub connections: IntGauge,
    /// Connections accepted since start, by transport.
    pub connections_total: IntCounterVec,
    /// STOMP sessions (after CONNECTED), by protocol version.
    pub sessions: IntGaugeVec,
    /// Active subscriptions.
    pub subscriptions: IntGauge,
    /// Publications received from the bus, by source (`kafka`, `local`, `demo`).
    pub publications_in: IntCounterVec,
    /// MESSAGE frames queued to clients (or written by the publisher).
    pub messages_out: IntCounter,
    /// Of those, written to the client's socket by the publisher (`--direct-writes`).
    pub direct_writes: IntCounter,
    /// Bytes written to clients.
    pub bytes_out: IntCounter,
    /// Transport writes (batches) to clients.
    pub writes: IntCounter,
    /// Market ticks replaced by newer ones for slow clients.
    pub conflated: IntCounter,
    /// Messages not queued because the client's outbox overflowed or had closed.
    pub dropped: IntCounter,
    /// Connections closed, by reason (see `Disconnect`).
    pub disconnects: IntCounterVec,
    /// Connections and requests refused or closed at the connection edge, by reason.
    pub refused: IntCounterVec,
    /// ERROR frames sent to clients, by reason.
    pub errors: IntCounterVec,
    /// Inbound records skipped, by reason.
    pub records_skipped: IntCounterVec,
    /// HTTP API requests refused, by reason.
    pub api_refusals: IntCounterVec,
    /// Client SENDs handed to the bus, by result (`ok`, `error`, `timeout`, `rejected`).
    pub sends: IntCounterVec,
    /// Kafka consumer lag summed over assigned partitions.
    pub kafka_lag: IntGauge,
    /// Delay from the event timestamp to the write to the socket, seconds.
    pub delivery_delay: Histogram,
    /// Bytes of per-destination history kept in memory.
    pub history_bytes: IntGauge,
    /// Destinations whose whole history was dropped to stay under the byte cap.
    pub history_evictions: IntCounter,
    /// Messages sent from history on SUBSCRIBE (`x-history`, `x-resume-after`).
    pub replayed: IntCounter,
    /// Resumes by outcome (`recovered`, `gap`).
    pub resumes: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new_custom(Some("stompgate".into()), None)
            .expect("metrics registry prefix is valid");
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let counter_vec = |name: &str, help: &str, label: &str| {
            let c = IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let sessions = IntGaugeVec::new(
            Opts::new("sessions", "STOMP sessions by protocol version"),
            &["version"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(sessions.clone()))
            .expect("unique metric");
        let delivery_delay = Histogram::with_opts(
            HistogramOpts::new(
                "delivery_delay_seconds",
                "Delay from the event timestamp to the socket write",
            )
            .buckets(vec![
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
        )
        .expect("valid metric");
        registry
            .register(Box::new(delivery_delay.clone()))
            .expect("unique metric");
        Metrics {
            connections: gauge("connections", "Open transport connections"),
            connections_total: counter_vec(
                "connections_total",
                "Connections accepted, by transport",
                "transport",
            ),
            sessions,
            subscriptions: gauge("subscriptions", "Active subscriptions"),
            publications_in: counter_vec(
                "publications_in_total",
                "Publications received from the bus, by source",
                "source",
            ),
            messages_out: counter("messages_out_total", "MESSAGE frames queued to clients"),
            direct_writes: counter(
                "direct_writes_total",
                "MESSAGE frames the publisher wrote to an idle client's socket itself",
            ),
            bytes_out: counter("bytes_out_total", "Bytes written to clients"),
            writes: counter("writes_total", "Batched transport writes to clients"),
            conflated: counter(
                "conflated_total",
                "Market ticks replaced by newer ones for slow clients",
            ),
            dropped: counter(
                "dropped_total",
                "Messages not queued because the client's outbox overflowed or had closed",
            ),
            disconnects: counter_vec(
                "disconnects_total",
                "Connections closed, by reason",
                "reason",
            ),
            refused: counter_vec(
                "refused_total",
                "Connections and requests refused or closed at the connection edge, by reason",
                "reason",
            ),
            errors: counter_vec("errors_total", "ERROR frames sent, by reason", "reason"),
            records_skipped: counter_vec(
                "records_skipped_total",
                "Inbound records skipped, by reason",
                "reason",
            ),
            api_refusals: counter_vec(
                "api_refusals_total",
                "HTTP API requests refused, by reason",
                "reason",
            ),
            sends: counter_vec(
                "sends_total",
                "Client SENDs handed to the bus, by result",
                "result",
            ),
            kafka_lag: gauge(
                "kafka_consumer_lag",
                "Kafka consumer lag summed over assigned partitions",
            ),
            delivery_delay,
            history_bytes: gauge("history_bytes", "Bytes of per-destination history kept"),
            history_evictions: counter(
                "history_evictions_total",
                "Destinations whose history was dropped to stay under --history-bytes",
            ),
            replayed: counter(
                "replayed_total",
                "Messages sent from history on SUBSCRIBE (x-history, x-resume-after)",
            ),
            resumes: counter_vec(
                "resumes_total",
                "SUBSCRIBEs with x-resume-after, by outcome (recovered, gap)",
                "outcome",
            ),
            registry,
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding cannot fail");
        String::from_utf8(out).expect("prometheus text is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
