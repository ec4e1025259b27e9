//! Concurrent connections per client address.

use dashmap::DashMap;
use std::net::IpAddr;
use std::sync::Arc;

/// Counts open connections per client address.
pub struct IpLimiter {
    max: usize,
    open: DashMap<IpAddr, usize>,
}

/// Holds one connection slot of an address; frees it when dropped.
pub struct IpSlot {
    limiter: Arc<IpLimiter>,
    ip: IpAddr,
}

impl IpLimiter {
    /// `max` connections per address; 0 means no limit.
    pub fn new(max: usize) -> Arc<IpLimiter> {
        Arc::new(IpLimiter {
            max,
            open: DashMap::new(),
        })
    }

    /// Takes a slot for `ip`, or `None` when the address already has `max` connections.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let mut count = self.open.entry(ip).or_insert(0);
        if self.max > 0 && *count >= self.max {
            return None;
        }
        *count += 1;
        Some(IpSlot {
            limiter: self.clone(),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        self.limiter.open.remove_if_mut(&self.ip, |_, count| {
            *count -= 1;
            *count == 0
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_slots_are_counted_and_freed() {
        let l = IpLimiter::new(2);
        let ip: IpAddr = "127.0.0.9".parse().unwrap();
        let a = l.acquire(ip).unwrap();
        let _b = l.acquire(ip).unwrap();
        assert!(l.acquire(ip).is_none());
        assert!(l.acquire("127.0.0.8".parse().unwrap()).is_some());
        drop(a);
        assert!(l.acquire(ip).is_some());
    }
}
