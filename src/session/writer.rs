//! MESSAGE assembly: turns what a session's outbox held into wire chunks. Each MESSAGE is the
//! subscription's pre-encoded start (`MESSAGE\nsubscription:<id>\n`), an `ack` header where
//! the subscription needs one, and the publication's shared bytes (encoded once for every
//! subscriber). Frames are packed into chunks of at most `max_bytes` (one WebSocket message
//! or TCP write each) when batching, or one chunk per frame when not. Delivery delays, bytes
//! and writes are counted locally and published to the shared metrics at most once a second.

use super::acks::Acks;
use crate::clock::now_ms;
use crate::hub::outbox::Out;
use crate::hub::subscription::AckMode;
use crate::metrics::Metrics;
use crate::stomp::{Frame, Version, encode_frame};
use prometheus::local::{LocalHistogram, LocalIntCounter};

/// How a session's batches are cut.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub version: Version,
    /// Several frames per chunk (TCP, or WebSocket with batching on).
    pub batch: bool,
    /// Largest chunk built from several frames (a single larger frame is its own chunk).
    pub max_bytes: usize,
    /// Bytes left free at the start of every chunk for the transport's frame header.
    pub headroom: usize,
}

/// Delivery delays (publication timestamp → write), bytes and writes, counted locally:
/// shared atomics per message and per write showed in the fan-out profile, each bouncing a
/// cache line between the cores. Created on the first delivery, so idle sessions carry none.
#[derive(Default)]
pub struct DelayStats {
    local: Option<Box<Local>>,
    flushed_ms: i64,
    pub delivered: u64,
}

struct Local {
    delay: LocalHistogram,
    bytes: LocalIntCounter,
    writes: LocalIntCounter,
}

impl DelayStats {
    /// Publishes what was observed since the last flush.
    pub fn flush(&mut self) {
        if let Some(local) = &self.local {
            local.delay.flush();
            local.bytes.flush();
            local.writes.flush();
        }
    }

    /// Counts one write of `bytes` to the client: locally once the session has delivered.
    pub fn wrote(&mut self, bytes: usize, metrics: &Metrics) {
        match &mut self.local {
            Some(local) => {
                local.bytes.inc_by(bytes as u64);
                local.writes.inc();
            }
            None => {
                metrics.bytes_out.inc_by(bytes as u64);
                metrics.writes.inc();
            }
        }
    }
}

/// Everything assembled from one drain.
pub struct Assembled {
    pub chunks: Vec<Vec<u8>>,
    pub bytes: usize,
    /// A client-ack subscription passed its bound of unacknowledged messages.
    pub too_many_acks: bool,
    /// Every frame is UTF-8: the chunks may go as text without another check.
    pub utf8: bool,
}

/// Encodes one frame of the session itself (RECEIPT, ERROR, CONNECTED).
pub fn encode_reply(frame: &Frame, version: Version) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + frame.body.len());
    encode_frame(frame, version, &mut out);
    out
}

/// Turns drained `items` into chunks, each starting with `shape.headroom` free bytes
/// (emptying `items`, keeping its capacity).
pub fn assemble(
    items: &mut Vec<Out>,
    shape: Shape,
    acks: &mut Acks,
    stats: &mut DelayStats,
    metrics: &Metrics,
) -> Assembled {
    let version = shape.version;
    let estimate: usize = items
        .iter()
        .map(|i| match i {
            Out::Frame(b) => b.len(),
            Out::Message { sub, msg } | Out::Replay { sub, msg } => {
                sub.prefix.len() + msg.bytes(version).len() + 40
            }
        })
        .sum();
    let first = if shape.batch {
        estimate.min(shape.max_bytes)
    } else {
        0
    };
    let room = shape.headroom;
    let fresh = |capacity: usize| {
        let mut v = Vec::with_capacity(room + capacity);
        v.resize(room, 0);
        v
    };
    let mut chunks = Vec::new();
    let mut cur = fresh(first);
    let mut bytes = 0;
    let now = now_ms();
    let mut too_many_acks = false;
    let mut utf8 = true;
    let delivered_before = stats.delivered;
    for item in items.drain(..) {
        let start = cur.len();
        let replay = matches!(item, Out::Replay { .. });
        match item {
            Out::Frame(frame) => {
                utf8 &= std::str::from_utf8(&frame).is_ok();
                cur.extend_from_slice(&frame);
            }
            Out::Message { sub, msg } | Out::Replay { sub, msg } => {
                // Messages queued before an UNSUBSCRIBE are not delivered after it.
                if !sub.is_active() {
                    continue;
                }
                cur.extend_from_slice(&sub.prefix);
                if replay {
                    cur.extend_from_slice(b"x-replay:true\n");
                }
                if sub.ack != AckMode::Auto {
                    let (ack_id, over) = acks.track(&sub, &msg.message_id);
                    too_many_acks |= over;
                    if version == Version::V1_2 {
                        cur.extend_from_slice(b"ack:");
                        cur.extend_from_slice(ack_id.to_string().as_bytes());
                        cur.push(b'\n');
                    }
                }
                cur.extend_from_slice(msg.bytes(version));
                utf8 &= msg.utf8;
                stats.delivered += 1;
                stats
                    .local
                    .get_or_insert_with(|| {
                        Box::new(Local {
                            delay: metrics.delivery_delay.local(),
                            bytes: metrics.bytes_out.local(),
                            writes: metrics.writes.local(),
                        })
                    })
                    .delay
                    .observe((now - msg.timestamp_ms).max(0) as f64 / 1000.0);
            }
        }
        bytes += cur.len() - start;
        if !shape.batch || cur.len() - room >= shape.max_bytes {
            let next = if shape.batch {
                estimate.saturating_sub(bytes).min(shape.max_bytes)
            } else {
                0
            };
            chunks.push(std::mem::replace(&mut cur, fresh(next)));
        }
    }
    if cur.len() > room {
        chunks.push(cur);
    }
    if stats.delivered > delivered_before && now - stats.flushed_ms >= 1000 {
        stats.flush();
        stats.flushed_ms = now;
    }
    Assembled {
        chunks,
        bytes,
        too_many_acks,
        utf8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::publication::Publication;
    use crate::hub::subscription::Subscription;
    use bytes::Bytes;
    use std::sync::Arc;

    fn message(sub: &Arc<Subscription>, n: usize) -> Out {
        let p = Publication {
            destination: "/topic/market/X".into(),
            event_type: "trade".into(),
            message_id: format!("t-0-{n}"),
            timestamp_ms: 0,
            content_type: "application/json",
            body: Bytes::from(vec![b'x'; 100]),
            conflatable: true,
            ..Default::default()
        };
        Out::Message {
            sub: sub.clone(),
            msg: Arc::new(p.encode(None)),
        }
    }

    #[test]
    fn batches_are_capped_and_ack_ids_assigned() {
        let sub = Arc::new(Subscription::new(
            1,
            "s",
            "/topic/market/X",
            Version::V1_2,
            AckMode::ClientIndividual,
        ));
        let mut items: Vec<Out> = (0..10).map(|n| message(&sub, n)).collect();
        let mut acks = Acks::new(100);
        let mut stats = DelayStats::default();
        let shape = Shape {
            version: Version::V1_2,
            batch: true,
            max_bytes: 600,
            headroom: 0,
        };
        let out = assemble(&mut items, shape, &mut acks, &mut stats, &Metrics::new());
        assert!(items.is_empty());
        assert!(out.chunks.len() >= 3, "{}", out.chunks.len());
        assert!(out.chunks.iter().all(|c| c.len() < 600 + 300));
        assert_eq!(out.bytes, out.chunks.iter().map(Vec::len).sum::<usize>());
        let text = String::from_utf8(out.chunks.concat()).unwrap();
        assert_eq!(text.matches("MESSAGE\nsubscription:s\nack:").count(), 10);
        assert!(text.contains("ack:9\n"));
        assert_eq!(acks.pending(), 10);
        assert_eq!(stats.delivered, 10);
        assert!(out.utf8);
    }

    #[test]
    fn unbatched_is_one_chunk_per_frame_and_unsubscribed_are_skipped() {
        let sub = Arc::new(Subscription::new(
            1,
            "s",
            "/topic/market/X",
            Version::V1_1,
            AckMode::Auto,
        ));
        let gone = Arc::new(Subscription::new(
            1,
            "g",
            "/topic/market/X",
            Version::V1_1,
            AckMode::Auto,
        ));
        gone.deactivate();
        let mut items = vec![
            message(&sub, 1),
            message(&gone, 2),
            Out::Frame(Bytes::from_static(b"\n")),
        ];
        let shape = Shape {
            version: Version::V1_1,
            batch: false,
            max_bytes: 1 << 16,
            headroom: 10,
        };
        let out = assemble(
            &mut items,
            shape,
            &mut Acks::new(1),
            &mut DelayStats::default(),
            &Metrics::new(),
        );
        assert_eq!(out.chunks.len(), 2);
        // Each chunk starts with the headroom for the transport's frame header.
        assert_eq!(out.chunks[1], b"\0\0\0\0\0\0\0\0\0\0\n");
        assert!(out.chunks[0][10..].starts_with(b"MESSAGE\n"));
        assert_eq!(
            out.bytes,
            out.chunks.iter().map(|c| c.len() - 10).sum::<usize>()
        );
        assert!(out.utf8);
        let binary = Publication {
            destination: "/topic/market/X".into(),
            message_id: "t-0-1".into(),
            body: Bytes::from_static(&[0xff, 0xfe]),
            ..Default::default()
        };
        let mut items = vec![Out::Message {
            sub: sub.clone(),
            msg: Arc::new(binary.encode(None)),
        }];
        let out = assemble(
            &mut items,
            shape,
            &mut Acks::new(1),
            &mut DelayStats::default(),
            &Metrics::new(),
        );
        assert!(
            !out.utf8,
            "a binary body is checked once, then sent as it is"
        );
    }
}
