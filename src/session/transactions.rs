//! STOMP transactions: BEGIN opens one, SEND and ACK/NACK frames naming it are staged, COMMIT
//! hands the staged operations back in order, ABORT drops them. Bounded per session (open
//! transactions) and per transaction (operations and bytes); staged ACKs keep only the id they
//! name, checked when they arrive, never the frame.

use super::acks::AckRef;
use crate::bus::OutboundRecord;
use std::collections::HashMap;
use thiserror::Error;

/// One staged operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxOp {
    Send(OutboundRecord),
    Ack { nack: bool, target: AckRef },
}

impl TxOp {
    /// Bytes this operation holds, for the transaction's byte bound.
    fn size(&self) -> usize {
        match self {
            TxOp::Send(r) => {
                r.topic.len()
                    + r.key.len()
                    + r.value.len()
                    + r.headers
                        .iter()
                        .map(|(k, v)| k.len() + v.len())
                        .sum::<usize>()
                    + 64
            }
            TxOp::Ack { target, .. } => match target {
                AckRef::Id(_) => 16,
                AckRef::Message {
                    message_id,
                    subscription,
                } => 32 + message_id.len() + subscription.as_ref().map_or(0, String::len),
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TxError {
    #[error("Transaction '{0}' was not begun (or was already committed or aborted).")]
    Unknown(String),
    #[error("Transaction '{0}' is already open.")]
    Duplicate(String),
    #[error("At most {0} transactions may be open at once; COMMIT or ABORT one first.")]
    TooMany(usize),
    #[error(
        "A transaction may hold at most {ops} operations and {bytes} bytes; COMMIT more often."
    )]
    TooLarge { ops: usize, bytes: usize },
}

impl TxError {
    pub fn label(&self) -> &'static str {
        match self {
            TxError::Unknown(_) => "unknown_transaction",
            TxError::Duplicate(_) => "duplicate_transaction",
            TxError::TooMany(_) => "too_many_transactions",
            TxError::TooLarge { .. } => "transaction_too_large",
        }
    }

    pub fn summary(&self) -> &'static str {
        match self {
            TxError::Unknown(_) => "unknown transaction",
            TxError::Duplicate(_) => "transaction already begun",
            TxError::TooMany(_) => "too many transactions",
            TxError::TooLarge { .. } => "transaction too large",
        }
    }
}

#[derive(Debug, Default)]
struct Tx {
    ops: Vec<TxOp>,
    bytes: usize,
}

#[derive(Debug)]
pub struct Transactions {
    open: HashMap<String, Tx>,
    max_open: usize,
    max_ops: usize,
    max_bytes: usize,
}

impl Transactions {
    pub fn new(max_open: usize, max_ops: usize, max_bytes: usize) -> Transactions {
        Transactions {
            open: HashMap::new(),
            max_open,
            max_ops,
            max_bytes,
        }
    }

    pub fn begin(&mut self, id: &str) -> Result<(), TxError> {
        if self.open.contains_key(id) {
            return Err(TxError::Duplicate(id.to_string()));
        }
        if self.open.len() >= self.max_open {
            return Err(TxError::TooMany(self.max_open));
        }
        self.open.insert(id.to_string(), Tx::default());
        Ok(())
    }

    /// Checks that `id` is open (before an operation is built for it).
    pub fn check(&self, id: &str) -> Result<(), TxError> {
        match self.open.contains_key(id) {
            true => Ok(()),
            false => Err(TxError::Unknown(id.to_string())),
        }
    }

    /// Stages `op` in transaction `id`.
    pub fn stage(&mut self, id: &str, op: TxOp) -> Result<(), TxError> {
        let (max_ops, max_bytes) = (self.max_ops, self.max_bytes);
        let tx = self
            .open
            .get_mut(id)
            .ok_or_else(|| TxError::Unknown(id.to_string()))?;
        let size = op.size();
        if tx.ops.len() >= max_ops || tx.bytes + size > max_bytes {
            return Err(TxError::TooLarge {
                ops: max_ops,
                bytes: max_bytes,
            });
        }
        tx.bytes += size;
        tx.ops.push(op);
        Ok(())
    }

    /// Ends transaction `id` (COMMIT or ABORT) and returns its operations in order.
    pub fn end(&mut self, id: &str) -> Result<Vec<TxOp>, TxError> {
        self.open
            .remove(id)
            .map(|tx| tx.ops)
            .ok_or_else(|| TxError::Unknown(id.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(n: usize) -> TxOp {
        TxOp::Send(OutboundRecord {
            topic: "t".into(),
            key: "k".into(),
            headers: vec![],
            value: vec![b'x'; n].into(),
        })
    }

    #[test]
    fn begin_stage_commit_in_order() {
        let mut t = Transactions::new(2, 10, 10_000);
        t.begin("a").unwrap();
        assert_eq!(t.begin("a"), Err(TxError::Duplicate("a".into())));
        t.stage("a", send(1)).unwrap();
        t.stage(
            "a",
            TxOp::Ack {
                nack: false,
                target: AckRef::Id(3),
            },
        )
        .unwrap();
        let ops = t.end("a").unwrap();
        assert_eq!(ops.len(), 2);
        assert!(matches!(ops[1], TxOp::Ack { .. }));
        assert_eq!(t.end("a"), Err(TxError::Unknown("a".into())));
        assert_eq!(t.stage("a", send(1)), Err(TxError::Unknown("a".into())));
    }

    #[test]
    fn bounded_by_count_operations_and_bytes() {
        let mut t = Transactions::new(1, 3, 1_000);
        t.begin("a").unwrap();
        assert_eq!(t.begin("b"), Err(TxError::TooMany(1)));
        t.stage("a", send(10)).unwrap();
        assert!(matches!(
            t.stage("a", send(2_000)),
            Err(TxError::TooLarge { .. })
        ));
        t.stage("a", send(10)).unwrap();
        t.stage("a", send(10)).unwrap();
        assert!(matches!(
            t.stage("a", send(1)),
            Err(TxError::TooLarge { .. })
        ));
    }
}
