//! Reading a range of the log back for a client resuming from further back than the
//! history holds: a short-lived assignment of a plain consumer, at most `MAX_READ_BACKS` at
//! once (a reconnect storm queues behind them), consumers kept between read-backs.

use super::consume::inbound;
use crate::bus::{LogRange, ReadBack, ReadFuture};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

/// Read-backs running at once.
const MAX_READ_BACKS: usize = 4;
/// Most records one read-back returns; a longer gap is reported as not recovered.
const MAX_READ_BACK_RECORDS: i64 = 100_000;
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

/// The read-back consumers of one bus.
pub(super) struct ReadBacks {
    /// Settings of a new read-back consumer.
    config: Arc<ClientConfig>,
    /// At most this many read-backs at once; a reconnect storm queues behind it.
    permits: Arc<Semaphore>,
    /// Consumers kept connected between read-backs (at most `MAX_READ_BACKS`): a resume
    /// then skips the connection and metadata round trips of a new client.
    idle: Arc<Mutex<Vec<BaseConsumer>>>,
}

impl ReadBacks {
    pub(super) fn new(config: ClientConfig) -> ReadBacks {
        ReadBacks {
            config: Arc::new(config),
            permits: Arc::new(Semaphore::new(MAX_READ_BACKS)),
            idle: Arc::default(),
        }
    }

    /// Reads `ranges` on a blocking thread, once a permit is free.
    pub(super) fn read(&self, ranges: Vec<LogRange>) -> ReadFuture {
        let config = self.config.clone();
        let permits = self.permits.clone();
        let idle = self.idle.clone();
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
