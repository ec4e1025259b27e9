//! The market registry: which markets of which exchanges the feed follows and dashboards
//! list. One list for every gateway replica and the feed: on Kafka it is the compacted topic
//! `markets` (key `<exchange>:<symbol>`, value JSON, a tombstone on delete; created
//! compacted if missing), read from the beginning by everyone who needs it, so a restart
//! loses nothing. On the embedded default it lives in memory.
//!
//! Readers watch it (`subscribe`); writers `add` and `remove`, which return once the change
//! is stored (on Kafka: acknowledged by the broker and read back by this process).

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Exchanges the feed speaks to.
pub const EXCHANGES: [&str; 2] = ["upbit", "bithumb"];

/// One market of one exchange.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Market {
    pub exchange: String,
    pub symbol: String,
}

/// What a market must look like, for error messages.
pub const ACCEPTED: &str = "exchange is one of upbit, bithumb; symbol is <QUOTE>-<BASE> in capitals and digits, e.g. KRW-BTC, BTC-ETH, USDT-XRP";

impl Market {
    /// Validates and builds a market; the error says what is accepted.
    pub fn new(exchange: &str, symbol: &str) -> Result<Market, String> {
        if !EXCHANGES.contains(&exchange) {
            return Err(format!("unknown exchange '{exchange}': {ACCEPTED}"));
        }
        let ok = symbol.split_once('-').is_some_and(|(quote, base)| {
            (2..=6).contains(&quote.len())
                && quote.bytes().all(|b| b.is_ascii_uppercase())
                && (1..=15).contains(&base.len())
                && base
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        });
        if !ok {
            return Err(format!("malformed symbol '{symbol}': {ACCEPTED}"));
        }
        Ok(Market {
            exchange: exchange.to_string(),
            symbol: symbol.to_string(),
        })
    }

    /// `upbit:KRW-BTC`, the record key in the markets topic.
    pub fn key(&self) -> String {
        format!("{}:{}", self.exchange, self.symbol)
    }

    /// Parses `upbit:KRW-BTC`.
    pub fn from_key(key: &str) -> Result<Market, String> {
        let (exchange, symbol) = key
            .split_once(':')
            .ok_or_else(|| format!("'{key}' is not <exchange>:<symbol>"))?;
        Market::new(exchange, symbol)
    }
}

/// Why a change was not stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("the markets topic is not reachable: {0}; retry when Kafka is back")]
    Unavailable(String),
}

enum Backend {
    Memory,
    Kafka(KafkaStore),
}

struct KafkaStore {
    topic: String,
    producer: FutureProducer,
    /// Highest offset applied per partition (std Mutex: never held across an await).
    applied: Arc<Mutex<HashMap<i32, i64>>>,
    applied_tx: watch::Sender<u64>,
}

/// The registry handle, shared by the HTTP API and the feed.
pub struct Registry {
    backend: Backend,
    markets: watch::Sender<BTreeSet<Market>>,
    loaded: watch::Sender<bool>,
}

impl Registry {
    /// An in-memory registry holding `initial`.
    pub fn memory(initial: impl IntoIterator<Item = Market>) -> Arc<Registry> {
        Arc::new(Registry {
            backend: Backend::Memory,
            markets: watch::Sender::new(initial.into_iter().collect()),
            loaded: watch::Sender::new(true),
        })
    }

    /// A registry on the compacted Kafka topic `topic`. Kafka need not be up: the topic is
    /// created and read when it comes. `extra` are librdkafka settings for all clients.
    pub fn kafka(
        brokers: &str,
        topic: &str,
        extra: &[(String, String)],
        shutdown: CancellationToken,
    ) -> Result<Arc<Registry>, String> {
        let base = |c: &mut ClientConfig| {
            c.set("bootstrap.servers", brokers)
                .set("reconnect.backoff.max.ms", "2000")
                .set_log_level(RDKafkaLogLevel::Warning);
            for (k, v) in extra {
                c.set(k, v);
            }
        };
        let mut pc = ClientConfig::new();
        base(&mut pc);
        pc.set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "0")
            .set("message.timeout.ms", "5000");
        let producer: FutureProducer = pc
            .create()
            .map_err(|e| format!("markets registry producer: {e}"))?;
        let mut cc = ClientConfig::new();
        base(&mut cc);
        cc.set(
            "group.id",
            crate::bus::kafka::unique_group_id("stompgate-markets"),
        )
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("fetch.wait.max.ms", "100");
        let consumer: BaseConsumer = cc
            .create()
            .map_err(|e| format!("markets registry consumer: {e}"))?;
        let mut ac = ClientConfig::new();
        base(&mut ac);
        let admin: Arc<AdminClient<DefaultClientContext>> = Arc::new(
            ac.create()
                .map_err(|e| format!("markets registry admin client: {e}"))?,
        );
        let applied = Arc::new(Mutex::new(HashMap::new()));
        let registry = Arc::new(Registry {
            backend: Backend::Kafka(KafkaStore {
                topic: topic.to_string(),
                producer,
                applied: applied.clone(),
                applied_tx: watch::Sender::new(0),
            }),
            markets: watch::Sender::new(BTreeSet::new()),
            loaded: watch::Sender::new(false),
        });
        let r = registry.clone();
        let topic = topic.to_string();
        tokio::spawn(async move {
            ensure_topic(&admin, &topic, &shutdown).await;
            // The consumer polls on a blocking thread; it stops when shutdown is cancelled.
            let _ =
                tokio::task::spawn_blocking(move || follow(consumer, &topic, &r, shutdown)).await;
        });
        Ok(registry)
    }

    /// The markets, sorted by exchange then symbol.
    pub fn list(&self) -> Vec<Market> {
        self.markets.borrow().iter().cloned().collect()
    }

    /// Whether the whole topic has been read once (always true in memory).
    pub fn loaded(&self) -> bool {
        *self.loaded.borrow()
    }

    /// Waits until `loaded`, at most `timeout`; returns `loaded()`.
    pub async fn wait_loaded(&self, timeout: Duration) -> bool {
        let mut rx = self.loaded.subscribe();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|l| *l)).await;
        self.loaded()
    }

    /// Watches the list: the receiver sees every change.
    pub fn subscribe(&self) -> watch::Receiver<BTreeSet<Market>> {
        self.markets.subscribe()
    }

    /// Adds a market; Ok(true) if it was new, Ok(false) if it was already there.
    pub async fn add(&self, market: Market) -> Result<bool, StoreError> {
        if self.markets.borrow().contains(&market) {
            return Ok(false);
        }
        match &self.backend {
            Backend::Memory => Ok(self.markets.send_if_modified(|m| m.insert(market))),
            Backend::Kafka(store) => {
                let value = serde_json::to_string(&market).expect("a market serializes");
                store.write(&market.key(), Some(&value)).await?;
                self.markets.send_if_modified(|m| m.insert(market));
                Ok(true)
            }
        }
    }

    /// Removes a market; Ok(true) if it was there.
    pub async fn remove(&self, market: &Market) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Memory => Ok(self.markets.send_if_modified(|m| m.remove(market))),
            Backend::Kafka(store) => {
                store.write(&market.key(), None).await?;
                Ok(self.markets.send_if_modified(|m| m.remove(market)))
            }
        }
    }
}

impl KafkaStore {
    /// Produces the record (a tombstone when `value` is None), waits for the broker, then
    /// for this process's consumer to have read it back (bounded), so a GET right after a
    /// POST shows the change.
    async fn write(&self, key: &str, value: Option<&str>) -> Result<(), StoreError> {
        let mut record = FutureRecord::<str, str>::to(&self.topic).key(key);
        if let Some(v) = value {
            record = record.payload(v);
        }
        let delivery = self
            .producer
            .send(record, Duration::from_secs(5))
            .await
            .map_err(|(e, _)| StoreError::Unavailable(e.to_string()))?;
        let (partition, offset) = (delivery.partition, delivery.offset);
        let mut rx = self.applied_tx.subscribe();
        let applied = self.applied.clone();
        let seen = move || {
            applied
                .lock()
                .expect("applied lock poisoned")
                .get(&partition)
                .is_some_and(|o| *o >= offset)
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|_| seen())).await;
        Ok(())
    }
}

/// Creates the topic, compacted, if it is missing; retries until Kafka answers.
async fn ensure_topic(
    admin: &Arc<AdminClient<DefaultClientContext>>,
    topic: &str,
    shutdown: &CancellationToken,
) {
    loop {
        // A blocking call (up to its timeout while Kafka is down): on a blocking thread, so
        // it never holds one of the runtime's workers, which serve every connection.
        let (a, t) = (admin.clone(), topic.to_string());
        let (brokers, exists) = tokio::task::spawn_blocking(move || {
            a.inner()
                .fetch_metadata(Some(&t), Duration::from_secs(3))
                .map(|m| {
                    let exists = m
                        .topics()
                        .iter()
                        .any(|t| t.error().is_none() && !t.partitions().is_empty());
                    (m.brokers().len(), exists)
                })
                .unwrap_or((0, false))
        })
        .await
        .unwrap_or((0, false));
        if exists {
            return;
        }
        if brokers > 0 {
            let replication = brokers.min(3) as i32;
            let new = NewTopic::new(topic, 1, TopicReplication::Fixed(replication))
                .set("cleanup.policy", "compact");
            let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
            match admin.create_topics([&new], &opts).await {
                Ok(results) => match results.into_iter().next() {
                    Some(Ok(_)) => {
                        tracing::info!(topic, replication, "created the compacted markets topic");
                        return;
                    }
                    Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) | None => return,
                    Some(Err((_, code))) => {
                        tracing::warn!(topic, %code, "cannot create the markets topic; retrying")
                    }
                },
                Err(e) => {
                    tracing::warn!(topic, error = %e, "cannot create the markets topic; retrying")
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

/// Reads the topic from the beginning and keeps the registry equal to it (blocking).
fn follow(consumer: BaseConsumer, topic: &str, registry: &Registry, shutdown: CancellationToken) {
    let Backend::Kafka(store) = &registry.backend else {
        return;
    };
    // Assign every partition from the beginning (no group, nothing committed).
    let partitions = loop {
        if shutdown.is_cancelled() {
            return;
        }
        match consumer.fetch_metadata(Some(topic), Duration::from_secs(3)) {
            Ok(m) => {
                let parts: Vec<i32> = m
                    .topics()
                    .iter()
                    .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                    .collect();
                if !parts.is_empty() {
                    break parts;
                }
            }
            Err(e) => tracing::debug!(error = %e, "markets topic metadata"),
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let mut tpl = TopicPartitionList::new();
    for p in &partitions {
        let _ = tpl.add_partition_offset(topic, *p, Offset::Beginning);
    }
    if let Err(e) = consumer.assign(&tpl) {
        tracing::error!(error = %e, "cannot read the markets topic");
        return;
    }
    let mut at_end: BTreeSet<i32> = BTreeSet::new();
    while !shutdown.is_cancelled() {
        let Some(result) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        match result {
            Ok(m) => {
                let key = m.key().map(String::from_utf8_lossy).unwrap_or_default();
                match Market::from_key(&key) {
                    Ok(market) => {
                        if m.payload().is_none() {
                            registry.markets.send_if_modified(|s| s.remove(&market));
                        } else {
                            registry.markets.send_if_modified(|s| s.insert(market));
                        }
                    }
                    Err(reason) => {
                        tracing::warn!(offset = m.offset(), %reason, "skipped markets record")
                    }
                }
                store
                    .applied
                    .lock()
                    .expect("applied lock poisoned")
                    .insert(m.partition(), m.offset());
                store.applied_tx.send_modify(|n| *n += 1);
            }
            Err(KafkaError::PartitionEOF(p)) => {
                at_end.insert(p);
                if !registry.loaded() && partitions.iter().all(|p| at_end.contains(p)) {
                    tracing::info!(markets = registry.list().len(), "markets registry loaded");
                    registry.loaded.send_replace(true);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "markets topic read error; retrying");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

/// The gateway's registry: on the markets topic when Kafka `brokers` are given, else in
/// memory holding `seed` symbols on every exchange.
pub fn for_gateway(
    brokers: Option<&str>,
    topic: &str,
    kafka_config: &[(String, String)],
    seed: &[String],
    shutdown: &CancellationToken,
) -> Result<Arc<Registry>, String> {
    match brokers {
        Some(brokers) => Registry::kafka(brokers, topic, kafka_config, shutdown.clone()),
        None => {
            let mut markets = Vec::new();
            for symbol in seed {
                for exchange in EXCHANGES {
                    match Market::new(exchange, symbol) {
                        Ok(m) => markets.push(m),
                        Err(e) => {
                            tracing::warn!("--demo-markets: {e}; left out of the registry");
                            break;
                        }
                    }
                }
            }
            Ok(Registry::memory(markets))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markets_are_validated() {
        assert!(Market::new("upbit", "KRW-BTC").is_ok());
        assert!(Market::new("bithumb", "KRW-1INCH").is_ok());
        assert!(Market::new("upbit", "USDT-XRP").is_ok());
        let e = Market::new("binance", "KRW-BTC").unwrap_err();
        assert!(e.contains("unknown exchange 'binance'") && e.contains("upbit, bithumb"));
        for bad in [
            "krw-btc",
            "KRWBTC",
            "KRW-",
            "-BTC",
            "KRW-BTC-X",
            "KRW-B/C",
            "",
        ] {
            let e = Market::new("upbit", bad).unwrap_err();
            assert!(
                e.contains("malformed symbol") && e.contains("KRW-BTC"),
                "{bad}: {e}"
            );
        }
        let m = Market::from_key("bithumb:KRW-ETH").unwrap();
        assert_eq!(m.key(), "bithumb:KRW-ETH");
        assert!(Market::from_key("KRW-ETH").is_err());
    }

    #[tokio::test]
    async fn memory_round_trip() {
        let r = Registry::memory([Market::new("upbit", "KRW-BTC").unwrap()]);
        let mut rx = r.subscribe();
        let eth = Market::new("bithumb", "KRW-ETH").unwrap();
        assert!(r.add(eth.clone()).await.unwrap());
        assert!(!r.add(eth.clone()).await.unwrap(), "already there");
        assert!(rx.has_changed().unwrap());
        assert_eq!(rx.borrow_and_update().len(), 2);
        assert_eq!(
            r.list().iter().map(Market::key).collect::<Vec<_>>(),
            ["bithumb:KRW-ETH", "upbit:KRW-BTC"]
        );
        assert!(r.remove(&eth).await.unwrap());
        assert!(!r.remove(&eth).await.unwrap());
        assert_eq!(r.list().len(), 1);
        assert!(r.wait_loaded(Duration::from_millis(1)).await);
    }
}
