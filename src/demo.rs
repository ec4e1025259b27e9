//! The demo market feed of the embedded default: realistic trades for a few KRW markets
//! (random-walk prices on the exchange's tick grid, sizes, buy/sell), produced to the trades
//! topic of the bus exactly as an exchange feed would produce them to Kafka. It follows the
//! in-memory market registry: a market added over `/api/markets` starts trading at once.

use crate::bus::{Bus, OutboundRecord};
use crate::registry;
use rand::Rng;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use serde::Serialize;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Starting price (KRW) for well-known markets; others start at 10,000.
fn start_price(market: &str) -> f64 {
    match market {
        "KRW-BTC" => 95_000_000.0,
        "KRW-ETH" => 4_500_000.0,
        "KRW-XRP" => 3_100.0,
        "KRW-SOL" => 240_000.0,
        "KRW-DOGE" => 520.0,
        _ => 10_000.0,
    }
}

/// KRW order-book tick size for a price (the grid exchanges quote on).
pub fn tick_size(price: f64) -> f64 {
    match price {
        p if p >= 2_000_000.0 => 1_000.0,
        p if p >= 1_000_000.0 => 500.0,
        p if p >= 500_000.0 => 100.0,
        p if p >= 100_000.0 => 50.0,
        p if p >= 10_000.0 => 10.0,
        p if p >= 1_000.0 => 1.0,
        p if p >= 100.0 => 0.1,
        p if p >= 10.0 => 0.01,
        _ => 0.001,
    }
}

/// Formats a price on its tick grid as a decimal string.
pub fn format_price(price: f64) -> String {
    let tick = tick_size(price);
    let snapped = (price / tick).round() * tick;
    let decimals = if tick >= 1.0 {
        0
    } else {
        (-tick.log10()).round() as usize
    };
    format!("{snapped:.decimals$}")
}

#[derive(Serialize)]
struct Trade<'a> {
    market: &'a str,
    exchange: &'a str,
    price: String,
    qty: String,
    side: &'a str,
    ts: i64,
    trade_id: String,
}

struct Market {
    id: String,
    price: f64,
    /// Typical trade value in KRW drives the size distribution.
    notional: f64,
    /// Exchanges the market is registered on.
    exchanges: Vec<String>,
}

/// One trade for `market`, moving its price one random step.
fn next_trade(market: &mut Market, rng: &mut SmallRng, seq: u64, now_ms: i64) -> Vec<u8> {
    // Small steps with occasional jumps; mean-revert gently to the start price.
    let drift = (start_price(&market.id) / market.price).ln() * 0.001;
    let step: f64 = rng.random_range(-1.0..1.0) * 0.0008 + drift;
    let jump = if rng.random_bool(0.02) {
        rng.random_range(-0.004..0.004)
    } else {
        0.0
    };
    market.price = (market.price * (step + jump).exp()).max(tick_size(market.price));
    let value = market.notional * (-rng.random_range(0.0001f64..1.0).ln());
    let qty = value / market.price;
    let exchange = match market.exchanges.as_slice() {
        [one] => one.as_str(),
        _ if rng.random_bool(0.6) => "upbit",
        _ => "bithumb",
    };
    let trade = Trade {
        market: &market.id,
        exchange,
        price: format_price(market.price),
        qty: format!("{qty:.8}"),
        side: if rng.random_bool(0.5) { "buy" } else { "sell" },
        ts: now_ms,
        trade_id: format!("{exchange}-{seq}"),
    };
    serde_json::to_vec(&trade).expect("trade serializes")
}

/// The demo markets for a registry list: one per symbol, on the exchanges it is registered
/// on; a market already trading keeps its price.
fn follow(state: Vec<Market>, registered: &BTreeSet<registry::Market>) -> Vec<Market> {
    let mut next: Vec<Market> = Vec::new();
    for m in registered {
        match next.iter_mut().find(|n| n.id == m.symbol) {
            Some(n) => n.exchanges.push(m.exchange.clone()),
            None => next.push(Market {
                price: state
                    .iter()
                    .find(|s| s.id == m.symbol)
                    .map_or_else(|| start_price(&m.symbol), |s| s.price),
                id: m.symbol.clone(),
                notional: 300_000.0,
                exchanges: vec![m.exchange.clone()],
            }),
        }
    }
    next
}

/// Runs the feed until shutdown: `rate` trades per second per registered market.
pub async fn run(
    bus: Arc<dyn Bus>,
    topic: String,
    mut markets: watch::Receiver<BTreeSet<registry::Market>>,
    rate: f64,
    shutdown: CancellationToken,
) {
    if rate <= 0.0 {
        return;
    }
    let mut rng = SmallRng::from_rng(&mut rand::rng());
    let mut state: Vec<Market> = Vec::new();
    let mut seq = 0u64;
    loop {
        state = follow(state, &markets.borrow_and_update());
        tracing::info!(markets = ?state.iter().map(|m| &m.id).collect::<Vec<_>>(), rate, "demo market feed");
        let mut ticker = (!state.is_empty()).then(|| {
            let period = Duration::from_secs_f64(1.0 / (rate * state.len() as f64));
            let mut t = tokio::time::interval(period);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        loop {
            let tick = async {
                match ticker.as_mut() {
                    Some(t) => {
                        t.tick().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                r = markets.changed() => {
                    if r.is_err() {
                        return;
                    }
                    break;
                }
                _ = tick => {}
            }
            seq += 1;
            let i = rng.random_range(0..state.len());
            let value = next_trade(&mut state[i], &mut rng, seq, crate::clock::now_ms());
            let record = OutboundRecord {
                topic: topic.clone(),
                key: state[i].id.clone(),
                headers: Vec::new(),
                value: value.into(),
            };
            if let Err(error) = bus.send(record).await {
                tracing::warn!(%error, "demo trade not published");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_registry() {
        let reg = |list: &[(&str, &str)]| -> BTreeSet<registry::Market> {
            list.iter()
                .map(|(e, s)| registry::Market::new(e, s).unwrap())
                .collect()
        };
        let state = follow(
            Vec::new(),
            &reg(&[("upbit", "KRW-BTC"), ("bithumb", "KRW-BTC")]),
        );
        assert_eq!(state.len(), 1);
        assert_eq!(state[0].exchanges, ["bithumb", "upbit"]);
        let mut state = state;
        state[0].price = 1.0;
        let state = follow(state, &reg(&[("upbit", "KRW-BTC"), ("upbit", "KRW-SOL")]));
        assert_eq!(state.len(), 2);
        assert_eq!(
            state[0].price, 1.0,
            "a market already trading keeps its price"
        );
        assert_eq!(state[1].price, start_price("KRW-SOL"));
        let mut rng = SmallRng::seed_from_u64(2);
        let mut sol = follow(Vec::new(), &reg(&[("upbit", "KRW-SOL")])).remove(0);
        for seq in 0..50 {
            let v: serde_json::Value =
                serde_json::from_slice(&next_trade(&mut sol, &mut rng, seq, 5)).unwrap();
            assert_eq!(v["exchange"], "upbit", "only where it is registered");
        }
    }

    #[test]
    fn prices_sit_on_the_tick_grid() {
        assert_eq!(format_price(95_012_345.0), "95012000");
        assert_eq!(format_price(3_101.4), "3101");
        assert_eq!(format_price(520.04), "520.0");
        assert_eq!(format_price(12.345), "12.35");
    }

    #[test]
    fn trades_follow_the_record_contract() {
        let mut rng = SmallRng::seed_from_u64(1);
        let mut m = Market {
            id: "KRW-BTC".into(),
            price: start_price("KRW-BTC"),
            notional: 300_000.0,
            exchanges: vec!["upbit".into(), "bithumb".into()],
        };
        for seq in 0..1000 {
            let v: serde_json::Value =
                serde_json::from_slice(&next_trade(&mut m, &mut rng, seq, 5)).unwrap();
            assert_eq!(v["market"], "KRW-BTC");
            assert!(["upbit", "bithumb"].contains(&v["exchange"].as_str().unwrap()));
            assert!(["buy", "sell"].contains(&v["side"].as_str().unwrap()));
            let price: f64 = v["price"].as_str().unwrap().parse().unwrap();
            assert!(price > 50_000_000.0 && price < 150_000_000.0, "{price}");
            let qty: f64 = v["qty"].as_str().unwrap().parse().unwrap();
            assert!(qty > 0.0);
            assert_eq!(v["ts"], 5);
        }
    }
}
