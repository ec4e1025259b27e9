//! State shared by every subscriber and publisher task and the step driver: counters,
//! the latency histogram, the publish rate, the first error seen and the stop flag.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
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
    /// Latency of each message's first copy to reach any subscriber (scenario 6: set
    /// against a plain consumer, it leaves out the fan-out to every subscriber's socket).
    pub first: Option<FirstCopy>,
}

/// Which message of each destination reached a subscriber first.
pub struct FirstCopy {
    pub hist: Hist,
    /// Per destination: one past the highest sequence number seen by any subscriber.
    seen: Vec<AtomicU64>,
}

impl FirstCopy {
    pub fn new(destinations: usize) -> FirstCopy {
        FirstCopy {
            hist: Hist::new(),
            seen: (0..destinations).map(|_| AtomicU64::new(0)).collect(),
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
