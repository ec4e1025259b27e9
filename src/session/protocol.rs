//! The STOMP state machine of one session: a frame goes in, effects come out. It owns the
//! protocol state (version, who the client is, subscriptions, acks, transactions, heart-beat
//! intervals) and nothing else: no socket, no timers, no `select!`. The driver carries out the
//! effects in order, which keeps SENDs queued to the bus in the order they arrived and
//! receipts behind the broker acknowledgements they follow.

use super::Close;
use super::acks::{AckRef, Acks};
use super::context::SessionContext;
use super::rate::TokenBucket;
use super::transactions::{Transactions, TxError, TxOp};
use crate::auth::Identity;
use crate::bus::OutboundRecord;
use crate::chat::Sender;
use crate::clock::now_ms;
use crate::disconnect::Disconnect;
use crate::hub::Replay;
use crate::hub::subscription::{AckMode, Subscription};
use crate::route::Senders;
use crate::stomp::{Command, Frame, Version};
use crate::trace::{TRACEPARENT, valid_traceparent};
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

/// The client's heart-beat header `cx,cy` (0,0 when absent or malformed).
fn parse_heartbeat(value: Option<&str>) -> (u64, u64) {
    value
        .and_then(|v| {
            let (a, b) = v.split_once(',')?;
            Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
        })
        .unwrap_or((0, 0))
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

    /// The token a CONNECT authenticates with: `passcode`, an `Authorization: Bearer`
    /// header, or the one the WebSocket upgrade carried.
    fn connect_token<'f>(&'f self, frame: &'f Frame) -> Option<&'f str> {
        frame
            .header("passcode")
            .filter(|p| !p.is_empty())
            .or_else(|| {
                frame
                    .header("Authorization")
                    .or_else(|| frame.header("authorization"))
                    .and_then(|h| h.strip_prefix("Bearer "))
            })
            .or(self.upgrade_token.as_deref())
    }

    /// Seconds left on a token expiring at `exp` (seconds since the epoch), capped.
    fn lifetime(exp: u64) -> Duration {
        let now = (now_ms() / 1000).max(0) as u64;
        Duration::from_secs(exp.saturating_sub(now)).min(MAX_TOKEN_LIFETIME)
    }

    fn on_connect(
        &mut self,
        frame: &Frame,
        cx: &SessionContext,
        out: &mut Vec<Effect>,
    ) -> Result<(), Close> {
        let accepted: Vec<Version> = match frame.header("accept-version") {
            None => vec![Version::V1_0],
            Some(list) => list.split(',').filter_map(Version::parse).collect(),
        };
        let Some(version) = accepted.into_iter().max() else {
            let mut close = self.protocol_error(
                cx,
                "unsupported_version",
                "unsupported protocol version",
                "Supported protocol versions are 1.0, 1.1 and 1.2.",
                Some(frame),
            );
            if let Some(e) = close.error.as_mut() {
                e.headers.push(("version".into(), "1.0,1.1,1.2".into()));
            }
            return Err(close);
        };
        let (cx_ms, cy_ms) = parse_heartbeat(frame.header("heart-beat"));
        let server = cx.settings.heartbeat_ms;
        if server > 0 && cy_ms > 0 && version != Version::V1_0 {
            self.heartbeat_out = Some(Duration::from_millis(server.max(cy_ms)));
        }
        if server > 0 && cx_ms > 0 && version != Version::V1_0 {
            self.heartbeat_in = Some(Duration::from_millis(server.max(cx_ms)));
        }
        let identity = cx
            .auth
            .authenticate(self.connect_token(frame), frame.header("login"), self.id)
            .map_err(|e| {
                tracing::info!(session = self.id, peer = %self.peer, reason = e.label(), "authentication failed");
                self.protocol_error(cx, e.label(), "authentication failed", &e.to_string(), Some(frame))
            })?;
        self.expires_in = identity.expires_at.map(Protocol::lifetime);
        self.user = identity.user.clone();
        self.owner = if identity.authenticated {
            format!("sub:{}", identity.user)
        } else {
            format!("conn:{:032x}", rand::random::<u128>())
        };
        self.identity = Some(identity);
        self.version = Some(version);
        cx.metrics
            .sessions
            .with_label_values(&[version.as_str()])
            .inc();
        out.push(Effect::Rearm);
        out.push(Effect::Reply(
            Frame::new(Command::Connected)
                .with("version", version.as_str())
                .with("session", self.id.to_string())
                .with("server", concat!("stompgate/", env!("CARGO_PKG_VERSION")))
                .with("heart-beat", format!("{server},{server}"))
                .with("user-name", self.user.clone()),
        ));
        tracing::debug!(session = self.id, %version, user = %self.user, "session connected");
        Ok(())
    }

    fn on_send(
        &mut self,
        frame: Frame,
        cx: &SessionContext,
        out: &mut Vec<Effect>,
    ) -> Result<(), Close> {
        let destination = self.required(cx, &frame, "destination")?;
        if destination == TOKEN_DESTINATION {
            return self.on_token_refresh(&frame, cx, out);
        }
        let sends = self.sends.get_or_insert_with(|| {
            Box::new(TokenBucket::new(
                cx.settings.send_rate,
                cx.settings.send_burst,
            ))
        });
        if !sends.take() {
            return Err(self.protocol_error(
                cx,
                "rate_limited",
                "rate limit exceeded",
                &format!(
                    "At most {} SENDs per second (bursts of {}) are allowed per connection; slow down and reconnect.",
                    cx.settings.send_rate, cx.settings.send_burst
                ),
                Some(&frame),
            ));
        }
        let route = cx.ingest.router.send_route(destination);
        match route.map(|r| r.senders) {
            Some(Senders::Any) => {}
            Some(Senders::Authenticated) => self.require_token(cx, destination, &frame)?,
            Some(Senders::Permission) | None => self.authorize(cx, destination, false, &frame)?,
        }
        if let Some(tx) = frame.header("transaction") {
            // Refused before the record is built: an unknown transaction is the error.
            self.transactions(cx)
                .check(tx)
                .map_err(|e| self.tx_error(cx, e, &frame))?;
        }
        let sender = Sender {
            user: &self.user,
            owner: &self.owner,
        };
        let record = match route {
            // A configured SEND route: the body goes to its topic as is.
            Some(route) => route
                .record(
                    destination,
                    frame.header("event-type"),
                    &frame.body,
                    &self.user,
                )
                .map_err(|e| {
                    self.protocol_error(cx, e.label(), "send refused", &e.to_string(), Some(&frame))
                })?,
            None => cx
                .chat
                .record_for_send(
                    destination,
                    frame.header("event-type"),
                    &frame.body,
                    sender,
                    now_ms(),
                )
                .map_err(|e| {
                    let mut detail = e.to_string();
                    let patterns = cx.ingest.router.send_patterns();
                    if e.label() == "bad_destination" && !patterns.is_empty() {
                        detail.push_str(&format!(", or to {}", patterns.join(", ")));
                    }
                    self.protocol_error(cx, e.label(), e.summary(), &detail, Some(&frame))
                })?,
        };
        let record = with_traceparent(record, &frame);
        if let Some(tx) = frame.header("transaction") {
            self.transactions(cx)
                .stage(tx, TxOp::Send(record))
                .map_err(|e| self.tx_error(cx, e, &frame))?;
            Protocol::receipt(&frame, out);
            return Ok(());
        }
        out.push(Effect::Produce {
            records: vec![record],
            receipt: frame.header("receipt").map(str::to_string),
        });
        Ok(())
    }

    /// A SEND to [`TOKEN_DESTINATION`]: re-authenticates with a new token of the same subject
    /// and moves the expiry; a bad token closes the session as CONNECT would.
    fn on_token_refresh(
        &mut self,
        frame: &Frame,
        cx: &SessionContext,
        out: &mut Vec<Effect>,
    ) -> Result<(), Close> {
        let body = std::str::from_utf8(&frame.body).unwrap_or_default().trim();
        let token = frame
            .header("passcode")
            .filter(|p| !p.is_empty())
            .or(Some(body).filter(|b| !b.is_empty()));
        let Some(token) = token else {
            return Err(self.protocol_error(
                cx,
                "bad_token_refresh",
                "token refresh needs a token",
                &format!("SEND to {TOKEN_DESTINATION} carries the new token as its body or in a 'passcode' header."),
                Some(frame),
            ));
        };
        let identity = cx
            .auth
            .authenticate(Some(token), None, self.id)
            .map_err(|e| {
                self.protocol_error(
                    cx,
                    e.label(),
                    "authentication failed",
                    &e.to_string(),
                    Some(frame),
                )
            })?;
        if !identity.authenticated || identity.user != self.user {
            return Err(self.protocol_error(
                cx,
                "bad_token_refresh",
                "token refresh refused",
                "The new token must be a valid token for the same user as the session's.",
                Some(frame),
            ));
        }
        self.expires_in = identity.expires_at.map(Protocol::lifetime);
        self.identity = Some(identity);
        out.push(Effect::Rearm);
        Protocol::receipt(frame, out);
        Ok(())
    }

    /// A SEND route open to authenticated clients only: the session must hold a token.
    fn require_token(
        &self,
        cx: &SessionContext,
        destination: &str,
        frame: &Frame,
    ) -> Result<(), Close> {
        if self.identity.as_ref().is_some_and(|i| i.authenticated) {
            return Ok(());
        }
        Err(self.protocol_error(
            cx,
            "forbidden",
            "forbidden",
            &format!(
                "{} may not send to '{destination}': it takes SENDs from authenticated clients only. Connect with a token to send.",
                self.user
            ),
            Some(frame),
        ))
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

    fn on_subscribe(
        &mut self,
        frame: &Frame,
        cx: &SessionContext,
        out: &mut Vec<Effect>,
    ) -> Result<(), Close> {
        let destination = self.required(cx, frame, "destination")?;
        let id = match (frame.header("id"), self.version()) {
            (Some(id), _) => id,
            (None, Version::V1_0) => destination,
            (None, _) => return Err(self.required(cx, frame, "id").unwrap_err()),
        };
        cx.ingest.router.check_subscribe(destination).map_err(|e| {
            self.protocol_error(
                cx,
                "bad_destination",
                "unknown destination",
                &e.to_string(),
                Some(frame),
            )
        })?;
        self.authorize(cx, destination, true, frame)?;
        let ack = AckMode::parse(frame.header("ack")).ok_or_else(|| {
            self.protocol_error(
                cx,
                "bad_ack_mode",
                "invalid ack mode",
                "ack must be auto, client or client-individual.",
                Some(frame),
            )
        })?;
        if self.subs.contains_key(id) {
            return Err(self.protocol_error(
                cx,
                "duplicate_subscription",
                "duplicate subscription id",
                &format!("Subscription id '{id}' is already in use in this session."),
                Some(frame),
            ));
        }
        if let Some(other) = self.subs.values().find(|s| s.destination == destination) {
            return Err(self.protocol_error(
                cx,
                "duplicate_subscription",
                "already subscribed",
                &format!(
                    "This session already subscribes to '{destination}' (id '{}'); one subscription per destination.",
                    other.id
                ),
                Some(frame),
            ));
        }
        let s = &cx.settings;
        let bytes = id.len() + destination.len();
        if self.subs.len() >= s.max_subscriptions
            || self.sub_bytes + bytes > s.max_subscription_bytes
        {
            return Err(self.protocol_error(
                cx,
                "too_many_subscriptions",
                "too many subscriptions",
                &format!(
                    "A session may hold at most {} subscriptions and {} bytes of ids and destinations; UNSUBSCRIBE first.",
                    s.max_subscriptions, s.max_subscription_bytes
                ),
                Some(frame),
            ));
        }
        let sub = Arc::new(Subscription::new(
            self.id,
            id,
            destination,
            self.version(),
            ack,
        ));
        let replay = self.replay(cx, frame)?;
        self.sub_bytes += bytes;
        self.subs.insert(id.to_string(), sub.clone());
        out.push(Effect::Subscribe {
            sub,
            replay,
            receipt: frame.header("receipt").map(str::to_string),
        });
        Ok(())
    }

    /// What a SUBSCRIBE asks to be sent first: `x-resume-after:<cursor>` (everything after
    /// it) or `x-history:<n>` (the n most recent), the former winning when both are given.
    fn replay(&self, cx: &SessionContext, frame: &Frame) -> Result<Replay, Close> {
        if let Some(cursor) = frame.header("x-resume-after") {
            return Replay::parse_cursor(cursor).map(Replay::After).ok_or_else(|| {
                self.protocol_error(
                    cx,
                    "bad_resume",
                    "invalid x-resume-after",
                    "x-resume-after takes the message-id (or x-cursor) of the last message received: <topic>-<partition>-<offset>, comma-separated for several partitions.",
                    Some(frame),
                )
            });
        }
        match frame.header("x-history") {
            None => Ok(Replay::Nothing),
            Some(n) => match n.trim().parse::<usize>() {
                Ok(0) => Ok(Replay::Nothing),
                Ok(n) => Ok(Replay::Last(n)),
                Err(_) => Err(self.protocol_error(
                    cx,
                    "bad_history",
                    "invalid x-history",
                    "x-history takes the number of recent messages to send first, e.g. x-history:50.",
                    Some(frame),
                )),
            },
        }
    }

    fn on_unsubscribe(
        &mut self,
        frame: &Frame,
        cx: &SessionContext,
        out: &mut Vec<Effect>,
    ) -> Result<(), Close> {
        let id = match (
            frame.header("id"),
            frame.header("destination"),
            self.version(),
        ) {
            (Some(id), _, _) => id,
            (None, Some(dest), Version::V1_0) => dest,
            _ => return Err(self.required(cx, frame, "id").unwrap_err()),
        };
        let Some(sub) = self.subs.remove(id) else {
            return Err(self.protocol_error(
                cx,
                "unknown_subscription",
                "unknown subscription",
                &format!("No subscription with id '{id}' in this session."),
                Some(frame),
            ));
        };
        self.sub_bytes -= sub.id.len() + sub.destination.len();
        sub.deactivate();
        self.acks.forget(&sub);
        out.push(Effect::Unsubscribe(sub));
        Protocol::receipt(frame, out);
        Ok(())
    }

    /// What an ACK or NACK names, from its headers.
    fn ack_ref(&self, cx: &SessionContext, frame: &Frame) -> Result<AckRef, Close> {
        if self.version() == Version::V1_2 {
            let id = self.required(cx, frame, "id")?;
            // An id that is not a number names nothing we sent.
            Ok(AckRef::Id(id.parse::<u64>().unwrap_or(u64::MAX)))
        } else {
            Ok(AckRef::Message {
                message_id: self.required(cx, frame, "message-id")?.to_string(),
                subscription: frame.header("subscription").map(str::to_string),
            })
        }
    }

    fn unknown_ack(&self, cx: &SessionContext, frame: &Frame) -> Close {
        self.protocol_error(
            cx,
            "unknown_ack",
            "unknown message",
            &format!(
                "{} names no message awaiting acknowledgement in this session.",
                frame.command
            ),
            Some(frame),
        )
    }

    fn on_ack(
        &mut self,
        frame: &Frame,
        cx: &SessionContext,
        out: &mut Vec<Effect>,
    ) -> Result<(), Close> {
        let target = self.ack_ref(cx, frame)?;
        if let Some(tx) = frame.header("transaction") {
            // Checked now, applied at COMMIT.
            if !self.acks.knows(&target) {
                return Err(self.unknown_ack(cx, frame));
            }
            let op = TxOp::Ack {
                nack: frame.command == Command::Nack,
                target,
            };
            self.transactions(cx)
                .stage(tx, op)
                .map_err(|e| self.tx_error(cx, e, frame))?;
        } else if self.acks.ack(&target).is_err() {
            return Err(self.unknown_ack(cx, frame));
        }
        Protocol::receipt(frame, out);
        Ok(())
    }

    fn on_begin(
        &mut self,
        frame: &Frame,
        cx: &SessionContext,
        out: &mut Vec<Effect>,
    ) -> Result<(), Close> {
        let tx = self.required(cx, frame, "transaction")?;
        self.transactions(cx)
            .begin(tx)
            .map_err(|e| self.tx_error(cx, e, frame))?;
        Protocol::receipt(frame, out);
        Ok(())
    }

    /// Applies a transaction all or nothing: every staged ACK must still name a message
    /// awaiting acknowledgement, or nothing is acknowledged and nothing is produced.
    fn on_commit(
        &mut self,
        frame: &Frame,
        cx: &SessionContext,
        out: &mut Vec<Effect>,
    ) -> Result<(), Close> {
        let tx = self.required(cx, frame, "transaction")?;
        let ops = self
            .transactions(cx)
            .end(tx)
            .map_err(|e| self.tx_error(cx, e, frame))?;
        let mut acks = self.acks.clone();
        let mut records = Vec::new();
        for op in ops {
            match op {
                TxOp::Send(record) => records.push(record),
                TxOp::Ack { target, .. } => {
                    if acks.ack(&target).is_err() {
                        return Err(self.protocol_error(
                            cx,
                            "unknown_ack",
                            "transaction failed",
                            "An ACK or NACK in this transaction names no message awaiting acknowledgement any more; nothing in it was applied.",
                            Some(frame),
                        ));
                    }
                }
            }
        }
        self.acks = acks;
        let receipt = frame.header("receipt").map(str::to_string);
        if records.is_empty() {
            if let Some(id) = receipt {
                out.push(Effect::Receipt(id));
            }
        } else {
            out.push(Effect::Produce { records, receipt });
        }
        Ok(())
    }

    fn on_abort(
        &mut self,
        frame: &Frame,
        cx: &SessionContext,
        out: &mut Vec<Effect>,
    ) -> Result<(), Close> {
        let tx = self.required(cx, frame, "transaction")?;
        self.transactions(cx)
            .end(tx)
            .map_err(|e| self.tx_error(cx, e, frame))?;
        Protocol::receipt(frame, out);
        Ok(())
    }
}

/// Carries a W3C `traceparent` header from the SEND to the produced record, so a trace can
/// cross the gateway. A malformed value is dropped, not forwarded.
fn with_traceparent(mut record: OutboundRecord, frame: &Frame) -> OutboundRecord {
    if let Some(tp) = frame.header(TRACEPARENT).filter(|v| valid_traceparent(v)) {
        record.headers.push((TRACEPARENT.into(), tp.to_string()));
    }
    record
}

#[cfg(test)]
mod tests;
