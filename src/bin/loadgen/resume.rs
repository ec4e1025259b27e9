//! Reconnect storm (`--mode resume-storm`): live delivery goes on to the live subscribers
//! while K clients resume at once with `x-resume-after`, as after a replica died.
//!
//! One watcher connection per destination keeps the latest `x-cursor` it received. After a
//! warm-up, a baseline step measures the live subscribers' latency; then, in a second step
//! of the same length at the same rate, the cursors are taken at its start, the K clients
//! connect (CONNECT → CONNECTED, spread over the source addresses), wait until all are
//! connected and `--resume-back` seconds have passed, and send their SUBSCRIBE with
//! `x-resume-after:<cursor>` and a receipt at the same instant. Figures: the live p99
//! (and p50, p999) with and without the storm, resume latency (SUBSCRIBE sent → its
//! RECEIPT) p50/p99/max, how many RECEIPTs said `x-recovered:true`, and the messages the
//! resumed clients received. Resumed clients keep reading until the end, so none becomes a
//! slow consumer.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use memchr::memmem;
use serde_json::{Map, Value, json};
use tokio::io::AsyncWriteExt;
use tokio::sync::{Semaphore, watch};

use crate::hist::{Hist, percentiles};
use crate::report::{human_step, r1, r3};
use crate::step::Run;
use crate::stomp::dest_name;
use crate::ws::{Conn, skip_eols, ws_frame};

/// The STOMP frames in one WebSocket payload (servers may batch several).
fn frames(p: &[u8]) -> impl Iterator<Item = &[u8]> {
    p.split(|&c| c == 0)
        .map(skip_eols)
        .filter(|f| !f.is_empty())
}

/// The value of header `name` (given as `\nname:`) in a frame's header block.
fn header<'a>(f: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let end = memmem::find(f, b"\n\n").unwrap_or(f.len());
    let h = &f[..end];
    let i = memmem::find(h, name)? + name.len();
    let j = h[i..]
        .iter()
        .position(|&c| c == b'\n')
        .map_or(h.len(), |k| i + k);
    Some(&h[i..j])
}

#[derive(Default)]
struct Storm {
    connected: AtomicUsize,
    connect_failed: AtomicUsize,
    no_cursor: AtomicUsize,
    receipts: AtomicUsize,
    recovered_true: AtomicUsize,
    recovered_false: AtomicUsize,
    recovered_missing: AtomicUsize,
    errors: AtomicUsize,
    messages: AtomicU64,
    replayed: AtomicU64,
    first_error: Mutex<Option<String>>,
    stop: AtomicBool,
}

impl Storm {
    fn error(&self, e: String) {
        self.errors.fetch_add(1, Relaxed);
        self.first_error.lock().unwrap().get_or_insert(e);
    }
}

/// A watcher: subscribed to one destination, keeps its latest `x-cursor`.
async fn watcher(
    run: Arc<Run>,
    d: usize,
    cursors: Arc<Vec<Mutex<Option<String>>>>,
    ready: Arc<AtomicUsize>,
) {
    let cfg = &run.scfg;
    let src = cfg.sources[d % cfg.sources.len()];
    let setup = async {
        let mut c = Conn::open(&cfg.target, src, 16384).await?;
        c.send_text(&cfg.connect).await?;
        c.expect(b"CONNECTED").await?;
        c.send_text(&cfg.subscribe[d]).await?;
        c.expect(b"RECEIPT").await?;
        Ok::<Conn, std::io::Error>(c)
    };
    let mut c = match setup.await {
        Ok(c) => c,
        Err(e) => {
            run.sh.note_error(format!("cursor watcher {d}: {e}"));
            return;
        }
    };
    ready.fetch_add(1, Relaxed);
    while let Ok(f) = c.next_frame().await {
        if f.opcode > 0x2 {
            continue;
        }
        let last = frames(&c.buf[f.p0..f.p1])
            .filter(|fr| fr.starts_with(b"MESSAGE"))
            .filter_map(|fr| header(fr, b"\nx-cursor:"))
            .last();
        if let Some(cur) = last {
            *cursors[d].lock().unwrap() = Some(String::from_utf8_lossy(cur).into_owned());
        }
    }
}

/// One resuming client: connect, wait for the go, SUBSCRIBE with x-resume-after, time the
/// RECEIPT, then keep reading.
#[allow(clippy::too_many_arguments)]
async fn resumer(
    run: Arc<Run>,
    j: usize,
    d: usize,
    sem: Arc<Semaphore>,
    mut go: watch::Receiver<Option<Arc<Vec<Option<String>>>>>,
    st: Arc<Storm>,
    lat: Arc<Hist>,
) {
    let cfg = &run.scfg;
    let src = cfg.sources[j % cfg.sources.len()];
    let permit = sem.acquire_owned().await.ok();
    let setup = async {
        let mut c = Conn::open(&cfg.target, src, run.a.read_buf).await?;
        c.send_text(&cfg.connect).await?;
        c.expect(b"CONNECTED").await?;
        Ok::<Conn, std::io::Error>(c)
    };
    let mut c = match tokio::time::timeout(cfg.timeout, setup).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            st.connect_failed.fetch_add(1, Relaxed);
            st.first_error
                .lock()
                .unwrap()
                .get_or_insert(format!("resumer {j}: {e}"));
            return;
        }
        Err(_) => {
            st.connect_failed.fetch_add(1, Relaxed);
            st.first_error
                .lock()
                .unwrap()
                .get_or_insert(format!("resumer {j}: connect timed out"));
            return;
        }
    };
    drop(permit);
    st.connected.fetch_add(1, Relaxed);
    let Ok(snap) = go
        .wait_for(|g| g.is_some())
        .await
        .map(|g| g.clone().unwrap())
    else {
        return;
    };
    let Some(cursor) = snap[d].clone() else {
        st.no_cursor.fetch_add(1, Relaxed);
        return;
    };
    let dest = dest_name(&run.a.sub_template, d);
    let sub = format!(
        "SUBSCRIBE\nid:0\ndestination:{dest}\nack:auto\nx-resume-after:{cursor}\nreceipt:r{j}\n\n\0"
    );
    let t_sent = Instant::now();
    if let Err(e) = c.send_text(sub.as_bytes()).await {
        st.error(format!("resumer {j}: {e}"));
        return;
    }
    let mut got_receipt = false;
    loop {
        let f = match c.next_frame().await {
            Ok(f) => f,
            Err(e) => {
                if !st.stop.load(Relaxed) {
                    st.error(format!("resumer {j}: {e}"));
                }
                return;
            }
        };
        match f.opcode {
            0x0..=0x2 => {
                let mut msgs = 0u64;
                let mut replay = 0u64;
                for fr in frames(&c.buf[f.p0..f.p1]) {
                    if fr.starts_with(b"MESSAGE") {
                        msgs += 1;
                        if header(fr, b"\nx-replay:") == Some(b"true") {
                            replay += 1;
                        }
                    } else if fr.starts_with(b"RECEIPT") && !got_receipt {
                        got_receipt = true;
                        lat.record(t_sent.elapsed().as_nanos() as u64);
                        st.receipts.fetch_add(1, Relaxed);
                        match header(fr, b"\nx-recovered:") {
                            Some(b"true") => st.recovered_true.fetch_add(1, Relaxed),
                            Some(_) => st.recovered_false.fetch_add(1, Relaxed),
                            None => st.recovered_missing.fetch_add(1, Relaxed),
                        };
                    } else if fr.starts_with(b"ERROR") {
                        st.error(format!(
                            "resumer {j}: {}",
                            String::from_utf8_lossy(&fr[..fr.len().min(300)]).replace('\n', " ")
                        ));
                    }
                }
                st.messages.fetch_add(msgs, Relaxed);
                st.replayed.fetch_add(replay, Relaxed);
            }
            0x8 => {
                if !st.stop.load(Relaxed) {
                    st.error(format!("resumer {j}: WebSocket close from the server"));
                }
                return;
            }
            0x9 => {
                let p = c.buf[f.p0..f.p1].to_vec();
                let mut out = Vec::new();
                ws_frame(&mut out, 0xA, &[&p]);
                if c.s.write_all(&out).await.is_err() {
                    return;
                }
            }
            _ => {}
        }
    }
}

pub async fn resume_storm(run: Arc<Run>, o: &mut Map<String, Value>) -> i32 {
    let a = &run.a;
    let d = a.destinations.max(1);
    let cursors: Arc<Vec<Mutex<Option<String>>>> =
        Arc::new((0..d).map(|_| Mutex::new(None)).collect());
    let wready = Arc::new(AtomicUsize::new(0));
    for i in 0..d {
        tokio::spawn(watcher(run.clone(), i, cursors.clone(), wready.clone()));
    }
    let until = Instant::now() + Duration::from_secs_f64(a.connect_timeout);
    while wready.load(Relaxed) < d && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "  resume: {}/{d} cursor watchers subscribed",
        wready.load(Relaxed)
    );
    if a.warmup > 0.0 {
        let w = run.step(a.rate, a.warmup, None, |_, _, _| {}).await;
        human_step("warm-up", &w);
    }
    let base = run.step(a.rate, a.duration, None, |_, _, _| {}).await;
    human_step("no storm", &base);

    // The storm step: cursors taken now; the clients connect, then all resume at once.
    let st = Arc::new(Storm::default());
    let lat = Arc::new(Hist::new());
    let (go_tx, go_rx) = watch::channel(None);
    let k = a.resume_clients;
    let run2 = run.clone();
    let st2 = st.clone();
    let lat2 = lat.clone();
    let cursors2 = cursors.clone();
    let storm = tokio::spawn(async move {
        let a = &run2.a;
        let t0 = Instant::now();
        let snap: Vec<Option<String>> =
            cursors2.iter().map(|c| c.lock().unwrap().clone()).collect();
        let sem = Arc::new(Semaphore::new(a.connect_concurrency.max(1)));
        for j in 0..k {
            tokio::spawn(resumer(
                run2.clone(),
                j,
                j % d,
                sem.clone(),
                go_rx.clone(),
                st2.clone(),
                lat2.clone(),
            ));
        }
        let deadline = t0 + Duration::from_secs_f64(a.connect_timeout);
        while st2.connected.load(Relaxed) + st2.connect_failed.load(Relaxed) < k
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let connect_s = t0.elapsed().as_secs_f64();
        let back = Duration::from_secs_f64(a.resume_back);
        if t0.elapsed() < back {
            tokio::time::sleep(back - t0.elapsed()).await;
        }
        let go_at = t0.elapsed().as_secs_f64();
        let _ = go_tx.send(Some(Arc::new(snap)));
        let t_go = Instant::now();
        let deadline = t_go + Duration::from_secs_f64(a.connect_timeout);
        let expected = st2.connected.load(Relaxed);
        while st2.receipts.load(Relaxed) + st2.errors.load(Relaxed) + st2.no_cursor.load(Relaxed)
            < expected
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let all_s = t_go.elapsed().as_secs_f64();
        (connect_s, go_at, all_s, go_tx)
    });
    let during = run.step(a.rate, a.duration, None, |_, _, _| {}).await;
    human_step("storm", &during);
    let (connect_s, go_at, all_s, _go) =
        storm
            .await
            .unwrap_or((0.0, 0.0, 0.0, watch::channel(None).0));
    st.stop.store(true, Relaxed);
    let rl = percentiles(&lat.snapshot(), Some(lat.max.load(Relaxed)));
    let g = |x: &AtomicUsize| x.load(Relaxed);
    let first = st.first_error.lock().unwrap().clone();
    let ratio = (base.lat.p99 > 0.0).then(|| during.lat.p99 / base.lat.p99);
    eprintln!(
        "  resume: {k} clients, {} connected in {connect_s:.2} s, SUBSCRIBE x-resume-after sent by all at {go_at:.2} s into the storm step; {} RECEIPTs in {all_s:.2} s: x-recovered true {} false {} missing {}; {} without a cursor, {} connect failures, {} errors",
        g(&st.connected),
        g(&st.receipts),
        g(&st.recovered_true),
        g(&st.recovered_false),
        g(&st.recovered_missing),
        g(&st.no_cursor),
        g(&st.connect_failed),
        g(&st.errors),
    );
    eprintln!(
        "  resume latency (SUBSCRIBE sent -> RECEIPT): p50 {:.3} p99 {:.3} max {:.3} ms; resumed clients received {} messages ({} x-replay:true)",
        rl.p50,
        rl.p99,
        rl.max,
        st.messages.load(Relaxed),
        st.replayed.load(Relaxed),
    );
    eprintln!(
        "  live subscribers' p99: {:.3} ms without the storm, {:.3} ms during it ({}x); lost {} / {}",
        base.lat.p99,
        during.lat.p99,
        ratio.map_or("-".into(), |x| format!("{x:.2}")),
        base.lost,
        during.lost,
    );
    if let Some(e) = &first {
        eprintln!("  resume: first error: {e}");
    }
    o.insert("baseline".into(), base.json());
    o.insert("during".into(), during.json());
    if let Some(s) = during.json().as_object() {
        o.extend(s.clone());
    }
    o.insert("p99_no_storm_ms".into(), json!(r3(base.lat.p99)));
    o.insert("p99_storm_ms".into(), json!(r3(during.lat.p99)));
    o.insert("p99_storm_ratio".into(), json!(ratio.map(r3)));
    o.insert("resume_clients".into(), json!(k));
    o.insert("resume_connected".into(), json!(g(&st.connected)));
    o.insert("resume_connect_s".into(), json!(r3(connect_s)));
    o.insert("resume_go_at_s".into(), json!(r3(go_at)));
    o.insert("resume_all_receipts_s".into(), json!(r3(all_s)));
    o.insert("resume_receipts".into(), json!(g(&st.receipts)));
    o.insert("recovered_true".into(), json!(g(&st.recovered_true)));
    o.insert("recovered_false".into(), json!(g(&st.recovered_false)));
    o.insert("recovered_missing".into(), json!(g(&st.recovered_missing)));
    o.insert("resume_no_cursor".into(), json!(g(&st.no_cursor)));
    o.insert(
        "resume_errors".into(),
        json!(g(&st.errors) + g(&st.connect_failed)),
    );
    o.insert("resume_first_error".into(), json!(first));
    o.insert("resume_p50_ms".into(), json!(r3(rl.p50)));
    o.insert("resume_p99_ms".into(), json!(r3(rl.p99)));
    o.insert("resume_max_ms".into(), json!(r3(rl.max)));
    o.insert("resume_messages".into(), json!(st.messages.load(Relaxed)));
    o.insert("resume_replayed".into(), json!(st.replayed.load(Relaxed)));
    o.insert("resume_back_s".into(), json!(r1(a.resume_back)));
    let ok = g(&st.receipts) == k && base.lost == 0 && during.lost == 0 && during.received > 0;
    i32::from(!ok)
}
