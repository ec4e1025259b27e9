//! `stompgate feed`: the bridge from the exchanges' public WebSocket APIs (Upbit, Bithumb)
//! to Kafka, run as its own process so that N gateway replicas do not produce N copies of
//! every trade. It follows the market registry (the compacted `markets` topic), subscribes
//! to the trades of the registered markets, and produces each trade once, normalized to the
//! trades contract, with exact decimals.
//!
//! - [`exchange`]: one exchange's WebSocket client (subscribe, keep-alive, reconnect).
//! - [`trade`]: parsing the exchange's messages and the normalized record.
//! - [`dedup`]: dropping the trades a resubscription repeats.
//! - [`backoff`]: reconnect delays.
//! - [`sink`]: the Kafka producer.
//! - [`metrics`]: per-exchange metrics on `/metrics`.

pub mod backoff;
pub mod dedup;
pub mod exchange;
pub mod metrics;
pub mod sink;
pub mod trade;

use crate::bus::Bus;
use crate::registry::{EXCHANGES, Market, Registry};
use axum::response::IntoResponse;
use clap::Parser;
use exchange::{ExchangeSettings, Format};
use metrics::FeedMetrics;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "stompgate feed",
    bin_name = "stompgate feed",
    version,
    about = "Bridge Upbit and Bithumb trades to Kafka, following the market registry"
)]
pub struct FeedConfig {
    /// Kafka bootstrap servers (host:port,...).
    #[arg(long, env = "STOMPGATE_KAFKA_BROKERS")]
    pub kafka_brokers: String,

    /// librdkafka settings for the feed's clients, `key=value`, repeatable.
    #[arg(long = "kafka-config", env = "STOMPGATE_KAFKA_CONFIG", value_delimiter = ',', value_parser = key_value)]
    pub kafka_config: Vec<(String, String)>,

    #[command(flatten)]
    pub exchanges: ExchangeArgs,

    /// Compacted topic of the market registry (key `<exchange>:<symbol>`).
    #[arg(long, env = "STOMPGATE_MARKETS_TOPIC", default_value = "markets")]
    pub markets_topic: String,

    /// Topic the trades of every exchange go to (unless --topic-per-exchange).
    #[arg(long, env = "STOMPGATE_TRADES_TOPIC", default_value = "trades")]
    pub trades_topic: String,

    /// One topic per exchange instead of --trades-topic: `topic-upbit`, `topic-bithumb`
    /// (named by --exchange-topic).
    #[arg(long, env = "STOMPGATE_TOPIC_PER_EXCHANGE", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub topic_per_exchange: bool,

    /// Name of an exchange's topic with --topic-per-exchange; `{exchange}` is replaced.
    #[arg(
        long,
        env = "STOMPGATE_EXCHANGE_TOPIC",
        default_value = "topic-{exchange}"
    )]
    pub exchange_topic: String,

    /// Markets registered at start if missing: `upbit:KRW-BTC`, or `KRW-BTC` for every
    /// exchange. The registry decides afterwards (POST/DELETE /api/markets on a gateway).
    #[arg(long, env = "STOMPGATE_FEED_MARKETS", value_delimiter = ',')]
    pub markets: Vec<String>,

    /// Address of the feed's metrics endpoint.
    #[arg(long, env = "STOMPGATE_FEED_BIND", default_value = "0.0.0.0")]
    pub bind: IpAddr,

    /// Port of the feed's `/metrics` and `/healthz` (0 picks a free one and prints it).
    #[arg(long, env = "STOMPGATE_FEED_METRICS_PORT", default_value_t = 9464)]
    pub metrics_port: u16,

    /// Log as JSON lines instead of human-readable text.
    #[arg(long, env = "STOMPGATE_LOG_JSON", default_value_t = false)]
    pub log_json: bool,
}

/// How the exchanges are reached; shared by `stompgate feed` and the gateway's `--live-feed`.
#[derive(Debug, Clone, clap::Args)]
pub struct ExchangeArgs {
    /// Upbit's public WebSocket API.
    #[arg(
        long,
        env = "STOMPGATE_UPBIT_URL",
        default_value = "wss://api.upbit.com/websocket/v1"
    )]
    pub upbit_url: String,

    /// Bithumb's public WebSocket API (same request format as Upbit's).
    #[arg(
        long,
        env = "STOMPGATE_BITHUMB_URL",
        default_value = "wss://ws-api.bithumb.com/websocket/v1"
    )]
    pub bithumb_url: String,

    /// Message format asked of the exchanges (SIMPLE: abbreviated keys).
    #[arg(
        long,
        env = "STOMPGATE_FEED_FORMAT",
        value_enum,
        default_value = "default"
    )]
    pub feed_format: Format,

    /// Interval of the keep-alive `PING` (Upbit closes idle connections after ~120 s), ms.
    #[arg(long, env = "STOMPGATE_FEED_PING_MS", default_value_t = 30_000)]
    pub feed_ping_ms: u64,

    /// Reconnect when nothing at all arrived for this long, ms.
    #[arg(long, env = "STOMPGATE_FEED_IDLE_TIMEOUT_MS", default_value_t = 90_000)]
    pub feed_idle_timeout_ms: u64,

    /// First reconnect delay, ms (doubles per failure, with jitter).
    #[arg(long, env = "STOMPGATE_FEED_BACKOFF_MS", default_value_t = 500)]
    pub feed_backoff_ms: u64,

    /// Longest reconnect delay, ms.
    #[arg(long, env = "STOMPGATE_FEED_BACKOFF_MAX_MS", default_value_t = 30_000)]
    pub feed_backoff_max_ms: u64,
}

impl ExchangeArgs {
    /// Settings of every exchange; `topic` names the topic of an exchange.
    pub fn settings(&self, topic: impl Fn(&str) -> String) -> Vec<ExchangeSettings> {
        EXCHANGES
            .iter()
            .map(|&name| ExchangeSettings {
                name,
                url: match name {
                    "upbit" => self.upbit_url.clone(),
                    _ => self.bithumb_url.clone(),
                },
                format: self.feed_format,
                topic: topic(name),
                ping_interval: Duration::from_millis(self.feed_ping_ms.max(100)),
                idle_timeout: Duration::from_millis(self.feed_idle_timeout_ms.max(200)),
                backoff_initial: Duration::from_millis(self.feed_backoff_ms.max(10)),
                backoff_max: Duration::from_millis(self.feed_backoff_max_ms.max(10)),
            })
            .collect()
    }
}

fn key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(format!("'{text}' is not key=value")),
    }
}

/// `upbit:KRW-BTC` -> that market; `KRW-BTC` -> it on every exchange.
pub fn parse_markets(list: &[String]) -> Result<Vec<Market>, String> {
    let mut out = Vec::new();
    for item in list.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        match item.split_once(':') {
            Some((exchange, symbol)) => out.push(Market::new(exchange, symbol)?),
            None => {
                for exchange in EXCHANGES {
                    out.push(Market::new(exchange, item)?);
                }
            }
        }
    }
    Ok(out)
}

/// Starts one client per exchange on `bus`, following `registry`.
pub fn spawn_exchanges(
    settings: Vec<ExchangeSettings>,
    registry: &Registry,
    bus: Arc<dyn Bus>,
    metrics: Arc<FeedMetrics>,
    shutdown: &CancellationToken,
) -> tokio_util::task::TaskTracker {
    let tasks = tokio_util::task::TaskTracker::new();
    for s in settings {
        tasks.spawn(exchange::run(
            s,
            registry.subscribe(),
            bus.clone(),
            metrics.clone(),
            shutdown.clone(),
        ));
    }
    tasks.close();
    tasks
}

/// `--live-feed` on the embedded default: the exchange clients on the gateway's local bus.
pub fn spawn_live(
    exchanges: &ExchangeArgs,
    trades_topic: &str,
    registry: &Registry,
    bus: Arc<dyn Bus>,
    shutdown: &CancellationToken,
) {
    let settings = exchanges.settings(|_| trades_topic.to_string());
    tracing::info!("live exchange feed started on the local bus (--live-feed)");
    spawn_exchanges(
        settings,
        registry,
        bus,
        Arc::new(FeedMetrics::new()),
        shutdown,
    );
}

impl FeedConfig {
    pub fn load<I, T>(args: I) -> Result<FeedConfig, String>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let config = FeedConfig::try_parse_from(args).map_err(|e| {
            // --help and --version print and exit 0, like the gateway's.
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) {
                let _ = e.print();
                std::process::exit(0);
            }
            e.to_string()
        })?;
        parse_markets(&config.markets).map_err(|e| format!("--markets: {e}"))?;
        if config.topic_per_exchange && !config.exchange_topic.contains("{exchange}") {
            return Err(format!(
                "--exchange-topic '{}' must contain {{exchange}} so each exchange has its own topic",
                config.exchange_topic
            ));
        }
        Ok(config)
    }

    pub fn log_json(&self) -> bool {
        self.log_json
    }

    /// The topic of an exchange's trades.
    pub fn topic(&self, exchange: &str) -> String {
        if self.topic_per_exchange {
            self.exchange_topic.replace("{exchange}", exchange)
        } else {
            self.trades_topic.clone()
        }
    }
}

/// Runs the feed until `shutdown` is cancelled.
pub async fn run(config: FeedConfig, shutdown: CancellationToken) -> Result<(), String> {
    let metrics = Arc::new(FeedMetrics::new());
    let registry = Registry::kafka(
        &config.kafka_brokers,
        &config.markets_topic,
        &config.kafka_config,
        shutdown.clone(),
    )?;
    let sink = Arc::new(sink::KafkaSink::new(
        &config.kafka_brokers,
        &config.kafka_config,
    )?);
    let listener = tokio::net::TcpListener::bind((config.bind, config.metrics_port))
        .await
        .map_err(|e| format!("--metrics-port {}: cannot listen: {e}", config.metrics_port))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let shown = if addr.ip().is_unspecified() {
        std::net::SocketAddr::new([127, 0, 0, 1].into(), addr.port())
    } else {
        addr
    };
    let m = metrics.clone();
    let app = axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok\n" }))
        .route(
            "/metrics",
            axum::routing::get(move || {
                let m = m.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4",
                        )],
                        m.render(),
                    )
                        .into_response()
                }
            }),
        );
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
    });
    println!("stompgate feed metrics on http://{shown}/metrics");

    // Seed the registry with --markets once it has been read.
    let seed = parse_markets(&config.markets)?;
    if !seed.is_empty() {
        let r = registry.clone();
        tokio::spawn(async move {
            while !r.wait_loaded(Duration::from_secs(5)).await {
                tracing::info!("waiting for the markets topic before registering --markets");
            }
            for m in seed {
                let key = m.key();
                match r.add(m).await {
                    Ok(true) => tracing::info!(market = %key, "registered from --markets"),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(market = %key, error = %e, "cannot register"),
                }
            }
        });
    }
    let settings = config.exchanges.settings(|e| config.topic(e));
    tracing::info!(
        brokers = %config.kafka_brokers,
        topics = ?settings.iter().map(|s| (s.name, s.topic.clone())).collect::<Vec<_>>(),
        "feed started"
    );
    let tasks = spawn_exchanges(
        settings,
        &registry,
        sink.clone(),
        metrics.clone(),
        &shutdown,
    );
    shutdown.cancelled().await;
    let _ = tokio::time::timeout(Duration::from_secs(5), tasks.wait()).await;
    let s = sink.clone();
    let _ = tokio::task::spawn_blocking(move || s.flush(Duration::from_secs(5))).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markets_flag() {
        let m = parse_markets(&["upbit:KRW-BTC".into(), " KRW-ETH ".into(), "".into()]).unwrap();
        let keys: Vec<String> = m.iter().map(Market::key).collect();
        assert_eq!(keys, ["upbit:KRW-BTC", "upbit:KRW-ETH", "bithumb:KRW-ETH"]);
        assert!(parse_markets(&["kraken:KRW-BTC".into()]).is_err());
    }

    #[test]
    fn flags_and_topics() {
        let c = FeedConfig::load(["feed", "--kafka-brokers", "k:9092"]).unwrap();
        assert_eq!(c.exchanges.upbit_url, "wss://api.upbit.com/websocket/v1");
        assert_eq!(
            c.exchanges.bithumb_url,
            "wss://ws-api.bithumb.com/websocket/v1"
        );
        assert_eq!(c.markets_topic, "markets");
        assert_eq!(c.topic("upbit"), "trades");
        let c = FeedConfig::load(["feed", "--kafka-brokers", "k", "--topic-per-exchange"]).unwrap();
        assert_eq!(c.topic("upbit"), "topic-upbit");
        assert_eq!(c.topic("bithumb"), "topic-bithumb");
        assert!(
            FeedConfig::load(["feed"]).is_err(),
            "--kafka-brokers is required"
        );
        let e = FeedConfig::load(["feed", "--kafka-brokers", "k", "--markets", "KRW"]).unwrap_err();
        assert!(e.contains("--markets") && e.contains("malformed symbol"));
    }
}
