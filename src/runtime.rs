//! The gateway's runtime: tokio's multi-thread scheduler, a worker per core, counting how
//! many of its workers are idle (parked, waiting for work) at each moment and how busy the
//! workers were lately (sampled at most every tenth of a second). A fan-out reads both to
//! decide how many of its copies the publisher writes itself and how many it leaves to
//! sessions on the idle workers (`hub::direct::share`), whether it runs on a worker (a
//! session's SEND through the embedded bus) or on a thread of its own (the Kafka consumer).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static IDLE: AtomicUsize = AtomicUsize::new(0);

/// The runtime from [`build`], whose workers [`busy`] samples from any thread.
static GATEWAY: OnceLock<tokio::runtime::Handle> = OnceLock::new();

/// The workers' busy share over the last sample (at least [`WINDOW`]), in thousandths.
static BUSY: AtomicU32 = AtomicU32::new(0);
/// When [`BUSY`] was sampled (nanoseconds since [`epoch`]) and the workers' busy time then.
static SAMPLED_AT: AtomicU64 = AtomicU64::new(0);
static BUSY_AT: AtomicU64 = AtomicU64::new(0);

/// The shortest span [`BUSY`] is sampled over.
const WINDOW: Duration = Duration::from_millis(100);

/// Below this busy share (thousandths) a fan-out is shared with idle workers. Sharing
/// costs 1-5% more CPU per delivery at 60,000/s (sessions woken and polled instead of
/// written to in one loop; docs/cpu-per-delivery.md), which a light replica has to spare and a loaded one
/// needs for its throughput. Light load (1,000 deliveries/s) keeps the workers ~1% busy;
/// 60,000/s keeps them ~30% busy. (Tokio counts a worker's busy time when it runs out of
/// work or every 61 tasks: a task that runs long shows up late.)
const SHARE_BELOW: u32 = 100;

/// The runtime `stompgate` runs in. Its busy share is measured from the moment it is
/// built, so that the first sample is an average since then, not everything since then
/// over one window.
pub fn build() -> std::io::Result<tokio::runtime::Runtime> {
    let runtime = builder().build()?;
    epoch();
    let _ = GATEWAY.set(runtime.handle().clone());
    Ok(runtime)
}

fn builder() -> tokio::runtime::Builder {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder
        .enable_all()
        .on_thread_park(|| {
            IDLE.fetch_add(1, Ordering::Relaxed);
        })
        .on_thread_unpark(|| {
            IDLE.fetch_sub(1, Ordering::Relaxed);
        });
    builder
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// The workers' busy share (thousandths) since the last sample, from tokio's own busy-time
/// counters; sampled again by the first caller once [`WINDOW`] has passed, so that an idle
/// replica has no timer to wake for it. The workers are those of the runtime from [`build`]
/// from whichever thread asks, or else (a test's runtime) of the caller's runtime.
fn busy() -> u32 {
    let now = epoch().elapsed().as_nanos() as u64;
    let at = SAMPLED_AT.load(Ordering::Relaxed);
    let span = now.saturating_sub(at);
    if span >= WINDOW.as_nanos() as u64
        && SAMPLED_AT
            .compare_exchange(at, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        && let Some(handle) = GATEWAY
            .get()
            .cloned()
            .or_else(|| tokio::runtime::Handle::try_current().ok())
    {
        let metrics = handle.metrics();
        let workers = metrics.num_workers();
        let total: u64 = (0..workers)
            .map(|w| metrics.worker_total_busy_duration(w).as_nanos() as u64)
            .sum();
        let busy = total.saturating_sub(BUSY_AT.swap(total, Ordering::Relaxed));
        let share = busy.saturating_mul(1000) / span.saturating_mul(workers as u64).max(1);
        BUSY.store(share.min(1000) as u32, Ordering::Relaxed);
    }
    BUSY.load(Ordering::Relaxed)
}

/// Workers of the runtime from [`build`] idle now (0 in any other runtime: a test's).
fn idle_workers() -> usize {
    IDLE.load(Ordering::Relaxed)
}

/// The idle workers a fan-out may share its copies with: all of them while the workers
/// were busy less than [`SHARE_BELOW`] since the last sample, none otherwise.
pub fn spare_workers() -> usize {
    match idle_workers() {
        0 => 0,
        idle => spare(idle, busy()),
    }
}

fn spare(idle: usize, busy: u32) -> usize {
    if busy < SHARE_BELOW { idle } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_workers_are_spare_only_while_the_workers_are_light() {
        assert_eq!(spare(1, 0), 1);
        assert_eq!(spare(3, SHARE_BELOW - 1), 3);
        assert_eq!(spare(1, SHARE_BELOW), 0);
        assert_eq!(spare(1, 1000), 0);
        assert_eq!(spare(0, 0), 0);
    }

    #[test]
    fn the_busy_share_is_sampled_from_the_runtime_it_runs_in() {
        let runtime = builder().worker_threads(2).build().unwrap();
        // One worker spins for two windows: the sample after it (tokio counts a worker's
        // busy time once it runs out of work) says the workers were about half busy, far
        // above the limit.
        let busy = runtime.block_on(async {
            tokio::spawn(async { busy() }).await.unwrap();
            tokio::spawn(async {
                let end = Instant::now() + WINDOW * 2;
                while Instant::now() < end {
                    std::hint::spin_loop();
                }
            })
            .await
            .unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            tokio::spawn(async { busy() }).await.unwrap()
        });
        assert!((SHARE_BELOW..=1000).contains(&busy), "busy {busy}");
        assert_eq!(spare(1, busy), 0);
    }
}
