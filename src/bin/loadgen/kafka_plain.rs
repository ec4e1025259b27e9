//! A plain Kafka consumer beside the gateway (scenario 6, `--kafka-plain`): it reads the
//! same records the gateway's producer wrote for the load generator's SENDs and measures,
//! with the same token and clock, SEND → plain consumer. Set against SEND → gateway →
//! socket in the same run, the difference is what the gateway adds over a plain consumer.
//!
//! Settings are the gateway's consumer's (src/bus/kafka.rs): `fetch.wait.max.ms=10`,
//! `socket.nagle.disable=true`, no commits; every partition assigned at its end (no group
//! join, as the gateway's broadcaster does), polled by one thread of its own.
//!
//! Here too, `gateway_delay`: the gateway's own end-to-end histogram
//! (`stompgate_delivery_delay_seconds`, event timestamp → socket write) read from /metrics
//! before and after the measured window.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::hist::Hist;
use crate::shared::Shared;
use crate::stomp::scan_tokens;

/// Starts the plain consumer on `topic`; its latencies go into the returned histogram
/// while `sh.record` is set. Returns once every partition is assigned, or why not.
pub fn start(brokers: &str, topic: &str, sh: Arc<Shared>) -> Result<Arc<Hist>, String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("loadgen-plain-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "latest")
        .set("fetch.wait.max.ms", "10")
        .set("socket.nagle.disable", "true")
        .create()
        .map_err(|e| format!("plain consumer: {e}"))?;
    // The gateway may create the topic with its first record: wait for it a while.
    let deadline = Instant::now() + Duration::from_secs(20);
    let partitions = loop {
        let n = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .ok()
            .and_then(|m| {
                m.topics()
                    .iter()
                    .find(|t| t.name() == topic && t.error().is_none())
                    .map(|t| t.partitions().len())
            })
            .unwrap_or(0);
        if n > 0 {
            break n;
        }
        if Instant::now() >= deadline {
            return Err(format!("plain consumer: topic {topic} has no partitions"));
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p as i32, Offset::End)
            .map_err(|e| format!("plain consumer: {e}"))?;
    }
    consumer
        .assign(&tpl)
        .map_err(|e| format!("plain consumer: {e}"))?;
    eprintln!("  plain consumer: {partitions} partition(s) of {topic} assigned at their end");
    let hist = Arc::new(Hist::new());
    let h = hist.clone();
    std::thread::spawn(move || {
        while !sh.stop.load(Relaxed) {
            let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            if !sh.record.load(Relaxed) {
                continue;
            }
            let now = sh.now_ns();
            if let Some(p) = m.payload() {
                scan_tokens(p, |_, _, t| h.record(now.saturating_sub(t)));
            }
        }
    });
    Ok(hist)
}

/// Cumulative bucket counts `(le seconds, count)` of the histogram `name` in Prometheus text.
pub fn buckets(text: &str, name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{le=\"");
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let (le, v) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, v.trim().parse().ok()?))
        })
        .collect()
}

/// Percentiles (ms, as the upper edge of the bucket holding them) of the observations
/// between two scrapes of one histogram; None for a percentile beyond the last finite edge.
pub fn window_pcts(
    before: &[(f64, f64)],
    after: &[(f64, f64)],
    qs: &[f64],
) -> (f64, Vec<Option<f64>>) {
    let diff: Vec<(f64, f64)> = after
        .iter()
        .map(|&(le, c)| {
            let b = before.iter().find(|x| x.0 == le).map_or(0.0, |x| x.1);
            (le, c - b)
        })
        .collect();
    let total = diff.last().map_or(0.0, |x| x.1);
    let pcts = qs
        .iter()
        .map(|q| {
            if total <= 0.0 {
                return None;
            }
            let rank = (q * total).ceil();
            diff.iter()
                .find(|x| x.1 >= rank)
                .and_then(|x| x.0.is_finite().then_some(x.0 * 1000.0))
        })
        .collect();
    (total, pcts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_histogram_window() {
        let a = "# TYPE stompgate_delivery_delay_seconds histogram\nstompgate_delivery_delay_seconds_bucket{le=\"0.001\"} 10\nstompgate_delivery_delay_seconds_bucket{le=\"0.002\"} 10\nstompgate_delivery_delay_seconds_bucket{le=\"+Inf\"} 10\n";
        let b = "stompgate_delivery_delay_seconds_bucket{le=\"0.001\"} 120\nstompgate_delivery_delay_seconds_bucket{le=\"0.002\"} 199\nstompgate_delivery_delay_seconds_bucket{le=\"+Inf\"} 210\n";
        let n = "stompgate_delivery_delay_seconds";
        let (total, p) = window_pcts(&buckets(a, n), &buckets(b, n), &[0.5, 0.9, 0.999]);
        assert_eq!(total, 200.0);
        assert_eq!(p, vec![Some(1.0), Some(2.0), None]);
    }
}
