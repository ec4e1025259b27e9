//! Drops trades the feed has already produced. After every (re)subscription the exchange
//! sends a SNAPSHOT that repeats the last trade of each market; a reconnect must not put
//! that trade into Kafka twice. Remembers the most recent ids of one exchange, bounded.

use std::collections::{HashSet, VecDeque};

/// Recently seen (market, sequential_id) pairs of one exchange.
pub struct Dedup {
    seen: HashSet<(String, String)>,
    order: VecDeque<(String, String)>,
    capacity: usize,
}

impl Dedup {
    /// Remembers up to `capacity` ids (oldest forgotten first).
    pub fn new(capacity: usize) -> Dedup {
        Dedup {
            seen: HashSet::with_capacity(capacity.min(1 << 16)),
            order: VecDeque::with_capacity(capacity.min(1 << 16)),
            capacity: capacity.max(1),
        }
    }

    /// True the first time an id is offered, false for a repeat.
    pub fn first(&mut self, market: &str, sequential_id: &str) -> bool {
        let key = (market.to_string(), sequential_id.to_string());
        if self.seen.contains(&key) {
            return false;
        }
        if self.order.len() == self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        self.seen.insert(key.clone());
        self.order.push_back(key);
        true
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_dropped() {
        let mut d = Dedup::new(100);
        assert!(d.first("KRW-BTC", "1"));
        assert!(d.first("KRW-BTC", "2"));
        assert!(!d.first("KRW-BTC", "1"), "a SNAPSHOT repeat");
        assert!(
            d.first("KRW-ETH", "1"),
            "another market's id is another trade"
        );
        assert_eq!(d.len(), 3);
    }

    #[test]
    fn bounded() {
        let mut d = Dedup::new(3);
        for i in 0..10 {
            assert!(d.first("M", &i.to_string()));
        }
        assert_eq!(d.len(), 3);
        assert!(!d.first("M", "9"));
        assert!(d.first("M", "0"), "forgotten after the bound");
    }
}
