//! The byte pipes a session runs over: STOMP over WebSocket (text or binary messages; one
//! message may hold several frames and a frame may span several messages) and STOMP over
//! raw TCP. The session treats both as a stream of bytes in and batches of frames out.
//!
//! Typed sessions: a person at `wscat` sends one WebSocket message per line, without the
//! newline, and cannot easily type NUL. A WebSocket whose first message is exactly
//! `CONNECT` or `STOMP` is taken to be typed by hand: each of its text messages is a line
//! (a newline is appended) and a line ending in `^@` ends the frame (NUL). No STOMP
//! library sends a lone command as its first message.

mod direct;
mod pings;
mod staging;

pub use direct::Attached;
pub use pings::PingLimit;
pub use staging::Staging;

use crate::disconnect::Disconnect;
use crate::handshake::Socket;
use crate::hub::direct as hub_direct;
use crate::stomp::Limits;
use bytes::BytesMut;
use futures::{SinkExt, StreamExt};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::io::poll_read_buf;

/// Bytes a WebSocket chunk keeps free at its start for the frame header (2, 4 or 10 bytes,
/// written in place), so that a batch goes to the socket as one write without a copy.
pub const WS_HEADROOM: usize = 10;

pub enum Transport {
    WebSocket {
        /// The outbox whose publishers may write to this socket; detached when the
        /// transport goes, before the socket closes (fields drop in this order).
        attached: Option<Attached>,
        ws: Box<Socket>,
        /// A data frame was cut off mid-write (a write timeout): nothing more may follow it.
        torn: bool,
        /// A ping was read since the last flush: tungstenite may still hold its pong.
        pong_owed: bool,
        /// Whether a person types the frames line by line (decided by the first message).
        typed: Option<bool>,
        /// Pings answered in the current second, against `--max-pings-per-second`.
        pings: PingLimit,
        staged: Staging,
    },
    Tcp {
        stream: TcpStream,
        staged: Staging,
    },
}

/// Appends one text message of a WebSocket to the read buffer, as a line if it is typed.
fn append_text(buf: &mut BytesMut, text: &str, typed: &mut Option<bool>) {
    let typed = *typed.get_or_insert_with(|| matches!(text.trim_end(), "CONNECT" | "STOMP"));
    if !typed {
        buf.extend_from_slice(text.as_bytes());
        return;
    }
    match text.strip_suffix("^@") {
        Some(line) => {
            buf.extend_from_slice(line.as_bytes());
            buf.extend_from_slice(b"\0\n");
        }
        None => {
            buf.extend_from_slice(text.as_bytes());
            buf.extend_from_slice(b"\n");
        }
    }
}

/// Writes a server (unmasked) WebSocket frame header for a final text or binary frame of
/// `chunk[WS_HEADROOM..]` into the headroom, right-aligned; returns where the frame starts.
/// `utf8` says the payload is known to be UTF-8; otherwise it is checked: text when it is,
/// binary when not. The same chunk always gets the same header.
fn frame_header(chunk: &mut [u8], utf8: bool) -> usize {
    let text = utf8 || std::str::from_utf8(&chunk[WS_HEADROOM..]).is_ok();
    let mut header = [0u8; WS_HEADROOM];
    let n = hub_direct::frame_header(chunk.len() - WS_HEADROOM, text, &mut header);
    let start = WS_HEADROOM - n;
    chunk[start..WS_HEADROOM].copy_from_slice(&header[..n]);
    start
}

/// How far a write of chunks got: whole chunks before `chunk`, and that one written up to
/// `at`, an index into the chunk itself (on WebSocket its header is already in place); 0
/// when nothing of it was (nor its header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub chunk: usize,
    pub at: usize,
}

impl Progress {
    pub const START: Progress = Progress { chunk: 0, at: 0 };

    /// Where chunk `i` goes on from, if it was begun.
    fn resume(&self, i: usize) -> Option<usize> {
        (i == self.chunk && self.at > 0).then_some(self.at)
    }
}

/// What [`Transport::try_send_chunks`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Sent {
    /// Every chunk is written.
    All,
    /// The socket would block here; the rest goes on the waiting path.
    Upto(Progress),
    /// The connection failed.
    Failed(String),
}

impl Transport {
    /// A WebSocket whose client may send at most `pings` pings per second and frames
    /// within `limits`.
    pub fn websocket_limited(ws: Socket, pings: PingLimit, limits: Limits) -> Transport {
        Transport::WebSocket {
            attached: None,
            ws: Box::new(ws),
            torn: false,
            pong_owed: false,
            typed: None,
            pings,
            staged: Staging::new(limits),
        }
    }

    /// Raw STOMP over TCP, frames within `limits`.
    pub fn tcp(stream: TcpStream, limits: Limits) -> Transport {
        Transport::Tcp {
            stream,
            staged: Staging::new(limits),
        }
    }

    /// Bytes every chunk given to [`Transport::send_chunks`] keeps free at its start.
    pub fn headroom(&self) -> usize {
        match self {
            Transport::WebSocket { .. } => WS_HEADROOM,
            Transport::Tcp { .. } => 0,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Transport::WebSocket { .. } => "ws",
            Transport::Tcp { .. } => "tcp",
        }
    }

    /// Appends the next bytes from the client to `buf`. `Ready(Ok(false))` when the client
    /// closed. Nothing is lost when it returns `Pending`: the waker in `cx` is woken when
    /// more may be read.
    pub fn poll_recv(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<Result<bool, String>> {
        match self {
            Transport::WebSocket {
                ws,
                typed,
                pings,
                staged,
                pong_owed,
                ..
            } => Poll::Ready(match ready!(ws.poll_next_unpin(cx)) {
                None | Some(Ok(Message::Close(_))) => Ok(false),
                Some(Ok(Message::Text(text))) => {
                    append_text(&mut staged.bytes, text.as_str(), typed);
                    staged.release_all(buf);
                    Ok(true)
                }
                Some(Ok(Message::Binary(data))) => {
                    typed.get_or_insert(false);
                    staged.bytes.extend_from_slice(&data);
                    staged.release_all(buf);
                    Ok(true)
                }
                // Pings are answered by the WebSocket layer; they count as liveness.
                Some(Ok(Message::Ping(_))) => {
                    *pong_owed = true;
                    pings.ping().map(|()| true)
                }
                Some(Ok(Message::Pong(_) | Message::Frame(_))) => Ok(true),
                Some(Err(e)) => Err(e.to_string()),
            }),
            Transport::Tcp { stream, staged } => {
                let bytes = &mut staged.bytes;
                if bytes.capacity() - bytes.len() < 1024 {
                    bytes.reserve(4096);
                }
                Poll::Ready(match ready!(poll_read_buf(Pin::new(stream), cx, bytes)) {
                    Ok(0) => Ok(false),
                    Ok(_) => {
                        staged.release(buf);
                        Ok(true)
                    }
                    Err(e) => Err(e.to_string()),
                })
            }
        }
    }

    /// Writes `chunks` (each a WebSocket message, or contiguous bytes on TCP), each a frame
    /// of the session itself: the headroom is added here.
    pub async fn send(&mut self, chunks: Vec<Vec<u8>>) -> Result<(), String> {
        let room = self.headroom();
        let chunks = chunks
            .into_iter()
            .map(|c| {
                let mut v = vec![0; room];
                v.extend_from_slice(&c);
                v
            })
            .collect();
        self.send_chunks(chunks, false, Progress::START).await
    }

    /// Writes `chunks`, each starting with [`Transport::headroom`] free bytes: on WebSocket
    /// each is one message, its header written into the headroom and the whole frame
    /// written to the socket from the chunk itself (tungstenite's own writes, pongs and the
    /// close, go out before these and never interleave with them: a pong owed for a ping
    /// read is flushed first). `utf8` says every chunk
    /// is known to be UTF-8 (built from text the gateway checked once per publication), so
    /// it goes as a text message without checking again; otherwise each chunk is checked:
    /// text when it is UTF-8, binary when not.
    ///
    /// `from` is where [`Transport::try_send_chunks`] stopped ([`Progress::START`] for all).
    pub async fn send_chunks(
        &mut self,
        chunks: Vec<Vec<u8>>,
        utf8: bool,
        from: Progress,
    ) -> Result<(), String> {
        match self {
            Transport::WebSocket {
                ws,
                torn,
                pong_owed,
                ..
            } => {
                if *pong_owed {
                    ws.flush().await.map_err(|e| e.to_string())?;
                    *pong_owed = false;
                }
                let io = ws.get_mut();
                for (i, mut chunk) in chunks.into_iter().enumerate().skip(from.chunk) {
                    let start = match from.resume(i) {
                        Some(at) => at,
                        None => frame_header(&mut chunk, utf8),
                    };
                    *torn = true;
                    io.write_all(&chunk[start..])
                        .await
                        .map_err(|e| e.to_string())?;
                    *torn = false;
                }
                io.flush().await.map_err(|e| e.to_string())
            }
            Transport::Tcp { stream, .. } => {
                for (i, chunk) in chunks.iter().enumerate().skip(from.chunk) {
                    stream
                        .write_all(&chunk[from.resume(i).unwrap_or(0)..])
                        .await
                        .map_err(|e| e.to_string())?;
                }
                stream.flush().await.map_err(|e| e.to_string())
            }
        }
    }

    /// Writes as much of `chunks` (as [`Transport::send_chunks`] takes them) as the socket
    /// accepts now, without waiting: most writes go whole, and need no future to wait on.
    /// Says how far it got; [`Transport::send_chunks`] goes on from there.
    pub fn try_send_chunks(&mut self, chunks: &mut [Vec<u8>], utf8: bool) -> Sent {
        let (io, mut torn) = match self {
            // A pong tungstenite still holds goes out first, on the waiting path.
            Transport::WebSocket {
                pong_owed: true, ..
            } => return Sent::Upto(Progress::START),
            Transport::WebSocket { ws, torn, .. } => (ws.get_mut(), Some(torn)),
            Transport::Tcp { stream, .. } => (stream, None),
        };
        for (i, chunk) in chunks.iter_mut().enumerate() {
            let start = match torn {
                Some(_) => frame_header(chunk, utf8),
                None => 0,
            };
            let mut at = start;
            while at < chunk.len() {
                let sent = match io.try_write(&chunk[at..]) {
                    Ok(0) => Sent::Failed("the socket took no bytes".into()),
                    Ok(n) => {
                        at += n;
                        continue;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        Sent::Upto(Progress { chunk: i, at })
                    }
                    Err(e) => Sent::Failed(e.to_string()),
                };
                if let Some(torn) = torn.as_deref_mut() {
                    // Half a frame is on the wire until the rest follows.
                    *torn = at > start;
                }
                return sent;
            }
        }
        if let Some(torn) = torn {
            *torn = false;
        }
        Sent::All
    }

    /// Closes the transport; on WebSocket with a close code that fits the reason
    /// (1001 going away on shutdown).
    pub async fn close(&mut self, reason: Disconnect) {
        match self {
            Transport::WebSocket { ws, torn, .. } => {
                if *torn {
                    // Half a frame is on the wire: a close frame would be read as its rest.
                    let _ = ws.get_mut().shutdown().await;
                    return;
                }
                let code = match reason {
                    Disconnect::ShuttingDown => CloseCode::Away,
                    Disconnect::ClientRequest | Disconnect::TransportClosed => CloseCode::Normal,
                    Disconnect::ServerFull => CloseCode::Again,
                    _ => CloseCode::Policy,
                };
                let frame = CloseFrame {
                    code,
                    reason: reason.label().into(),
                };
                let _ = ws.send(Message::Close(Some(frame))).await;
            }
            Transport::Tcp { stream, .. } => {
                let _ = stream.shutdown().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(messages: &[&str]) -> String {
        let mut buf = BytesMut::new();
        let mut typed = None;
        for m in messages {
            append_text(&mut buf, m, &mut typed);
        }
        String::from_utf8(buf.to_vec()).unwrap()
    }

    #[test]
    fn frame_headers_fit_the_headroom() {
        for (len, header) in [
            (0, vec![0x81, 0]),
            (125, vec![0x81, 125]),
            (126, vec![0x81, 126, 0, 126]),
            (65_535, vec![0x81, 126, 0xff, 0xff]),
            (65_536, vec![0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
        ] {
            let mut chunk = vec![0; WS_HEADROOM + len];
            let start = frame_header(&mut chunk, true);
            assert_eq!(&chunk[start..WS_HEADROOM], &header[..], "length {len}");
        }
        // Not known to be UTF-8: checked, text when it is, binary when not.
        let mut chunk = vec![0; WS_HEADROOM + 3];
        let start = frame_header(&mut chunk, false);
        assert_eq!(&chunk[start..WS_HEADROOM], &[0x81, 3]);
        let mut chunk = vec![0xff; WS_HEADROOM + 3];
        let start = frame_header(&mut chunk, false);
        assert_eq!(&chunk[start..WS_HEADROOM], &[0x82, 3]);
    }

    #[test]
    fn typed_lines_become_frames() {
        assert_eq!(
            feed(&["CONNECT", "accept-version:1.2", "", "^@"]),
            "CONNECT\naccept-version:1.2\n\n\0\n"
        );
        assert_eq!(
            feed(&["STOMP ", "", "^@", "SEND", "destination:/d", "", "hi^@"]),
            "STOMP \n\n\0\nSEND\ndestination:/d\n\nhi\0\n"
        );
    }

    #[test]
    fn library_messages_pass_unchanged() {
        let whole = "CONNECT\naccept-version:1.2\n\n\0";
        assert_eq!(
            feed(&[whole, "SEND\n\n^@\0"]),
            format!("{whole}SEND\n\n^@\0")
        );
        assert_eq!(feed(&["CONN", "ECT\n\n\0"]), "CONNECT\n\n\0");
    }

    /// A write the socket cannot take whole: what `try_send_chunks` could not write goes
    /// on the waiting path from where it stopped, and the client reads each frame once,
    /// whole, in order.
    #[tokio::test]
    async fn a_write_the_socket_cannot_take_now_goes_on_from_where_it_stopped() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (server, client) = tokio::join!(listener.accept(), client);
        let (server, mut client) = (server.unwrap().0, client.unwrap());
        let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            server,
            tokio_tungstenite::tungstenite::protocol::Role::Server,
            None,
        )
        .await;
        let refused = prometheus::IntCounter::new("refused", "pings refused").unwrap();
        let mut t = Transport::websocket_limited(ws, PingLimit::new(0, refused), Limits::default());
        // Bigger than any socket buffer on loopback: the client reads nothing yet.
        let sizes = [100, 8 << 20, 300];
        let mut chunks: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let mut c = vec![0; WS_HEADROOM];
                c.extend(std::iter::repeat_n(b'a' + i as u8, n));
                c
            })
            .collect();
        let from = match t.try_send_chunks(&mut chunks, true) {
            Sent::Upto(p) => p,
            other => panic!("the socket took 8 MiB at once: {other:?}"),
        };
        assert_eq!(from.chunk, 1, "the first chunk fits, the second does not");
        assert!(from.at > WS_HEADROOM, "part of the second frame is written");
        assert!(matches!(t, Transport::WebSocket { torn: true, .. }));
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.unwrap();
            got
        });
        t.send_chunks(chunks, true, from).await.unwrap();
        assert!(matches!(t, Transport::WebSocket { torn: false, .. }));
        drop(t);
        let got = reader.await.unwrap();
        let mut at = 0;
        for (i, &n) in sizes.iter().enumerate() {
            assert_eq!(got[at], 0x81, "frame {i} is one final text frame");
            let (len, head) = match got[at + 1] {
                126 => (u16::from_be_bytes([got[at + 2], got[at + 3]]) as usize, 4),
                127 => (
                    u64::from_be_bytes(got[at + 2..at + 10].try_into().unwrap()) as usize,
                    10,
                ),
                l => (l as usize, 2),
            };
            assert_eq!(len, n, "frame {i}'s length");
            let body = &got[at + head..at + head + n];
            assert!(
                body.iter().all(|&b| b == b'a' + i as u8),
                "frame {i}'s bytes"
            );
            at += head + n;
        }
        assert_eq!(at, got.len(), "nothing written twice");
    }
}
