//! Who wrote which recent chat message, learned from the chat stream itself (every replica
//! consumes every chat record), so a client may modify or delete only its own messages.
//!
//! Bounded: the oldest ids are forgotten first. A message this replica never saw (sent
//! before it started, or forgotten) is unknown; changes to it are let through, stamped with
//! the real sender, so clients can still tell who made them.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Most messages remembered: hours of chat at human rates, about 3 MB. (100,000 made the
/// server's RSS climb by 12 MB over a minute of the benchmarks, which publish through chat.)
pub const CAPACITY: usize = 20_000;

#[derive(Default)]
struct Inner {
    authors: HashMap<String, String>,
    order: VecDeque<String>,
}

/// Message id → author (std `Mutex`: short critical sections, never across an await).
#[derive(Default)]
pub struct ChatLedger {
    inner: Mutex<Inner>,
}

/// What the ledger says about a change to a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    Own,
    Unknown,
    Other(String),
}

impl ChatLedger {
    /// Learns from a chat record value `{"id","user",...}` of event `chat.send`.
    pub fn observe(&self, event_type: &str, value: &[u8]) {
        if event_type != "chat.send" {
            return;
        }
        #[derive(serde::Deserialize)]
        struct Sent {
            id: String,
            user: String,
        }
        let Ok(sent) = serde_json::from_slice::<Sent>(value) else {
            return;
        };
        let mut inner = self.inner.lock().expect("ledger lock poisoned");
        if inner.authors.insert(sent.id.clone(), sent.user).is_none() {
            inner.order.push_back(sent.id);
            if inner.order.len() > CAPACITY
                && let Some(old) = inner.order.pop_front()
            {
                inner.authors.remove(&old);
            }
        }
    }

    pub fn ownership(&self, id: &str, user: &str) -> Ownership {
        let inner = self.inner.lock().expect("ledger lock poisoned");
        match inner.authors.get(id) {
            None => Ownership::Unknown,
            Some(author) if author == user => Ownership::Own,
            Some(author) => Ownership::Other(author.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_authors_of_sent_messages() {
        let l = ChatLedger::default();
        l.observe("chat.send", br#"{"id":"m1","user":"alice","text":"x"}"#);
        l.observe("chat.modify", br#"{"id":"m2","user":"bob","text":"x"}"#);
        l.observe("chat.send", b"not json");
        assert_eq!(l.ownership("m1", "alice"), Ownership::Own);
        assert_eq!(l.ownership("m1", "bob"), Ownership::Other("alice".into()));
        assert_eq!(l.ownership("m2", "bob"), Ownership::Unknown);
    }

    #[test]
    fn forgets_the_oldest_first() {
        let l = ChatLedger::default();
        for i in 0..CAPACITY + 1 {
            l.observe(
                "chat.send",
                format!(r#"{{"id":"m{i}","user":"u"}}"#).as_bytes(),
            );
        }
        assert_eq!(l.ownership("m0", "u"), Ownership::Unknown);
        assert_eq!(l.ownership("m1", "u"), Ownership::Own);
    }
}
