//! One subscriber connection: CONNECT, SUBSCRIBE (confirmed by RECEIPT or by a first
//! message), then read and count every token, record its latency, check its sequence;
//! a slow client stops reading once subscribed.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;

use crate::shared::Shared;
use crate::stomp::scan_tokens;
use crate::ws::{Conn, Target, skip_eols, ws_frame};

pub struct SubCfg {
    pub target: Target,
    pub connect: Vec<u8>,
    pub subscribe: Vec<Vec<u8>>,
    pub receipt: bool,
    pub read_buf: usize,
    pub sources: Vec<Ipv4Addr>,
    pub timeout: Duration,
    pub heartbeat: Option<Duration>,
}

pub async fn subscriber(
    idx: usize,
    dest: usize,
    slow: bool,
    cfg: Arc<SubCfg>,
    sh: Arc<Shared>,
    sem: Arc<Semaphore>,
) {
    let permit = sem.acquire_owned().await.ok();
    let src = cfg.sources[idx % cfg.sources.len()];
    let setup = async {
        let mut c = Conn::open(&cfg.target, src, cfg.read_buf).await?;
        c.send_text(&cfg.connect).await?;
        c.expect(b"CONNECTED").await?;
        c.send_text(&cfg.subscribe[dest]).await?;
        sh.subscribed_sent.fetch_add(1, Relaxed);
        if cfg.receipt {
            c.expect(b"RECEIPT").await?;
        }
        Ok::<Conn, std::io::Error>(c)
    };
    let mut c = match tokio::time::timeout(cfg.timeout, setup).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            sh.note_error(format!("subscriber {idx}: {e}"));
            sh.failed.fetch_add(1, Relaxed);
            return;
        }
        Err(_) => {
            sh.note_error(format!("subscriber {idx}: set-up timed out"));
            sh.failed.fetch_add(1, Relaxed);
            return;
        }
    };
    drop(permit);
    let mut ready = cfg.receipt;
    if ready {
        sh.ready.fetch_add(1, Relaxed);
    }
    let mut last_seq: Option<u64> = None;
    let counter = &sh.conn_recv[idx];
    let mut hb = cfg.heartbeat.map(|every| {
        let mut iv = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        iv
    });
    loop {
        let next = match hb.as_mut() {
            // next_frame is cancel-safe: it only changes state after a read completes.
            Some(iv) => tokio::select! {
                f = c.next_frame() => f,
                _ = iv.tick() => {
                    let mut out = Vec::with_capacity(8);
                    ws_frame(&mut out, 0x1, &[b"\n"]);
                    if c.s.write_all(&out).await.is_err() {
                        return;
                    }
                    continue;
                }
            },
            None => c.next_frame().await,
        };
        let f = match next {
            Ok(f) => f,
            Err(e) => {
                if !sh.stop.load(Relaxed) {
                    sh.note_error(format!("subscriber {idx}: {e}"));
                    sh.closed_after_ready.fetch_add(1, Relaxed);
                }
                return;
            }
        };
        match f.opcode {
            0x0..=0x2 => {
                let now = sh.now_ns();
                let p = &c.buf[f.p0..f.p1];
                let mut n = 0u64;
                let record = sh.record.load(Relaxed);
                scan_tokens(p, |d, seq, t| {
                    n += 1;
                    if record {
                        sh.hist.record(now.saturating_sub(t));
                        if let Some(f) = &sh.first {
                            f.copy(d, seq, now, t);
                        }
                    }
                    if let Some(l) = last_seq
                        && seq != l + 1
                    {
                        sh.out_of_order.fetch_add(1, Relaxed);
                    }
                    last_seq = Some(seq);
                });
                if n == 0 && sh.trades && skip_eols(p).starts_with(b"MESSAGE") {
                    // One WebSocket message may carry several MESSAGE frames (batching).
                    let now_ms = unix_ms();
                    for ts in trade_ts_ms(p) {
                        n += 1;
                        if record {
                            let age_ms = now_ms.saturating_sub(ts);
                            sh.hist.record(age_ms.saturating_mul(1_000_000));
                        }
                    }
                }
                if n > 0 {
                    counter.fetch_add(n, Relaxed);
                    sh.received.fetch_add(n, Relaxed);
                    sh.received_bytes.fetch_add(p.len() as u64, Relaxed);
                    if !ready {
                        ready = true;
                        sh.ready.fetch_add(1, Relaxed);
                    }
                    if slow && ready {
                        // A slow consumer: stop reading, hold the socket until the end.
                        while !sh.stop.load(Relaxed) {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        return;
                    }
                } else if skip_eols(p).starts_with(b"ERROR") {
                    sh.note_error(format!(
                        "subscriber {idx}: {}",
                        String::from_utf8_lossy(&p[..p.len().min(300)]).replace(['\n', '\0'], " ")
                    ));
                }
            }
            0x8 => {
                if !sh.stop.load(Relaxed) {
                    sh.note_error(format!("subscriber {idx}: WebSocket close from the server"));
                    sh.closed_after_ready.fetch_add(1, Relaxed);
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

/// The `"ts":<ms>` of every trade record in a WebSocket payload (the exchange's
/// trade_timestamp), one per MESSAGE.
pub fn trade_ts_ms(p: &[u8]) -> impl Iterator<Item = u64> + '_ {
    memchr::memmem::find_iter(p, b"\"ts\":").filter_map(|k| {
        let k = k + 5;
        let digits = p[k..].iter().take_while(|b| b.is_ascii_digit()).count();
        std::str::from_utf8(&p[k..k + digits]).ok()?.parse().ok()
    })
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_the_trade_timestamp() {
        let p = b"MESSAGE\ndestination:/topic/market/KRW-BTC\n\n{\"market\":\"KRW-BTC\",\"price\":\"1\",\"ts\":1764660000123,\"trade_id\":\"7\"}\0";
        let two = [&p[..], &p[..]].concat();
        assert_eq!(
            super::trade_ts_ms(&two).collect::<Vec<_>>(),
            vec![1_764_660_000_123, 1_764_660_000_123]
        );
        assert_eq!(super::trade_ts_ms(b"MESSAGE\n\n{}\0").count(), 0);
    }
}
