//! `ceiling`: the bare broadcaster the benchmarks compare stompgate against.
//!
//! tokio-tungstenite and nothing else: no STOMP parser, no routing tables beyond a
//! destination index. It answers CONNECT with a fixed CONNECTED, notes which destination
//! index a connection subscribed to by a byte scan (the trailing digits of the
//! `destination` header, as `loadgen` names them), answers `receipt` headers, and for each
//! SEND encodes one MESSAGE (always `subscription:0`, as `loadgen` subscribes) and hands
//! the same bytes to every subscriber of that index. Each connection has one writer task
//! that drains its queue and flushes once per batch. A full queue drops (counted).
//!
//! Whatever stompgate does beyond this is what it costs over the stack it stands on.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use futures::{SinkExt, StreamExt};
use memchr::memmem;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

#[derive(Parser, Debug)]
#[command(about = "Bare tokio-tungstenite STOMP broadcaster: the ceiling for the benchmarks")]
struct Args {
    #[arg(long, default_value = "127.0.0.1")]
    bind: String,
    /// 0 picks a free port; the chosen one is printed.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// WebSocket read buffer per connection (tungstenite's default is 128 KiB).
    #[arg(long, default_value_t = 4096)]
    read_buffer: usize,
    /// Messages queued per connection before new ones are dropped.
    #[arg(long, default_value_t = 8192)]
    queue: usize,
    /// Tokio worker threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

type Tx = mpsc::Sender<Message>;

struct Hub {
    subs: RwLock<Vec<Vec<(u64, Tx)>>>,
    next_msg: AtomicU64,
    dropped: AtomicU64,
}

impl Hub {
    fn subscribe(&self, dest: usize, conn: u64, tx: Tx) {
        let mut g = self.subs.write().unwrap();
        if g.len() <= dest {
            g.resize_with(dest + 1, Vec::new);
        }
        g[dest].push((conn, tx));
    }
    fn remove(&self, conn: u64, dests: &[usize]) {
        let mut g = self.subs.write().unwrap();
        for &d in dests {
            if let Some(v) = g.get_mut(d) {
                v.retain(|(c, _)| *c != conn);
            }
        }
    }
    fn publish(&self, dest: usize, msg: Message) {
        let g = self.subs.read().unwrap();
        if let Some(v) = g.get(dest) {
            for (_, tx) in v {
                if tx.try_send(msg.clone()).is_err() {
                    self.dropped.fetch_add(1, Relaxed);
                }
            }
        }
    }
}

/// The value of header `name` (e.g. `b"\ndestination:"`) in a frame head.
fn header<'a>(head: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let i = memmem::find(head, name)? + name.len();
    let rest = &head[i..];
    let end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
    Some(&rest[..end])
}

fn trailing_index(v: &[u8]) -> usize {
    let start = v
        .iter()
        .rposition(|c| !c.is_ascii_digit())
        .map_or(0, |i| i + 1);
    v[start..].iter().fold(0usize, |acc, c| {
        acc.wrapping_mul(10).wrapping_add((c - b'0') as usize)
    })
}

fn text(s: &'static str) -> Message {
    Message::Text(Utf8Bytes::from_static(s))
}

fn receipt_for(head: &[u8]) -> Option<Message> {
    let id = header(head, b"\nreceipt:")?;
    let mut s = String::with_capacity(24 + id.len());
    s.push_str("RECEIPT\nreceipt-id:");
    s.push_str(std::str::from_utf8(id).ok()?);
    s.push_str("\n\n\0");
    Some(Message::Text(s.into()))
}

/// Answers with the first STOMP subprotocol the client offers.
#[allow(clippy::result_large_err)] // the signature is tungstenite's handshake callback
fn pick_subprotocol(req: &Request, mut resp: Response) -> Result<Response, ErrorResponse> {
    let offered = req
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    for p in ["v12.stomp", "v11.stomp", "v10.stomp"] {
        if offered.split(',').any(|o| o.trim() == p) {
            resp.headers_mut()
                .insert("sec-websocket-protocol", HeaderValue::from_static(p));
            break;
        }
    }
    Ok(resp)
}

async fn serve(stream: TcpStream, conn: u64, hub: Arc<Hub>, args: Arc<Args>) {
    let _ = stream.set_nodelay(true);
    let cfg = WebSocketConfig::default().read_buffer_size(args.read_buffer);
    let Ok(ws) =
        tokio_tungstenite::accept_hdr_async_with_config(stream, pick_subprotocol, Some(cfg)).await
    else {
        return;
    };
    let (mut sink, mut source) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Message>(args.queue);
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if sink.feed(m).await.is_err() {
                return;
            }
            while let Ok(m) = rx.try_recv() {
                if sink.feed(m).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    let mut dests: Vec<usize> = Vec::new();
    'read: while let Some(Ok(msg)) = source.next().await {
        let data: Bytes = match msg {
            Message::Text(t) => Bytes::from(t),
            Message::Binary(b) => b,
            Message::Close(_) => break,
            _ => continue,
        };
        // One WebSocket message may carry several STOMP frames.
        for frame in data.split(|&c| c == 0) {
            let f = &frame[frame
                .iter()
                .position(|&c| c != b'\n' && c != b'\r')
                .unwrap_or(frame.len())..];
            if f.is_empty() {
                continue;
            }
            let head_end = memmem::find(f, b"\n\n").unwrap_or(f.len());
            let head = &f[..head_end];
            if f.starts_with(b"SEND") {
                let Some(dest) = header(head, b"\ndestination:") else {
                    continue;
                };
                let idx = trailing_index(dest);
                let body = &f[(head_end + 2).min(f.len())..];
                let id = hub.next_msg.fetch_add(1, Relaxed);
                let mut m = Vec::with_capacity(64 + dest.len() + body.len());
                m.extend_from_slice(b"MESSAGE\ndestination:");
                m.extend_from_slice(dest);
                m.extend_from_slice(b"\nsubscription:0\nmessage-id:");
                m.extend_from_slice(id.to_string().as_bytes());
                m.extend_from_slice(b"\n\n");
                m.extend_from_slice(body);
                m.push(0);
                let Ok(t) = Utf8Bytes::try_from(Bytes::from(m)) else {
                    continue;
                };
                hub.publish(idx, Message::Text(t));
                if let Some(r) = receipt_for(head) {
                    let _ = tx.try_send(r);
                }
            } else if f.starts_with(b"SUBSCRIBE") {
                let Some(dest) = header(head, b"\ndestination:") else {
                    continue;
                };
                let idx = trailing_index(dest);
                hub.subscribe(idx, conn, tx.clone());
                dests.push(idx);
                if let Some(r) = receipt_for(head) {
                    let _ = tx.try_send(r);
                }
            } else if f.starts_with(b"CONNECT") || f.starts_with(b"STOMP") {
                let _ = tx.try_send(text(
                    "CONNECTED\nversion:1.2\nheart-beat:0,0\nserver:ceiling\n\n\0",
                ));
            } else if f.starts_with(b"DISCONNECT") {
                if let Some(r) = receipt_for(head) {
                    let _ = tx.try_send(r);
                }
                break 'read;
            }
        }
    }
    hub.remove(conn, &dests);
    drop(tx);
    let _ = tokio::time::timeout(Duration::from_secs(1), writer).await;
}

fn main() {
    let args = Arc::new(Args::parse());
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if args.threads > 0 {
        b.worker_threads(args.threads);
    }
    let rt = b.enable_all().build().expect("tokio runtime");
    rt.block_on(async move {
        let addr: SocketAddr = format!("{}:{}", args.bind, args.port)
            .parse()
            .expect("bind address");
        let sock = tokio::net::TcpSocket::new_v4().expect("socket");
        sock.set_reuseaddr(true).expect("reuseaddr");
        sock.bind(addr).expect("bind");
        let listener: TcpListener = sock.listen(4096).expect("listen");
        let local = listener.local_addr().expect("local addr");
        println!("ceiling listening on http://127.0.0.1:{}", local.port());
        let hub = Arc::new(Hub {
            subs: RwLock::new(Vec::new()),
            next_msg: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        });
        let stats = hub.clone();
        tokio::spawn(async move {
            let mut last = 0;
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                let d = stats.dropped.load(Relaxed);
                if d != last {
                    eprintln!("ceiling: {d} messages dropped on full queues");
                    last = d;
                }
            }
        });
        let mut conn = 0u64;
        loop {
            match listener.accept().await {
                Ok((s, _)) => {
                    conn += 1;
                    tokio::spawn(serve(s, conn, hub.clone(), args.clone()));
                }
                Err(e) => {
                    eprintln!("ceiling: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    });
}
