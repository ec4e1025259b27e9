//! History memory (`--mode history-mem`): what the gateway's per-destination history
//! costs. Chat SENDs fill D destinations with M messages each (`/app/market/<id>/chat`,
//! each publisher walking its share of the destinations, M in a row to each, a receipt
//! every `--receipt-every` SENDs awaited before the next ones), then the server's RSS
//! before and after, `stompgate_history_bytes` and `stompgate_history_evictions_total`
//! from /metrics, bytes per kept message and RSS per destination. Nobody subscribes: the
//! figure is the history alone (plus the chat ledger, which remembers a bounded number
//! of recent ids per market).

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::procfs::Proc;
use crate::report::{r1, r3};
use crate::scrape::{get, metrics_url, sample};
use crate::step::Run;
use crate::stomp::dest_name;
use crate::ws::{Conn, ws_frame};

struct Metrics {
    history_bytes: Option<f64>,
    evictions: Option<f64>,
}

async fn read_metrics(url: &str) -> Result<Metrics, String> {
    let t = get(url).await?;
    Ok(Metrics {
        history_bytes: sample(&t, "stompgate_history_bytes"),
        evictions: sample(&t, "stompgate_history_evictions_total"),
    })
}

/// One publisher: M SENDs to each of `dests`, a receipt every N; counts confirmed SENDs.
async fn fill(
    run: Arc<Run>,
    p: usize,
    dests: Vec<usize>,
    sent: Arc<AtomicU64>,
) -> Result<(), String> {
    let a = &run.a;
    let cfg = &run.scfg;
    let src = cfg.sources[p % cfg.sources.len()];
    let mut c = Conn::open(&cfg.target, src, 16384)
        .await
        .map_err(|e| format!("publisher {p}: {e}"))?;
    c.send_text(&cfg.connect)
        .await
        .map_err(|e| format!("publisher {p}: {e}"))?;
    c.expect(b"CONNECTED")
        .await
        .map_err(|e| format!("publisher {p}: {e}"))?;
    let every = a.receipt_every.max(1);
    let pad = "x".repeat(a.pad);
    let total = dests.len() * a.messages_per_dest;
    let mut out = Vec::with_capacity(1 << 17);
    let mut frame = String::with_capacity(256);
    let mut n = 0usize;
    let mut counted = 0usize;
    for &d in &dests {
        let dest = dest_name(&a.send_template, d);
        for k in 0..a.messages_per_dest {
            n += 1;
            let receipt = n.is_multiple_of(every) || n == total;
            frame.clear();
            let _ = write!(
                frame,
                "SEND\ndestination:{dest}\ncontent-type:application/json\n{}\n{{\"text\":\"history {d} {k} {pad}\"}}\0",
                if receipt {
                    format!("receipt:h{n}\n")
                } else {
                    String::new()
                }
            );
            ws_frame(&mut out, 0x1, &[frame.as_bytes()]);
            if receipt || out.len() >= 1 << 16 {
                use tokio::io::AsyncWriteExt;
                c.s.write_all(&out)
                    .await
                    .map_err(|e| format!("publisher {p}: {e}"))?;
                out.clear();
            }
            if receipt {
                c.expect(b"RECEIPT")
                    .await
                    .map_err(|e| format!("publisher {p} after {n} SENDs: {e}"))?;
                sent.fetch_add((n - counted) as u64, Relaxed);
                counted = n;
            }
        }
    }
    Ok(())
}

pub async fn history_mem(run: Arc<Run>, o: &mut Map<String, Value>) -> i32 {
    let a = &run.a;
    let d = a.destinations.max(1);
    let url = metrics_url(&run.hostport, a.metrics_url.as_deref());
    let before = match read_metrics(&url).await {
        Ok(m) => m,
        Err(e) => {
            eprintln!("  history: cannot read metrics: {e}");
            o.insert("error".into(), json!(format!("metrics: {e}")));
            return 1;
        }
    };
    let rss0 = run.proc_.server_rss();
    let np = a.publishers.max(1).min(d);
    let sent = Arc::new(AtomicU64::new(0));
    let m0 = run.proc_.mark();
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..np {
        let dests: Vec<usize> = (0..d).filter(|i| i % np == p).collect();
        tasks.push(tokio::spawn(fill(run.clone(), p, dests, sent.clone())));
    }
    let mut err = None;
    for t in tasks {
        match t.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                err.get_or_insert(e);
            }
            Err(e) => {
                err.get_or_insert(format!("publisher task: {e}"));
            }
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let m1 = run.proc_.mark();
    let confirmed = sent.load(Relaxed);
    // Let the allocator settle before RSS is read.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss1 = run.proc_.server_rss();
    let after = read_metrics(&url).await;
    let (hb, ev) = match &after {
        Ok(m) => (m.history_bytes, m.evictions),
        Err(_) => (None, None),
    };
    let ev_delta = match (ev, before.evictions) {
        (Some(x), Some(y)) => Some((x - y).max(0.0)),
        (x, _) => x,
    };
    let per_dest_msgs = a.messages_per_dest.min(a.history_size) as f64;
    // Each destination got its messages in a row and is never written again, so one
    // evicted is gone whole: kept = (destinations - evicted) x messages each.
    let kept = ev_delta.map(|e| ((d as f64 - e).max(0.0) * per_dest_msgs).round());
    let hb_delta = match (hb, before.history_bytes) {
        (Some(x), Some(y)) => Some(x - y),
        (x, _) => x,
    };
    let bytes_per_msg = match (hb_delta, kept) {
        (Some(b), Some(k)) if k > 0.0 => Some(b / k),
        _ => None,
    };
    let rss_delta = match (rss0, rss1) {
        (Some(x), Some(y)) => Some(y as f64 - x as f64),
        _ => None,
    };
    let rss_per_dest_kb = rss_delta.map(|x| x / d as f64);
    let rss_per_msg_b = match (rss_delta, kept) {
        (Some(r), Some(k)) if k > 0.0 => Some(r * 1024.0 / k),
        _ => None,
    };
    let (scpu, _) = Proc::cpu_secs(&m0, &m1);
    let mb = |x: Option<f64>| x.map_or("-".into(), |v| format!("{:.1}", v / 1048576.0));
    eprintln!(
        "  history: {confirmed}/{} SENDs confirmed in {secs:.1} s ({:.0}/s, server cpu {} s) to {d} destinations x {}",
        d * a.messages_per_dest,
        confirmed as f64 / secs,
        scpu.map_or("-".into(), |x| format!("{x:.1}")),
        a.messages_per_dest,
    );
    eprintln!(
        "  history: server RSS {} -> {} MB; stompgate_history_bytes {} MB (cap {} MB); evictions {}; kept ~{} messages; {} bytes per kept message (history_bytes), {} bytes of RSS per kept message, {} KB of RSS per destination",
        mb(rss0.map(|x| x as f64 * 1024.0)),
        mb(rss1.map(|x| x as f64 * 1024.0)),
        mb(hb),
        a.history_bytes_cap as f64 / 1048576.0,
        ev_delta.map_or("-".into(), |x| format!("{x:.0}")),
        kept.map_or("-".into(), |x| format!("{x:.0}")),
        bytes_per_msg.map_or("-".into(), |x| format!("{x:.0}")),
        rss_per_msg_b.map_or("-".into(), |x| format!("{x:.0}")),
        rss_per_dest_kb.map_or("-".into(), |x| format!("{x:.2}")),
    );
    if let Err(e) = &after {
        eprintln!("  history: cannot read metrics after: {e}");
    }
    if let Some(e) = &err {
        eprintln!("  history: {e}");
    }
    let cap_holds = hb.map(|b| b <= a.history_bytes_cap as f64);
    o.insert("messages_per_dest".into(), json!(a.messages_per_dest));
    o.insert("sends_confirmed".into(), json!(confirmed));
    o.insert("sends_expected".into(), json!(d * a.messages_per_dest));
    o.insert("fill_s".into(), json!(r3(secs)));
    o.insert(
        "sends_per_s".into(),
        json!((confirmed as f64 / secs).round()),
    );
    o.insert("server_cpu_s".into(), json!(scpu.map(r1)));
    o.insert("server_rss_before_kb".into(), json!(rss0));
    o.insert("server_rss_kb".into(), json!(rss1));
    o.insert("history_bytes".into(), json!(hb));
    o.insert("history_bytes_cap".into(), json!(a.history_bytes_cap));
    o.insert("history_cap_holds".into(), json!(cap_holds));
    o.insert("history_evictions".into(), json!(ev_delta));
    o.insert("kept_messages".into(), json!(kept));
    o.insert(
        "history_bytes_per_message".into(),
        json!(bytes_per_msg.map(r1)),
    );
    o.insert("rss_bytes_per_message".into(), json!(rss_per_msg_b.map(r1)));
    o.insert("rss_per_dest_kb".into(), json!(rss_per_dest_kb.map(r3)));
    o.insert("error".into(), json!(err));
    i32::from(
        err.is_some() || confirmed < (d * a.messages_per_dest) as u64 || cap_holds != Some(true),
    )
}
