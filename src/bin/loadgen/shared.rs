//! State shared by every subscriber and publisher task and the step driver: counters,
//! the latency histogram, the publish rate, the first error seen and the stop flag.

use std::sync::Mutex;
use std::sync::atomic::{
    AtomicBool, AtomicU64, AtomicUsize,
    Ordering::{Acquire, Relaxed, Release},
};
use std::time::Instant;

use crate::hist::Hist;

pub struct Shared {
    pub t0: Instant,
    pub hist: Hist,
    pub received: AtomicU64,
    /// WebSocket payload bytes of the messages counted in `received` (peers compared on
    /// CPU per delivery must send frames of the same size).
    pub received_bytes: AtomicU64,
    /// Messages received per subscriber connection.
    pub conn_recv: Vec<AtomicU64>,
    /// Messages published per destination (the next sequence number).
    pub published: Vec<AtomicU64>,
    /// Publisher rate per destination, messages/s (f64 bits).
    pub rate_per_dest: AtomicU64,
    pub ready: AtomicUsize,
    pub subscribed_sent: AtomicUsize,
    pub failed: AtomicUsize,
    pub closed_after_ready: AtomicUsize,
    pub out_of_order: AtomicU64,
    pub first_error: Mutex<Option<String>>,
    pub stop: AtomicBool,
    pub record: AtomicBool,
    /// Trade-watch mode: a MESSAGE without a token is a trade, timed by its `"ts"`.
    pub trades: bool,
    /// Latency of each message's first copy to reach any subscriber, and how far the other
    /// copies trail it (scenario 6: set against a plain consumer, the first copy leaves out
    /// the fan-out to every subscriber's socket; the trail is that fan-out).
    pub first: Option<FirstCopy>,
}

/// Which message of each destination reached a subscriber first, and how far each copy
/// of a message trails that first copy (the fan-out's spread, apart from the path to it).
pub struct FirstCopy {
    /// SEND → the first copy's read, one sample per message.
    pub hist: Hist,
    /// Each copy's read − its message's first copy's read, one sample per copy (the first
    /// copy itself counts as 0).
    pub behind: Hist,
    /// Per destination: one past the highest sequence number seen by any subscriber.
    seen: Vec<AtomicU64>,
    /// Per destination, a ring of [`RING`] slots: when the first copy of `seq` arrived,
    /// tagged with `seq`'s low bits (see [`pack`]).
    arrived: Vec<AtomicU64>,
}

const RING: usize = 1024;
const TIME_BITS: u32 = 44; // ns since t0: 4.8 hours
const TIME_MASK: u64 = (1 << TIME_BITS) - 1;
/// The low bits of a sequence number a slot keeps as its tag.
const SEQ_MASK: u64 = (1 << (64 - TIME_BITS)) - 1;

fn pack(seq: u64, now: u64) -> u64 {
    (seq << TIME_BITS) | (now & TIME_MASK)
}

impl FirstCopy {
    pub fn new(destinations: usize) -> FirstCopy {
        FirstCopy {
            hist: Hist::new(),
            behind: Hist::new(),
            seen: (0..destinations).map(|_| AtomicU64::new(0)).collect(),
            arrived: (0..destinations * RING)
                .map(|_| AtomicU64::new(u64::MAX))
                .collect(),
        }
    }

    /// Whether this is the first copy of message `seq` of destination `d` to arrive
    /// (messages of a destination are published in order and arrive in order on each
    /// socket, so the first copy of `seq` is the first to move the mark past it).
    pub fn first(&self, d: u64, seq: u64) -> bool {
        self.seen
            .get(d as usize)
            .is_some_and(|s| s.fetch_max(seq + 1, Relaxed) <= seq)
    }

    /// Records one copy of message `seq` of destination `d`, read at `now`, sent at `sent`
    /// (both ns since t0).
    pub fn copy(&self, d: u64, seq: u64, now: u64, sent: u64) {
        let Some(slot) = self.arrived.get(d as usize * RING + seq as usize % RING) else {
            return;
        };
        if self.first(d, seq) {
            self.hist.record(now.saturating_sub(sent));
            slot.store(pack(seq, now), Release);
            self.behind.record(0);
            return;
        }
        // The first copy may be read on another thread this very moment: wait for its
        // mark briefly; a copy whose first copy went uncounted (it arrived out of order
        // across sockets, or the ring wrapped) is left out.
        for _ in 0..1000 {
            let v = slot.load(Acquire);
            if v >> TIME_BITS == seq & SEQ_MASK {
                self.behind.record(now.saturating_sub(v & TIME_MASK));
                return;
            }
            std::hint::spin_loop();
        }
    }

    pub fn reset(&self) {
        self.hist.reset();
        self.behind.reset();
    }
}

impl Shared {
    #[inline]
    pub fn now_ns(&self) -> u64 {
        self.t0.elapsed().as_nanos() as u64
    }
    pub fn note_error(&self, e: String) {
        let mut g = self.first_error.lock().unwrap();
        if g.is_none() {
            *g = Some(e);
        }
    }
    pub fn set_rate_per_dest(&self, r: f64) {
        self.rate_per_dest.store(r.to_bits(), Relaxed);
    }
    pub fn rate_per_dest(&self) -> f64 {
        f64::from_bits(self.rate_per_dest.load(Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::FirstCopy;
    use crate::hist::percentiles;
    use std::sync::atomic::Ordering::Relaxed;

    #[test]
    fn copies_trail_their_own_first_copy() {
        let f = FirstCopy::new(2);
        // Message 7 of destination 1: sent at 1,000 ns, first read at 5,000, two more copies.
        f.copy(1, 7, 5_000, 1_000);
        f.copy(1, 7, 6_000_000, 1_000);
        f.copy(1, 7, 2_000_000, 1_000);
        // Message 8 has a slot of its own.
        f.copy(1, 8, 7_000_000, 6_900_000);
        f.copy(1, 8, 7_000_500, 6_900_000);
        let first = percentiles(&f.hist.snapshot(), None);
        assert_eq!(first.count, 2);
        let behind = f.behind.snapshot();
        assert_eq!(behind.iter().sum::<u64>(), 5);
        assert_eq!(f.behind.max.load(Relaxed), 5_995_000);
        // A late copy of message 7 after 8 went first is still timed against 7's first copy.
        f.copy(1, 7, 8_000_000, 1_000);
        assert_eq!(f.behind.max.load(Relaxed), 7_995_000);
    }

    #[test]
    fn a_copy_whose_first_copy_went_uncounted_is_left_out() {
        let f = FirstCopy::new(1);
        f.copy(0, 5, 1_000, 0);
        // Message 4 arrives after 5 moved the mark: never counted as first, so its copies
        // have nothing to trail and are not recorded.
        f.copy(0, 4, 2_000, 0);
        f.copy(0, 4, 3_000, 0);
        assert_eq!(f.behind.snapshot().iter().sum::<u64>(), 1);
        assert_eq!(f.hist.snapshot().iter().sum::<u64>(), 1);
    }
}
