//! The one destination grammar: which destinations clients may subscribe and send to, and
//! what a market id is. The hub, the router, chat and the session all ask here instead of
//! matching strings of their own. (Permission patterns in `auth.rs` are a separate language:
//! they say who may use a destination, not what one is.)

use thiserror::Error;

/// Prefix of market destinations clients subscribe to.
pub const MARKET_PREFIX: &str = "/topic/market/";

/// Why a destination was refused; the text goes into the client's ERROR frame.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DestinationError {
    #[error("unknown destination '{0}': subscribe to /topic/market/<market-id> or /topic/market/*")]
    UnknownSubscribe(String),
    #[error("unknown destination '{0}': SEND goes to /app/market/<market-id>/chat")]
    UnknownSend(String),
}

/// Market ids: 1-64 of letters, digits, `-`, `_`, `.`.
pub fn valid_market_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A destination a client may subscribe to: one market, or every market (`*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscribeTarget {
    /// One destination, matched exactly.
    Market(String),
    /// `/topic/market/*`: every market, one path segment.
    AllMarkets,
}

impl SubscribeTarget {
    pub fn parse(destination: &str) -> Result<SubscribeTarget, DestinationError> {
        match destination.strip_prefix(MARKET_PREFIX) {
            Some("*") => Ok(SubscribeTarget::AllMarkets),
            Some(id) if valid_market_id(id) => Ok(SubscribeTarget::Market(id.to_string())),
            _ => Err(DestinationError::UnknownSubscribe(destination.to_string())),
        }
    }

    /// Whether the target names many destinations (a wildcard).
    pub fn is_wildcard(&self) -> bool {
        matches!(self, SubscribeTarget::AllMarkets)
    }
}

/// The prefix of a one-segment wildcard destination (`/topic/market/*` -> `/topic/market/`).
pub fn wildcard_prefix(destination: &str) -> Option<&str> {
    destination.strip_suffix('*').filter(|p| p.ends_with('/'))
}

/// Whether `destination` is `prefix` followed by exactly one non-empty path segment.
pub fn matches_one_segment(prefix: &str, destination: &str) -> bool {
    destination
        .strip_prefix(prefix)
        .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'))
}

/// The market a chat SEND is for (`/app/market/<id>/chat`).
pub fn chat_market(destination: &str) -> Result<&str, DestinationError> {
    destination
        .strip_prefix("/app/market/")
        .and_then(|rest| rest.strip_suffix("/chat"))
        .filter(|id| valid_market_id(id))
        .ok_or_else(|| DestinationError::UnknownSend(destination.to_string()))
}

/// The destination clients subscribe to for one market.
pub fn market_destination(market: &str) -> String {
    format!("{MARKET_PREFIX}{market}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribe_targets() {
        assert_eq!(
            SubscribeTarget::parse("/topic/market/KRW-BTC"),
            Ok(SubscribeTarget::Market("KRW-BTC".into()))
        );
        assert_eq!(
            SubscribeTarget::parse("/topic/market/*"),
            Ok(SubscribeTarget::AllMarkets)
        );
        for bad in [
            "/topic/market/",
            "/topic/other/X",
            "/queue/a",
            "/topic/market/a/b",
        ] {
            let err = SubscribeTarget::parse(bad).unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn chat_destinations() {
        assert_eq!(chat_market("/app/market/KRW-ETH/chat"), Ok("KRW-ETH"));
        assert!(chat_market("/app/market//chat").is_err());
        assert!(chat_market("/topic/market/KRW-ETH").is_err());
    }

    #[test]
    fn wildcard_matches_one_segment_only() {
        assert_eq!(wildcard_prefix("/topic/market/*"), Some("/topic/market/"));
        assert_eq!(wildcard_prefix("/topic/market*"), None);
        assert!(matches_one_segment("/topic/market/", "/topic/market/X"));
        assert!(!matches_one_segment("/topic/market/", "/topic/market/X/y"));
        assert!(!matches_one_segment("/topic/market/", "/topic/market/"));
    }
}
