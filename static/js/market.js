// Trades in, markets out: folds each trade into its market (price, counters, tape, candles),
// selects the market shown in the chart, tape and chat, batches the board and header redraws
// into one per frame, and marks a market whose stream has a gap.

import { el, h } from './dom.js';
import { fmtPrice, fmtChange, fmtQty, fmtTime, fmtInt, decimalsOf } from './format.js';
import { state, market, INTERVALS, MAX_TAPE, MAX_TAPE_STORE } from './state.js';
import { foldTrade, candleTime } from './candles.js';
import * as board from './board.js';
import { applyPriceFormat, loadChart, chartUpdate, tzShift } from './chart.js';
import { renderChat, updateChatForm } from './chat.js';
import { MARKET_PREFIX as PREFIX } from './feeds.js';

// The market a MESSAGE is about: the body's `market`, else the destination's last segment.
export function marketIdOf(destination, body) {
  const dest = destination || '';
  return body.market || (dest.startsWith(PREFIX) ? dest.slice(PREFIX.length) : null);
}

// ---------------------------------------------------------------- render scheduling
// rAF for smoothness, with a timer fallback so updates still land when frames are throttled.

let flushQueued = false;
function schedule() {
  if (flushQueued) return;
  flushQueued = true;
  const run = () => { if (flushQueued) { flushQueued = false; flush(); } };
  requestAnimationFrame(run);
  setTimeout(run, 250);
}

const newTapeTrades = [];
function flush() {
  for (const m of state.markets.values()) if (m.dirty) { board.renderRow(m); m.dirty = false; }
  renderMarketHead();
  if (newTapeTrades.length) {
    const frag = document.createDocumentFragment();
    for (let i = newTapeTrades.length - 1; i >= 0; i--) frag.append(tapeRow(newTapeTrades[i]));
    newTapeTrades.length = 0;
    el.tape.prepend(frag);
    while (el.tape.childElementCount > MAX_TAPE) el.tape.lastElementChild.remove();
  }
}

// ---------------------------------------------------------------- trades

export function onTrade(id, t, ts, msgId) {
  const price = Number(t.price);
  if (!id || !isFinite(price)) return;
  const qty = Number(t.qty) || 0;
  const m = market(id, board.addRow);
  if (t.exchange && !m.exchanges.has(t.exchange)) {
    m.exchanges.add(t.exchange);
    m.exchange = [...m.exchanges].sort().join(' · ');
  }
  const d = decimalsOf(String(t.price));
  if (d > m.decimals) { m.decimals = d; if (state.selected === id) applyPriceFormat(m); }
  if (m.first == null) m.first = price;
  m.dir = m.last == null ? 0 : Math.sign(price - m.last);
  m.last = price;
  m.high = Math.max(m.high, price);
  m.low = Math.min(m.low, price);
  m.count += 1;
  m.dirty = true;
  if (m.count === 1 && state.selected === id) applyPriceFormat(m);

  const tsMs = ts || Date.now();
  const trade = { id: msgId || null, ts: tsMs, side: t.side === 'sell' ? 'sell' : 'buy', price, qty: fmtQty(t.qty), m };
  m.trades.unshift(trade);
  if (m.trades.length > MAX_TAPE_STORE) m.trades.length = MAX_TAPE_STORE;

  const sec = Math.floor(tsMs / 1000) + tzShift;
  for (const iv of INTERVALS) {
    const bars = m.bars[iv];
    const b = foldTrade(bars, { time: candleTime(sec, iv), price, qty });
    if (b && iv === state.interval && state.selected === id) chartUpdate(b, bars.length);
  }

  if (state.selected === id) newTapeTrades.push(trade);
  if (newTapeTrades.length > MAX_TAPE) newTapeTrades.splice(0, newTapeTrades.length - MAX_TAPE);
  schedule();
}

function tapeRow(t) {
  const cls = t.side === 'sell' ? 'down' : 'up';
  return h('tr', { 'data-id': t.id },
    h('td', { text: fmtTime(t.ts, true) }),
    h('td', { class: `side ${cls}`, text: t.side }),
    h('td', { class: `num ${cls}`, text: fmtPrice(t.m, t.price) }),
    h('td', { class: 'num', text: t.qty }),
  );
}

// ---------------------------------------------------------------- selected market

function renderMarketHead() {
  const m = state.selected && state.markets.get(state.selected);
  if (!m) return;
  el.exchange.textContent = m.exchange;
  el.price.textContent = fmtPrice(m, m.last);
  el.price.className = `fig-value ${m.dir > 0 ? 'up' : m.dir < 0 ? 'down' : ''}`;
  const c = fmtChange(m);
  el.change.textContent = c.text;
  el.change.className = `fig-value ${c.cls}`;
  el.high.textContent = fmtPrice(m, m.high);
  el.low.textContent = fmtPrice(m, m.low);
  el.count.textContent = fmtInt(m.count);
}

// The market named in the URL (/#KRW-BTC), or '' if none.
export const marketInUrl = () => decodeURIComponent(window.location.hash.slice(1));

// Shows market `id` in the chart, tape and chat; a user's choice also goes into the URL.
export function select(id, userAction) {
  if (!id) return;
  const changed = state.selected !== id;
  state.selected = id;
  board.markSelected(id);
  if (userAction && marketInUrl() !== id) {
    history.replaceState(null, '', `#${encodeURIComponent(id)}`);
  }
  if (!changed && el.title.textContent === id) return;
  document.title = `${id} · stompgate`;
  el.title.textContent = id;
  el.chatNote.textContent = `everyone on ${id}`;
  showGap(state.markets.get(id), id);
  for (const n of [el.price, el.change, el.high, el.low, el.count]) { n.textContent = '—'; n.className = 'fig-value'; }
  el.exchange.textContent = '';
  const m = state.markets.get(id);
  // tape
  newTapeTrades.length = 0;
  el.tape.textContent = '';
  if (m) {
    const frag = document.createDocumentFragment();
    for (const t of m.trades.slice(0, MAX_TAPE)) frag.append(tapeRow(t));
    el.tape.append(frag);
  }
  loadChart();
  renderMarketHead();
  renderChat();
  updateChatForm();
}

// Part of market `id`'s stream is missing (feeds.js says why): marked on its board row and,
// while it is selected, next to the tape.
export function markGap(id, why) {
  const m = market(id, board.addRow);
  m.gap = why;
  board.showGap(m);
  if (state.selected === id) showGap(m, id);
}

function showGap(m, id) {
  el.tapeNote.textContent = m && m.gap ? `${id} · gap` : id;
  el.tapeNote.title = m && m.gap ? m.gap : '';
  el.tapeNote.classList.toggle('gap-note', !!(m && m.gap));
}

export function initMarket() {
  window.addEventListener('hashchange', () => {
    const id = marketInUrl();
    if (id) select(id, false);
  });
}
