//! Where the feed's trades go on Kafka: an idempotent producer with `acks=all`, behind the
//! gateway's `Bus` interface so the same exchange clients also run on the local bus of the
//! embedded default (`--live-feed`).

use crate::bus::{Bus, OutboundRecord, SendError, SendFuture};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use std::time::Duration;

pub struct KafkaSink {
    producer: FutureProducer,
}

impl KafkaSink {
    pub fn new(brokers: &str, extra: &[(String, String)]) -> Result<KafkaSink, String> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", brokers)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "2")
            .set("socket.nagle.disable", "true")
            .set("message.timeout.ms", "30000")
            .set("reconnect.backoff.max.ms", "2000")
            .set_log_level(RDKafkaLogLevel::Warning);
        for (k, v) in extra {
            c.set(k, v);
        }
        let producer = c
            .create()
            .map_err(|e| format!("--kafka-brokers {brokers}: cannot create the producer: {e}"))?;
        Ok(KafkaSink { producer })
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
        let future = FutureRecord::to(&record.topic)
            .key(&record.key)
            .payload(&record.value[..]);
        match self.producer.send_result(future) {
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                Box::pin(async { Err(SendError::QueueFull) })
            }
            Err((e, _)) => {
                let msg = e.to_string();
                Box::pin(async move { Err(SendError::Rejected(msg)) })
            }
            Ok(delivery) => Box::pin(async move {
                match delivery.await {
                    Err(_) => Err(SendError::Rejected("producer closed".into())),
                    Ok(Err((e, _))) => Err(SendError::Rejected(e.to_string())),
                    Ok(Ok(_)) => Ok(()),
                }
            }),
        }
    }

    fn ready(&self) -> bool {
        true
    }
}
