//! One measured step: load at a rate for a while, then drain, then count what was
//! expected, received and lost, with latency percentiles, the server's CPU and RSS and
//! the CPU cost of one delivery: CPU seconds (user + system) of the server process, and
//! of the load generator, over the measuring window ÷ deliveries read in that window.
//! On a shared machine a p99 moves between sittings while CPU per delivery barely does,
//! so this is the figure that ranks servers; the CPU pressure before and after the
//! window says how busy the machine was. The ramp retries a failed step before it counts.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::args::Args;
use crate::hist::{Pct, percentiles};
use crate::procfs::{Proc, cpu_pressure};
use crate::report::{human_step, r1, r3};
use crate::shared::Shared;
use crate::subscriber::SubCfg;

pub struct Run {
    pub a: Args,
    pub sh: Arc<Shared>,
    pub proc_: Proc,
    pub dest_of: Vec<usize>,
    pub slow: Vec<bool>,
    /// How to open a connection (target, CONNECT frame, source addresses).
    pub scfg: Arc<SubCfg>,
    /// host:port of the WebSocket URL (the gateway's /metrics is there by default).
    pub hostport: String,
    /// The plain Kafka consumer's latencies (`--kafka-plain`).
    pub plain: Option<Arc<crate::hist::Hist>>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct StepResult {
    pub target_rate: f64,
    pub delivered_per_s: f64,
    pub expected: u64,
    pub received: u64,
    pub lost: u64,
    pub lat: Pct,
    pub server_cpu: Option<f64>,
    pub loadgen_cpu: Option<f64>,
    pub server_rss_kb: Option<u64>,
    pub secs: f64,
    /// Deliveries read by subscribers during the measuring window.
    pub window_deliveries: u64,
    /// Server process CPU µs (user + system) per delivery in the window.
    pub server_us_per_delivery: Option<f64>,
    /// The load generator's own CPU µs per delivery in the window.
    pub loadgen_us_per_delivery: Option<f64>,
    /// `/proc/pressure/cpu` `some` avg10 (%) before and after the window.
    pub psi_before: Option<f64>,
    pub psi_after: Option<f64>,
}

impl StepResult {
    pub fn passes(&self, limit_ms: f64) -> bool {
        self.lost == 0
            && self.lat.count > 0
            && self.lat.p99 <= limit_ms
            && self.delivered_per_s >= 0.9 * self.target_rate
    }
    pub fn json(&self) -> Value {
        json!({
            "target_rate": self.target_rate.round(),
            "delivered_per_s": self.delivered_per_s.round(),
            "expected": self.expected,
            "received": self.received,
            "lost": self.lost,
            "p50_ms": r3(self.lat.p50),
            "p99_ms": r3(self.lat.p99),
            "p999_ms": r3(self.lat.p999),
            "max_ms": r3(self.lat.max),
            "server_cpu_pct": self.server_cpu.map(r1),
            "loadgen_cpu_pct": self.loadgen_cpu.map(r1),
            "server_rss_kb": self.server_rss_kb,
            "secs": r3(self.secs),
            "window_deliveries": self.window_deliveries,
            "server_cpu_us_per_delivery": self.server_us_per_delivery.map(r3),
            "loadgen_cpu_us_per_delivery": self.loadgen_us_per_delivery.map(r3),
            "cpu_psi_before": self.psi_before,
            "cpu_psi_after": self.psi_after,
        })
    }
}

impl Run {
    pub fn active_per_dest(&self) -> Vec<u64> {
        let mut v = vec![0u64; self.a.destinations];
        for (i, &d) in self.dest_of.iter().enumerate() {
            if !self.slow[i] {
                v[d] += 1;
            }
        }
        v
    }

    /// One ramp step, tried up to 1 + retries times until it passes.
    pub async fn ramp_step(&self, rate: f64, steps: &mut Vec<Value>) -> StepResult {
        let mut tries = 0;
        loop {
            let r = self.step(rate, self.a.step_secs, None, |_, _, _| {}).await;
            let ok = r.passes(self.a.p99_limit_ms);
            tries += 1;
            let last = ok || tries > self.a.retries;
            let label = if ok {
                "pass"
            } else if last {
                "FAIL"
            } else {
                "retry"
            };
            human_step(label, &r);
            let mut j = r.json();
            if let Some(o) = j.as_object_mut() {
                o.insert("attempt".into(), json!(tries));
                o.insert("pass".into(), json!(ok));
            }
            steps.push(j);
            if last {
                return r;
            }
        }
    }

    pub fn conn_counts(&self) -> Vec<u64> {
        self.sh.conn_recv.iter().map(|x| x.load(Relaxed)).collect()
    }
    pub fn pub_counts(&self) -> Vec<u64> {
        self.sh.published.iter().map(|x| x.load(Relaxed)).collect()
    }

    /// Runs load at `rate` delivered msgs/s for `secs`; `on_sample` is called every
    /// `sample` seconds with (elapsed, window percentiles, server RSS).
    pub async fn step(
        &self,
        rate: f64,
        secs: f64,
        sample: Option<f64>,
        mut on_sample: impl FnMut(f64, Pct, Option<u64>),
    ) -> StepResult {
        let sh = &self.sh;
        let per_dest = self.active_per_dest();
        let subs: u64 = per_dest.iter().sum();
        let fan = subs as f64 / self.a.destinations as f64;
        let pub_rate_per_dest = rate / fan.max(1.0) / self.a.destinations as f64;

        sh.hist.reset();
        sh.record.store(true, Relaxed);
        let c0 = self.conn_counts();
        let p0 = self.pub_counts();
        let r0 = sh.received.load(Relaxed);
        let psi_before = cpu_pressure();
        let m0 = self.proc_.mark();
        let t0 = Instant::now();
        sh.set_rate_per_dest(pub_rate_per_dest);
        let mut prev = sh.hist.snapshot();
        match sample {
            Some(every) => {
                let mut next = every;
                while next <= secs + 1e-9 {
                    tokio::time::sleep_until(tokio::time::Instant::from_std(
                        t0 + Duration::from_secs_f64(next),
                    ))
                    .await;
                    let cur = sh.hist.snapshot();
                    let win: Vec<u64> = cur.iter().zip(&prev).map(|(a, b)| a - b).collect();
                    on_sample(next, percentiles(&win, None), self.proc_.server_rss());
                    prev = cur;
                    next += every;
                }
            }
            None => tokio::time::sleep(Duration::from_secs_f64(secs)).await,
        }
        let r1_ = sh.received.load(Relaxed);
        let elapsed = t0.elapsed().as_secs_f64();
        sh.set_rate_per_dest(0.0);
        let m1 = self.proc_.mark();
        let psi_after = cpu_pressure();
        let rss = self.proc_.server_rss();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let p1 = self.pub_counts();
        let exp_per_dest: Vec<u64> = p1.iter().zip(&p0).map(|(a, b)| a - b).collect();
        let expected: u64 = (0..self.dest_of.len())
            .filter(|&i| !self.slow[i])
            .map(|i| exp_per_dest[self.dest_of[i]])
            .sum();
        // Drain: wait for in-flight messages, stop early when nothing moves for a second.
        let deadline = Instant::now() + Duration::from_secs_f64(self.a.drain_secs);
        let mut last_total = u64::MAX;
        let mut last_move = Instant::now();
        loop {
            let c = self.conn_counts();
            let got: u64 = (0..c.len())
                .filter(|&i| !self.slow[i])
                .map(|i| (c[i] - c0[i]).min(exp_per_dest[self.dest_of[i]]))
                .sum();
            if got >= expected || Instant::now() >= deadline {
                break;
            }
            if got != last_total {
                last_total = got;
                last_move = Instant::now();
            } else if last_move.elapsed() > Duration::from_secs(1) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        sh.record.store(false, Relaxed);
        let c = self.conn_counts();
        let mut received = 0u64;
        let mut lost = 0u64;
        for i in 0..c.len() {
            if self.slow[i] {
                continue;
            }
            let e = exp_per_dest[self.dest_of[i]];
            let g = c[i] - c0[i];
            received += g;
            lost += e.saturating_sub(g);
        }
        let (scpu, mcpu) = Proc::cpu_pct(&m0, &m1);
        let (ssecs, msecs) = Proc::cpu_secs(&m0, &m1);
        let window_deliveries = r1_ - r0;
        let per = |cpu: Option<f64>| {
            cpu.filter(|_| window_deliveries > 0)
                .map(|s| s * 1e6 / window_deliveries as f64)
        };
        StepResult {
            target_rate: rate,
            delivered_per_s: window_deliveries as f64 / elapsed,
            expected,
            received,
            lost,
            lat: percentiles(&sh.hist.snapshot(), Some(sh.hist.max.load(Relaxed))),
            server_cpu: scpu,
            loadgen_cpu: mcpu,
            server_rss_kb: rss,
            secs: elapsed,
            window_deliveries,
            server_us_per_delivery: per(ssecs),
            loadgen_us_per_delivery: per(msecs),
            psi_before,
            psi_after,
        }
    }
}
