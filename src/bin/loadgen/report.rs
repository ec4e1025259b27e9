//! Output: one JSON line per result on stdout (what scripts/bench.sh collects) and a
//! human line per step on stderr.

use serde_json::Value;

use crate::step::StepResult;

pub fn r1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}
pub fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
pub fn emit(v: Value) {
    println!("{v}");
}

pub fn human_step(label: &str, r: &StepResult) {
    eprintln!(
        "  {label:<10} target {:>10.0}/s delivered {:>10.0}/s  p50 {:>7.3} p99 {:>8.3} p999 {:>8.3} max {:>8.3} ms  cpu/delivery server {:>6} loadgen {:>6} µs  lost {:>6}/{:<9} server cpu {:>5} loadgen cpu {:>5} rss {} MB  cpu pressure {} -> {}%",
        r.target_rate,
        r.delivered_per_s,
        r.lat.p50,
        r.lat.p99,
        r.lat.p999,
        r.lat.max,
        r.server_us_per_delivery
            .map_or("-".into(), |x| format!("{x:.2}")),
        r.loadgen_us_per_delivery
            .map_or("-".into(), |x| format!("{x:.2}")),
        r.lost,
        r.expected,
        r.server_cpu.map_or("-".into(), |x| format!("{x:.0}%")),
        r.loadgen_cpu.map_or("-".into(), |x| format!("{x:.0}%")),
        r.server_rss_kb
            .map_or("-".into(), |x| format!("{:.1}", x as f64 / 1024.0)),
        pressure(r.psi_before),
        pressure(r.psi_after),
    );
}

/// A CPU pressure figure (`/proc/pressure/cpu` some avg10, %) for the human summary.
pub fn pressure(p: Option<f64>) -> String {
    p.map_or("-".into(), |x| format!("{x:.1}"))
}
