//! The Kafka bus: every replica consumes the configured topics with its own consumer group
//! (prefix-host-random, `auto.offset.reset=latest`, no offset commits), so every replica
//! sees every record; client SENDs are produced with `acks=all` and idempotence, and the
//! send future resolves only when the broker acknowledged the record.

use super::{Bus, InboundRecord, OutboundRecord, RecordSink, SendError, SendFuture};
use crate::metrics::Metrics;
use rdkafka::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::statistics::Statistics;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Settings of the Kafka bus.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    pub brokers: String,
    pub group_prefix: String,
    pub topics: Vec<String>,
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
    group_id: String,
    ready: Arc<AtomicBool>,
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
    /// Creates the producer and starts the consumer task and the readiness probe. Kafka
    /// need not be up: both connect when it comes.
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
        let topics: Vec<&str> = settings.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;

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
        let producer: FutureProducer<GatewayContext> =
            producer_config.create_with_context(GatewayContext {
                metrics: metrics.clone(),
            })?;

        let ready = Arc::new(AtomicBool::new(false));
        let consumer = Arc::new(consumer);
        tokio::spawn(consume(consumer.clone(), sink, shutdown.clone()));
        tokio::spawn(probe(consumer, ready.clone(), shutdown));
        tracing::info!(%group_id, brokers = %settings.brokers, topics = ?settings.topics, "kafka bus started");
        Ok(KafkaBus {
            producer,
            group_id,
            ready,
            send_timeout: settings.send_timeout,
        })
    }
}

async fn consume(
    consumer: Arc<StreamConsumer<GatewayContext>>,
    sink: Arc<dyn RecordSink>,
    shutdown: CancellationToken,
) {
    loop {
        let message = tokio::select! {
            _ = shutdown.cancelled() => return,
            m = consumer.recv() => m,
        };
        match message {
            Ok(m) => {
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .filter_map(|Header { key, value }| {
                                Some((
                                    key.to_string(),
                                    String::from_utf8_lossy(value?).into_owned(),
                                ))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let record = InboundRecord {
                    topic: m.topic().to_string(),
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(bytes::Bytes::copy_from_slice),
                    headers,
                    value: bytes::Bytes::copy_from_slice(m.payload().unwrap_or_default()),
                    timestamp_ms: m
                        .timestamp()
                        .to_millis()
                        .unwrap_or_else(crate::clock::now_ms),
                };
                sink.record(&record, "kafka");
            }
            Err(error) => {
                tracing::warn!(%error, "kafka consume error; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Readiness: the broker answers a metadata request.
async fn probe(
    consumer: Arc<StreamConsumer<GatewayContext>>,
    ready: Arc<AtomicBool>,
    shutdown: CancellationToken,
) {
    loop {
        let c = consumer.clone();
        let ok = tokio::task::spawn_blocking(move || {
            c.fetch_metadata(None, Duration::from_secs(2))
                .map(|m| !m.brokers().is_empty())
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        if ok != ready.swap(ok, Ordering::Relaxed) {
            if ok {
                tracing::info!("kafka reachable: ready");
            } else {
                tracing::warn!("kafka unreachable: not ready; clients stay connected");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

impl Bus for KafkaBus {
    fn name(&self) -> &'static str {
        "kafka"
    }

    fn send(&self, record: OutboundRecord) -> SendFuture {
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
        for (k, v) in &record.headers {
            headers = headers.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            });
        }
        let future = FutureRecord::to(&record.topic)
            .key(&record.key)
            .payload(&record.value[..])
            .headers(headers);
        let timeout = self.send_timeout;
        match self.producer.send_result(future) {
            Err((
                KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                _,
            )) => Box::pin(async { Err(SendError::QueueFull) }),
            Err((e, _)) => {
                let msg = e.to_string();
                Box::pin(async move { Err(SendError::Rejected(msg)) })
            }
            Ok(delivery) => Box::pin(async move {
                let ms = timeout.as_millis() as u64;
                match tokio::time::timeout(timeout + Duration::from_millis(500), delivery).await {
                    Err(_) => Err(SendError::Timeout(ms)),
                    Ok(Err(_canceled)) => Err(SendError::Rejected("producer closed".into())),
                    Ok(Ok(Err((
                        KafkaError::MessageProduction(
                            rdkafka::types::RDKafkaErrorCode::MessageTimedOut,
                        ),
                        _,
                    )))) => Err(SendError::Timeout(ms)),
                    Ok(Ok(Err((e, _)))) => Err(SendError::Rejected(e.to_string())),
                    Ok(Ok(Ok(_delivery))) => Ok(()),
                }
            }),
        }
    }

    fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    fn group_id(&self) -> Option<String> {
        Some(self.group_id.clone())
    }
}
