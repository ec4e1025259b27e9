//! SEND: to the bus through the route that owns the destination (or into a
//! transaction), with the trace context the client sent.

use super::{Effect, Protocol, TOKEN_DESTINATION};
use crate::bus::OutboundRecord;
use crate::chat::Sender;
use crate::clock::now_ms;
use crate::route::Senders;
use crate::session::Close;
use crate::session::context::SessionContext;
use crate::session::rate::TokenBucket;
use crate::session::transactions::TxOp;
use crate::stomp::Frame;
use crate::trace::{TRACEPARENT, valid_traceparent};

impl Protocol {
    pub(super) fn on_send(
        &mut self,
        frame: Frame,
        cx: &SessionContext,
        out: &mut Vec<Effect>,
    ) -> Result<(), Close> {
        let destination = self.required(cx, &frame, "destination")?;
        if destination == TOKEN_DESTINATION {
            return self.on_token_refresh(&frame, cx, out);
        }
        let sends = self.sends.get_or_insert_with(|| {
            Box::new(TokenBucket::new(
                cx.settings.send_rate,
                cx.settings.send_burst,
            ))
        });
        if !sends.take() {
            return Err(self.protocol_error(
                cx,
                "rate_limited",
                "rate limit exceeded",
                &format!(
                    "At most {} SENDs per second (bursts of {}) are allowed per connection; slow down and reconnect.",
                    cx.settings.send_rate, cx.settings.send_burst
                ),
                Some(&frame),
            ));
        }
        let route = cx.ingest.router.send_route(destination);
        match route.map(|r| r.senders) {
            Some(Senders::Any) => {}
            Some(Senders::Authenticated) => self.require_token(cx, destination, &frame)?,
            Some(Senders::Permission) | None => self.authorize(cx, destination, false, &frame)?,
        }
        if let Some(tx) = frame.header("transaction") {
            // Refused before the record is built: an unknown transaction is the error.
            self.transactions(cx)
                .check(tx)
                .map_err(|e| self.tx_error(cx, e, &frame))?;
        }
        let sender = Sender {
            user: &self.user,
            owner: &self.owner,
        };
        let record = match route {
            // A configured SEND route: the body goes to its topic as is.
            Some(route) => route
                .record(
                    destination,
                    frame.header("event-type"),
                    &frame.body,
                    &self.user,
                )
                .map_err(|e| {
                    self.protocol_error(cx, e.label(), "send refused", &e.to_string(), Some(&frame))
                })?,
            None => cx
                .chat
                .record_for_send(
                    destination,
                    frame.header("event-type"),
                    &frame.body,
                    sender,
                    now_ms(),
                )
                .map_err(|e| {
                    let mut detail = e.to_string();
                    let patterns = cx.ingest.router.send_patterns();
                    if e.label() == "bad_destination" && !patterns.is_empty() {
                        detail.push_str(&format!(", or to {}", patterns.join(", ")));
                    }
                    self.protocol_error(cx, e.label(), e.summary(), &detail, Some(&frame))
                })?,
        };
        let record = with_traceparent(record, &frame);
        if let Some(tx) = frame.header("transaction") {
            self.transactions(cx)
                .stage(tx, TxOp::Send(record))
                .map_err(|e| self.tx_error(cx, e, &frame))?;
            Protocol::receipt(&frame, out);
            return Ok(());
        }
        out.push(Effect::Produce {
            records: vec![record],
            receipt: frame.header("receipt").map(str::to_string),
        });
        Ok(())
    }
}

/// Carries a W3C `traceparent` header from the SEND to the produced record, so a trace can
/// cross the gateway. A malformed value is dropped, not forwarded.
pub(super) fn with_traceparent(mut record: OutboundRecord, frame: &Frame) -> OutboundRecord {
    if let Some(tp) = frame.header(TRACEPARENT).filter(|v| valid_traceparent(v)) {
        record.headers.push((TRACEPARENT.into(), tp.to_string()));
    }
    record
}
