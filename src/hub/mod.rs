//! Destinations → subscribers, and publishing to them.
//!
//! Exact destinations live in a sharded `DashMap`, each with its subscribers and its recent
//! messages (`history.rs`); wildcard subscriptions (`/topic/market/*`, one segment) are few and
//! kept in a list matched on publish. A publication is encoded once and the shared bytes are
//! queued to every subscriber's outbox; the hub never waits on a client. Publishing and
//! subscribing to a destination take its shard's lock, so a subscriber's replay and the live
//! stream meet without a gap or a duplicate.

pub mod direct;
pub mod history;
pub mod outbox;
pub mod publication;
pub mod subscription;

use crate::destination::{matches_one_segment, wildcard_prefix};
use crate::metrics::Metrics;
use dashmap::DashMap;
pub use history::Replay;
use outbox::{Outbox, Pushed};
use publication::{Encoded, Origin, Publication};

use history::History;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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
    /// Written to the subscriber's socket by the publisher (see [`direct`]).
    pub written: usize,
    /// Bytes of those writes.
    pub written_bytes: usize,
    pub conflated: usize,
    pub overflowed: usize,
    /// Subscribers whose outbox had already closed.
    pub dropped: usize,
}

/// Bounds of the per-destination history.
#[derive(Debug, Clone, Copy)]
pub struct HistorySettings {
    /// Most messages kept per destination (0: no history).
    pub per_destination: usize,
    /// Most bytes kept in all; past it, the least recently used destinations are dropped.
    pub max_bytes: usize,
}

impl Default for HistorySettings {
    fn default() -> Self {
        HistorySettings {
            per_destination: 100,
            max_bytes: 128 * 1024 * 1024,
        }
    }
}

/// The subscribers of one wildcard prefix, by (session id, subscription id).
type WildcardSubscribers = HashMap<(u64, String), Subscriber>;

/// One exact destination: its subscribers and its recent messages.
#[derive(Default)]
struct Slot {
    subs: Vec<Subscriber>,
    history: History,
    /// Use stamp, for least-recently-used eviction of whole histories.
    used: u64,
}

pub struct Hub {
    exact: DashMap<Arc<str>, Slot>,
    /// Prefix before `*` -> subscribers by (session, subscription id); a wildcard matches
    /// one path segment. Keyed, so unsubscribing is one removal, not a scan under the lock.
    wildcard: RwLock<HashMap<String, WildcardSubscribers>>,
    metrics: Arc<Metrics>,
    history: HistorySettings,
    history_bytes: AtomicUsize,
    clock: AtomicU64,
    /// Where this replica started reading each partition (`topic`, `partition`) -> offset.
    starts: DashMap<(Arc<str>, i32), i64>,
}

impl Hub {
    pub fn new(metrics: Arc<Metrics>, history: HistorySettings) -> Hub {
        Hub {
            exact: DashMap::with_shard_amount(64),
            wildcard: RwLock::new(HashMap::new()),
            metrics,
            history,
            history_bytes: AtomicUsize::new(0),
            clock: AtomicU64::new(0),
            starts: DashMap::new(),
        }
    }

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed)
    }

    /// Records where this replica started reading a partition: a destination's history
    /// holds everything of that partition from there on.
    pub fn partition_start(&self, topic: &str, partition: i32, offset: i64) {
        self.starts.insert((topic.into(), partition), offset);
    }

    fn start_of(&self, topic: &str, partition: i32) -> Option<i64> {
        self.starts.get(&(Arc::from(topic), partition)).map(|s| *s)
    }

    /// Adds a subscriber. What `replay` asks for is queued to its outbox first, under the
    /// destination's lock, so nothing published meanwhile is missed or sent twice. Returns
    /// whether a resume found nothing missing (`None` when no resume was asked).
    pub fn subscribe(&self, subscriber: Subscriber, replay: &Replay) -> Option<bool> {
        let destination = subscriber.sub.destination.clone();
        self.metrics.subscriptions.inc();
        if let Some(prefix) = wildcard_prefix(&destination) {
            let key = (subscriber.sub.session_id, subscriber.sub.id.clone());
            self.wildcard
                .write()
                .expect("hub lock poisoned")
                .entry(prefix.to_string())
                .or_default()
                .insert(key, subscriber);
            // History is per destination; a wildcard has none to resume from.
            return matches!(replay, Replay::After(_)).then_some(false);
        }
        let used = self.tick();
        let mut slot = self.exact.entry(destination.into()).or_default();
        slot.used = used;
        let found = slot.history.replay(replay, |t, p| self.start_of(t, p));
        for msg in &found.messages {
            subscriber.outbox.push_replay(&subscriber.sub, msg);
        }
        self.metrics.replayed.inc_by(found.messages.len() as u64);
        if let Some(r) = found.recovered {
            let outcome = if r { "recovered" } else { "gap" };
            self.metrics.resumes.with_label_values(&[outcome]).inc();
        }
        slot.subs.push(subscriber);
        found.recovered
    }

    /// Where a resume from `cursor` on `destination` needs the log: partitions whose kept
    /// history starts after the cursor, as `(topic, partition, from, to)`.
    pub fn gaps(&self, destination: &str, cursor: &[Origin]) -> Vec<(Arc<str>, i32, i64, i64)> {
        let start = |t: &str, p: i32| self.start_of(t, p);
        match self.exact.get(destination) {
            Some(slot) => slot.history.gaps(cursor, start),
            None => History::default().gaps(cursor, start),
        }
    }

    /// Removes one subscription; true if it was there.
    pub fn unsubscribe(&self, sub: &Subscription) -> bool {
        let same = |s: &Subscriber| s.sub.session_id == sub.session_id && s.sub.id == sub.id;
        let removed = if let Some(prefix) = wildcard_prefix(&sub.destination) {
            let mut all = self.wildcard.write().expect("hub lock poisoned");
            let removed = all
                .get_mut(prefix)
                .and_then(|subs| subs.remove(&(sub.session_id, sub.id.clone())))
                .is_some();
            all.retain(|_, subs| !subs.is_empty());
            removed
        } else {
            let mut removed = false;
            if let Some(mut slot) = self.exact.get_mut(sub.destination.as_str()) {
                let before = slot.subs.len();
                slot.subs.retain(|s| !same(s));
                removed = slot.subs.len() != before;
            }
            self.exact.remove_if(sub.destination.as_str(), |_, slot| {
                slot.subs.is_empty() && slot.history.is_empty()
            });
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
        let exact = self.exact.get(destination).map_or(0, |s| s.subs.len());
        let wild = self
            .wildcard
            .read()
            .expect("hub lock poisoned")
            .iter()
            .filter(|(prefix, _)| matches_one_segment(prefix, destination))
            .map(|(_, subs)| subs.len())
            .sum::<usize>();
        exact + wild
    }

    /// Encodes `publication` once, keeps it in the destination's history and, when `live`,
    /// queues it to every matching subscriber. A record read back at start (not live) only
    /// fills the history: live clients never see old records as new.
    pub fn publish(&self, publication: &Publication, live: bool) -> Fanout {
        let mut fanout = Fanout::default();
        let keep = self.history.per_destination > 0 && publication.origin.is_some();
        let msg = if keep {
            let used = self.tick();
            let mut slot = self
                .exact
                .entry(publication.destination.clone())
                .or_default();
            slot.used = used;
            let origin = publication.origin.as_ref().expect("checked above");
            let start = self.start_of(&origin.topic, origin.partition);
            let cursor = slot.history.advance(origin, start);
            let msg = Arc::new(publication.encode(Some(&cursor)));
            let delta = slot.history.push(msg.clone(), self.history.per_destination);
            self.account(delta);
            if live {
                push_all(&slot.subs, &msg, &mut fanout);
            }
            msg
        } else {
            let msg = Arc::new(publication.encode(None));
            if live && let Some(slot) = self.exact.get(&*publication.destination) {
                push_all(&slot.subs, &msg, &mut fanout);
            }
            msg
        };
        if live {
            let wild = self.wildcard.read().expect("hub lock poisoned");
            for (prefix, subs) in wild.iter() {
                if matches_one_segment(prefix, &publication.destination) {
                    for s in subs.values() {
                        count(&mut fanout, s.outbox.push_message(&s.sub, &msg));
                    }
                }
            }
        }
        if self.history_bytes.load(Ordering::Relaxed) > self.history.max_bytes {
            self.evict();
        }
        self.record(&fanout, &msg);
        fanout
    }

    fn account(&self, delta: isize) {
        let now = if delta >= 0 {
            self.history_bytes
                .fetch_add(delta as usize, Ordering::Relaxed)
                + delta as usize
        } else {
            self.history_bytes
                .fetch_sub(delta.unsigned_abs(), Ordering::Relaxed)
                - delta.unsigned_abs()
        };
        self.metrics.history_bytes.set(now as i64);
    }

    /// Drops whole histories, least recently used first, until under 90% of the cap.
    fn evict(&self) {
        let target = self.history.max_bytes / 10 * 9;
        while self.history_bytes.load(Ordering::Relaxed) > target {
            let oldest = self
                .exact
                .iter()
                .filter(|e| !e.history.is_empty())
                .min_by_key(|e| e.used)
                .map(|e| e.key().clone());
            let Some(key) = oldest else {
                return;
            };
            if let Some(mut slot) = self.exact.get_mut(&key) {
                let freed = slot.history.clear();
                drop(slot);
                self.account(-(freed as isize));
                self.metrics.history_evictions.inc();
            }
            self.exact.remove_if(&key, |_, slot| {
                slot.subs.is_empty() && slot.history.is_empty()
            });
        }
    }

    /// Bytes of history kept now.
    pub fn history_bytes(&self) -> usize {
        self.history_bytes.load(Ordering::Relaxed)
    }

    fn record(&self, fanout: &Fanout, msg: &Encoded) {
        let m = &self.metrics;
        m.messages_out
            .inc_by((fanout.queued + fanout.written) as u64);
        if fanout.written > 0 {
            // What a session counts at its flush, counted here for the copies the
            // publisher wrote: one delay for all (they left within the fan-out).
            m.bytes_out.inc_by(fanout.written_bytes as u64);
            m.writes.inc_by(fanout.written as u64);
            m.direct_writes.inc_by(fanout.written as u64);
            let delay = (crate::clock::now_ms() - msg.timestamp_ms).max(0) as f64 / 1000.0;
            let local = m.delivery_delay.local();
            for _ in 0..fanout.written {
                local.observe(delay);
            }
            local.flush();
        }
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

/// Queues `msg` to every subscriber in `subs`. Under a direct-write permit, the copies past
/// the publisher's share are queued first, so the sessions that write them are woken on
/// the idle workers before the publisher writes its own share (see [`direct`]).
fn push_all(subs: &[Subscriber], msg: &Arc<Encoded>, fanout: &mut Fanout) {
    let (own, others) = subs.split_at(direct::share(subs.len()));
    if !others.is_empty() {
        // No direct write for these: the sessions write them.
        let _withheld = direct::Permit::new(false);
        for s in others {
            count(fanout, s.outbox.push_message(&s.sub, msg));
        }
    }
    for s in own {
        count(fanout, s.outbox.push_message(&s.sub, msg));
    }
}

fn count(fanout: &mut Fanout, pushed: Pushed) {
    match pushed {
        Pushed::Queued => fanout.queued += 1,
        Pushed::Written(bytes) => {
            fanout.written += 1;
            fanout.written_bytes += bytes;
        }
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
            origin: Some(publication::Origin {
                topic: "t".into(),
                partition: 0,
                offset: n as i64,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn exact_and_wildcard_subscribers_receive() {
        let hub = Hub::new(Arc::new(Metrics::new()), HistorySettings::default());
        let a = subscriber(1, "a", "/topic/market/KRW-BTC", 1 << 20);
        let b = subscriber(2, "b", "/topic/market/*", 1 << 20);
        let c = subscriber(3, "c", "/topic/market/KRW-ETH", 1 << 20);
        hub.subscribe(a.clone(), &Replay::Nothing);
        hub.subscribe(b.clone(), &Replay::Nothing);
        hub.subscribe(c.clone(), &Replay::Nothing);
        let f = hub.publish(&trade("/topic/market/KRW-BTC", 1), true);
        assert_eq!(f.queued, 2);
        assert_eq!(hub.subscriber_count("/topic/market/KRW-BTC"), 2);
        let mut out = Vec::new();
        c.outbox.drain(&mut out);
        assert!(out.is_empty());
        assert!(hub.unsubscribe(&b.sub));
        assert!(!hub.unsubscribe(&b.sub));
        assert_eq!(
            hub.publish(&trade("/topic/market/KRW-BTC", 2), true).queued,
            1
        );
        assert!(hub.unsubscribe(&a.sub));
        assert_eq!(
            hub.publish(&trade("/topic/market/KRW-BTC", 3), true).queued,
            0
        );
    }

    #[test]
    fn full_outbox_conflates_to_newest_tick() {
        let hub = Hub::new(Arc::new(Metrics::new()), HistorySettings::default());
        let s = subscriber(1, "a", "/topic/market/*", 300);
        hub.subscribe(s.clone(), &Replay::Nothing);
        for n in 0..50 {
            hub.publish(&trade("/topic/market/KRW-BTC", n), true);
            hub.publish(&trade("/topic/market/KRW-ETH", n), true);
        }
        let mut out = Vec::new();
        assert_eq!(s.outbox.drain(&mut out).closed, None);
        let bodies: Vec<String> = out
            .iter()
            .map(|o| match o {
                Out::Message { msg, .. } => {
                    String::from_utf8_lossy(msg.bytes(Version::V1_2)).into_owned()
                }
                _ => String::new(),
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

    fn drained(s: &Subscriber) -> Vec<(bool, String)> {
        let mut out = Vec::new();
        s.outbox.drain(&mut out);
        out.into_iter()
            .filter_map(|o| match o {
                Out::Message { msg, .. } => Some((false, msg.message_id.to_string())),
                Out::Replay { msg, .. } => Some((true, msg.message_id.to_string())),
                Out::Frame(_) => None,
            })
            .collect()
    }

    #[test]
    fn history_replays_then_live_without_a_seam() {
        let hub = Hub::new(
            Arc::new(Metrics::new()),
            HistorySettings {
                per_destination: 3,
                max_bytes: 1 << 20,
            },
        );
        hub.partition_start("t", 0, 0);
        for n in 0..5 {
            hub.publish(&trade("/topic/market/A", n), true);
        }
        let s = subscriber(1, "a", "/topic/market/A", 1 << 20);
        assert_eq!(hub.subscribe(s.clone(), &Replay::Last(2)), None);
        hub.publish(&trade("/topic/market/A", 5), true);
        assert_eq!(
            drained(&s),
            [
                (true, "t-0-3".to_string()),
                (true, "t-0-4".to_string()),
                (false, "t-0-5".to_string())
            ]
        );
        let r = subscriber(2, "r", "/topic/market/A", 1 << 20);
        let cursor = Replay::parse_cursor("t-0-3").unwrap();
        assert_eq!(hub.subscribe(r.clone(), &Replay::After(cursor)), Some(true));
        assert_eq!(
            drained(&r),
            [(true, "t-0-4".to_string()), (true, "t-0-5".to_string())]
        );
        let late = subscriber(3, "l", "/topic/market/A", 1 << 20);
        let cursor = Replay::parse_cursor("t-0-0").unwrap();
        assert_eq!(
            hub.subscribe(late, &Replay::After(cursor)),
            Some(false),
            "1 and 2 were forgotten"
        );
    }

    #[test]
    fn old_records_fill_history_but_are_not_delivered_live() {
        let hub = Hub::new(Arc::new(Metrics::new()), HistorySettings::default());
        let s = subscriber(1, "a", "/topic/market/A", 1 << 20);
        hub.subscribe(s.clone(), &Replay::Nothing);
        assert_eq!(hub.publish(&trade("/topic/market/A", 1), false).queued, 0);
        assert!(drained(&s).is_empty());
        let t = subscriber(2, "b", "/topic/market/A", 1 << 20);
        hub.subscribe(t.clone(), &Replay::Last(10));
        assert_eq!(drained(&t), [(true, "t-0-1".to_string())]);
    }

    #[test]
    fn history_is_bounded_in_bytes_least_recently_used_first() {
        let hub = Hub::new(
            Arc::new(Metrics::new()),
            HistorySettings {
                per_destination: 100,
                max_bytes: 20_000,
            },
        );
        for d in 0..200 {
            hub.publish(&trade(&format!("/topic/market/M{d}"), d), true);
        }
        assert!(hub.history_bytes() <= 20_000, "{}", hub.history_bytes());
        let old = subscriber(1, "a", "/topic/market/M0", 1 << 20);
        hub.subscribe(old.clone(), &Replay::Last(10));
        assert!(
            drained(&old).is_empty(),
            "the oldest destination was dropped"
        );
        let new = subscriber(2, "a", "/topic/market/M199", 1 << 20);
        hub.subscribe(new.clone(), &Replay::Last(10));
        assert_eq!(drained(&new).len(), 1);
    }
}
