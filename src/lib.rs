//! # stompgate
//!
//! A real-time fan-out gateway between Kafka and STOMP-over-WebSocket clients. Every
//! replica consumes the configured topics with its own consumer group and broadcasts each
//! record as a STOMP MESSAGE to its clients subscribed to `/topic/market/<id>`; client
//! SENDs are produced to Kafka so every replica's clients receive them.
//!
//! # Layout
//!
//! - [`stomp`]: frames, the incremental parser, the encoder and header escaping.
//! - [`session`]: one connection's STOMP state machine and the loop that drives it.
//! - [`transport`]: WebSocket and raw TCP byte pipes under a session.
//! - [`outbox`]: a session's outbound queue, bounded in bytes, never awaited by publishers.
//! - [`subscription`]: one SUBSCRIBE, with its ack mode and pre-encoded MESSAGE start.
//! - [`hub`]: destinations to subscribers; publish encodes once and fans out.
//! - [`publication`]: an event for a destination and its shared encoding.
//! - [`bus`]: where publications come from and SENDs go: `kafka` or `local`.
//! - [`route`]: Kafka records to destinations, SEND destinations to topics.
//! - [`chat`]: the chat record built from a client SEND.
//! - [`ledger`]: authors of recent chat messages, for modify/delete.
//! - [`demo`]: the synthetic market feed of the embedded default.
//! - [`auth`]: JWT on CONNECT and destination permissions.
//! - [`limits`]: connections per address, SEND rate per session.
//! - [`origin`]: the WebSocket Origin check.
//! - [`http`]: the axum router: `/ws`, health, readiness, metrics, stats, dashboard.
//! - [`server`]: listeners and graceful shutdown.
//! - [`gateway`]: the shared state handle.
//! - [`config`], [`metrics`], [`disconnect`], [`clock`]: as named.

pub mod auth;
pub mod bus;
pub mod chat;
pub mod clock;
pub mod config;
pub mod demo;
pub mod disconnect;
pub mod gateway;
pub mod http;
pub mod hub;
pub mod ledger;
pub mod limits;
pub mod metrics;
pub mod origin;
pub mod outbox;
pub mod publication;
pub mod route;
pub mod server;
pub mod session;
pub mod stomp;
pub mod subscription;
pub mod transport;
