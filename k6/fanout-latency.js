// Fan-out with end-to-end latency against your own stompgate deployment (or any
// STOMP-over-WebSocket server): VUS subscribers on one destination, one publisher sending
// RATE messages/s whose body carries its send time; every subscriber records now - sent.
// Publisher and subscribers run in the same k6 process (one clock, millisecond resolution).
//
//   k6 run -e URL=wss://gateway.example/ws -e VUS=500 -e RATE=20 -e DURATION=60s k6/fanout-latency.js
//
// stompgate (default): SEND to /app/market/<MARKET>/chat, subscribe /topic/market/<MARKET>;
// the chat record's `text` carries the token. For another broker set SUB_DEST and SEND_DEST
// (RabbitMQ: both /topic/market.X; Spring SimpleBroker: both /topic/...).
// Environment: URL, VUS (default 200), RATE (default 10), DURATION (default 30s), MARKET,
// SUB_DEST, SEND_DEST, LOGIN, PASSCODE.
import ws from 'k6/ws';
import { Counter, Trend } from 'k6/metrics';
import { command, connectFrame, latencyBody, latencyTokens, sendFrame, subscribeFrame } from './stomp.js';

const URL = __ENV.URL || 'ws://127.0.0.1:8080/ws';
const VUS = parseInt(__ENV.VUS || '200', 10);
const RATE = parseFloat(__ENV.RATE || '10');
const DURATION = __ENV.DURATION || '30s';
const MARKET = __ENV.MARKET || 'K6-BENCH';
const SUB_DEST = __ENV.SUB_DEST || `/topic/market/${MARKET}`;
const SEND_DEST = __ENV.SEND_DEST || `/app/market/${MARKET}/chat`;

function seconds(d) {
  const m = /^(\d+)(ms|s|m)$/.exec(d);
  if (!m) return 30;
  const n = parseInt(m[1], 10);
  return m[2] === 'ms' ? n / 1000 : m[2] === 'm' ? n * 60 : n;
}
const HOLD_MS = seconds(DURATION) * 1000;

export const options = {
  scenarios: {
    subscribers: { executor: 'per-vu-iterations', vus: VUS, iterations: 1, exec: 'subscriber', maxDuration: '10m' },
    // The publisher starts once the subscribers had time to subscribe.
    publisher: { executor: 'per-vu-iterations', vus: 1, iterations: 1, exec: 'publisher', startTime: '3s', maxDuration: '10m' },
  },
  thresholds: {
    stomp_e2e_latency_ms: ['p(99)<50'],
    stomp_errors: ['count==0'],
  },
};

const latency = new Trend('stomp_e2e_latency_ms', true);
const received = new Counter('stomp_messages_received');
const sent = new Counter('stomp_messages_sent');
const errors = new Counter('stomp_errors');

export function subscriber() {
  ws.connect(URL, { headers: { 'Sec-WebSocket-Protocol': 'v12.stomp' } }, (socket) => {
    socket.on('open', () => socket.send(connectFrame()));
    socket.on('message', (data) => {
      const cmd = command(data);
      if (cmd === 'CONNECTED') {
        socket.send(subscribeFrame(SUB_DEST));
        return;
      }
      if (cmd === 'ERROR') {
        errors.add(1);
        return;
      }
      const now = Date.now();
      for (const sentMs of latencyTokens(data)) {
        latency.add(now - sentMs);
        received.add(1);
      }
    });
    socket.on('error', () => errors.add(1));
    socket.setTimeout(() => socket.close(), HOLD_MS + 5000);
  });
}

export function publisher() {
  ws.connect(URL, { headers: { 'Sec-WebSocket-Protocol': 'v12.stomp' } }, (socket) => {
    socket.on('open', () => socket.send(connectFrame()));
    socket.on('message', (data) => {
      const cmd = command(data);
      if (cmd === 'CONNECTED') {
        socket.setInterval(() => {
          socket.send(sendFrame(SEND_DEST, latencyBody(Date.now())));
          sent.add(1);
        }, 1000 / RATE);
      } else if (cmd === 'ERROR') {
        errors.add(1);
      }
    });
    socket.setTimeout(() => socket.close(), HOLD_MS);
  });
}
