//! Where publications come from and where client SENDs go, behind one interface.
//!
//! `local` is the embedded default (in-process, used with the demo feed); `kafka` consumes
//! the configured topics and produces SENDs with `acks=all`. The rest of the gateway does not
//! know which one runs. The bus knows nothing above it: inbound records go to a
//! [`RecordSink`] (implemented by `ingest::Ingest`), outbound ones come in through [`Bus`].

pub mod kafka;
pub mod local;
pub mod record;

pub use record::{InboundRecord, LogRange, OutboundRecord, SendError};

use std::future::Future;
use std::pin::Pin;

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
    /// Reads `ranges` back from the log, for a client resuming from further back than the
    /// history kept in memory. A bus without a log (the embedded default) has nothing.
    fn read_back(&self, _ranges: Vec<LogRange>) -> ReadFuture {
        Box::pin(async { Err("this bus keeps no log to read back from".to_string()) })
    }
}

/// What a read-back found: the records in order per partition, and whether the ranges were
/// read whole (a very long gap is cut to its newest part).
pub struct ReadBack {
    pub records: Vec<InboundRecord>,
    pub complete: bool,
}

/// A read-back under way, or why it failed.
pub type ReadFuture = Pin<Box<dyn Future<Output = Result<ReadBack, String>> + Send>>;

/// Receives every record the bus consumes, in order per partition.
pub trait RecordSink: Send + Sync {
    /// One live record from `source` (`kafka` or `local`), delivered by its publisher
    /// (the client's session, for the embedded bus).
    fn record(&self, record: &InboundRecord, source: &'static str);
    /// One live record delivered from a thread of the bus's own, outside the gateway's
    /// runtime (the Kafka consumer's): as [`RecordSink::record`], except that no publisher
    /// has said whether it keeps up, so the sink decides.
    fn record_from_own_thread(&self, record: &InboundRecord, source: &'static str) {
        self.record(record, source);
    }
    /// One record read back from the log at start, older than anything live: it fills
    /// history and is not delivered to subscribers as new.
    fn history(&self, record: &InboundRecord, source: &'static str);
    /// The bus starts reading `topic`/`partition` at `offset` (before any of its records).
    fn partition_start(&self, topic: &str, partition: i32, offset: i64);
}
