//! Where the feed's trades go on Kafka: an idempotent producer with `acks=all`, behind the
//! gateway's `Bus` interface so the same exchange clients also run on the local bus of the
//! embedded default (`--live-feed`).

use crate::bus::kafka::{message_timeout, produce};
use crate::bus::{Bus, OutboundRecord, SendFuture};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::producer::{FutureProducer, Producer};
use std::time::Duration;

/// How long a trade may wait for the broker's acknowledgement unless `--kafka-config` sets
/// `message.timeout.ms`.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

pub struct KafkaSink {
    producer: FutureProducer,
    /// The producer's effective `message.timeout.ms`.
    send_timeout: Duration,
}

impl KafkaSink {
    pub fn new(brokers: &str, extra: &[(String, String)]) -> Result<KafkaSink, String> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", brokers)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "2")
            .set("socket.nagle.disable", "true")
            .set("message.timeout.ms", SEND_TIMEOUT.as_millis().to_string())
            .set("reconnect.backoff.max.ms", "2000")
            .set_log_level(RDKafkaLogLevel::Warning);
        for (k, v) in extra {
            c.set(k, v);
        }
        let send_timeout = message_timeout(&c, SEND_TIMEOUT);
        let producer = c
            .create()
            .map_err(|e| format!("--kafka-brokers {brokers}: cannot create the producer: {e}"))?;
        Ok(KafkaSink {
            producer,
            send_timeout,
        })
    }

    /// Waits (bounded) for queued trades to be acknowledged, on shutdown.
    pub fn flush(&self, timeout: Duration) {
        if let Err(e) = self.producer.flush(timeout) {
            tracing::warn!(error = %e, "not every trade was acknowledged before exit");
        }
    }
}

impl Bus for KafkaSink {
    fn name(&self) -> &'static str {
        "kafka"
    }

    fn send(&self, record: OutboundRecord) -> SendFuture {
        produce(&self.producer, &record, self.send_timeout)
    }

    fn ready(&self) -> bool {
        true
    }
}
