//! What the session does with the protocol's effects: replies, subscriptions (with the
//! history or resume they start from), SENDs handed to the bus, and the broker
//! acknowledgements that release receipts in order.

use super::Session;
use crate::bus::{LogRange, ReadBack};
use crate::disconnect::Disconnect;
use crate::hub::publication::Origin;
use crate::hub::{Replay, Subscriber};
use crate::session::Close;
use crate::session::pending::Pending;
use crate::session::protocol::Effect;
use crate::stomp::Frame;
use tokio::time::Instant;

impl Session {
    /// Carries out one effect of the protocol.
    pub(super) fn apply(&mut self, effect: Effect) {
        match effect {
            Effect::Reply(frame) => self.reply(&frame),
            Effect::Subscribe {
                sub,
                replay,
                receipt,
            } => {
                let subscriber = Subscriber {
                    sub,
                    outbox: self.outbox.clone(),
                };
                if let Replay::After(cursor) = &replay {
                    let gaps = self.cx.hub.gaps(&subscriber.sub.destination, cursor);
                    if !gaps.is_empty() {
                        // Older than the history kept: read the gap back from the log first.
                        let ranges = gaps
                            .into_iter()
                            .map(|(topic, partition, from, to)| LogRange {
                                topic: topic.to_string(),
                                partition,
                                from,
                                to,
                            })
                            .collect::<Vec<_>>();
                        let read = self.cx.bus.read_back(ranges.clone());
                        let cursor = cursor.clone();
                        self.pending.push_back(Box::pin(async move {
                            Pending::ReadBack {
                                subscriber,
                                cursor,
                                ranges,
                                receipt,
                                result: read.await,
                            }
                        }));
                        return;
                    }
                }
                let recovered = self.cx.hub.subscribe(subscriber, &replay);
                self.subscribed(receipt, recovered);
            }
            Effect::Unsubscribe(sub) => {
                self.cx.hub.unsubscribe(&sub);
            }
            Effect::Produce { records, receipt } => {
                // Queued to the bus now, in order; acknowledged later.
                let sends: Vec<_> = records.into_iter().map(|r| self.cx.bus.send(r)).collect();
                let metrics = self.cx.metrics.clone();
                self.pending.push_back(Box::pin(async move {
                    let mut result = Ok(());
                    for send in sends {
                        let r = send.await;
                        let label = r.as_ref().map_or_else(|e| e.label(), |_| "ok");
                        metrics.sends.with_label_values(&[label]).inc();
                        if result.is_ok() {
                            result = r;
                        }
                    }
                    Pending::Send { receipt, result }
                }));
            }
            Effect::Receipt(id) => self.receipt(Frame::receipt(&id)),
            Effect::Disconnect(receipt) => {
                self.pending
                    .push_back(Box::pin(async move { Pending::Disconnect(receipt) }));
            }
            Effect::Rearm => {
                self.rearm = true;
                self.expires = self
                    .protocol
                    .expires_in
                    .and_then(|d| Instant::now().checked_add(d));
            }
        }
    }

    /// Answers a SUBSCRIBE's receipt, saying whether a resume was complete.
    pub(super) fn subscribed(&mut self, receipt: Option<String>, recovered: Option<bool>) {
        if let Some(id) = receipt {
            let mut frame = Frame::receipt(&id);
            if let Some(r) = recovered {
                frame = frame.with("x-recovered", if r { "true" } else { "false" });
            }
            self.receipt(frame);
        }
    }

    /// Finishes a resume whose gap was read back: the gap's messages first, then the
    /// history after it and live, as any other subscription.
    pub(super) fn resumed(
        &mut self,
        subscriber: Subscriber,
        cursor: Vec<Origin>,
        ranges: Vec<LogRange>,
        receipt: Option<String>,
        result: Result<ReadBack, String>,
    ) {
        if !subscriber.sub.is_active() {
            return; // unsubscribed (or the session ended) while reading
        }
        let (cursor, complete) = match result {
            Ok(read) => {
                let (msgs, cursor) =
                    self.cx
                        .ingest
                        .read_back(&subscriber.sub.destination, &read.records, &cursor);
                for msg in &msgs {
                    subscriber.outbox.push_replay(&subscriber.sub, msg);
                }
                self.cx.metrics.replayed.inc_by(msgs.len() as u64);
                // Each range read whole is covered up to its end, whatever it held.
                let mut cursor = cursor;
                for r in ranges.iter().filter(|_| read.complete) {
                    if let Some(c) = cursor
                        .iter_mut()
                        .find(|c| c.partition == r.partition && *c.topic == r.topic)
                    {
                        c.offset = c.offset.max(r.to - 1);
                    }
                }
                (cursor, read.complete)
            }
            Err(error) => {
                tracing::warn!(session = self.protocol.id, %error, "read-back for a resume failed; sending what history has");
                (cursor, false)
            }
        };
        let recovered = self
            .cx
            .hub
            .subscribe(subscriber, &Replay::After(cursor))
            .map(|r| r && complete);
        self.subscribed(receipt, recovered);
    }

    /// Sends a RECEIPT now, or after the acknowledgements still pending.
    pub(super) fn receipt(&mut self, frame: Frame) {
        if self.pending.is_empty() {
            self.reply(&frame);
        } else {
            self.pending
                .push_back(Box::pin(async move { Pending::Receipt(frame) }));
        }
    }

    pub(super) fn on_pending(&mut self, done: Pending) -> Result<(), Close> {
        match done {
            Pending::Receipt(frame) => self.reply(&frame),
            Pending::Send {
                receipt,
                result: Ok(()),
            } => {
                if let Some(id) = receipt {
                    self.reply(&Frame::receipt(&id));
                }
            }
            Pending::Send {
                receipt,
                result: Err(e),
            } => {
                self.cx
                    .metrics
                    .errors
                    .with_label_values(&["send_failed"])
                    .inc();
                let mut error = Frame::error("send failed", &e.to_string());
                if let Some(id) = receipt {
                    error.headers.push(("receipt-id".into(), id));
                }
                return Err(Close {
                    reason: Disconnect::ProtocolError,
                    error: Some(error),
                });
            }
            Pending::Disconnect(receipt) => {
                if let Some(id) = receipt {
                    self.reply(&Frame::receipt(&id));
                }
                return Err(Close::quiet(Disconnect::ClientRequest));
            }
            Pending::ReadBack {
                subscriber,
                cursor,
                ranges,
                receipt,
                result,
            } => self.resumed(subscriber, cursor, ranges, receipt, result),
        }
        Ok(())
    }
}
