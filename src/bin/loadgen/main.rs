//! `loadgen`: a STOMP-over-WebSocket load generator for stompgate and its peers
//! (the bare `ceiling` broadcaster, Bun's WebSocket pub/sub, RabbitMQ Web-STOMP, Spring's
//! SimpleBroker).
//!
//! It opens N subscriber connections spread over several 127.0.0.x source addresses,
//! subscribes them to D destinations, publishes with STOMP SEND from publisher
//! connections at a set or ramping rate and measures delivered messages/s, end-to-end
//! latency, loss (per-destination sequence numbers), connect+subscribe time, the
//! server's RSS and CPU from /proc, CPU µs per delivery (the server's and its own) and
//! the machine's CPU pressure.
//!
//! Every published body carries a token `@@<dest>:<seq>:<nanos>@@` (nanos since this
//! process started: one clock). Receivers find it by a byte search over the raw
//! WebSocket payload, so the same tool works whether the server wraps the body (stompgate
//! puts chat text into JSON) or delivers it as sent.
//!
//! Here: the command line is parsed, publishers and subscribers are connected, then the
//! scenario of `--mode` runs. The parts: `args` (flags), `ws` (a WebSocket client by
//! hand, cheap beside the server), `stomp` (frames and the token), `subscriber` and
//! `publisher` (the connections), `shared` (their counters), `hist` (latency
//! percentiles), `procfs` (CPU and RSS), `step` (one measured step), `scenarios` (one
//! function per mode; the longer ones in `history` (history memory), `resume` (reconnect
//! storm with `x-resume-after`) and `burst` (memory after a burst)), `kafka_plain` (a
//! plain Kafka consumer beside the gateway, and the gateway's own histogram), `scrape` (the
//! gateway's /metrics), `report` (the JSON line and the human summary).
//!
//! Output: a human summary on stderr and one JSON line per result on stdout.

mod args;
mod burst;
mod hist;
mod history;
mod kafka_plain;
mod procfs;
mod publisher;
mod report;
mod resume;
mod scenarios;
mod scrape;
mod shared;
mod step;
mod stomp;
mod subscriber;
mod ws;

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::json;
use tokio::sync::Semaphore;

use args::{Args, BodyFormat, Mode};
use hist::Hist;
use procfs::{Proc, cpu_pressure};
use publisher::{PubCfg, open_publisher, publisher};
use report::{emit, pressure, r3};
use scenarios::Connected;
use shared::{FirstCopy, Shared};
use step::Run;
use stomp::{connect_frame, dest_name, subscribe_frame};
use subscriber::{SubCfg, subscriber};
use ws::{Target, parse_url, upgrade_request};

fn main() {
    let a = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(a.threads.max(1))
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = rt.block_on(real_main(a));
    // Sockets close with the process; no orderly goodbye to thousands of connections.
    std::process::exit(code);
}

async fn real_main(a: Args) -> i32 {
    let (hostport, path) = match parse_url(&a.url) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return 2;
        }
    };
    let addr = match tokio::net::lookup_host(&hostport)
        .await
        .ok()
        .and_then(|mut it| it.find(|s| s.is_ipv4()))
    {
        Some(a) => a,
        None => {
            eprintln!("loadgen: cannot resolve {hostport} to an IPv4 address");
            return 2;
        }
    };
    if !addr.ip().is_loopback() {
        eprintln!("loadgen: refusing a non-loopback target {addr}");
        return 2;
    }
    let d = a.destinations.max(1);
    let slow_n = if a.mode == Mode::Slow {
        a.slow_clients.min(a.connections)
    } else {
        0
    };
    let n = a.connections;
    let sh = Arc::new(Shared {
        t0: Instant::now(),
        hist: Hist::new(),
        received: AtomicU64::new(0),
        received_bytes: AtomicU64::new(0),
        conn_recv: (0..n).map(|_| AtomicU64::new(0)).collect(),
        published: (0..d).map(|_| AtomicU64::new(0)).collect(),
        rate_per_dest: AtomicU64::new(0f64.to_bits()),
        ready: AtomicUsize::new(0),
        subscribed_sent: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        closed_after_ready: AtomicUsize::new(0),
        out_of_order: AtomicU64::new(0),
        first_error: Mutex::new(None),
        stop: AtomicBool::new(false),
        record: AtomicBool::new(false),
        trades: a.mode == Mode::TradeWatch,
        first: (a.kafka_plain.is_some() || a.first_copy).then(|| FirstCopy::new(d)),
    });
    let proc_ = Proc {
        server: a.server_pid.map(|p| p.to_string()),
    };
    let sources: Vec<Ipv4Addr> = (0..a.sources.max(1))
        .map(|i| Ipv4Addr::new(127, 0, 0, a.source_base.saturating_add(i)))
        .collect();
    let target = Target {
        addr,
        upgrade: upgrade_request(&hostport, &path),
    };
    let connect = connect_frame(&a);
    let receipt = !a.no_receipt;
    let dest_of: Vec<usize> = (0..n).map(|i| i % d).collect();
    // The slow clients are the last ones; they still subscribe like everyone else.
    let slow: Vec<bool> = (0..n).map(|i| i >= n - slow_n).collect();

    eprintln!(
        "loadgen {:?} against {} ({}): {} subscribers on {} destinations, {} publisher(s), sources 127.0.0.{}..{}",
        a.mode,
        a.target,
        a.url,
        n,
        d,
        a.publishers,
        a.source_base,
        a.source_base as usize + sources.len() - 1
    );
    let rss_before = proc_.server_rss();
    let psi_before = cpu_pressure();

    // Publishers first, so probes can flow as soon as subscribers are there.
    let needs_publishers = !matches!(
        a.mode,
        Mode::Idle | Mode::Storm | Mode::HistoryMem | Mode::TradeWatch
    ) || !receipt;
    let mut pubs = Vec::new();
    if needs_publishers {
        for p in 0..a.publishers.max(1) {
            match open_publisher(
                &target,
                sources[(n + p) % sources.len()],
                &connect,
                sh.clone(),
            )
            .await
            {
                Ok(w) => pubs.push(w),
                Err(e) => {
                    eprintln!("loadgen: publisher {p} failed to connect: {e}");
                    emit(
                        json!({"kind":"error","target":a.target,"scenario":a.scenario,"error":format!("publisher: {e}")}),
                    );
                    return 1;
                }
            }
        }
        let pcfg = Arc::new(PubCfg {
            prefix: (0..d)
                .map(|i| {
                    let dest = dest_name(&a.send_template, i);
                    match a.body {
                        BodyFormat::Json => format!("SEND\ndestination:{dest}\ncontent-type:application/json\n\n{{\"text\":\""),
                        BodyFormat::Raw => format!("SEND\ndestination:{dest}\ncontent-type:text/plain\n\n"),
                    }
                    .into_bytes()
                })
                .collect(),
            suffix: match a.body {
                BodyFormat::Json => b"\"}\0".to_vec(),
                BodyFormat::Raw => b"\0".to_vec(),
            },
            pad: vec![b'x'; a.pad],
        });
        let np = pubs.len();
        for (p, w) in pubs.drain(..).enumerate() {
            let dests: Vec<usize> = (0..d).filter(|i| i % np == p).collect();
            if dests.is_empty() {
                continue;
            }
            tokio::spawn(publisher(w, dests, pcfg.clone(), sh.clone()));
        }
    }

    // Connect phase.
    let scfg = Arc::new(SubCfg {
        target,
        connect,
        subscribe: (0..d)
            .map(|i| subscribe_frame(&dest_name(&a.sub_template, i), receipt))
            .collect(),
        receipt,
        read_buf: a.read_buf,
        sources,
        timeout: Duration::from_secs_f64(a.connect_timeout),
        heartbeat: (a.heartbeat_ms > 0).then(|| Duration::from_millis(a.heartbeat_ms)),
    });
    let sem = Arc::new(Semaphore::new(a.connect_concurrency.max(1)));
    let m_conn0 = proc_.mark();
    let t_conn = Instant::now();
    for i in 0..n {
        tokio::spawn(subscriber(
            i,
            dest_of[i],
            slow[i],
            scfg.clone(),
            sh.clone(),
            sem.clone(),
        ));
    }
    let phase_deadline = t_conn + Duration::from_secs_f64(a.connect_timeout + 1.0);
    if !receipt {
        // No RECEIPT: each subscriber is confirmed by its first message. Probes flow from
        // the start, so a server that never accepts some of the connections does not hold
        // back the others' confirmation; at most ~20,000 deliveries/s in all (the probes
        // must not be the load), and at most 100/s per destination.
        let per_dest_subs = (n as f64 / d as f64).max(1.0);
        sh.set_rate_per_dest((20_000.0 / per_dest_subs).clamp(1.0, 100.0));
    }
    loop {
        let ready = sh.ready.load(Relaxed);
        let failed = sh.failed.load(Relaxed);
        if ready + failed >= n || Instant::now() >= phase_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    sh.set_rate_per_dest(0.0);
    let connect_s = t_conn.elapsed().as_secs_f64();
    let m_conn1 = proc_.mark();
    let ready = sh.ready.load(Relaxed);
    let failed = sh.failed.load(Relaxed);
    let (cs_cpu, cm_cpu) = Proc::cpu_pct(&m_conn0, &m_conn1);
    eprintln!(
        "  connect+subscribe: {ready}/{n} ready in {connect_s:.3} s ({:.0}/s){}, {failed} failed; server cpu {} loadgen cpu {}",
        ready as f64 / connect_s,
        if receipt {
            " (confirmed by RECEIPT)"
        } else {
            " (confirmed by first message)"
        },
        cs_cpu.map_or("-".into(), |x| format!("{x:.0}%")),
        cm_cpu.map_or("-".into(), |x| format!("{x:.0}%")),
    );
    let mut out = json!({
        "kind": "result",
        "mode": format!("{:?}", a.mode),
        "target": a.target,
        "scenario": a.scenario,
        "connections": n,
        "destinations": d,
        "ready": ready,
        "failed": failed,
        "connect_s": r3(connect_s),
        "connect_per_s": (ready as f64 / connect_s).round(),
        "confirmed_by": if receipt { "receipt" } else { "first-message" },
        "subscribes_sent": sh.subscribed_sent.load(Relaxed),
    });
    // The plain consumer beside the gateway: assigned before anything is measured.
    let plain = match a.kafka_plain.as_deref() {
        Some(b) if matches!(a.mode, Mode::Fixed) => {
            match kafka_plain::start(b, &a.kafka_plain_topic, sh.clone()) {
                Ok(h) => Some(h),
                Err(e) => {
                    eprintln!("loadgen: {e}");
                    emit(json!({"kind":"error","target":a.target,"scenario":a.scenario,"error":e}));
                    return 1;
                }
            }
        }
        _ => None,
    };
    let run = Arc::new(Run {
        plain,
        a: a.clone(),
        sh: sh.clone(),
        proc_,
        dest_of,
        slow,
        scfg: scfg.clone(),
        hostport: hostport.clone(),
    });
    // Let the probe messages settle before anything is measured.
    if !receipt {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let connected = Connected {
        ready,
        all_ready: ready == n,
        rss_before,
        cpu: (cs_cpu, cm_cpu),
        slow_n,
    };
    let code = match out.as_object_mut() {
        Some(o) => scenarios::run(&run, &connected, o).await,
        None => 1,
    };
    sh.stop.store(true, Relaxed);
    let closed = sh.closed_after_ready.load(Relaxed);
    let ooo = sh.out_of_order.load(Relaxed);
    let err = sh.first_error.lock().unwrap().clone();
    if let Some(o) = out.as_object_mut() {
        o.insert("closed_by_server".into(), json!(closed));
        o.insert("out_of_order".into(), json!(ooo));
        o.insert("first_error".into(), json!(err));
    }
    if closed > 0 || ooo > 0 || err.is_some() {
        eprintln!(
            "  closed by server: {closed}, out of order: {ooo}{}",
            err.map_or(String::new(), |e| format!(", first error: {e}"))
        );
    }
    let psi_after = cpu_pressure();
    eprintln!(
        "  cpu pressure (/proc/pressure/cpu some avg10): {}% before the scenario, {}% after",
        pressure(psi_before),
        pressure(psi_after)
    );
    if let Some(o) = out.as_object_mut() {
        o.insert("scenario_cpu_psi_before".into(), json!(psi_before));
        o.insert("scenario_cpu_psi_after".into(), json!(psi_after));
    }
    emit(out);
    code
}
