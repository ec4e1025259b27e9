// wscat, as a person uses it: one line per WebSocket message, `^@` ending a frame. The
// gateway takes a WebSocket whose first message is a lone CONNECT as typed by hand.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';

const BIN = resolve(process.env.STOMPGATE_BIN ?? '../../target/debug/stompgate');
const WSCAT = resolve('node_modules/.bin/wscat');

function waitFor(getText, pattern, ms, what) {
  return new Promise((ok, fail) => {
    const started = Date.now();
    const timer = setInterval(() => {
      if (pattern.test(getText())) {
        clearInterval(timer);
        ok();
      } else if (Date.now() - started > ms) {
        clearInterval(timer);
        fail(new Error(`timed out waiting for ${what}; got:\n${getText().slice(-800)}`));
      }
    }, 50);
  });
}

test('typing CONNECT and SUBSCRIBE in wscat shows trades arriving', async () => {
  const gateway = spawn(BIN, ['--port', '0', '--bind', '127.0.0.1', '--demo-rate', '50'], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  let gwOut = '';
  gateway.stdout.on('data', (c) => { gwOut += c; });
  const wscatArgs = [];
  let wscat;
  try {
    await waitFor(() => gwOut, /listening on http:\/\/127\.0\.0\.1:\d+/, 20000, 'the gateway');
    const port = /127\.0\.0\.1:(\d+)/.exec(gwOut)[1];
    wscatArgs.push('-c', `ws://127.0.0.1:${port}/ws`, '-s', 'v12.stomp');
    wscat = spawn(WSCAT, wscatArgs, { stdio: ['pipe', 'pipe', 'pipe'] });
    let screen = '';
    wscat.stdout.on('data', (c) => { screen += c; });
    wscat.stderr.on('data', (c) => { screen += c; });
    // Lines typed before wscat is connected are dropped: wait until the gateway counts it.
    let connections = 0;
    const poll = setInterval(async () => {
      try {
        connections = (await (await fetch(`http://127.0.0.1:${port}/api/stats`)).json()).connections;
      } catch { /* not yet */ }
    }, 100);
    await waitFor(() => String(connections), /^[1-9]/, 10000, 'wscat to connect').finally(() => clearInterval(poll));
    const type = async (lines) => {
      for (const line of lines) {
        wscat.stdin.write(`${line}\n`);
        await new Promise((r) => setTimeout(r, 30));
      }
    };
    await type(['CONNECT', 'accept-version:1.2', 'host:localhost', '', '^@']);
    await waitFor(() => screen, /CONNECTED\s+version:1\.2/, 10000, 'CONNECTED');
    await type(['SUBSCRIBE', 'id:0', 'destination:/topic/market/KRW-BTC', '', '^@']);
    await waitFor(() => screen, /MESSAGE\s+subscription:0\s+destination:\/topic\/market\/KRW-BTC[\s\S]*"market":"KRW-BTC"/, 10000, 'a MESSAGE');
    assert.doesNotMatch(screen, /ERROR/);
  } finally {
    wscat?.kill();
    gateway.kill('SIGTERM');
  }
});
