// The "Markets" panel: the gateway's market registry (GET /api/markets) grouped by coin, with
// the exchanges each coin is registered on; adding and removing a market (POST and DELETE
// /api/markets with `Authorization: Bearer <admin token>`, the token asked for when first
// needed and kept for the tab); and, for a coin on two exchanges, their last trade prices side
// by side with the spread between them, which is what arbitrage watchers look at.

import { el, h } from './dom.js';
import { numFmt, decimalsOf, spread } from './format.js';

// The pair compared, in this order: spread = first - second, in % of the second.
export const PAIR = ['upbit', 'bithumb'];
const EXCHANGES = ['upbit', 'bithumb'];   // what the registry accepts (src/registry.rs)
const POLL_MS = 10000;                    // the registry also changes from elsewhere
const TOKEN_KEY = 'stompgate.adminToken';
const API = 'api/markets';                // relative: works behind a path prefix too

const registered = new Map();             // symbol -> Set of exchanges
const last = new Map();                   // `${exchange}:${symbol}` -> { price, decimals }
let rows = new Map();                     // symbol -> { li, cells }
let pricesDirty = false;

const signed = (text, v) => (v > 0 ? `+${text}` : text);

// ---------------------------------------------------------------- trades in

// Keeps the last price per exchange of a trade (from the dashboard's one live subscription).
export function noteTrade(symbol, t) {
  if (!symbol || !t.exchange) return;
  const price = Number(t.price);
  if (!isFinite(price)) return;
  last.set(`${t.exchange}:${symbol}`, { price, decimals: decimalsOf(String(t.price)) });
  if (registered.get(symbol)?.size > 1 && !pricesDirty) {
    pricesDirty = true;
    setTimeout(() => { pricesDirty = false; renderPrices(); }, 250);
  }
}

// ---------------------------------------------------------------- registry

function note(text, cls = '') {
  el.regNote.textContent = text;
  el.regNote.className = `reg-note ${cls}`;
}

async function errorText(res) {
  try {
    const body = await res.json();
    if (body && body.error) return body.error;
  } catch (err) { /* not JSON: fall through */ }
  return `HTTP ${res.status}`;
}

export async function loadMarkets() {
  let list;
  try {
    const res = await fetch(API, { cache: 'no-store' });
    if (!res.ok) { note(`Could not list markets: ${await errorText(res)}`, 'err'); return; }
    list = await res.json();
  } catch (err) {
    note('Could not list markets: the gateway did not answer', 'err');
    return;
  }
  registered.clear();
  for (const m of list) {
    if (!m || typeof m.symbol !== 'string' || typeof m.exchange !== 'string') continue;
    if (!registered.has(m.symbol)) registered.set(m.symbol, new Set());
    registered.get(m.symbol).add(m.exchange);
  }
  render();
}

function render() {
  const symbols = [...registered.keys()].sort();
  el.regEmpty.hidden = symbols.length > 0;
  el.regCount.textContent = symbols.length ? `${list().length} registered` : '';
  for (const li of el.regList.querySelectorAll('.reg-row')) li.remove();
  rows = new Map();
  for (const symbol of symbols) {
    const exchanges = [...registered.get(symbol)].sort((a, b) => EXCHANGES.indexOf(a) - EXCHANGES.indexOf(b));
    const chips = exchanges.map((ex) => h('span', { class: 'reg-ex', 'data-exchange': ex },
      h('span', { text: ex }),
      h('button', {
        type: 'button', class: 'reg-remove', title: `Remove ${symbol} on ${ex}`,
        'aria-label': `Remove ${symbol} on ${ex}`, text: '×', onclick: () => remove(ex, symbol),
      })));
    const li = h('li', { class: 'reg-row', 'data-symbol': symbol },
      h('div', { class: 'reg-head' }, h('b', { class: 'reg-sym', text: symbol }), h('span', { class: 'reg-exs' }, ...chips)));
    let cells = null;
    if (PAIR.every((ex) => exchanges.includes(ex))) {
      cells = {
        a: h('b', { class: 'sp-px', text: '—' }), b: h('b', { class: 'sp-px', text: '—' }),
        abs: h('b', { class: 'sp-abs', text: '—' }), pct: h('small', { class: 'sp-pct', text: '' }),
      };
      li.append(h('div', { class: 'spread', 'aria-label': `${symbol} on ${PAIR[0]} and ${PAIR[1]}` },
        h('span', { class: 'sp-cell', 'data-exchange': PAIR[0] }, h('small', { text: PAIR[0] }), cells.a),
        h('span', { class: 'sp-cell', 'data-exchange': PAIR[1] }, h('small', { text: PAIR[1] }), cells.b),
        h('span', { class: 'sp-cell sp-diff' }, h('small', { text: 'spread' }), cells.abs, cells.pct)));
    }
    rows.set(symbol, { li, cells });
    el.regList.append(li);
  }
  renderPrices();
}

function list() {
  return [...registered.values()].flatMap((s) => [...s]);
}

function renderPrices() {
  for (const [symbol, { li, cells }] of rows) {
    if (!cells) continue;
    const a = last.get(`${PAIR[0]}:${symbol}`);
    const b = last.get(`${PAIR[1]}:${symbol}`);
    const decimals = Math.max(a?.decimals ?? 0, b?.decimals ?? 0);
    const f = numFmt(decimals);
    cells.a.textContent = a ? f.format(a.price) : '—';
    cells.b.textContent = b ? f.format(b.price) : '—';
    const s = spread(a?.price, b?.price);
    const cls = !s ? 'flat' : s.abs > 0 ? 'up' : s.abs < 0 ? 'down' : 'flat';
    cells.abs.textContent = s ? signed(f.format(s.abs), s.abs) : '—';
    cells.abs.className = `sp-abs ${cls}`;
    cells.pct.textContent = s ? `${signed(s.pct.toFixed(3), s.pct)}%` : '';
    cells.pct.className = `sp-pct ${cls}`;
    li.dataset.spread = s ? String(s.abs) : '';
  }
}

// ---------------------------------------------------------------- admin token

// Asks for the admin token in a modal dialog; resolves to it, or null when cancelled.
function askToken(why) {
  el.adminWhy.textContent = why;
  el.adminInput.value = '';
  el.adminDialog.showModal();
  el.adminInput.focus();
  return new Promise((resolve) => {
    el.adminDialog.addEventListener('close', () => {
      const token = el.adminDialog.returnValue === 'ok' ? el.adminInput.value.trim() : '';
      resolve(token || null);
    }, { once: true });
  });
}

// A registry change with the admin token: asks for it when none is kept, and again (saying
// why) when the gateway refuses it. Resolves to the response, or null when the user cancels.
async function adminFetch(method, url, body) {
  let token = sessionStorage.getItem(TOKEN_KEY);
  let why = 'Changing the market list needs the gateway\'s admin token (--admin-token) or an admin JWT.';
  for (;;) {
    if (!token) token = await askToken(why);
    if (!token) return null;
    const res = await fetch(url, {
      method,
      headers: { Authorization: `Bearer ${token}`, ...(body ? { 'Content-Type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    if (res.status !== 401 && res.status !== 403) {
      sessionStorage.setItem(TOKEN_KEY, token);
      return res;
    }
    sessionStorage.removeItem(TOKEN_KEY);
    token = null;
    why = `The gateway refused the token: ${await errorText(res)}`;
  }
}

async function change(method, url, body, done) {
  try {
    const res = await adminFetch(method, url, body);
    if (!res) { note('Cancelled: no admin token given'); return; }
    if (res.ok) note(done(res.status), 'ok');
    else note(await errorText(res), 'err');
  } catch (err) {
    note('The gateway did not answer; try again', 'err');
  }
  await loadMarkets();
}

function add(exchange, symbol) {
  return change('POST', API, { exchange, symbol },
    (status) => (status === 201 ? `Added ${symbol} on ${exchange}` : `${symbol} on ${exchange} was already there`));
}

function remove(exchange, symbol) {
  return change('DELETE', `${API}/${encodeURIComponent(exchange)}/${encodeURIComponent(symbol)}`, null,
    () => `Removed ${symbol} on ${exchange}`);
}

// ---------------------------------------------------------------- start

export function initMarkets() {
  el.regForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const symbol = el.regSymbol.value.trim().toUpperCase();
    if (!symbol) { note('Type a market, e.g. KRW-BTC', 'err'); return; }
    add(el.regExchange.value, symbol).then(() => { el.regSymbol.value = ''; });
  });
  el.adminCancel.addEventListener('click', () => el.adminDialog.close('cancel'));
  loadMarkets();
  setInterval(loadMarkets, POLL_MS);
}
