//! Where publications come from and where client SENDs go, behind one interface.
//!
//! `local` is the embedded default (in-process, used with the demo feed); `kafka` consumes
//! the configured topics with a per-replica consumer group and produces SENDs with
//! `acks=all`. The rest of the gateway does not know which one runs.

pub mod kafka;
pub mod local;

use crate::hub::Hub;
use crate::ledger::ChatLedger;
use crate::metrics::Metrics;
use crate::route::Router;
use bytes::Bytes;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use thiserror::Error;

/// A record as it arrives from the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Bytes>,
    pub headers: Vec<(String, String)>,
    pub value: Bytes,
    pub timestamp_ms: i64,
}

impl InboundRecord {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A record to produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRecord {
    pub topic: String,
    pub key: String,
    pub headers: Vec<(String, String)>,
    pub value: Bytes,
}

/// Why a SEND did not reach the bus.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SendError {
    /// The broker did not acknowledge in time.
    #[error(
        "the broker did not acknowledge the message within {0} ms; it may not have been stored, retry"
    )]
    Timeout(u64),
    /// The broker refused it or the producer failed.
    #[error("the broker rejected the message: {0}")]
    Rejected(String),
    /// The local producer queue is full.
    #[error("the gateway's producer queue is full; retry shortly")]
    QueueFull,
}

impl SendError {
    pub fn label(&self) -> &'static str {
        match self {
            SendError::Timeout(_) => "timeout",
            SendError::Rejected(_) => "error",
            SendError::QueueFull => "queue_full",
        }
    }
}

/// Resolves when the bus has the record (for Kafka: acknowledged by all in-sync replicas).
pub type SendFuture = Pin<Box<dyn Future<Output = Result<(), SendError>> + Send>>;

pub trait Bus: Send + Sync {
    /// `local` or `kafka`.
    fn name(&self) -> &'static str;
    /// Hands `record` to the bus. The record is queued before this returns, so SENDs of one
    /// session keep their order; the future says when the bus has it.
    fn send(&self, record: OutboundRecord) -> SendFuture;
    /// Whether the bus is connected and delivering.
    fn ready(&self) -> bool;
    /// The consumer group id of this replica, where there is one.
    fn group_id(&self) -> Option<String> {
        None
    }
}

/// Turns inbound records into publications on the hub.
pub struct Ingest {
    pub router: Router,
    pub hub: Arc<Hub>,
    pub metrics: Arc<Metrics>,
    /// Learns chat authors from the chat topic.
    pub ledger: Arc<ChatLedger>,
    pub chat_topic: String,
}

impl Ingest {
    /// Routes and publishes one record; a record that cannot be routed is counted, logged
    /// and skipped.
    pub fn record(&self, record: &InboundRecord, source: &'static str) {
        match self.router.publication(record) {
            Ok(publication) => {
                self.metrics
                    .publications_in
                    .with_label_values(&[source])
                    .inc();
                if record.topic == self.chat_topic {
                    self.ledger.observe(&publication.event_type, &record.value);
                }
                self.hub.publish(&publication);
            }
            Err(reason) => {
                self.metrics
                    .records_skipped
                    .with_label_values(&[reason.label()])
                    .inc();
                tracing::warn!(
                    topic = %record.topic,
                    partition = record.partition,
                    offset = record.offset,
                    %reason,
                    "skipped record"
                );
            }
        }
    }
}
