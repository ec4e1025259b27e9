//! The chat record the gateway produces for a SEND to `/app/market/<id>/chat`. The gateway
//! stamps the id (of a new message), the sender's name and owner, the market and the time; a
//! client cannot set them.

use crate::bus::OutboundRecord;
use serde::Serialize;
use thiserror::Error;

/// Longest chat text accepted, in characters.
pub const MAX_TEXT_CHARS: usize = 2000;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChatError {
    #[error("unknown event-type '{0}': use chat.send, chat.modify or chat.delete")]
    UnknownEvent(String),
    #[error("chat body must be a JSON object like {{\"text\":\"hi\"}} or plain UTF-8 text")]
    BadBody,
    #[error("{0} needs a non-empty \"text\" of at most 2000 characters")]
    BadText(&'static str),
    #[error("{0} needs the \"id\" of the message to change")]
    MissingId(&'static str),
}

/// The record value of the chat topic (see the record contract).
#[derive(Debug, Serialize)]
struct ChatValue<'a> {
    id: &'a str,
    market: &'a str,
    user: &'a str,
    /// Who may change the message: `sub:<subject>` with a token, `conn:<random>` (the
    /// sending connection) without one.
    owner: &'a str,
    text: &'a str,
    ts: i64,
}

/// The record for a chat SEND, and which message it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatRecord {
    pub record: OutboundRecord,
    /// For chat.modify and chat.delete: the id of the message changed.
    pub changes: Option<String>,
}

/// Who sends a chat event: the display name and the owner key (see `ChatValue::owner`).
#[derive(Debug, Clone, Copy)]
pub struct Sender<'a> {
    pub user: &'a str,
    pub owner: &'a str,
}

/// Builds the chat record for a SEND. `body` is JSON (`{"text":..}`, `{"id":..,"text":..}`,
/// `{"id":..}`) or, for chat.send, plain text. A chat.send always gets a new id made here:
/// an `id` in its body is ignored, so no one can reuse another message's id.
pub fn chat_record(
    topic: &str,
    market: &str,
    event_type: Option<&str>,
    body: &[u8],
    sender: Sender<'_>,
    now_ms: i64,
) -> Result<ChatRecord, ChatError> {
    let event = event_type.unwrap_or("chat.send");
    let (event, needs_id, needs_text) = match event {
        "chat.send" => ("chat.send", false, true),
        "chat.modify" => ("chat.modify", true, true),
        "chat.delete" => ("chat.delete", true, false),
        other => return Err(ChatError::UnknownEvent(other.to_string())),
    };
    let text_body = std::str::from_utf8(body).map_err(|_| ChatError::BadBody)?;
    let (id, text) = match serde_json::from_str::<serde_json::Value>(text_body) {
        Ok(serde_json::Value::Object(map)) => {
            let text = match map.get("text") {
                None | Some(serde_json::Value::Null) => String::new(),
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(_) => return Err(ChatError::BadText(event)),
            };
            let id = map.get("id").and_then(|v| v.as_str()).map(str::to_string);
            (id, text)
        }
        _ if event == "chat.send" => (None, text_body.to_string()),
        _ => return Err(ChatError::BadBody),
    };
    if needs_text && (text.trim().is_empty() || text.chars().count() > MAX_TEXT_CHARS) {
        return Err(ChatError::BadText(event));
    }
    let id = match id {
        Some(id) if needs_id && !id.is_empty() && id.len() <= 128 => id,
        _ if needs_id => return Err(ChatError::MissingId(event)),
        _ => format!("{now_ms:x}-{:016x}", rand::random::<u64>()),
    };
    let value = ChatValue {
        id: &id,
        market,
        user: sender.user,
        owner: sender.owner,
        text: if event == "chat.delete" { "" } else { &text },
        ts: now_ms,
    };
    let record = OutboundRecord {
        topic: topic.to_string(),
        key: market.to_string(),
        headers: vec![("event-type".into(), event.into())],
        value: serde_json::to_vec(&value)
            .expect("chat value serializes")
            .into(),
    };
    Ok(ChatRecord {
        record,
        changes: needs_id.then_some(id),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(r: &OutboundRecord) -> serde_json::Value {
        serde_json::from_slice(&r.value).unwrap()
    }

    const ALICE: Sender<'static> = Sender {
        user: "alice",
        owner: "sub:alice",
    };

    #[test]
    fn send_stamps_user_market_time_and_id() {
        let r = chat_record(
            "chat",
            "KRW-BTC",
            None,
            br#"{"text":"hi","user":"mallory","id":"taken","owner":"x"}"#,
            ALICE,
            7,
        )
        .unwrap()
        .record;
        let v = value(&r);
        assert_eq!(r.key, "KRW-BTC");
        assert_eq!(r.headers, vec![("event-type".into(), "chat.send".into())]);
        assert_eq!(v["user"], "alice");
        assert_eq!(v["market"], "KRW-BTC");
        assert_eq!(v["text"], "hi");
        assert_eq!(v["owner"], "sub:alice");
        assert_eq!(v["ts"], 7);
        let id = v["id"].as_str().unwrap();
        assert!(!id.is_empty() && id != "taken", "{id}");
    }

    #[test]
    fn plain_text_is_a_send() {
        let r = chat_record("chat", "M", None, b"hello there", ALICE, 1)
            .unwrap()
            .record;
        assert_eq!(value(&r)["text"], "hello there");
    }

    #[test]
    fn modify_and_delete_need_an_id() {
        assert_eq!(
            chat_record(
                "chat",
                "M",
                Some("chat.modify"),
                br#"{"text":"x"}"#,
                ALICE,
                1
            ),
            Err(ChatError::MissingId("chat.modify"))
        );
        let chat = chat_record(
            "chat",
            "M",
            Some("chat.delete"),
            br#"{"id":"abc"}"#,
            ALICE,
            1,
        )
        .unwrap();
        assert_eq!(chat.changes.as_deref(), Some("abc"));
        let r = chat.record;
        assert_eq!(value(&r)["id"], "abc");
        assert_eq!(value(&r)["text"], "");
        assert_eq!(r.headers[0].1, "chat.delete");
    }

    #[test]
    fn bad_input_is_refused() {
        assert!(matches!(
            chat_record("chat", "M", Some("chat.shout"), b"{}", ALICE, 1),
            Err(ChatError::UnknownEvent(_))
        ));
        assert!(matches!(
            chat_record("chat", "M", None, br#"{"text":""}"#, ALICE, 1),
            Err(ChatError::BadText(_))
        ));
        let long = format!(r#"{{"text":"{}"}}"#, "x".repeat(MAX_TEXT_CHARS + 1));
        assert!(chat_record("chat", "M", None, long.as_bytes(), ALICE, 1).is_err());
        assert!(chat_record("chat", "M", None, &[0xff, 0xfe], ALICE, 1).is_err());
    }
}
