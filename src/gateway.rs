//! The gateway's shared state behind one cheap, cloneable handle: configuration, hub, bus,
//! metrics, connection limit and the shutdown signal.

use crate::auth::Auth;
use crate::bus::kafka::{KafkaBus, KafkaSettings};
use crate::bus::local::LocalBus;
use crate::bus::{Bus, Ingest};
use crate::config::Config;
use crate::hub::Hub;
use crate::ledger::ChatLedger;
use crate::limits::IpLimiter;
use crate::metrics::Metrics;
use crate::route::Router;
use crate::stomp::Limits;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub struct Gateway {
    pub config: Config,
    pub limits: Limits,
    pub hub: Arc<Hub>,
    pub bus: Arc<dyn Bus>,
    pub metrics: Arc<Metrics>,
    /// Authors of recent chat messages.
    pub ledger: Arc<ChatLedger>,
    /// Who clients are and what they may do.
    pub auth: Auth,
    /// Connections per client address.
    pub per_ip: Arc<IpLimiter>,
    /// Permits for open connections (WebSocket and TCP together).
    pub connections: Arc<Semaphore>,
    /// Cancelled when shutdown begins: sessions say goodbye and drain.
    pub shutdown: CancellationToken,
    /// Session tasks, awaited on shutdown.
    pub sessions: TaskTracker,
    draining: AtomicBool,
    next_session: AtomicU64,
    started: Instant,
}

impl Gateway {
    /// Builds the gateway and starts its bus (Kafka when configured, else the local bus and
    /// the demo feed). Must run inside a tokio runtime.
    pub fn start(config: Config) -> Result<Arc<Gateway>, String> {
        config.validate()?;
        let auth = Auth::new(&config.auth()?)?;
        let metrics = Arc::new(Metrics::new());
        let hub = Arc::new(Hub::new(metrics.clone()));
        let router = Router::defaults(&config.trades_topic, &config.chat_topic);
        let topics = router.topics();
        let ledger = Arc::new(ChatLedger::default());
        let ingest = Arc::new(Ingest {
            router,
            hub: hub.clone(),
            metrics: metrics.clone(),
            ledger: ledger.clone(),
            chat_topic: config.chat_topic.clone(),
        });
        let shutdown = CancellationToken::new();
        let bus: Arc<dyn Bus> = match &config.kafka_brokers {
            Some(brokers) => Arc::new(
                KafkaBus::start(
                    KafkaSettings {
                        brokers: brokers.clone(),
                        group_prefix: config.kafka_group_prefix.clone(),
                        topics,
                        send_timeout: Duration::from_millis(config.send_timeout_ms),
                        consumer_config: [
                            &config.kafka_config[..],
                            &config.kafka_consumer_config[..],
                        ]
                        .concat(),
                        producer_config: [
                            &config.kafka_config[..],
                            &config.kafka_producer_config[..],
                        ]
                        .concat(),
                    },
                    ingest,
                    metrics.clone(),
                    shutdown.clone(),
                )
                .map_err(|e| {
                    format!("--kafka-brokers {brokers}: cannot create the Kafka client: {e}")
                })?,
            ),
            None => Arc::new(LocalBus::new(ingest)),
        };
        if config.kafka_brokers.is_none() {
            tokio::spawn(crate::demo::run(
                bus.clone(),
                config.trades_topic.clone(),
                config.demo_markets.clone(),
                config.demo_rate,
                shutdown.clone(),
            ));
        }
        Ok(Arc::new(Gateway {
            limits: config.limits(),
            auth,
            ledger,
            per_ip: IpLimiter::new(config.max_connections_per_ip),
            connections: Arc::new(Semaphore::new(config.max_connections)),
            config,
            hub,
            bus,
            metrics,
            shutdown,
            sessions: TaskTracker::new(),
            draining: AtomicBool::new(false),
            next_session: AtomicU64::new(1),
            started: Instant::now(),
        }))
    }

    pub fn next_session_id(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }

    /// Ready to serve: the bus is connected and shutdown has not begun.
    pub fn ready(&self) -> bool {
        !self.draining.load(Ordering::Relaxed) && self.bus.ready()
    }

    /// First step of shutdown: stop reporting ready.
    pub fn begin_drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
}
