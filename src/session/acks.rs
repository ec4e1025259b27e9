//! Messages delivered on `client` and `client-individual` subscriptions that await ACK or
//! NACK: ids are assigned when a MESSAGE is written, and ACK/NACK names one (by `ack` id in
//! STOMP 1.2, by `message-id` and `subscription` before). NACK does not redeliver: topic
//! messages are broadcasts, not a work queue.

use crate::hub::subscription::{AckMode, Subscription};
use std::collections::VecDeque;
use std::sync::Arc;
use thiserror::Error;

/// Which delivered message an ACK or NACK names, as read from its headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckRef {
    /// STOMP 1.2: the MESSAGE's `ack` header.
    Id(u64),
    /// STOMP 1.0/1.1: `message-id`, and `subscription` when given.
    Message {
        message_id: String,
        subscription: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AckError {
    #[error("names no message awaiting acknowledgement in this session")]
    Unknown,
}

#[derive(Debug, Clone)]
struct Unacked {
    ack_id: u64,
    sub: Arc<Subscription>,
    message_id: Arc<str>,
}

#[derive(Debug, Clone)]
pub struct Acks {
    unacked: VecDeque<Unacked>,
    next: u64,
    max_pending: usize,
}

impl Acks {
    pub fn new(max_pending: usize) -> Acks {
        Acks {
            unacked: VecDeque::new(),
            next: 0,
            max_pending,
        }
    }

    /// Assigns the ack id of a message written on `sub`. Past the pending bound the id is
    /// still assigned (the frame is already being written) and `true` says to close.
    pub fn track(&mut self, sub: &Arc<Subscription>, message_id: &Arc<str>) -> (u64, bool) {
        let ack_id = self.next;
        self.next += 1;
        self.unacked.push_back(Unacked {
            ack_id,
            sub: sub.clone(),
            message_id: message_id.clone(),
        });
        (ack_id, self.unacked.len() > self.max_pending)
    }

    fn position(&self, r: &AckRef) -> Option<usize> {
        match r {
            AckRef::Id(n) => self.unacked.iter().position(|u| u.ack_id == *n),
            AckRef::Message {
                message_id,
                subscription,
            } => self.unacked.iter().position(|u| {
                &*u.message_id == message_id
                    && subscription.as_deref().is_none_or(|s| s == u.sub.id)
            }),
        }
    }

    /// Whether `r` names a message awaiting acknowledgement now.
    pub fn knows(&self, r: &AckRef) -> bool {
        self.position(r).is_some()
    }

    /// Settles the message `r` names: with `client` ack mode, it and every earlier message
    /// of its subscription; with `client-individual`, it alone.
    pub fn ack(&mut self, r: &AckRef) -> Result<(), AckError> {
        let i = self.position(r).ok_or(AckError::Unknown)?;
        let sub = self.unacked[i].sub.clone();
        if sub.ack == AckMode::Client {
            let mut index = 0;
            self.unacked.retain(|u| {
                let keep = index > i || !Arc::ptr_eq(&u.sub, &sub);
                index += 1;
                keep
            });
        } else {
            self.unacked.remove(i);
        }
        Ok(())
    }

    /// Drops what `sub` still awaits (on UNSUBSCRIBE).
    pub fn forget(&mut self, sub: &Arc<Subscription>) {
        self.unacked.retain(|u| !Arc::ptr_eq(&u.sub, sub));
    }

    #[cfg(test)]
    pub fn pending(&self) -> usize {
        self.unacked.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stomp::Version;

    fn sub(id: &str, ack: AckMode) -> Arc<Subscription> {
        Arc::new(Subscription::new(
            1,
            id,
            "/topic/market/X",
            Version::V1_2,
            ack,
        ))
    }

    #[test]
    fn client_mode_is_cumulative_per_subscription() {
        let mut acks = Acks::new(100);
        let a = sub("a", AckMode::Client);
        let b = sub("b", AckMode::Client);
        let m: Arc<str> = "m".into();
        let (a0, _) = acks.track(&a, &m);
        let (_b0, _) = acks.track(&b, &m);
        let (a1, _) = acks.track(&a, &m);
        acks.ack(&AckRef::Id(a1)).unwrap();
        assert_eq!(acks.pending(), 1, "a0 and a1 settled, b0 kept");
        assert_eq!(acks.ack(&AckRef::Id(a0)), Err(AckError::Unknown));
    }

    #[test]
    fn individual_mode_settles_one() {
        let mut acks = Acks::new(100);
        let a = sub("a", AckMode::ClientIndividual);
        let (x, _) = acks.track(&a, &"x".into());
        let (y, _) = acks.track(&a, &"y".into());
        acks.ack(&AckRef::Id(y)).unwrap();
        assert!(acks.knows(&AckRef::Id(x)));
        let by_message = AckRef::Message {
            message_id: "x".into(),
            subscription: Some("a".into()),
        };
        acks.ack(&by_message).unwrap();
        assert_eq!(acks.pending(), 0);
    }

    #[test]
    fn bound_and_forget() {
        let mut acks = Acks::new(1);
        let a = sub("a", AckMode::Client);
        assert!(!acks.track(&a, &"x".into()).1);
        assert!(acks.track(&a, &"y".into()).1);
        acks.forget(&a);
        assert_eq!(acks.pending(), 0);
    }
}
