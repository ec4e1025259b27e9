//! A publication (one event for one destination) and its encoding, done once per
//! publication and shared by every subscriber.
//!
//! A MESSAGE frame is `MESSAGE\nsubscription:<id>\n[ack:<n>\n]` followed by the shared part:
//! the remaining headers, the blank line, the body and NUL. Only the first lines differ per
//! subscriber, so the session writer prepends them to the shared bytes.

use crate::stomp::{Version, escape_into, needs_escaping};
use bytes::Bytes;
use std::sync::Arc;

/// Where a publication comes from in the log: a position of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
}

impl Origin {
    /// `<topic>-<partition>-<offset>`, the form of a `message-id`.
    pub fn message_id(&self) -> String {
        format!("{}-{}-{}", self.topic, self.partition, self.offset)
    }

    /// Reads `<topic>-<partition>-<offset>` (topics may contain `-`).
    pub fn parse(id: &str) -> Option<Origin> {
        let (rest, offset) = id.trim().rsplit_once('-')?;
        let (topic, partition) = rest.rsplit_once('-')?;
        if topic.is_empty() {
            return None;
        }
        Some(Origin {
            topic: topic.into(),
            partition: partition.parse().ok()?,
            offset: offset.parse().ok()?,
        })
    }
}

/// One event to broadcast on a destination.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Publication {
    pub destination: Arc<str>,
    pub event_type: String,
    /// Names the origin so clients can de-duplicate and resume (`<topic>-<partition>-<offset>`).
    pub message_id: String,
    /// Event time, ms since the epoch (the Kafka record timestamp).
    pub timestamp_ms: i64,
    pub content_type: &'static str,
    pub body: Bytes,
    /// A slow client may skip this for a newer one on the same destination.
    pub conflatable: bool,
    /// Its position in the log, when it came from one.
    pub origin: Option<Origin>,
    /// Headers carried from the record (such as `traceparent`).
    pub extra_headers: Vec<(String, String)>,
}

/// The shared part of a publication's MESSAGE frames, for each STOMP version.
#[derive(Debug)]
pub struct Encoded {
    pub destination: Arc<str>,
    pub origin: Option<Origin>,
    pub message_id: Arc<str>,
    pub timestamp_ms: i64,
    pub conflatable: bool,
    /// The encoding is UTF-8 (the body is; headers always are), so writers need not check
    /// it again per delivery.
    pub utf8: bool,
    per_version: [Bytes; 3],
}

impl Encoded {
    /// The shared bytes for a subscriber speaking `version`.
    pub fn bytes(&self, version: Version) -> &Bytes {
        &self.per_version[version.index()]
    }
}

impl Publication {
    /// Encodes the shared part once; versions share one buffer unless escaping differs.
    /// `cursor` is the destination's resume cursor as of this message (`x-cursor`).
    pub fn encode(&self, cursor: Option<&str>) -> Encoded {
        let timestamp = self.timestamp_ms.to_string();
        let mut headers: Vec<(&str, &str)> = vec![
            ("destination", &self.destination),
            ("message-id", &self.message_id),
            ("content-type", self.content_type),
            ("event-type", &self.event_type),
            ("timestamp", &timestamp),
        ];
        if let Some(c) = cursor {
            headers.push(("x-cursor", c));
        }
        for (k, v) in &self.extra_headers {
            headers.push((k, v));
        }
        let encode = |version: Version| -> Bytes {
            let mut out = Vec::with_capacity(160 + self.body.len());
            for &(name, value) in &headers {
                out.extend_from_slice(name.as_bytes());
                out.push(b':');
                escape_into(value, version, &mut out);
                out.push(b'\n');
            }
            out.extend_from_slice(b"content-length:");
            out.extend_from_slice(self.body.len().to_string().as_bytes());
            out.extend_from_slice(b"\n\n");
            out.extend_from_slice(&self.body);
            out.push(0);
            Bytes::from(out)
        };
        let escaped = |v| headers.iter().any(|(_, value)| needs_escaping(value, v));
        let v12 = encode(Version::V1_2);
        let v11 = if escaped(Version::V1_2) {
            encode(Version::V1_1)
        } else {
            v12.clone()
        };
        let v10 = if escaped(Version::V1_1) || escaped(Version::V1_2) {
            encode(Version::V1_0)
        } else {
            v12.clone()
        };
        Encoded {
            destination: self.destination.clone(),
            origin: self.origin.clone(),
            message_id: self.message_id.as_str().into(),
            timestamp_ms: self.timestamp_ms,
            conflatable: self.conflatable,
            utf8: std::str::from_utf8(&self.body).is_ok(),
            per_version: [v10, v11, v12],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stomp::{Command, Limits, Parsed, parse};
    use bytes::BytesMut;

    fn publication(dest: &str) -> Publication {
        Publication {
            destination: dest.into(),
            event_type: "trade".into(),
            message_id: "trades-0-7".into(),
            timestamp_ms: 42,
            content_type: "application/json",
            body: Bytes::from_static(b"{\"p\":1}"),
            conflatable: true,
            ..Default::default()
        }
    }

    #[test]
    fn shared_part_completes_a_parseable_message() {
        let enc = publication("/topic/market/KRW-BTC").encode(None);
        let mut wire = BytesMut::from(&b"MESSAGE\nsubscription:s1\n"[..]);
        wire.extend_from_slice(enc.bytes(Version::V1_2));
        let Some(Parsed::Frame(f)) = parse(&mut wire, Version::V1_2, &Limits::default()).unwrap()
        else {
            panic!("no frame")
        };
        assert_eq!(f.command, Command::Message);
        assert_eq!(f.header("subscription"), Some("s1"));
        assert_eq!(f.header("destination"), Some("/topic/market/KRW-BTC"));
        assert_eq!(f.header("message-id"), Some("trades-0-7"));
        assert_eq!(f.header("event-type"), Some("trade"));
        assert_eq!(f.header("content-type"), Some("application/json"));
        assert_eq!(f.header("timestamp"), Some("42"));
        assert_eq!(&f.body[..], b"{\"p\":1}");
        assert!(wire.is_empty());
    }

    #[test]
    fn origins_read_back_from_message_ids() {
        let o = Origin::parse("topic-upbit-3-812").unwrap();
        assert_eq!((&*o.topic, o.partition, o.offset), ("topic-upbit", 3, 812));
        assert_eq!(o.message_id(), "topic-upbit-3-812");
        for bad in ["", "x", "-1-2", "t-a-1", "t-1-b"] {
            assert!(Origin::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn cursor_and_record_headers_are_encoded() {
        let mut p = publication("/topic/market/KRW-BTC");
        p.extra_headers
            .push(("traceparent".into(), "00-a-b-01".into()));
        let enc = p.encode(Some("trades-0-7,chat-1-2"));
        let text = std::str::from_utf8(enc.bytes(Version::V1_2)).unwrap();
        assert!(text.contains("x-cursor:trades-0-7,chat-1-2\n"), "{text}");
        assert!(text.contains("traceparent:00-a-b-01\n"), "{text}");
    }

    #[test]
    fn versions_share_bytes_unless_escaping_differs() {
        let enc = publication("/topic/market/KRW-BTC").encode(None);
        assert_eq!(
            enc.bytes(Version::V1_0).as_ptr(),
            enc.bytes(Version::V1_2).as_ptr()
        );
        let mut odd = publication("/topic/market/KRW-BTC");
        odd.message_id = "a:b".into();
        let enc = odd.encode(None);
        assert!(enc.bytes(Version::V1_2).starts_with(b"destination"));
        assert!(
            std::str::from_utf8(enc.bytes(Version::V1_2))
                .unwrap()
                .contains("message-id:a\\cb\n")
        );
        assert!(
            std::str::from_utf8(enc.bytes(Version::V1_0))
                .unwrap()
                .contains("message-id:a:b\n")
        );
    }
}
