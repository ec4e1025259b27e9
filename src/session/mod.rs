//! One connection's STOMP session, in two parts:
//!
//! - [`protocol`]: the STOMP state machine. A frame goes in, effects come out (replies,
//!   subscriptions, records to produce, receipts); no socket, no timers, no `select!`. Its
//!   bookkeeping lives in [`acks`] (messages awaiting ACK/NACK) and [`transactions`]
//!   (BEGIN .. COMMIT), plain data structures with errors of their own.
//! - [`driver`]: the task that runs one connection. It alone touches the transport: reads
//!   bytes, parses frames, hands them to the protocol, carries out the effects, drains the
//!   outbox through [`writer`] (MESSAGE assembly) into batched writes, waits for broker
//!   acknowledgements in order, runs heart-beat timers and hears shutdown.
//!
//! What a session may touch of the gateway is [`SessionContext`], built once by the gateway.

mod acks;
mod context;
mod driver;
mod pending;
mod protocol;
mod rate;
mod transactions;
mod writer;

pub use context::{SessionContext, SessionSettings};
pub use driver::Session;

use crate::disconnect::Disconnect;
use crate::stomp::Frame;

/// How a session ends: why, and the ERROR frame the client gets first (if any). A normal
/// client DISCONNECT is a `Close` too, without an ERROR.
#[derive(Debug)]
pub struct Close {
    pub reason: Disconnect,
    pub error: Option<Frame>,
}

impl Close {
    fn quiet(reason: Disconnect) -> Close {
        Close {
            reason,
            error: None,
        }
    }

    /// Closes for a reason the server initiates, with the ERROR text that reason carries.
    fn server(reason: Disconnect) -> Close {
        let error = reason
            .error_text()
            .map(|(message, detail)| Frame::error(message, detail));
        Close { reason, error }
    }
}
