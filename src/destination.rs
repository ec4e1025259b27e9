//! The one destination grammar: which destinations clients may subscribe and send to (the
//! shapes the routes publish to), and what a market id is. The hub, the router, chat and the session all ask here instead of
//! matching strings of their own. (Permission patterns in `auth.rs` are a separate language:
//! they say who may use a destination, not what one is.)

use thiserror::Error;

/// Prefix of market destinations clients subscribe to.
pub const MARKET_PREFIX: &str = "/topic/market/";

/// Why a destination was refused; the text goes into the client's ERROR frame.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DestinationError {
    #[error("unknown destination '{0}': SEND goes to /app/market/<market-id>/chat")]
    UnknownSend(String),
    /// Not a destination any inbound route publishes to; the second field lists those shapes.
    #[error("unknown destination '{0}': subscribe to {1}")]
    NotRouted(String, String),
}

/// Market ids: 1-64 of letters, digits, `-`, `_`, `.`.
pub fn valid_market_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The shape of the destinations one route publishes to: literal segments and holes, each
/// hole one segment holding an id (`/topic/market/{key}` is `["topic", "market", hole]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape(Vec<Option<String>>);

impl Shape {
    /// A shape from its segments after the leading `/` (`None` is a hole).
    pub fn new(segments: Vec<Option<String>>) -> Shape {
        Shape(segments)
    }

    /// Whether a client may subscribe to `destination` under this shape: every hole holds
    /// an id, or the last hole is `*` (every destination of the shape, one segment).
    pub fn admits(&self, destination: &str) -> bool {
        let Some(rest) = destination.strip_prefix('/') else {
            return false;
        };
        let segs: Vec<&str> = rest.split('/').collect();
        segs.len() == self.0.len()
            && segs
                .iter()
                .zip(&self.0)
                .enumerate()
                .all(|(i, (s, p))| match p {
                    Some(lit) => s == lit,
                    None => valid_market_id(s) || (*s == "*" && i + 1 == segs.len()),
                })
    }

    /// How the shape reads in an error: `/topic/market/<id>` (and `/topic/market/*` when
    /// the last segment is a hole).
    pub fn describe(&self) -> String {
        let path = |last: &str| {
            let mut out = String::new();
            for (i, p) in self.0.iter().enumerate() {
                out.push('/');
                match p {
                    Some(lit) => out.push_str(lit),
                    None if i + 1 == self.0.len() => out.push_str(last),
                    None => out.push_str("<id>"),
                }
            }
            out
        };
        match self.0.last() {
            Some(None) => format!("{} or {}", path("<id>"), path("*")),
            _ => path(""),
        }
    }
}

/// Checks a SUBSCRIBE destination against the shapes the inbound routes publish to.
pub fn check_subscribe(destination: &str, shapes: &[Shape]) -> Result<(), DestinationError> {
    if shapes.iter().any(|s| s.admits(destination)) {
        return Ok(());
    }
    let mut known: Vec<String> = shapes.iter().map(Shape::describe).collect();
    known.dedup();
    Err(DestinationError::NotRouted(
        destination.to_string(),
        known.join(", "),
    ))
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
    fn shapes_admit_ids_and_a_trailing_wildcard() {
        let market = Shape::new(vec![Some("topic".into()), Some("market".into()), None]);
        assert!(market.admits("/topic/market/KRW-BTC"));
        assert!(market.admits("/topic/market/*"));
        for bad in [
            "/topic/market/",
            "/topic/market/a/b",
            "/topic/other/X",
            "topic/market/X",
        ] {
            assert!(!market.admits(bad), "{bad}");
        }
        let two = Shape::new(vec![Some("topic".into()), None, Some("book".into())]);
        assert!(two.admits("/topic/KRW-BTC/book"));
        assert!(!two.admits("/topic/*/book"));
        assert_eq!(market.describe(), "/topic/market/<id> or /topic/market/*");
        let e = check_subscribe("/queue/x", &[market, two]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown destination '/queue/x': subscribe to /topic/market/<id> or /topic/market/*, /topic/<id>/book"
        );
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
