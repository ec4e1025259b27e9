//! # stompgate
//!
//! A real-time fan-out gateway between Kafka and STOMP-over-WebSocket clients. Every
//! replica consumes the configured topics with its own consumer group and broadcasts each
//! record as a STOMP MESSAGE to its clients subscribed to `/topic/market/<id>`; client
//! SENDs are produced to Kafka so every replica's clients receive them.
//!
//! # Layout
//!
//! Wire:
//! - [`stomp`]: frames, the incremental parser, the encoder and header escaping.
//! - [`destination`]: the one destination grammar (markets, wildcards, chat SENDs).
//!
//! Connection:
//! - [`session`]: one connection: the STOMP state machine (`protocol`) and the task that
//!   drives it over a transport (`driver`), with acks, transactions and MESSAGE assembly.
//! - [`transport`]: WebSocket and raw TCP byte pipes under a session.
//! - [`auth`]: JWT on CONNECT and destination permissions.
//! - [`admission`]: who may open a connection: client address behind trusted proxies,
//!   Origin, connection rate and limits per address and in total.
//!
//! Fan-out:
//! - [`hub`]: destinations to subscribers; publish encodes once and fans out to bounded
//!   outboxes (`hub::outbox`, `hub::subscription`, `hub::publication`).
//!
//! Sources:
//! - [`bus`]: where records come from and SENDs go: `kafka` or `local`, behind `Bus` and
//!   `RecordSink`.
//! - [`ingest`]: record -> route -> chat -> hub (the bus's `RecordSink`).
//! - [`route`]: Kafka records to destinations.
//! - [`chat`]: chat records built by the gateway, and who owns which message.
//! - [`demo`]: the synthetic market feed of the embedded default.
//! - [`feed`]: `stompgate feed`, the Upbit/Bithumb bridge to Kafka (also `--live-feed`).
//! - [`registry`]: the market registry (compacted Kafka topic, or memory).
//!
//! Process:
//! - [`http`]: the axum router: `/ws`, health, readiness, metrics, stats, dashboard.
//! - [`server`]: listeners (HTTP with its timeouts, raw TCP, the internal port) and graceful
//!   shutdown.
//! - [`markets_api`]: `/api/markets`, the registry over REST.
//! - [`registry`]: the markets the feed follows.
//! - [`gateway`]: the wiring of all of the above.
//! - [`memory`]: freed heap handed back to the OS.
//! - [`runtime`]: the tokio runtime, counting its idle workers and how busy they are (read
//!   by the fan-out).
//! - [`config`], [`metrics`], [`disconnect`], [`clock`]: as named.

pub mod admission;
pub mod auth;
pub mod bus;
pub mod chat;
pub mod clock;
pub mod config;
pub mod demo;
pub mod destination;
pub mod disconnect;
pub mod feed;
pub mod gateway;
pub mod handshake;
pub mod http;
pub mod hub;
pub mod ingest;
pub mod markets_api;
pub mod memory;
pub mod metrics;
pub mod registry;
pub mod route;
pub mod runtime;
pub mod server;
pub mod session;
pub mod stomp;
pub mod trace;
pub mod transport;
