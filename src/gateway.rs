//! The wiring: builds the hub, the chat service, ingest, the bus (Kafka when configured, else
//! the local bus and the demo feed) and the session context, and holds what the listeners
//! need (connection limits, readiness, the session tracker).

use crate::admission::Admission;
use crate::auth::Auth;
use crate::bus::kafka::{KafkaBus, KafkaSettings};
use crate::bus::local::LocalBus;
use crate::bus::{Bus, RecordSink};
use crate::chat::Chat;
use crate::config::Config;
use crate::hub::Hub;
use crate::ingest::Ingest;
use crate::metrics::Metrics;
use crate::session::SessionContext;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio_util::task::TaskTracker;

pub struct Gateway {
    pub config: Config,
    /// What every session may touch (hub, bus, chat, auth, metrics, shutdown, settings).
    pub sessions_cx: Arc<SessionContext>,
    pub hub: Arc<Hub>,
    pub bus: Arc<dyn Bus>,
    pub metrics: Arc<Metrics>,
    /// Who may open a connection (address, origin, rate, connection limits).
    pub admission: Arc<Admission>,
    /// The markets the feed follows (`/api/markets`).
    pub registry: Arc<crate::registry::Registry>,
    /// Session tasks, awaited on shutdown.
    pub sessions: TaskTracker,
    draining: AtomicBool,
    started: Instant,
}

impl Gateway {
    /// Builds the gateway and starts its bus. Must run inside a tokio runtime.
    pub fn start(config: Config) -> Result<Arc<Gateway>, String> {
        config.validate()?;
        let auth = Auth::new(&config.auth()?)?;
        let metrics = Arc::new(Metrics::new());
        let hub = Arc::new(Hub::new(metrics.clone(), config.history()));
        let chat = Arc::new(Chat::new(&config.chat_topic));
        let router = config.router()?;
        let topics = router.topics();
        let ingest = Arc::new(Ingest {
            router,
            hub: hub.clone(),
            chat: chat.clone(),
            metrics: metrics.clone(),
            direct_writes: config.direct_writes,
        });
        let sink: Arc<dyn RecordSink> = ingest.clone();
        let shutdown = tokio_util::sync::CancellationToken::new();
        let bus: Arc<dyn Bus> = match &config.kafka_brokers {
            Some(brokers) => Arc::new(
                KafkaBus::start(
                    KafkaSettings {
                        brokers: brokers.clone(),
                        group_prefix: config.kafka_group_prefix.clone(),
                        topics,
                        history_records: if config.history_size > 0 {
                            config.kafka_history_records
                        } else {
                            0
                        },
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
                    sink,
                    metrics.clone(),
                    shutdown.clone(),
                )
                .map_err(|e| {
                    format!("--kafka-brokers {brokers}: cannot create the Kafka client: {e}")
                })?,
            ),
            None => Arc::new(LocalBus::new(sink)),
        };
        let registry = crate::registry::for_gateway(
            config.kafka_brokers.as_deref(),
            &config.markets_topic,
            &config.kafka_config,
            &config.demo_markets,
            &shutdown,
        )?;
        if config.kafka_brokers.is_none() && config.live_feed {
            let (exchanges, topic) = (&config.exchanges, &config.trades_topic);
            crate::feed::spawn_live(exchanges, topic, &registry, bus.clone(), &shutdown);
        } else if config.kafka_brokers.is_none() {
            tokio::spawn(crate::demo::run(
                bus.clone(),
                config.trades_topic.clone(),
                registry.subscribe(),
                config.demo_rate,
                shutdown.clone(),
            ));
        }
        tokio::spawn(crate::memory::run(
            Duration::from_millis(config.memory_trim_interval_ms),
            shutdown.clone(),
        ));
        let sessions_cx = Arc::new(SessionContext::new(
            hub.clone(),
            ingest,
            bus.clone(),
            chat,
            auth,
            metrics.clone(),
            shutdown,
            config.session_settings(),
        ));
        Ok(Arc::new(Gateway {
            admission: Arc::new(Admission::new(config.admission(), metrics.clone())),
            config,
            sessions_cx,
            hub,
            bus,
            metrics,
            registry,
            sessions: TaskTracker::new(),
            draining: AtomicBool::new(false),
            started: Instant::now(),
        }))
    }

    /// Serving: the bus is connected and shutdown has not begun.
    pub fn serving(&self) -> bool {
        !self.draining() && self.bus.ready()
    }

    /// First step of shutdown: stop reporting ready.
    pub fn begin_drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Tells every session to say goodbye and drain.
    pub fn close_sessions(&self) {
        self.sessions_cx.shutdown.cancel();
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
}
