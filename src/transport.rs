//! The byte pipes a session runs over: STOMP over WebSocket (text or binary messages; one
//! message may hold several frames and a frame may span several messages) and STOMP over
//! raw TCP. The session treats both as a stream of bytes in and batches of frames out.
//!
//! Typed sessions: a person at `wscat` sends one WebSocket message per line, without the
//! newline, and cannot easily type NUL. A WebSocket whose first message is exactly
//! `CONNECT` or `STOMP` is taken to be typed by hand: each of its text messages is a line
//! (a newline is appended) and a line ending in `^@` ends the frame (NUL). No STOMP
//! library sends a lone command as its first message.

use crate::disconnect::Disconnect;
use crate::stomp::{Extent, Framer, Limits};
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, close_code};
use bytes::{Bytes, BytesMut};
use futures::SinkExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub enum Transport {
    WebSocket {
        ws: Box<WebSocket>,
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

/// Bytes of a frame still arriving. They are handed to the session only once a whole frame
/// (or a heart-beat) is there, so the session's parser sees each frame once, however
/// slowly it arrives; a [`Framer`] remembers how far it looked. A frame that breaks a limit
/// is handed over at once so that the session's parser reports the error.
pub struct Staging {
    bytes: BytesMut,
    framer: Framer,
    limits: Limits,
    broken: bool,
}

impl Staging {
    pub fn new(limits: Limits) -> Staging {
        Staging {
            bytes: BytesMut::new(),
            framer: Framer::default(),
            limits,
            broken: false,
        }
    }

    /// As `release`, then gives back the staging buffer when nothing is left in it: a
    /// WebSocket message is usually whole frames, and an idle connection keeps no buffer.
    fn release_all(&mut self, out: &mut BytesMut) {
        self.release(out);
        if self.bytes.is_empty() {
            self.bytes = BytesMut::new();
        }
    }

    /// Moves every whole frame and heart-beat at the front of the staged bytes to `out`.
    fn release(&mut self, out: &mut BytesMut) {
        loop {
            if self.broken {
                out.extend_from_slice(&self.bytes.split());
                return;
            }
            match self.framer.scan(&self.bytes, &self.limits) {
                Ok(Extent::Incomplete) => return,
                Ok(extent) => {
                    out.extend_from_slice(&self.bytes.split_to(extent.len()));
                    self.framer.reset();
                }
                Err(_) => self.broken = true,
            }
        }
    }
}

/// Pings a client may send per second. Each ping makes the WebSocket layer queue a pong;
/// a client that floods pings and never reads would otherwise only be bounded by the
/// write buffer. Over the limit the connection is closed and counted.
#[derive(Default)]
pub struct PingLimit {
    /// 0: unlimited.
    max_per_second: u32,
    count: u32,
    window: Option<std::time::Instant>,
    /// Incremented when a connection is closed for it.
    refused: Option<prometheus::IntCounter>,
}

impl PingLimit {
    pub fn new(max_per_second: u32, refused: prometheus::IntCounter) -> PingLimit {
        PingLimit {
            max_per_second,
            refused: Some(refused),
            ..Default::default()
        }
    }

    /// Counts one ping; `Err` once the second's allowance is used up.
    fn ping(&mut self) -> Result<(), String> {
        if self.max_per_second == 0 {
            return Ok(());
        }
        let now = std::time::Instant::now();
        match self.window {
            Some(start) if now.duration_since(start) < std::time::Duration::from_secs(1) => {
                self.count += 1
            }
            _ => {
                self.window = Some(now);
                self.count = 1;
            }
        }
        if self.count > self.max_per_second {
            if let Some(c) = self.refused.take() {
                c.inc();
            }
            return Err(format!(
                "ping flood: more than {} WebSocket pings in one second (--max-pings-per-second)",
                self.max_per_second
            ));
        }
        Ok(())
    }
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

impl Transport {
    pub fn websocket(ws: WebSocket) -> Transport {
        Transport::websocket_limited(ws, PingLimit::default(), Limits::default())
    }

    /// A WebSocket whose client may send at most `pings` pings per second and frames
    /// within `limits`.
    pub fn websocket_limited(ws: WebSocket, pings: PingLimit, limits: Limits) -> Transport {
        Transport::WebSocket {
            ws: Box::new(ws),
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

    pub fn kind(&self) -> &'static str {
        match self {
            Transport::WebSocket { .. } => "ws",
            Transport::Tcp { .. } => "tcp",
        }
    }

    /// Appends the next bytes from the client to `buf`. `Ok(false)` when the client closed.
    /// Cancel-safe: nothing is lost if the future is dropped.
    pub async fn recv(&mut self, buf: &mut BytesMut) -> Result<bool, String> {
        match self {
            Transport::WebSocket {
                ws,
                typed,
                pings,
                staged,
            } => {
                match ws.recv().await {
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
                    Some(Ok(Message::Ping(_))) => pings.ping().map(|()| true),
                    Some(Ok(Message::Pong(_))) => Ok(true),
                    Some(Err(e)) => Err(e.to_string()),
                }
            }
            Transport::Tcp { stream, staged } => {
                let bytes = &mut staged.bytes;
                if bytes.capacity() - bytes.len() < 1024 {
                    bytes.reserve(4096);
                }
                match stream.read_buf(bytes).await {
                    Ok(0) => Ok(false),
                    Ok(_) => {
                        staged.release(buf);
                        Ok(true)
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
        }
    }

    /// Writes `chunks` (each a WebSocket message, or contiguous bytes on TCP) and flushes once.
    pub async fn send(&mut self, chunks: Vec<Vec<u8>>) -> Result<(), String> {
        self.send_chunks(chunks, false).await
    }

    /// As `send`; `utf8` says every chunk is known to be UTF-8 (built from text the gateway
    /// checked once per publication), so it goes as a text message without checking again.
    /// Otherwise each chunk is checked: text when it is UTF-8, binary when not.
    pub async fn send_chunks(&mut self, chunks: Vec<Vec<u8>>, utf8: bool) -> Result<(), String> {
        match self {
            Transport::WebSocket { ws, .. } => {
                for chunk in chunks {
                    let message = if utf8 {
                        // SAFETY: the writer sets `utf8` only when every frame in the chunk
                        // is UTF-8 (see `session::writer::assemble`).
                        Message::Text(Utf8Bytes::from(unsafe {
                            String::from_utf8_unchecked(chunk)
                        }))
                    } else {
                        let bytes = Bytes::from(chunk);
                        match Utf8Bytes::try_from(bytes.clone()) {
                            Ok(text) => Message::Text(text),
                            Err(_) => Message::Binary(bytes),
                        }
                    };
                    ws.feed(message).await.map_err(|e| e.to_string())?;
                }
                ws.flush().await.map_err(|e| e.to_string())
            }
            Transport::Tcp { stream, .. } => {
                for chunk in chunks {
                    stream.write_all(&chunk).await.map_err(|e| e.to_string())?;
                }
                stream.flush().await.map_err(|e| e.to_string())
            }
        }
    }

    /// Closes the transport; on WebSocket with a close code that fits the reason
    /// (1001 going away on shutdown).
    pub async fn close(&mut self, reason: Disconnect) {
        match self {
            Transport::WebSocket { ws, .. } => {
                let code = match reason {
                    Disconnect::ShuttingDown => close_code::AWAY,
                    Disconnect::ClientRequest | Disconnect::TransportClosed => close_code::NORMAL,
                    Disconnect::ServerFull => close_code::AGAIN,
                    _ => close_code::POLICY,
                };
                let frame = CloseFrame {
                    code,
                    reason: Utf8Bytes::from(reason.label()),
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
}
