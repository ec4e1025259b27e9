//! What a session waits for in order: broker acknowledgements of its SENDs, read-backs for
//! resuming subscriptions, and the receipts and DISCONNECT queued behind them, so that
//! receipts keep the order of the frames that asked for them.

use crate::bus::{LogRange, ReadBack, SendError};
use crate::hub::Subscriber;
use crate::hub::publication::Origin;
use crate::stomp::Frame;
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

/// Something the session waits for in order: a broker acknowledgement, or a receipt queued
/// behind one.
pub enum Pending {
    Receipt(Frame),
    Send {
        receipt: Option<String>,
        result: Result<(), SendError>,
    },
    Disconnect(Option<String>),
    /// A resuming subscription whose gap was read back from the log.
    ReadBack {
        subscriber: Subscriber,
        cursor: Vec<Origin>,
        ranges: Vec<LogRange>,
        receipt: Option<String>,
        result: Result<ReadBack, String>,
    },
}

pub type PendingFuture = Pin<Box<dyn Future<Output = Pending> + Send>>;

/// The acknowledgements and receipts the session waits for, in order. Most sessions (a
/// dashboard that only subscribes) never wait for one, so the queue, two allocations of
/// its own, is made on first use and given back when it empties.
#[derive(Default)]
pub struct PendingQueue(Option<Box<FuturesOrdered<PendingFuture>>>);

impl PendingQueue {
    pub fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|q| q.is_empty())
    }

    pub fn push_back(&mut self, future: PendingFuture) {
        self.0
            .get_or_insert_with(|| Box::new(FuturesOrdered::new()))
            .push_back(future);
    }

    /// The next settled item; `Ready(None)` when nothing is waited for.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Pending>> {
        let Some(queue) = self.0.as_mut() else {
            return Poll::Ready(None);
        };
        let done = ready!(queue.poll_next_unpin(cx));
        if queue.is_empty() {
            self.0 = None;
        }
        Poll::Ready(done)
    }

    pub async fn next(&mut self) -> Option<Pending> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }
}
