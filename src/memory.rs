//! Gives freed memory back to the operating system. After a burst that filled every outbox,
//! glibc keeps the freed heap (measured: 739 MB held, 6.3 MB in use) until asked;
//! `malloc_trim(0)` returned it (RSS 672 -> 28 MB). A task asks every
//! `--memory-trim-interval-ms`; it is cheap when there is nothing to give back.

use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Returns freed heap pages to the OS now; true if any were (glibc only).
pub fn trim() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only walks glibc's own arenas; it has no preconditions.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Trims every `interval` until shutdown (an interval of zero: never).
pub async fn run(interval: Duration, shutdown: CancellationToken) {
    if interval.is_zero() {
        return;
    }
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let released = tokio::task::spawn_blocking(trim).await.unwrap_or(false);
        if released {
            tracing::debug!("returned freed memory to the OS");
        }
    }
}
