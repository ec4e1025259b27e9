//! The client of one exchange's public WebSocket API (Upbit's protocol, which Bithumb's
//! current API shares): subscribe to the trades of the registered markets, keep the
//! connection alive with `PING`, follow registry changes on the open connection, reconnect
//! with backoff and resubscribe when it drops, and hand each new trade to the bus once.

use super::backoff::Backoff;
use super::dedup::Dedup;
use super::metrics::FeedMetrics;
use super::trade::{self, Inbound};
use crate::bus::{Bus, OutboundRecord};
use crate::registry::Market;
use futures::{SinkExt, StreamExt};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// The message format asked of the exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Full key names (`trade_price`).
    Default,
    /// Abbreviated keys (`tp`), fewer bytes on the wire.
    Simple,
}

impl Format {
    fn wire(self) -> &'static str {
        match self {
            Format::Default => "DEFAULT",
            Format::Simple => "SIMPLE",
        }
    }
}

/// How to reach one exchange and where its trades go.
#[derive(Debug, Clone)]
pub struct ExchangeSettings {
    /// `upbit` or `bithumb`.
    pub name: &'static str,
    pub url: String,
    pub format: Format,
    /// Kafka topic (or local-bus topic) of its trades.
    pub topic: String,
    /// How often `PING` is sent (Upbit closes connections idle for about two minutes).
    pub ping_interval: Duration,
    /// Reconnect when nothing at all arrived for this long.
    pub idle_timeout: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

/// `[{"ticket":...},{"type":"trade","codes":[...]},{"format":...}]`.
pub fn request(codes: &[String], format: Format) -> String {
    let b: [u8; 16] = rand::random();
    let ticket = format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        u16::from_be_bytes([b[4], b[5]]),
        u16::from_be_bytes([b[6], b[7]]) & 0x0fff,
        (u16::from_be_bytes([b[8], b[9]]) & 0x3fff) | 0x8000,
        u64::from_be_bytes([0, 0, b[10], b[11], b[12], b[13], b[14], b[15]]),
    );
    serde_json::json!([
        {"ticket": ticket},
        {"type": "trade", "codes": codes},
        {"format": format.wire()},
    ])
    .to_string()
}

/// The symbols of `exchange` in the registry, sorted.
fn codes(markets: &BTreeSet<Market>, exchange: &str) -> Vec<String> {
    markets
        .iter()
        .filter(|m| m.exchange == exchange)
        .map(|m| m.symbol.clone())
        .collect()
}

enum Ended {
    Shutdown,
    /// The connection is gone; `worked` if it delivered before it went.
    Lost {
        reason: String,
        worked: bool,
    },
    /// The exchange has no markets left: close and wait for some.
    NoMarkets,
}

/// Runs the client of one exchange until shutdown.
pub async fn run(
    settings: ExchangeSettings,
    mut markets: watch::Receiver<BTreeSet<Market>>,
    bus: Arc<dyn Bus>,
    metrics: Arc<FeedMetrics>,
    shutdown: CancellationToken,
) {
    let name = settings.name;
    let mut dedup = Dedup::new(1024);
    let mut backoff = Backoff::new(settings.backoff_initial, settings.backoff_max);
    metrics.connected.with_label_values(&[name]).set(0);
    loop {
        let wanted = codes(&markets.borrow_and_update(), name);
        if wanted.is_empty() {
            tracing::info!(exchange = name, "no markets registered; waiting for some");
            tokio::select! {
                _ = shutdown.cancelled() => return,
                r = markets.changed() => if r.is_err() { return },
            }
            continue;
        }
        let ended = session(
            &settings,
            wanted,
            &mut markets,
            &mut dedup,
            &*bus,
            &metrics,
            &shutdown,
        )
        .await;
        metrics.connected.with_label_values(&[name]).set(0);
        match ended {
            Ended::Shutdown => return,
            Ended::NoMarkets => continue,
            Ended::Lost { reason, worked } => {
                metrics.reconnects.with_label_values(&[name]).inc();
                if worked {
                    backoff.reset();
                }
                let delay = backoff.next_delay();
                tracing::warn!(exchange = name, url = %settings.url, %reason, delay_ms = delay.as_millis() as u64, "connection lost; reconnecting");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

async fn session(
    settings: &ExchangeSettings,
    mut subscribed: Vec<String>,
    markets: &mut watch::Receiver<BTreeSet<Market>>,
    dedup: &mut Dedup,
    bus: &dyn Bus,
    metrics: &FeedMetrics,
    shutdown: &CancellationToken,
) -> Ended {
    let name = settings.name;
    let lost = |reason: String, worked: bool| Ended::Lost { reason, worked };
    let connect = tokio_tungstenite::connect_async(settings.url.as_str());
    let ws = tokio::select! {
        _ = shutdown.cancelled() => return Ended::Shutdown,
        r = tokio::time::timeout(Duration::from_secs(10), connect) => match r {
            Err(_) => return lost("connect timed out after 10 s".into(), false),
            Ok(Err(e)) => return lost(format!("cannot connect: {e}"), false),
            Ok(Ok((ws, _))) => ws,
        },
    };
    let (mut write, mut read) = ws.split();
    if let Err(e) = write
        .send(Message::text(request(&subscribed, settings.format)))
        .await
    {
        return lost(format!("cannot send the subscription: {e}"), false);
    }
    metrics.connected.with_label_values(&[name]).set(1);
    tracing::info!(exchange = name, url = %settings.url, codes = ?subscribed, "subscribed to trades");
    let started = Instant::now();
    let mut traded = false;
    let mut last_rx = Instant::now();
    let mut ping = tokio::time::interval_at(
        tokio::time::Instant::now() + settings.ping_interval,
        settings.ping_interval,
    );
    let worked = |traded: bool| traded || started.elapsed() >= Duration::from_secs(10);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                let _ = write.send(Message::Close(None)).await;
                return Ended::Shutdown;
            }
            r = markets.changed() => {
                if r.is_err() {
                    return Ended::Shutdown;
                }
                let wanted = codes(&markets.borrow_and_update(), name);
                if wanted.is_empty() {
                    let _ = write.send(Message::Close(None)).await;
                    tracing::info!(exchange = name, "last market removed; disconnecting");
                    return Ended::NoMarkets;
                }
                if wanted != subscribed {
                    // A new request on the open connection replaces the subscription.
                    if let Err(e) = write.send(Message::text(request(&wanted, settings.format))).await {
                        return lost(format!("cannot send the subscription: {e}"), worked(traded));
                    }
                    tracing::info!(exchange = name, codes = ?wanted, "subscription changed");
                    subscribed = wanted;
                }
            }
            _ = ping.tick() => {
                if last_rx.elapsed() >= settings.idle_timeout {
                    return lost(format!("nothing received for {} s", last_rx.elapsed().as_secs()), worked(traded));
                }
                if let Err(e) = write.send(Message::text("PING")).await {
                    return lost(format!("cannot send PING: {e}"), worked(traded));
                }
            }
            m = read.next() => {
                last_rx = Instant::now();
                let bytes = match m {
                    None => return lost("closed by the exchange".into(), worked(traded)),
                    Some(Err(e)) => return lost(e.to_string(), worked(traded)),
                    Some(Ok(Message::Close(frame))) => {
                        let why = frame.map(|f| format!("{} {}", u16::from(f.code), f.reason)).unwrap_or_default();
                        return lost(format!("closed by the exchange ({why})"), worked(traded));
                    }
                    Some(Ok(Message::Text(t))) => t.as_bytes().to_vec(),
                    Some(Ok(Message::Binary(b))) => b.to_vec(),
                    Some(Ok(_)) => continue,
                };
                match trade::parse(&bytes) {
                    Ok(Inbound::Trade(t)) => {
                        traded = true;
                        metrics.trades_in.with_label_values(&[name]).inc();
                        metrics.trade_seen(name);
                        if !dedup.first(&t.market, &t.sequential_id) {
                            metrics.duplicates.with_label_values(&[name]).inc();
                            tracing::debug!(exchange = name, market = %t.market, id = %t.sequential_id, stream = %t.stream_type, "dropped a repeated trade");
                            continue;
                        }
                        produce(bus, settings, metrics, &t);
                    }
                    Ok(Inbound::Status(s)) => tracing::debug!(exchange = name, status = %s, "keep-alive answered"),
                    Ok(Inbound::Other) => {}
                    Ok(Inbound::Error { name: error, message }) => {
                        metrics.errors.with_label_values(&[name, &error]).inc();
                        tracing::error!(exchange = name, error = %error, message = %message, codes = ?subscribed, "the exchange refused the subscription");
                        return lost(format!("the exchange answered {error}: {message}"), false);
                    }
                    Err(e) => {
                        metrics.errors.with_label_values(&[name, "unreadable"]).inc();
                        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
                        tracing::warn!(exchange = name, reason = %e, message = %text, "unreadable message skipped");
                    }
                }
            }
        }
    }
}

/// Queues the normalized record; the acknowledgement is counted when it comes.
fn produce(bus: &dyn Bus, settings: &ExchangeSettings, metrics: &FeedMetrics, t: &trade::Trade) {
    let record = OutboundRecord {
        topic: settings.topic.clone(),
        key: t.market.clone(),
        headers: Vec::new(),
        value: trade::record_value(settings.name, t).into(),
    };
    let ack = bus.send(record);
    let produced = metrics.produced.with_label_values(&[settings.name]);
    let failed = metrics.produce_errors.with_label_values(&[settings.name]);
    let (exchange, market, id) = (settings.name, t.market.clone(), t.sequential_id.clone());
    tokio::spawn(async move {
        match ack.await {
            Ok(()) => produced.inc(),
            Err(e) => {
                failed.inc();
                tracing::warn!(exchange, %market, trade_id = %id, error = %e, "trade not produced");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_shape() {
        let r: serde_json::Value = serde_json::from_str(&request(
            &["KRW-BTC".into(), "KRW-ETH".into()],
            Format::Simple,
        ))
        .unwrap();
        let ticket = r[0]["ticket"].as_str().unwrap();
        assert_eq!(ticket.len(), 36);
        assert_eq!(&ticket[14..15], "4");
        assert_eq!(
            r[1],
            serde_json::json!({"type":"trade","codes":["KRW-BTC","KRW-ETH"]})
        );
        assert_eq!(r[2], serde_json::json!({"format":"SIMPLE"}));
        let d: serde_json::Value = serde_json::from_str(&request(&[], Format::Default)).unwrap();
        assert_eq!(d[2]["format"], "DEFAULT");
    }

    /// The default URLs are `wss://`: TLS must be built in (rustls with the webpki roots),
    /// so a handshake against a server that is not TLS fails as TLS, not as "unsupported".
    #[tokio::test]
    async fn wss_is_supported() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let _ = tokio::io::AsyncWriteExt::write_all(&mut s, b"HTTP/1.1 400 no\r\n\r\n").await;
        });
        let err = tokio_tungstenite::connect_async(format!("wss://127.0.0.1:{port}/websocket/v1"))
            .await
            .unwrap_err();
        // rustls reads the plain HTTP reply as a corrupt TLS record.
        assert!(
            matches!(
                err,
                tokio_tungstenite::tungstenite::Error::Io(_)
                    | tokio_tungstenite::tungstenite::Error::Tls(_)
            ),
            "{err}"
        );
    }

    #[test]
    fn codes_of_one_exchange() {
        let set: BTreeSet<Market> = [
            Market::new("upbit", "KRW-BTC").unwrap(),
            Market::new("bithumb", "KRW-BTC").unwrap(),
            Market::new("upbit", "KRW-ETH").unwrap(),
        ]
        .into();
        assert_eq!(codes(&set, "upbit"), ["KRW-BTC", "KRW-ETH"]);
        assert_eq!(codes(&set, "bithumb"), ["KRW-BTC"]);
    }
}
