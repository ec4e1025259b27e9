//! The records that cross the bus: what arrives (`InboundRecord`), what a SEND produces
//! (`OutboundRecord`), why a produce failed (`SendError`), and a stretch of one partition to
//! read back (`LogRange`).

use bytes::Bytes;
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

/// Offsets `from..to` (end exclusive) of one partition, to read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRange {
    pub topic: String,
    pub partition: i32,
    pub from: i64,
    pub to: i64,
}
