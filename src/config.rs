//! Gateway configuration: command-line flags, each with an environment variable and a
//! documented default. `stompgate --help` lists them all.

use crate::stomp::Limits;
use clap::{Parser, ValueEnum};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// What to do with a client whose outbox passes its byte bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SlowConsumerPolicy {
    /// Send ERROR "slow consumer" and close the connection.
    Disconnect,
    /// Keep only the newest trade per destination while the client is behind; anything that
    /// cannot be conflated (chat) still disconnects.
    Conflate,
}

#[derive(Debug, Clone, Parser)]
#[command(
    name = "stompgate",
    version,
    about = "Kafka to STOMP-over-WebSocket fan-out gateway"
)]
pub struct Config {
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

    /// Kafka topic of exchange trades (event-type `trade`).
    #[arg(long, env = "STOMPGATE_TRADES_TOPIC", default_value = "trades")]
    pub trades_topic: String,

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

    /// Deadline for draining clients on shutdown, ms.
    #[arg(long, env = "STOMPGATE_SHUTDOWN_GRACE_MS", default_value_t = 5_000)]
    pub shutdown_grace_ms: u64,

    /// Log as JSON lines instead of human-readable text.
    #[arg(long, env = "STOMPGATE_LOG_JSON", default_value_t = false)]
    pub log_json: bool,
}

impl Config {
    /// The configuration with every default, as tests and embedders start from.
    pub fn defaults() -> Config {
        Config::parse_from(["stompgate"])
    }

    pub fn limits(&self) -> Limits {
        Limits {
            max_body_bytes: self.max_body_bytes,
            max_headers: self.max_headers,
            max_header_line: self.max_header_line,
        }
    }

    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }

    /// Checks settings that clap's types cannot; the message names the setting and why.
    pub fn validate(&self) -> Result<(), String> {
        if self.outbox_bytes < 4096 {
            return Err(format!(
                "--outbox-bytes {} is too small: at least 4096 bytes are needed to hold one message",
                self.outbox_bytes
            ));
        }
        if !(self.demo_rate >= 0.0 && self.demo_rate <= 100_000.0) {
            return Err(format!(
                "--demo-rate {} must be between 0 and 100000 trades per second",
                self.demo_rate
            ));
        }
        if self.max_connections == 0 {
            return Err("--max-connections must be at least 1".into());
        }
        for m in &self.demo_markets {
            if !crate::route::valid_market_id(m) {
                return Err(format!(
                    "--demo-markets: '{m}' is not a valid market id (letters, digits, '-', '_', '.'; at most 64)"
                ));
            }
        }
        Ok(())
    }
}
