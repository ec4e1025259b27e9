//! Destinations → subscribers, and publishing to them.
//!
//! Exact destinations live in a sharded `DashMap`; wildcard subscriptions (`/topic/market/*`,
//! one segment) are few and kept in a list matched on publish. A publication is encoded
//! once and the shared bytes are queued to every subscriber's outbox; the hub never waits
//! on a client.

pub mod outbox;
pub mod publication;
pub mod subscription;

use crate::destination::{matches_one_segment, wildcard_prefix};
use crate::metrics::Metrics;
use dashmap::DashMap;
use outbox::{Outbox, Pushed};
use publication::Publication;
use std::sync::{Arc, RwLock};
use subscription::Subscription;

/// A subscription and the outbox of the session that owns it.
#[derive(Debug, Clone)]
pub struct Subscriber {
    pub sub: Arc<Subscription>,
    pub outbox: Arc<Outbox>,
}

/// Counts of one publish.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Fanout {
    pub queued: usize,
    pub conflated: usize,
    pub overflowed: usize,
    /// Subscribers whose outbox had already closed.
    pub dropped: usize,
}

pub struct Hub {
    exact: DashMap<Arc<str>, Vec<Subscriber>>,
    /// (prefix before `*`, subscriber); a wildcard matches one path segment.
    wildcard: RwLock<Vec<(String, Subscriber)>>,
    metrics: Arc<Metrics>,
}

impl Hub {
    pub fn new(metrics: Arc<Metrics>) -> Hub {
        Hub {
            exact: DashMap::with_shard_amount(64),
            wildcard: RwLock::new(Vec::new()),
            metrics,
        }
    }

    pub fn subscribe(&self, subscriber: Subscriber) {
        let destination = subscriber.sub.destination.clone();
        if let Some(prefix) = wildcard_prefix(&destination) {
            self.wildcard
                .write()
                .expect("hub lock poisoned")
                .push((prefix.to_string(), subscriber));
        } else {
            self.exact
                .entry(destination.into())
                .or_default()
                .push(subscriber);
        }
        self.metrics.subscriptions.inc();
    }

    /// Removes one subscription; true if it was there.
    pub fn unsubscribe(&self, sub: &Subscription) -> bool {
        let same = |s: &Subscriber| s.sub.session_id == sub.session_id && s.sub.id == sub.id;
        let removed = if wildcard_prefix(&sub.destination).is_some() {
            let mut list = self.wildcard.write().expect("hub lock poisoned");
            let before = list.len();
            list.retain(|(_, s)| !same(s));
            list.len() != before
        } else {
            let mut removed = false;
            if let Some(mut subs) = self.exact.get_mut(sub.destination.as_str()) {
                let before = subs.len();
                subs.retain(|s| !same(s));
                removed = subs.len() != before;
            }
            self.exact
                .remove_if(sub.destination.as_str(), |_, subs| subs.is_empty());
            removed
        };
        if removed {
            self.metrics.subscriptions.dec();
        }
        removed
    }

    /// Number of subscribers a destination has right now (wildcards included).
    #[cfg(test)]
    fn subscriber_count(&self, destination: &str) -> usize {
        let exact = self.exact.get(destination).map_or(0, |s| s.len());
        let wild = self
            .wildcard
            .read()
            .expect("hub lock poisoned")
            .iter()
            .filter(|(prefix, _)| matches_one_segment(prefix, destination))
            .count();
        exact + wild
    }

    /// Encodes `publication` once and queues it to every matching subscriber.
    pub fn publish(&self, publication: &Publication) -> Fanout {
        let msg = Arc::new(publication.encode());
        let mut fanout = Fanout::default();
        if let Some(subs) = self.exact.get(&*publication.destination) {
            for s in subs.iter() {
                count(&mut fanout, s.outbox.push_message(&s.sub, &msg));
            }
        }
        {
            let wild = self.wildcard.read().expect("hub lock poisoned");
            for (prefix, s) in wild.iter() {
                if matches_one_segment(prefix, &publication.destination) {
                    count(&mut fanout, s.outbox.push_message(&s.sub, &msg));
                }
            }
        }
        self.record(&fanout);
        fanout
    }

    fn record(&self, fanout: &Fanout) {
        self.metrics.messages_out.inc_by(fanout.queued as u64);
        if fanout.conflated > 0 {
            self.metrics.conflated.inc_by(fanout.conflated as u64);
        }
        if fanout.dropped + fanout.overflowed > 0 {
            self.metrics
                .dropped
                .inc_by((fanout.dropped + fanout.overflowed) as u64);
        }
    }
}

fn count(fanout: &mut Fanout, pushed: Pushed) {
    match pushed {
        Pushed::Queued => fanout.queued += 1,
        Pushed::Conflated => fanout.conflated += 1,
        Pushed::Overflow => fanout.overflowed += 1,
        Pushed::Closed => fanout.dropped += 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stomp::Version;
    use bytes::Bytes;
    use outbox::{Out, SlowConsumerPolicy};
    use subscription::AckMode;

    fn subscriber(session: u64, id: &str, dest: &str, limit: usize) -> Subscriber {
        Subscriber {
            sub: Arc::new(Subscription::new(
                session,
                id,
                dest,
                Version::V1_2,
                AckMode::Auto,
            )),
            outbox: Arc::new(Outbox::new(limit, SlowConsumerPolicy::Conflate)),
        }
    }

    fn trade(dest: &str, n: u32) -> Publication {
        Publication {
            destination: dest.into(),
            event_type: "trade".into(),
            message_id: format!("t-0-{n}"),
            timestamp_ms: 0,
            content_type: "application/json",
            body: Bytes::from(format!("{{\"n\":{n}}}")),
            conflatable: true,
        }
    }

    #[test]
    fn exact_and_wildcard_subscribers_receive() {
        let hub = Hub::new(Arc::new(Metrics::new()));
        let a = subscriber(1, "a", "/topic/market/KRW-BTC", 1 << 20);
        let b = subscriber(2, "b", "/topic/market/*", 1 << 20);
        let c = subscriber(3, "c", "/topic/market/KRW-ETH", 1 << 20);
        hub.subscribe(a.clone());
        hub.subscribe(b.clone());
        hub.subscribe(c.clone());
        let f = hub.publish(&trade("/topic/market/KRW-BTC", 1));
        assert_eq!(f.queued, 2);
        assert_eq!(hub.subscriber_count("/topic/market/KRW-BTC"), 2);
        let mut out = Vec::new();
        c.outbox.drain(&mut out);
        assert!(out.is_empty());
        assert!(hub.unsubscribe(&b.sub));
        assert!(!hub.unsubscribe(&b.sub));
        assert_eq!(hub.publish(&trade("/topic/market/KRW-BTC", 2)).queued, 1);
        assert!(hub.unsubscribe(&a.sub));
        assert_eq!(hub.publish(&trade("/topic/market/KRW-BTC", 3)).queued, 0);
    }

    #[test]
    fn full_outbox_conflates_to_newest_tick() {
        let hub = Hub::new(Arc::new(Metrics::new()));
        let s = subscriber(1, "a", "/topic/market/*", 300);
        hub.subscribe(s.clone());
        for n in 0..50 {
            hub.publish(&trade("/topic/market/KRW-BTC", n));
            hub.publish(&trade("/topic/market/KRW-ETH", n));
        }
        let mut out = Vec::new();
        assert_eq!(s.outbox.drain(&mut out), None);
        let bodies: Vec<String> = out
            .iter()
            .map(|o| match o {
                Out::Message { msg, .. } => {
                    String::from_utf8_lossy(msg.bytes(Version::V1_2)).into_owned()
                }
                Out::Frame(_) => String::new(),
            })
            .collect();
        assert!(bodies.len() < 10, "{}", bodies.len());
        assert!(
            bodies
                .iter()
                .any(|b| b.contains("KRW-BTC") && b.contains("{\"n\":49}"))
        );
        assert!(
            bodies
                .iter()
                .any(|b| b.contains("KRW-ETH") && b.contains("{\"n\":49}"))
        );
    }
}
