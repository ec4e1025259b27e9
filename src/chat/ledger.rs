//! Who owns which recent chat message, learned from the chat stream itself (every replica
//! consumes every chat record), so a client may modify or delete only its own messages.
//!
//! Kept per market, so chat in one market cannot push another market's messages out. Within
//! a market the oldest ids are forgotten first, and the least recently used market is
//! forgotten whole when there are too many. A known owner is never overwritten: only the
//! first `chat.send` of an id (which the gateway makes) sets it. A change to an id the
//! ledger does not know is refused.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Most messages remembered per market.
pub const PER_MARKET: usize = 2_000;
/// Most markets remembered.
pub const MARKETS: usize = 1_000;

#[derive(Default)]
struct Market {
    /// id -> (owner key, display name of the author).
    owners: HashMap<String, (String, String)>,
    order: VecDeque<String>,
    /// Use stamp for least-recently-used eviction of whole markets.
    used: u64,
}

#[derive(Default)]
struct Inner {
    markets: HashMap<String, Market>,
    clock: u64,
}

/// Market → message id → owner (std `Mutex`: short critical sections, never across an await).
#[derive(Default)]
pub struct ChatLedger {
    inner: Mutex<Inner>,
}

/// What the ledger says about a change to a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    Own,
    /// Not (or no longer) known: the change is refused.
    Unknown,
    /// Someone else's: the author's display name.
    Other(String),
}

impl ChatLedger {
    /// Learns the owner of a `chat.send` record value `{"id","market","owner",...}`.
    pub fn observe(&self, event_type: &str, value: &[u8]) {
        if event_type != "chat.send" {
            return;
        }
        #[derive(serde::Deserialize)]
        struct Sent {
            id: String,
            market: String,
            owner: String,
            user: String,
        }
        let Ok(sent) = serde_json::from_slice::<Sent>(value) else {
            return;
        };
        let mut inner = self.inner.lock().expect("ledger lock poisoned");
        inner.clock += 1;
        let used = inner.clock;
        if !inner.markets.contains_key(&sent.market) && inner.markets.len() >= MARKETS {
            let oldest = inner
                .markets
                .iter()
                .min_by_key(|(_, m)| m.used)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                inner.markets.remove(&k);
            }
        }
        let market = inner.markets.entry(sent.market).or_default();
        market.used = used;
        if market.owners.contains_key(&sent.id) {
            return;
        }
        market
            .owners
            .insert(sent.id.clone(), (sent.owner, sent.user));
        market.order.push_back(sent.id);
        if market.order.len() > PER_MARKET
            && let Some(old) = market.order.pop_front()
        {
            market.owners.remove(&old);
        }
    }

    pub fn ownership(&self, market: &str, id: &str, owner: &str) -> Ownership {
        let mut inner = self.inner.lock().expect("ledger lock poisoned");
        inner.clock += 1;
        let used = inner.clock;
        let Some(m) = inner.markets.get_mut(market) else {
            return Ownership::Unknown;
        };
        m.used = used;
        match m.owners.get(id) {
            None => Ownership::Unknown,
            Some((o, _)) if o == owner => Ownership::Own,
            Some((_, author)) => Ownership::Other(author.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(market: &str, id: &str, owner: &str) -> Vec<u8> {
        format!(r#"{{"id":"{id}","market":"{market}","owner":"{owner}","user":"n"}}"#).into_bytes()
    }

    #[test]
    fn remembers_owners_of_sent_messages_per_market() {
        let l = ChatLedger::default();
        l.observe("chat.send", &sent("A", "m1", "sub:alice"));
        l.observe("chat.modify", &sent("A", "m2", "sub:bob"));
        l.observe("chat.send", b"not json");
        assert_eq!(l.ownership("A", "m1", "sub:alice"), Ownership::Own);
        assert_eq!(
            l.ownership("A", "m1", "sub:bob"),
            Ownership::Other("n".into())
        );
        assert_eq!(l.ownership("B", "m1", "sub:alice"), Ownership::Unknown);
        assert_eq!(l.ownership("A", "m2", "sub:bob"), Ownership::Unknown);
    }

    #[test]
    fn a_known_owner_is_never_overwritten() {
        let l = ChatLedger::default();
        l.observe("chat.send", &sent("A", "m1", "sub:alice"));
        l.observe("chat.send", &sent("A", "m1", "sub:mallory"));
        assert_eq!(l.ownership("A", "m1", "sub:alice"), Ownership::Own);
        assert_eq!(
            l.ownership("A", "m1", "sub:mallory"),
            Ownership::Other("n".into())
        );
    }

    #[test]
    fn one_market_cannot_evict_another() {
        let l = ChatLedger::default();
        l.observe("chat.send", &sent("A", "keep", "sub:alice"));
        for i in 0..PER_MARKET + 1 {
            l.observe("chat.send", &sent("B", &format!("m{i}"), "sub:bob"));
        }
        assert_eq!(l.ownership("B", "m0", "sub:bob"), Ownership::Unknown);
        assert_eq!(l.ownership("B", "m1", "sub:bob"), Ownership::Own);
        assert_eq!(l.ownership("A", "keep", "sub:alice"), Ownership::Own);
    }
}
