// What the page knows: limits, the one state object, and the per-market and per-chat records.
// No DOM here (the Node unit tests import it); a new market is reported through a callback so
// this file does not reach up into the board.

export const INTERVALS = [1, 5, 15, 60];      // candle sizes in seconds
export const MAX_BARS = 1500;                 // per market and interval
export const MAX_TAPE = 150;                  // rows kept in the trade tape
export const MAX_TAPE_STORE = 150;            // trades kept per market for the tape
export const MAX_CHAT = 300;                  // chat messages kept per market
export const RECONNECT_BASE_MS = 500;         // first retry; doubles up to the cap
export const RECONNECT_MAX_MS = 10000;
export const RECEIPT_TIMEOUT_MS = 10000;
export const STATS_POLL_MS = 2000;
export const HISTORY_ASK = MAX_TAPE_STORE;    // x-history asked per market (the gateway may keep fewer)
export const MAX_CATCHUPS = 8;                // catch-up subscriptions open at once (feeds.js)

export const state = {
  markets: new Map(),        // id -> market record
  selected: null,            // market id
  interval: 5,
  kind: 'candles',
  me: null,                  // user-name from the CONNECTED frame
  connected: false,
  everConnected: false,
  attempt: 0,                // reconnect attempts since the last successful connect
  retryAt: 0,                // when the next attempt is due (ms since epoch)
  chat: new Map(),           // market id -> { list: [], byId: Map }
  received: 0,
  replayed: 0,               // messages that came from the gateway's history
};

// Page-wide counter for chat entry keys and receipt ids.
let seq = 0;
export const nextSeq = () => ++seq;

// The record of market `id`, created on first sight; `onNew(m)` is called once when it is.
export function market(id, onNew) {
  let m = state.markets.get(id);
  if (!m) {
    m = {
      id, exchange: '', exchanges: new Set(), first: null, last: null, high: -Infinity, low: Infinity,
      count: 0, decimals: 0, bars: {}, trades: [], dirty: true,
      dir: 0, row: null, gap: null,
    };
    for (const iv of INTERVALS) m.bars[iv] = [];
    state.markets.set(id, m);
    if (onNew) onNew(m);
  }
  return m;
}

export function chatOf(id) {
  let c = state.chat.get(id);
  if (!c) { c = { list: [], byId: new Map() }; state.chat.set(id, c); }
  return c;
}
