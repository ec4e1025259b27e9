//! SUBSCRIBE and UNSUBSCRIBE: permission, the subscription's ack mode, and what history
//! or resume position it starts from.

use super::{Effect, Protocol};
use crate::hub::Replay;
use crate::hub::subscription::{AckMode, Subscription};
use crate::session::Close;
use crate::session::context::SessionContext;
use crate::stomp::{Frame, Version};
use std::sync::Arc;

impl Protocol {
    pub(super) fn on_subscribe(
        &mut self,
        frame: &Frame,
        cx: &SessionContext,
        out: &mut Vec<Effect>,
    ) -> Result<(), Close> {
        let destination = self.required(cx, frame, "destination")?;
        let id = match (frame.header("id"), self.version()) {
            (Some(id), _) => id,
            (None, Version::V1_0) => destination,
            (None, _) => return Err(self.required(cx, frame, "id").unwrap_err()),
        };
        cx.ingest.router.check_subscribe(destination).map_err(|e| {
            self.protocol_error(
                cx,
                "bad_destination",
                "unknown destination",
                &e.to_string(),
                Some(frame),
            )
        })?;
        self.authorize(cx, destination, true, frame)?;
        let ack = AckMode::parse(frame.header("ack")).ok_or_else(|| {
            self.protocol_error(
                cx,
                "bad_ack_mode",
                "invalid ack mode",
                "ack must be auto, client or client-individual.",
                Some(frame),
            )
        })?;
        if self.subs.contains_key(id) {
            return Err(self.protocol_error(
                cx,
                "duplicate_subscription",
                "duplicate subscription id",
                &format!("Subscription id '{id}' is already in use in this session."),
                Some(frame),
            ));
        }
        if let Some(other) = self.subs.values().find(|s| s.destination == destination) {
            return Err(self.protocol_error(
                cx,
                "duplicate_subscription",
                "already subscribed",
                &format!(
                    "This session already subscribes to '{destination}' (id '{}'); one subscription per destination.",
                    other.id
                ),
                Some(frame),
            ));
        }
        let s = &cx.settings;
        let bytes = id.len() + destination.len();
        if self.subs.len() >= s.max_subscriptions
            || self.sub_bytes + bytes > s.max_subscription_bytes
        {
            return Err(self.protocol_error(
                cx,
                "too_many_subscriptions",
                "too many subscriptions",
                &format!(
                    "A session may hold at most {} subscriptions and {} bytes of ids and destinations; UNSUBSCRIBE first.",
                    s.max_subscriptions, s.max_subscription_bytes
                ),
                Some(frame),
            ));
        }
        let sub = Arc::new(Subscription::new(
            self.id,
            id,
            destination,
            self.version(),
            ack,
        ));
        let replay = self.replay(cx, frame)?;
        self.sub_bytes += bytes;
        self.subs.insert(id.to_string(), sub.clone());
        out.push(Effect::Subscribe {
            sub,
            replay,
            receipt: frame.header("receipt").map(str::to_string),
        });
        Ok(())
    }

    /// What a SUBSCRIBE asks to be sent first: `x-resume-after:<cursor>` (everything after
    /// it) or `x-history:<n>` (the n most recent), the former winning when both are given.
    pub(super) fn replay(&self, cx: &SessionContext, frame: &Frame) -> Result<Replay, Close> {
        if let Some(cursor) = frame.header("x-resume-after") {
            return Replay::parse_cursor(cursor).map(Replay::After).ok_or_else(|| {
                self.protocol_error(
                    cx,
                    "bad_resume",
                    "invalid x-resume-after",
                    "x-resume-after takes the message-id (or x-cursor) of the last message received: <topic>-<partition>-<offset>, comma-separated for several partitions.",
                    Some(frame),
                )
            });
        }
        match frame.header("x-history") {
            None => Ok(Replay::Nothing),
            Some(n) => match n.trim().parse::<usize>() {
                Ok(0) => Ok(Replay::Nothing),
                Ok(n) => Ok(Replay::Last(n)),
                Err(_) => Err(self.protocol_error(
                    cx,
                    "bad_history",
                    "invalid x-history",
                    "x-history takes the number of recent messages to send first, e.g. x-history:50.",
                    Some(frame),
                )),
            },
        }
    }

    pub(super) fn on_unsubscribe(
        &mut self,
        frame: &Frame,
        cx: &SessionContext,
        out: &mut Vec<Effect>,
    ) -> Result<(), Close> {
        let id = match (
            frame.header("id"),
            frame.header("destination"),
            self.version(),
        ) {
            (Some(id), _, _) => id,
            (None, Some(dest), Version::V1_0) => dest,
            _ => return Err(self.required(cx, frame, "id").unwrap_err()),
        };
        let Some(sub) = self.subs.remove(id) else {
            return Err(self.protocol_error(
                cx,
                "unknown_subscription",
                "unknown subscription",
                &format!("No subscription with id '{id}' in this session."),
                Some(frame),
            ));
        };
        self.sub_bytes -= sub.id.len() + sub.destination.len();
        sub.deactivate();
        self.acks.forget(&sub);
        out.push(Effect::Unsubscribe(sub));
        Protocol::receipt(frame, out);
        Ok(())
    }
}
