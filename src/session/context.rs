//! What a session may touch of the gateway: the hub it subscribes on, ingest (to route records
//! read back for a resume), the bus it produces to,
//! the chat service, authentication, metrics, the shutdown signal and its settings. Built once
//! by the gateway; sessions never see the gateway itself.

use crate::auth::Auth;
use crate::bus::Bus;
use crate::chat::Chat;
use crate::hub::Hub;
use crate::hub::outbox::SlowConsumerPolicy;
use crate::ingest::Ingest;
use crate::metrics::Metrics;
use crate::stomp::Limits;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The settings a session reads (each is a flag; see `config.rs` for defaults).
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// Frame parse limits (body, header count, header line).
    pub frame_limits: Limits,
    /// Time allowed from connection to CONNECT.
    pub connect_timeout: Duration,
    /// The server's heart-beat interval in ms (0 = none).
    pub heartbeat_ms: u64,
    /// Time one write may take.
    pub write_timeout: Duration,
    /// Several frames per WebSocket message.
    pub ws_batch: bool,
    /// Publishers that keep up write to idle WebSocket subscribers themselves.
    pub direct_writes: bool,
    /// Largest WebSocket message (or TCP write) the writer builds from a batch.
    pub max_write_bytes: usize,
    /// Byte bound of the outbox and what happens past it.
    pub outbox_bytes: usize,
    pub slow_consumer: SlowConsumerPolicy,
    pub max_subscriptions: usize,
    /// Total bytes of subscription ids and destinations one session may hold.
    pub max_subscription_bytes: usize,
    pub max_pending_acks: usize,
    /// Open transactions per session, operations and bytes per transaction.
    pub max_transactions: usize,
    pub max_transaction_ops: usize,
    pub max_transaction_bytes: usize,
    /// SENDs per second and burst per session (rate 0 = unlimited).
    pub send_rate: f64,
    pub send_burst: f64,
    /// Time to settle receipts and flush on shutdown.
    pub shutdown_grace: Duration,
}

pub struct SessionContext {
    pub hub: Arc<Hub>,
    /// Routes records read back from the log for a resuming client.
    pub ingest: Arc<Ingest>,
    pub bus: Arc<dyn Bus>,
    pub chat: Arc<Chat>,
    pub auth: Auth,
    pub metrics: Arc<Metrics>,
    /// Cancelled when shutdown begins: sessions say goodbye and drain.
    pub shutdown: CancellationToken,
    pub settings: SessionSettings,
    next_session: AtomicU64,
}

impl SessionContext {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        hub: Arc<Hub>,
        ingest: Arc<Ingest>,
        bus: Arc<dyn Bus>,
        chat: Arc<Chat>,
        auth: Auth,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
        settings: SessionSettings,
    ) -> SessionContext {
        SessionContext {
            hub,
            ingest,
            bus,
            chat,
            auth,
            metrics,
            shutdown,
            settings,
            next_session: AtomicU64::new(1),
        }
    }

    /// A new session id, unique in this process.
    pub fn next_session_id(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }
}
