//! CPU and memory of the server under test and of the load generator itself, read from
//! /proc (CPU in clock ticks; Linux uses 100 per second on every common build).

use std::time::Instant;

const CLK_TCK: f64 = 100.0;

fn proc_cpu_ticks(pid: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

pub fn proc_rss_kb(pid: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[derive(Clone, Copy)]
pub struct CpuMark {
    pub at: Instant,
    pub server: Option<u64>,
    pub me: Option<u64>,
}

pub struct Proc {
    pub server: Option<String>,
}

impl Proc {
    pub fn mark(&self) -> CpuMark {
        CpuMark {
            at: Instant::now(),
            server: self.server.as_deref().and_then(proc_cpu_ticks),
            me: proc_cpu_ticks("self"),
        }
    }
    /// (server %, loadgen %) of one core between two marks.
    pub fn cpu_pct(a: &CpuMark, b: &CpuMark) -> (Option<f64>, Option<f64>) {
        let dt = b.at.duration_since(a.at).as_secs_f64().max(1e-9);
        let f = |x: Option<u64>, y: Option<u64>| match (x, y) {
            (Some(x), Some(y)) => Some((y.saturating_sub(x)) as f64 / CLK_TCK / dt * 100.0),
            _ => None,
        };
        (f(a.server, b.server), f(a.me, b.me))
    }
    pub fn server_rss(&self) -> Option<u64> {
        self.server.as_deref().and_then(proc_rss_kb)
    }
}
