// Token expiry and in-band refresh with @stomp/stompjs (unmodified, Node with `ws`) against a
// real stompgate in JWT mode (HS256, --jwt-secret): a session whose token runs out gets ERROR
// "token expired" and is closed; one that SENDs a new token to /app/session/token before then
// stays connected and keeps receiving trades past the first token's expiry.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { WebSocket } from 'ws';
import { Client } from '@stomp/stompjs';
import { startGateway, stopGateway } from './gateway.mjs';

Object.assign(globalThis, { WebSocket });

const SECRET = 'a-node-test-secret-of-some-length';
let gateway;
let url;

function b64url(data) {
  return Buffer.from(data).toString('base64url');
}

/** An HS256 JWT for `sub` that expires `seconds` from now. */
function token(sub, seconds) {
  const header = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const exp = Math.floor(Date.now() / 1000) + seconds;
  const payload = b64url(JSON.stringify({ sub, exp }));
  const sig = createHmac('sha256', SECRET).update(`${header}.${payload}`).digest('base64url');
  return { jwt: `${header}.${payload}.${sig}`, expMs: exp * 1000 };
}

before(async () => {
  gateway = await startGateway(['--demo-rate', '50', '--jwt-secret', SECRET]);
  ({ url } = gateway);
});

after(async () => {
  assert.equal(await stopGateway(gateway), 0, 'gateway exits 0 on SIGTERM');
});

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, fail) => {
      timer = setTimeout(() => fail(new Error(`timed out waiting for ${what}`)), ms);
    }),
  ]);
}

const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));

/**
 * A client connected with `jwt` as passcode (as stompjs users pass a token), subscribed to
 * KRW-BTC trades; it records arrival times, ERROR frames and the socket's close. No
 * reconnect, so a close stays a close.
 */
async function connectWithToken(jwt) {
  const seen = { trades: [], errors: [], closed: null };
  const client = new Client({ brokerURL: url, connectHeaders: { passcode: jwt }, reconnectDelay: 0 });
  client.onStompError = (f) => seen.errors.push({ message: f.headers.message, body: f.body });
  client.onWebSocketClose = () => { seen.closed ??= Date.now(); };
  const connected = new Promise((ok, fail) => {
    client.onConnect = ok;
    client.onWebSocketError = () => fail(new Error('WebSocket error before CONNECTED'));
  });
  client.activate();
  await withTimeout(connected, 10000, 'CONNECTED');
  client.subscribe('/topic/market/KRW-BTC', () => seen.trades.push(Date.now()));
  return { client, seen };
}

test('without a refresh the session gets ERROR "token expired" and is closed', async () => {
  const { jwt, expMs } = token('alice', 3);
  const { client, seen } = await connectWithToken(jwt);
  await withTimeout((async () => { while (seen.closed === null) await sleep(50); })(),
    expMs - Date.now() + 5000, 'the gateway to close the expired session');
  assert.equal(seen.errors.length, 1, `one ERROR frame: ${JSON.stringify(seen.errors)}`);
  assert.equal(seen.errors[0].message, 'token expired');
  assert.ok(seen.closed >= expMs - 1000, 'not closed long before the token expired');
  assert.ok(seen.trades.length > 0, 'trades arrived while the token was valid');
  assert.equal(client.connected, false);
  await sleep(500);
  const after = seen.trades.filter((t) => t > seen.closed);
  assert.deepEqual(after, [], 'nothing arrives after the close');
  await client.deactivate();
});

test('a refresh to /app/session/token before expiry keeps the session receiving', async () => {
  const first = token('bob', 3);
  const { client, seen } = await connectWithToken(first.jwt);
  await sleep(1000);
  const next = token('bob', 60);
  const receipt = new Promise((ok) => client.watchForReceipt('refresh-1', ok));
  client.publish({ destination: '/app/session/token', body: next.jwt, headers: { receipt: 'refresh-1' } });
  await withTimeout(receipt, 5000, 'the RECEIPT of the token refresh');
  // Well past the first token's expiry (the gateway checks it to the second).
  await sleep(first.expMs - Date.now() + 3000);
  const late = seen.trades.filter((t) => t > first.expMs + 1000);
  assert.ok(late.length > 0, `trades keep arriving after the first token's expiry (${seen.trades.length} in all)`);
  assert.deepEqual(seen.errors, [], 'no ERROR frame');
  assert.equal(seen.closed, null, 'the socket stays open');
  assert.equal(client.connected, true);
  await client.deactivate();
});

test('a refresh with another subject\'s token is refused', async () => {
  const { jwt } = token('carol', 30);
  const { client, seen } = await connectWithToken(jwt);
  client.publish({ destination: '/app/session/token', body: token('mallory', 60).jwt });
  await withTimeout((async () => { while (seen.closed === null) await sleep(50); })(), 5000,
    'the gateway to close the session');
  assert.equal(seen.errors.length, 1, JSON.stringify(seen.errors));
  assert.equal(seen.errors[0].message, 'token refresh refused');
  await client.deactivate();
});
