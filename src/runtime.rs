//! The gateway's runtime: tokio's multi-thread scheduler, a worker per core, counting how
//! many of its workers are idle (parked, waiting for work) at each moment. A fan-out reads
//! that count to decide how many of its copies the publisher writes itself and how many
//! it leaves to sessions on the idle workers (`hub::direct::share`).

use std::sync::atomic::{AtomicUsize, Ordering};

static IDLE: AtomicUsize = AtomicUsize::new(0);

/// The runtime `stompgate` runs in.
pub fn build() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(|| {
            IDLE.fetch_add(1, Ordering::Relaxed);
        })
        .on_thread_unpark(|| {
            IDLE.fetch_sub(1, Ordering::Relaxed);
        })
        .build()
}

/// Workers of the runtime from [`build`] idle now (0 in any other runtime: a test's).
pub fn idle_workers() -> usize {
    IDLE.load(Ordering::Relaxed)
}
