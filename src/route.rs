//! Routes between topics and destinations, as the configuration gives them.
//!
//! Inbound: a record of a configured topic becomes a `Publication` on a destination built
//! from a template (`/topic/market/{key}` by default; `{key}` is the record key and
//! `{json.<field>}` a top-level field of its value). Clients may subscribe to any
//! destination an inbound route publishes to.
//!
//! SEND: a client SEND to a destination matching a pattern (`/app/order/{market}`) becomes
//! a record of the route's topic, keyed by a template of the pattern's placeholders
//! (`{market}`). Every placeholder is a whole path segment holding an id; templates are
//! checked at startup, so a bad one stops the gateway with a message naming it.

use crate::bus::{InboundRecord, OutboundRecord};
use crate::destination::{MARKET_PREFIX, Shape, check_subscribe, valid_market_id};
use crate::hub::publication::{Origin, Publication};
use crate::trace::{TRACEPARENT, valid_traceparent};
use bytes::Bytes;
use thiserror::Error;

mod template;
pub use template::{KeyTemplate, Part, Template, TemplateError};

/// Who may SEND on a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Senders {
    /// Every connected client.
    Any,
    /// Clients that connected with a valid token.
    Authenticated,
    /// Clients whose permissions (the token's `send` claim, else `--default-send`) match
    /// the destination: the same rule as chat.
    Permission,
}

impl Senders {
    pub fn parse(text: &str) -> Option<Senders> {
        match text {
            "any" => Some(Senders::Any),
            "authenticated" => Some(Senders::Authenticated),
            "permission" => Some(Senders::Permission),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Senders::Any => "any",
            Senders::Authenticated => "authenticated",
            Senders::Permission => "permission",
        }
    }
}

/// One SEND route: a SEND to a destination matching `pattern` is produced to `topic`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendRoute {
    /// The pattern as configured, for messages.
    pub destination: String,
    pub pattern: Template,
    pub topic: String,
    pub key: KeyTemplate,
    /// Accepted `event-type` headers; the first is used when the SEND has none.
    pub event_types: Vec<String>,
    pub senders: Senders,
}

impl SendRoute {
    /// Parses and checks a configured SEND route.
    pub fn new(
        destination: &str,
        topic: &str,
        key: &str,
        event_types: Vec<String>,
        senders: Senders,
    ) -> Result<SendRoute, String> {
        let what = format!("SEND route '{destination}'");
        let pattern = Template::send_pattern(destination)
            .map_err(|e| format!("{what}: destination '{destination}' {e}"))?;
        if pattern.segments.first() != Some(&Part::Literal("app".into())) {
            return Err(format!(
                "{what}: client SENDs go to destinations under /app/ (e.g. /app/order/{{market}})"
            ));
        }
        if topic.is_empty() {
            return Err(format!("{what}: topic is empty"));
        }
        let key = KeyTemplate::parse(key, &pattern.vars())
            .map_err(|e| format!("{what}: key '{key}' {e}"))?;
        if event_types.is_empty() || event_types.iter().any(|e| e.is_empty() || e.len() > 64) {
            return Err(format!(
                "{what}: event-types lists the event types a SEND may carry (1 to 64 characters each), e.g. [\"order.new\"]"
            ));
        }
        Ok(SendRoute {
            destination: destination.to_string(),
            pattern,
            topic: topic.to_string(),
            key,
            event_types,
            senders,
        })
    }

    /// The record a SEND to `destination` (matched by this route) produces: the body as
    /// value, the templated key, the `event-type` and the sender as headers.
    pub fn record(
        &self,
        destination: &str,
        event_type: Option<&str>,
        body: &[u8],
        user: &str,
    ) -> Result<OutboundRecord, SendRefusal> {
        let vars = self
            .pattern
            .capture(destination)
            .ok_or_else(|| SendRefusal::NoRoute(destination.to_string()))?;
        let event_type = match event_type {
            None => self.event_types[0].clone(),
            Some(e) if self.event_types.iter().any(|a| a == e) => e.to_string(),
            Some(e) => {
                return Err(SendRefusal::EventType {
                    got: e.to_string(),
                    destination: destination.to_string(),
                    accepted: self.event_types.join(", "),
                });
            }
        };
        Ok(OutboundRecord {
            topic: self.topic.clone(),
            key: self.key.expand(&vars),
            headers: vec![
                ("event-type".into(), event_type),
                ("user".into(), user.to_string()),
            ],
            value: Bytes::copy_from_slice(body),
        })
    }
}

/// Why a SEND on a configured route was refused; the text goes into the ERROR frame.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SendRefusal {
    #[error("no SEND route matches '{0}'")]
    NoRoute(String),
    #[error("event type '{got}' is not accepted on '{destination}': use one of {accepted}")]
    EventType {
        got: String,
        destination: String,
        accepted: String,
    },
}

impl SendRefusal {
    pub fn label(&self) -> &'static str {
        match self {
            SendRefusal::NoRoute(_) => "bad_destination",
            SendRefusal::EventType { .. } => "bad_event_type",
        }
    }
}

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

/// The routing table: inbound routes (topic -> destination) and SEND routes.
#[derive(Debug, Clone)]
pub struct Router {
    routes: Vec<Route>,
    /// What the inbound routes publish to: what clients may subscribe to.
    shapes: Vec<Shape>,
    send: Vec<SendRoute>,
    max_value_bytes: usize,
}

impl Router {
    /// A table of inbound routes; a bad template is an error naming the route.
    pub fn new(routes: Vec<Route>, max_value_bytes: usize) -> Result<Router, String> {
        let shapes = routes
            .iter()
            .map(|r| {
                Template::inbound(&r.destination)
                    .map(|t| t.shape())
                    .map_err(|e| {
                        format!(
                            "inbound route of topic '{}': destination '{}' {e}",
                            r.topic, r.destination
                        )
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Router {
            routes,
            shapes,
            send: Vec::new(),
            max_value_bytes,
        })
    }

    /// Adds inbound routes from the configuration: one for a topic that already has a
    /// route replaces it.
    pub fn with_inbound(self, routes: Vec<Route>) -> Result<Router, String> {
        for (i, r) in routes.iter().enumerate() {
            if routes[..i].iter().any(|o| o.topic == r.topic) {
                return Err(format!(
                    "inbound route of topic '{}': the topic has two inbound routes; a topic feeds one destination template",
                    r.topic
                ));
            }
        }
        let mut all: Vec<Route> = self
            .routes
            .into_iter()
            .filter(|r| routes.iter().all(|n| n.topic != r.topic))
            .collect();
        all.extend(routes);
        let send = self.send;
        let mut r = Router::new(all, self.max_value_bytes)?;
        r.send = send;
        Ok(r)
    }

    /// Sets the SEND routes (checked by [`SendRoute::new`]); the first match wins.
    pub fn with_send(mut self, send: Vec<SendRoute>) -> Router {
        self.send = send;
        self
    }

    /// Whether clients may subscribe to `destination`: an inbound route publishes there.
    pub fn check_subscribe(
        &self,
        destination: &str,
    ) -> Result<(), crate::destination::DestinationError> {
        check_subscribe(destination, &self.shapes)
    }

    /// The configured SEND patterns, for a refusal's hint (empty when there are none).
    pub fn send_patterns(&self) -> Vec<&str> {
        self.send.iter().map(|r| r.destination.as_str()).collect()
    }

    /// The configured SEND route for `destination`, if any (else chat handles it).
    pub fn send_route(&self, destination: &str) -> Option<&SendRoute> {
        self.send
            .iter()
            .find(|r| r.pattern.capture(destination).is_some())
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
        .expect("the default templates are valid")
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
                self.shapes.push(
                    Template::inbound(&format!("{MARKET_PREFIX}{{key}}"))
                        .expect("the default template is valid")
                        .shape(),
                );
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
            .header(TRACEPARENT)
            .filter(|v| valid_traceparent(v))
            .map(|v| vec![(TRACEPARENT.to_string(), v.to_string())])
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
mod tests;
