//! Per-market chat as a service of its own: the session hands it a SEND once and gets back
//! the record to produce or a refusal; ingest shows it every chat record so it learns who
//! owns which message. The STOMP state machine knows nothing of chat rules.

pub mod ledger;
pub mod record;

pub use record::{ChatError, ChatRecord, Sender, chat_record};

use crate::bus::{InboundRecord, OutboundRecord};
use crate::destination::{DestinationError, chat_market};
use ledger::{ChatLedger, Ownership};
use thiserror::Error;

/// Why a chat SEND is refused; `label` names the metric, the text goes to the client.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChatRefusal {
    #[error(transparent)]
    Destination(#[from] DestinationError),
    #[error(transparent)]
    Invalid(#[from] ChatError),
    #[error("message '{0}' was written by {1}; you may change only messages you sent")]
    NotYours(String, String),
    #[error(
        "message '{0}' is unknown here (too old, or never sent); only recent messages can be changed"
    )]
    UnknownMessage(String),
}

impl ChatRefusal {
    pub fn label(&self) -> &'static str {
        match self {
            ChatRefusal::Destination(_) => "bad_destination",
            ChatRefusal::Invalid(_) => "bad_chat",
            ChatRefusal::NotYours(..) | ChatRefusal::UnknownMessage(_) => "forbidden",
        }
    }

    /// The ERROR frame's `message` header.
    pub fn summary(&self) -> &'static str {
        match self {
            ChatRefusal::Destination(_) => "unknown destination",
            ChatRefusal::Invalid(_) => "invalid chat message",
            ChatRefusal::NotYours(..) | ChatRefusal::UnknownMessage(_) => "forbidden",
        }
    }
}

/// The chat service: its topic and the ownership ledger.
pub struct Chat {
    topic: String,
    ledger: ChatLedger,
}

impl Chat {
    pub fn new(topic: &str) -> Chat {
        Chat {
            topic: topic.to_string(),
            ledger: ChatLedger::default(),
        }
    }

    /// The record for a client SEND to `destination`, or why it is refused.
    pub fn record_for_send(
        &self,
        destination: &str,
        event_type: Option<&str>,
        body: &[u8],
        sender: Sender<'_>,
        now_ms: i64,
    ) -> Result<OutboundRecord, ChatRefusal> {
        let market = chat_market(destination)?;
        let chat = chat_record(&self.topic, market, event_type, body, sender, now_ms)?;
        if let Some(id) = chat.changes {
            match self.ledger.ownership(market, &id, sender.owner) {
                Ownership::Own => {}
                Ownership::Other(author) => return Err(ChatRefusal::NotYours(id, author)),
                Ownership::Unknown => return Err(ChatRefusal::UnknownMessage(id)),
            }
        }
        Ok(chat.record)
    }

    /// Learns from a consumed record (only records of the chat topic matter).
    pub fn observe(&self, record: &InboundRecord, event_type: &str) {
        if record.topic == self.topic {
            self.ledger.observe(event_type, &record.value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inbound(r: &OutboundRecord) -> InboundRecord {
        InboundRecord {
            topic: r.topic.clone(),
            partition: 0,
            offset: 0,
            key: Some(r.key.clone().into()),
            headers: r.headers.clone(),
            value: r.value.clone(),
            timestamp_ms: 0,
        }
    }

    #[test]
    fn only_the_owner_changes_a_message() {
        let chat = Chat::new("chat");
        let alice = Sender {
            user: "alice",
            owner: "conn:1",
        };
        let mallory = Sender {
            user: "alice",
            owner: "conn:2",
        };
        let sent = chat
            .record_for_send("/app/market/M/chat", None, br#"{"text":"hi"}"#, alice, 1)
            .unwrap();
        chat.observe(&inbound(&sent), "chat.send");
        let id: serde_json::Value = serde_json::from_slice(&sent.value).unwrap();
        let body = format!(
            r#"{{"id":"{}","text":"edited"}}"#,
            id["id"].as_str().unwrap()
        );
        let dest = "/app/market/M/chat";
        let e = chat
            .record_for_send(dest, Some("chat.modify"), body.as_bytes(), mallory, 2)
            .unwrap_err();
        assert!(matches!(e, ChatRefusal::NotYours(..)), "{e}");
        assert!(
            chat.record_for_send(dest, Some("chat.modify"), body.as_bytes(), alice, 2)
                .is_ok()
        );
        let e = chat
            .record_for_send(dest, Some("chat.delete"), br#"{"id":"nope"}"#, alice, 2)
            .unwrap_err();
        assert_eq!(e.label(), "forbidden");
        let e = chat
            .record_for_send("/topic/x", None, b"hi", alice, 2)
            .unwrap_err();
        assert_eq!(e.label(), "bad_destination");
    }
}
