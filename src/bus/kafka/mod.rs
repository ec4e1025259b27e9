//! The Kafka bus: every replica reads every partition of the configured topics itself, by
//! `assign()` (no consumer group is joined, so there is no rebalance and nothing to wait
//! for), so every replica sees every record; client SENDs are produced with `acks=all` and
//! idempotence, and the send future resolves only when the broker acknowledged the record.
//!
//! At start each partition is read from `end - history_records` to warm the history; those
//! records are older than anything live and go to `RecordSink::history`. The bus is ready only
//! once every partition of every topic is assigned and read up to the end it had at start,
//! and the broker answers: a record produced after that reaches subscribers.

use super::{
    Bus, InboundRecord, LogRange, OutboundRecord, ReadBack, ReadFuture, RecordSink, SendError,
    SendFuture,
};
use crate::metrics::Metrics;
use rdkafka::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
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
    /// Settings of the consumers that read ranges back for resuming clients.
    read_back_config: ClientConfig,
    /// At most this many read-backs at once; a reconnect storm queues behind it.
    read_backs: Arc<tokio::sync::Semaphore>,
    /// Read-back consumers kept connected between read-backs (at most `MAX_READ_BACKS`):
    /// a resume then skips the connection and metadata round trips of a new client.
    idle_readers: Arc<std::sync::Mutex<Vec<BaseConsumer>>>,
    group_id: String,
    state: Arc<ConsumerState>,
    send_timeout: Duration,
}

/// Read-backs running at once.
const MAX_READ_BACKS: usize = 4;
/// Most records one read-back returns; a longer gap is reported as not recovered.
pub const MAX_READ_BACK_RECORDS: i64 = 100_000;
/// Time one read-back may take.
const READ_BACK_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads `ranges` with `consumer`, assigned to them alone (blocking; run on a blocking
/// thread).
fn read_ranges(consumer: &BaseConsumer, ranges: &[LogRange]) -> Result<ReadBack, String> {
    let mut list = TopicPartitionList::new();
    // Per partition: (first offset wanted, end). A consumer used before may still hold a
    // record of its last assignment; one outside the range is skipped.
    let mut left: HashMap<(String, i32), (i64, i64)> = HashMap::new();
    let mut budget = MAX_READ_BACK_RECORDS;
    let mut complete = true;
    for r in ranges.iter().filter(|r| r.to > r.from) {
        let from = r.from.max(r.to - budget);
        complete &= from == r.from;
        budget -= r.to - from;
        list.add_partition_offset(&r.topic, r.partition, Offset::Offset(from))
            .map_err(|e| e.to_string())?;
        left.insert((r.topic.clone(), r.partition), (from, r.to));
        if budget <= 0 {
            complete = false;
            break;
        }
    }
    consumer.assign(&list).map_err(|e| e.to_string())?;
    let deadline = std::time::Instant::now() + READ_BACK_TIMEOUT;
    let mut out = Vec::new();
    while !left.is_empty() {
        if std::time::Instant::now() > deadline {
            return Err(format!(
                "read-back did not finish within {READ_BACK_TIMEOUT:?}"
            ));
        }
        let Some(m) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m.map_err(|e| e.to_string())?;
        let key = (m.topic().to_string(), m.partition());
        let Some((from, end)) = left.get(&key).copied() else {
            continue;
        };
        if m.offset() < from {
            continue;
        }
        if m.offset() < end {
            out.push(inbound(&m));
        }
        if m.offset() + 1 >= end {
            left.remove(&key);
        }
    }
    Ok(ReadBack {
        records: out,
        complete,
    })
}

/// An rdkafka message as the gateway's record.
fn inbound<M: Message>(m: &M) -> InboundRecord {
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
    InboundRecord {
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
    }
}

/// What readiness is made of.
#[derive(Default)]
struct ConsumerState {
    /// The broker answered the last metadata request.
    reachable: AtomicBool,
    /// Every partition of every topic is assigned and read up to its end at start.
    warm: AtomicBool,
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
        tokio::spawn(consume(
            consumer.clone(),
            sink,
            settings.topics.clone(),
            settings.history_records,
            state.clone(),
            shutdown.clone(),
        ));
        tokio::spawn(probe(consumer, state.clone(), shutdown));
        tracing::info!(%group_id, brokers = %settings.brokers, topics = ?settings.topics, "kafka bus started");
        Ok(KafkaBus {
            producer,
            read_back_config,
            read_backs: Arc::new(tokio::sync::Semaphore::new(MAX_READ_BACKS)),
            idle_readers: Arc::default(),
            group_id,
            state,
            send_timeout: settings.send_timeout,
        })
    }
}

/// Where each partition starts, and the end it had at start: `(topic, partition, start, end)`.
type Plan = Vec<(String, i32, i64, i64)>;

/// Finds every partition of `topics` and where to start reading it; `Err` says what is
/// missing (the caller retries).
fn plan(
    consumer: &StreamConsumer<GatewayContext>,
    topics: &[String],
    history_records: i64,
) -> Result<Plan, String> {
    let timeout = Duration::from_secs(5);
    let mut plan = Vec::new();
    for topic in topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), timeout)
            .map_err(|e| format!("metadata of topic {topic}: {e}"))?;
        let t = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .ok_or_else(|| format!("topic {topic} not in the metadata"))?;
        if let Some(e) = t.error() {
            return Err(format!(
                "topic {topic}: {}; create it (the gateway does not create topics)",
                rdkafka::types::RDKafkaErrorCode::from(e)
            ));
        }
        if t.partitions().is_empty() {
            return Err(format!("topic {topic} has no partitions yet"));
        }
        for p in t.partitions() {
            let (low, high) = consumer
                .fetch_watermarks(topic, p.id(), timeout)
                .map_err(|e| format!("offsets of {topic}/{}: {e}", p.id()))?;
            let start = (high - history_records.max(0)).max(low);
            plan.push((topic.clone(), p.id(), start, high));
        }
    }
    Ok(plan)
}

async fn consume(
    consumer: Arc<StreamConsumer<GatewayContext>>,
    sink: Arc<dyn RecordSink>,
    topics: Vec<String>,
    history_records: i64,
    state: Arc<ConsumerState>,
    shutdown: CancellationToken,
) {
    // 1. Every partition and where to start it; retried until the brokers and topics are there.
    let plan = loop {
        let c = consumer.clone();
        let t = topics.clone();
        let planned = tokio::task::spawn_blocking(move || plan(&c, &t, history_records))
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
        match planned {
            Ok(plan) => break plan,
            Err(e) => {
                tracing::warn!(error = %e, "kafka partitions not known yet; not ready, retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    // 2. Assign them all at their start offsets.
    let mut list = TopicPartitionList::new();
    let mut warming: HashMap<(String, i32), i64> = HashMap::new();
    for (topic, partition, start, end) in &plan {
        sink.partition_start(topic, *partition, *start);
        if let Err(e) = list.add_partition_offset(topic, *partition, Offset::Offset(*start)) {
            tracing::error!(%topic, partition, error = %e, "cannot assign partition");
        }
        if end > start {
            warming.insert((topic.clone(), *partition), *end);
        }
    }
    if let Err(e) = consumer.assign(&list) {
        tracing::error!(error = %e, "cannot assign partitions; the bus stays not ready");
        return;
    }
    let history: i64 = plan.iter().map(|(_, _, s, e)| e - s).sum();
    tracing::info!(
        partitions = plan.len(),
        history_records = history,
        "kafka partitions assigned; reading history"
    );
    if warming.is_empty() {
        state.warm.store(true, Ordering::Relaxed);
        tracing::info!("kafka history read (nothing to read)");
    }
    // 3. Read: records before each partition's end at start are history, the rest live.
    loop {
        let message = tokio::select! {
            _ = shutdown.cancelled() => return,
            m = consumer.recv() => m,
        };
        match message {
            Ok(m) => {
                let record = inbound(&m);
                let key = (record.topic.clone(), record.partition);
                match warming.get(&key) {
                    Some(end) if record.offset < *end => {
                        sink.history(&record, "kafka");
                        if record.offset + 1 >= *end {
                            warming.remove(&key);
                        }
                    }
                    _ => {
                        warming.remove(&key);
                        sink.record(&record, "kafka");
                    }
                }
                if !warming.is_empty() || state.warm.load(Ordering::Relaxed) {
                    continue;
                }
                state.warm.store(true, Ordering::Relaxed);
                tracing::info!(
                    records = history,
                    "kafka history read: ready once reachable"
                );
            }
            Err(error) => {
                tracing::warn!(%error, "kafka consume error; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Reachability: the broker answers a metadata request.
async fn probe(
    consumer: Arc<StreamConsumer<GatewayContext>>,
    state: Arc<ConsumerState>,
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
        if ok != state.reachable.swap(ok, Ordering::Relaxed) {
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
        self.state.reachable.load(Ordering::Relaxed) && self.state.warm.load(Ordering::Relaxed)
    }

    fn group_id(&self) -> Option<String> {
        Some(self.group_id.clone())
    }

    fn read_back(&self, ranges: Vec<LogRange>) -> ReadFuture {
        let config = self.read_back_config.clone();
        let permits = self.read_backs.clone();
        let idle = self.idle_readers.clone();
        Box::pin(async move {
            let _permit = permits.acquire_owned().await.map_err(|e| e.to_string())?;
            tokio::task::spawn_blocking(move || {
                let reused = idle.lock().expect("read-back pool poisoned").pop();
                let consumer = match reused {
                    Some(c) => c,
                    None => config.create().map_err(|e| e.to_string())?,
                };
                let result = read_ranges(&consumer, &ranges);
                // Kept for the next read-back only if it ended well and let go of its
                // partitions; otherwise dropped (closed) and the next one starts afresh.
                if result.is_ok() && consumer.unassign().is_ok() {
                    idle.lock().expect("read-back pool poisoned").push(consumer);
                }
                result
            })
            .await
            .map_err(|e| e.to_string())?
        })
    }
}
