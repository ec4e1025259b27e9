//! The `[routes]` table of the `--config` file, and the routing table built from it and
//! the default routes of the record contract.

use super::Config;

/// The `[routes]` table of the config file. Without it the routes are the record
/// contract's: --trades-topic and --chat-topic to `/topic/market/{key}`, chat SENDs to
/// `/app/market/{market}/chat`.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutesConfig {
    /// `[[routes.inbound]]`: added to the defaults; one for a default topic replaces it.
    #[serde(default)]
    pub inbound: Vec<InboundRouteConfig>,
    /// `[[routes.send]]`: checked before the chat destinations.
    #[serde(default)]
    pub send: Vec<SendRouteConfig>,
}

/// `[[routes.inbound]]`: records of `topic` become MESSAGEs on `destination`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct InboundRouteConfig {
    pub topic: String,
    /// Template: `{key}` (record key) and `{json.<field>}`, each a whole path segment.
    pub destination: String,
    /// Event type of every MESSAGE (`trade` when absent); with `event-type-from-header`
    /// the record's `event-type` header wins and this is the default.
    #[serde(default)]
    pub event_type: Option<String>,
    #[serde(default)]
    pub event_type_from_header: bool,
    /// Whether a slow client may skip older MESSAGEs of this route.
    #[serde(default)]
    pub conflatable: bool,
}

/// `[[routes.send]]`: a SEND to `destination` (a pattern) is produced to `topic`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SendRouteConfig {
    /// Pattern under /app/, e.g. `/app/order/{market}`.
    pub destination: String,
    pub topic: String,
    /// Record key template of the pattern's placeholders, e.g. `{market}`.
    pub key: String,
    /// Event types a SEND may carry in its `event-type` header; the first is the default.
    pub event_types: Vec<String>,
    /// Who may send: `any`, `authenticated` or `permission` (the default: the token's
    /// `send` claim or --default-send must match, as for chat).
    #[serde(default)]
    pub allow: Option<String>,
}

impl Config {
    /// The routing table: the defaults (trades, chat, --extra-trades-topics) and the
    /// `[routes]` of the config file. A bad template is an error naming the route.
    pub fn router(&self) -> Result<crate::route::Router, String> {
        use crate::route::{EventType, Route, Router, SendRoute, Senders};
        let inbound = self
            .routes
            .inbound
            .iter()
            .map(|r| {
                let event_type = r.event_type.clone().unwrap_or_else(|| "trade".into());
                if event_type.is_empty() || event_type.len() > 64 {
                    return Err(format!(
                        "[[routes.inbound]] of topic '{}': event-type must be 1 to 64 characters",
                        r.topic
                    ));
                }
                if r.topic.is_empty() {
                    return Err("[[routes.inbound]]: topic is empty".to_string());
                }
                Ok(Route {
                    topic: r.topic.clone(),
                    destination: r.destination.clone(),
                    event_type: if r.event_type_from_header {
                        EventType::Header {
                            default: event_type,
                        }
                    } else {
                        EventType::Fixed(event_type)
                    },
                    conflatable: r.conflatable,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let auth_on = self.jwt_secret.is_some() || self.jwt_public_key.is_some();
        let send = self
            .routes
            .send
            .iter()
            .map(|r| {
                let allow = r.allow.as_deref().unwrap_or("permission");
                let senders = Senders::parse(allow).ok_or_else(|| {
                    format!(
                        "[[routes.send]] '{}': allow = '{allow}' is not one of any, authenticated, permission",
                        r.destination
                    )
                })?;
                if senders == Senders::Authenticated && !auth_on {
                    return Err(format!(
                        "[[routes.send]] '{}': allow = 'authenticated' needs authentication on (--jwt-secret or --jwt-public-key)",
                        r.destination
                    ));
                }
                SendRoute::new(&r.destination, &r.topic, &r.key, r.event_types.clone(), senders)
                    .map_err(|e| format!("[[routes.send]] {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Router::defaults(&self.trades_topic, &self.chat_topic)
            .with_trade_topics(&self.extra_trades_topics)
            .with_inbound(inbound)?
            .with_send(send))
    }
}
