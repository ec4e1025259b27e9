// Unit tests of the dashboard's DOM-free modules (static/js/format.js, candles.js, cursor.js) and of the
// module layout: every relative import resolves, and no module imports one that imports it
// back (docs/dashboard.md, "Code layout"). No gateway, no browser.
//
// Node reads a .js file as CommonJS unless a package.json says "type": "module", and the
// gateway should not serve one from static/, so the modules are copied beside one first.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const STATIC = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../static');
let dir;
let fmt;
let candles;
let cursor;

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'stompgate-dashboard-'));
  cpSync(path.join(STATIC, 'js'), dir, { recursive: true });
  writeFileSync(path.join(dir, 'package.json'), '{ "type": "module" }\n');
  fmt = await import(pathToFileURL(path.join(dir, 'format.js')));
  candles = await import(pathToFileURL(path.join(dir, 'candles.js')));
  cursor = await import(pathToFileURL(path.join(dir, 'cursor.js')));
});

after(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

// ------------------------------------------------------------------ format.js

test('decimalsOf counts the decimals written in a price, at most 8', () => {
  assert.equal(fmt.decimalsOf('95000'), 0);
  assert.equal(fmt.decimalsOf('95000.5'), 1);
  assert.equal(fmt.decimalsOf('0.00012300'), 8);
  assert.equal(fmt.decimalsOf('1.1234567891'), 8);
});

test('fmtPrice uses the market precision with thousands separators; no price is a dash', () => {
  assert.equal(fmt.fmtPrice({ decimals: 0 }, 95123456), '95,123,456');
  assert.equal(fmt.fmtPrice({ decimals: 2 }, 1234.5), '1,234.50');
  assert.equal(fmt.fmtPrice({ decimals: 3 }, 0.1), '0.100');
  assert.equal(fmt.fmtPrice({ decimals: 2 }, null), '—');
  assert.equal(fmt.fmtPrice({ decimals: 2 }, NaN), '—');
  assert.equal(fmt.fmtPrice({ decimals: 2 }, Infinity), '—');
});

test('fmtChange is the percent change since the first trade, with its colour class', () => {
  assert.deepEqual(fmt.fmtChange({ first: 100, last: 101.5 }), { text: '+1.50%', cls: 'up' });
  assert.deepEqual(fmt.fmtChange({ first: 200, last: 150 }), { text: '-25.00%', cls: 'down' });
  assert.deepEqual(fmt.fmtChange({ first: 42, last: 42 }), { text: '0.00%', cls: 'flat' });
  assert.deepEqual(fmt.fmtChange({ first: null, last: null }), { text: '—', cls: 'flat' });
  assert.deepEqual(fmt.fmtChange({ first: 0, last: 5 }), { text: '—', cls: 'flat' });
});

test('spread is the first price over the second, absolute and in % of the second', () => {
  assert.deepEqual(fmt.spread(95010000, 95000000), { abs: 10000, pct: (10000 / 95000000) * 100 });
  const s = fmt.spread(3063, 3064);
  assert.equal(s.abs, -1);
  assert.equal(s.pct.toFixed(3), '-0.033');
  assert.deepEqual(fmt.spread(5, 5), { abs: 0, pct: 0 });
  assert.equal(fmt.spread(null, 5), null);
  assert.equal(fmt.spread(5, undefined), null);
  assert.equal(fmt.spread(5, 0), null);
  assert.equal(fmt.spread(NaN, 5), null);
});

test('fmtQty drops trailing zeros of a decimal size only', () => {
  assert.equal(fmt.fmtQty('0.50000'), '0.5');
  assert.equal(fmt.fmtQty('12.000'), '12');
  assert.equal(fmt.fmtQty('100'), '100');
  assert.equal(fmt.fmtQty(1.25), '1.25');
  assert.equal(fmt.fmtQty(undefined), '');
});

test('fmtTime shows local wall-clock time, optionally with milliseconds', () => {
  const ms = new Date(2026, 0, 2, 3, 4, 5, 6).getTime();
  assert.equal(fmt.fmtTime(ms), '03:04:05');
  assert.equal(fmt.fmtTime(ms, true), '03:04:05.006');
  assert.equal(fmt.fmtTime(new Date(2026, 0, 2, 23, 59, 59, 999).getTime(), true), '23:59:59.999');
});

test('fmtInt groups thousands', () => {
  assert.equal(fmt.fmtInt(0), '0');
  assert.equal(fmt.fmtInt(1234567), '1,234,567');
});

// ------------------------------------------------------------------ candles.js

const bar = (time, open, high, low, close, volume) => ({ time, open, high, low, close, volume });

test('candleTime is the open of the interval holding the second', () => {
  assert.equal(candles.candleTime(1000, 1), 1000);
  assert.equal(candles.candleTime(1004, 5), 1000);
  assert.equal(candles.candleTime(1005, 5), 1005);
  assert.equal(candles.candleTime(119, 60), 60);
});

test('foldTrade: the first trade opens a candle', () => {
  const bars = [];
  const b = candles.foldTrade(bars, { time: 60, price: 10, qty: 2 });
  assert.deepEqual(bars, [bar(60, 10, 10, 10, 10, 2)]);
  assert.equal(b, bars[0], 'returns the candle to draw');
});

test('foldTrade: a trade in the last candle widens it and moves its close', () => {
  const bars = [bar(60, 10, 10, 10, 10, 2)];
  candles.foldTrade(bars, { time: 60, price: 12, qty: 1 });
  const b = candles.foldTrade(bars, { time: 60, price: 9, qty: 0.5 });
  assert.deepEqual(bars, [bar(60, 10, 12, 9, 9, 3.5)]);
  assert.equal(b, bars[0]);
});

test('foldTrade: a later trade starts a new candle at its own price', () => {
  const bars = [bar(60, 10, 12, 9, 11, 3)];
  const b = candles.foldTrade(bars, { time: 120, price: 13, qty: 1 });
  assert.equal(bars.length, 2);
  assert.deepEqual(bars[1], bar(120, 13, 13, 13, 13, 1));
  assert.equal(b, bars[1]);
  assert.deepEqual(bars[0], bar(60, 10, 12, 9, 11, 3), 'the previous candle is untouched');
});

test('foldTrade: a late trade widens its older candle but keeps its close, and draws nothing', () => {
  const bars = [bar(0, 10, 10, 10, 10, 1), bar(5, 11, 11, 11, 11, 1), bar(10, 12, 12, 12, 12, 1)];
  const b = candles.foldTrade(bars, { time: 5, price: 20, qty: 2 });
  assert.equal(b, null);
  assert.deepEqual(bars[1], bar(5, 11, 20, 11, 11, 3));
  assert.deepEqual(bars[0], bar(0, 10, 10, 10, 10, 1));
  assert.deepEqual(bars[2], bar(10, 12, 12, 12, 12, 1));
});

test('foldTrade: a late trade for a missing or long-gone candle is skipped', () => {
  const bars = [];
  for (let i = 0; i < 20; i++) bars.push(bar(i * 2, 1, 1, 1, 1, 1));
  const copy = structuredClone(bars);
  assert.equal(candles.foldTrade(bars, { time: 35, price: 9, qty: 1 }), null, 'no candle at that time');
  assert.equal(candles.foldTrade(bars, { time: 2, price: 9, qty: 1 }), null, 'older than the last ten candles');
  assert.deepEqual(bars, copy);
});

test('foldTrade: the series keeps at most maxBars candles, dropping the oldest', () => {
  const bars = [];
  for (let t = 0; t < 5; t++) candles.foldTrade(bars, { time: t, price: t, qty: 1 }, 3);
  assert.deepEqual(bars.map((b) => b.time), [2, 3, 4]);
  const full = [];
  for (let t = 0; t < 1600; t++) candles.foldTrade(full, { time: t, price: 1, qty: 1 });
  assert.equal(full.length, 1500, 'default cap is MAX_BARS');
  assert.equal(full[0].time, 100);
});

// ------------------------------------------------------------------ cursor.js

const msg = (id, xc) => ({ 'message-id': id, ...(xc ? { 'x-cursor': xc } : {}) });

test('positionOf reads topic-partition-offset, dashes in the topic included', () => {
  assert.deepEqual(cursor.positionOf('trades-0-42'), { key: 'trades-0', offset: 42 });
  assert.deepEqual(cursor.positionOf('market-trades-11-7'), { key: 'market-trades-11', offset: 7 });
  assert.equal(cursor.positionOf('abc'), null);
  assert.equal(cursor.positionOf('trades-x-1'), null);
  assert.equal(cursor.positionOf(undefined), null);
});

test('a feed starts with no cursor, then follows each message\'s x-cursor', () => {
  const f = cursor.createFeed();
  assert.equal(cursor.cursorOf(f), '');
  assert.equal(cursor.admit(f, msg('trades-0-5', 'trades-0-5')), 'new');
  assert.equal(cursor.cursorOf(f), 'trades-0-5');
  assert.equal(cursor.admit(f, msg('chat-1-2', 'trades-0-5,chat-1-2')), 'new');
  assert.equal(cursor.admit(f, msg('trades-0-9', 'trades-0-9,chat-1-2')), 'new');
  assert.equal(cursor.cursorOf(f), 'trades-0-9,chat-1-2');
  // without x-cursor the message-id is the position of its one partition
  assert.equal(cursor.admit(f, msg('chat-1-4')), 'new');
  assert.equal(cursor.cursorOf(f), 'trades-0-9,chat-1-4');
});

test('merging a catch-up with held live messages drops what is at or before the cursor', () => {
  const f = cursor.createFeed();
  // replayed 1..3, then the held live 3 and 4: 3 is the overlap
  const seen = ['trades-0-1', 'trades-0-2', 'trades-0-3', 'trades-0-3', 'trades-0-4']
    .filter((id) => cursor.admit(f, msg(id, id), true) !== 'duplicate');
  assert.deepEqual(seen, ['trades-0-1', 'trades-0-2', 'trades-0-3', 'trades-0-4']);
  // an older position not seen on this page (it was never received) is still the overlap
  assert.equal(cursor.admit(f, msg('trades-0-0', 'trades-0-0'), true), 'duplicate');
});

test('outside a merge a repeated id is a duplicate, an older unseen one means the log started over', () => {
  const f = cursor.createFeed();
  cursor.admit(f, msg('trades-0-100', 'trades-0-100,chat-0-30'));
  assert.equal(cursor.admit(f, msg('trades-0-100', 'trades-0-100,chat-0-30')), 'duplicate');
  assert.equal(cursor.admit(f, msg('trades-0-3', 'trades-0-3')), 'restart');
  // the old positions are forgotten: the cursor is the new log's
  assert.equal(cursor.cursorOf(f), 'trades-0-3');
  assert.equal(cursor.admit(f, msg('trades-0-4', 'trades-0-4')), 'new');
});

test('a message without a position is kept once by its id', () => {
  const f = cursor.createFeed();
  assert.equal(cursor.admit(f, msg('local-abc')), 'new');
  assert.equal(cursor.admit(f, msg('local-abc')), 'duplicate');
  assert.equal(cursor.cursorOf(f), '');
});

test('a feed remembers only the most recent message ids', () => {
  const f = cursor.createFeed();
  for (let i = 0; i < cursor.RECENT_IDS + 50; i++) cursor.admit(f, msg(`t-0-${i}`));
  assert.equal(f.recent.size, cursor.RECENT_IDS);
  assert.ok(!f.recent.has('t-0-0') && f.recent.has(`t-0-${cursor.RECENT_IDS + 49}`));
});

// ------------------------------------------------------------------ module layout

function moduleGraph() {
  const files = ['app.js', ...readdirSync(path.join(STATIC, 'js')).filter((f) => f.endsWith('.js')).map((f) => `js/${f}`)];
  const graph = new Map();
  for (const f of files) {
    const src = readFileSync(path.join(STATIC, f), 'utf8');
    const deps = [...src.matchAll(/^\s*(?:import|export)\b[^'"]*?\bfrom\s+['"](\.[^'"]+)['"]/gm)]
      .map((m) => path.posix.normalize(path.posix.join(path.posix.dirname(f), m[1])));
    graph.set(f, deps);
  }
  return graph;
}

test('every relative import of the dashboard names a file in static/', () => {
  for (const [f, deps] of moduleGraph()) {
    for (const d of deps) assert.ok(existsSync(path.join(STATIC, d)), `${f} imports ${d}, which does not exist`);
  }
});

// The first import circle in `graph` (file -> imported files) as a list of files, or null.
function findCircle(graph) {
  const done = new Set();
  const visit = (f, trail) => {
    if (trail.includes(f)) return [...trail.slice(trail.indexOf(f)), f];
    if (done.has(f)) return null;
    for (const d of graph.get(f) || []) {
      const c = visit(d, [...trail, f]);
      if (c) return c;
    }
    done.add(f);
    return null;
  };
  for (const f of graph.keys()) {
    const c = visit(f, []);
    if (c) return c;
  }
  return null;
}

test('the dashboard modules import each other without a circle', () => {
  // the checker finds a circle when there is one
  const bad = new Map([['a', ['b']], ['b', ['c']], ['c', ['a']], ['d', ['a']]]);
  assert.deepEqual(findCircle(bad), ['a', 'b', 'c', 'a']);
  const graph = moduleGraph();
  // the parser sees single-line and multi-line imports
  assert.ok(graph.get('js/market.js').includes('js/board.js'), `market.js imports board.js (${graph.get('js/market.js')})`);
  assert.ok(graph.get('app.js').includes('js/connection.js'), `app.js imports connection.js (${graph.get('app.js')})`);
  const circle = findCircle(graph);
  assert.equal(circle, null, `import circle: ${circle && circle.join(' -> ')}`);
});

test('the Code layout table in docs/dashboard.md lists each module with its real imports', () => {
  const doc = readFileSync(path.join(STATIC, '../docs/dashboard.md'), 'utf8');
  const section = doc.slice(doc.indexOf('## Code layout'));
  const rows = new Map();
  for (const m of section.matchAll(/^\| `(?:static\/)?((?:js\/)?[a-z]+\.js)` \|[^|]*\| ([^|]*) \|$/gm)) {
    const deps = m[2].trim() === 'nothing' ? [] : m[2].split(',').map((d) => `js/${d.trim()}.js`);
    rows.set(m[1], deps.sort());
  }
  const graph = moduleGraph();
  assert.deepEqual([...rows.keys()].sort(), [...graph.keys()].sort(), 'one row per module');
  for (const [f, deps] of graph) assert.deepEqual(rows.get(f), [...new Set(deps)].sort(), `imports of ${f}`);
});
