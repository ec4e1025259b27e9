//! The command line: which scenario (mode), which server, how many connections, what load.

use clap::{Parser, ValueEnum};

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Find the highest delivered msgs/s that holds the p99 limit with nothing lost.
    FanoutRamp,
    /// A fixed delivered rate for a duration.
    Fixed,
    /// N connections connected and subscribed; report server RSS per connection.
    Idle,
    /// Time for N connections to CONNECT and SUBSCRIBE.
    Storm,
    /// Fixed load plus clients that stop reading; others' p99 and server RSS over time.
    Slow,
    /// Fill the gateway's per-destination history (chat SENDs to D markets, M each);
    /// report RSS and `stompgate_history_bytes` per kept message and per destination.
    HistoryMem,
    /// Fixed load to live subscribers, then K clients resuming at once with
    /// `x-resume-after`: live p99 with and without the storm, resume latency, x-recovered.
    ResumeStorm,
    /// Overload every outbox for a while, then sample the server's RSS each second.
    Burst,
    /// No publishing: subscribers read exchange trades (fed by `stompgate feed`) for
    /// `--duration` s; trades/s received and the delay from each trade's `"ts"` (the
    /// exchange's trade_timestamp, Unix ms) to its arrival.
    TradeWatch,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum BodyFormat {
    /// `{"text":"@@..@@"}` (stompgate chat SEND; peers deliver it as sent)
    Json,
    /// the bare token
    Raw,
}

#[derive(Parser, Debug, Clone)]
#[command(
    about = "STOMP-over-WebSocket load generator (fan-out, latency, idle, storm, slow, history, resume, burst)"
)]
pub struct Args {
    #[arg(long, value_enum)]
    pub mode: Mode,
    /// WebSocket URL of the server (loopback only).
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    pub url: String,
    /// Label of the server in the output (stompgate, rabbitmq, spring, ceiling).
    #[arg(long, default_value = "target")]
    pub target: String,
    /// Label of the scenario in the output.
    #[arg(long, default_value = "")]
    pub scenario: String,
    /// Subscriber connections.
    #[arg(long, short = 'n', default_value_t = 1000)]
    pub connections: usize,
    /// Destinations; subscriber i subscribes to destination i % D.
    #[arg(long, short = 'd', default_value_t = 10)]
    pub destinations: usize,
    /// Subscribe destination template; `{i}` is the destination index.
    #[arg(long, default_value = "/topic/market/M{i}")]
    pub sub_template: String,
    /// SEND destination template; `{i}` is the destination index.
    #[arg(long, default_value = "/app/market/M{i}/chat")]
    pub send_template: String,
    #[arg(long, value_enum, default_value = "json")]
    pub body: BodyFormat,
    /// Extra bytes of padding in every published body.
    #[arg(long, default_value_t = 0)]
    pub pad: usize,
    #[arg(long, default_value = "guest")]
    pub login: String,
    #[arg(long, default_value = "guest")]
    pub passcode: String,
    /// STOMP `host` header (RabbitMQ: the virtual host).
    #[arg(long, default_value = "/")]
    pub vhost: String,
    /// The server sends no RECEIPT for SUBSCRIBE: confirm each subscription by its first
    /// message instead (probe messages are published until every subscriber has one).
    #[arg(long)]
    pub no_receipt: bool,
    /// Publisher connections (destinations are split among them).
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    /// Delivered messages/s (fixed, slow).
    #[arg(long, default_value_t = 100_000.0)]
    pub rate: f64,
    /// Seconds of measurement (fixed, slow).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds of unmeasured load before a fixed or slow measurement.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// First delivered rate of the ramp.
    #[arg(long, default_value_t = 10_000.0)]
    pub ramp_start: f64,
    #[arg(long, default_value_t = 1.5)]
    pub ramp_factor: f64,
    #[arg(long, default_value_t = 5_000_000.0)]
    pub ramp_max: f64,
    /// Seconds per ramp step.
    #[arg(long, default_value_t = 4.0)]
    pub step_secs: f64,
    /// Attempts more at a rate whose ramp step failed, before it counts as failed (the
    /// build machines are shared: one stall of another job should not end the ramp).
    #[arg(long, default_value_t = 2)]
    pub retries: usize,
    /// Bisection steps between the last passing and the first failing rate.
    #[arg(long, default_value_t = 2)]
    pub refine: usize,
    /// Latency limit of a passing ramp step, p99 in ms.
    #[arg(long, default_value_t = 50.0)]
    pub p99_limit_ms: f64,
    /// PID of the server process, for RSS and CPU from /proc.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Number of 127.0.0.x source addresses to spread connections over.
    #[arg(long, default_value_t = 8)]
    pub sources: u8,
    /// First source address: 127.0.0.<source-base>.
    #[arg(long, default_value_t = 1)]
    pub source_base: u8,
    /// Connection set-ups in flight at once.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// Seconds to wait for the whole connect phase.
    #[arg(long, default_value_t = 60.0)]
    pub connect_timeout: f64,
    /// Seconds to hold idle connections before reading the server's RSS.
    #[arg(long, default_value_t = 5.0)]
    pub hold: f64,
    /// Clients that stop reading (slow mode).
    #[arg(long, default_value_t = 1)]
    pub slow_clients: usize,
    /// Seconds between samples of p99 and RSS (slow mode).
    #[arg(long, default_value_t = 5.0)]
    pub sample_secs: f64,
    /// Tokio worker threads of the load generator.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Initial read buffer per connection, bytes (grows for larger frames).
    #[arg(long, default_value_t = 16384)]
    pub read_buf: usize,
    /// Seconds to wait for in-flight messages after a step.
    #[arg(long, default_value_t = 5.0)]
    pub drain_secs: f64,
    /// Client heart-beat interval, ms (0: none). Subscribers send an EOL this often, as
    /// STOMP clients do; some servers close silent connections (RabbitMQ Web-STOMP: 60 s).
    #[arg(long, default_value_t = 0)]
    pub heartbeat_ms: u64,
    /// Messages per destination (history-mem).
    #[arg(long, default_value_t = 100)]
    pub messages_per_dest: usize,
    /// A SEND with a receipt every N SENDs per publisher, awaited before the next N
    /// (history-mem): bounds what is in flight.
    #[arg(long, default_value_t = 1000)]
    pub receipt_every: usize,
    /// The gateway's --history-size, to count the messages it keeps (history-mem).
    #[arg(long, default_value_t = 100)]
    pub history_size: usize,
    /// The gateway's --history-bytes, to check that the cap holds (history-mem).
    #[arg(long, default_value_t = 128 * 1024 * 1024)]
    pub history_bytes_cap: usize,
    /// Metrics URL of the gateway (default: the WebSocket URL's host and port, /metrics).
    #[arg(long)]
    pub metrics_url: Option<String>,
    /// Clients that resume at once (resume-storm).
    #[arg(long, default_value_t = 10_000)]
    pub resume_clients: usize,
    /// Seconds between taking the cursors and the resuming SUBSCRIBEs (resume-storm).
    #[arg(long, default_value_t = 3.0)]
    pub resume_back: f64,
    /// Kafka bootstrap servers: run a plain consumer of `--kafka-plain-topic` beside the
    /// gateway (fixed mode) and report SEND → plain consumer latency, and the gateway's
    /// own delivery-delay histogram from its /metrics, beside SEND → socket.
    #[arg(long)]
    pub kafka_plain: Option<String>,
    /// Also measure each message's first copy (SEND → the first subscriber's read) and how
    /// far every copy trails its message's first copy, i.e. the fan-out's spread (fixed
    /// mode; implied by --kafka-plain).
    #[arg(long)]
    pub first_copy: bool,
    /// Topic the gateway produces the load generator's SENDs to (its chat topic).
    #[arg(long, default_value = "chat")]
    pub kafka_plain_topic: String,
    /// Seconds of the overload (burst).
    #[arg(long, default_value_t = 5.0)]
    pub burst_secs: f64,
    /// Seconds of RSS samples after the overload (burst).
    #[arg(long, default_value_t = 60.0)]
    pub after_secs: f64,
}
