//! CPU and memory of the server under test and of the load generator itself, read from
//! /proc (CPU in clock ticks; Linux uses 100 per second on every common build), and the
//! machine's CPU pressure (`/proc/pressure/cpu`), which says how far a figure taken on a
//! shared machine can be trusted.

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
        let (s, m) = Self::cpu_secs(a, b);
        (s.map(|x| x / dt * 100.0), m.map(|x| x / dt * 100.0))
    }
    /// (server, loadgen) CPU seconds (user + system, all threads) between two marks.
    pub fn cpu_secs(a: &CpuMark, b: &CpuMark) -> (Option<f64>, Option<f64>) {
        let f = |x: Option<u64>, y: Option<u64>| match (x, y) {
            (Some(x), Some(y)) => Some(y.saturating_sub(x) as f64 / CLK_TCK),
            _ => None,
        };
        (f(a.server, b.server), f(a.me, b.me))
    }
    pub fn server_rss(&self) -> Option<u64> {
        self.server.as_deref().and_then(proc_rss_kb)
    }
}

/// `avg10` of the `some` line of `/proc/pressure/cpu`: the share (%) of the last ~10 s
/// in which some runnable task waited for a CPU. None where the kernel has no PSI.
pub fn cpu_pressure() -> Option<f64> {
    parse_pressure(&std::fs::read_to_string("/proc/pressure/cpu").ok()?)
}

fn parse_pressure(s: &str) -> Option<f64> {
    let line = s.lines().find(|l| l.starts_with("some "))?;
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix("avg10="))?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_avg10_of_some() {
        let s = "some avg10=12.34 avg60=5.00 avg300=1.00 total=123\nfull avg10=0.50 avg60=0.00 avg300=0.00 total=9\n";
        assert_eq!(parse_pressure(s), Some(12.34));
        assert_eq!(parse_pressure("full avg10=1.00\n"), None);
    }

    #[test]
    fn counts_cpu_of_a_process_by_pid() {
        // The "server" is this process, looked up by its pid: its CPU seconds must follow
        // what this process spends, as read from /proc/self.
        let p = Proc {
            server: Some(std::process::id().to_string()),
        };
        let a = p.mark();
        let mut x = 0u64;
        let give_up = Instant::now();
        let (server, me) = loop {
            for _ in 0..1_000_000 {
                x = x.wrapping_add(std::hint::black_box(1));
            }
            let (server, me) = Proc::cpu_secs(&a, &p.mark());
            // The two are read one after the other: wait until both passed the mark.
            if server.unwrap().min(me.unwrap()) >= 0.2 || give_up.elapsed().as_secs() > 60 {
                break (server.unwrap(), me.unwrap());
            }
        };
        assert!(x > 0);
        assert!(me >= 0.2, "{me}");
        assert!(server >= 0.2, "{server}");
    }
}
