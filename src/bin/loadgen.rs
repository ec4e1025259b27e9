//! `loadgen`: a STOMP-over-WebSocket load generator for stompgate and its peers
//! (RabbitMQ Web-STOMP, Spring's SimpleBroker, the bare `ceiling` broadcaster).
//!
//! It opens N subscriber connections spread over several 127.0.0.x source addresses,
//! subscribes them to D destinations, publishes with STOMP SEND from publisher
//! connections at a set or ramping rate and measures delivered messages/s, end-to-end
//! latency, loss (per-destination sequence numbers), connect+subscribe time and the
//! server's RSS and CPU from /proc.
//!
//! Every published body carries a token `@@<dest>:<seq>:<nanos>@@` (nanos since this
//! process started: one clock). Receivers find it by a byte search over the raw
//! WebSocket payload, so the same tool works whether the server wraps the body (stompgate
//! puts chat text into JSON) or delivers it as sent.
//!
//! To stay cheap on a machine it shares with the server, the WebSocket client is written
//! by hand: one reused read buffer per connection, frames parsed in place, many frames per
//! read, client frames masked with a zero key (a valid mask that needs no XOR pass).
//!
//! Output: a human summary on stderr and one JSON line per result on stdout.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use memchr::memmem;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Find the highest delivered msgs/s that holds the p99 limit with nothing lost.
    FanoutRamp,
    /// A fixed delivered rate for a duration.
    Fixed,
    /// N connections connected and subscribed; report server RSS per connection.
    Idle,
    /// Time for N connections to CONNECT and SUBSCRIBE.
    Storm,
    /// Fixed load plus clients that stop reading; others' p99 and server RSS over time.
    Slow,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum BodyFormat {
    /// `{"text":"@@..@@"}` (stompgate chat SEND; peers deliver it as sent)
    Json,
    /// the bare token
    Raw,
}

#[derive(Parser, Debug, Clone)]
#[command(about = "STOMP-over-WebSocket load generator (fan-out, latency, idle, storm, slow)")]
struct Args {
    #[arg(long, value_enum)]
    mode: Mode,
    /// WebSocket URL of the server (loopback only).
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    url: String,
    /// Label of the server in the output (stompgate, rabbitmq, spring, ceiling).
    #[arg(long, default_value = "target")]
    target: String,
    /// Label of the scenario in the output.
    #[arg(long, default_value = "")]
    scenario: String,
    /// Subscriber connections.
    #[arg(long, short = 'n', default_value_t = 1000)]
    connections: usize,
    /// Destinations; subscriber i subscribes to destination i % D.
    #[arg(long, short = 'd', default_value_t = 10)]
    destinations: usize,
    /// Subscribe destination template; `{i}` is the destination index.
    #[arg(long, default_value = "/topic/market/M{i}")]
    sub_template: String,
    /// SEND destination template; `{i}` is the destination index.
    #[arg(long, default_value = "/app/market/M{i}/chat")]
    send_template: String,
    #[arg(long, value_enum, default_value = "json")]
    body: BodyFormat,
    /// Extra bytes of padding in every published body.
    #[arg(long, default_value_t = 0)]
    pad: usize,
    #[arg(long, default_value = "guest")]
    login: String,
    #[arg(long, default_value = "guest")]
    passcode: String,
    /// STOMP `host` header (RabbitMQ: the virtual host).
    #[arg(long, default_value = "/")]
    vhost: String,
    /// The server sends no RECEIPT for SUBSCRIBE: confirm each subscription by its first
    /// message instead (probe messages are published until every subscriber has one).
    #[arg(long)]
    no_receipt: bool,
    /// Publisher connections (destinations are split among them).
    #[arg(long, default_value_t = 1)]
    publishers: usize,
    /// Delivered messages/s (fixed, slow).
    #[arg(long, default_value_t = 100_000.0)]
    rate: f64,
    /// Seconds of measurement (fixed, slow).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of unmeasured load before a fixed or slow measurement.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// First delivered rate of the ramp.
    #[arg(long, default_value_t = 10_000.0)]
    ramp_start: f64,
    #[arg(long, default_value_t = 1.5)]
    ramp_factor: f64,
    #[arg(long, default_value_t = 5_000_000.0)]
    ramp_max: f64,
    /// Seconds per ramp step.
    #[arg(long, default_value_t = 4.0)]
    step_secs: f64,
    /// Attempts more at a rate whose ramp step failed, before it counts as failed (the
    /// build machines are shared: one stall of another job should not end the ramp).
    #[arg(long, default_value_t = 2)]
    retries: usize,
    /// Bisection steps between the last passing and the first failing rate.
    #[arg(long, default_value_t = 2)]
    refine: usize,
    /// Latency limit of a passing ramp step, p99 in ms.
    #[arg(long, default_value_t = 50.0)]
    p99_limit_ms: f64,
    /// PID of the server process, for RSS and CPU from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Number of 127.0.0.x source addresses to spread connections over.
    #[arg(long, default_value_t = 8)]
    sources: u8,
    /// First source address: 127.0.0.<source-base>.
    #[arg(long, default_value_t = 1)]
    source_base: u8,
    /// Connection set-ups in flight at once.
    #[arg(long, default_value_t = 256)]
    connect_concurrency: usize,
    /// Seconds to wait for the whole connect phase.
    #[arg(long, default_value_t = 60.0)]
    connect_timeout: f64,
    /// Seconds to hold idle connections before reading the server's RSS.
    #[arg(long, default_value_t = 5.0)]
    hold: f64,
    /// Clients that stop reading (slow mode).
    #[arg(long, default_value_t = 1)]
    slow_clients: usize,
    /// Seconds between samples of p99 and RSS (slow mode).
    #[arg(long, default_value_t = 5.0)]
    sample_secs: f64,
    /// Tokio worker threads of the load generator.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Initial read buffer per connection, bytes (grows for larger frames).
    #[arg(long, default_value_t = 16384)]
    read_buf: usize,
    /// Seconds to wait for in-flight messages after a step.
    #[arg(long, default_value_t = 5.0)]
    drain_secs: f64,
    /// Client heart-beat interval, ms (0: none). Subscribers send an EOL this often, as
    /// STOMP clients do; some servers close silent connections (RabbitMQ Web-STOMP: 60 s).
    #[arg(long, default_value_t = 0)]
    heartbeat_ms: u64,
}

// ---------------------------------------------------------------------------------------
// Histogram: log-linear buckets over nanoseconds, 32 sub-buckets per power of two (~3%).

const SUB_BITS: u32 = 5;
const SUB: usize = 1 << SUB_BITS;
const LINEAR: usize = 2 * SUB;
const BUCKETS: usize = LINEAR + (41 - (SUB_BITS as usize + 1)) * SUB;

fn bucket_of(v: u64) -> usize {
    if v < LINEAR as u64 {
        return v as usize;
    }
    let e = 63 - v.leading_zeros(); // >= SUB_BITS + 1
    let sub = ((v >> (e - SUB_BITS)) as usize) & (SUB - 1);
    let idx = LINEAR + (e as usize - (SUB_BITS as usize + 1)) * SUB + sub;
    idx.min(BUCKETS - 1)
}

/// Upper edge of a bucket (so a percentile never under-reports).
fn bucket_high(idx: usize) -> u64 {
    if idx < LINEAR {
        return idx as u64;
    }
    let e = (idx - LINEAR) / SUB + SUB_BITS as usize + 1;
    let sub = ((idx - LINEAR) % SUB) as u64;
    ((SUB as u64 + sub + 1) << (e - SUB_BITS as usize)) - 1
}

struct Hist {
    b: Vec<AtomicU64>,
    max: AtomicU64,
}

impl Hist {
    fn new() -> Self {
        Hist {
            b: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            max: AtomicU64::new(0),
        }
    }
    #[inline]
    fn record(&self, v: u64) {
        self.b[bucket_of(v)].fetch_add(1, Relaxed);
        if v > self.max.load(Relaxed) {
            self.max.fetch_max(v, Relaxed);
        }
    }
    fn snapshot(&self) -> Vec<u64> {
        self.b.iter().map(|x| x.load(Relaxed)).collect()
    }
    fn reset(&self) {
        for x in &self.b {
            x.store(0, Relaxed);
        }
        self.max.store(0, Relaxed);
    }
}

#[derive(Default, Debug, Clone, Copy)]
struct Pct {
    count: u64,
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
}

fn percentiles(counts: &[u64], exact_max: Option<u64>) -> Pct {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return Pct::default();
    }
    let at = |q: f64| -> f64 {
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut acc = 0;
        for (i, c) in counts.iter().enumerate() {
            acc += c;
            if acc >= rank {
                return bucket_high(i) as f64 / 1e6;
            }
        }
        0.0
    };
    let top = counts.iter().rposition(|&c| c > 0).unwrap_or(0);
    let max = exact_max.map_or(bucket_high(top) as f64 / 1e6, |m| m as f64 / 1e6);
    // A bucket's upper edge may lie above the largest value seen.
    Pct {
        count: total,
        p50: at(0.50).min(max),
        p99: at(0.99).min(max),
        p999: at(0.999).min(max),
        max,
    }
}

// ---------------------------------------------------------------------------------------
// /proc sampling (CPU in clock ticks; Linux uses 100 per second on every common build).

const CLK_TCK: f64 = 100.0;

fn proc_cpu_ticks(pid: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn proc_rss_kb(pid: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[derive(Clone, Copy)]
struct CpuMark {
    at: Instant,
    server: Option<u64>,
    me: Option<u64>,
}

struct Proc {
    server: Option<String>,
}

impl Proc {
    fn mark(&self) -> CpuMark {
        CpuMark {
            at: Instant::now(),
            server: self.server.as_deref().and_then(proc_cpu_ticks),
            me: proc_cpu_ticks("self"),
        }
    }
    /// (server %, loadgen %) of one core between two marks.
    fn cpu_pct(a: &CpuMark, b: &CpuMark) -> (Option<f64>, Option<f64>) {
        let dt = b.at.duration_since(a.at).as_secs_f64().max(1e-9);
        let f = |x: Option<u64>, y: Option<u64>| match (x, y) {
            (Some(x), Some(y)) => Some((y.saturating_sub(x)) as f64 / CLK_TCK / dt * 100.0),
            _ => None,
        };
        (f(a.server, b.server), f(a.me, b.me))
    }
    fn server_rss(&self) -> Option<u64> {
        self.server.as_deref().and_then(proc_rss_kb)
    }
}

// ---------------------------------------------------------------------------------------
// Shared state.

struct Shared {
    t0: Instant,
    hist: Hist,
    received: AtomicU64,
    /// Messages received per subscriber connection.
    conn_recv: Vec<AtomicU64>,
    /// Messages published per destination (the next sequence number).
    published: Vec<AtomicU64>,
    /// Publisher rate per destination, messages/s (f64 bits).
    rate_per_dest: AtomicU64,
    ready: AtomicUsize,
    subscribed_sent: AtomicUsize,
    failed: AtomicUsize,
    closed_after_ready: AtomicUsize,
    out_of_order: AtomicU64,
    first_error: Mutex<Option<String>>,
    stop: AtomicBool,
    record: AtomicBool,
}

impl Shared {
    #[inline]
    fn now_ns(&self) -> u64 {
        self.t0.elapsed().as_nanos() as u64
    }
    fn note_error(&self, e: String) {
        let mut g = self.first_error.lock().unwrap();
        if g.is_none() {
            *g = Some(e);
        }
    }
    fn set_rate_per_dest(&self, r: f64) {
        self.rate_per_dest.store(r.to_bits(), Relaxed);
    }
    fn rate_per_dest(&self) -> f64 {
        f64::from_bits(self.rate_per_dest.load(Relaxed))
    }
}

// ---------------------------------------------------------------------------------------
// WebSocket client, by hand.

struct Target {
    addr: SocketAddr,
    upgrade: Vec<u8>,
}

fn parse_url(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("ws://")
        .ok_or_else(|| format!("only ws:// URLs are supported: {url}"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    Ok((hostport.to_string(), path.to_string()))
}

fn upgrade_request(hostport: &str, path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: v12.stomp, v11.stomp, v10.stomp\r\n\r\n"
    )
    .into_bytes()
}

/// Appends one masked (zero key) client frame.
fn ws_frame(out: &mut Vec<u8>, opcode: u8, payload_parts: &[&[u8]]) {
    let len: usize = payload_parts.iter().map(|p| p.len()).sum();
    out.push(0x80 | opcode);
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len < 65536 {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&[0, 0, 0, 0]);
    for p in payload_parts {
        out.extend_from_slice(p);
    }
}

struct WsFrame {
    opcode: u8,
    p0: usize,
    p1: usize,
}

/// A server-to-client frame header at the start of `b`: (opcode, header length, payload length).
#[inline]
fn parse_ws_header(b: &[u8]) -> Option<(u8, usize, usize)> {
    if b.len() < 2 {
        return None;
    }
    let opcode = b[0] & 0x0f;
    let masked = b[1] & 0x80 != 0;
    let (len, mut hl) = match b[1] & 0x7f {
        126 => {
            if b.len() < 4 {
                return None;
            }
            (u16::from_be_bytes([b[2], b[3]]) as usize, 4)
        }
        127 => {
            if b.len() < 10 {
                return None;
            }
            (u64::from_be_bytes(b[2..10].try_into().ok()?) as usize, 10)
        }
        n => (n as usize, 2),
    };
    if masked {
        hl += 4;
    }
    if b.len() < hl + len {
        return None;
    }
    Some((opcode, hl, len))
}

struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Conn {
    async fn open(t: &Target, src: Ipv4Addr, read_buf: usize) -> std::io::Result<Conn> {
        let sock = TcpSocket::new_v4()?;
        sock.set_reuseaddr(true)?;
        sock.bind(SocketAddr::new(src.into(), 0))?;
        let mut s = sock.connect(t.addr).await?;
        s.set_nodelay(true)?;
        s.write_all(&t.upgrade).await?;
        let mut buf = vec![0u8; read_buf.max(4096)];
        let mut end = 0;
        loop {
            let n = s.read(&mut buf[end..]).await?;
            if n == 0 {
                return Err(std::io::Error::other("closed during the WebSocket upgrade"));
            }
            end += n;
            if let Some(i) = memmem::find(&buf[..end], b"\r\n\r\n") {
                let head = &buf[..i];
                let status = head.split(|&c| c == b'\n').next().unwrap_or(b"");
                if memmem::find(status, b" 101").is_none() {
                    return Err(std::io::Error::other(format!(
                        "upgrade refused: {}",
                        String::from_utf8_lossy(status).trim()
                    )));
                }
                let start = i + 4;
                return Ok(Conn { s, buf, start, end });
            }
            if end == buf.len() {
                return Err(std::io::Error::other("upgrade response too large"));
            }
        }
    }

    /// Next complete frame; its payload is `buf[p0..p1]` until the next call.
    async fn next_frame(&mut self) -> std::io::Result<WsFrame> {
        loop {
            if let Some((opcode, hl, len)) = parse_ws_header(&self.buf[self.start..self.end]) {
                let p0 = self.start + hl;
                let p1 = p0 + len;
                self.start = p1;
                return Ok(WsFrame { opcode, p0, p1 });
            }
            if self.start == self.end {
                self.start = 0;
                self.end = 0;
            } else if self.start > 0 && self.buf.len() - self.end < 2048 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.end == self.buf.len() {
                let n = self.buf.len() * 2;
                self.buf.resize(n, 0);
            }
            let n = self.s.read(&mut self.buf[self.end..]).await?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed by the server",
                ));
            }
            self.end += n;
        }
    }

    async fn send_text(&mut self, payload: &[u8]) -> std::io::Result<()> {
        let mut out = Vec::with_capacity(payload.len() + 16);
        ws_frame(&mut out, 0x1, &[payload]);
        self.s.write_all(&out).await
    }

    /// Reads until a STOMP frame whose command is `want` arrives (answers pings on the way).
    async fn expect(&mut self, want: &[u8]) -> std::io::Result<()> {
        loop {
            let f = self.next_frame().await?;
            match f.opcode {
                0x8 => return Err(std::io::Error::other("WebSocket close from the server")),
                0x9 => {
                    let p = self.buf[f.p0..f.p1].to_vec();
                    let mut out = Vec::new();
                    ws_frame(&mut out, 0xA, &[&p]);
                    self.s.write_all(&out).await?;
                }
                0x0..=0x2 => {
                    let p = skip_eols(&self.buf[f.p0..f.p1]);
                    if p.starts_with(want) {
                        return Ok(());
                    }
                    if p.starts_with(b"ERROR") {
                        return Err(std::io::Error::other(format!(
                            "STOMP ERROR: {}",
                            String::from_utf8_lossy(&p[..p.len().min(300)])
                                .replace(['\n', '\0'], " ")
                        )));
                    }
                }
                _ => {}
            }
        }
    }
}

fn skip_eols(p: &[u8]) -> &[u8] {
    let i = p
        .iter()
        .position(|&c| c != b'\n' && c != b'\r')
        .unwrap_or(p.len());
    &p[i..]
}

// ---------------------------------------------------------------------------------------
// STOMP frames and the token.

fn dest_name(template: &str, i: usize) -> String {
    template.replace("{i}", &i.to_string())
}

fn connect_frame(a: &Args) -> Vec<u8> {
    format!(
        "CONNECT\naccept-version:1.2,1.1,1.0\nhost:{}\nlogin:{}\npasscode:{}\nheart-beat:{},0\n\n\0",
        a.vhost, a.login, a.passcode, a.heartbeat_ms
    )
    .into_bytes()
}

fn subscribe_frame(dest: &str, receipt: bool) -> Vec<u8> {
    let mut s = format!("SUBSCRIBE\nid:0\ndestination:{dest}\nack:auto\n");
    if receipt {
        s.push_str("receipt:s0\n");
    }
    s.push_str("\n\0");
    s.into_bytes()
}

static TOKEN: std::sync::LazyLock<memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memmem::Finder::new(b"@@"));

#[inline]
fn parse_num(b: &[u8], i: &mut usize) -> Option<u64> {
    let s = *i;
    let mut v: u64 = 0;
    while *i < b.len() && b[*i].is_ascii_digit() {
        v = v.wrapping_mul(10).wrapping_add((b[*i] - b'0') as u64);
        *i += 1;
    }
    (*i > s).then_some(v)
}

/// Calls `f(dest, seq, nanos)` for every token in `p`.
#[inline]
fn scan_tokens(p: &[u8], mut f: impl FnMut(u64, u64, u64)) {
    let mut from = 0;
    while let Some(k) = TOKEN.find(&p[from..]) {
        let mut i = from + k + 2;
        let parsed = (|| {
            let d = parse_num(p, &mut i)?;
            (p.get(i) == Some(&b':')).then_some(())?;
            i += 1;
            let s = parse_num(p, &mut i)?;
            (p.get(i) == Some(&b':')).then_some(())?;
            i += 1;
            let t = parse_num(p, &mut i)?;
            (p.get(i..i + 2) == Some(b"@@")).then_some(())?;
            Some((d, s, t))
        })();
        match parsed {
            Some((d, s, t)) => {
                f(d, s, t);
                from = i + 2;
            }
            None => from += k + 2,
        }
        if from >= p.len() {
            break;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Subscriber connections.

struct SubCfg {
    target: Target,
    connect: Vec<u8>,
    subscribe: Vec<Vec<u8>>,
    receipt: bool,
    read_buf: usize,
    sources: Vec<Ipv4Addr>,
    timeout: Duration,
    heartbeat: Option<Duration>,
}

async fn subscriber(
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
                scan_tokens(p, |_d, seq, t| {
                    n += 1;
                    if record {
                        sh.hist.record(now.saturating_sub(t));
                    }
                    if let Some(l) = last_seq
                        && seq != l + 1
                    {
                        sh.out_of_order.fetch_add(1, Relaxed);
                    }
                    last_seq = Some(seq);
                });
                if n > 0 {
                    counter.fetch_add(n, Relaxed);
                    sh.received.fetch_add(n, Relaxed);
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

// ---------------------------------------------------------------------------------------
// Publishers.

struct PubCfg {
    prefix: Vec<Vec<u8>>,
    suffix: Vec<u8>,
    pad: Vec<u8>,
}

async fn open_publisher(
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

async fn publisher(mut w: OwnedWriteHalf, dests: Vec<usize>, cfg: Arc<PubCfg>, sh: Arc<Shared>) {
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

// ---------------------------------------------------------------------------------------
// Steps.

struct Run {
    a: Args,
    sh: Arc<Shared>,
    proc_: Proc,
    dest_of: Vec<usize>,
    slow: Vec<bool>,
}

#[derive(Debug, Clone, Copy, Default)]
struct StepResult {
    target_rate: f64,
    delivered_per_s: f64,
    expected: u64,
    received: u64,
    lost: u64,
    lat: Pct,
    server_cpu: Option<f64>,
    loadgen_cpu: Option<f64>,
    server_rss_kb: Option<u64>,
    secs: f64,
}

impl StepResult {
    fn passes(&self, limit_ms: f64) -> bool {
        self.lost == 0
            && self.lat.count > 0
            && self.lat.p99 <= limit_ms
            && self.delivered_per_s >= 0.9 * self.target_rate
    }
    fn json(&self) -> Value {
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
        })
    }
}

fn r1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}
fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

impl Run {
    fn active_per_dest(&self) -> Vec<u64> {
        let mut v = vec![0u64; self.a.destinations];
        for (i, &d) in self.dest_of.iter().enumerate() {
            if !self.slow[i] {
                v[d] += 1;
            }
        }
        v
    }

    /// One ramp step, tried up to 1 + retries times until it passes.
    async fn ramp_step(&self, rate: f64, steps: &mut Vec<Value>) -> StepResult {
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

    fn conn_counts(&self) -> Vec<u64> {
        self.sh.conn_recv.iter().map(|x| x.load(Relaxed)).collect()
    }
    fn pub_counts(&self) -> Vec<u64> {
        self.sh.published.iter().map(|x| x.load(Relaxed)).collect()
    }

    /// Runs load at `rate` delivered msgs/s for `secs`; `on_sample` is called every
    /// `sample` seconds with (elapsed, window percentiles, server RSS).
    async fn step(
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
        StepResult {
            target_rate: rate,
            delivered_per_s: (r1_ - r0) as f64 / elapsed,
            expected,
            received,
            lost,
            lat: percentiles(&sh.hist.snapshot(), Some(sh.hist.max.load(Relaxed))),
            server_cpu: scpu,
            loadgen_cpu: mcpu,
            server_rss_kb: rss,
            secs: elapsed,
        }
    }
}

fn emit(v: Value) {
    println!("{v}");
}

fn human_step(label: &str, r: &StepResult) {
    eprintln!(
        "  {label:<10} target {:>10.0}/s delivered {:>10.0}/s  p50 {:>7.3} p99 {:>8.3} p999 {:>8.3} max {:>8.3} ms  lost {:>6}/{:<9} server cpu {:>5} loadgen cpu {:>5} rss {} MB",
        r.target_rate,
        r.delivered_per_s,
        r.lat.p50,
        r.lat.p99,
        r.lat.p999,
        r.lat.max,
        r.lost,
        r.expected,
        r.server_cpu.map_or("-".into(), |x| format!("{x:.0}%")),
        r.loadgen_cpu.map_or("-".into(), |x| format!("{x:.0}%")),
        r.server_rss_kb
            .map_or("-".into(), |x| format!("{:.1}", x as f64 / 1024.0)),
    );
}

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

    // Publishers first, so probes can flow as soon as subscribers are there.
    let needs_publishers = a.mode != Mode::Idle && a.mode != Mode::Storm || !receipt;
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
    let base = json!({
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
    let mut out = base.clone();
    let run = Run {
        a: a.clone(),
        sh: sh.clone(),
        proc_,
        dest_of,
        slow,
    };
    // Let the probe messages settle before anything is measured.
    if !receipt {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut code = 0;
    let all_ready = ready == n;
    match a.mode {
        Mode::Storm => {
            let o = out.as_object_mut().unwrap();
            o.insert("server_cpu_pct".into(), json!(cs_cpu.map(r1)));
            o.insert("loadgen_cpu_pct".into(), json!(cm_cpu.map(r1)));
            o.insert("server_rss_kb".into(), json!(run.proc_.server_rss()));
            if !all_ready {
                code = 1;
            }
        }
        Mode::Idle => {
            tokio::time::sleep(Duration::from_secs_f64(a.hold)).await;
            let m0 = run.proc_.mark();
            tokio::time::sleep(Duration::from_secs(1)).await;
            let m1 = run.proc_.mark();
            let (icpu, _) = Proc::cpu_pct(&m0, &m1);
            let rss_after = run.proc_.server_rss();
            let still = ready.saturating_sub(sh.closed_after_ready.load(Relaxed));
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
            let o = out.as_object_mut().unwrap();
            o.insert("held".into(), json!(still));
            o.insert("server_rss_before_kb".into(), json!(rss_before));
            o.insert("server_rss_kb".into(), json!(rss_after));
            o.insert(
                "rss_per_conn_kb".into(),
                json!(per.map(|x| (x * 100.0).round() / 100.0)),
            );
            o.insert("idle_server_cpu_pct".into(), json!(icpu.map(r1)));
            o.insert("loadgen_rss_kb".into(), json!(my_rss));
            if !all_ready {
                code = 1;
            }
        }
        Mode::Fixed | Mode::Slow => {
            if a.warmup > 0.0 {
                let w = run.step(a.rate, a.warmup, None, |_, _, _| {}).await;
                human_step("warm-up", &w);
            }
            let mut series = Vec::new();
            let sample = (a.mode == Mode::Slow).then_some(a.sample_secs);
            let r = run
                .step(a.rate, a.duration, sample, |t, p, rss| {
                    eprintln!(
                        "    t={t:>5.1}s others' p99 {:>8.3} ms (n={}) server rss {} MB",
                        p.p99,
                        p.count,
                        rss.map_or("-".into(), |x| format!("{:.1}", x as f64 / 1024.0))
                    );
                    series.push(json!({"t": t, "p99_ms": r3(p.p99), "count": p.count, "server_rss_kb": rss}));
                })
                .await;
            human_step("measured", &r);
            if let (Some(o), Some(s)) = (out.as_object_mut(), r.json().as_object()) {
                o.extend(s.clone());
                if a.mode == Mode::Slow {
                    o.insert("slow_clients".into(), json!(slow_n));
                    o.insert("series".into(), json!(series));
                }
            }
            if r.received == 0 || r.lost > 0 {
                code = 1;
            }
        }
        Mode::FanoutRamp => {
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
            let o = out.as_object_mut().unwrap();
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
        }
    }
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
    emit(out);
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut last = 0;
        for v in [
            0u64,
            1,
            63,
            64,
            65,
            100,
            1_000,
            65_432,
            1_000_000,
            50_000_000,
            1 << 39,
        ] {
            let b = bucket_of(v);
            assert!(b >= last);
            last = b;
            let hi = bucket_high(b);
            assert!(hi >= v, "{v} -> {b} -> {hi}");
            assert!(hi as f64 <= v as f64 * 1.04 + 1.0, "{v} -> {hi}");
        }
    }

    #[test]
    fn finds_tokens_in_wrapped_bodies() {
        let p = b"MESSAGE\ndestination:/topic/market/M3\n\n{\"id\":\"x\",\"text\":\"@@3:17:123456@@\",\"ts\":1}\0MESSAGE\n\n@@3:18:99@@\0@@bad@@";
        let mut got = Vec::new();
        scan_tokens(p, |d, s, t| got.push((d, s, t)));
        assert_eq!(got, vec![(3, 17, 123456), (3, 18, 99)]);
    }

    #[test]
    fn ws_header_roundtrip() {
        let mut out = Vec::new();
        ws_frame(&mut out, 1, &[&[b'a'; 300]]);
        // Client frames are masked: header 2 + 2 (length) + 4 (key).
        assert_eq!(parse_ws_header(&out), Some((1, 8, 300)));
        assert_eq!(parse_ws_header(&out[..100]), None);
    }
}
