//! Bytes of a frame still arriving on a transport, held until the frame is whole.

use crate::stomp::{Extent, Framer, Limits};
use bytes::BytesMut;

/// Bytes of a frame still arriving. They are handed to the session only once a whole frame
/// (or a heart-beat) is there, so the session's parser sees each frame once, however
/// slowly it arrives; a [`Framer`] remembers how far it looked. A frame that breaks a limit
/// is handed over at once so that the session's parser reports the error.
pub struct Staging {
    pub(super) bytes: BytesMut,
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
    pub(super) fn release_all(&mut self, out: &mut BytesMut) {
        self.release(out);
        if self.bytes.is_empty() {
            self.bytes = BytesMut::new();
        }
    }

    /// Moves every whole frame and heart-beat at the front of the staged bytes to `out`.
    pub(super) fn release(&mut self, out: &mut BytesMut) {
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
