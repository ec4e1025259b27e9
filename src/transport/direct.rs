//! What the transport does for publishers that write to its WebSocket themselves
//! (`crate::hub::direct`): it attaches its socket to the session's outbox and detaches it
//! before the socket closes, says whether the client has sent more than was read, and
//! writes what such a publisher left half-sent.

use super::Transport;
use crate::hub::direct;
use crate::hub::outbox::Outbox;
use futures::SinkExt;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

/// An outbox publishers may write to this transport's socket through; dropping it
/// detaches the socket.
pub struct Attached(Arc<Outbox>);

impl Drop for Attached {
    fn drop(&mut self) {
        self.0.detach();
    }
}

impl Transport {
    /// Lets publishers that keep up write to this socket through `outbox` (WebSocket only:
    /// see [`crate::hub::direct`]) until the transport is dropped or the outbox detached.
    pub fn attach(&mut self, outbox: &Arc<Outbox>) {
        if let Transport::WebSocket { attached, ws, .. } = self {
            outbox.attach(ws.get_ref().as_raw_fd());
            *attached = Some(Attached(outbox.clone()));
        }
    }

    /// Bytes from the client are waiting on the socket, not yet read.
    pub fn unread(&self) -> bool {
        match self {
            Transport::WebSocket { ws, .. } => direct::unread(ws.get_ref().as_raw_fd()),
            Transport::Tcp { stream, .. } => direct::unread(stream.as_raw_fd()),
        }
    }

    /// A ping was read whose pong may not be written yet.
    pub fn pong_owed(&self) -> bool {
        matches!(
            self,
            Transport::WebSocket {
                pong_owed: true,
                ..
            }
        )
    }

    /// Writes a pong still owed (a batch written with [`Transport::send_chunks`] does so
    /// first on its own).
    pub async fn flush_owed(&mut self) -> Result<(), String> {
        if let Transport::WebSocket { ws, pong_owed, .. } = self
            && *pong_owed
        {
            ws.flush().await.map_err(|e| e.to_string())?;
            *pong_owed = false;
        }
        Ok(())
    }

    /// Writes `bytes` as they are: the rest of a message a publisher left half-sent (the
    /// caller has marked the stream torn with [`Transport::tear`]; it is whole again once
    /// this returns `Ok`).
    pub async fn write_rest(&mut self, bytes: &[u8]) -> Result<(), String> {
        match self {
            Transport::WebSocket { ws, torn, .. } => {
                ws.get_mut()
                    .write_all(bytes)
                    .await
                    .map_err(|e| e.to_string())?;
                *torn = false;
                Ok(())
            }
            Transport::Tcp { stream, .. } => {
                stream.write_all(bytes).await.map_err(|e| e.to_string())
            }
        }
    }

    /// Half a frame is on the wire (a publisher's write the session could not finish):
    /// nothing more may follow it, not even a close.
    pub fn tear(&mut self) {
        if let Transport::WebSocket { torn, .. } = self {
            *torn = true;
        }
    }
}
