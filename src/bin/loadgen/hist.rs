//! Latency statistics: a lock-free log-linear histogram over nanoseconds (32 sub-buckets
//! per power of two, ~3% resolution) that every subscriber task records into, and the
//! percentiles read from its snapshots.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

const SUB_BITS: u32 = 5;
const SUB: usize = 1 << SUB_BITS;
const LINEAR: usize = 2 * SUB;
const BUCKETS: usize = LINEAR + (41 - (SUB_BITS as usize + 1)) * SUB;

fn bucket_of(v: u64) -> usize {
    if v < LINEAR as u64 {
        return v as usize;
    }
    let e = 63 - v.leading_zeros(); // >= SUB_BITS + 1
    let sub = ((v >> (e - SUB_BITS)) as usize) & (SUB - 1);
    let idx = LINEAR + (e as usize - (SUB_BITS as usize + 1)) * SUB + sub;
    idx.min(BUCKETS - 1)
}

/// Upper edge of a bucket (so a percentile never under-reports).
fn bucket_high(idx: usize) -> u64 {
    if idx < LINEAR {
        return idx as u64;
    }
    let e = (idx - LINEAR) / SUB + SUB_BITS as usize + 1;
    let sub = ((idx - LINEAR) % SUB) as u64;
    ((SUB as u64 + sub + 1) << (e - SUB_BITS as usize)) - 1
}

pub struct Hist {
    pub b: Vec<AtomicU64>,
    pub max: AtomicU64,
}

impl Hist {
    pub fn new() -> Self {
        Hist {
            b: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            max: AtomicU64::new(0),
        }
    }
    #[inline]
    pub fn record(&self, v: u64) {
        self.b[bucket_of(v)].fetch_add(1, Relaxed);
        if v > self.max.load(Relaxed) {
            self.max.fetch_max(v, Relaxed);
        }
    }
    pub fn snapshot(&self) -> Vec<u64> {
        self.b.iter().map(|x| x.load(Relaxed)).collect()
    }
    pub fn reset(&self) {
        for x in &self.b {
            x.store(0, Relaxed);
        }
        self.max.store(0, Relaxed);
    }
}

#[derive(Default, Debug, Clone, Copy)]
pub struct Pct {
    pub count: u64,
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

pub fn percentiles(counts: &[u64], exact_max: Option<u64>) -> Pct {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return Pct::default();
    }
    let at = |q: f64| -> f64 {
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut acc = 0;
        for (i, c) in counts.iter().enumerate() {
            acc += c;
            if acc >= rank {
                return bucket_high(i) as f64 / 1e6;
            }
        }
        0.0
    };
    let top = counts.iter().rposition(|&c| c > 0).unwrap_or(0);
    let max = exact_max.map_or(bucket_high(top) as f64 / 1e6, |m| m as f64 / 1e6);
    // A bucket's upper edge may lie above the largest value seen.
    Pct {
        count: total,
        p50: at(0.50).min(max),
        p99: at(0.99).min(max),
        p999: at(0.999).min(max),
        max,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut last = 0;
        for v in [
            0u64,
            1,
            63,
            64,
            65,
            100,
            1_000,
            65_432,
            1_000_000,
            50_000_000,
            1 << 39,
        ] {
            let b = bucket_of(v);
            assert!(b >= last);
            last = b;
            let hi = bucket_high(b);
            assert!(hi >= v, "{v} -> {b} -> {hi}");
            assert!(hi as f64 <= v as f64 * 1.04 + 1.0, "{v} -> {hi}");
        }
    }
}
