//! The live consumer of the Kafka bus: finds every partition of the configured topics,
//! assigns them all (no consumer group, no rebalance), reads each from `end -
//! history_records` as history and the rest as live records, and says when that is done
//! (`warm`); a probe says whether the broker answers (`reachable`). Both make readiness.

use super::GatewayContext;
use crate::bus::{InboundRecord, RecordSink};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What readiness is made of.
#[derive(Default)]
pub(super) struct ConsumerState {
    /// The broker answered the last metadata request.
    pub(super) reachable: AtomicBool,
    /// Every partition of every topic is assigned and read up to its end at start.
    pub(super) warm: AtomicBool,
}

/// An rdkafka message as the gateway's record.
pub(super) fn inbound<M: Message>(m: &M) -> InboundRecord {
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

/// Starts [`consume`] on a thread of its own, with a runtime of its own (one thread), so
/// that a record is taken from librdkafka as soon as it arrives. As a task of the gateway's
/// runtime the consumer, woken from librdkafka's thread, waited in the runtime's shared
/// queue behind the sessions the previous records' fan-outs had woken: at 100,000
/// deliveries/s the first copy of each record trailed a plain consumer by 5.5-18.4 ms at
/// p50, against 4.1-7.6 ms from a thread of its own (7 sittings each, lower in every one;
/// docs/cpu-per-delivery.md). The fan-out then wakes the sessions from outside the
/// runtime, which costs a few percent more CPU per delivery at light load; there, the
/// thread also writes its share of the copies itself (`RecordSink::record_from_own_thread`).
pub(super) fn start(
    consumer: Arc<StreamConsumer<GatewayContext>>,
    sink: Arc<dyn RecordSink>,
    topics: Vec<String>,
    history_records: i64,
    state: Arc<ConsumerState>,
    shutdown: CancellationToken,
) {
    let run = consume(consumer, sink, topics, history_records, state, shutdown);
    let spawned = std::thread::Builder::new()
        .name("kafka-consumer".into())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(run),
                Err(error) => tracing::error!(
                    %error,
                    "cannot start the kafka consumer's runtime; the bus stays not ready"
                ),
            }
        });
    if let Err(error) = spawned {
        tracing::error!(%error, "cannot start the kafka consumer's thread; the bus stays not ready");
    }
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
                        sink.record_from_own_thread(&record, "kafka");
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
pub(super) async fn probe(
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
