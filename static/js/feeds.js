// The page's subscriptions, and the continuity of what it shows across page loads and lost
// connections. One subscription to /topic/market/* carries every market live (the board).
// The gateway keeps recent messages per exact destination, not per wildcard, so each market
// also gets a short-lived catch-up subscription to its own destination:
// - on first sight (or at start for the market in the URL) with `x-history`, so a fresh page
//   shows recent trades, candles and chat at once;
// - after a reconnect with `x-resume-after` and the market's cursor, so nothing missed while
//   the connection was down is lost.
// While a market's catch-up runs, its live messages are held; when the catch-up's RECEIPT
// comes (after all it replays) the subscription is dropped, the replayed messages are handed
// on oldest first, then the held ones that are newer. Every message passes its destination's
// feed (cursor.js), which drops duplicates by position and message-id.

import { state, HISTORY_ASK, MAX_CATCHUPS } from './state.js';
import { subscribe } from './connection.js';
import { createFeed, admit, cursorOf } from './cursor.js';

export const MARKETS_TOPIC = '/topic/market/*';
export const MARKET_PREFIX = '/topic/market/';
export const marketDestination = (id) => MARKET_PREFIX + id;

const feeds = new Map();      // destination -> feed (cursor.js)
const catchUps = new Map();   // destination -> { replayed: [], held: [], sub, started }
const waiting = [];           // destinations whose catch-up waits for a free slot

let deliver = () => {};
let onGap = () => {};

// `onMessage(msg)`: every MESSAGE the page has not shown yet, in order per destination.
// `onGap(destination, why)`: part of a destination's stream could not be recovered.
export function initFeeds(opts) {
  deliver = opts.onMessage;
  onGap = opts.onGap;
}

function feedOf(dest) {
  let f = feeds.get(dest);
  if (!f) { f = createFeed(); feeds.set(dest, f); }
  return f;
}

// On every CONNECTED: the live wildcard first, then a catch-up for every destination known
// (and for `extra`, e.g. the market in the URL), so the catch-ups cover the time until the
// wildcard was in place.
export function subscribeAll(extra = []) {
  subscribe(MARKETS_TOPIC, onLive);
  for (const dest of new Set([...feeds.keys(), ...extra])) catchUp(dest);
}

// The connection is gone: no RECEIPT will come. What catch-ups replayed so far is shown (it
// is in order and gap-free); held live messages are dropped, the next resume brings them.
export function feedsLost() {
  for (const [dest, c] of catchUps) {
    const f = feedOf(dest);
    for (const msg of c.replayed) if (admit(f, msg.headers, true) !== 'duplicate') deliver(msg);
  }
  catchUps.clear();
  waiting.length = 0;
}

function catchUp(dest) {
  if (catchUps.has(dest)) return;
  feedOf(dest);
  catchUps.set(dest, { replayed: [], held: [], sub: null, started: false });
  waiting.push(dest);
  pump();
}

function pump() {
  let running = 0;
  for (const c of catchUps.values()) if (c.started) running += 1;
  while (running < MAX_CATCHUPS && waiting.length) {
    const dest = waiting.shift();
    const c = catchUps.get(dest);
    if (!c) continue;
    start(dest, c);
    running += 1;
  }
}

function start(dest, c) {
  const cursor = cursorOf(feedOf(dest));
  const headers = cursor ? { 'x-resume-after': cursor } : { 'x-history': String(HISTORY_ASK) };
  c.started = true;
  c.resumed = !!cursor;
  try {
    c.sub = subscribe(dest, (msg) => { if (catchUps.get(dest) === c) c.replayed.push(msg); }, headers,
      (receipt) => finish(dest, c, receipt));
  } catch (err) {
    // not connected any more: feedsLost() has run or will
  }
}

function finish(dest, c, receipt) {
  if (catchUps.get(dest) !== c) return;
  catchUps.delete(dest);
  try { c.sub.unsubscribe(); } catch (err) { /* connection gone */ }
  const f = feedOf(dest);
  for (const msg of c.replayed) if (admit(f, msg.headers, true) !== 'duplicate') deliver(msg);
  for (const msg of c.held) if (admit(f, msg.headers, true) !== 'duplicate') deliver(msg);
  if (receipt.headers['x-recovered'] === 'false') {
    f.gap = true;
    onGap(dest, 'The gateway no longer had everything sent while this page was disconnected; what it had is shown.');
  }
  state.replayed += c.replayed.length;
  pump();
}

function onLive(msg) {
  const dest = msg.headers.destination;
  if (!dest) return;
  const c = catchUps.get(dest);
  if (c) { c.held.push(msg); return; }
  if (!feeds.has(dest)) {
    // first sight of this destination: fetch its recent history, this message included
    catchUp(dest);
    catchUps.get(dest).held.push(msg);
    return;
  }
  const f = feeds.get(dest);
  const verdict = admit(f, msg.headers);
  if (verdict === 'duplicate') return;
  if (verdict === 'restart') {
    f.gap = true;
    onGap(dest, 'The gateway started its log over (it was restarted without a shared log); messages sent before that may be missing.');
  }
  deliver(msg);
}
