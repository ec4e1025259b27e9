//! ACK and NACK of client-acknowledged messages, and the transactions that hold them
//! and SENDs until COMMIT or ABORT.

use super::{Effect, Protocol};
use crate::session::Close;
use crate::session::acks::AckRef;
use crate::session::context::SessionContext;
use crate::session::transactions::TxOp;
use crate::stomp::{Command, Frame, Version};

impl Protocol {
    /// What an ACK or NACK names, from its headers.
    pub(super) fn ack_ref(&self, cx: &SessionContext, frame: &Frame) -> Result<AckRef, Close> {
        if self.version() == Version::V1_2 {
            let id = self.required(cx, frame, "id")?;
            // An id that is not a number names nothing we sent.
            Ok(AckRef::Id(id.parse::<u64>().unwrap_or(u64::MAX)))
        } else {
            Ok(AckRef::Message {
                message_id: self.required(cx, frame, "message-id")?.to_string(),
                subscription: frame.header("subscription").map(str::to_string),
            })
        }
    }

    pub(super) fn unknown_ack(&self, cx: &SessionContext, frame: &Frame) -> Close {
        self.protocol_error(
            cx,
            "unknown_ack",
            "unknown message",
            &format!(
                "{} names no message awaiting acknowledgement in this session.",
                frame.command
            ),
            Some(frame),
        )
    }

    pub(super) fn on_ack(
        &mut self,
        frame: &Frame,
        cx: &SessionContext,
        out: &mut Vec<Effect>,
    ) -> Result<(), Close> {
        let target = self.ack_ref(cx, frame)?;
        if let Some(tx) = frame.header("transaction") {
            // Checked now, applied at COMMIT.
            if !self.acks.knows(&target) {
                return Err(self.unknown_ack(cx, frame));
            }
            let op = TxOp::Ack {
                nack: frame.command == Command::Nack,
                target,
            };
            self.transactions(cx)
                .stage(tx, op)
                .map_err(|e| self.tx_error(cx, e, frame))?;
        } else if self.acks.ack(&target).is_err() {
            return Err(self.unknown_ack(cx, frame));
        }
        Protocol::receipt(frame, out);
        Ok(())
    }

    pub(super) fn on_begin(
        &mut self,
        frame: &Frame,
        cx: &SessionContext,
        out: &mut Vec<Effect>,
    ) -> Result<(), Close> {
        let tx = self.required(cx, frame, "transaction")?;
        self.transactions(cx)
            .begin(tx)
            .map_err(|e| self.tx_error(cx, e, frame))?;
        Protocol::receipt(frame, out);
        Ok(())
    }

    /// Applies a transaction all or nothing: every staged ACK must still name a message
    /// awaiting acknowledgement, or nothing is acknowledged and nothing is produced.
    pub(super) fn on_commit(
        &mut self,
        frame: &Frame,
        cx: &SessionContext,
        out: &mut Vec<Effect>,
    ) -> Result<(), Close> {
        let tx = self.required(cx, frame, "transaction")?;
        let ops = self
            .transactions(cx)
            .end(tx)
            .map_err(|e| self.tx_error(cx, e, frame))?;
        let mut acks = self.acks.clone();
        let mut records = Vec::new();
        for op in ops {
            match op {
                TxOp::Send(record) => records.push(record),
                TxOp::Ack { target, .. } => {
                    if acks.ack(&target).is_err() {
                        return Err(self.protocol_error(
                            cx,
                            "unknown_ack",
                            "transaction failed",
                            "An ACK or NACK in this transaction names no message awaiting acknowledgement any more; nothing in it was applied.",
                            Some(frame),
                        ));
                    }
                }
            }
        }
        self.acks = acks;
        let receipt = frame.header("receipt").map(str::to_string);
        if records.is_empty() {
            if let Some(id) = receipt {
                out.push(Effect::Receipt(id));
            }
        } else {
            out.push(Effect::Produce { records, receipt });
        }
        Ok(())
    }

    pub(super) fn on_abort(
        &mut self,
        frame: &Frame,
        cx: &SessionContext,
        out: &mut Vec<Effect>,
    ) -> Result<(), Close> {
        let tx = self.required(cx, frame, "transaction")?;
        self.transactions(cx)
            .end(tx)
            .map_err(|e| self.tx_error(cx, e, frame))?;
        Protocol::receipt(frame, out);
        Ok(())
    }
}
