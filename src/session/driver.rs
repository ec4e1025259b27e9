//! The task that runs one connection: the only part of a session that touches the
//! transport. One loop reads client bytes and parses every whole frame (handing
//! each to the protocol and carrying out its effects), drains the outbox into batched
//! writes, resolves broker acknowledgements in order (so receipts keep the order of the
//! frames that asked for them), runs the heart-beat, connect and token timers, and hears
//! shutdown. `finish` settles what is owed and says why the connection ends.

use super::Close;
use super::context::SessionContext;
use super::pending::{Pending, PendingQueue};
use super::protocol::Protocol;
use super::writer::{self, DelayStats, Shape};
use crate::disconnect::Disconnect;
use crate::hub::direct::Permit;
use crate::hub::outbox::{OTHER, Out, Outbox, QUEUED};
use crate::stomp::{Command, Frame, Parsed, parse};
use crate::transport::{Sent, Transport};
use bytes::{Bytes, BytesMut};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;

mod effects;

/// What woke the session's loop.
enum Event {
    Shutdown,
    Outbox,
    Read(Result<bool, String>),
    Pending(Pending),
    Timer,
}

/// Above this many items of capacity, the drain buffer is given back after a flush, so a
/// burst does not leave every session holding its peak.
const KEEP_ITEMS: usize = 256;

/// A streaming session keeps its drain buffers between flushes; once nothing has been
/// written for this long they are given back, so a session that stops streaming (after a
/// burst, or a quiet market) holds none.
const QUIET: Duration = Duration::from_secs(2);

/// A delivery written this long after the session's previous write finds it not streaming:
/// its buffers are given back and its delays published at once. Kept for a next flush,
/// they cost a timer wake-up (at [`QUIET`]) for every delivery or two, more than
/// allocating them again: at one delivery per second per session, giving them back at
/// once took 5-8% off the CPU per delivery (6 rounds, each lower).
const SPARSE: Duration = Duration::from_millis(250);

pub struct Session {
    cx: Arc<SessionContext>,
    kind: &'static str,
    outbox: Arc<Outbox>,
    protocol: Protocol,
    pending: PendingQueue,
    read_buf: BytesMut,
    items: Vec<Out>,
    /// The drain buffers (`items`, the outbox's queue) are kept for the next flush; given
    /// back after [`QUIET`].
    buffers_kept: bool,
    /// Timer intervals changed (CONNECT, token refresh): the loop re-arms its timer.
    rearm: bool,
    last_read: Instant,
    last_write: Instant,
    opened: Instant,
    /// When the session's token expires.
    expires: Option<Instant>,
    stats: DelayStats,
}

impl Session {
    pub fn new(
        cx: Arc<SessionContext>,
        peer: SocketAddr,
        upgrade_token: Option<String>,
    ) -> Session {
        let s = &cx.settings;
        let outbox = Arc::new(Outbox::new(s.outbox_bytes, s.slow_consumer));
        let protocol = Protocol::new(&cx, cx.next_session_id(), peer, upgrade_token);
        let now = Instant::now();
        Session {
            cx,
            kind: "ws",
            outbox,
            protocol,
            pending: PendingQueue::default(),
            read_buf: BytesMut::new(),
            items: Vec::new(),
            buffers_kept: false,
            rearm: false,
            last_read: now,
            last_write: now,
            opened: now,
            expires: None,
            stats: DelayStats::default(),
        }
    }

    /// Runs the session to its end and cleans up.
    ///
    /// Not an `async fn`: that would keep the session and the transport twice in the
    /// future (once as arguments, once as the body's own), hundreds of bytes per
    /// connection. The block below works on what it captured.
    #[allow(clippy::manual_async_fn)]
    pub fn run(mut self, mut transport: Transport) -> impl Future<Output = ()> + Send {
        async move {
            self.kind = transport.kind();
            let m = &self.cx.metrics;
            m.connections.inc();
            m.connections_total.with_label_values(&[self.kind]).inc();
            tracing::info!(session = self.protocol.id, peer = %self.protocol.peer, transport = self.kind, "connection opened");
            let close = self.drive(&mut transport).await;
            // Once per session, at its end: on the heap, so the idle future does not
            // carry the room for it.
            Box::pin(self.finish(&mut transport, close)).await;
        }
    }

    async fn drive(&mut self, transport: &mut Transport) -> Close {
        // Registered once: a fresh `cancelled()` per iteration would lock the token's
        // shared waiter list twice per wake-up of every session.
        let shutdown = self.cx.shutdown.clone().cancelled_owned();
        tokio::pin!(shutdown);
        // Activity only moves deadlines later, so the timer is re-armed only when it fires
        // or the intervals change; firing early is harmless (`on_timer` checks).
        let sleep = tokio::time::sleep_until(self.next_deadline());
        tokio::pin!(sleep);
        let mut rearm = false;
        let mut outbox_first = false;
        if self.cx.settings.direct_writes {
            transport.attach(&self.outbox);
        }
        // Nothing but the outbox has been polled yet.
        self.outbox.keep_signals(OTHER);
        loop {
            if rearm || std::mem::take(&mut self.rearm) {
                sleep.as_mut().reset(self.next_deadline());
                rearm = false;
                // Polled again with its new deadline.
                self.outbox.keep_signals(OTHER);
            }
            // When both kinds of wake-up are waiting, they take turns: a client that never
            // stops sending cannot hold back its deliveries, nor deliveries its reads.
            outbox_first = !outbox_first;
            let outbox = &self.outbox;
            let read_buf = &mut self.read_buf;
            let pending = &mut self.pending;
            // The wait only says what happened; the work (a flush that may wait on the
            // socket) runs after it, so the session's future holds either, not both. A
            // wake-up for a queued delivery polls nothing but the outbox: the socket's read
            // side, the timer and shutdown are polled only when their own waker (the
            // outbox's, raising `OTHER`) fired.
            let event = std::future::poll_fn(|cx| {
                let signals = outbox.take_signals(cx);
                let queued = signals & QUEUED != 0;
                // The rest of a half-sent message goes out before the next read: reading
                // may write a pong, which must not land inside it.
                if queued && (outbox_first || signals & OTHER == 0 || outbox.owes_remainder()) {
                    outbox.keep_signals(signals & OTHER);
                    return Poll::Ready(Event::Outbox);
                }
                if signals & OTHER != 0 {
                    let waker = outbox.waker();
                    let mut other = Context::from_waker(&waker);
                    let event = if shutdown.as_mut().poll(&mut other).is_ready() {
                        Some(Event::Shutdown)
                    } else if let Poll::Ready(read) = transport.poll_recv(&mut other, read_buf) {
                        Some(Event::Read(read))
                    } else if let Poll::Ready(Some(done)) = pending.poll_next(&mut other) {
                        Some(Event::Pending(done))
                    } else if sleep.as_mut().poll(&mut other).is_ready() {
                        Some(Event::Timer)
                    } else {
                        None
                    };
                    if let Some(event) = event {
                        // Not everything was polled: it is, next time.
                        outbox.keep_signals(OTHER | (signals & QUEUED));
                        return Poll::Ready(event);
                    }
                }
                if queued {
                    return Poll::Ready(Event::Outbox);
                }
                Poll::Pending
            })
            .await;
            let handled = match event {
                Event::Shutdown => return Close::quiet(Disconnect::ShuttingDown),
                Event::Outbox => self.flush(transport).await,
                Event::Read(Ok(true)) => {
                    self.last_read = Instant::now();
                    if transport.pong_owed() {
                        // No publisher writes to the socket until the pong is out.
                        self.outbox.hold();
                    }
                    self.process_input(transport)
                }
                Event::Read(Ok(false) | Err(_)) => {
                    return Close::quiet(Disconnect::TransportClosed);
                }
                Event::Pending(done) => self.on_pending(done),
                Event::Timer => {
                    rearm = true;
                    self.on_timer()
                }
            };
            if let Err(close) = handled {
                return close;
            }
        }
    }

    /// The earliest moment a timer needs attention.
    fn next_deadline(&self) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        if self.protocol.connected().is_none() {
            return self.opened + self.cx.settings.connect_timeout;
        }
        let out = self.protocol.heartbeat_out.map(|d| self.last_write + d);
        let inn = self
            .protocol
            .heartbeat_in
            .map(|d| self.last_read + grace(d));
        let quiet = self.buffers_kept.then(|| self.last_write + QUIET);
        [out, inn, self.expires, quiet]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(far)
    }

    fn on_timer(&mut self) -> Result<(), Close> {
        let now = Instant::now();
        if self.protocol.connected().is_none() {
            if now >= self.opened + self.cx.settings.connect_timeout {
                return Err(Close::server(Disconnect::ConnectTimeout));
            }
            return Ok(());
        }
        if self.expires.is_some_and(|at| now >= at) {
            return Err(Close::server(Disconnect::TokenExpired));
        }
        if self.buffers_kept && now >= self.last_write + QUIET {
            self.items = Vec::new();
            self.outbox.release_buffer();
            self.buffers_kept = false;
        }
        if let Some(d) = self.protocol.heartbeat_in
            && now >= self.last_read + grace(d)
        {
            return Err(Close::server(Disconnect::HeartbeatTimeout));
        }
        // Quiet now: publish the delays observed since the last flush.
        self.stats.flush();
        if let Some(d) = self.protocol.heartbeat_out
            && now >= self.last_write + d
        {
            self.outbox.push_frame(Bytes::from_static(b"\n"));
            // Counts as written once queued; the flush follows at once.
            self.last_write = now;
        }
        Ok(())
    }

    /// Drains the outbox and writes it in batches.
    /// Publishers may write to the socket again once it returns (see `Outbox::written`).
    async fn flush(&mut self, transport: &mut Transport) -> Result<(), Close> {
        let drained = self.outbox.drain(&mut self.items);
        if let Some(reason) = drained.closed {
            self.items.clear();
            return Err(Close::server(reason));
        }
        if let Some(rest) = drained.remainder {
            // Rare (a publisher found the socket nearly full): on the heap, with the write
            // timeout, like any write that waits.
            let timeout = self.cx.settings.write_timeout;
            let outbox = self.outbox.clone();
            // Torn until the rest is out, even if the write never starts.
            transport.tear();
            let write = transport.write_rest(&rest);
            Box::pin(async move {
                tokio::select! {
                    written = tokio::time::timeout(timeout, write) => match written {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(_)) => Err(Close::quiet(Disconnect::TransportClosed)),
                        Err(_) => Err(Close::server(Disconnect::WriteTimeout)),
                    },
                    reason = outbox.wait_closed() => Err(Close::server(reason)),
                }
            })
            .await?;
            self.stats.wrote(rest.len(), &self.cx.metrics);
        }
        if self.items.is_empty() {
            if transport.flush_owed().await.is_err() {
                return Err(Close::quiet(Disconnect::TransportClosed));
            }
            self.outbox.written();
            return Ok(());
        }
        let s = &self.cx.settings;
        let shape = Shape {
            version: self.protocol.version(),
            batch: s.ws_batch || self.kind == "tcp",
            max_bytes: s.max_write_bytes,
            headroom: transport.headroom(),
        };
        let delivered = self.stats.delivered;
        let assembled = writer::assemble(
            &mut self.items,
            shape,
            &mut self.protocol.acks,
            &mut self.stats,
            &self.cx.metrics,
        );
        let delivers = self.stats.delivered != delivered;
        if self.items.capacity() > KEEP_ITEMS || !delivers {
            // After a burst, or after replies only (CONNECTED, RECEIPT, a heart-beat: an
            // idle subscriber), given back at once.
            self.items = Vec::new();
            if !delivers {
                self.outbox.release_buffer();
            }
        }
        if assembled.too_many_acks {
            return Err(Close::server(Disconnect::TooManyPendingAcks));
        }
        let timeout = s.write_timeout;
        let mut chunks = assembled.chunks;
        // Most writes complete at once, with no future to wait on; only a write that finds
        // the socket full waits, with the write timeout armed and the outbox watched,
        // giving up as soon as it overflows.
        let written = match transport.try_send_chunks(&mut chunks, assembled.utf8) {
            Sent::All => Ok(()),
            Sent::Failed(e) => Err(e),
            Sent::Upto(from) => {
                // On the heap: rare, and the session's future stays small without it.
                let outbox = self.outbox.clone();
                let send = transport.send_chunks(chunks, assembled.utf8, from);
                Box::pin(async move {
                    tokio::select! {
                        written = tokio::time::timeout(timeout, send) => {
                            written.map_err(|_| Close::server(Disconnect::WriteTimeout))
                        }
                        reason = outbox.wait_closed() => Err(Close::server(reason)),
                    }
                })
                .await?
            }
        };
        if written.is_err() {
            return Err(Close::quiet(Disconnect::TransportClosed));
        }
        self.outbox.written();
        self.stats.wrote(assembled.bytes, &self.cx.metrics);
        let now = Instant::now();
        let streaming = now.saturating_duration_since(self.last_write) < SPARSE;
        self.last_write = now;
        if delivers {
            if !streaming {
                // Deliveries far apart: the buffers and the delays observed are given back
                // and published now, with no timer to wake the session for them later.
                self.items = Vec::new();
                self.outbox.release_buffer();
                self.stats.flush();
                self.buffers_kept = false;
            } else if !self.buffers_kept {
                // Kept for the next flush: the timer gives them back once the session is
                // quiet (an earlier deadline than any armed, so the timer is re-armed).
                self.buffers_kept = true;
                self.rearm = true;
            }
        }
        Ok(())
    }

    /// Queues a frame of the session itself for the client.
    fn reply(&self, frame: &Frame) {
        let bytes = writer::encode_reply(frame, self.protocol.version());
        self.outbox.push_frame(bytes.into());
    }

    /// Parses and handles every whole frame in the read buffer.
    fn process_input(&mut self, transport: &Transport) -> Result<(), Close> {
        let handled = self.process_frames(transport);
        if self.read_buf.is_empty() {
            // Everything read is parsed: an idle connection keeps no read buffer.
            self.read_buf = BytesMut::new();
        }
        handled
    }

    fn process_frames(&mut self, transport: &Transport) -> Result<(), Close> {
        let mut effects = Vec::new();
        loop {
            let version = self.protocol.version();
            let parsed = parse(&mut self.read_buf, version, &self.cx.settings.frame_limits);
            match parsed {
                Ok(None) => return Ok(()),
                Ok(Some(Parsed::Heartbeat)) => continue,
                Ok(Some(Parsed::Frame(frame))) => {
                    // A SEND published at once (the embedded bus) is fanned out here: its
                    // copies may be written directly while nothing more from this client
                    // waits to be handled (see `hub::direct`).
                    let _permit = (frame.command == Command::Send
                        && self.cx.settings.direct_writes)
                        .then(|| Permit::new(self.read_buf.is_empty() && !transport.unread()));
                    let handled = self.protocol.on_frame(frame, &self.cx, &mut effects);
                    for effect in effects.drain(..) {
                        self.apply(effect);
                    }
                    handled?;
                }
                Err(e) => {
                    return Err(self.protocol.protocol_error(
                        &self.cx,
                        "parse",
                        "malformed frame",
                        &e.to_string(),
                        None,
                    ));
                }
            }
        }
    }

    /// Ends the session: unsubscribes, settles what is owed, says why, closes.
    async fn finish(&mut self, transport: &mut Transport, mut close: Close) {
        // From here the session alone writes to the socket.
        self.outbox.detach();
        for sub in self.protocol.subscriptions() {
            sub.deactivate();
            self.cx.hub.unsubscribe(sub);
        }
        let deadline = Instant::now() + self.cx.settings.shutdown_grace;
        if close.reason == Disconnect::ShuttingDown {
            // Receipts owed are honoured if the bus acknowledges before the deadline.
            while !self.pending.is_empty() {
                match tokio::time::timeout_at(deadline, self.pending.next()).await {
                    Ok(Some(done)) => {
                        if let Err(c) = self.on_pending(done) {
                            if c.reason == Disconnect::ProtocolError {
                                close = c;
                            }
                            break;
                        }
                    }
                    _ => break,
                }
            }
            if close.reason == Disconnect::ShuttingDown {
                close = Close::server(Disconnect::ShuttingDown);
            }
        }
        let drain_queue = matches!(
            close.reason,
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
        if self.outbox.owes_remainder() {
            // Half a message a publisher wrote stays half: no frame may follow it.
            transport.tear();
        }
        self.outbox.close(close.reason);
        let m = self.cx.metrics.clone();
        if let Some(error) = &close.error
            && close.reason != Disconnect::TransportClosed
        {
            let out = writer::encode_reply(error, self.protocol.version());
            let _ = tokio::time::timeout(Duration::from_secs(1), transport.send(vec![out])).await;
            if close.reason != Disconnect::ProtocolError {
                m.errors.with_label_values(&[close.reason.label()]).inc();
            }
        }
        if close.reason != Disconnect::TransportClosed {
            let _ =
                tokio::time::timeout(Duration::from_secs(1), transport.close(close.reason)).await;
        }
        m.disconnects
            .with_label_values(&[close.reason.label()])
            .inc();
        m.connections.dec();
        if let Some(v) = self.protocol.connected() {
            m.sessions.with_label_values(&[v.as_str()]).dec();
        }
        self.stats.flush();
        self.stats.delivered += self.outbox.written_direct();
        tracing::info!(
            session = self.protocol.id,
            peer = %self.protocol.peer,
            transport = self.kind,
            reason = close.reason.label(),
            delivered = self.stats.delivered,
            seconds = self.opened.elapsed().as_secs_f64(),
            "connection closed"
        );
    }
}

/// How long past the agreed heart-beat interval a client may stay silent.
fn grace(interval: Duration) -> Duration {
    interval * 2 + Duration::from_millis(500)
}
