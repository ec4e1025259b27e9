// End-to-end test of the dashboard: starts the real gateway with the demo feed, drives the page
// in headless Chromium (Debian's /usr/bin/chromium through playwright-core) and checks the board,
// the chart, the Markets panel (registry, spread between exchanges, add and remove), chat
// between two browsers (send, edit, delete) and reconnection after a restart.
//
//   node --test e2e/
//
// Env: STOMPGATE_BIN (default target/debug/stompgate), CHROMIUM_PATH (default /usr/bin/chromium),
//      SCREENSHOT_DIR (default docs/screenshots).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BIN = path.resolve(process.env.STOMPGATE_BIN || path.join(ROOT, 'target/debug/stompgate'));
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const SHOTS = path.resolve(ROOT, process.env.SCREENSHOT_DIR || 'docs/screenshots');
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };
const MARKET = 'KRW-BTC';
const ADMIN = 'e2e-admin-token';   // the gateway's --admin-token, for the Markets panel

// ------------------------------------------------------------------ gateway process

class Gateway {
  constructor(port, extra = ['--demo-rate', '20', '--admin-token', ADMIN]) { this.port = port; this.extra = extra; this.proc = null; this.log = []; }

  start(timeoutMs = 30000) {
    this.startedAt = Date.now();
    return new Promise((resolve, reject) => {
      const args = ['--port', String(this.port), ...this.extra];
      // the in-process bus and demo feed: no Kafka even if the environment names one
      const env = { ...process.env };
      delete env.STOMPGATE_KAFKA_BROKERS;
      delete env.STOMPGATE_PORT;
      const proc = spawn(BIN, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env });
      this.proc = proc;
      let buf = '';
      const timer = setTimeout(() => {
        fail(new Error(`gateway did not print its listening line within ${timeoutMs} ms`));
      }, timeoutMs);
      const fail = (err) => {
        clearTimeout(timer);
        proc.stdout.removeAllListeners('data');
        reject(new Error(`${err.message}\n--- gateway output ---\n${this.tail()}`));
      };
      proc.on('error', fail);
      proc.on('exit', (code, sig) => {
        this.exited = { code, sig };
        if (!this.url) fail(new Error(`gateway exited early (code ${code}, signal ${sig})`));
      });
      proc.stderr.on('data', (d) => this.keep(d));
      proc.stdout.on('data', (d) => {
        this.keep(d);
        buf += d.toString();
        const m = /stompgate listening on (http:\/\/127\.0\.0\.1:(\d+))/.exec(buf);
        if (m && !this.url) {
          clearTimeout(timer);
          this.url = `${m[1]}/`;
          this.port = Number(m[2]);
          resolve(this);
        }
      });
    });
  }

  keep(d) {
    this.log.push(d.toString());
    if (this.log.length > 200) this.log.splice(0, this.log.length - 200);
  }

  tail() { return this.log.join('').split('\n').slice(-40).join('\n'); }

  async stop() {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGTERM');
    const t = setTimeout(() => p.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(t);
  }
}

async function startGatewayOnPort(port) {
  // the old listener may need a moment to release the port: retry for a few seconds
  const deadline = Date.now() + 15000;
  for (;;) {
    const gw = new Gateway(port);
    try {
      return await gw.start();
    } catch (err) {
      await gw.stop();
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

// ------------------------------------------------------------------ helpers

async function eventually(what, fn, timeoutMs = 15000, stepMs = 200) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
      last = v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    }
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

const intText = async (loc) => Number(((await loc.textContent()) || '0').replace(/[^0-9]/g, '')) || 0;

async function tradeCount(page, market) {
  return intText(page.locator(`.board-row[data-market="${market}"] .cnt`));
}

// non-blank pixels over all of the chart's canvases (a drawn chart has many distinct colours)
async function chartPixels(page) {
  return page.evaluate(() => {
    let painted = 0;
    const colours = new Set();
    for (const c of document.querySelectorAll('#chart canvas')) {
      if (!c.width || !c.height) continue;
      const ctx = c.getContext('2d');
      if (!ctx) continue;
      const d = ctx.getImageData(0, 0, c.width, c.height).data;
      for (let i = 0; i < d.length; i += 16) {
        if (d[i + 3] > 0) { painted++; colours.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]); }
      }
    }
    return { painted, colours: colours.size };
  });
}

function chatMsg(page, text) {
  return page.locator('#chat-log .msg').filter({ has: page.locator('.msg-text', { hasText: text }) });
}

async function setName(page, name) {
  await page.fill('#name-input', name);
  await page.press('#name-input', 'Enter');
  await eventually(`display name ${name}`, async () => (await page.textContent('#me-name')) === name
    && (await page.getAttribute('#conn', 'data-state')) === 'connected', 10000);
}

async function sendChat(page, text) {
  await page.fill('#chat-input', text);
  await page.press('#chat-input', 'Enter');
}

// ------------------------------------------------------------------ fixture

let gw;
let slow;              // a second gateway with a slow demo feed, running since the start: its history
let browser;
const problems = [];   // console errors, page errors and off-host requests seen by any page

function watch(page, label) {
  page.on('pageerror', (err) => problems.push(`${label} page error: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error' && !/WebSocket|ERR_CONNECTION_REFUSED|Failed to load resource/.test(msg.text())) {
      problems.push(`${label} console error: ${msg.text()}`);
    }
  });
  page.on('request', (req) => {
    const u = new URL(req.url());
    if (!['127.0.0.1', 'localhost'].includes(u.hostname) && !['data:', 'blob:'].includes(u.protocol)) {
      problems.push(`${label} requested an off-host URL: ${req.url()}`);
    }
  });
  return page;
}

// Runs in the page before its scripts: records the command and headers of every STOMP frame
// the page sends and receives (window.__stomp.sent / .received) and keeps its WebSockets
// (window.__stomp.sockets), so a test can see what was subscribed and replayed, and drop a
// connection the way a dying replica would.
function instrumentStomp() {
  const log = { sent: [], received: [], sockets: [] };
  window.__stomp = log;
  const parse = (text) => {
    const lines = text.replace(/^[\r\n]+/, '').split('\n');
    const command = lines.shift();
    const headers = {};
    for (const l of lines) {
      if (l === '') break;
      const i = l.indexOf(':');
      if (i > 0 && !(l.slice(0, i) in headers)) headers[l.slice(0, i)] = l.slice(i + 1).replace(/\\c/g, ':');
    }
    return { command, headers, at: Date.now() };
  };
  const Native = window.WebSocket;
  class Recorded extends Native {
    constructor(...args) {
      super(...args);
      log.sockets.push(this);
      let buf = '';
      const dec = new TextDecoder();
      this.addEventListener('message', (ev) => {
        buf += typeof ev.data === 'string' ? ev.data : dec.decode(ev.data, { stream: true });
        let i;
        while ((i = buf.indexOf('\0')) >= 0) {
          const f = buf.slice(0, i);
          buf = buf.slice(i + 1);
          if (f.trim()) log.received.push(parse(f));
        }
      });
    }

    send(data) {
      const text = typeof data === 'string' ? data : new TextDecoder().decode(data);
      if (text.trim()) log.sent.push(parse(text));
      return super.send(data);
    }
  }
  window.WebSocket = Recorded;
}

// The message-ids of the tape's rows, oldest first, and the frames recorded since `from` ms.
const tapeIds = (page) => page.$$eval('#tape tr', (rows) => rows.map((r) => r.dataset.id).reverse());
const framesSince = (page, from, dir = 'received') => page.evaluate(([d, t]) => window.__stomp[d].filter((f) => f.at >= t), [dir, from]);

// The most recent trade message-ids of `destination` the gateway keeps, oldest first: asked
// from inside the page with its own STOMP client (x-history, collected until the RECEIPT).
function gatewayHistory(page, destination) {
  return page.evaluate((dest) => new Promise((resolve, reject) => {
    const c = new window.StompJs.Client({ brokerURL: new URL('ws', location.href).toString().replace(/^http/, 'ws'), reconnectDelay: 0 });
    const ids = [];
    c.onConnect = () => {
      c.watchForReceipt('hist-1', () => { c.deactivate(); resolve(ids); });
      c.subscribe(dest, (m) => {
        if (m.headers['x-replay'] === 'true' && m.headers['event-type'] === 'trade') ids.push(m.headers['message-id']);
      }, { 'x-history': '1000', receipt: 'hist-1' });
    };
    setTimeout(() => reject(new Error('no history from the gateway')), 8000);
    c.activate();
  }), destination);
}

async function newPage(viewport = DESKTOP, name = null) {
  const ctx = await browser.newContext({ viewport, deviceScaleFactor: 1, colorScheme: 'dark', reducedMotion: 'reduce' });
  await ctx.addInitScript(instrumentStomp);
  if (name) await ctx.addInitScript((n) => localStorage.setItem('stompgate.displayName', n), name);
  const page = watch(await ctx.newPage(), name || 'page');
  page.setDefaultTimeout(15000);
  return page;
}

before(async () => {
  assert.ok(existsSync(BIN), `gateway binary not found at ${BIN} (build it with cargo build, or set STOMPGATE_BIN)`);
  assert.ok(existsSync(CHROMIUM), `Chromium not found at ${CHROMIUM} (apt-get install -y chromium)`);
  mkdirSync(SHOTS, { recursive: true });
  gw = await new Gateway(0).start();
  slow = await new Gateway(0, ['--demo-rate', '2']).start();
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true, timeout: 30000 });
});

after(async () => {
  if (browser) await browser.close().catch(() => {});
  if (gw) await gw.stop();
  if (slow) await slow.stop();
});

// ------------------------------------------------------------------ tests (run in order)

let alice;
let bob;

test('the page loads every module with a clean console', { timeout: 30000 }, async () => {
  // Unlike watch(), nothing is excused here: the gateway is up, so any console error (a module
  // that 404s or fails to parse shows only there), page error or failed request is a bug.
  const ctx = await browser.newContext({ viewport: DESKTOP, colorScheme: 'dark', reducedMotion: 'reduce' });
  const page = await ctx.newPage();
  const seen = [];
  page.on('pageerror', (err) => seen.push(`page error: ${err.message}`));
  page.on('console', (msg) => { if (msg.type() === 'error') seen.push(`console error: ${msg.text()}`); });
  page.on('requestfailed', (req) => seen.push(`request failed: ${req.url()} (${req.failure()?.errorText})`));
  page.on('response', (res) => { if (res.status() >= 400) seen.push(`HTTP ${res.status()} for ${res.url()}`); });
  await page.goto(`${gw.url}#${MARKET}`);
  await eventually('connected with trades on the board and the chart', async () => {
    if (seen.length) throw new Error(seen.join('; ')); // shown as the reason if this times out
    return (await page.getAttribute('#conn', 'data-state')) === 'connected'
      && (await tradeCount(page, MARKET)) > 0
      && Number(await page.getAttribute('#chart', 'data-bars')) >= 1;
  }, 15000);

  // the vendored UMD builds are classic scripts that publish globals; the modules use them
  assert.deepEqual(await page.evaluate(() => [typeof window.StompJs?.Client, typeof window.LightweightCharts?.createChart]),
    ['function', 'function']);
  // every module in static/js/ was fetched (and, with the board filled, evaluated)
  const loaded = await page.evaluate(() => performance.getEntriesByType('resource').map((r) => new URL(r.name).pathname));
  const modules = ['/app.js', ...readdirSync(path.join(ROOT, 'static/js')).filter((f) => f.endsWith('.js')).map((f) => `/js/${f}`)];
  for (const m of modules) assert.ok(loaded.includes(m), `${m} loaded (loaded: ${loaded.join(', ')})`);
  await page.waitForTimeout(1500); // a stats tick and a stats poll
  assert.deepEqual(seen, []);
  await ctx.close();
});

test('board shows trades for every demo market within seconds', { timeout: 30000 }, async () => {
  alice = await newPage();
  await alice.goto(gw.url);
  await eventually('connected status', async () => (await alice.getAttribute('#conn', 'data-state')) === 'connected');
  await eventually('three markets with trades on the board', async () => {
    const ids = await alice.$$eval('.board-row', (rows) => rows.map((r) => r.dataset.market));
    if (ids.length < 3) return false;
    for (const id of ids) if ((await tradeCount(alice, id)) < 1) return false;
    return ids;
  }, 10000);
  const ids = await alice.$$eval('.board-row', (rows) => rows.map((r) => r.dataset.market));
  for (const id of ['KRW-BTC', 'KRW-ETH', 'KRW-XRP']) assert.ok(ids.includes(id), `${id} on the board (${ids})`);

  // the price is a formatted number and the counter keeps moving
  const px = await alice.textContent(`.board-row[data-market="${MARKET}"] .px`);
  assert.match(px, /^[0-9][0-9,]*(\.[0-9]+)?$/, `last price looks like a number: ${px}`);
  const n1 = await tradeCount(alice, MARKET);
  await eventually('trade count grows', async () => (await tradeCount(alice, MARKET)) > n1, 5000);

  // gateway stats panel is fed by /api/stats
  await eventually('connections from /api/stats', async () => (await intText(alice.locator('#stat-conns'))) >= 1, 6000);
  await eventually('messages per second', async () => (await intText(alice.locator('#stat-rate'))) > 0, 5000);

  // keyboard: arrow keys move the selection between markets
  await alice.focus('.board-row[data-market="KRW-BTC"]');
  await alice.keyboard.press('Enter');
  assert.equal(await alice.textContent('#market-title'), 'KRW-BTC');
  await alice.keyboard.press('ArrowDown');
  assert.equal(await alice.textContent('#market-title'), 'KRW-ETH');
  await alice.keyboard.press('ArrowUp');
  assert.equal(await alice.textContent('#market-title'), 'KRW-BTC');
  assert.equal(await alice.getAttribute('.board-row[data-market="KRW-BTC"]', 'aria-pressed'), 'true');
});

// "1,234.5" / "+7,000" / "-0.033%" -> the number
const num = (s) => Number(String(s).replace(/[,+%\s]/g, ''));

test('the Markets panel lists the registry, shows the spread between exchanges, adds and removes', { timeout: 45000 }, async () => {
  const page = await newPage(DESKTOP, 'dave');
  await page.goto(`${gw.url}#${MARKET}`);
  const registry = await (await fetch(`${gw.url}api/markets`)).json();
  assert.ok(registry.length >= 2, `the demo registers markets (${JSON.stringify(registry)})`);
  // every registered (exchange, symbol) is listed under its coin
  await eventually('the registry listed', async () => {
    const shown = await page.$$eval('.reg-row', (rows) => rows.flatMap((r) =>
      [...r.querySelectorAll('.reg-ex')].map((c) => `${c.dataset.exchange}:${r.dataset.symbol}`)));
    return registry.every((m) => shown.includes(`${m.exchange}:${m.symbol}`)) && shown.length === registry.length;
  }, 10000);
  assert.ok(registry.some((m) => m.exchange === 'upbit' && m.symbol === MARKET)
    && registry.some((m) => m.exchange === 'bithumb' && m.symbol === MARKET), 'the demo has KRW-BTC on both exchanges');

  // the demo feed trades KRW-BTC on both: last prices side by side and the spread between them
  const row = `.reg-row[data-symbol="${MARKET}"]`;
  const cells = await eventually('both prices and a spread', async () => {
    const c = await page.$eval(row, (r) => ({
      upbit: r.querySelector('.sp-cell[data-exchange="upbit"] .sp-px')?.textContent,
      bithumb: r.querySelector('.sp-cell[data-exchange="bithumb"] .sp-px')?.textContent,
      abs: r.querySelector('.sp-abs')?.textContent,
      pct: r.querySelector('.sp-pct')?.textContent,
    }));
    return c.upbit !== '—' && c.bithumb !== '—' && c.abs !== '—' && c.pct ? c : false;
  }, 15000);
  const [a, b] = [num(cells.upbit), num(cells.bithumb)];
  assert.ok(a > 0 && b > 0, `prices are numbers: ${JSON.stringify(cells)}`);
  assert.equal(num(cells.abs), a - b, `absolute spread is upbit - bithumb: ${JSON.stringify(cells)}`);
  assert.match(cells.pct, /^[+-]?\d+\.\d{3}%$/);
  assert.ok(Math.abs(num(cells.pct) - ((a - b) / b) * 100) < 0.001, `spread in % of bithumb: ${JSON.stringify(cells)}`);

  // add: the panel asks for the admin token, then the market is registered (and trades)
  await page.selectOption('#reg-exchange', 'upbit');
  await page.fill('#reg-symbol', 'KRW-SOL');
  await page.click('#reg-form button[type="submit"]');
  await page.locator('#admin-dialog').waitFor({ state: 'visible', timeout: 5000 });
  await page.fill('#admin-token', ADMIN);
  await page.click('#admin-dialog button[value="ok"]');
  await page.locator('.reg-row[data-symbol="KRW-SOL"] .reg-ex[data-exchange="upbit"]').waitFor({ timeout: 10000 });
  assert.match(await page.textContent('#reg-note'), /Added KRW-SOL on upbit/);
  const after = await (await fetch(`${gw.url}api/markets`)).json();
  assert.ok(after.some((m) => m.exchange === 'upbit' && m.symbol === 'KRW-SOL'), 'the gateway has it');
  await eventually('the new market trades on the board', async () => (await tradeCount(page, 'KRW-SOL')) > 0, 10000);

  // remove: the token is kept for the tab, so no second prompt
  await page.click('.reg-row[data-symbol="KRW-SOL"] .reg-remove');
  await eventually('KRW-SOL gone from the panel', async () => (await page.locator('.reg-row[data-symbol="KRW-SOL"]').count()) === 0, 10000);
  assert.equal(await page.locator('#admin-dialog').isVisible(), false);
  assert.match(await page.textContent('#reg-note'), /Removed KRW-SOL on upbit/);
  const gone = await (await fetch(`${gw.url}api/markets`)).json();
  assert.ok(!gone.some((m) => m.symbol === 'KRW-SOL'), `the gateway dropped it: ${JSON.stringify(gone)}`);
  await page.context().close();
});

test('the price chart draws and the trade tape scrolls', { timeout: 40000 }, async () => {
  await alice.click('.seg-btn[data-interval="1"]');
  await eventually('chart series has candles', async () => Number(await alice.getAttribute('#chart', 'data-bars')) >= 3, 10000);
  const px = await eventually('chart canvas has drawn pixels', async () => {
    const p = await chartPixels(alice);
    return p.painted > 500 && p.colours > 5 ? p : false;
  }, 10000);
  assert.ok(px.painted > 500, `chart painted ${px.painted} sampled pixels in ${px.colours} colours`);
  await eventually('trade tape rows', async () => (await alice.locator('#tape tr').count()) >= 10, 5000);
  const row = await alice.locator('#tape tr').first().locator('td').allTextContents();
  assert.match(row[0], /^\d\d:\d\d:\d\d\.\d{3}$/, `tape time ${row[0]}`);
  assert.ok(['buy', 'sell'].includes(row[1].toLowerCase()), `tape side ${row[1]}`);
  // a dozen seconds of 1s candles make a readable chart for the screenshot
  await eventually('enough candles for the board screenshot', async () => Number(await alice.getAttribute('#chart', 'data-bars')) >= 12, 20000, 500);
  await alice.screenshot({ path: path.join(SHOTS, 'board.png') });
});

test('chat between two browsers: send with receipt, edit, delete', { timeout: 60000 }, async () => {
  await setName(alice, 'alice');
  bob = await newPage(DESKTOP, 'bob');
  await bob.goto(`${gw.url}#${MARKET}`);
  await eventually('bob connected as bob', async () => (await bob.textContent('#me-name')) === 'bob'
    && (await bob.getAttribute('#conn', 'data-state')) === 'connected');
  assert.equal(await bob.textContent('#market-title'), MARKET);
  await alice.click('.seg-btn[data-interval="1"]');

  // the gateway is fresh for this run, so plain texts are unique enough
  const hello = `gm everyone, BTC looks busy`;
  await sendChat(alice, hello);
  // shown at once as pending, then confirmed by the RECEIPT
  await chatMsg(alice, hello).waitFor({ timeout: 5000 });
  await eventually('receipt confirms alice\'s message', async () => (await chatMsg(alice, hello).getAttribute('data-status')) === 'sent', 10000);
  await eventually('alice\'s message carries the gateway id', async () => (await chatMsg(alice, hello).getAttribute('data-id')), 10000);

  // bob sees it, from alice, without edit/delete controls
  const atBob = chatMsg(bob, hello);
  await atBob.waitFor({ timeout: 10000 });
  assert.equal(await atBob.locator('.msg-user').textContent(), 'alice');
  assert.equal(await atBob.locator('.msg-edit-btn').count(), 0, 'bob cannot edit alice\'s message');

  const reply = `morning alice! watching the 95M level`;
  await sendChat(bob, reply);
  await chatMsg(alice, reply).waitFor({ timeout: 10000 });
  await eventually('bob\'s reply confirmed', async () => (await chatMsg(bob, reply).getAttribute('data-status')) === 'sent', 10000);
  assert.equal(await chatMsg(alice, reply).locator('.msg-edit-btn').count(), 0, 'alice cannot edit bob\'s message');

  // alice edits her message: both browsers show the new text, marked edited
  const edited = `gm everyone, BTC looks very busy today`;
  await chatMsg(alice, hello).locator('.msg-edit-btn').click();
  const box = alice.locator('#chat-log .msg-edit input');
  await box.fill(edited);
  await box.press('Enter');
  await chatMsg(bob, edited).waitFor({ timeout: 10000 });
  await chatMsg(alice, edited).waitFor({ timeout: 10000 });
  assert.match(await chatMsg(bob, edited).locator('.msg-meta').textContent(), /edited/);
  assert.equal(await chatMsg(bob, hello).count(), 0, 'old text gone at bob');

  // someone else's chat.delete for alice's message is refused by the gateway (ERROR forbidden)
  const helloId = await chatMsg(alice, edited).getAttribute('data-id');
  const refusal = await bob.evaluate(({ id, market }) => new Promise((resolve, reject) => {
    const c = new window.StompJs.Client({ brokerURL: new URL('ws', location.href).toString().replace(/^http/, 'ws'), connectHeaders: { login: 'mallory' }, reconnectDelay: 0 });
    c.onConnect = () => {
      c.watchForReceipt('del-1', () => { c.deactivate(); reject(new Error('the gateway accepted a foreign delete')); });
      c.publish({ destination: `/app/market/${market}/chat`, headers: { 'event-type': 'chat.delete', receipt: 'del-1' }, body: JSON.stringify({ id }) });
    };
    c.onStompError = (f) => { c.deactivate(); resolve(f.headers.message); };
    setTimeout(() => reject(new Error('no answer to the foreign delete')), 8000);
    c.activate();
  }), { id: helloId, market: MARKET });
  assert.equal(refusal, 'forbidden');
  await new Promise((r) => setTimeout(r, 500));
  for (const p of [alice, bob]) {
    assert.equal(await chatMsg(p, edited).count(), 1, 'a delete from another user does not remove alice\'s message');
  }

  // alice sends a second message and deletes it: both browsers show it as deleted
  const oops = `oops, wrong market`;
  await sendChat(alice, oops);
  await eventually('second message confirmed', async () => (await chatMsg(alice, oops).getAttribute('data-status')) === 'sent', 10000);
  await chatMsg(bob, oops).waitFor({ timeout: 10000 });
  const oopsId = await chatMsg(alice, oops).getAttribute('data-id');
  assert.ok(oopsId, 'deleted message had an id');
  await chatMsg(alice, oops).locator('.msg-delete-btn').click();
  for (const p of [alice, bob]) {
    await eventually('message shown as deleted', async () => {
      const m = p.locator(`#chat-log .msg[data-id="${oopsId}"]`);
      return (await m.getAttribute('class')).includes('deleted') && (await chatMsg(p, oops).count()) === 0;
    }, 10000);
  }

  await sendChat(bob, `nice, thanks for the heads-up`);
  await eventually('last reply at alice', async () => (await chatMsg(alice, `heads-up`).count()) === 1, 10000);
  await alice.locator('#chat-input').blur();
  await alice.screenshot({ path: path.join(SHOTS, 'market-chat.png') });
});

test('phone width layout', { timeout: 30000 }, async () => {
  const phone = await newPage(PHONE, 'carol');
  await phone.goto(`${gw.url}#${MARKET}`);
  await eventually('phone board has trades', async () => (await tradeCount(phone, MARKET)) > 0, 10000);
  await eventually('phone chart has candles', async () => Number(await phone.getAttribute('#chart', 'data-bars')) >= 1, 10000);
  const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 1, `no horizontal scrolling at phone width (overflow ${overflow}px)`);
  await phone.waitForTimeout(1500);
  await phone.screenshot({ path: path.join(SHOTS, 'phone.png'), fullPage: true });
  await phone.context().close();
});

test('a fresh page shows recent trades, candles and chat from history at once', { timeout: 90000 }, async (t) => {
  // the slow gateway makes 2 trades a second per market (each trade picks a market at random);
  // after 40 s it keeps ~80 per market, far more than a page could receive live in a moment
  const RATE = 2;
  await new Promise((r) => setTimeout(r, Math.max(0, slow.startedAt + 40000 - Date.now())));
  const dest = `/topic/market/${MARKET}`;

  // dora says something on the market and leaves
  const dora = await newPage(DESKTOP, 'dora');
  await dora.goto(`${slow.url}#${MARKET}`);
  await eventually('dora connected', async () => (await dora.getAttribute('#conn', 'data-state')) === 'connected');
  const said = 'anyone watching the open?';
  await sendChat(dora, said);
  await eventually('dora\'s message confirmed', async () => (await chatMsg(dora, said).getAttribute('data-status')) === 'sent', 10000);
  await dora.context().close();

  const erin = await newPage(DESKTOP, 'erin');
  const workers = [];
  erin.on('worker', (w) => workers.push(w.url()));
  const t0 = Date.now();
  await erin.goto(`${slow.url}#${MARKET}`);
  await eventually('tape filled from history', async () => (await erin.locator('#tape tr').count()) >= 45, 5000, 100);
  await erin.click('.seg-btn[data-interval="1"]');
  const bars = Number(await erin.getAttribute('#chart', 'data-bars'));
  const rows = await erin.locator('#tape tr').count();
  const elapsed = (Date.now() - t0) / 1000;
  // what could have come live since the page was opened, generously
  const liveAtMost = Math.ceil(RATE * elapsed * 2) + 4;
  assert.ok(rows > liveAtMost, `${rows} tape rows ${elapsed.toFixed(1)} s after loading, more than ${liveAtMost} live trades could fill`);
  assert.ok(bars >= 20 && bars > liveAtMost, `${bars} one-second candles ${elapsed.toFixed(1)} s after loading (live could draw at most ${liveAtMost})`);
  t.diagnostic(`${rows} tape rows, ${bars} one-second candles ${elapsed.toFixed(1)} s after loading (live at most ${liveAtMost})`);
  const px = await chartPixels(erin);
  assert.ok(px.painted > 500 && px.colours > 5, `chart painted (${px.painted} pixels in ${px.colours} colours)`);

  // they came as replayed frames of the market's own destination, asked with x-history
  const subs = (await framesSince(erin, 0, 'sent')).filter((f) => f.command === 'SUBSCRIBE');
  const catchUp = subs.find((f) => f.headers.destination === dest);
  assert.ok(catchUp && Number(catchUp.headers['x-history']) > 0, `SUBSCRIBE ${dest} with x-history (${JSON.stringify(subs.map((f) => f.headers))})`);
  assert.ok(subs.some((f) => f.headers.destination === '/topic/market/*'), 'the board subscribes to /topic/market/*');
  const replayed = (await framesSince(erin, 0)).filter((f) => f.command === 'MESSAGE' && f.headers['x-replay'] === 'true' && f.headers.destination === dest);
  assert.ok(replayed.length >= rows - liveAtMost, `${replayed.length} replayed frames for ${rows} rows`);

  // dora's message is there, from dora, although erin was not connected when it was sent
  await chatMsg(erin, said).waitFor({ timeout: 2000 });
  assert.equal(await chatMsg(erin, said).locator('.msg-user').textContent(), 'dora');

  // the tape is in the gateway's order, each trade once
  const ids = await tapeIds(erin);
  assert.equal(new Set(ids).size, ids.length, 'no trade twice in the tape');
  const offsets = ids.map((id) => Number(id.split('-').pop()));
  assert.deepEqual(offsets, [...offsets].sort((a, b) => a - b), 'tape oldest to newest in log order');
  // the other markets got their history when the board first saw them live: the live trade
  // that revealed a market is also the newest of its history, and shows once
  for (const id of ['KRW-ETH', 'KRW-XRP']) {
    const n = await tradeCount(erin, id);
    assert.ok(n > liveAtMost, `${id} shows ${n} trades at once`);
    await erin.click(`.board-row[data-market="${id}"]`);
    const other = await tapeIds(erin);
    assert.ok(other.length >= n, `${id} tape has its ${n} trades (${other.length} rows)`);
    assert.equal(new Set(other).size, other.length, `no ${id} trade twice in the tape`);
  }
  // heart-beats are timed by a Worker, so a hidden tab keeps its connection
  assert.ok(workers.some((u) => u.startsWith('blob:')), `a heart-beat Worker runs (workers: ${workers.join(', ') || 'none'})`);
  await erin.context().close();
});

test('after its connection drops the page resumes after its cursor: no gap, no duplicate', { timeout: 60000 }, async (t) => {
  const dest = `/topic/market/${MARKET}`;
  await alice.click(`.board-row[data-market="${MARKET}"]`);
  await eventually('alice connected', async () => (await alice.getAttribute('#conn', 'data-state')) === 'connected');
  const cut = Date.now();
  // the socket goes away under the page, as when its replica dies; the gateway keeps running
  await alice.evaluate(() => window.__stomp.sockets.at(-1).close());
  await eventually('page notices', async () => (await alice.getAttribute('#conn', 'data-state')) !== 'connected', 5000, 50);
  await eventually('page reconnected', async () => (await alice.getAttribute('#conn', 'data-state')) === 'connected', 15000);
  const resume = await eventually('SUBSCRIBE with x-resume-after', async () => (await framesSince(alice, cut, 'sent'))
    .find((f) => f.command === 'SUBSCRIBE' && f.headers.destination === dest && f.headers['x-resume-after']), 5000);
  assert.match(resume.headers['x-resume-after'], /^[a-z]+-\d+-\d+(,[a-z]+-\d+-\d+)*$/, 'the cursor names topic-partition-offset positions');
  const receipt = await eventually('its RECEIPT', async () => (await framesSince(alice, cut))
    .find((f) => f.command === 'RECEIPT' && f.headers['receipt-id'] === resume.headers.receipt), 5000);
  assert.equal(receipt.headers['x-recovered'], 'true', 'the gateway had everything missed');
  const replayed = (await framesSince(alice, cut)).filter((f) => f.command === 'MESSAGE' && f.headers.destination === dest && f.headers['x-replay'] === 'true');
  assert.ok(replayed.length > 0, 'trades sent while the page was away were replayed');

  // compare with what the gateway keeps of the market: every trade of it in the tape, once, in order
  const kept = await gatewayHistory(alice, dest);
  await alice.waitForTimeout(600);
  const ids = await tapeIds(alice);
  assert.equal(new Set(ids).size, ids.length, 'no trade twice in the tape');
  const shown = new Set(ids);
  const missing = kept.filter((id) => !shown.has(id));
  assert.deepEqual(missing, [], `all ${kept.length} trades the gateway kept are in the tape`);
  t.diagnostic(`${replayed.length} messages replayed after the reconnect; ${kept.length} kept trades all in the ${ids.length}-row tape`);
  const inTape = ids.filter((id) => kept.includes(id));
  assert.deepEqual(inTape, kept, 'in the same order');
  for (const f of replayed) if (f.headers['event-type'] === 'trade') assert.ok(shown.has(f.headers['message-id']), `replayed ${f.headers['message-id']} shown`);
  assert.equal(await alice.locator(`.board-row[data-market="${MARKET}"] .gap`).isVisible(), false, 'no gap shown');
});

test('a resume the gateway can no longer fully serve shows a gap', { timeout: 60000 }, async () => {
  // a gateway that keeps only the newest message per destination, at 20 trades a second per
  // market: the half second before the page retries brings ~10, more than it keeps
  const small = await new Gateway(0, ['--demo-rate', '20', '--history-size', '1']).start();
  const page = await newPage();
  try {
    await page.goto(`${small.url}#${MARKET}`);
    await eventually('connected with trades', async () => (await page.getAttribute('#conn', 'data-state')) === 'connected'
      && (await page.locator('#tape tr').count()) > 0);
    assert.equal(await page.locator(`.board-row[data-market="${MARKET}"] .gap`).isVisible(), false, 'no gap before');
    const cut = Date.now();
    await page.evaluate(() => window.__stomp.sockets.at(-1).close());
    await eventually('page reconnected', async () => (await page.getAttribute('#conn', 'data-state')) === 'connected', 15000);
    const receipt = await eventually('a RECEIPT with x-recovered:false', async () => (await framesSince(page, cut))
      .find((f) => f.command === 'RECEIPT' && f.headers['x-recovered'] === 'false'), 5000);
    assert.ok(receipt, 'the gateway said part was gone');
    await eventually('the gap is shown', async () => page.locator(`.board-row[data-market="${MARKET}"] .gap`).isVisible(), 5000);
    assert.equal(await page.textContent('#tape-note'), `${MARKET} · gap`);
    assert.match(await page.getAttribute('#tape-note', 'title'), /no longer had everything/);
    const n = await tradeCount(page, MARKET);
    await eventually('trades flow on', async () => (await tradeCount(page, MARKET)) > n, 5000);
    const ids = await tapeIds(page);
    assert.equal(new Set(ids).size, ids.length, 'no trade twice in the tape');
  } finally {
    await page.context().close();
    await small.stop();
  }
});

test('reconnects and resubscribes by itself after the gateway restarts', { timeout: 60000 }, async () => {
  const port = gw.port;
  await gw.stop();
  await eventually('page notices the gateway is gone', async () => ['reconnecting', 'connecting'].includes(await alice.getAttribute('#conn', 'data-state')), 15000);
  const before = await tradeCount(alice, MARKET);

  gw = await startGatewayOnPort(port);
  assert.equal(gw.port, port, 'restarted on the same port');
  for (const p of [alice, bob]) {
    await eventually('page reconnected', async () => (await p.getAttribute('#conn', 'data-state')) === 'connected', 20000);
  }
  await eventually('trades flow again after reconnect', async () => (await tradeCount(alice, MARKET)) > before + 5, 10000);
  // it asked to resume after its cursor; the new gateway's in-process log started over, so the
  // page cannot know what it missed and says so
  const resumed = (await framesSince(alice, 0, 'sent')).filter((f) => f.command === 'SUBSCRIBE' && f.headers['x-resume-after']);
  assert.ok(resumed.length >= 3, `resumed every market (${resumed.length} SUBSCRIBE with x-resume-after)`);
  await eventually('a gap is shown for the market', async () => alice.locator(`.board-row[data-market="${MARKET}"] .gap`).isVisible(), 5000);
  assert.equal(await alice.textContent('#tape-note'), `${MARKET} · gap`);
  const ids = await tapeIds(alice);
  assert.equal(new Set(ids).size, ids.length, 'no trade twice in the tape');
  await eventually('bob receives trades again', async () => {
    const a = await tradeCount(bob, MARKET);
    await new Promise((r) => setTimeout(r, 500));
    return (await tradeCount(bob, MARKET)) > a;
  }, 10000);
  // chat still works on the new connection
  const again = 'back online, trades flowing again';
  await sendChat(alice, again);
  await chatMsg(bob, again).waitFor({ timeout: 10000 });
});

test('no page errors and nothing loaded from outside the gateway', () => {
  assert.deepEqual(problems, []);
});
