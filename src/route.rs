//! Inbound routing: a record of a configured topic becomes a `Publication` on a destination
//! built from a template (`/topic/market/{key}` by default; `{key}` is the record key and
//! `{json.<field>}` a top-level field of its value).

use crate::bus::InboundRecord;
use crate::destination::{MARKET_PREFIX, valid_market_id};
use crate::hub::publication::{Origin, Publication};
use bytes::Bytes;
use thiserror::Error;

/// Where a route takes the event type of its publications from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventType {
    /// Every record of the topic has this event type.
    Fixed(String),
    /// The record's `event-type` header, or this default when absent.
    Header { default: String },
}

/// One inbound route: records of `topic` become publications on `destination`, a template
/// in which `{key}` is the record key and `{json.<field>}` a top-level field of the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub topic: String,
    pub destination: String,
    pub event_type: EventType,
    /// Whether a slow client may skip older publications of this route (market ticks).
    pub conflatable: bool,
}

/// Why an inbound record was skipped (counted, logged, never fatal).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SkipReason {
    #[error("no route for topic '{0}'")]
    NoRoute(String),
    #[error("record has no key")]
    NoKey,
    #[error("destination template field '{0}' missing from the record")]
    MissingField(String),
    #[error("record key or field gives an invalid market id '{0}'")]
    BadMarket(String),
    #[error("record value of {0} bytes exceeds the limit")]
    TooLarge(usize),
}

impl SkipReason {
    /// Short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            SkipReason::NoRoute(_) => "no_route",
            SkipReason::NoKey => "no_key",
            SkipReason::MissingField(_) => "missing_field",
            SkipReason::BadMarket(_) => "bad_market",
            SkipReason::TooLarge(_) => "too_large",
        }
    }
}

/// The inbound routing table.
#[derive(Debug, Clone)]
pub struct Router {
    routes: Vec<Route>,
    max_value_bytes: usize,
}

impl Router {
    pub fn new(routes: Vec<Route>, max_value_bytes: usize) -> Router {
        Router {
            routes,
            max_value_bytes,
        }
    }

    /// The record contract's defaults: trades and chat, both to `/topic/market/{key}`.
    pub fn defaults(trades_topic: &str, chat_topic: &str) -> Router {
        Router::new(
            vec![
                Route {
                    topic: trades_topic.to_string(),
                    destination: format!("{MARKET_PREFIX}{{key}}"),
                    event_type: EventType::Fixed("trade".into()),
                    conflatable: true,
                },
                Route {
                    topic: chat_topic.to_string(),
                    destination: format!("{MARKET_PREFIX}{{key}}"),
                    event_type: EventType::Header {
                        default: "chat.send".into(),
                    },
                    conflatable: false,
                },
            ],
            1024 * 1024,
        )
    }

    /// Adds a trades route (event type `trade`, `/topic/market/{key}`, conflatable) per
    /// topic, e.g. one topic per exchange (`topic-upbit`, `topic-bithumb`).
    pub fn with_trade_topics(mut self, topics: &[String]) -> Router {
        for topic in topics.iter().filter(|t| !t.is_empty()) {
            if self.routes.iter().all(|r| &r.topic != topic) {
                self.routes.push(Route {
                    topic: topic.clone(),
                    destination: format!("{MARKET_PREFIX}{{key}}"),
                    event_type: EventType::Fixed("trade".into()),
                    conflatable: true,
                });
            }
        }
        self
    }

    pub fn topics(&self) -> Vec<String> {
        let mut t: Vec<String> = self.routes.iter().map(|r| r.topic.clone()).collect();
        t.dedup();
        t
    }

    /// Turns a record into a publication, or says why it is skipped.
    pub fn publication(&self, rec: &InboundRecord) -> Result<Publication, SkipReason> {
        let route = self
            .routes
            .iter()
            .find(|r| r.topic == rec.topic)
            .ok_or_else(|| SkipReason::NoRoute(rec.topic.clone()))?;
        if rec.value.len() > self.max_value_bytes {
            return Err(SkipReason::TooLarge(rec.value.len()));
        }
        let destination = expand(&route.destination, rec)?;
        let event_type = match &route.event_type {
            EventType::Fixed(e) => e.clone(),
            EventType::Header { default } => rec
                .header("event-type")
                .filter(|e| !e.is_empty() && e.len() <= 64)
                .unwrap_or(default)
                .to_string(),
        };
        let origin = Origin {
            topic: rec.topic.as_str().into(),
            partition: rec.partition,
            offset: rec.offset,
        };
        // A W3C trace context crosses from the record to the MESSAGE (well-formed only).
        let extra_headers = rec
            .header("traceparent")
            .filter(|v| v.len() == 55 && v.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'))
            .map(|v| vec![("traceparent".to_string(), v.to_string())])
            .unwrap_or_default();
        Ok(Publication {
            destination: destination.into(),
            event_type,
            message_id: origin.message_id(),
            timestamp_ms: rec.timestamp_ms,
            content_type: "application/json",
            body: rec.value.clone(),
            conflatable: route.conflatable,
            origin: Some(origin),
            extra_headers,
        })
    }
}

fn expand(template: &str, rec: &InboundRecord) -> Result<String, SkipReason> {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..]
            .find('}')
            .map(|c| open + c)
            .unwrap_or(rest.len() - 1);
        let field = &rest[open + 1..close];
        let value = if field == "key" {
            let key = rec.key.as_ref().ok_or(SkipReason::NoKey)?;
            String::from_utf8_lossy(key).into_owned()
        } else if let Some(name) = field.strip_prefix("json.") {
            json_field(&rec.value, name).ok_or_else(|| SkipReason::MissingField(name.into()))?
        } else {
            return Err(SkipReason::MissingField(field.into()));
        };
        if !valid_market_id(&value) {
            return Err(SkipReason::BadMarket(value));
        }
        out.push_str(&value);
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn json_field(value: &Bytes, name: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(value).ok()?;
    match v.get(name)? {
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(topic: &str, key: Option<&str>, value: &str) -> InboundRecord {
        InboundRecord {
            topic: topic.into(),
            partition: 2,
            offset: 41,
            key: key.map(|k| Bytes::from(k.to_string())),
            headers: vec![],
            value: Bytes::from(value.to_string()),
            timestamp_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn per_exchange_trade_topics() {
        let r = Router::defaults("trades", "chat").with_trade_topics(&[
            "topic-upbit".into(),
            "trades".into(),
            "".into(),
        ]);
        assert_eq!(r.topics(), ["trades", "chat", "topic-upbit"]);
        let p = r
            .publication(&rec("topic-upbit", Some("KRW-BTC"), "{}"))
            .unwrap();
        assert_eq!(&*p.destination, "/topic/market/KRW-BTC");
        assert_eq!(p.event_type, "trade");
        assert!(p.conflatable);
    }

    #[test]
    fn trade_record_routes_by_key() {
        let r = Router::defaults("trades", "chat");
        let p = r
            .publication(&rec("trades", Some("KRW-BTC"), "{}"))
            .unwrap();
        assert_eq!(&*p.destination, "/topic/market/KRW-BTC");
        assert_eq!(p.event_type, "trade");
        assert_eq!(p.message_id, "trades-2-41");
        assert!(p.conflatable);
    }

    #[test]
    fn chat_record_takes_event_type_header() {
        let r = Router::defaults("trades", "chat");
        let mut record = rec("chat", Some("KRW-BTC"), "{}");
        record
            .headers
            .push(("event-type".into(), "chat.delete".into()));
        let p = r.publication(&record).unwrap();
        assert_eq!(p.event_type, "chat.delete");
        assert!(!p.conflatable);
        let p = r.publication(&rec("chat", Some("KRW-BTC"), "{}")).unwrap();
        assert_eq!(p.event_type, "chat.send");
    }

    #[test]
    fn records_without_key_or_route_are_skipped() {
        let r = Router::defaults("trades", "chat");
        assert_eq!(
            r.publication(&rec("trades", None, "{}")).unwrap_err(),
            SkipReason::NoKey
        );
        assert!(matches!(
            r.publication(&rec("other", Some("a"), "{}")).unwrap_err(),
            SkipReason::NoRoute(_)
        ));
        assert!(matches!(
            r.publication(&rec("trades", Some("bad key"), "{}"))
                .unwrap_err(),
            SkipReason::BadMarket(_)
        ));
    }

    #[test]
    fn json_field_template() {
        let r = Router::new(
            vec![Route {
                topic: "ticks".into(),
                destination: "/topic/market/{json.symbol}".into(),
                event_type: EventType::Fixed("tick".into()),
                conflatable: true,
            }],
            1024,
        );
        let p = r
            .publication(&rec("ticks", None, r#"{"symbol":"KRW-SOL"}"#))
            .unwrap();
        assert_eq!(&*p.destination, "/topic/market/KRW-SOL");
        assert!(matches!(
            r.publication(&rec("ticks", None, "{}")).unwrap_err(),
            SkipReason::MissingField(_)
        ));
        let big = "x".repeat(2000);
        assert!(matches!(
            r.publication(&rec("ticks", None, &big)).unwrap_err(),
            SkipReason::TooLarge(2000)
        ));
    }
}
