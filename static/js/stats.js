// The stats panel: messages per second and latency measured here, the gateway's connection
// count from /api/stats.

import { el } from './dom.js';
import { fmtInt } from './format.js';
import { state, STATS_POLL_MS } from './state.js';

const statsUrl = new URL('api/stats', window.location.href).toString();

let windowCount = 0;
let latencies = [];

// One MESSAGE frame arrived.
export function countMessage() {
  state.received += 1;
  windowCount += 1;
}

// Latency from the event's timestamp (ms since epoch) to now; clock skew beyond reason is dropped.
export function noteLatency(ts) {
  const d = Date.now() - ts;
  if (d > -60000 && d < 3600000) latencies.push(Math.max(0, d));
}

function tick() {
  el.statRate.textContent = fmtInt(windowCount);
  windowCount = 0;
  if (latencies.length) {
    latencies.sort((a, b) => a - b);
    const p50 = latencies[Math.floor(latencies.length / 2)];
    const p99 = latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * 0.99))];
    el.statLatency.textContent = `${p50} ms`;
    el.statLatency.title = `median ${p50} ms, p99 ${p99} ms over the last second (event timestamp to now)`;
    latencies = [];
  } else if (!state.connected) {
    el.statLatency.textContent = '—';
  }
  el.statTotal.textContent = fmtInt(state.received);
  el.statTotal.title = `${fmtInt(state.replayed)} of them replayed from the gateway's history`;
}

export async function pollStats() {
  try {
    const res = await fetch(statsUrl, { cache: 'no-store' });
    if (!res.ok) throw new Error(String(res.status));
    const s = await res.json();
    el.statConns.textContent = fmtInt(s.connections ?? 0);
    el.statConns.title = `${s.subscriptions ?? '?'} subscriptions, ${s.messages_out ?? '?'} messages out`;
    el.statsBus.textContent = s.bus ? `bus: ${s.bus}` : '';
  } catch (err) {
    el.statConns.textContent = '—';
  }
}

export function startStats() {
  setInterval(tick, 1000);
  pollStats();
  setInterval(pollStats, STATS_POLL_MS);
}
