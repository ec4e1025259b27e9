//! Memory after a burst (`--mode burst`): the publishers attempt `--rate` deliveries/s
//! (far above what the subscribers can read, so every outbox fills) for `--burst-secs`,
//! then stop; the server's RSS is sampled every second through the burst and for
//! `--after-secs` after it. Figures: RSS before, its peak, at +20 s and +60 s after the
//! burst, and whether it was back under 2× the pre-burst RSS within 60 s.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::report::r1;
use crate::step::Run;

pub async fn burst(run: Arc<Run>, o: &mut Map<String, Value>) -> i32 {
    let a = &run.a;
    let sh = &run.sh;
    // Let the connect phase's buffers settle before the baseline.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pre = run.proc_.server_rss();
    let subs: u64 = run.active_per_dest().iter().sum();
    let fan = (subs as f64 / a.destinations as f64).max(1.0);
    let per_dest = a.rate / fan / a.destinations as f64;
    let r0 = sh.received.load(Relaxed);
    let p0: u64 = run.pub_counts().iter().sum();
    let closed0 = sh.closed_after_ready.load(Relaxed);
    let t0 = Instant::now();
    let mb = |x: Option<u64>| x.map_or("-".into(), |v| format!("{:.1}", v as f64 / 1024.0));
    eprintln!(
        "  burst: {} subscribers, attempting {:.0} deliveries/s ({per_dest:.0} SENDs/s per destination) for {} s; pre-burst RSS {} MB",
        subs,
        a.rate,
        a.burst_secs,
        mb(pre)
    );
    sh.set_rate_per_dest(per_dest);
    let mut series = Vec::new();
    let mut tick = 1.0f64;
    let end = a.burst_secs + a.after_secs;
    let mut stopped = false;
    let mut delivered_burst = 0u64;
    let mut published_burst = 0u64;
    while tick <= end + 1e-9 {
        if !stopped && tick > a.burst_secs {
            // The burst's end may fall between two samples.
            tokio::time::sleep_until(tokio::time::Instant::from_std(
                t0 + Duration::from_secs_f64(a.burst_secs),
            ))
            .await;
            sh.set_rate_per_dest(0.0);
            stopped = true;
            delivered_burst = sh.received.load(Relaxed) - r0;
            published_burst = run.pub_counts().iter().sum::<u64>() - p0;
        }
        tokio::time::sleep_until(tokio::time::Instant::from_std(
            t0 + Duration::from_secs_f64(tick),
        ))
        .await;
        let rss = run.proc_.server_rss();
        let since = tick - a.burst_secs;
        eprintln!(
            "    t={tick:>5.1}s ({}) server rss {} MB, delivered {}",
            if since <= 0.0 {
                "burst".to_string()
            } else {
                format!("+{since:.0} s")
            },
            mb(rss),
            sh.received.load(Relaxed) - r0
        );
        series.push(json!({"t": tick, "after_s": since, "server_rss_kb": rss}));
        tick += 1.0;
    }
    if !stopped {
        sh.set_rate_per_dest(0.0);
        delivered_burst = sh.received.load(Relaxed) - r0;
        published_burst = run.pub_counts().iter().sum::<u64>() - p0;
    }
    let rss_at = |after: f64| {
        series
            .iter()
            .find(|s| s["after_s"].as_f64().is_some_and(|x| x >= after - 1e-9))
            .and_then(|s| s["server_rss_kb"].as_u64())
    };
    let peak = series
        .iter()
        .filter_map(|s| s["server_rss_kb"].as_u64())
        .max();
    let at20 = rss_at(20.0);
    let at60 = rss_at(60.0);
    let last = series.last().and_then(|s| s["server_rss_kb"].as_u64());
    // First second after the burst at which RSS was under 2x pre-burst.
    let under = pre.and_then(|p| {
        series
            .iter()
            .filter(|s| s["after_s"].as_f64().is_some_and(|x| x > 0.0))
            .find(|s| s["server_rss_kb"].as_u64().is_some_and(|r| r < 2 * p))
            .and_then(|s| s["after_s"].as_f64())
    });
    let holds = under.is_some_and(|s| s <= 60.0);
    let closed = sh.closed_after_ready.load(Relaxed) - closed0;
    let burst_rate = delivered_burst as f64 / a.burst_secs.max(1e-9);
    eprintln!(
        "  burst: {published_burst} SENDs published, {delivered_burst} deliveries read during the burst ({burst_rate:.0}/s of {:.0}/s attempted); {closed} subscribers closed by the server",
        a.rate
    );
    eprintln!(
        "  burst: RSS pre-burst {} MB, peak {} MB, +20 s {} MB, +60 s {} MB, last {} MB; back under 2x pre-burst within 60 s: {}{}",
        mb(pre),
        mb(peak),
        mb(at20),
        mb(at60),
        mb(last),
        if holds { "yes" } else { "no" },
        under.map_or(String::new(), |s| format!(" (at +{s:.0} s)")),
    );
    o.insert("attempted_per_s".into(), json!(a.rate.round()));
    o.insert("burst_s".into(), json!(r1(a.burst_secs)));
    o.insert("after_s".into(), json!(r1(a.after_secs)));
    o.insert("published_burst".into(), json!(published_burst));
    o.insert("delivered_burst".into(), json!(delivered_burst));
    o.insert("delivered_per_s_burst".into(), json!(burst_rate.round()));
    o.insert("closed_in_burst".into(), json!(closed));
    o.insert("rss_pre_kb".into(), json!(pre));
    o.insert("rss_peak_kb".into(), json!(peak));
    o.insert("rss_20s_kb".into(), json!(at20));
    o.insert("rss_60s_kb".into(), json!(at60));
    o.insert("rss_last_kb".into(), json!(last));
    o.insert("under_2x_after_s".into(), json!(under));
    o.insert("under_2x_within_60s".into(), json!(holds));
    o.insert("series".into(), json!(series));
    i32::from(delivered_burst == 0)
}
