// The STOMP client (@stomp/stompjs, loaded before the modules as the classic script
// vendor/stomp.umd.min.js, global StompJs) and the connection status shown in the header.
// Every SUBSCRIBE goes through subscribe() and every SEND through sendWithReceipt(); which
// destinations to subscribe is feeds.js's, what to do on connect and on loss is app.js's.
// Heart-beats are timed by a Worker, so a hidden tab (whose timers the browser slows down)
// keeps its connection.

import { el } from './dom.js';
import { state, nextSeq, RECONNECT_BASE_MS, RECONNECT_MAX_MS } from './state.js';

const NAME_KEY = 'stompgate.displayName';

// Same host and scheme as the page, so it works on plain HTTP, behind nginx and on HTTPS.
// Resolved against the page URL so a path prefix (location /stompgate/ { ... }) still works.
function wsUrl() {
  const u = new URL('ws', window.location.href);
  u.protocol = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
  u.hash = '';
  u.search = '';
  return u.toString();
}

const { Client, ReconnectionTimeMode, TickerStrategy } = window.StompJs;

export const client = new Client({
  brokerURL: wsUrl(),
  connectHeaders: {},
  reconnectDelay: RECONNECT_BASE_MS,
  maxReconnectDelay: RECONNECT_MAX_MS,
  reconnectTimeMode: ReconnectionTimeMode.EXPONENTIAL,
  connectionTimeout: 8000,
  heartbeatIncoming: 10000,
  heartbeatOutgoing: 10000,
  heartbeatStrategy: TickerStrategy.Worker,
  debug: () => {},
});

// SUBSCRIBE to `destination` with any extra headers; `onFrame` gets every MESSAGE. With
// `onReceipt`, the SUBSCRIBE carries a fresh `receipt` header and `onReceipt(frame)` runs
// when its RECEIPT arrives (after any history the subscription asked for).
export function subscribe(destination, onFrame, headers = {}, onReceipt = null) {
  if (onReceipt) {
    const receipt = `sub-rcpt-${Date.now().toString(36)}-${nextSeq()}`;
    client.watchForReceipt(receipt, onReceipt);
    headers = { ...headers, receipt };
  }
  return client.subscribe(destination, onFrame, headers);
}

// SEND with a fresh `receipt` header; `onReceipt` runs when its RECEIPT arrives.
// Throws if the client is not connected.
export function sendWithReceipt(destination, headers, body, onReceipt) {
  const receipt = `rcpt-${Date.now().toString(36)}-${nextSeq()}`;
  client.watchForReceipt(receipt, onReceipt);
  client.publish({ destination, headers: { ...headers, receipt }, body });
}

// ---------------------------------------------------------------- display name (CONNECT login)

export function loginName() { return (localStorage.getItem(NAME_KEY) || '').trim(); }

export function saveLoginName(name) {
  if (name) localStorage.setItem(NAME_KEY, name); else localStorage.removeItem(NAME_KEY);
}

export function applyLogin() {
  const name = loginName();
  client.connectHeaders = name ? { login: name } : {};
}

// ---------------------------------------------------------------- status

const CONN_LIVE = { connecting: 'Connecting', connected: 'Connected', reconnecting: 'Connection lost, reconnecting', disconnected: 'Disconnected' };
export function setConn(kind, text) {
  // the visible text ticks down every half second; screen readers only hear state changes
  if (el.conn.dataset.state !== kind) el.connLive.textContent = CONN_LIVE[kind] || kind;
  el.conn.dataset.state = kind;
  el.connText.textContent = text;
}

let countdown = null;
export function stopCountdown() { clearInterval(countdown); }

export function showReconnecting() {
  clearInterval(countdown);
  const tick = () => {
    const s = Math.max(0, Math.ceil((state.retryAt - Date.now()) / 1000));
    setConn('reconnecting', s > 0 ? `Reconnecting in ${s}s (attempt ${state.attempt})` : `Reconnecting… (attempt ${state.attempt})`);
  };
  tick();
  countdown = setInterval(tick, 500);
}
