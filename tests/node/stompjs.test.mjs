// @stomp/stompjs (unmodified, default settings, Node with the `ws` package) against a real
// stompgate started by the test: demo trades, chat with receipts, transactions, client acks.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket } from 'ws';
import { Client } from '@stomp/stompjs';
import { startGateway, stopGateway } from './gateway.mjs';

Object.assign(globalThis, { WebSocket });

let gateway;
let url;

before(async () => {
  gateway = await startGateway(['--demo-rate', '50']);
  ({ url } = gateway);
});

after(async () => {
  assert.equal(await stopGateway(gateway), 0, 'gateway exits 0 on SIGTERM');
});

/** A connected client with default settings, as users create it. */
async function connect(login) {
  const client = new Client({ brokerURL: url, connectHeaders: login ? { login } : {} });
  const connected = new Promise((ok, fail) => {
    client.onConnect = ok;
    client.onStompError = (f) => fail(new Error(f.headers.message));
  });
  client.activate();
  const frame = await withTimeout(connected, 10000, 'CONNECTED');
  return { client, frame };
}

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, fail) => {
      timer = setTimeout(() => fail(new Error(`timed out waiting for ${what}`)), ms);
    }),
  ]);
}

function nextMessage(client, destination, pred = () => true, headers = {}) {
  return new Promise((ok) => {
    const sub = client.subscribe(destination, (m) => {
      const body = JSON.parse(m.body);
      if (pred(m, body)) {
        sub.unsubscribe();
        ok({ message: m, body });
      }
    }, headers);
  });
}

test('receives demo trades with the contract headers', async () => {
  const { client, frame } = await connect();
  assert.equal(frame.headers.version, '1.2');
  const { message, body } = await withTimeout(nextMessage(client, '/topic/market/KRW-BTC'), 10000, 'a trade');
  assert.equal(message.headers.destination, '/topic/market/KRW-BTC');
  assert.equal(message.headers['event-type'], 'trade');
  assert.equal(message.headers['content-type'], 'application/json');
  assert.match(message.headers['message-id'], /^trades-\d+-\d+$/);
  assert.equal(body.market, 'KRW-BTC');
  assert.ok(Number(body.price) > 0);
  await client.deactivate();
});

test('chat: SEND with receipt reaches another client, sender stamped by the gateway', async () => {
  const { client: reader } = await connect('bob');
  const { client: writer, frame } = await connect('alice');
  assert.equal(frame.headers['user-name'], 'alice');
  const text = `gm ${Math.random()}`;
  const got = nextMessage(reader, '/topic/market/KRW-ETH', (_, b) => b.text === text);
  // Let the SUBSCRIBE reach the gateway before publishing.
  await new Promise((ok) => {
    reader.watchForReceipt('sub-ready', ok);
    reader.publish({ destination: '/app/market/KRW-ETH/chat', body: JSON.stringify({ text: 'warm-up' }), headers: { receipt: 'sub-ready' } });
  });
  const receipt = new Promise((ok) => writer.watchForReceipt('chat-1', ok));
  writer.publish({
    destination: '/app/market/KRW-ETH/chat',
    body: JSON.stringify({ text, user: 'mallory' }),
    headers: { receipt: 'chat-1', 'content-type': 'application/json' },
  });
  await withTimeout(receipt, 10000, 'RECEIPT');
  const { message, body } = await withTimeout(got, 10000, 'the chat message');
  assert.equal(message.headers['event-type'], 'chat.send');
  assert.equal(body.user, 'alice');
  await reader.deactivate();
  await writer.deactivate();
});

test('transactions: aborted SENDs never arrive, committed ones do', async () => {
  const { client: reader } = await connect('r');
  const { client } = await connect('t');
  const seen = [];
  reader.subscribe('/topic/market/KRW-XRP', (m) => {
    const b = JSON.parse(m.body);
    if (b.text) seen.push(b.text);
  }, { receipt: 'subscribed' });
  await new Promise((ok) => reader.watchForReceipt('subscribed', ok));
  const aborted = client.begin();
  client.publish({ destination: '/app/market/KRW-XRP/chat', body: '{"text":"aborted"}', headers: { transaction: aborted.id } });
  aborted.abort();
  const tx = client.begin();
  client.publish({ destination: '/app/market/KRW-XRP/chat', body: '{"text":"committed"}', headers: { transaction: tx.id } });
  tx.commit();
  // Receipts keep frame order: this one arrives only after the COMMIT was carried out.
  const committed = new Promise((ok) => client.watchForReceipt('after-commit', ok));
  client.publish({ destination: '/app/market/KRW-XRP/chat', body: '{"text":"after"}', headers: { receipt: 'after-commit' } });
  await withTimeout(committed, 10000, 'RECEIPT after COMMIT');
  await withTimeout((async () => { while (!seen.includes('after')) await new Promise((ok) => setTimeout(ok, 20)); })(), 10000, 'committed messages');
  assert.deepEqual(seen, ['committed', 'after']);
  await reader.deactivate();
  await client.deactivate();
});

test('client-individual acks keep the session healthy', async () => {
  const { client } = await connect();
  let errors = 0;
  client.onStompError = () => { errors += 1; };
  let acked = 0;
  await withTimeout(new Promise((ok) => {
    client.subscribe('/topic/market/*', (m) => {
      assert.ok(m.headers.ack, 'MESSAGE carries an ack header');
      if (acked % 2) m.nack(); else m.ack();
      acked += 1;
      if (acked === 20) ok();
    }, { ack: 'client-individual' });
  }), 15000, '20 messages');
  const receipt = new Promise((ok) => client.watchForReceipt('after-acks', ok));
  client.publish({ destination: '/app/market/KRW-BTC/chat', body: '{"text":"ok"}', headers: { receipt: 'after-acks' } });
  await withTimeout(receipt, 10000, 'RECEIPT after acks');
  assert.equal(errors, 0);
  await client.deactivate();
});
