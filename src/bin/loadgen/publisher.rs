//! Publisher connections: STOMP SENDs at the rate the step driver sets, paced on a 1 ms
//! tick with credit, several frames per write, each body carrying a fresh token.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use memchr::memmem;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;

use crate::shared::Shared;
use crate::ws::{Conn, Target, ws_frame};

pub struct PubCfg {
    pub prefix: Vec<Vec<u8>>,
    pub suffix: Vec<u8>,
    pub pad: Vec<u8>,
}

pub async fn open_publisher(
    t: &Target,
    src: Ipv4Addr,
    connect: &[u8],
    sh: Arc<Shared>,
) -> std::io::Result<OwnedWriteHalf> {
    let mut c = Conn::open(t, src, 16384).await?;
    c.send_text(connect).await?;
    c.expect(b"CONNECTED").await?;
    let Conn { s, .. } = c;
    let (mut r, w) = s.into_split();
    // Drain whatever the server sends to a publisher; report an ERROR once.
    tokio::spawn(async move {
        let mut buf = vec![0u8; 16384];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    if !sh.stop.load(Relaxed) {
                        sh.note_error("publisher: connection closed by the server".into());
                    }
                    return;
                }
                Ok(n) => {
                    if let Some(i) = memmem::find(&buf[..n], b"ERROR") {
                        let e = String::from_utf8_lossy(&buf[i..n.min(i + 300)])
                            .replace(['\n', '\0'], " ");
                        sh.note_error(format!("publisher: {e}"));
                    }
                }
            }
        }
    });
    Ok(w)
}

pub async fn publisher(
    mut w: OwnedWriteHalf,
    dests: Vec<usize>,
    cfg: Arc<PubCfg>,
    sh: Arc<Shared>,
) {
    let mut iv = tokio::time::interval(Duration::from_millis(1));
    iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut credit = 0.0f64;
    let mut last = Instant::now();
    let mut rr = 0usize;
    let mut out: Vec<u8> = Vec::with_capacity(1 << 16);
    let mut tok = String::with_capacity(64);
    loop {
        iv.tick().await;
        if sh.stop.load(Relaxed) {
            return;
        }
        let now = Instant::now();
        let dt = now.duration_since(last).as_secs_f64();
        last = now;
        let rate = sh.rate_per_dest() * dests.len() as f64;
        if rate <= 0.0 {
            credit = 0.0;
            continue;
        }
        credit = (credit + rate * dt).min(rate * 0.25 + 1.0);
        let n = credit.floor() as usize;
        if n == 0 {
            continue;
        }
        credit -= n as f64;
        out.clear();
        let t = sh.now_ns();
        for _ in 0..n {
            let d = dests[rr % dests.len()];
            rr += 1;
            let seq = sh.published[d].fetch_add(1, Relaxed);
            tok.clear();
            let _ = write!(tok, "@@{d}:{seq}:{t}@@");
            ws_frame(
                &mut out,
                0x1,
                &[&cfg.prefix[d], tok.as_bytes(), &cfg.pad, &cfg.suffix],
            );
        }
        if let Err(e) = w.write_all(&out).await {
            sh.note_error(format!("publisher write: {e}"));
            return;
        }
    }
}
