//! The recent messages of one destination, for clients that subscribe late (`x-history`) or
//! come back after a break (`x-resume-after`).
//!
//! A destination may be fed by several partitions (a market's trades and its chat). For each
//! feeding partition the history knows the last offset it saw and the offset from which it
//! holds everything the destination got (`since`): where this replica started reading the
//! partition, or just past the newest message it had to forget. A resume cursor names one
//! position per partition (`<topic>-<partition>-<offset>`, comma-separated; every MESSAGE
//! carries the destination's cursor as of itself in `x-cursor`), so a client resumes on any
//! replica without a gap and without a duplicate.

use super::publication::{Encoded, Origin};
use std::collections::VecDeque;
use std::sync::Arc;

/// What a SUBSCRIBE asks to be sent before live messages.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Replay {
    #[default]
    Nothing,
    /// `x-history:<n>`: the n most recent messages, oldest first.
    Last(usize),
    /// `x-resume-after:<cursor>`: everything after these positions.
    After(Vec<Origin>),
}

impl Replay {
    /// Reads a cursor: comma-separated message ids. `None` if any part is not one.
    pub fn parse_cursor(text: &str) -> Option<Vec<Origin>> {
        let positions: Option<Vec<Origin>> = text
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(Origin::parse)
            .collect();
        positions.filter(|p| !p.is_empty() && p.len() <= 64)
    }
}

#[derive(Debug, Clone)]
struct Feed {
    topic: Arc<str>,
    partition: i32,
    /// Everything of this partition for the destination from this offset on is kept.
    since: i64,
    /// The newest offset seen.
    last: i64,
}

/// What a replay found: the messages to send, and whether nothing was missing
/// (`None` when the subscription asked for no resume).
pub struct Found {
    pub messages: Vec<Arc<Encoded>>,
    pub recovered: Option<bool>,
}

#[derive(Debug, Default)]
pub struct History {
    entries: VecDeque<Arc<Encoded>>,
    bytes: usize,
    feeds: Vec<Feed>,
}

/// Bytes a kept message costs (its shared encoding plus bookkeeping).
pub fn cost(msg: &Encoded) -> usize {
    msg.bytes(crate::stomp::Version::V1_2).len() + 96
}

impl History {
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Notes a new message from `origin` (the partition started at `start` on this replica)
    /// and returns the destination's cursor after it.
    pub fn advance(&mut self, origin: &Origin, start: Option<i64>) -> String {
        match self
            .feeds
            .iter_mut()
            .find(|f| f.partition == origin.partition && f.topic == origin.topic)
        {
            Some(f) => f.last = f.last.max(origin.offset),
            None => self.feeds.push(Feed {
                topic: origin.topic.clone(),
                partition: origin.partition,
                since: start.unwrap_or(origin.offset).min(origin.offset),
                last: origin.offset,
            }),
        }
        self.cursor()
    }

    fn cursor(&self) -> String {
        let mut out = String::new();
        for (i, f) in self.feeds.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&format!("{}-{}-{}", f.topic, f.partition, f.last));
        }
        out
    }

    /// Keeps `msg`, forgetting the oldest past `max` messages; returns the change in bytes.
    pub fn push(&mut self, msg: Arc<Encoded>, max: usize) -> isize {
        let added = cost(&msg);
        self.bytes += added;
        self.entries.push_back(msg);
        let mut freed = 0;
        while self.entries.len() > max {
            freed += self.forget_oldest();
        }
        added as isize - freed as isize
    }

    fn forget_oldest(&mut self) -> usize {
        let Some(old) = self.entries.pop_front() else {
            return 0;
        };
        if let Some(o) = &old.origin
            && let Some(f) = self
                .feeds
                .iter_mut()
                .find(|f| f.partition == o.partition && f.topic == o.topic)
        {
            f.since = f.since.max(o.offset + 1);
        }
        let c = cost(&old);
        self.bytes -= c;
        c
    }

    /// Forgets every message (the cursor positions stay); returns the bytes freed.
    pub fn clear(&mut self) -> usize {
        let mut freed = 0;
        while !self.entries.is_empty() {
            freed += self.forget_oldest();
        }
        freed
    }

    /// The messages a subscription asked for. `start` tells where this replica started
    /// reading a partition the destination has no message of.
    pub fn replay(&self, replay: &Replay, start: impl Fn(&str, i32) -> Option<i64>) -> Found {
        match replay {
            Replay::Nothing => Found {
                messages: Vec::new(),
                recovered: None,
            },
            Replay::Last(n) => Found {
                messages: self
                    .entries
                    .iter()
                    .skip(self.entries.len().saturating_sub(*n))
                    .cloned()
                    .collect(),
                recovered: None,
            },
            Replay::After(cursor) => self.after(cursor, start),
        }
    }

    /// The stretches of the log between `cursor` and what is kept: `(topic, partition,
    /// from, to)` for each partition whose kept history starts after the cursor.
    pub fn gaps(
        &self,
        cursor: &[Origin],
        start: impl Fn(&str, i32) -> Option<i64>,
    ) -> Vec<(Arc<str>, i32, i64, i64)> {
        cursor
            .iter()
            .filter_map(|c| {
                let since = self
                    .feeds
                    .iter()
                    .find(|f| f.partition == c.partition && f.topic == c.topic)
                    .map(|f| f.since)
                    .or_else(|| start(&c.topic, c.partition))?;
                (c.offset + 1 < since).then(|| (c.topic.clone(), c.partition, c.offset + 1, since))
            })
            .collect()
    }

    fn after(&self, cursor: &[Origin], start: impl Fn(&str, i32) -> Option<i64>) -> Found {
        // A position past the newest offset this replica has seen names a log that started
        // over (a restarted embedded bus, a recreated topic): all of that partition is sent,
        // and the resume is not recovered.
        let ahead = cursor.iter().any(|c| {
            self.feeds
                .iter()
                .any(|f| f.partition == c.partition && f.topic == c.topic && c.offset > f.last)
        });
        let cursor: Vec<Origin> = cursor
            .iter()
            .map(|c| {
                let past = self
                    .feeds
                    .iter()
                    .any(|f| f.partition == c.partition && f.topic == c.topic && c.offset > f.last);
                Origin {
                    offset: if past { -1 } else { c.offset },
                    ..c.clone()
                }
            })
            .collect();
        let cursor = &cursor[..];
        let named = |o: &Origin| {
            cursor
                .iter()
                .find(|c| c.partition == o.partition && c.topic == o.topic)
                .map(|c| c.offset)
        };
        // Messages of partitions the cursor does not name are sent if they come after the
        // newest message the cursor covers (this replica's order), or all if none is kept.
        let anchor = self.entries.iter().rposition(|m| {
            m.origin
                .as_ref()
                .is_some_and(|o| named(o).is_some_and(|p| o.offset <= p))
        });
        let messages = self
            .entries
            .iter()
            .enumerate()
            .filter(|(i, m)| match &m.origin {
                None => anchor.is_none_or(|a| *i > a),
                Some(o) => match named(o) {
                    Some(p) => o.offset > p,
                    None => anchor.is_none_or(|a| *i > a),
                },
            })
            .map(|(_, m)| m.clone())
            .collect();
        let recovered = cursor.iter().all(|c| {
            let since = self
                .feeds
                .iter()
                .find(|f| f.partition == c.partition && f.topic == c.topic)
                .map(|f| f.since)
                .or_else(|| start(&c.topic, c.partition));
            since.is_some_and(|s| c.offset + 1 >= s)
        }) && self.feeds.iter().all(|f| {
            named(&Origin {
                topic: f.topic.clone(),
                partition: f.partition,
                offset: 0,
            })
            .is_some()
                || start(&f.topic, f.partition).is_some_and(|s| f.since <= s)
        });
        Found {
            messages,
            recovered: Some(recovered && !ahead),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::publication::Publication;
    use bytes::Bytes;

    fn msg(topic: &str, partition: i32, offset: i64) -> Arc<Encoded> {
        let origin = Origin {
            topic: topic.into(),
            partition,
            offset,
        };
        Arc::new(
            Publication {
                destination: "/topic/market/A".into(),
                message_id: origin.message_id(),
                body: Bytes::from_static(b"{}"),
                origin: Some(origin),
                ..Default::default()
            }
            .encode(None),
        )
    }

    fn ids(found: &Found) -> Vec<String> {
        found
            .messages
            .iter()
            .map(|m| m.message_id.to_string())
            .collect()
    }

    /// A history fed by trades (partition 0, from offset 10) and chat (partition 1, from 0).
    fn fed() -> History {
        let mut h = History::default();
        for (t, p, o) in [
            ("trades", 0, 10),
            ("chat", 1, 3),
            ("trades", 0, 12),
            ("trades", 0, 15),
            ("chat", 1, 4),
        ] {
            let m = msg(t, p, o);
            h.advance(
                m.origin.as_ref().unwrap(),
                Some(if t == "trades" { 10 } else { 0 }),
            );
            h.push(m, 100);
        }
        h
    }

    fn starts(topic: &str, _: i32) -> Option<i64> {
        Some(if topic == "trades" { 10 } else { 0 })
    }

    #[test]
    fn cursor_names_every_feeding_partition() {
        let mut h = fed();
        let next = msg("trades", 0, 16);
        assert_eq!(
            h.advance(next.origin.as_ref().unwrap(), None),
            "trades-0-16,chat-1-4"
        );
    }

    #[test]
    fn last_n_oldest_first() {
        let h = fed();
        let f = h.replay(&Replay::Last(2), starts);
        assert_eq!(ids(&f), ["trades-0-15", "chat-1-4"]);
        assert_eq!(f.recovered, None);
        assert_eq!(h.replay(&Replay::Last(99), starts).messages.len(), 5);
    }

    #[test]
    fn resume_after_a_cursor_sends_what_follows_on_each_partition() {
        let h = fed();
        let cursor = Replay::parse_cursor("trades-0-12,chat-1-3").unwrap();
        let f = h.replay(&Replay::After(cursor), starts);
        assert_eq!(ids(&f), ["trades-0-15", "chat-1-4"]);
        assert_eq!(f.recovered, Some(true));
        // The order this replica saw does not matter: chat 3 came before trades 12 here.
        let cursor = Replay::parse_cursor("chat-1-4,trades-0-10").unwrap();
        let f = h.replay(&Replay::After(cursor), starts);
        assert_eq!(ids(&f), ["trades-0-12", "trades-0-15"]);
    }

    #[test]
    fn a_single_message_id_anchors_unnamed_partitions_by_order() {
        let h = fed();
        let cursor = Replay::parse_cursor("trades-0-12").unwrap();
        let f = h.replay(&Replay::After(cursor), starts);
        assert_eq!(ids(&f), ["trades-0-15", "chat-1-4"]);
    }

    #[test]
    fn too_old_a_cursor_is_not_recovered() {
        let mut h = fed();
        // Keep only 2: trades 10 and 12 and chat 3 are forgotten.
        let m = msg("trades", 0, 20);
        h.advance(m.origin.as_ref().unwrap(), None);
        h.push(m, 2);
        let cursor = Replay::parse_cursor("trades-0-10,chat-1-3").unwrap();
        let f = h.replay(&Replay::After(cursor), starts);
        assert_eq!(ids(&f), ["chat-1-4", "trades-0-20"]);
        assert_eq!(f.recovered, Some(false), "trades 12 and 15 are gone");
        let cursor = Replay::parse_cursor("trades-0-15,chat-1-3").unwrap();
        assert_eq!(
            h.replay(&Replay::After(cursor), starts).recovered,
            Some(true)
        );
        // Before this replica started reading trades.
        let cursor = Replay::parse_cursor("trades-0-5,chat-1-4").unwrap();
        let h = fed();
        assert_eq!(
            h.replay(&Replay::After(cursor), starts).recovered,
            Some(false)
        );
    }

    #[test]
    fn gaps_name_what_the_log_must_fill() {
        let mut h = fed();
        let m = msg("trades", 0, 20);
        h.advance(m.origin.as_ref().unwrap(), None);
        h.push(m, 2);
        let cursor = Replay::parse_cursor("trades-0-11,chat-1-4").unwrap();
        let gaps = h.gaps(&cursor, starts);
        assert_eq!(gaps, [("trades".into(), 0, 12, 16)]);
        let cursor = Replay::parse_cursor("trades-0-15,chat-1-4").unwrap();
        assert!(h.gaps(&cursor, starts).is_empty());
    }

    #[test]
    fn a_cursor_ahead_of_the_log_sends_everything_and_says_so() {
        let h = fed();
        let cursor = Replay::parse_cursor("trades-0-900,chat-1-4").unwrap();
        let f = h.replay(&Replay::After(cursor), starts);
        assert_eq!(ids(&f), ["trades-0-10", "trades-0-12", "trades-0-15"]);
        assert_eq!(f.recovered, Some(false));
    }

    #[test]
    fn bad_cursors_are_refused() {
        assert!(Replay::parse_cursor("").is_none());
        assert!(Replay::parse_cursor("trades-0-1,nonsense").is_none());
    }

    #[test]
    fn bytes_are_accounted() {
        let mut h = fed();
        assert!(h.bytes() > 0);
        let freed = h.clear();
        assert_eq!(h.bytes(), 0);
        assert!(freed > 0 && h.is_empty());
    }
}
