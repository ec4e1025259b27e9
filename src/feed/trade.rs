//! What an exchange sends and what the feed produces: parses one WebSocket message of
//! Upbit's or Bithumb's public API (DEFAULT or SIMPLE keys) and normalizes a trade into the
//! trades contract. Prices and volumes are copied from the JSON text as exact decimals,
//! never through a float.

use serde::Deserialize;
use serde_json::value::RawValue;

/// One message from the exchange, as far as the feed cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    Trade(Trade),
    /// `{"status":"UP"}`, the answer to the keep-alive `PING`.
    Status(String),
    /// `{"error":{"name":"WRONG_FORMAT","message":"..."}}`.
    Error {
        name: String,
        message: String,
    },
    /// Valid JSON of another type (ticker, orderbook): ignored.
    Other,
}

/// A trade as the exchange reported it, decimals as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trade {
    pub market: String,
    pub price: String,
    pub qty: String,
    /// `buy` (BID) or `sell` (ASK).
    pub side: &'static str,
    pub ts: i64,
    pub sequential_id: String,
    /// `SNAPSHOT` or `REALTIME` (empty when absent).
    pub stream_type: String,
}

/// Why a message could not be read; counted and logged, never fatal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("not JSON: {0}")]
    Json(String),
    #[error("trade without '{0}'")]
    Missing(&'static str),
    #[error("'{field}' is not a decimal number: {text}")]
    NotDecimal { field: &'static str, text: String },
    #[error("ask_bid is '{0}', expected ASK or BID")]
    Side(String),
}

/// The keys of both formats: DEFAULT names, SIMPLE abbreviations (Upbit's WebSocket
/// reference: ty, cd, tp, tv, ab, ttms, sid, st).
#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(alias = "ty")]
    r#type: Option<String>,
    #[serde(alias = "cd")]
    code: Option<String>,
    #[serde(borrow, alias = "tp")]
    trade_price: Option<&'a RawValue>,
    #[serde(borrow, alias = "tv")]
    trade_volume: Option<&'a RawValue>,
    #[serde(alias = "ab")]
    ask_bid: Option<String>,
    #[serde(borrow, alias = "ttms")]
    trade_timestamp: Option<&'a RawValue>,
    #[serde(borrow, alias = "sid")]
    sequential_id: Option<&'a RawValue>,
    #[serde(alias = "st")]
    stream_type: Option<String>,
    status: Option<String>,
    error: Option<WireError>,
}

#[derive(Deserialize)]
struct WireError {
    #[serde(default)]
    name: String,
    #[serde(default)]
    message: String,
}

/// Parses one text or binary message.
pub fn parse(bytes: &[u8]) -> Result<Inbound, ParseError> {
    let wire: Wire = serde_json::from_slice(bytes).map_err(|e| ParseError::Json(e.to_string()))?;
    if let Some(e) = wire.error {
        return Ok(Inbound::Error {
            name: e.name,
            message: e.message,
        });
    }
    if let Some(status) = wire.status {
        return Ok(Inbound::Status(status));
    }
    if wire.r#type.as_deref() != Some("trade") {
        return Ok(Inbound::Other);
    }
    let market = wire.code.ok_or(ParseError::Missing("code"))?;
    let price = decimal(
        "trade_price",
        wire.trade_price.ok_or(ParseError::Missing("trade_price"))?,
    )?;
    let qty = decimal(
        "trade_volume",
        wire.trade_volume
            .ok_or(ParseError::Missing("trade_volume"))?,
    )?;
    let side = match wire.ask_bid.as_deref() {
        Some("BID") => "buy",
        Some("ASK") => "sell",
        Some(other) => return Err(ParseError::Side(other.to_string())),
        None => return Err(ParseError::Missing("ask_bid")),
    };
    let ts_text = unquote(
        wire.trade_timestamp
            .ok_or(ParseError::Missing("trade_timestamp"))?,
    );
    let ts = ts_text.parse::<i64>().map_err(|_| ParseError::NotDecimal {
        field: "trade_timestamp",
        text: ts_text.to_string(),
    })?;
    let seq = unquote(
        wire.sequential_id
            .ok_or(ParseError::Missing("sequential_id"))?,
    );
    if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(ParseError::NotDecimal {
            field: "sequential_id",
            text: seq.to_string(),
        });
    }
    Ok(Inbound::Trade(Trade {
        market,
        price,
        qty,
        side,
        ts,
        sequential_id: seq.to_string(),
        stream_type: wire.stream_type.unwrap_or_default(),
    }))
}

/// The text of a JSON number or string, without the quotes.
fn unquote(raw: &RawValue) -> &str {
    let t = raw.get().trim();
    t.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(t)
}

/// The exact decimal written in a JSON number (or a string holding one): `0.00012345`
/// stays `0.00012345`; exponent forms (`1.5E-7`) are written out (`0.00000015`).
fn decimal(field: &'static str, raw: &RawValue) -> Result<String, ParseError> {
    let text = unquote(raw);
    plain_decimal(text).ok_or_else(|| ParseError::NotDecimal {
        field,
        text: text.to_string(),
    })
}

/// `text` as a plain, non-negative decimal, or None if it is not a number.
pub fn plain_decimal(text: &str) -> Option<String> {
    let (mantissa, exp) = match text.find(['e', 'E']) {
        Some(i) => (&text[..i], text[i + 1..].parse::<i32>().ok()?),
        None => (text, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || (mantissa.contains('.') && frac.is_empty())
    {
        return None;
    }
    if exp == 0 {
        return Some(mantissa.to_string());
    }
    if exp.unsigned_abs() > 64 {
        return None;
    }
    // Move the decimal point `exp` places over the digit string.
    let digits = format!("{int}{frac}");
    let point = int.len() as i32 + exp;
    let out = if point <= 0 {
        format!("0.{}{}", "0".repeat((-point) as usize), digits)
    } else if point as usize >= digits.len() {
        format!("{digits}{}", "0".repeat(point as usize - digits.len()))
    } else {
        let (a, b) = digits.split_at(point as usize);
        format!("{a}.{b}")
    };
    // Leading zeros of the integer part (from `0.5E1` -> `05`), but keep one.
    let trimmed = out.trim_start_matches('0');
    Some(if trimmed.is_empty() || trimmed.starts_with('.') {
        format!("0{trimmed}")
    } else {
        trimmed.to_string()
    })
}

/// The trades contract value (docs/CONTRACT.md); the record key is the market.
pub fn record_value(exchange: &str, trade: &Trade) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "market": trade.market,
        "exchange": exchange,
        "price": trade.price,
        "qty": trade.qty,
        "side": trade.side,
        "ts": trade.ts,
        "trade_id": trade.sequential_id,
    }))
    .expect("a JSON object serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: &str = r#"{"type":"trade","code":"KRW-BTC","timestamp":1730000000123,"trade_date":"2024-10-27","trade_time":"03:33:20","trade_timestamp":1730000000100,"trade_price":95012000.0,"trade_volume":0.00012345,"ask_bid":"BID","prev_closing_price":94000000.0,"change":"RISE","change_price":1012000.0,"sequential_id":17300000001000000,"best_ask_price":95013000,"best_ask_size":0.1,"best_bid_price":95012000,"best_bid_size":0.2,"stream_type":"REALTIME"}"#;
    const SIMPLE: &str = r#"{"ty":"trade","cd":"KRW-XRP","tms":1730000000123,"td":"2024-10-27","ttm":"03:33:20","ttms":1730000000101,"tp":3105.5,"tv":1234.56789012,"ab":"ASK","pcp":3000,"c":"RISE","cp":105.5,"sid":17300000001000001,"st":"SNAPSHOT"}"#;

    #[test]
    fn default_format() {
        let Inbound::Trade(t) = parse(DEFAULT.as_bytes()).unwrap() else {
            panic!("not a trade")
        };
        assert_eq!(t.market, "KRW-BTC");
        assert_eq!(t.price, "95012000.0");
        assert_eq!(t.qty, "0.00012345");
        assert_eq!(t.side, "buy");
        assert_eq!(t.ts, 1730000000100);
        assert_eq!(t.sequential_id, "17300000001000000");
        assert_eq!(t.stream_type, "REALTIME");
    }

    #[test]
    fn simple_format() {
        let Inbound::Trade(t) = parse(SIMPLE.as_bytes()).unwrap() else {
            panic!("not a trade")
        };
        assert_eq!(t.market, "KRW-XRP");
        assert_eq!(t.price, "3105.5");
        assert_eq!(t.qty, "1234.56789012");
        assert_eq!(t.side, "sell");
        assert_eq!(t.ts, 1730000000101);
        assert_eq!(t.sequential_id, "17300000001000001");
        assert_eq!(t.stream_type, "SNAPSHOT");
    }

    #[test]
    fn status_error_and_other() {
        assert_eq!(
            parse(br#"{"status":"UP"}"#).unwrap(),
            Inbound::Status("UP".into())
        );
        assert_eq!(
            parse(br#"{"error":{"name":"WRONG_FORMAT","message":"bad request"}}"#).unwrap(),
            Inbound::Error {
                name: "WRONG_FORMAT".into(),
                message: "bad request".into()
            }
        );
        assert_eq!(
            parse(br#"{"type":"ticker","code":"KRW-BTC"}"#).unwrap(),
            Inbound::Other
        );
        assert!(matches!(parse(b"PONG"), Err(ParseError::Json(_))));
        assert!(matches!(
            parse(br#"{"type":"trade","code":"KRW-BTC","trade_price":"abc","trade_volume":1,"ask_bid":"BID","trade_timestamp":1,"sequential_id":1}"#),
            Err(ParseError::NotDecimal { field: "trade_price", .. })
        ));
        assert!(matches!(
            parse(br#"{"type":"trade","code":"KRW-BTC","trade_price":1,"trade_volume":1,"ask_bid":"X","trade_timestamp":1,"sequential_id":1}"#),
            Err(ParseError::Side(_))
        ));
    }

    #[test]
    fn decimals_stay_exact() {
        for (text, want) in [
            ("0.00012345", "0.00012345"),
            ("95012000", "95012000"),
            ("95012000.0", "95012000.0"),
            ("0.1", "0.1"),
            ("1.5E-7", "0.00000015"),
            ("1.5e-7", "0.00000015"),
            ("1.2345E3", "1234.5"),
            ("1E2", "100"),
            ("0.5E1", "5"),
            (
                "123456789012345678901234567890.123456789",
                "123456789012345678901234567890.123456789",
            ),
        ] {
            assert_eq!(plain_decimal(text).as_deref(), Some(want), "{text}");
        }
        for bad in ["", "-1", "1.", ".5", "1e", "abc", "1.2.3", "1e999"] {
            assert_eq!(plain_decimal(bad), None, "{bad}");
        }
        // A price that a float would round keeps every digit.
        let msg = r#"{"type":"trade","code":"KRW-BTC","trade_price":"0.1000000000000000055511151231257827","trade_volume":0.30000000000000004,"ask_bid":"ASK","trade_timestamp":1,"sequential_id":"7"}"#;
        let Inbound::Trade(t) = parse(msg.as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(t.price, "0.1000000000000000055511151231257827");
        assert_eq!(t.qty, "0.30000000000000004");
    }

    #[test]
    fn record_is_the_trades_contract() {
        let Inbound::Trade(t) = parse(DEFAULT.as_bytes()).unwrap() else {
            panic!()
        };
        let v: serde_json::Value = serde_json::from_slice(&record_value("upbit", &t)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"market":"KRW-BTC","exchange":"upbit","price":"95012000.0",
                "qty":"0.00012345","side":"buy","ts":1730000000100i64,"trade_id":"17300000001000000"})
        );
    }
}
