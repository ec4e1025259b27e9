//! Gateway configuration: command-line flags, each with an environment variable and a
//! documented default. `stompgate --help` lists them all.

use crate::admission::{AdmissionSettings, Cidr, ForwardedHeader};
use crate::hub::HistorySettings;
use crate::hub::outbox::SlowConsumerPolicy;
use crate::session::SessionSettings;
use crate::stomp::Limits;
use clap::{CommandFactory, FromArgMatches, Parser};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use routes::{InboundRouteConfig, RoutesConfig, SendRouteConfig};

#[derive(Debug, Clone, Parser)]
#[command(
    name = "stompgate",
    version,
    about = "Kafka to STOMP-over-WebSocket fan-out gateway",
    after_help = "The exchange bridge (Upbit, Bithumb -> Kafka) is `stompgate feed`; see `stompgate feed --help`."
)]
pub struct Config {
    /// TOML file of settings (keys are the long option names, e.g. `port = 8080` or
    /// `kafka-brokers = "k1:9092"`). Flags win over environment variables, which win over
    /// the file.
    #[arg(long, env = "STOMPGATE_CONFIG")]
    pub config: Option<PathBuf>,

    /// Address to listen on for HTTP and WebSocket.
    #[arg(long, env = "STOMPGATE_BIND", default_value = "0.0.0.0")]
    pub bind: IpAddr,

    /// HTTP/WebSocket port (0 picks a free one and prints it).
    #[arg(long, env = "STOMPGATE_PORT", default_value_t = 8080)]
    pub port: u16,

    /// Raw STOMP-over-TCP port (off unless given; 61613 is the usual STOMP port).
    #[arg(long, env = "STOMPGATE_TCP_PORT")]
    pub tcp_port: Option<u16>,

    /// Kafka bootstrap servers (host:port,...). Without it the gateway runs the embedded
    /// default: an in-process bus and the demo market feed.
    #[arg(long, env = "STOMPGATE_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,

    /// Prefix of the per-replica Kafka consumer group id (prefix-host-random).
    #[arg(
        long,
        env = "STOMPGATE_KAFKA_GROUP_PREFIX",
        default_value = "stompgate"
    )]
    pub kafka_group_prefix: String,

    /// librdkafka settings for both the consumer and the producer, `key=value`, repeatable
    /// (e.g. `security.protocol=SASL_SSL`, `sasl.mechanisms=PLAIN`).
    #[arg(long = "kafka-config", env = "STOMPGATE_KAFKA_CONFIG", value_delimiter = ',', value_parser = key_value)]
    pub kafka_config: Vec<(String, String)>,

    /// librdkafka settings for the consumer only, `key=value`, repeatable.
    #[arg(long = "kafka-consumer-config", env = "STOMPGATE_KAFKA_CONSUMER_CONFIG", value_delimiter = ',', value_parser = key_value)]
    pub kafka_consumer_config: Vec<(String, String)>,

    /// librdkafka settings for the producer only, `key=value`, repeatable.
    #[arg(long = "kafka-producer-config", env = "STOMPGATE_KAFKA_PRODUCER_CONFIG", value_delimiter = ',', value_parser = key_value)]
    pub kafka_producer_config: Vec<(String, String)>,

    /// Kafka topic of exchange trades (event-type `trade`).
    #[arg(long, env = "STOMPGATE_TRADES_TOPIC", default_value = "trades")]
    pub trades_topic: String,

    /// More topics of trades, routed like --trades-topic (e.g. one per exchange:
    /// `topic-upbit,topic-bithumb`, as `stompgate feed --topic-per-exchange` writes them).
    #[arg(long, env = "STOMPGATE_EXTRA_TRADES_TOPICS", value_delimiter = ',')]
    pub extra_trades_topics: Vec<String>,

    /// Kafka topic of chat events (event-type from the record's `event-type` header).
    #[arg(long, env = "STOMPGATE_CHAT_TOPIC", default_value = "chat")]
    pub chat_topic: String,

    /// Markets of the demo feed (embedded default only).
    #[arg(
        long,
        env = "STOMPGATE_DEMO_MARKETS",
        default_value = "KRW-BTC,KRW-ETH,KRW-XRP",
        value_delimiter = ','
    )]
    pub demo_markets: Vec<String>,

    /// Demo trades per second per market (0 turns the demo feed off).
    #[arg(long, env = "STOMPGATE_DEMO_RATE", default_value_t = 5.0)]
    pub demo_rate: f64,

    /// Serve the dashboard from this folder instead of the files built into the binary.
    #[arg(long, env = "STOMPGATE_STATIC_DIR")]
    pub static_dir: Option<PathBuf>,

    /// Slow-consumer policy when a session's outbox is full.
    #[arg(
        long,
        env = "STOMPGATE_SLOW_CONSUMER",
        value_enum,
        default_value = "disconnect"
    )]
    pub slow_consumer: SlowConsumerPolicy,

    /// Bound of each session's outbox, in bytes of queued frames.
    #[arg(long, env = "STOMPGATE_OUTBOX_BYTES", default_value_t = 1024 * 1024)]
    pub outbox_bytes: usize,

    /// A write to one client that takes longer than this closes it as a slow consumer (ms).
    #[arg(long, env = "STOMPGATE_WRITE_TIMEOUT_MS", default_value_t = 10_000)]
    pub write_timeout_ms: u64,

    /// Maximum concurrent connections (WebSocket and TCP together).
    #[arg(long, env = "STOMPGATE_MAX_CONNECTIONS", default_value_t = 50_000)]
    pub max_connections: usize,

    /// Maximum subscriptions per session.
    #[arg(long, env = "STOMPGATE_MAX_SUBSCRIPTIONS", default_value_t = 256)]
    pub max_subscriptions: usize,

    /// Total bytes of subscription ids and destinations one session may hold.
    #[arg(long, env = "STOMPGATE_MAX_SUBSCRIPTION_BYTES", default_value_t = 16 * 1024)]
    pub max_subscription_bytes: usize,

    /// Open transactions per session.
    #[arg(long, env = "STOMPGATE_MAX_TRANSACTIONS", default_value_t = 16)]
    pub max_transactions: usize,

    /// Operations (SEND, ACK, NACK) one transaction may stage.
    #[arg(long, env = "STOMPGATE_MAX_TRANSACTION_OPS", default_value_t = 1000)]
    pub max_transaction_ops: usize,

    /// Bytes one transaction may stage (records of its SENDs, ids of its ACKs).
    #[arg(long, env = "STOMPGATE_MAX_TRANSACTION_BYTES", default_value_t = 1024 * 1024)]
    pub max_transaction_bytes: usize,

    /// Recent messages kept per destination for `x-history` and `x-resume-after` (0: none).
    #[arg(long, env = "STOMPGATE_HISTORY_SIZE", default_value_t = 100)]
    pub history_size: usize,

    /// Bytes of history kept in all; past it the least recently used destinations lose
    /// their history first.
    #[arg(long, env = "STOMPGATE_HISTORY_BYTES", default_value_t = 128 * 1024 * 1024)]
    pub history_bytes: usize,

    /// Records per Kafka partition read back at start to warm the history (end - N), before
    /// the replica says ready.
    #[arg(
        long,
        env = "STOMPGATE_KAFKA_HISTORY_RECORDS",
        default_value_t = 10_000
    )]
    pub kafka_history_records: i64,

    /// How often freed memory is handed back to the OS (ms; 0: never). Without it, the heap
    /// a burst filled stays with the process.
    #[arg(
        long,
        env = "STOMPGATE_MEMORY_TRIM_INTERVAL_MS",
        default_value_t = 10_000
    )]
    pub memory_trim_interval_ms: u64,

    /// Largest WebSocket message (or TCP write) built from a batch of frames, in bytes; a
    /// single larger frame goes alone. Bounds what a session holds while a write is under way.
    #[arg(long, env = "STOMPGATE_MAX_WRITE_BYTES", default_value_t = 64 * 1024)]
    pub max_write_bytes: usize,

    /// Largest frame body accepted from a client, in bytes.
    #[arg(long, env = "STOMPGATE_MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,

    /// Most headers in one client frame.
    #[arg(long, env = "STOMPGATE_MAX_HEADERS", default_value_t = 32)]
    pub max_headers: usize,

    /// Longest header line in a client frame, in bytes.
    #[arg(long, env = "STOMPGATE_MAX_HEADER_LINE", default_value_t = 4096)]
    pub max_header_line: usize,

    /// Most unacknowledged messages a client/client-individual session may hold before it
    /// is treated as a slow consumer.
    #[arg(long, env = "STOMPGATE_MAX_PENDING_ACKS", default_value_t = 10_000)]
    pub max_pending_acks: usize,

    /// Heart-beat the server offers: send interval and expected receive interval, ms.
    #[arg(long, env = "STOMPGATE_HEARTBEAT_MS", default_value_t = 10_000)]
    pub heartbeat_ms: u64,

    /// Time a client has to send CONNECT after the transport opens, ms.
    #[arg(long, env = "STOMPGATE_CONNECT_TIMEOUT_MS", default_value_t = 10_000)]
    pub connect_timeout_ms: u64,

    /// Time the broker has to acknowledge a SEND before the client gets an ERROR, ms.
    #[arg(long, env = "STOMPGATE_SEND_TIMEOUT_MS", default_value_t = 5_000)]
    pub send_timeout_ms: u64,

    /// Put several STOMP frames in one WebSocket message when a batch holds more than one.
    #[arg(long, env = "STOMPGATE_WS_BATCH", default_value_t = true, action = clap::ArgAction::Set)]
    pub ws_batch: bool,

    /// Let a publisher that keeps up write a MESSAGE to an idle WebSocket subscriber itself
    /// (auto-ack subscriptions), instead of waking the subscriber's session for it.
    #[arg(long, env = "STOMPGATE_DIRECT_WRITES", default_value_t = true, action = clap::ArgAction::Set)]
    pub direct_writes: bool,

    /// Deadline for draining clients on shutdown, ms.
    #[arg(long, env = "STOMPGATE_SHUTDOWN_GRACE_MS", default_value_t = 5_000)]
    pub shutdown_grace_ms: u64,

    /// HS256 shared secret for JWTs on CONNECT (turns authentication on).
    #[arg(long, env = "STOMPGATE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// PEM file with the RSA (RS256) or EC (ES256) public key for JWTs (turns authentication on).
    #[arg(long, env = "STOMPGATE_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<PathBuf>,

    /// Required `iss` claim of tokens.
    #[arg(long, env = "STOMPGATE_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Required `aud` claim of tokens.
    #[arg(long, env = "STOMPGATE_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// With authentication on: what clients without a token may subscribe to (patterns;
    /// `*` one segment, `**` the rest, as the last segment only; empty: a token is required).
    #[arg(
        long,
        env = "STOMPGATE_ANONYMOUS_SUBSCRIBE",
        default_value = "/topic/market/*",
        value_delimiter = ','
    )]
    pub anonymous_subscribe: Vec<String>,

    /// Subscribe patterns of a token without a `subscribe` claim.
    #[arg(
        long,
        env = "STOMPGATE_DEFAULT_SUBSCRIBE",
        default_value = "/topic/market/*",
        value_delimiter = ','
    )]
    pub default_subscribe: Vec<String>,

    /// Send patterns of a token without a `send` claim.
    #[arg(
        long,
        env = "STOMPGATE_DEFAULT_SEND",
        default_value = "/app/market/*/chat",
        value_delimiter = ','
    )]
    pub default_send: Vec<String>,

    /// Origins allowed to open WebSockets besides same-origin pages and non-browser clients,
    /// as scheme://host[:port] compared exactly (`*` allows all; `:*` any port).
    #[arg(
        long,
        env = "STOMPGATE_ALLOWED_ORIGINS",
        default_value = "http://localhost:*,http://127.0.0.1:*,https://localhost:*,https://127.0.0.1:*",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,

    /// SENDs per second allowed to one session (0: unlimited).
    #[arg(long, env = "STOMPGATE_SEND_RATE", default_value_t = 50.0)]
    pub send_rate: f64,

    /// SENDs a session may make in a burst above the rate.
    #[arg(long, env = "STOMPGATE_SEND_BURST", default_value_t = 100.0)]
    pub send_burst: f64,

    /// Concurrent connections per client address, IPv6 per --ipv6-prefix network
    /// (0: unlimited).
    #[arg(long, env = "STOMPGATE_MAX_CONNECTIONS_PER_IP", default_value_t = 1000)]
    pub max_connections_per_ip: usize,

    // Connection edge: who may connect, how fast, and how long a connection may dawdle
    // before it is a session (see docs/operations.md).
    /// Proxies (addresses or CIDR networks, comma-separated) whose forwarding header is
    /// believed: it is read right to left, skipping these hops, and the first other address
    /// is the client. Empty (the default): forwarding headers are ignored.
    #[arg(long, env = "STOMPGATE_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<Cidr>,

    /// The header the trusted proxies write the client address into.
    #[arg(
        long,
        env = "STOMPGATE_FORWARDED_HEADER",
        value_enum,
        default_value = "x-forwarded-for"
    )]
    pub forwarded_header: ForwardedHeader,

    /// IPv6 clients share per-address limits per network of this prefix length.
    #[arg(long, env = "STOMPGATE_IPV6_PREFIX", default_value_t = 64)]
    pub ipv6_prefix: u8,

    /// New connections (WebSocket upgrades and TCP) per second per client address; more
    /// get HTTP 429 (0: unlimited).
    #[arg(long, env = "STOMPGATE_CONNECT_RATE_PER_IP", default_value_t = 20.0)]
    pub connect_rate_per_ip: f64,

    /// New connections an address may open in a burst above the rate.
    #[arg(long, env = "STOMPGATE_CONNECT_BURST_PER_IP", default_value_t = 40.0)]
    pub connect_burst_per_ip: f64,

    /// Open plain-HTTP connections (not yet upgraded) of the whole gateway; more are
    /// closed at accept.
    #[arg(long, env = "STOMPGATE_MAX_HTTP_CONNECTIONS", default_value_t = 4096)]
    pub max_http_connections: usize,

    /// Open plain-HTTP connections (not yet upgraded) per socket address; trusted proxies
    /// are exempt (0: unlimited).
    #[arg(
        long,
        env = "STOMPGATE_MAX_HTTP_CONNECTIONS_PER_IP",
        default_value_t = 64
    )]
    pub max_http_connections_per_ip: usize,

    /// Time a client has to send the whole header of an HTTP request (the WebSocket
    /// upgrade included), ms.
    #[arg(
        long,
        env = "STOMPGATE_HTTP_HEADER_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub http_header_timeout_ms: u64,

    /// A plain-HTTP connection with no bytes read or written for this long is closed, ms.
    #[arg(long, env = "STOMPGATE_HTTP_IDLE_TIMEOUT_MS", default_value_t = 30_000)]
    pub http_idle_timeout_ms: u64,

    /// Most bytes a WebSocket may have waiting to be written (replies and pongs to a
    /// client that does not read). Must exceed --outbox-bytes by at least 64 KiB.
    #[arg(long, env = "STOMPGATE_WS_MAX_WRITE_BUFFER_BYTES", default_value_t = 2 * 1024 * 1024)]
    pub ws_max_write_buffer_bytes: usize,

    /// WebSocket pings a client may send per second; more close the connection
    /// (0: unlimited).
    #[arg(long, env = "STOMPGATE_MAX_PINGS_PER_SECOND", default_value_t = 10)]
    pub max_pings_per_second: u32,

    /// Serve /metrics and /api/stats only on this port (same --bind address); the public
    /// port then keeps /ws, the dashboard, /healthz, /readyz and GET /api/markets.
    #[arg(long, env = "STOMPGATE_INTERNAL_PORT")]
    pub internal_port: Option<u16>,

    /// On shutdown, how long /readyz reports not-ready before clients are told to leave, ms.
    #[arg(long, env = "STOMPGATE_DRAIN_DELAY_MS", default_value_t = 1000)]
    pub drain_delay_ms: u64,

    /// Log as JSON lines instead of human-readable text.
    #[arg(long, env = "STOMPGATE_LOG_JSON", default_value_t = false)]
    pub log_json: bool,

    /// Bearer token allowed to change the market registry (POST/DELETE /api/markets);
    /// a JWT with the claim `"admin": true` is accepted too.
    #[arg(long, env = "STOMPGATE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Compacted Kafka topic of the market registry.
    #[arg(long, env = "STOMPGATE_MARKETS_TOPIC", default_value = "markets")]
    pub markets_topic: String,

    /// Embedded default only: run the Upbit/Bithumb bridge in-process instead of the demo
    /// feed (needs internet), following the registry (seeded with --demo-markets).
    #[arg(long, env = "STOMPGATE_LIVE_FEED", default_value_t = false)]
    pub live_feed: bool,

    #[command(flatten)]
    pub exchanges: crate::feed::ExchangeArgs,

    /// The `[routes]` table of the `--config` file (no flag): inbound and SEND routes.
    #[arg(skip)]
    pub routes: RoutesConfig,
}

/// Parses `key=value`.
fn key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(format!("'{text}' is not key=value")),
    }
}

impl Config {
    /// Parses flags and environment, then fills what neither set from the `--config` TOML
    /// file. Errors say which setting and why; `validate` (run by the gateway) checks the rest.
    pub fn load<I, T>(args: I) -> Result<Config, String>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
        let command = Config::command();
        let matches = match command.clone().try_get_matches_from(&args) {
            Ok(m) => m,
            // --help and --version print to stdout and exit 0, as usual.
            Err(e)
                if matches!(
                    e.kind(),
                    clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
                ) =>
            {
                e.exit()
            }
            Err(e) => return Err(e.render().to_string()),
        };
        let mut config = Config::from_arg_matches(&matches).map_err(|e| e.to_string())?;
        if let Some(path) = config.config.clone() {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("--config {}: cannot read it: {e}", path.display()))?;
            let mut table: toml::Table = text
                .parse()
                .map_err(|e| format!("--config {}: not valid TOML: {e}", path.display()))?;
            let routes: RoutesConfig = match table.remove("routes") {
                Some(value) => value
                    .try_into()
                    .map_err(|e| format!("--config {}: [routes]: {e}", path.display()))?,
                None => RoutesConfig::default(),
            };
            let mut merged = args.clone();
            for (key, value) in table {
                let arg = command
                    .get_arguments()
                    .find(|a| a.get_long() == Some(key.as_str()) && key != "config")
                    .ok_or_else(|| {
                        format!(
                            "--config {}: unknown setting '{key}' (see stompgate --help)",
                            path.display()
                        )
                    })?;
                let from_default = matches!(
                    matches.value_source(arg.get_id().as_str()),
                    None | Some(clap::parser::ValueSource::DefaultValue)
                );
                if !from_default {
                    continue;
                }
                let text = match value {
                    toml::Value::String(s) => s,
                    toml::Value::Array(items) => items
                        .iter()
                        .map(|v| match v {
                            toml::Value::String(s) => s.clone(),
                            other => other.to_string(),
                        })
                        .collect::<Vec<_>>()
                        .join(","),
                    other => other.to_string(),
                };
                merged.push(format!("--{key}={text}").into());
            }
            let matches = command
                .try_get_matches_from(&merged)
                .map_err(|e| format!("--config {}: {}", path.display(), e.render()))?;
            config = Config::from_arg_matches(&matches).map_err(|e| e.to_string())?;
            config.routes = routes;
        }
        Ok(config)
    }

    pub fn frame_limits(&self) -> Limits {
        Limits {
            max_body_bytes: self.max_body_bytes,
            max_headers: self.max_headers,
            max_header_line: self.max_header_line,
        }
    }

    pub fn history(&self) -> HistorySettings {
        HistorySettings {
            per_destination: self.history_size,
            max_bytes: self.history_bytes,
        }
    }

    /// What a session reads of the configuration.
    pub fn session_settings(&self) -> SessionSettings {
        SessionSettings {
            frame_limits: self.frame_limits(),
            connect_timeout: Duration::from_millis(self.connect_timeout_ms),
            heartbeat_ms: self.heartbeat_ms,
            write_timeout: Duration::from_millis(self.write_timeout_ms),
            ws_batch: self.ws_batch,
            direct_writes: self.direct_writes,
            max_write_bytes: self.max_write_bytes,
            outbox_bytes: self.outbox_bytes,
            slow_consumer: self.slow_consumer,
            max_subscriptions: self.max_subscriptions,
            max_subscription_bytes: self.max_subscription_bytes,
            max_pending_acks: self.max_pending_acks,
            max_transactions: self.max_transactions,
            max_transaction_ops: self.max_transaction_ops,
            max_transaction_bytes: self.max_transaction_bytes,
            send_rate: self.send_rate,
            send_burst: self.send_burst,
            shutdown_grace: Duration::from_millis(self.shutdown_grace_ms),
        }
    }

    /// Admission limits (who may connect, how many, how fast).
    pub fn admission(&self) -> AdmissionSettings {
        AdmissionSettings {
            max_connections: self.max_connections,
            max_per_address: self.max_connections_per_ip,
            connect_rate: self.connect_rate_per_ip,
            connect_burst: self.connect_burst_per_ip,
            trusted_proxies: self.trusted_proxies.clone(),
            forwarded_header: self.forwarded_header,
            ipv6_prefix: self.ipv6_prefix,
            allowed_origins: self.allowed_origins.clone(),
            max_http_connections: self.max_http_connections,
            max_http_per_address: self.max_http_connections_per_ip,
        }
    }

    /// Authentication settings; reads the public key file.
    pub fn auth(&self) -> Result<crate::auth::AuthSettings, String> {
        let public_key_pem = match &self.jwt_public_key {
            Some(path) => Some(std::fs::read(path).map_err(|e| {
                format!("--jwt-public-key {}: cannot read it: {e}", path.display())
            })?),
            None => None,
        };
        Ok(crate::auth::AuthSettings {
            secret: self.jwt_secret.clone(),
            public_key_pem,
            issuer: self.jwt_issuer.clone(),
            audience: self.jwt_audience.clone(),
            anonymous_subscribe: self.anonymous_subscribe.clone(),
            default_subscribe: self.default_subscribe.clone(),
            default_send: self.default_send.clone(),
        })
    }
}

mod routes;
#[cfg(test)]
mod tests;
mod validate;
