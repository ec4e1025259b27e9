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

use super::publication::Encoded;
use super::subscription::Subscription;
use crate::disconnect::Disconnect;
use bytes::Bytes;
use futures::task::{ArcWake, AtomicWaker, WakerRef, waker_ref};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU8, Ordering};
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
}

#[derive(Debug)]
pub struct Outbox {
    inner: Mutex<Inner>,
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

    /// Moves everything queued into `into` (in order, conflated ticks last) and returns the
    /// close reason if the outbox was closed.
    pub fn drain(&self, into: &mut Vec<Out>) -> Option<Disconnect> {
        let mut inner = self.inner.lock().expect("outbox lock poisoned");
        into.extend(inner.queue.drain(..));
        into.append(&mut inner.conflated);
        inner.conflated_at.clear();
        inner.bytes = 0;
        inner.closed
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
