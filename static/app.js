// stompgate dashboard: a market board, a live chart, a trade tape and a per-market chat,
// fed by one STOMP-over-WebSocket subscription to /topic/market/* plus a short catch-up
// subscription per market for its history, or for what it missed while disconnected (feeds.js).
// ES modules, no build step (static/js/, layout in docs/dashboard.md); @stomp/stompjs and
// lightweight-charts are vendored UMD builds loaded before this as classic scripts.
// This entry wires the modules together: connection events, MESSAGE dispatch, the name form.
// The Markets panel (markets.js) lists the registry over REST and compares exchanges.

import { el } from './js/dom.js';
import { state, RECONNECT_BASE_MS, RECONNECT_MAX_MS } from './js/state.js';
import { initBoard } from './js/board.js';
import { initChart } from './js/chart.js';
import { marketIdOf, marketInUrl, onTrade, select, initMarket, markGap } from './js/market.js';
import { initFeeds, subscribeAll, feedsLost, marketDestination } from './js/feeds.js';
import { onChat, renderChat, updateChatForm, failPending, initChat } from './js/chat.js';
import { initMarkets, noteTrade } from './js/markets.js';
import { countMessage, noteLatency, pollStats, startStats } from './js/stats.js';
import {
  client, applyLogin, loginName, saveLoginName, setConn, showReconnecting, stopCountdown,
} from './js/connection.js';

// ---------------------------------------------------------------- connection events

client.beforeConnect = () => {
  applyLogin();
  if (!state.everConnected && state.attempt === 0) setConn('connecting', 'Connecting…');
  else { stopCountdown(); setConn('reconnecting', `Reconnecting… (attempt ${state.attempt})`); }
};

client.onConnect = (frame) => {
  stopCountdown();
  state.connected = true;
  state.everConnected = true;
  state.attempt = 0;
  state.me = frame.headers['user-name'] || loginName() || null;
  el.meName.textContent = state.me || 'guest';
  setConn('connected', 'Connected');
  el.conn.title = `${frame.headers.server || 'server'} · session ${frame.headers.session || '?'} · STOMP ${frame.headers.version || '?'}`;
  // subscriptions do not survive a reconnect: subscribe again on every CONNECTED, catching
  // up on what each market sent meanwhile (or on its history, the first time)
  subscribeAll(state.selected ? [marketDestination(state.selected)] : []);
  updateChatForm();
  renderChat();
  pollStats();
};

function lost() {
  const wasConnected = state.connected;
  state.connected = false;
  feedsLost();
  updateChatForm();
  failPending();
  if (!client.active) { stopCountdown(); setConn('disconnected', 'Disconnected'); return; }
  state.attempt += 1;
  const delay = Math.min(RECONNECT_BASE_MS * 2 ** (state.attempt - 1), RECONNECT_MAX_MS);
  state.retryAt = Date.now() + delay;
  if (wasConnected || state.everConnected || state.attempt > 0) showReconnecting();
}

client.onWebSocketClose = () => lost();
client.onStompError = (frame) => {
  const why = frame.headers.message || 'error';
  el.conn.title = `Gateway error: ${why}`;
};

// ---------------------------------------------------------------- MESSAGE dispatch

function onMessage(msg) {
  countMessage();
  const type = msg.headers['event-type'] || 'trade';
  let body;
  try { body = JSON.parse(msg.body); } catch (err) { return; }
  const ts = Number(msg.headers.timestamp) || Number(body.ts) || 0;
  // a replayed message is old by design: its age is not delivery latency
  if (ts && msg.headers['x-replay'] !== 'true') noteLatency(ts);
  const id = marketIdOf(msg.headers.destination, body);
  if (type === 'trade') {
    onTrade(id, body, ts, msg.headers['message-id']);
    noteTrade(id, body);
    if (!state.selected && id) select(id, false);
  } else if (type.startsWith('chat.')) {
    onChat(type, id, body);
  }
}

// ---------------------------------------------------------------- display name

el.nameInput.value = loginName();
el.nameForm.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const name = el.nameInput.value.trim();
  if (name === loginName() && state.connected) return;
  saveLoginName(name);
  // the name is the CONNECT login header, so a new name means a new session
  state.attempt = 0;
  state.everConnected = false;
  await client.deactivate();
  setConn('connecting', 'Connecting…');
  client.activate();
});

// ---------------------------------------------------------------- start

initFeeds({
  onMessage,
  onGap: (dest, why) => { const id = marketIdOf(dest, {}); if (id) markGap(id, why); },
});
initBoard({ onSelect: (id) => select(id, true) });
initChart();
initMarket();
initChat();
initMarkets();
startStats();

const initial = marketInUrl();
if (initial) select(initial, false);
renderChat();
updateChatForm();
client.activate();
