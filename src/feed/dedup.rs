//! Drops trades the feed has already produced. After every (re)subscription the exchange
//! sends a SNAPSHOT that repeats the last trade of each market; a reconnect must not put
//! that trade into Kafka twice. Remembers the most recent ids of each market of one
//! exchange, so the last trade of a quiet market is remembered however busy the others are.

use std::collections::{HashMap, HashSet, VecDeque};

/// Recently seen sequential ids, per market, of one exchange.
pub struct Dedup {
    markets: HashMap<String, Window>,
    per_market: usize,
}

#[derive(Default)]
struct Window {
    seen: HashSet<String>,
    order: VecDeque<String>,
}

impl Dedup {
    /// Remembers the last `per_market` ids of every market (oldest forgotten first).
    pub fn new(per_market: usize) -> Dedup {
        Dedup {
            markets: HashMap::new(),
            per_market: per_market.max(1),
        }
    }

    /// True the first time an id is offered for a market, false for a repeat.
    pub fn first(&mut self, market: &str, sequential_id: &str) -> bool {
        let w = match self.markets.get_mut(market) {
            Some(w) => w,
            None => self.markets.entry(market.to_string()).or_default(),
        };
        if w.seen.contains(sequential_id) {
            return false;
        }
        if w.order.len() == self.per_market
            && let Some(old) = w.order.pop_front()
        {
            w.seen.remove(&old);
        }
        w.seen.insert(sequential_id.to_string());
        w.order.push_back(sequential_id.to_string());
        true
    }

    /// Ids remembered, over all markets.
    pub fn len(&self) -> usize {
        self.markets.values().map(|w| w.order.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
    fn bounded_per_market() {
        let mut d = Dedup::new(3);
        assert!(d.first("QUIET", "7"));
        for i in 0..10_000 {
            assert!(d.first("BUSY", &i.to_string()));
        }
        assert_eq!(d.len(), 4);
        assert!(!d.first("BUSY", "9999"));
        assert!(d.first("BUSY", "0"), "forgotten after the bound");
        assert!(
            !d.first("QUIET", "7"),
            "a quiet market's last trade outlives the busy one's traffic"
        );
    }
}
