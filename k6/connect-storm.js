// Connect storm against your own stompgate deployment (or any STOMP-over-WebSocket server):
// VUS clients each open a WebSocket, CONNECT, SUBSCRIBE with a receipt, and record the time
// from the first byte to the RECEIPT. They hold the subscription for HOLD_MS, then leave.
//
//   k6 run -e URL=wss://gateway.example/ws -e VUS=2000 k6/connect-storm.js
//
// Environment: URL, VUS (default 500), DEST (default /topic/market/KRW-BTC),
// LOGIN / PASSCODE (sent in CONNECT when set),
// HOLD_MS (default 5000). The threshold fails the run when p99 exceeds 2 s.
import ws from 'k6/ws';
import { check } from 'k6';
import { Counter, Trend } from 'k6/metrics';
import { command, connectFrame, subscribeFrame } from './stomp.js';

const URL = __ENV.URL || 'ws://127.0.0.1:8080/ws';
const VUS = parseInt(__ENV.VUS || '500', 10);
const DEST = __ENV.DEST || '/topic/market/KRW-BTC';
const HOLD_MS = parseInt(__ENV.HOLD_MS || '5000', 10);

export const options = {
  scenarios: {
    storm: { executor: 'per-vu-iterations', vus: VUS, iterations: 1, maxDuration: '120s' },
  },
  thresholds: {
    stomp_connect_subscribe_ms: ['p(99)<2000'],
    stomp_errors: ['count==0'],
  },
};

const connectSubscribe = new Trend('stomp_connect_subscribe_ms', true);
const errors = new Counter('stomp_errors');

export default function () {
  const t0 = Date.now();
  const res = ws.connect(URL, { headers: { 'Sec-WebSocket-Protocol': 'v12.stomp' } }, (socket) => {
    socket.on('open', () => socket.send(connectFrame()));
    socket.on('message', (data) => {
      const cmd = command(data);
      if (cmd === 'CONNECTED') {
        socket.send(subscribeFrame(DEST, { receipt: 'sub-0' }));
      } else if (cmd === 'RECEIPT') {
        connectSubscribe.add(Date.now() - t0);
        socket.setTimeout(() => socket.close(), HOLD_MS);
      } else if (cmd === 'ERROR') {
        errors.add(1);
        socket.close();
      }
    });
    socket.on('error', () => errors.add(1));
    socket.setTimeout(() => socket.close(), HOLD_MS + 60000);
  });
  check(res, { 'WebSocket upgraded (101)': (r) => r && r.status === 101 });
}
