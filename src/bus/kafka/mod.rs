//! The Kafka bus: every replica reads every partition of the configured topics itself, by
//! `assign()` (no consumer group is joined, so there is no rebalance and nothing to wait
//! for), so every replica sees every record; client SENDs are produced with `acks=all` and
//! idempotence, and the send future resolves only when the broker acknowledged the record.
//!
//! At start each partition is read from `end - history_records` to warm the history; those
//! records are older than anything live and go to `RecordSink::history`. The bus is ready only
//! once every partition of every topic is assigned and read up to the end it had at start,
//! and the broker answers: a record produced after that reaches subscribers.

mod consume;
mod produce;
mod read_back;

use super::{Bus, LogRange, OutboundRecord, ReadFuture, RecordSink, SendFuture};
use crate::metrics::Metrics;
use consume::{ConsumerState, probe};
pub use produce::{message_timeout, produce};
use rdkafka::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureProducer;
use rdkafka::statistics::Statistics;
use read_back::ReadBacks;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Settings of the Kafka bus.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    pub brokers: String,
    pub group_prefix: String,
    pub topics: Vec<String>,
    /// Records per partition read back at start to warm the history (0: none).
    pub history_records: i64,
    pub send_timeout: Duration,
    /// librdkafka settings applied over the gateway's own, consumer and producer.
    pub consumer_config: Vec<(String, String)>,
    pub producer_config: Vec<(String, String)>,
}

fn apply(config: &mut ClientConfig, settings: &[(String, String)]) {
    for (k, v) in settings {
        config.set(k, v);
    }
}

/// Routes librdkafka's logs and statistics into tracing and metrics.
struct GatewayContext {
    metrics: Arc<Metrics>,
}

impl ClientContext for GatewayContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => tracing::error!(target: "librdkafka", fac, "{message}"),
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", fac, "{message}"),
            _ => tracing::debug!(target: "librdkafka", fac, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", %error, "{reason}; retrying in the background");
    }

    fn stats(&self, statistics: Statistics) {
        let lag: i64 = statistics
            .topics
            .values()
            .flat_map(|t| t.partitions.iter())
            .filter(|(p, part)| **p >= 0 && part.consumer_lag >= 0)
            .map(|(_, part)| part.consumer_lag)
            .sum();
        self.metrics.kafka_lag.set(lag);
    }
}

impl ConsumerContext for GatewayContext {}

pub struct KafkaBus {
    producer: FutureProducer<GatewayContext>,
    /// The consumers that read ranges back for resuming clients.
    read_backs: ReadBacks,
    group_id: String,
    state: Arc<ConsumerState>,
    send_timeout: Duration,
}

/// `<prefix>-<host>-<random>`: unique per replica and per start.
pub fn unique_group_id(prefix: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    format!("{prefix}-{host}-{:08x}", rand::random::<u32>())
}

impl KafkaBus {
    /// Creates the producer and starts the consumer (on a thread of its own) and the
    /// readiness probe. Kafka need not be up: both connect when it comes.
    pub fn start(
        settings: KafkaSettings,
        sink: Arc<dyn RecordSink>,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Result<KafkaBus, KafkaError> {
        let group_id = unique_group_id(&settings.group_prefix);
        let mut consumer_config = ClientConfig::new();
        consumer_config
            .set("bootstrap.servers", &settings.brokers)
            .set("group.id", &group_id)
            .set("auto.offset.reset", "latest")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("statistics.interval.ms", "5000")
            .set("fetch.wait.max.ms", "10")
            .set("socket.nagle.disable", "true")
            .set("reconnect.backoff.max.ms", "2000")
            .set_log_level(RDKafkaLogLevel::Warning);
        apply(&mut consumer_config, &settings.consumer_config);
        let consumer: StreamConsumer<GatewayContext> =
            consumer_config.create_with_context(GatewayContext {
                metrics: metrics.clone(),
            })?;

        let mut producer_config = ClientConfig::new();
        producer_config
            .set("bootstrap.servers", &settings.brokers)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "1")
            .set("socket.nagle.disable", "true")
            .set(
                "message.timeout.ms",
                settings.send_timeout.as_millis().to_string(),
            )
            .set("reconnect.backoff.max.ms", "2000")
            .set_log_level(RDKafkaLogLevel::Warning);
        apply(&mut producer_config, &settings.producer_config);
        let send_timeout = message_timeout(&producer_config, settings.send_timeout);
        let producer: FutureProducer<GatewayContext> =
            producer_config.create_with_context(GatewayContext {
                metrics: metrics.clone(),
            })?;

        let mut read_back_config = ClientConfig::new();
        read_back_config
            .set("bootstrap.servers", &settings.brokers)
            .set("group.id", format!("{group_id}-read-back"))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("fetch.wait.max.ms", "10")
            .set_log_level(RDKafkaLogLevel::Warning);
        apply(&mut read_back_config, &settings.consumer_config);
        let state = Arc::new(ConsumerState::default());
        let consumer = Arc::new(consumer);
        consume::start(
            consumer.clone(),
            sink,
            settings.topics.clone(),
            settings.history_records,
            state.clone(),
            shutdown.clone(),
        );
        tokio::spawn(probe(consumer, state.clone(), shutdown));
        tracing::info!(%group_id, brokers = %settings.brokers, topics = ?settings.topics, "kafka bus started");
        Ok(KafkaBus {
            producer,
            read_backs: ReadBacks::new(read_back_config),
            group_id,
            state,
            send_timeout,
        })
    }
}

impl Bus for KafkaBus {
    fn name(&self) -> &'static str {
        "kafka"
    }

    fn send(&self, record: OutboundRecord) -> SendFuture {
        produce(&self.producer, &record, self.send_timeout)
    }

    fn ready(&self) -> bool {
        self.state.reachable.load(Ordering::Relaxed) && self.state.warm.load(Ordering::Relaxed)
    }

    fn group_id(&self) -> Option<String> {
        Some(self.group_id.clone())
    }

    fn read_back(&self, ranges: Vec<LogRange>) -> ReadFuture {
        self.read_backs.read(ranges)
    }
}
