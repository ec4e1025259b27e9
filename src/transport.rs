//! The byte pipes a session runs over: STOMP over WebSocket (text or binary messages; one
//! message may hold several frames and a frame may span several messages) and STOMP over
//! raw TCP. The session treats both as a stream of bytes in and batches of frames out.

use crate::disconnect::Disconnect;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, close_code};
use bytes::{Bytes, BytesMut};
use futures::SinkExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub enum Transport {
    WebSocket(Box<WebSocket>),
    Tcp(TcpStream),
}

impl Transport {
    pub fn kind(&self) -> &'static str {
        match self {
            Transport::WebSocket(_) => "ws",
            Transport::Tcp(_) => "tcp",
        }
    }

    /// Appends the next bytes from the client to `buf`. `Ok(false)` when the client closed.
    /// Cancel-safe: nothing is lost if the future is dropped.
    pub async fn recv(&mut self, buf: &mut BytesMut) -> Result<bool, String> {
        match self {
            Transport::WebSocket(ws) => {
                match ws.recv().await {
                    None | Some(Ok(Message::Close(_))) => Ok(false),
                    Some(Ok(Message::Text(text))) => {
                        buf.extend_from_slice(text.as_str().as_bytes());
                        Ok(true)
                    }
                    Some(Ok(Message::Binary(data))) => {
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
        match self {
            Transport::WebSocket(ws) => {
                for chunk in chunks {
                    let bytes = Bytes::from(chunk);
                    let message = match Utf8Bytes::try_from(bytes.clone()) {
                        Ok(text) => Message::Text(text),
                        Err(_) => Message::Binary(bytes),
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
            Transport::WebSocket(ws) => {
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
