//! One connection's STOMP session: the state machine (CONNECT, SUBSCRIBE, SEND, ACK, NACK,
//! transactions, receipts, heart-beats, DISCONNECT, ERROR) and the loop that drives it over
//! a transport.
//!
//! The loop is one task per connection. It reads client bytes, parses every whole frame,
//! drains the outbox into one batched write, resolves pending broker acknowledgements in
//! order (so receipts keep the order of the frames that asked for them), runs heart-beat
//! timers and hears shutdown.

use crate::auth::Identity;
use crate::bus::{OutboundRecord, SendError};
use crate::chat::chat_record;
use crate::clock::now_ms;
use crate::disconnect::Disconnect;
use crate::gateway::Gateway;
use crate::hub::Subscriber;
use crate::ledger::Ownership;
use crate::limits::TokenBucket;
use crate::outbox::{Out, Outbox};
use crate::route::{SubscribeTarget, chat_market};
use crate::stomp::{Command, Frame, Parsed, Version, encode_frame, parse};
use crate::subscription::{AckMode, Subscription};
use crate::transport::Transport;
use bytes::BytesMut;
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use prometheus::local::LocalHistogram;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Most open transactions per session.
const MAX_TRANSACTIONS: usize = 16;
/// Most frames buffered in one transaction.
const MAX_TRANSACTION_FRAMES: usize = 1000;

/// Ends the session: why, and the ERROR frame the client gets first (if any).
#[derive(Debug)]
pub struct Fatal {
    pub reason: Disconnect,
    pub error: Option<Frame>,
}

impl Fatal {
    fn quiet(reason: Disconnect) -> Fatal {
        Fatal {
            reason,
            error: None,
        }
    }
}

/// Something the session waits for in order: a broker acknowledgement, or a receipt queued
/// behind one.
enum Pending {
    Receipt(String),
    Send {
        receipt: Option<String>,
        result: Result<(), SendError>,
    },
    Disconnect(Option<String>),
}

type PendingFuture = Pin<Box<dyn Future<Output = Pending> + Send>>;

/// A delivered message awaiting ACK or NACK.
struct Unacked {
    ack_id: u64,
    sub: Arc<Subscription>,
    message_id: Arc<str>,
}

/// A frame deferred to COMMIT.
enum TxOp {
    Send(OutboundRecord),
    Ack(Frame),
}

pub struct Session {
    gw: Arc<Gateway>,
    id: u64,
    peer: SocketAddr,
    kind: &'static str,
    outbox: Arc<Outbox>,
    version: Option<Version>,
    user: String,
    identity: Option<Identity>,
    /// A token from the WebSocket upgrade (header or query), used when CONNECT has none.
    upgrade_token: Option<String>,
    /// When the session's token expires.
    expires: Option<Instant>,
    sends: TokenBucket,
    subs: HashMap<String, Arc<Subscription>>,
    unacked: VecDeque<Unacked>,
    next_ack: u64,
    transactions: HashMap<String, Vec<TxOp>>,
    pending: FuturesOrdered<PendingFuture>,
    disconnecting: bool,
    read_buf: BytesMut,
    items: Vec<Out>,
    heartbeat_out: Option<Duration>,
    heartbeat_in: Option<Duration>,
    /// Timer intervals changed (CONNECT): the loop re-arms its timer.
    rearm: bool,
    last_read: Instant,
    last_write: Instant,
    opened: Instant,
    delivered: u64,
    /// Delivery delays observed locally and flushed to the shared histogram at most once a
    /// second, when the heart-beat timer fires, and on drop: per-message atomics showed in
    /// the fan-out profile. Created on the first delivery, so idle sessions carry none.
    delays: Option<LocalHistogram>,
    delays_flushed_ms: i64,
}

fn error_frame(message: &str, detail: &str, cause: Option<&Frame>) -> Frame {
    let mut f = Frame::error(message, detail);
    if let Some(receipt) = cause.and_then(|c| c.header("receipt")) {
        f.headers.push(("receipt-id".into(), receipt.to_string()));
    }
    f
}

impl Session {
    pub fn new(
        gw: Arc<Gateway>,
        peer: SocketAddr,
        kind: &'static str,
        upgrade_token: Option<String>,
    ) -> Session {
        let outbox = Arc::new(Outbox::new(gw.config.outbox_bytes, gw.config.slow_consumer));
        let now = Instant::now();
        let sends = TokenBucket::new(gw.config.send_rate, gw.config.send_burst);
        Session {
            id: gw.next_session_id(),
            gw,
            peer,
            kind,
            outbox,
            version: None,
            user: String::new(),
            identity: None,
            upgrade_token,
            expires: None,
            sends,
            subs: HashMap::new(),
            unacked: VecDeque::new(),
            next_ack: 0,
            transactions: HashMap::new(),
            pending: FuturesOrdered::new(),
            disconnecting: false,
            read_buf: BytesMut::new(),
            items: Vec::new(),
            heartbeat_out: None,
            heartbeat_in: None,
            rearm: false,
            last_read: now,
            last_write: now,
            opened: now,
            delivered: 0,
            delays: None,
            delays_flushed_ms: 0,
        }
    }

    /// Runs the session to its end and cleans up.
    pub async fn run(mut self, mut transport: Transport) {
        self.gw.metrics.connections.inc();
        self.gw
            .metrics
            .connections_total
            .with_label_values(&[self.kind])
            .inc();
        tracing::info!(session = self.id, peer = %self.peer, transport = self.kind, "connection opened");
        let fatal = self.drive(&mut transport).await;
        self.finish(&mut transport, fatal).await;
    }

    fn version(&self) -> Version {
        self.version.unwrap_or(Version::V1_2)
    }

    async fn drive(&mut self, transport: &mut Transport) -> Fatal {
        // Registered once: a fresh `cancelled()` per iteration would lock the token's
        // shared waiter list twice per wake-up of every session.
        let shutdown = self.gw.shutdown.clone().cancelled_owned();
        tokio::pin!(shutdown);
        // Activity only moves deadlines later, so the timer is re-armed only when it fires
        // or CONNECT sets new intervals; firing early is harmless (`on_timer` checks).
        let sleep = tokio::time::sleep_until(self.next_deadline());
        tokio::pin!(sleep);
        let mut rearm = false;
        loop {
            if rearm || std::mem::take(&mut self.rearm) {
                sleep.as_mut().reset(self.next_deadline());
                rearm = false;
            }
            tokio::select! {
                _ = &mut shutdown => {
                    return Fatal::quiet(Disconnect::ShuttingDown);
                }
                _ = self.outbox.ready() => {
                    if let Err(fatal) = self.flush(transport).await {
                        return fatal;
                    }
                }
                read = transport.recv(&mut self.read_buf) => {
                    match read {
                        Ok(true) => {
                            self.last_read = Instant::now();
                            if let Err(fatal) = self.process_input() {
                                return fatal;
                            }
                        }
                        Ok(false) | Err(_) => return Fatal::quiet(Disconnect::TransportClosed),
                    }
                }
                Some(done) = self.pending.next(), if !self.pending.is_empty() => {
                    if let Err(fatal) = self.on_pending(done) {
                        return fatal;
                    }
                }
                _ = &mut sleep => {
                    rearm = true;
                    if let Err(fatal) = self.on_timer() {
                        return fatal;
                    }
                }
            }
        }
    }

    /// The earliest moment a timer needs attention.
    fn next_deadline(&self) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        if self.version.is_none() {
            return self.opened + Duration::from_millis(self.gw.config.connect_timeout_ms);
        }
        let out = self.heartbeat_out.map(|d| self.last_write + d);
        let inn = self.heartbeat_in.map(|d| self.last_read + grace(d));
        [out, inn, self.expires]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(far)
    }

    fn on_timer(&mut self) -> Result<(), Fatal> {
        let now = Instant::now();
        if self.version.is_none() {
            if now >= self.opened + Duration::from_millis(self.gw.config.connect_timeout_ms) {
                return Err(self.server_error(Disconnect::ConnectTimeout));
            }
            return Ok(());
        }
        if self.expires.is_some_and(|at| now >= at) {
            return Err(self.server_error(Disconnect::TokenExpired));
        }
        if let Some(d) = self.heartbeat_in
            && now >= self.last_read + grace(d)
        {
            return Err(self.server_error(Disconnect::HeartbeatTimeout));
        }
        if let Some(delays) = &self.delays {
            // Quiet now: publish what was observed since the last flush.
            delays.flush();
        }
        if let Some(d) = self.heartbeat_out
            && now >= self.last_write + d
        {
            self.outbox.push_frame(bytes::Bytes::from_static(b"\n"));
            // Counts as written once queued; the flush follows at once.
            self.last_write = now;
        }
        Ok(())
    }

    fn server_error(&self, reason: Disconnect) -> Fatal {
        let error = reason
            .error_text()
            .map(|(message, detail)| Frame::error(message, detail));
        Fatal { reason, error }
    }

    /// Drains the outbox and writes it as one batch.
    async fn flush(&mut self, transport: &mut Transport) -> Result<(), Fatal> {
        if let Some(reason) = self.outbox.drain(&mut self.items) {
            self.items.clear();
            return Err(self.server_error(reason));
        }
        if self.items.is_empty() {
            return Ok(());
        }
        let chunks = self.encode_items()?;
        let bytes: usize = chunks.iter().map(Vec::len).sum();
        let timeout = Duration::from_millis(self.gw.config.write_timeout_ms);
        let send = transport.send(chunks);
        tokio::pin!(send);
        // Most writes complete at once; only a write that waits on a full socket arms the
        // write timeout and watches the outbox, giving up as soon as it overflows.
        let written = match futures::poll!(send.as_mut()) {
            std::task::Poll::Ready(r) => r,
            std::task::Poll::Pending => {
                let outbox = self.outbox.clone();
                tokio::select! {
                    written = tokio::time::timeout(timeout, send) => match written {
                        Err(_) => return Err(self.server_error(Disconnect::WriteTimeout)),
                        Ok(r) => r,
                    },
                    reason = outbox.wait_closed() => return Err(self.server_error(reason)),
                }
            }
        };
        if written.is_err() {
            return Err(Fatal::quiet(Disconnect::TransportClosed));
        }
        self.gw.metrics.bytes_out.inc_by(bytes as u64);
        self.gw.metrics.writes.inc();
        self.last_write = Instant::now();
        Ok(())
    }

    /// Turns drained items into wire chunks: one chunk for the whole batch (TCP, or
    /// WebSocket with batching on) or one per frame.
    fn encode_items(&mut self) -> Result<Vec<Vec<u8>>, Fatal> {
        let version = self.version();
        let one_chunk = self.gw.config.ws_batch || self.kind == "tcp";
        let mut items = std::mem::take(&mut self.items);
        let estimate: usize = items
            .iter()
            .map(|i| match i {
                Out::Frame(b) => b.len(),
                Out::Message { sub, msg } => sub.prefix.len() + msg.bytes(version).len() + 24,
            })
            .sum();
        let mut chunks = Vec::new();
        let mut cur = Vec::with_capacity(if one_chunk { estimate } else { 0 });
        let now = now_ms();
        let mut result = Ok(());
        let delivered_before = self.delivered;
        for item in items.drain(..) {
            match item {
                Out::Frame(bytes) => cur.extend_from_slice(&bytes),
                Out::Message { sub, msg } => {
                    // Messages queued before an UNSUBSCRIBE are not delivered after it.
                    if !sub.is_active() {
                        continue;
                    }
                    cur.extend_from_slice(&sub.prefix);
                    if sub.ack != AckMode::Auto {
                        let ack_id = self.next_ack;
                        self.next_ack += 1;
                        if version == Version::V1_2 {
                            cur.extend_from_slice(b"ack:");
                            cur.extend_from_slice(ack_id.to_string().as_bytes());
                            cur.push(b'\n');
                        }
                        self.unacked.push_back(Unacked {
                            ack_id,
                            sub: sub.clone(),
                            message_id: msg.message_id.clone(),
                        });
                        if self.unacked.len() > self.gw.config.max_pending_acks {
                            result = Err(self.server_error(Disconnect::TooManyPendingAcks));
                        }
                    }
                    cur.extend_from_slice(msg.bytes(version));
                    self.delivered += 1;
                    self.delays
                        .get_or_insert_with(|| self.gw.metrics.delivery_delay.local())
                        .observe((now - msg.timestamp_ms).max(0) as f64 / 1000.0);
                }
            }
            if !one_chunk && !cur.is_empty() {
                chunks.push(std::mem::take(&mut cur));
            }
        }
        self.items = items;
        if self.delivered > delivered_before
            && now - self.delays_flushed_ms >= 1000
            && let Some(delays) = &self.delays
        {
            delays.flush();
            self.delays_flushed_ms = now;
        }
        result?;
        if !cur.is_empty() {
            chunks.push(cur);
        }
        Ok(chunks)
    }

    /// Queues a frame for the client.
    fn reply(&self, frame: &Frame) {
        let mut out = Vec::with_capacity(64 + frame.body.len());
        encode_frame(frame, self.version(), &mut out);
        self.outbox.push_frame(out.into());
    }

    /// Parses and handles every whole frame in the read buffer.
    fn process_input(&mut self) -> Result<(), Fatal> {
        loop {
            let version = self.version();
            let parsed = parse(&mut self.read_buf, version, &self.gw.limits);
            match parsed {
                Ok(None) => return Ok(()),
                Ok(Some(Parsed::Heartbeat)) => continue,
                Ok(Some(Parsed::Frame(frame))) => {
                    if self.disconnecting {
                        continue;
                    }
                    self.handle(frame)?;
                }
                Err(e) => {
                    return Err(self.protocol_error(
                        "parse",
                        "malformed frame",
                        &e.to_string(),
                        None,
                    ));
                }
            }
        }
    }

    /// Counts an error and builds the fatal ERROR for it.
    fn protocol_error(
        &self,
        label: &str,
        message: &str,
        detail: &str,
        cause: Option<&Frame>,
    ) -> Fatal {
        tracing::debug!(session = self.id, label, message, detail, "protocol error");
        self.gw.metrics.errors.with_label_values(&[label]).inc();
        Fatal {
            reason: Disconnect::ProtocolError,
            error: Some(error_frame(message, detail, cause)),
        }
    }

    fn handle(&mut self, frame: Frame) -> Result<(), Fatal> {
        if self.version.is_none() {
            return match frame.command {
                Command::Connect | Command::Stomp => self.on_connect(&frame),
                other => Err(self.protocol_error(
                    "not_connected",
                    "not connected",
                    &format!("Expected a CONNECT or STOMP frame first, got {other}."),
                    Some(&frame),
                )),
            };
        }
        match frame.command {
            Command::Connect | Command::Stomp => Err(self.protocol_error(
                "already_connected",
                "already connected",
                "This session is already connected; send CONNECT only once.",
                Some(&frame),
            )),
            Command::Send => self.on_send(frame),
            Command::Subscribe => self.on_subscribe(&frame),
            Command::Unsubscribe => self.on_unsubscribe(&frame),
            Command::Ack | Command::Nack => self.on_ack(frame),
            Command::Begin => self.on_begin(&frame),
            Command::Commit => self.on_commit(&frame),
            Command::Abort => self.on_abort(&frame),
            Command::Disconnect => {
                self.disconnecting = true;
                let receipt = frame.header("receipt").map(str::to_string);
                self.pending
                    .push_back(Box::pin(async move { Pending::Disconnect(receipt) }));
                Ok(())
            }
            Command::Connected | Command::Message | Command::Receipt | Command::Error => Err(self
                .protocol_error(
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

    /// Sends a RECEIPT if the frame asked for one, after any earlier pending receipts.
    fn receipt(&mut self, frame: &Frame) {
        let Some(id) = frame.header("receipt") else {
            return;
        };
        if self.pending.is_empty() {
            self.reply(&Frame::receipt(id));
        } else {
            let id = id.to_string();
            self.pending
                .push_back(Box::pin(async move { Pending::Receipt(id) }));
        }
    }

    fn on_connect(&mut self, frame: &Frame) -> Result<(), Fatal> {
        let accepted: Vec<Version> = match frame.header("accept-version") {
            None => vec![Version::V1_0],
            Some(list) => list.split(',').filter_map(Version::parse).collect(),
        };
        let Some(version) = accepted.into_iter().max() else {
            let mut fatal = self.protocol_error(
                "unsupported_version",
                "unsupported protocol version",
                "Supported protocol versions are 1.0, 1.1 and 1.2.",
                Some(frame),
            );
            if let Some(e) = fatal.error.as_mut() {
                e.headers.push(("version".into(), "1.0,1.1,1.2".into()));
            }
            return Err(fatal);
        };
        let (cx, cy) = parse_heartbeat(frame.header("heart-beat"));
        let server = self.gw.config.heartbeat_ms;
        if server > 0 && cy > 0 && version != Version::V1_0 {
            self.heartbeat_out = Some(Duration::from_millis(server.max(cy)));
        }
        if server > 0 && cx > 0 && version != Version::V1_0 {
            self.heartbeat_in = Some(Duration::from_millis(server.max(cx)));
        }
        let token = frame
            .header("passcode")
            .filter(|p| !p.is_empty())
            .or_else(|| {
                frame
                    .header("Authorization")
                    .or_else(|| frame.header("authorization"))
                    .and_then(|h| h.strip_prefix("Bearer "))
            })
            .or(self.upgrade_token.as_deref());
        let identity = self
            .gw
            .auth
            .authenticate(token, frame.header("login"), self.id)
            .map_err(|e| {
                tracing::info!(session = self.id, peer = %self.peer, reason = e.label(), "authentication failed");
                self.protocol_error(e.label(), "authentication failed", &e.to_string(), Some(frame))
            })?;
        if let Some(exp) = identity.expires_at {
            let left = exp.saturating_sub((now_ms() / 1000) as u64);
            self.expires = Some(Instant::now() + Duration::from_secs(left));
        }
        self.user = identity.user.clone();
        self.identity = Some(identity);
        self.rearm = true;
        self.version = Some(version);
        self.gw
            .metrics
            .sessions
            .with_label_values(&[version.as_str()])
            .inc();
        let connected = Frame::new(Command::Connected)
            .with("version", version.as_str())
            .with("session", self.id.to_string())
            .with("server", concat!("stompgate/", env!("CARGO_PKG_VERSION")))
            .with("heart-beat", format!("{server},{server}"))
            .with("user-name", self.user.clone());
        self.reply(&connected);
        tracing::debug!(session = self.id, %version, user = %self.user, "session connected");
        Ok(())
    }

    fn required<'f>(&self, frame: &'f Frame, name: &str) -> Result<&'f str, Fatal> {
        frame.header(name).ok_or_else(|| {
            self.protocol_error(
                "missing_header",
                &format!("missing header '{name}'"),
                &format!("{} requires a '{name}' header.", frame.command),
                Some(frame),
            )
        })
    }

    fn on_send(&mut self, frame: Frame) -> Result<(), Fatal> {
        let destination = self.required(&frame, "destination")?;
        if !self.sends.take() {
            return Err(self.protocol_error(
                "rate_limited",
                "rate limit exceeded",
                &format!(
                    "At most {} SENDs per second (bursts of {}) are allowed per connection; slow down and reconnect.",
                    self.gw.config.send_rate, self.gw.config.send_burst
                ),
                Some(&frame),
            ));
        }
        self.authorize(destination, false, &frame)?;
        let market = chat_market(destination).map_err(|e| {
            self.protocol_error(
                "bad_destination",
                "unknown destination",
                &e.to_string(),
                Some(&frame),
            )
        })?;
        let chat = chat_record(
            &self.gw.config.chat_topic,
            market,
            frame.header("event-type"),
            &frame.body,
            &self.user,
            now_ms(),
        )
        .map_err(|e| {
            self.protocol_error(
                "bad_chat",
                "invalid chat message",
                &e.to_string(),
                Some(&frame),
            )
        })?;
        if let Some(id) = &chat.changes
            && let Ownership::Other(author) = self.gw.ledger.ownership(id, &self.user)
        {
            return Err(self.protocol_error(
                "forbidden",
                "forbidden",
                &format!(
                    "Message '{id}' was written by {author}; you may change only your own messages."
                ),
                Some(&frame),
            ));
        }
        let record = chat.record;
        if let Some(tx) = frame.header("transaction") {
            let ops = self.transaction(tx, &frame)?;
            ops.push(TxOp::Send(record));
            return self.check_tx_size(tx, &frame);
        }
        let receipt = frame.header("receipt").map(str::to_string);
        let send = self.gw.bus.send(record);
        let metrics = self.gw.metrics.clone();
        self.pending.push_back(Box::pin(async move {
            let result = send.await;
            let label = match &result {
                Ok(()) => "ok",
                Err(e) => e.label(),
            };
            metrics.sends.with_label_values(&[label]).inc();
            Pending::Send { receipt, result }
        }));
        Ok(())
    }

    fn transaction(&mut self, tx: &str, frame: &Frame) -> Result<&mut Vec<TxOp>, Fatal> {
        if !self.transactions.contains_key(tx) {
            return Err(self.protocol_error(
                "unknown_transaction",
                "unknown transaction",
                &format!("Transaction '{tx}' was not begun (or was already committed or aborted)."),
                Some(frame),
            ));
        }
        Ok(self.transactions.get_mut(tx).expect("checked above"))
    }

    fn check_tx_size(&mut self, tx: &str, frame: &Frame) -> Result<(), Fatal> {
        if self.transactions.get(tx).map_or(0, Vec::len) > MAX_TRANSACTION_FRAMES {
            return Err(self.protocol_error(
                "transaction_too_large",
                "transaction too large",
                &format!("A transaction may hold at most {MAX_TRANSACTION_FRAMES} frames."),
                Some(frame),
            ));
        }
        self.receipt(frame);
        Ok(())
    }

    fn on_subscribe(&mut self, frame: &Frame) -> Result<(), Fatal> {
        let destination = self.required(frame, "destination")?;
        let id = match (frame.header("id"), self.version()) {
            (Some(id), _) => id,
            (None, Version::V1_0) => destination,
            (None, _) => return Err(self.required(frame, "id").unwrap_err()),
        };
        SubscribeTarget::parse(destination).map_err(|e| {
            self.protocol_error(
                "bad_destination",
                "unknown destination",
                &e.to_string(),
                Some(frame),
            )
        })?;
        self.authorize(destination, true, frame)?;
        let ack = AckMode::parse(frame.header("ack")).ok_or_else(|| {
            self.protocol_error(
                "bad_ack_mode",
                "invalid ack mode",
                "ack must be auto, client or client-individual.",
                Some(frame),
            )
        })?;
        if self.subs.contains_key(id) {
            return Err(self.protocol_error(
                "duplicate_subscription",
                "duplicate subscription id",
                &format!("Subscription id '{id}' is already in use in this session."),
                Some(frame),
            ));
        }
        if self.subs.len() >= self.gw.config.max_subscriptions {
            return Err(self.protocol_error(
                "too_many_subscriptions",
                "too many subscriptions",
                &format!(
                    "A session may hold at most {} subscriptions; UNSUBSCRIBE first.",
                    self.gw.config.max_subscriptions
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
        self.subs.insert(id.to_string(), sub.clone());
        self.gw.hub.subscribe(Subscriber {
            sub,
            outbox: self.outbox.clone(),
        });
        self.receipt(frame);
        Ok(())
    }

    /// Checks the session's permissions for a destination.
    fn authorize(&self, destination: &str, subscribe: bool, frame: &Frame) -> Result<(), Fatal> {
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
            "forbidden",
            "forbidden",
            &format!("{} may not {verb} '{destination}'.{hint}", self.user),
            Some(frame),
        ))
    }

    fn on_unsubscribe(&mut self, frame: &Frame) -> Result<(), Fatal> {
        let id = match (
            frame.header("id"),
            frame.header("destination"),
            self.version(),
        ) {
            (Some(id), _, _) => id,
            (None, Some(dest), Version::V1_0) => dest,
            _ => return Err(self.required(frame, "id").unwrap_err()),
        };
        let Some(sub) = self.subs.remove(id) else {
            return Err(self.protocol_error(
                "unknown_subscription",
                "unknown subscription",
                &format!("No subscription with id '{id}' in this session."),
                Some(frame),
            ));
        };
        sub.deactivate();
        self.gw.hub.unsubscribe(&sub);
        self.unacked.retain(|u| !Arc::ptr_eq(&u.sub, &sub));
        self.receipt(frame);
        Ok(())
    }

    fn on_ack(&mut self, frame: Frame) -> Result<(), Fatal> {
        if let Some(tx) = frame.header("transaction").map(str::to_string) {
            let ops = self.transaction(&tx, &frame)?;
            ops.push(TxOp::Ack(frame.clone()));
            return self.check_tx_size(&tx, &frame);
        }
        self.apply_ack(&frame)?;
        self.receipt(&frame);
        Ok(())
    }

    /// Acknowledges (ACK) or rejects (NACK) a delivered message. Topic messages are not
    /// redelivered after NACK: this is a broadcast, not a work queue.
    fn apply_ack(&mut self, frame: &Frame) -> Result<(), Fatal> {
        let version = self.version();
        let position = if version == Version::V1_2 {
            let id = self.required(frame, "id")?;
            id.parse::<u64>()
                .ok()
                .and_then(|n| self.unacked.iter().position(|u| u.ack_id == n))
        } else {
            let message_id = self.required(frame, "message-id")?;
            let subscription = frame.header("subscription");
            self.unacked.iter().position(|u| {
                &*u.message_id == message_id && subscription.is_none_or(|s| s == u.sub.id)
            })
        };
        let Some(i) = position else {
            return Err(self.protocol_error(
                "unknown_ack",
                "unknown message",
                &format!(
                    "{} names no message awaiting acknowledgement in this session.",
                    frame.command
                ),
                Some(frame),
            ));
        };
        let sub = self.unacked[i].sub.clone();
        if sub.ack == AckMode::Client {
            // Cumulative: this message and every earlier one of the subscription.
            let mut index = 0;
            self.unacked.retain(|u| {
                let keep = index > i || !Arc::ptr_eq(&u.sub, &sub);
                index += 1;
                keep
            });
        } else {
            self.unacked.remove(i);
        }
        Ok(())
    }

    fn on_begin(&mut self, frame: &Frame) -> Result<(), Fatal> {
        let tx = self.required(frame, "transaction")?;
        if self.transactions.contains_key(tx) {
            return Err(self.protocol_error(
                "duplicate_transaction",
                "transaction already begun",
                &format!("Transaction '{tx}' is already open."),
                Some(frame),
            ));
        }
        if self.transactions.len() >= MAX_TRANSACTIONS {
            return Err(self.protocol_error(
                "too_many_transactions",
                "too many transactions",
                &format!("At most {MAX_TRANSACTIONS} transactions may be open at once."),
                Some(frame),
            ));
        }
        self.transactions.insert(tx.to_string(), Vec::new());
        self.receipt(frame);
        Ok(())
    }

    fn on_commit(&mut self, frame: &Frame) -> Result<(), Fatal> {
        let tx = self.required(frame, "transaction")?.to_string();
        self.transaction(&tx, frame)?;
        let ops = self.transactions.remove(&tx).expect("checked above");
        let mut sends = Vec::new();
        for op in ops {
            match op {
                TxOp::Send(record) => sends.push(self.gw.bus.send(record)),
                TxOp::Ack(ack) => self.apply_ack(&ack)?,
            }
        }
        let receipt = frame.header("receipt").map(str::to_string);
        let metrics = self.gw.metrics.clone();
        self.pending.push_back(Box::pin(async move {
            let mut result = Ok(());
            for send in sends {
                let r = send.await;
                metrics
                    .sends
                    .with_label_values(&[r.as_ref().map_or_else(|e| e.label(), |_| "ok")])
                    .inc();
                if result.is_ok() {
                    result = r;
                }
            }
            Pending::Send { receipt, result }
        }));
        Ok(())
    }

    fn on_abort(&mut self, frame: &Frame) -> Result<(), Fatal> {
        let tx = self.required(frame, "transaction")?.to_string();
        self.transaction(&tx, frame)?;
        self.transactions.remove(&tx);
        self.receipt(frame);
        Ok(())
    }

    fn on_pending(&mut self, done: Pending) -> Result<(), Fatal> {
        match done {
            Pending::Receipt(id) => self.reply(&Frame::receipt(&id)),
            Pending::Send {
                receipt,
                result: Ok(()),
            } => {
                if let Some(id) = receipt {
                    self.reply(&Frame::receipt(&id));
                }
            }
            Pending::Send {
                receipt,
                result: Err(e),
            } => {
                self.gw
                    .metrics
                    .errors
                    .with_label_values(&["send_failed"])
                    .inc();
                let mut error = Frame::error("send failed", &e.to_string());
                if let Some(id) = receipt {
                    error.headers.push(("receipt-id".into(), id));
                }
                return Err(Fatal {
                    reason: Disconnect::ProtocolError,
                    error: Some(error),
                });
            }
            Pending::Disconnect(receipt) => {
                if let Some(id) = receipt {
                    self.reply(&Frame::receipt(&id));
                }
                return Err(Fatal::quiet(Disconnect::ClientRequest));
            }
        }
        Ok(())
    }

    /// Ends the session: unsubscribes, settles what is owed, says why, closes.
    async fn finish(&mut self, transport: &mut Transport, mut fatal: Fatal) {
        for sub in self.subs.values() {
            self.gw.hub.unsubscribe(sub);
        }
        let grace = Duration::from_millis(self.gw.config.shutdown_grace_ms);
        let deadline = Instant::now() + grace;
        if fatal.reason == Disconnect::ShuttingDown {
            // Receipts owed are honoured if the bus acknowledges before the deadline.
            while !self.pending.is_empty() {
                match tokio::time::timeout_at(deadline, self.pending.next()).await {
                    Ok(Some(done)) => {
                        if let Err(f) = self.on_pending(done) {
                            if f.reason == Disconnect::ProtocolError {
                                fatal = f;
                            }
                            break;
                        }
                    }
                    _ => break,
                }
            }
            if fatal.reason == Disconnect::ShuttingDown {
                fatal = self.server_error(Disconnect::ShuttingDown);
            }
        }
        let drain_queue = matches!(
            fatal.reason,
            Disconnect::ShuttingDown
                | Disconnect::ClientRequest
                | Disconnect::ProtocolError
                | Disconnect::HeartbeatTimeout
                | Disconnect::ConnectTimeout
                | Disconnect::TooManyPendingAcks
        );
        if drain_queue {
            let _ = tokio::time::timeout_at(deadline, self.flush(transport)).await;
        }
        self.outbox.close(fatal.reason);
        if let Some(error) = &fatal.error
            && fatal.reason != Disconnect::TransportClosed
        {
            let mut out = Vec::new();
            encode_frame(error, self.version(), &mut out);
            let _ = tokio::time::timeout(Duration::from_secs(1), transport.send(vec![out])).await;
            if fatal.reason != Disconnect::ProtocolError {
                self.gw
                    .metrics
                    .errors
                    .with_label_values(&[fatal.reason.label()])
                    .inc();
            }
        }
        if fatal.reason != Disconnect::TransportClosed {
            let _ =
                tokio::time::timeout(Duration::from_secs(1), transport.close(fatal.reason)).await;
        }
        self.gw
            .metrics
            .disconnects
            .with_label_values(&[fatal.reason.label()])
            .inc();
        self.gw.metrics.connections.dec();
        if let Some(v) = self.version {
            self.gw
                .metrics
                .sessions
                .with_label_values(&[v.as_str()])
                .dec();
        }
        tracing::info!(
            session = self.id,
            peer = %self.peer,
            transport = self.kind,
            reason = fatal.reason.label(),
            delivered = self.delivered,
            seconds = self.opened.elapsed().as_secs_f64(),
            "connection closed"
        );
    }
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

/// How long past the agreed heart-beat interval a client may stay silent.
fn grace(interval: Duration) -> Duration {
    interval * 2 + Duration::from_millis(500)
}

/// Refuses a connection over a limit (`ServerFull`, `TooManyFromAddress`) with a clear
/// ERROR, then closes it.
pub async fn refuse(gw: Arc<Gateway>, mut transport: Transport, reason: Disconnect) {
    gw.metrics
        .disconnects
        .with_label_values(&[reason.label()])
        .inc();
    gw.metrics.errors.with_label_values(&[reason.label()]).inc();
    let (message, detail) = reason.error_text().unwrap_or_default();
    let limit = match reason {
        Disconnect::TooManyFromAddress => gw.config.max_connections_per_ip,
        _ => gw.config.max_connections,
    };
    let detail = format!("{detail} (limit: {limit} connections)");
    let mut out = Vec::new();
    encode_frame(&Frame::error(message, &detail), Version::V1_2, &mut out);
    let _ = tokio::time::timeout(Duration::from_secs(1), transport.send(vec![out])).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), transport.close(reason)).await;
}
