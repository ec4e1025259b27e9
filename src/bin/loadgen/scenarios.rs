//! The scenarios, one function per mode, run once every subscriber is connected (or the
//! connect phase timed out): each adds its figures to the result object and returns the
//! exit code (0: the scenario held; 1: something was lost, refused or never delivered).

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::args::Mode;
use crate::hist::Pct;
use crate::procfs::{Proc, proc_rss_kb};
use crate::report::{human_step, r1, r3};
use crate::step::{Run, StepResult};

/// What the connect phase left for the scenario to report.
pub struct Connected {
    pub ready: usize,
    pub all_ready: bool,
    pub rss_before: Option<u64>,
    /// Server and load generator CPU (% of a core) during the connect phase.
    pub cpu: (Option<f64>, Option<f64>),
    pub slow_n: usize,
}

/// Runs the scenario of `--mode`.
pub async fn run(run: &Arc<Run>, c: &Connected, o: &mut Map<String, Value>) -> i32 {
    match run.a.mode {
        Mode::HistoryMem => crate::history::history_mem(run.clone(), o).await,
        Mode::ResumeStorm => crate::resume::resume_storm(run.clone(), o).await,
        Mode::Burst => crate::burst::burst(run.clone(), o).await,
        Mode::Storm => storm(run, c, o),
        Mode::Idle => idle(run, c, o).await,
        Mode::Fixed | Mode::Slow => fixed(run, c, o).await,
        Mode::FanoutRamp => fanout_ramp(run, o).await,
        Mode::TradeWatch => trade_watch(run, c, o).await,
    }
}

/// Exchange trades through the feed, Kafka and the gateway: trades/s read by the
/// subscribers over `--duration` s and the delay from each trade's timestamp (ms) to its
/// arrival, with the server's CPU.
async fn trade_watch(run: &Run, c: &Connected, o: &mut Map<String, Value>) -> i32 {
    let sh = &run.sh;
    let murl = crate::scrape::metrics_url(&run.hostport, run.a.metrics_url.as_deref());
    let counters = |t: &str| {
        ["stompgate_conflated_total", "stompgate_dropped_total"]
            .map(|n| crate::scrape::sample(t, n).unwrap_or(0.0))
    };
    let before = crate::scrape::get(&murl).await.ok().map(|t| counters(&t));
    sh.hist.reset();
    let r0 = sh.received.load(Relaxed);
    let m0 = run.proc_.mark();
    let psi0 = crate::procfs::cpu_pressure();
    let t0 = std::time::Instant::now();
    sh.record.store(true, Relaxed);
    tokio::time::sleep(Duration::from_secs_f64(run.a.duration)).await;
    sh.record.store(false, Relaxed);
    let secs = t0.elapsed().as_secs_f64();
    let got = sh.received.load(Relaxed) - r0;
    let (scpu, _) = Proc::cpu_pct(&m0, &run.proc_.mark());
    let p = crate::hist::percentiles(&sh.hist.snapshot(), Some(sh.hist.max.load(Relaxed)));
    // Each subscriber reads one destination (a market): trades through the bridge per s
    // = deliveries/s ÷ subscribers per market.
    let per_market = c.ready.max(1) as f64 / run.a.destinations.max(1) as f64;
    let bridge = got as f64 / secs / per_market;
    eprintln!(
        "  trades: {got} deliveries in {secs:.1} s ({:.0}/s, {bridge:.0} trades/s per market subscriber over the window); exchange -> subscriber delay p50 {:.1} p99 {:.1} p999 {:.1} max {:.1} ms (trade_timestamp, ms)",
        got as f64 / secs,
        p.p50,
        p.p99,
        p.p999,
        p.max
    );
    o.insert("deliveries".into(), json!(got));
    o.insert("delivered_per_s".into(), json!((got as f64 / secs).round()));
    o.insert("bridge_trades_per_s".into(), json!(bridge.round()));
    o.insert("p50_ms".into(), json!(r3(p.p50)));
    o.insert("p99_ms".into(), json!(r3(p.p99)));
    o.insert("p999_ms".into(), json!(r3(p.p999)));
    o.insert("max_ms".into(), json!(r3(p.max)));
    o.insert("server_cpu_pct".into(), json!(scpu.map(r1)));
    o.insert("cpu_psi_before".into(), json!(psi0));
    // Trades are conflatable: a subscriber that falls behind gets the latest, not every one.
    if let (Some(b), Ok(t)) = (before, crate::scrape::get(&murl).await) {
        let a = counters(&t);
        eprintln!(
            "  gateway: {} conflated, {} dropped in the window",
            a[0] - b[0],
            a[1] - b[1]
        );
        o.insert("conflated".into(), json!(a[0] - b[0]));
        o.insert("dropped".into(), json!(a[1] - b[1]));
    }
    i32::from(got == 0)
}

/// Time for N connections to CONNECT and SUBSCRIBE (measured by the connect phase).
fn storm(run: &Run, c: &Connected, o: &mut Map<String, Value>) -> i32 {
    let (cs_cpu, cm_cpu) = c.cpu;
    o.insert("server_cpu_pct".into(), json!(cs_cpu.map(r1)));
    o.insert("loadgen_cpu_pct".into(), json!(cm_cpu.map(r1)));
    o.insert("server_rss_kb".into(), json!(run.proc_.server_rss()));
    i32::from(!c.all_ready)
}

/// N connections held idle; the server's RSS per connection.
async fn idle(run: &Run, c: &Connected, o: &mut Map<String, Value>) -> i32 {
    tokio::time::sleep(Duration::from_secs_f64(run.a.hold)).await;
    let m0 = run.proc_.mark();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let m1 = run.proc_.mark();
    let (icpu, _) = Proc::cpu_pct(&m0, &m1);
    let rss_before = c.rss_before;
    let rss_after = run.proc_.server_rss();
    let still = c
        .ready
        .saturating_sub(run.sh.closed_after_ready.load(Relaxed));
    let per = match (rss_before, rss_after) {
        (Some(b), Some(x)) if still > 0 => Some(x.saturating_sub(b) as f64 / still as f64),
        _ => None,
    };
    let my_rss = proc_rss_kb("self");
    eprintln!(
        "  idle: {still} connections held; server RSS {} -> {} MB, {} KB per connection; idle server cpu {}; loadgen RSS {} MB",
        rss_before.map_or("-".into(), |x| format!("{:.1}", x as f64 / 1024.0)),
        rss_after.map_or("-".into(), |x| format!("{:.1}", x as f64 / 1024.0)),
        per.map_or("-".into(), |x| format!("{x:.2}")),
        icpu.map_or("-".into(), |x| format!("{x:.1}%")),
        my_rss.map_or("-".into(), |x| format!("{:.1}", x as f64 / 1024.0)),
    );
    o.insert("held".into(), json!(still));
    o.insert("server_rss_before_kb".into(), json!(rss_before));
    o.insert("server_rss_kb".into(), json!(rss_after));
    o.insert(
        "rss_per_conn_kb".into(),
        json!(per.map(|x| (x * 100.0).round() / 100.0)),
    );
    o.insert("idle_server_cpu_pct".into(), json!(icpu.map(r1)));
    o.insert("loadgen_rss_kb".into(), json!(my_rss));
    i32::from(!c.all_ready)
}

/// A fixed delivered rate for a duration; slow mode adds clients that stopped reading
/// and samples the others' p99 and the server's RSS over time.
async fn fixed(run: &Run, c: &Connected, o: &mut Map<String, Value>) -> i32 {
    let a = &run.a;
    if a.warmup > 0.0 {
        let w = run.step(a.rate, a.warmup, None, |_, _, _| {}).await;
        human_step("warm-up", &w);
    }
    let mut series = Vec::new();
    let sample = (a.mode == Mode::Slow).then_some(a.sample_secs);
    // Scenario 6: the gateway's histogram around the window, the plain consumer's in it.
    let murl = crate::scrape::metrics_url(&run.hostport, a.metrics_url.as_deref());
    if let Some(f) = &run.sh.first {
        f.reset();
    }
    let gw0 = match &run.plain {
        Some(h) => {
            h.reset();
            crate::scrape::get(&murl).await.ok()
        }
        None => None,
    };
    let r = run
        .step(a.rate, a.duration, sample, |t, p, rss| {
            eprintln!(
                "    t={t:>5.1}s others' p99 {:>8.3} ms (n={}) server rss {} MB",
                p.p99,
                p.count,
                rss.map_or("-".into(), |x| format!("{:.1}", x as f64 / 1024.0))
            );
            series
                .push(json!({"t": t, "p99_ms": r3(p.p99), "count": p.count, "server_rss_kb": rss}));
        })
        .await;
    human_step("measured", &r);
    if let Some(s) = r.json().as_object() {
        o.extend(s.clone());
    }
    // Mean size of a delivered MESSAGE over the whole run (batched ones share a payload).
    let received = run.sh.received.load(Relaxed);
    if received > 0 {
        let size = run.sh.received_bytes.load(Relaxed) as f64 / received as f64;
        eprintln!("  {size:.0} bytes of WebSocket payload per delivered message");
        o.insert("bytes_per_delivery".into(), json!(size.round() as u64));
    }
    let first = run.sh.first.as_ref().map(|f| first_figures(f, o));
    if let Some(h) = &run.plain {
        plain_figures(h, first.as_ref(), &r, gw0.as_deref(), &murl, o).await;
    }
    if a.mode == Mode::Slow {
        o.insert("slow_clients".into(), json!(c.slow_n));
        o.insert("series".into(), json!(series));
    }
    i32::from(r.received == 0 || r.lost > 0)
}

/// The highest delivered rate that holds the p99 limit with nothing lost: the rate grows
/// by the ramp factor until a step fails, then bisection between the last pass and it.
async fn fanout_ramp(run: &Run, o: &mut Map<String, Value>) -> i32 {
    let a = &run.a;
    let mut code = 0;
    let mut rate = a.ramp_start;
    let mut best: Option<StepResult> = None;
    let mut fail: Option<f64> = None;
    let mut steps = Vec::new();
    while rate <= a.ramp_max {
        let r = run.ramp_step(rate, &mut steps).await;
        if r.passes(a.p99_limit_ms) {
            if best.is_none_or(|b| r.delivered_per_s > b.delivered_per_s) {
                best = Some(r);
            }
            rate *= a.ramp_factor;
        } else {
            fail = Some(rate);
            break;
        }
    }
    if let Some(hi) = fail {
        let mut lo = best.map_or(0.0, |b| b.target_rate);
        let mut hi = hi;
        for _ in 0..a.refine {
            let mid = (lo + hi) / 2.0;
            if mid <= 0.0 {
                break;
            }
            let r = run.ramp_step(mid, &mut steps).await;
            if r.passes(a.p99_limit_ms) {
                if best.is_none_or(|b| r.delivered_per_s > b.delivered_per_s) {
                    best = Some(r);
                }
                lo = mid;
            } else {
                hi = mid;
            }
        }
    }
    match best {
        Some(b) => {
            if let Some(s) = b.json().as_object() {
                o.extend(s.clone());
            }
            o.insert(
                "max_delivered_per_s".into(),
                json!(b.delivered_per_s.round()),
            );
            eprintln!(
                "  highest delivered rate holding p99 <= {} ms with nothing lost: {:.0} msgs/s{}",
                a.p99_limit_ms,
                b.delivered_per_s,
                if fail.is_none() {
                    " (ramp maximum reached)"
                } else {
                    ""
                }
            );
        }
        None => {
            o.insert("max_delivered_per_s".into(), json!(0));
            eprintln!("  no step passed");
            code = 1;
        }
    }
    o.insert("ramp_max_reached".into(), json!(fail.is_none()));
    o.insert("steps".into(), json!(steps));
    code
}

/// SEND → each message's first copy, and how far every copy trails its message's first
/// copy (the fan-out's spread), over the measured window; returns the first copy's.
fn first_figures(f: &crate::shared::FirstCopy, o: &mut Map<String, Value>) -> Pct {
    let q = crate::hist::percentiles(&f.hist.snapshot(), Some(f.hist.max.load(Relaxed)));
    eprintln!(
        "  first copy of each message: {} messages, p50 {:.3} p99 {:.3} p999 {:.3} ms (SEND -> the first subscriber's read)",
        q.count, q.p50, q.p99, q.p999
    );
    o.insert("first_records".into(), json!(q.count));
    o.insert("first_p50_ms".into(), json!(r3(q.p50)));
    o.insert("first_p99_ms".into(), json!(r3(q.p99)));
    o.insert("first_p999_ms".into(), json!(r3(q.p999)));
    let b = crate::hist::percentiles(&f.behind.snapshot(), Some(f.behind.max.load(Relaxed)));
    eprintln!(
        "  fan-out spread: {} copies, each behind its message's first copy by p50 {:.3} p99 {:.3} p999 {:.3} max {:.3} ms",
        b.count, b.p50, b.p99, b.p999, b.max
    );
    o.insert("behind_first_copies".into(), json!(b.count));
    o.insert("behind_first_p50_ms".into(), json!(r3(b.p50)));
    o.insert("behind_first_p99_ms".into(), json!(r3(b.p99)));
    o.insert("behind_first_p999_ms".into(), json!(r3(b.p999)));
    q
}

/// The plain consumer's percentiles over the measured window and the gateway's own
/// delivery-delay histogram over the same window (published by the gateway at most once a
/// second: read again 1.5 s after the drain).
async fn plain_figures(
    h: &crate::hist::Hist,
    first: Option<&Pct>,
    r: &StepResult,
    gw0: Option<&str>,
    murl: &str,
    o: &mut Map<String, Value>,
) {
    use crate::kafka_plain::{buckets, window_pcts};
    let p = crate::hist::percentiles(&h.snapshot(), Some(h.max.load(Relaxed)));
    eprintln!(
        "  plain consumer: {} records, p50 {:.3} p99 {:.3} p999 {:.3} max {:.3} ms (SEND -> plain consumer); gateway adds {:.3} ms at p99",
        p.count,
        p.p50,
        p.p99,
        p.p999,
        p.max,
        r.lat.p99 - p.p99
    );
    o.insert("plain_records".into(), json!(p.count));
    o.insert("plain_p50_ms".into(), json!(r3(p.p50)));
    o.insert("plain_p99_ms".into(), json!(r3(p.p99)));
    o.insert("plain_p999_ms".into(), json!(r3(p.p999)));
    o.insert("plain_max_ms".into(), json!(r3(p.max)));
    o.insert("gateway_adds_p50_ms".into(), json!(r3(r.lat.p50 - p.p50)));
    o.insert("gateway_adds_p99_ms".into(), json!(r3(r.lat.p99 - p.p99)));
    if let Some(q) = first {
        eprintln!(
            "  gateway adds {:.3} ms at p99 to the first copy",
            q.p99 - p.p99
        );
        o.insert("first_adds_p50_ms".into(), json!(r3(q.p50 - p.p50)));
        o.insert("first_adds_p99_ms".into(), json!(r3(q.p99 - p.p99)));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let name = "stompgate_delivery_delay_seconds";
    match (gw0, crate::scrape::get(murl).await) {
        (Some(b), Ok(a)) => {
            let (n, q) = window_pcts(&buckets(b, name), &buckets(&a, name), &[0.5, 0.99, 0.999]);
            eprintln!(
                "  gateway histogram ({name}, event timestamp -> socket write): {n} observations, p50 <= {:?} p99 <= {:?} p999 <= {:?} ms",
                q[0], q[1], q[2]
            );
            o.insert("gateway_hist_count".into(), json!(n));
            o.insert("gateway_hist_p50_ms".into(), json!(q[0]));
            o.insert("gateway_hist_p99_ms".into(), json!(q[1]));
            o.insert("gateway_hist_p999_ms".into(), json!(q[2]));
        }
        (_, Err(e)) => eprintln!("  gateway histogram: {e}"),
        (None, _) => eprintln!("  gateway histogram: no first scrape"),
    }
}
