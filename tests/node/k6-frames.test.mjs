// The k6 scripts cannot run here (k6 is not installed), so their STOMP frames are checked
// instead: k6/stomp.js, the one module both scripts build every frame with, is imported
// as is and its CONNECT, SUBSCRIBE and SEND frames go to a real gateway over a WebSocket,
// in the order the scripts send them. The gateway must answer CONNECTED, RECEIPT and a
// MESSAGE carrying the latency token, never ERROR.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket } from 'ws';
import {
  command, connectFrame, latencyBody, latencyTokens, sendFrame, subscribeFrame,
} from '../../k6/stomp.js';
import { startGateway, stopGateway } from './gateway.mjs';

// The scripts' defaults: connect-storm.js subscribes DEST; fanout-latency.js subscribes
// SUB_DEST and SENDs to SEND_DEST for MARKET=K6-BENCH.
const STORM_DEST = '/topic/market/KRW-BTC';
const SUB_DEST = '/topic/market/K6-BENCH';
const SEND_DEST = '/app/market/K6-BENCH/chat';

let gateway;
let url;

before(async () => {
  gateway = await startGateway(['--demo-rate', '0']);
  ({ url } = gateway);
});

after(async () => {
  await stopGateway(gateway);
});

/** A WebSocket as the k6 scripts open it, with every STOMP frame it receives queued. */
async function open() {
  const ws = new WebSocket(url, 'v12.stomp');
  const frames = [];
  let wake = () => {};
  ws.on('message', (data) => {
    // One WebSocket message may carry several frames; each ends with NUL.
    for (const f of data.toString().split('\0')) {
      if (f.replace(/^[\r\n]+/, '') !== '') frames.push(f);
    }
    wake();
  });
  await new Promise((ok, fail) => {
    ws.once('open', ok);
    ws.once('error', fail);
  });
  assert.equal(ws.protocol, 'v12.stomp');
  /** The next frame whose command is `want`; fails on ERROR or after 10 s. */
  const expect = async (want, what = want) => {
    const deadline = Date.now() + 10000;
    for (;;) {
      while (frames.length) {
        const f = frames.shift();
        const cmd = command(f);
        assert.notEqual(cmd, 'ERROR', `ERROR instead of ${what}:\n${f}`);
        if (cmd === want) return f;
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}`);
      await new Promise((ok) => {
        wake = ok;
        setTimeout(ok, left);
      });
    }
  };
  return { ws, expect };
}

test('connect-storm.js frames: CONNECT gets CONNECTED, SUBSCRIBE with receipt gets RECEIPT', async () => {
  const { ws, expect } = await open();
  try {
    ws.send(connectFrame());
    const connected = await expect('CONNECTED');
    assert.match(connected, /\nversion:1\.2\n/);
    ws.send(subscribeFrame(STORM_DEST, { receipt: 'sub-0' }));
    assert.match(await expect('RECEIPT', 'the RECEIPT for SUBSCRIBE'), /\nreceipt-id:sub-0\n/);
  } finally {
    ws.close();
  }
});

test('fanout-latency.js frames: a SEND reaches the subscriber as a MESSAGE with its token', async () => {
  const sub = await open();
  // The publisher connects with LOGIN set, as `k6 run -e LOGIN=...` does.
  const pub = await open();
  try {
    sub.ws.send(connectFrame());
    await sub.expect('CONNECTED');
    // fanout-latency.js subscribes without a receipt; one is added here only to know
    // when the subscription is in place before publishing.
    sub.ws.send(subscribeFrame(SUB_DEST, { receipt: 'ready' }));
    await sub.expect('RECEIPT', 'the RECEIPT for SUBSCRIBE');

    pub.ws.send(connectFrame({ LOGIN: 'k6-publisher' }));
    await pub.expect('CONNECTED');
    const sentMs = Date.now();
    pub.ws.send(sendFrame(SEND_DEST, latencyBody(sentMs), { receipt: 'send-1' }));
    assert.match(await pub.expect('RECEIPT', 'the RECEIPT for SEND'), /\nreceipt-id:send-1\n/);

    const msg = await sub.expect('MESSAGE');
    assert.match(msg, new RegExp(`\\ndestination:${SUB_DEST}\\n`));
    assert.match(msg, /\nsubscription:0\n/);
    assert.deepEqual(latencyTokens(msg), [sentMs]);
  } finally {
    sub.ws.close();
    pub.ws.close();
  }
});

test('the frames are well-formed STOMP: NUL-terminated, header lines, blank line before the body', () => {
  assert.equal(connectFrame({}), 'CONNECT\naccept-version:1.2,1.1,1.0\nhost:/\nheart-beat:0,0\n\n\0');
  assert.equal(
    connectFrame({ LOGIN: 'a', PASSCODE: 'b' }),
    'CONNECT\naccept-version:1.2,1.1,1.0\nhost:/\nheart-beat:0,0\nlogin:a\npasscode:b\n\n\0',
  );
  assert.equal(subscribeFrame('/topic/x'), 'SUBSCRIBE\nid:0\ndestination:/topic/x\nack:auto\n\n\0');
  assert.equal(sendFrame('/app/x', '{}'), 'SEND\ndestination:/app/x\ncontent-type:application/json\n\n{}\0');
  assert.equal(command('\n\nMESSAGE\r\nx:y\n\n\0'), 'MESSAGE');
});
