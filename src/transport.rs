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
    },
    Tcp(TcpStream),
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
        Transport::WebSocket {
            ws: Box::new(ws),
            typed: None,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Transport::WebSocket { .. } => "ws",
            Transport::Tcp(_) => "tcp",
        }
    }

    /// Appends the next bytes from the client to `buf`. `Ok(false)` when the client closed.
    /// Cancel-safe: nothing is lost if the future is dropped.
    pub async fn recv(&mut self, buf: &mut BytesMut) -> Result<bool, String> {
        match self {
            Transport::WebSocket { ws, typed } => {
                match ws.recv().await {
                    None | Some(Ok(Message::Close(_))) => Ok(false),
                    Some(Ok(Message::Text(text))) => {
                        append_text(buf, text.as_str(), typed);
                        Ok(true)
                    }
                    Some(Ok(Message::Binary(data))) => {
                        typed.get_or_insert(false);
                        buf.extend_from_slice(&data);
                        Ok(true)
                    }
                    // Pings are answered by the WebSocket layer; they count as liveness.
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => Ok(true),
                    Some(Err(e)) => Err(e.to_string()),
                }
            }
            Transport::Tcp(stream) => {
                if buf.capacity() - buf.len() < 1024 {
                    buf.reserve(4096);
                }
                match stream.read_buf(buf).await {
                    Ok(0) => Ok(false),
                    Ok(_) => Ok(true),
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
            Transport::Tcp(stream) => {
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
            Transport::Tcp(stream) => {
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
