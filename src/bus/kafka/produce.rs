//! Producing one record and waiting for the broker's acknowledgement: the one way the
//! gateway's bus (client SENDs) and the feed's sink (exchange trades) put a record on
//! Kafka, so both map the producer's refusals the same way.

use crate::bus::{OutboundRecord, SendError, SendFuture};
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use std::time::Duration;

/// How much longer than `message.timeout.ms` the future waits for librdkafka's own answer
/// before it says the send timed out.
const GRACE: Duration = Duration::from_millis(500);

/// Queues `record` on `producer`; the future resolves once the broker acknowledged it, or
/// says why not. `timeout` is the producer's `message.timeout.ms`: a record not
/// acknowledged within it is a [`SendError::Timeout`], whether librdkafka says so or (a
/// little later) the future itself.
pub fn produce<C: ClientContext + 'static>(
    producer: &FutureProducer<C>,
    record: &OutboundRecord,
    timeout: Duration,
) -> SendFuture {
    let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
    for (k, v) in &record.headers {
        headers = headers.insert(Header {
            key: k,
            value: Some(v.as_bytes()),
        });
    }
    let future = FutureRecord::to(&record.topic)
        .key(&record.key)
        .payload(&record.value[..])
        .headers(headers);
    match producer.send_result(future) {
        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
            Box::pin(async { Err(SendError::QueueFull) })
        }
        Err((e, _)) => {
            let msg = e.to_string();
            Box::pin(async move { Err(SendError::Rejected(msg)) })
        }
        Ok(delivery) => Box::pin(async move {
            let ms = timeout.as_millis() as u64;
            match tokio::time::timeout(timeout + GRACE, delivery).await {
                Err(_) => Err(SendError::Timeout(ms)),
                Ok(Err(_canceled)) => Err(SendError::Rejected("producer closed".into())),
                Ok(Ok(Err((
                    KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut),
                    _,
                )))) => Err(SendError::Timeout(ms)),
                Ok(Ok(Err((e, _)))) => Err(SendError::Rejected(e.to_string())),
                Ok(Ok(Ok(_delivery))) => Ok(()),
            }
        }),
    }
}

/// The producer's `message.timeout.ms` as configured (an operator's override included), or
/// `default` where it is not set or not a number.
pub fn message_timeout(config: &ClientConfig, default: Duration) -> Duration {
    config
        .get("message.timeout.ms")
        .and_then(|v| v.trim().parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_override_of_the_message_timeout_is_what_a_send_waits_for() {
        let mut c = ClientConfig::new();
        let default = Duration::from_secs(30);
        assert_eq!(message_timeout(&c, default), default);
        c.set("message.timeout.ms", "4500");
        assert_eq!(message_timeout(&c, default), Duration::from_millis(4500));
        c.set("message.timeout.ms", "soon");
        assert_eq!(message_timeout(&c, default), default);
    }
}
