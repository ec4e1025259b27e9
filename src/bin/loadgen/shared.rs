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
