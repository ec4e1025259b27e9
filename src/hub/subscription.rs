//! One SUBSCRIBE of one session: its id, ack mode, and the per-subscriber start of its
//! MESSAGE frames, encoded once at SUBSCRIBE time.

use crate::stomp::{Version, escape_into};
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, Ordering};

/// The `ack` header of SUBSCRIBE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    Auto,
    /// ACK acknowledges this message and every earlier one of the subscription.
    Client,
    /// ACK acknowledges this message only.
    ClientIndividual,
}

impl AckMode {
    pub fn parse(value: Option<&str>) -> Option<AckMode> {
        match value {
            None | Some("auto") => Some(AckMode::Auto),
            Some("client") => Some(AckMode::Client),
            Some("client-individual") => Some(AckMode::ClientIndividual),
            Some(_) => None,
        }
    }
}

#[derive(Debug)]
pub struct Subscription {
    pub session_id: u64,
    pub id: String,
    pub destination: String,
    pub version: Version,
    pub ack: AckMode,
    /// `MESSAGE\nsubscription:<id>\n`, escaped for the session's version.
    pub prefix: Bytes,
    /// Cleared on UNSUBSCRIBE, so messages still queued for it are not delivered.
    active: AtomicBool,
}

impl Subscription {
    pub fn new(
        session_id: u64,
        id: &str,
        destination: &str,
        version: Version,
        ack: AckMode,
    ) -> Subscription {
        let mut prefix = Vec::with_capacity(24 + id.len());
        prefix.extend_from_slice(b"MESSAGE\nsubscription:");
        escape_into(id, version, &mut prefix);
        prefix.push(b'\n');
        Subscription {
            session_id,
            id: id.to_string(),
            destination: destination.to_string(),
            version,
            ack,
            prefix: Bytes::from(prefix),
            active: AtomicBool::new(true),
        }
    }

    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    pub fn deactivate(&self) {
        self.active.store(false, Ordering::Relaxed);
    }
}
