//! The STOMP state machine of one session: a frame goes in, effects come out. It owns the
//! protocol state (version, who the client is, subscriptions, acks, transactions, heart-beat
//! intervals) and nothing else: no socket, no timers, no `select!`. The driver carries out the
//! effects in order, which keeps SENDs queued to the bus in the order they arrived and
//! receipts behind the broker acknowledgements they follow.

use super::Close;
use super::acks::Acks;
use super::context::SessionContext;
use super::rate::TokenBucket;
use super::transactions::{Transactions, TxError};
use crate::auth::Identity;
use crate::bus::OutboundRecord;
use crate::disconnect::Disconnect;
use crate::hub::Replay;
use crate::hub::subscription::Subscription;
use crate::stomp::{Command, Frame, Version};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The reserved destination of an in-band token refresh: a SEND here whose body (or
/// `passcode` header) is a new token for the same subject moves the session's expiry.
pub const TOKEN_DESTINATION: &str = "/app/session/token";

/// Longest a token may keep a session open, whatever its `exp` says.
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(366 * 24 * 3600);

/// What the driver must do after a frame, in order.
#[derive(Debug)]
pub enum Effect {
    /// Queue this frame for the client.
    Reply(Frame),
    /// Register this subscription on the hub, after queuing what `replay` asks for; then
    /// send the RECEIPT (if asked) saying whether a resume found nothing missing.
    Subscribe {
        sub: Arc<Subscription>,
        replay: Replay,
        receipt: Option<String>,
    },
    /// Remove this subscription from the hub.
    Unsubscribe(Arc<Subscription>),
    /// Hand these records to the bus now (in order); when the bus has them all, send the
    /// RECEIPT, or an ERROR if one failed.
    Produce {
        records: Vec<OutboundRecord>,
        receipt: Option<String>,
    },
    /// Send a RECEIPT once everything before it is settled.
    Receipt(String),
    /// The client said goodbye: once everything before it is settled, send its RECEIPT (if
    /// any) and close.
    Disconnect(Option<String>),
    /// CONNECT (or a token refresh) changed the heart-beat intervals or the expiry.
    Rearm,
}

pub struct Protocol {
    pub id: u64,
    pub peer: SocketAddr,
    version: Option<Version>,
    user: String,
    /// The key that owns this session's chat messages (`sub:<subject>` or `conn:<random>`).
    owner: String,
    identity: Option<Identity>,
    /// A token from the WebSocket upgrade (header or query), used when CONNECT has none.
    upgrade_token: Option<String>,
    /// How long the session's token stays valid, from CONNECT or the last refresh.
    pub expires_in: Option<Duration>,
    /// Made on the first SEND (full, as it would be by then): subscribers never send.
    sends: Option<Box<TokenBucket>>,
    subs: HashMap<String, Arc<Subscription>>,
    /// Bytes of subscription ids and destinations held.
    sub_bytes: usize,
    pub acks: Acks,
    /// Made on the first BEGIN (or transaction header): most sessions never open one.
    transactions: Option<Box<Transactions>>,
    /// DISCONNECT was received: later frames are ignored.
    disconnecting: bool,
    pub heartbeat_out: Option<Duration>,
    pub heartbeat_in: Option<Duration>,
}

fn error_frame(message: &str, detail: &str, cause: Option<&Frame>) -> Frame {
    let mut f = Frame::error(message, detail);
    if let Some(receipt) = cause.and_then(|c| c.header("receipt")) {
        f.headers.push(("receipt-id".into(), receipt.to_string()));
    }
    f
}

impl Protocol {
    pub fn new(
        cx: &SessionContext,
        id: u64,
        peer: SocketAddr,
        upgrade_token: Option<String>,
    ) -> Protocol {
        let s = &cx.settings;
        Protocol {
            id,
            peer,
            version: None,
            user: String::new(),
            owner: String::new(),
            identity: None,
            upgrade_token,
            expires_in: None,
            sends: None,
            subs: HashMap::new(),
            sub_bytes: 0,
            acks: Acks::new(s.max_pending_acks),
            transactions: None,
            disconnecting: false,
            heartbeat_out: None,
            heartbeat_in: None,
        }
    }

    /// The session's transactions, made on first use.
    fn transactions(&mut self, cx: &SessionContext) -> &mut Transactions {
        self.transactions.get_or_insert_with(|| {
            let s = &cx.settings;
            Box::new(Transactions::new(
                s.max_transactions,
                s.max_transaction_ops,
                s.max_transaction_bytes,
            ))
        })
    }

    /// The negotiated version (1.2 until CONNECT).
    pub fn version(&self) -> Version {
        self.version.unwrap_or(Version::V1_2)
    }

    pub fn connected(&self) -> Option<Version> {
        self.version
    }

    /// The subscriptions held, for teardown.
    pub fn subscriptions(&self) -> impl Iterator<Item = &Arc<Subscription>> {
        self.subs.values()
    }

    /// Handles one frame from the client.
    pub fn on_frame(
        &mut self,
        frame: Frame,
        cx: &SessionContext,
        out: &mut Vec<Effect>,
    ) -> Result<(), Close> {
        if self.disconnecting {
            return Ok(());
        }
        if self.version.is_none() {
            return match frame.command {
                Command::Connect | Command::Stomp => self.on_connect(&frame, cx, out),
                other => Err(self.protocol_error(
                    cx,
                    "not_connected",
                    "not connected",
                    &format!("Expected a CONNECT or STOMP frame first, got {other}."),
                    Some(&frame),
                )),
            };
        }
        match frame.command {
            Command::Connect | Command::Stomp => Err(self.protocol_error(
                cx,
                "already_connected",
                "already connected",
                "This session is already connected; send CONNECT only once.",
                Some(&frame),
            )),
            Command::Send => self.on_send(frame, cx, out),
            Command::Subscribe => self.on_subscribe(&frame, cx, out),
            Command::Unsubscribe => self.on_unsubscribe(&frame, cx, out),
            Command::Ack | Command::Nack => self.on_ack(&frame, cx, out),
            Command::Begin => self.on_begin(&frame, cx, out),
            Command::Commit => self.on_commit(&frame, cx, out),
            Command::Abort => self.on_abort(&frame, cx, out),
            Command::Disconnect => {
                self.disconnecting = true;
                out.push(Effect::Disconnect(
                    frame.header("receipt").map(str::to_string),
                ));
                Ok(())
            }
            Command::Connected | Command::Message | Command::Receipt | Command::Error => Err(self
                .protocol_error(
                    cx,
                    "server_frame",
                    "unexpected frame",
                    &format!(
                        "{} is a server frame; clients may not send it.",
                        frame.command
                    ),
                    Some(&frame),
                )),
        }
    }

    /// Counts an error and builds the ERROR that closes the session.
    pub fn protocol_error(
        &self,
        cx: &SessionContext,
        label: &str,
        message: &str,
        detail: &str,
        cause: Option<&Frame>,
    ) -> Close {
        tracing::debug!(session = self.id, label, message, detail, "protocol error");
        cx.metrics.errors.with_label_values(&[label]).inc();
        Close {
            reason: Disconnect::ProtocolError,
            error: Some(error_frame(message, detail, cause)),
        }
    }

    fn required<'f>(
        &self,
        cx: &SessionContext,
        frame: &'f Frame,
        name: &str,
    ) -> Result<&'f str, Close> {
        frame.header(name).ok_or_else(|| {
            self.protocol_error(
                cx,
                "missing_header",
                &format!("missing header '{name}'"),
                &format!("{} requires a '{name}' header.", frame.command),
                Some(frame),
            )
        })
    }

    fn receipt(frame: &Frame, out: &mut Vec<Effect>) {
        if let Some(id) = frame.header("receipt") {
            out.push(Effect::Receipt(id.to_string()));
        }
    }

    fn tx_error(&self, cx: &SessionContext, e: TxError, frame: &Frame) -> Close {
        self.protocol_error(cx, e.label(), e.summary(), &e.to_string(), Some(frame))
    }

    /// Checks the session's permissions for a destination.
    fn authorize(
        &self,
        cx: &SessionContext,
        destination: &str,
        subscribe: bool,
        frame: &Frame,
    ) -> Result<(), Close> {
        let Some(identity) = &self.identity else {
            return Ok(());
        };
        let allowed = if subscribe {
            identity.may_subscribe(destination)
        } else {
            identity.may_send(destination)
        };
        if allowed {
            return Ok(());
        }
        let (verb, hint) = if subscribe {
            ("subscribe to", "")
        } else if identity.authenticated {
            ("send to", "")
        } else {
            ("send to", " Connect with a token to send.")
        };
        Err(self.protocol_error(
            cx,
            "forbidden",
            "forbidden",
            &format!("{} may not {verb} '{destination}'.{hint}", self.user),
            Some(frame),
        ))
    }
}

mod ack;
mod connect;
mod send;
mod subscribe;
#[cfg(test)]
mod tests;
