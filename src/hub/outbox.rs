//! A session's outbound queue, bounded in bytes, that publishers never wait on.
//!
//! The hub pushes under a short std `Mutex` (no `.await` happens under it); the session's
//! writer takes everything queued at once and writes it as one batch. When a push would
//! pass the bound, the slow-consumer policy decides: conflatable market ticks replace the
//! older queued tick of the same subscription and destination, and anything else closes
//! the outbox with `Disconnect::SlowConsumer`.
//!
//! The outbox is also what wakes its session, and says why: a push raises [`QUEUED`]; the
//! outbox, used as a waker (see [`Outbox::waker`]), raises [`OTHER`] for everything else
//! the session waits on (its socket, timers, shutdown, broker acknowledgements). A session
//! woken only because something was queued writes it without polling anything else.
//!
//! A publisher that keeps up may write a message to the session's socket itself instead of
//! queueing it (see [`super::direct`]): only while a socket is attached, nothing is queued
//! or owed, and the session is not writing (from its drain until [`Outbox::written`]).

use super::direct::{self, Written};
use super::publication::Encoded;
use super::subscription::{AckMode, Subscription};
use crate::disconnect::Disconnect;
use bytes::Bytes;
use futures::task::{ArcWake, AtomicWaker, WakerRef, waker_ref};
use std::collections::{HashMap, VecDeque};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Context;
use tokio::sync::Notify;

/// Something was queued, or the outbox closed, since the session last looked.
pub const QUEUED: u8 = 1;
/// Something else the session waits on woke it (see [`Outbox::waker`]).
pub const OTHER: u8 = 2;

/// What to do with a client whose outbox passes its byte bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SlowConsumerPolicy {
    /// Send ERROR "slow consumer" and close the connection.
    Disconnect,
    /// Keep only the newest trade per destination while the client is behind; anything that
    /// cannot be conflated (chat) still disconnects.
    Conflate,
}

/// One queued item.
#[derive(Debug, Clone)]
pub enum Out {
    /// A frame already encoded for this session (RECEIPT, ERROR, heart-beat).
    Frame(Bytes),
    /// A publication for one of this session's subscriptions.
    Message {
        sub: Arc<Subscription>,
        msg: Arc<Encoded>,
    },
    /// A message from history, sent on SUBSCRIBE before live ones (`x-replay:true`).
    Replay {
        sub: Arc<Subscription>,
        msg: Arc<Encoded>,
    },
}

/// What happened to a pushed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// Written to the socket by the publisher: this many bytes (the rest, if any, queued
    /// for the session to write first).
    Written(usize),
    /// Replaced an older queued tick (or was set aside as the newest one).
    Conflated,
    /// The outbox was full: it is now closed as a slow consumer.
    Overflow,
    /// The outbox was already closed; the message was dropped.
    Closed,
}

#[derive(Debug, Default)]
struct Inner {
    queue: VecDeque<Out>,
    bytes: usize,
    /// Newest tick per (subscription, destination) set aside while the queue is full.
    conflated: Vec<Out>,
    /// Where each (subscription, destination) sits in `conflated`: a push finds its slot at
    /// once (a linear scan under this lock let many wildcard subscriptions starve the hub).
    conflated_at: HashMap<(usize, Arc<str>), usize>,
    closed: Option<Disconnect>,
    /// The session's WebSocket, while publishers may write to it (see [`super::direct`]).
    socket: Option<RawFd>,
    /// The rest of a message a publisher's write left half-sent: the session writes it
    /// before anything else.
    remainder: Option<Bytes>,
    /// Messages written by publishers.
    written_direct: u64,
}

/// What a drain took.
#[derive(Debug, Default)]
pub struct Drained {
    /// Why the outbox closed, if it did.
    pub closed: Option<Disconnect>,
    /// The rest of a half-sent message, to be written first as it is (no new header).
    pub remainder: Option<Bytes>,
}

#[derive(Debug)]
pub struct Outbox {
    inner: Mutex<Inner>,
    /// The session has drained and not finished writing, or owes a pong: no publisher
    /// writes to its socket.
    busy: AtomicBool,
    /// Why the session was woken since it last looked ([`QUEUED`], [`OTHER`]).
    signals: AtomicU8,
    /// The session's task, woken on a signal.
    task: AtomicWaker,
    /// Wakes a writer blocked on a slow socket when the outbox closes.
    closed_notify: Notify,
    limit: usize,
    policy: SlowConsumerPolicy,
}

fn message_size(sub: &Subscription, msg: &Encoded) -> usize {
    sub.prefix.len() + msg.bytes(sub.version).len() + 24
}

impl Outbox {
    pub fn new(limit: usize, policy: SlowConsumerPolicy) -> Outbox {
        Outbox {
            inner: Mutex::new(Inner::default()),
            busy: AtomicBool::new(false),
            signals: AtomicU8::new(0),
            task: AtomicWaker::new(),
            closed_notify: Notify::new(),
            limit,
            policy,
        }
    }

    /// Queues a publication for `sub`, never blocking on the client.
    pub fn push_message(&self, sub: &Arc<Subscription>, msg: &Arc<Encoded>) -> Pushed {
        let size = message_size(sub, msg);
        let mut inner = self.inner.lock().expect("outbox lock poisoned");
        if inner.closed.is_some() {
            return Pushed::Closed;
        }
        if inner.bytes + size > self.limit {
            if self.policy == SlowConsumerPolicy::Conflate && msg.conflatable {
                let item = Out::Message {
                    sub: sub.clone(),
                    msg: msg.clone(),
                };
                let key = (Arc::as_ptr(sub) as usize, msg.destination.clone());
                let inner = &mut *inner;
                match inner.conflated_at.get(&key) {
                    Some(&i) => inner.conflated[i] = item,
                    None => {
                        inner.conflated_at.insert(key, inner.conflated.len());
                        inner.conflated.push(item);
                    }
                }
                return Pushed::Conflated;
            }
            inner.closed = Some(Disconnect::SlowConsumer);
            drop(inner);
            self.signal(QUEUED);
            self.closed_notify.notify_one();
            return Pushed::Overflow;
        }
        let was_empty = inner.queue.is_empty();
        if was_empty
            && let Some(fd) = inner.socket
            && inner.remainder.is_none()
            && inner.conflated.is_empty()
            && sub.ack == AckMode::Auto
            && direct::permitted()
            && !self.busy.load(Ordering::Acquire)
            && sub.is_active()
        {
            let written = direct::write_message(fd, &sub.prefix, msg.bytes(sub.version), msg.utf8);
            if written != Written::Nothing {
                direct::spent();
            }
            match written {
                Written::All(n) => {
                    inner.written_direct += 1;
                    return Pushed::Written(n);
                }
                Written::Part { written: n, rest } => {
                    inner.written_direct += 1;
                    inner.bytes += rest.len();
                    inner.remainder = Some(rest);
                    drop(inner);
                    self.signal(QUEUED);
                    return Pushed::Written(n);
                }
                // Queued as usual; the session finds out why on its own write.
                Written::Nothing => {}
            }
        }
        inner.bytes += size;
        inner.queue.push_back(Out::Message {
            sub: sub.clone(),
            msg: msg.clone(),
        });
        drop(inner);
        if was_empty {
            self.signal(QUEUED);
        }
        Pushed::Queued
    }

    /// Queues a message from history for `sub` (held to the bound like any other).
    pub fn push_replay(&self, sub: &Arc<Subscription>, msg: &Arc<Encoded>) {
        let size = message_size(sub, msg);
        let mut inner = self.inner.lock().expect("outbox lock poisoned");
        if inner.closed.is_some() {
            return;
        }
        if inner.bytes + size > self.limit {
            inner.closed = Some(Disconnect::SlowConsumer);
            drop(inner);
            self.signal(QUEUED);
            self.closed_notify.notify_one();
            return;
        }
        let was_empty = inner.queue.is_empty();
        inner.bytes += size;
        inner.queue.push_back(Out::Replay {
            sub: sub.clone(),
            msg: msg.clone(),
        });
        drop(inner);
        if was_empty {
            self.signal(QUEUED);
        }
    }

    /// Queues a frame of the session itself. Control frames are small and few, so they are
    /// not held to the bound.
    pub fn push_frame(&self, frame: Bytes) {
        let mut inner = self.inner.lock().expect("outbox lock poisoned");
        if inner.closed.is_some() {
            return;
        }
        let was_empty = inner.queue.is_empty();
        inner.bytes += frame.len();
        inner.queue.push_back(Out::Frame(frame));
        drop(inner);
        if was_empty {
            self.signal(QUEUED);
        }
    }

    /// Moves everything queued into `into` (in order, conflated ticks last) and takes the
    /// rest of a half-sent message; from here until [`Outbox::written`] the session is
    /// writing and no publisher writes to its socket.
    pub fn drain(&self, into: &mut Vec<Out>) -> Drained {
        let mut inner = self.inner.lock().expect("outbox lock poisoned");
        self.busy.store(true, Ordering::Release);
        into.extend(inner.queue.drain(..));
        into.append(&mut inner.conflated);
        inner.conflated_at.clear();
        inner.bytes = 0;
        Drained {
            closed: inner.closed,
            remainder: inner.remainder.take(),
        }
    }

    /// The session's write after a drain is done: publishers may write to its socket again.
    pub fn written(&self) {
        self.busy.store(false, Ordering::Release);
    }

    /// Publishers may write to `socket` (the session's WebSocket) while nothing is queued.
    pub fn attach(&self, socket: RawFd) {
        self.inner.lock().expect("outbox lock poisoned").socket = Some(socket);
    }

    /// No publisher writes to the socket from now on (one that is writing has finished:
    /// it holds the lock taken here). Before the socket closes, and before the session
    /// writes outside a drain.
    pub fn detach(&self) {
        self.inner.lock().expect("outbox lock poisoned").socket = None;
    }

    /// The session owes a pong (or another reply its WebSocket layer writes on its own):
    /// publishers stop writing to the socket until the session's next write is done. The
    /// session is woken to make that write.
    pub fn hold(&self) {
        let inner = self.inner.lock().expect("outbox lock poisoned");
        self.busy.store(true, Ordering::Release);
        drop(inner);
        self.signal(QUEUED);
    }

    /// The rest of a half-sent message is waiting: the session writes it before it reads
    /// (its WebSocket layer may write a pong when it reads).
    pub fn owes_remainder(&self) -> bool {
        self.inner
            .lock()
            .expect("outbox lock poisoned")
            .remainder
            .is_some()
    }

    /// Messages publishers wrote to the socket themselves.
    pub fn written_direct(&self) -> u64 {
        self.inner
            .lock()
            .expect("outbox lock poisoned")
            .written_direct
    }

    /// Gives back the queue's buffer if it is empty (an idle session keeps none).
    pub fn release_buffer(&self) {
        let mut inner = self.inner.lock().expect("outbox lock poisoned");
        if inner.queue.is_empty() {
            inner.queue = VecDeque::new();
        }
    }

    /// Closes the outbox: later pushes are dropped and the writer is woken.
    pub fn close(&self, reason: Disconnect) {
        let mut inner = self.inner.lock().expect("outbox lock poisoned");
        if inner.closed.is_none() {
            inner.closed = Some(reason);
        }
        drop(inner);
        self.signal(QUEUED);
        self.closed_notify.notify_one();
    }

    pub fn closed(&self) -> Option<Disconnect> {
        self.inner.lock().expect("outbox lock poisoned").closed
    }

    /// Resolves once the outbox is closed.
    pub async fn wait_closed(&self) -> Disconnect {
        loop {
            if let Some(reason) = self.closed() {
                return reason;
            }
            self.closed_notify.notified().await;
        }
    }

    /// Raises `bits` and wakes the session.
    fn signal(&self, bits: u8) {
        self.signals.fetch_or(bits, Ordering::AcqRel);
        self.task.wake();
    }

    /// The signals raised since the last call (cleared), the session's task registered to
    /// be woken by the next one.
    pub fn take_signals(&self, cx: &Context<'_>) -> u8 {
        self.task.register(cx.waker());
        self.signals.swap(0, Ordering::AcqRel)
    }

    /// Raises `bits` again (signals taken but not yet handled).
    pub fn keep_signals(&self, bits: u8) {
        // Nothing to keep is the common case (a delivery and nothing else): no write to the
        // line every push also writes.
        if bits != 0 {
            self.signals.fetch_or(bits, Ordering::AcqRel);
        }
    }

    /// A waker that raises [`OTHER`]: what the session's other futures are polled with,
    /// so that it knows when they need polling again.
    pub fn waker(self: &Arc<Self>) -> WakerRef<'_> {
        waker_ref(self)
    }
}

impl ArcWake for Outbox {
    fn wake_by_ref(arc_self: &Arc<Self>) {
        arc_self.signal(OTHER);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::direct::Permit;
    use crate::hub::publication::Publication;
    use crate::stomp::Version;
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    fn sub(ack: AckMode) -> Arc<Subscription> {
        Arc::new(Subscription::new(1, "0", "/topic/chat", Version::V1_2, ack))
    }

    fn msg(body: Vec<u8>) -> Arc<Encoded> {
        Arc::new(
            Publication {
                destination: "/topic/chat".into(),
                event_type: "chat".into(),
                message_id: "m-1".into(),
                timestamp_ms: 0,
                content_type: "text/plain",
                body: body.into(),
                conflatable: false,
                origin: None,
                extra_headers: Vec::new(),
            }
            .encode(None),
        )
    }

    /// An outbox attached to one end of a socket pair; the other end is the client's.
    fn attached() -> (Outbox, UnixStream, UnixStream) {
        let (server, client) = UnixStream::pair().unwrap();
        server.set_nonblocking(true).unwrap();
        let outbox = Outbox::new(64 << 20, SlowConsumerPolicy::Disconnect);
        outbox.attach(server.as_raw_fd());
        (outbox, server, client)
    }

    /// Reads one unmasked WebSocket message of up to 64 KiB.
    fn read_message(client: &mut UnixStream) -> Vec<u8> {
        let mut h = [0u8; 2];
        client.read_exact(&mut h).unwrap();
        let len = match h[1] {
            126 => {
                let mut l = [0u8; 2];
                client.read_exact(&mut l).unwrap();
                u16::from_be_bytes(l) as usize
            }
            n => n as usize,
        };
        let mut body = vec![0u8; len];
        client.read_exact(&mut body).unwrap();
        body
    }

    #[test]
    fn a_publisher_that_keeps_up_writes_to_an_idle_session_itself() {
        let (outbox, _server, mut client) = attached();
        let (s, m) = (sub(AckMode::Auto), msg(b"hello".to_vec()));
        let _permit = Permit::new(true);
        assert!(matches!(outbox.push_message(&s, &m), Pushed::Written(_)));
        let got = read_message(&mut client);
        assert!(got.starts_with(b"MESSAGE\nsubscription:0\n"), "{got:?}");
        assert!(got.ends_with(b"\n\nhello\0"), "{got:?}");
        let mut items = Vec::new();
        let drained = outbox.drain(&mut items);
        assert!(items.is_empty() && drained.remainder.is_none());
        assert_eq!(outbox.written_direct(), 1);
    }

    #[test]
    fn every_copy_is_queued_without_a_permit_or_for_a_busy_or_client_ack_session() {
        let (outbox, _server, _client) = attached();
        let m = msg(b"x".to_vec());
        // No permit: the publisher is behind (or not one that may write).
        assert_eq!(outbox.push_message(&sub(AckMode::Auto), &m), Pushed::Queued);
        let _permit = Permit::new(true);
        // Something queued: later copies queue behind it, in order.
        assert_eq!(outbox.push_message(&sub(AckMode::Auto), &m), Pushed::Queued);
        let mut items = Vec::new();
        outbox.drain(&mut items);
        assert_eq!(items.len(), 2);
        // Drained and not yet written: the session is writing.
        assert_eq!(outbox.push_message(&sub(AckMode::Auto), &m), Pushed::Queued);
        outbox.drain(&mut items);
        outbox.written();
        // Client-ack subscriptions need their ack ids from the session.
        assert_eq!(
            outbox.push_message(&sub(AckMode::Client), &m),
            Pushed::Queued
        );
        outbox.drain(&mut items);
        outbox.written();
        // A pong owed.
        outbox.hold();
        assert_eq!(outbox.push_message(&sub(AckMode::Auto), &m), Pushed::Queued);
        outbox.drain(&mut items);
        outbox.written();
        // Detached: the socket is closing.
        outbox.detach();
        assert_eq!(outbox.push_message(&sub(AckMode::Auto), &m), Pushed::Queued);
        assert_eq!(outbox.written_direct(), 0);
    }

    #[test]
    fn the_rest_of_a_half_sent_message_goes_first_and_nothing_is_written_around_it() {
        let (outbox, _server, mut client) = attached();
        let s = sub(AckMode::Auto);
        let _permit = Permit::new(true);
        let big = msg(vec![b'y'; 4 << 20]);
        let Pushed::Written(n) = outbox.push_message(&s, &big) else {
            panic!("not written");
        };
        assert!(outbox.owes_remainder());
        // The next copy queues: the rest comes first.
        assert_eq!(
            outbox.push_message(&s, &msg(b"next".to_vec())),
            Pushed::Queued
        );
        let mut items = Vec::new();
        let rest = outbox.drain(&mut items).remainder.expect("the rest");
        assert_eq!(items.len(), 1);
        assert!(!outbox.owes_remainder());
        // Both halves together are the whole message.
        let total = n + rest.len();
        let mut got = vec![0u8; n];
        client.read_exact(&mut got).unwrap();
        got.extend_from_slice(&rest);
        assert_eq!(got.len(), total);
        assert_eq!(&got[..2], &[0x81, 127]);
        assert_eq!(
            u64::from_be_bytes(got[2..10].try_into().unwrap()) as usize,
            total - 10
        );
        assert!(got.ends_with(b"yyy\0"));
    }
}
