// stompgate dashboard: a market board, a live chart, a trade tape and a per-market chat,
// all fed by one STOMP-over-WebSocket subscription to /topic/market/*.
// Plain script, no build step; @stomp/stompjs and lightweight-charts are vendored UMD builds.
(() => {
  'use strict';

  const { Client, ReconnectionTimeMode } = window.StompJs;
  const LWC = window.LightweightCharts;

  const INTERVALS = [1, 5, 15, 60];      // candle sizes in seconds
  const MAX_BARS = 1500;                 // per market and interval
  const MAX_TAPE = 150;                  // rows kept in the trade tape
  const MAX_TAPE_STORE = 150;            // trades kept per market for the tape
  const MAX_CHAT = 300;                  // chat messages kept per market
  const RECONNECT_BASE_MS = 500;         // first retry; doubles up to the cap
  const RECONNECT_MAX_MS = 10000;
  const RECEIPT_TIMEOUT_MS = 10000;
  const STATS_POLL_MS = 2000;
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
  const statsUrl = new URL('api/stats', window.location.href).toString();

  const $ = (id) => document.getElementById(id);
  const el = {
    conn: $('conn'), connText: $('conn-text'), connLive: $('conn-live'),
    nameForm: $('name-form'), nameInput: $('name-input'), meName: $('me-name'),
    board: $('board'), boardEmpty: $('board-empty'),
    statRate: $('stat-rate'), statLatency: $('stat-latency'), statConns: $('stat-conns'),
    statTotal: $('stat-total'), statsBus: $('stats-bus'),
    marketPanel: $('market-panel'), title: $('market-title'), exchange: $('market-exchange'),
    price: $('market-price'), change: $('market-change'), high: $('market-high'),
    low: $('market-low'), count: $('market-count'),
    chart: $('chart'), tape: $('tape'), tapeNote: $('tape-note'),
    chatLog: $('chat-log'), chatForm: $('chat-form'), chatInput: $('chat-input'),
    chatSend: $('chat-send'), chatNote: $('chat-note'),
  };

  // ---------------------------------------------------------------- state

  const state = {
    markets: new Map(),        // id -> market record
    selected: null,            // market id
    interval: 5,
    kind: 'candles',
    me: null,                  // user-name from the CONNECTED frame
    connected: false,
    everConnected: false,
    attempt: 0,                // reconnect attempts since the last successful connect
    retryAt: 0,                // when the next attempt is due (ms since epoch)
    chat: new Map(),           // market id -> { list: [], byId: Map }
    received: 0,
  };
  let seq = 0;

  function market(id) {
    let m = state.markets.get(id);
    if (!m) {
      m = {
        id, exchange: '', exchanges: new Set(), first: null, last: null, prev: null, high: -Infinity, low: Infinity,
        count: 0, decimals: 0, lastPriceStr: null, bars: {}, trades: [], dirty: true,
        dir: 0, row: null,
      };
      for (const iv of INTERVALS) m.bars[iv] = [];
      state.markets.set(id, m);
      addBoardRow(m);
    }
    return m;
  }

  function chatOf(id) {
    let c = state.chat.get(id);
    if (!c) { c = { list: [], byId: new Map() }; state.chat.set(id, c); }
    return c;
  }

  // ---------------------------------------------------------------- formatting

  const fmtCache = new Map();
  function numFmt(decimals) {
    let f = fmtCache.get(decimals);
    if (!f) {
      f = new Intl.NumberFormat('en-US', { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
      fmtCache.set(decimals, f);
    }
    return f;
  }
  function decimalsOf(s) {
    const i = s.indexOf('.');
    return i < 0 ? 0 : Math.min(8, s.length - i - 1);
  }
  const fmtPrice = (m, v) => (v == null || !isFinite(v) ? '—' : numFmt(m.decimals).format(v));
  function fmtChange(m) {
    if (m.first == null || m.last == null || m.first === 0) return { text: '—', cls: 'flat' };
    const pct = ((m.last - m.first) / m.first) * 100;
    const cls = pct > 0 ? 'up' : pct < 0 ? 'down' : 'flat';
    const sign = pct > 0 ? '+' : '';
    return { text: `${sign}${pct.toFixed(2)}%`, cls };
  }
  function fmtQty(s) {
    if (typeof s !== 'string') s = String(s ?? '');
    return s.includes('.') ? s.replace(/0+$/, '').replace(/\.$/, '') : s;
  }
  const pad = (n, w = 2) => String(n).padStart(w, '0');
  function fmtTime(ms, withMs) {
    const d = new Date(ms);
    const t = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    return withMs ? `${t}.${pad(d.getMilliseconds(), 3)}` : t;
  }
  const fmtInt = (n) => numFmt(0).format(n);

  function h(tag, attrs, ...children) {
    const e = document.createElement(tag);
    if (attrs) {
      for (const [k, v] of Object.entries(attrs)) {
        if (v == null || v === false) continue;
        if (k === 'class') e.className = v;
        else if (k === 'text') e.textContent = v;
        else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
        else e.setAttribute(k, v === true ? '' : v);
      }
    }
    for (const c of children) if (c != null) e.append(c);
    return e;
  }

  // ---------------------------------------------------------------- render scheduling
  // rAF for smoothness, with a timer fallback so updates still land when frames are throttled.

  let flushQueued = false;
  function schedule() {
    if (flushQueued) return;
    flushQueued = true;
    const run = () => { if (flushQueued) { flushQueued = false; flush(); } };
    requestAnimationFrame(run);
    setTimeout(run, 250);
  }

  const newTapeTrades = [];
  function flush() {
    for (const m of state.markets.values()) if (m.dirty) { renderBoardRow(m); m.dirty = false; }
    renderMarketHead();
    if (newTapeTrades.length) {
      const frag = document.createDocumentFragment();
      for (let i = newTapeTrades.length - 1; i >= 0; i--) frag.append(tapeRow(newTapeTrades[i]));
      newTapeTrades.length = 0;
      el.tape.prepend(frag);
      while (el.tape.childElementCount > MAX_TAPE) el.tape.lastElementChild.remove();
    }
  }

  // ---------------------------------------------------------------- market board

  function addBoardRow(m) {
    el.boardEmpty.hidden = true;
    const btn = h('button', {
      type: 'button', class: 'board-row', 'data-market': m.id, 'aria-pressed': String(state.selected === m.id),
      onclick: () => select(m.id, true),
    },
      h('span', { class: 'sym' }, h('b', { text: m.id }), h('small', { class: 'ex', text: '' })),
      h('span', { class: 'px num', text: '—' }),
      h('span', { class: 'chg num flat', text: '—' }),
      h('span', { class: 'cnt num', text: '0' }),
    );
    const li = h('li', null, btn);
    m.row = {
      li, btn, ex: btn.querySelector('.ex'), px: btn.querySelector('.px'),
      chg: btn.querySelector('.chg'), cnt: btn.querySelector('.cnt'),
    };
    // keep the board sorted by market id
    const after = [...el.board.querySelectorAll('.board-row')].find((b) => b.dataset.market > m.id);
    if (after) el.board.insertBefore(li, after.parentElement); else el.board.append(li);
  }

  const reduceMotion = window.matchMedia && window.matchMedia('(prefers-reduced-motion: reduce)').matches;
  function flash(node, dir) {
    if (reduceMotion || !node.animate) return;
    const color = dir > 0 ? 'rgba(56,211,159,0.30)' : dir < 0 ? 'rgba(255,107,107,0.30)' : 'rgba(151,166,184,0.20)';
    node.animate([{ backgroundColor: color }, { backgroundColor: 'rgba(0,0,0,0)' }], { duration: 450, easing: 'ease-out' });
  }

  function renderBoardRow(m) {
    const r = m.row;
    r.ex.textContent = m.exchange;
    r.px.textContent = fmtPrice(m, m.last);
    r.px.className = `px num ${m.dir > 0 ? 'up' : m.dir < 0 ? 'down' : ''}`;
    const c = fmtChange(m);
    r.chg.textContent = c.text;
    r.chg.className = `chg num ${c.cls}`;
    r.cnt.textContent = fmtInt(m.count);
    r.btn.setAttribute('aria-label', `${m.id}, last ${fmtPrice(m, m.last)}, change ${c.text}, ${m.count} trades`);
    flash(r.px, m.dir);
  }

  el.board.addEventListener('keydown', (ev) => {
    if (ev.key !== 'ArrowDown' && ev.key !== 'ArrowUp') return;
    const rows = [...el.board.querySelectorAll('.board-row')];
    const i = rows.indexOf(document.activeElement);
    if (i < 0) return;
    ev.preventDefault();
    const next = rows[(i + (ev.key === 'ArrowDown' ? 1 : rows.length - 1)) % rows.length];
    next.focus();
    select(next.dataset.market, true);
  });

  // ---------------------------------------------------------------- chart

  const css = getComputedStyle(document.documentElement);
  const UP = css.getPropertyValue('--up').trim() || '#38d39f';
  const DOWN = css.getPropertyValue('--down').trim() || '#ff6b6b';
  const tzShift = -new Date().getTimezoneOffset() * 60; // show local wall-clock time on the axis

  const chart = LWC.createChart(el.chart, {
    autoSize: true,
    layout: {
      background: { type: 'solid', color: 'transparent' },
      textColor: '#97a6b8',
      fontFamily: getComputedStyle(document.body).fontFamily,
      fontSize: 11,
      attributionLogo: true,
    },
    grid: { vertLines: { color: 'rgba(34,48,66,0.6)' }, horzLines: { color: 'rgba(34,48,66,0.6)' } },
    rightPriceScale: { borderColor: '#223042', scaleMargins: { top: 0.1, bottom: 0.25 } },
    timeScale: {
      borderColor: '#223042', timeVisible: true, secondsVisible: true, rightOffset: 3,
      barSpacing: 9, minBarSpacing: 2, maxBarSpacing: 16,
    },
    crosshair: { mode: LWC.CrosshairMode ? LWC.CrosshairMode.Normal : 0 },
  });
  const candleSeries = chart.addSeries(LWC.CandlestickSeries, {
    upColor: UP, downColor: DOWN, borderUpColor: UP, borderDownColor: DOWN, wickUpColor: UP, wickDownColor: DOWN,
  });
  const lineSeries = chart.addSeries(LWC.LineSeries, { color: '#5cb3ff', lineWidth: 2, visible: false });
  const volumeSeries = chart.addSeries(LWC.HistogramSeries, {
    priceScaleId: 'vol', priceFormat: { type: 'volume' }, lastValueVisible: false, priceLineVisible: false,
  });
  chart.priceScale('vol').applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });

  const volColor = (b) => (b.close >= b.open ? 'rgba(56,211,159,0.35)' : 'rgba(255,107,107,0.35)');
  const volPoint = (b) => ({ time: b.time, value: b.volume, color: volColor(b) });

  function applyPriceFormat(m) {
    const precision = m.decimals;
    const minMove = precision ? Number((10 ** -precision).toFixed(precision)) : 1;
    const priceFormat = { type: 'price', precision, minMove };
    candleSeries.applyOptions({ priceFormat });
    lineSeries.applyOptions({ priceFormat });
    chart.applyOptions({ localization: { priceFormatter: (p) => numFmt(precision).format(p) } });
  }

  // While the series is short, lay the candles out from the left edge at a fixed width instead of
  // bunching them at the right; once they fill the chart it scrolls with new candles as usual.
  const BAR_PX = 12;
  function fitWhileShort(n) {
    const width = (el.chart.clientWidth || 600) - 90; // minus the price scale
    const capacity = Math.floor(width / BAR_PX);
    if (n > 0 && n < capacity - 4) chart.timeScale().setVisibleLogicalRange({ from: -3.5, to: capacity - 4.5 });
  }

  function loadChart() {
    const m = state.selected && state.markets.get(state.selected);
    const bars = m ? m.bars[state.interval] : [];
    if (m) applyPriceFormat(m);
    candleSeries.setData(bars.map(({ time, open, high, low, close }) => ({ time, open, high, low, close })));
    lineSeries.setData(bars.map((b) => ({ time: b.time, value: b.close })));
    volumeSeries.setData(bars.map(volPoint));
    candleSeries.applyOptions({ visible: state.kind === 'candles' });
    lineSeries.applyOptions({ visible: state.kind === 'line' });
    el.chart.dataset.bars = String(bars.length);
    chart.timeScale().scrollToRealTime();
    fitWhileShort(bars.length);
  }

  function chartUpdate(b) {
    candleSeries.update({ time: b.time, open: b.open, high: b.high, low: b.low, close: b.close });
    lineSeries.update({ time: b.time, value: b.close });
    volumeSeries.update(volPoint(b));
  }

  for (const btn of document.querySelectorAll('.seg-btn[data-interval]')) {
    btn.addEventListener('click', () => {
      state.interval = Number(btn.dataset.interval);
      for (const b of document.querySelectorAll('.seg-btn[data-interval]')) b.setAttribute('aria-pressed', String(b === btn));
      loadChart();
    });
  }
  for (const btn of document.querySelectorAll('.seg-btn[data-kind]')) {
    btn.addEventListener('click', () => {
      state.kind = btn.dataset.kind;
      for (const b of document.querySelectorAll('.seg-btn[data-kind]')) b.setAttribute('aria-pressed', String(b === btn));
      loadChart();
    });
  }

  // ---------------------------------------------------------------- trades

  function onTrade(id, t, ts) {
    const price = Number(t.price);
    if (!id || !isFinite(price)) return;
    const qty = Number(t.qty) || 0;
    const m = market(id);
    if (t.exchange && !m.exchanges.has(t.exchange)) {
      m.exchanges.add(t.exchange);
      m.exchange = [...m.exchanges].sort().join(' · ');
    }
    const priceStr = String(t.price);
    const d = decimalsOf(priceStr);
    if (d > m.decimals) { m.decimals = d; if (state.selected === id) applyPriceFormat(m); }
    if (m.first == null) m.first = price;
    m.dir = m.last == null ? 0 : Math.sign(price - m.last);
    m.prev = m.last;
    m.last = price;
    m.high = Math.max(m.high, price);
    m.low = Math.min(m.low, price);
    m.count += 1;
    m.dirty = true;
    if (m.count === 1 && state.selected === id) applyPriceFormat(m);

    const tsMs = ts || Date.now();
    const trade = { ts: tsMs, side: t.side === 'sell' ? 'sell' : 'buy', price, qty: fmtQty(t.qty), m };
    m.trades.unshift(trade);
    if (m.trades.length > MAX_TAPE_STORE) m.trades.length = MAX_TAPE_STORE;

    const sec = Math.floor(tsMs / 1000) + tzShift;
    for (const iv of INTERVALS) {
      const bars = m.bars[iv];
      const time = Math.floor(sec / iv) * iv;
      let b = bars[bars.length - 1];
      if (b && b.time === time) {
        b.high = Math.max(b.high, price); b.low = Math.min(b.low, price); b.close = price; b.volume += qty;
      } else if (!b || time > b.time) {
        b = { time, open: price, high: price, low: price, close: price, volume: qty };
        bars.push(b);
        if (bars.length > MAX_BARS) bars.splice(0, bars.length - MAX_BARS);
      } else {
        // late trade for an older candle: fold it in if we still have that candle, else skip
        b = null;
        for (let i = bars.length - 2; i >= 0 && i >= bars.length - 10; i--) {
          if (bars[i].time === time) {
            const o = bars[i];
            o.high = Math.max(o.high, price); o.low = Math.min(o.low, price); o.volume += qty;
            break;
          }
        }
      }
      if (b && iv === state.interval && state.selected === id) {
        const grew = String(bars.length) !== el.chart.dataset.bars;
        chartUpdate(b);
        el.chart.dataset.bars = String(bars.length);
        if (grew) fitWhileShort(bars.length);
      }
    }

    if (state.selected === id) newTapeTrades.push(trade);
    if (newTapeTrades.length > MAX_TAPE) newTapeTrades.splice(0, newTapeTrades.length - MAX_TAPE);
    schedule();
  }

  function tapeRow(t) {
    const cls = t.side === 'sell' ? 'down' : 'up';
    return h('tr', null,
      h('td', { text: fmtTime(t.ts, true) }),
      h('td', { class: `side ${cls}`, text: t.side }),
      h('td', { class: `num ${cls}`, text: fmtPrice(t.m, t.price) }),
      h('td', { class: 'num', text: t.qty }),
    );
  }

  // ---------------------------------------------------------------- selected market

  function renderMarketHead() {
    const m = state.selected && state.markets.get(state.selected);
    if (!m) return;
    el.exchange.textContent = m.exchange;
    el.price.textContent = fmtPrice(m, m.last);
    el.price.className = `fig-value ${m.dir > 0 ? 'up' : m.dir < 0 ? 'down' : ''}`;
    const c = fmtChange(m);
    el.change.textContent = c.text;
    el.change.className = `fig-value ${c.cls}`;
    el.high.textContent = fmtPrice(m, m.high);
    el.low.textContent = fmtPrice(m, m.low);
    el.count.textContent = fmtInt(m.count);
  }

  function select(id, userAction) {
    if (!id) return;
    const changed = state.selected !== id;
    state.selected = id;
    for (const b of el.board.querySelectorAll('.board-row')) b.setAttribute('aria-pressed', String(b.dataset.market === id));
    if (userAction && decodeURIComponent(window.location.hash.slice(1)) !== id) {
      history.replaceState(null, '', `#${encodeURIComponent(id)}`);
    }
    if (!changed && el.title.textContent === id) return;
    document.title = `${id} · stompgate`;
    el.title.textContent = id;
    el.chatNote.textContent = `everyone on ${id}`;
    el.tapeNote.textContent = id;
    for (const n of [el.price, el.change, el.high, el.low, el.count]) { n.textContent = '—'; n.className = 'fig-value'; }
    el.exchange.textContent = '';
    const m = state.markets.get(id);
    // tape
    newTapeTrades.length = 0;
    el.tape.textContent = '';
    if (m) {
      const frag = document.createDocumentFragment();
      for (const t of m.trades.slice(0, MAX_TAPE)) frag.append(tapeRow(t));
      el.tape.append(frag);
    }
    loadChart();
    renderMarketHead();
    renderChat();
    updateChatForm();
  }

  window.addEventListener('hashchange', () => {
    const id = decodeURIComponent(window.location.hash.slice(1));
    if (id) select(id, false);
  });

  // ---------------------------------------------------------------- chat

  function onChat(type, id, body) {
    if (!id) return;
    const c = chatOf(id);
    if (type === 'chat.send') {
      let e = null;
      if (body.user && body.user === state.me) {
        // our own message coming back: attach the gateway's id to the pending entry
        e = c.list.find((x) => x.own && x.id == null && x.text === body.text);
      }
      if (e) {
        e.id = body.id; e.ts = body.ts || e.ts; e.user = body.user;
        if (e.status === 'pending' || e.status === 'failed') e.echoed = true;
      } else {
        e = { key: `m${++seq}`, id: body.id, market: id, user: body.user, text: body.text, ts: body.ts || Date.now(), status: 'sent' };
        c.list.push(e);
        if (c.list.length > MAX_CHAT) {
          const gone = c.list.splice(0, c.list.length - MAX_CHAT);
          for (const g of gone) c.byId.delete(g.id);
        }
      }
      if (e.id != null) c.byId.set(e.id, e);
    } else if (type === 'chat.modify') {
      const e = c.byId.get(body.id);
      // only the author may change a message: the gateway stamps the sender on every event
      if (!e || (e.user != null && body.user !== e.user)) return;
      e.text = body.text; e.edited = true; e.editing = false; e.op = null;
    } else if (type === 'chat.delete') {
      const e = c.byId.get(body.id);
      if (!e || (e.user != null && body.user !== e.user)) return;
      e.deleted = true; e.editing = false; e.op = null;
    } else {
      return;
    }
    if (id === state.selected) renderChat();
  }

  function isOwn(e) { return e.user != null && e.user === state.me; }

  function renderChat() {
    const log = el.chatLog;
    const c = state.selected ? chatOf(state.selected) : { list: [] };
    const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    // keep an in-progress edit box (and its focus/caret) intact
    const active = document.activeElement;
    const editingKey = active && active.closest && active.closest('.msg-edit') ? active.closest('.msg').dataset.key : null;
    log.textContent = '';
    if (!c.list.length) {
      log.append(h('li', { class: 'chat-empty', text: state.selected ? 'No messages yet. Say hello.' : 'Select a market to chat.' }));
    }
    for (const e of c.list) {
      const node = chatNode(e);
      log.append(node);
      if (e.key === editingKey) {
        const input = node.querySelector('.msg-edit input');
        if (input) { input.focus(); input.setSelectionRange(input.value.length, input.value.length); }
      }
    }
    if (atBottom) log.scrollTop = log.scrollHeight;
  }

  function chatNode(e) {
    const own = isOwn(e) || (e.own && e.id == null);
    const li = h('li', {
      class: `msg${own ? ' own' : ''}${e.deleted ? ' deleted' : ''}`,
      'data-key': e.key, 'data-id': e.id ?? false, 'data-status': e.status,
    });
    let status = null;
    if (e.op) status = h('span', { class: 'msg-status pending', text: e.op });
    else if (e.status === 'pending') status = h('span', { class: 'msg-status pending', text: 'sending…' });
    else if (e.status === 'failed') status = h('span', { class: 'msg-status failed', text: 'not confirmed' });
    else if (e.edited && !e.deleted) status = h('span', { class: 'msg-status', text: 'edited' });

    const meta = h('div', { class: 'msg-meta' },
      h('span', { class: 'msg-user', text: e.user || state.me || 'you' }),
      h('time', { datetime: new Date(e.ts).toISOString(), text: fmtTime(e.ts) }),
      status,
    );
    if (own && !e.deleted && e.id != null && !e.editing) {
      meta.append(h('span', { class: 'msg-actions' },
        h('button', { type: 'button', class: 'msg-edit-btn', 'aria-label': `Edit message: ${e.text}`, text: 'Edit', onclick: () => startEdit(e) }),
        h('button', { type: 'button', class: 'msg-delete-btn', 'aria-label': `Delete message: ${e.text}`, text: 'Delete', onclick: () => deleteMsg(e) }),
      ));
    }
    li.append(meta);
    if (e.deleted) {
      meta.append(h('span', { class: 'msg-text', text: 'message deleted' }));
    } else if (e.editing) {
      const input = h('input', { type: 'text', maxlength: '500', value: e.text, 'aria-label': 'Edit message' });
      const form = h('form', { class: 'msg-edit' }, input,
        h('button', { type: 'submit', class: 'btn btn-primary', text: 'Save' }),
        h('button', { type: 'button', class: 'btn', text: 'Cancel', onclick: () => { e.editing = false; renderChat(); } }));
      form.addEventListener('submit', (ev) => { ev.preventDefault(); saveEdit(e, input.value); });
      input.addEventListener('keydown', (ev) => { if (ev.key === 'Escape') { e.editing = false; renderChat(); el.chatInput.focus(); } });
      li.append(form);
    } else {
      li.append(h('div', { class: 'msg-text', text: e.text }));
    }
    return li;
  }

  function publishChat(market, eventType, body, onReceipt) {
    const receipt = `rcpt-${Date.now().toString(36)}-${++seq}`;
    client.watchForReceipt(receipt, onReceipt);
    client.publish({
      destination: `/app/market/${market}/chat`,
      headers: { 'event-type': eventType, receipt, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    return receipt;
  }

  function sendChat(text) {
    const id = state.selected;
    if (!id || !state.connected) return;
    const c = chatOf(id);
    const e = { key: `m${++seq}`, id: null, market: id, user: state.me, text, ts: Date.now(), status: 'pending', own: true };
    c.list.push(e);
    renderChat();
    el.chatLog.scrollTop = el.chatLog.scrollHeight;
    try {
      e.receipt = publishChat(id, 'chat.send', { text }, () => {
        e.status = 'sent';
        if (id === state.selected) renderChat();
      });
    } catch (err) {
      e.status = 'failed';
      renderChat();
      return;
    }
    setTimeout(() => {
      if (e.status === 'pending') { e.status = 'failed'; if (id === state.selected) renderChat(); }
    }, RECEIPT_TIMEOUT_MS);
  }

  function startEdit(e) {
    e.editing = true;
    renderChat();
    const input = el.chatLog.querySelector(`.msg[data-key="${e.key}"] .msg-edit input`);
    if (input) { input.focus(); input.select(); }
  }

  function saveEdit(e, text) {
    text = text.trim();
    e.editing = false;
    if (!text || text === e.text || !state.connected) { renderChat(); return; }
    e.op = 'saving…';
    renderChat();
    try {
      publishChat(e.market, 'chat.modify', { id: e.id, text }, () => {
        // the broadcast chat.modify carries the new text; the receipt only ends the wait
        if (e.op) { e.op = null; if (e.market === state.selected) renderChat(); }
      });
    } catch (err) {
      e.op = null; renderChat();
    }
    el.chatInput.focus();
  }

  function deleteMsg(e) {
    if (!state.connected) return;
    e.op = 'deleting…';
    renderChat();
    try {
      publishChat(e.market, 'chat.delete', { id: e.id }, () => {
        if (e.op) { e.op = null; if (e.market === state.selected) renderChat(); }
      });
    } catch (err) {
      e.op = null; renderChat();
    }
    el.chatInput.focus();
  }

  el.chatForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const text = el.chatInput.value.trim();
    if (!text) return;
    el.chatInput.value = '';
    sendChat(text);
  });

  function updateChatForm() {
    const ok = state.connected && !!state.selected;
    el.chatInput.disabled = !ok;
    el.chatSend.disabled = !ok;
    el.chatInput.placeholder = !state.selected ? 'Select a market to chat'
      : state.connected ? `Message ${state.selected} as ${state.me || 'guest'}…` : 'Waiting for connection…';
  }

  // ---------------------------------------------------------------- stats

  let windowCount = 0;
  let latencies = [];
  function noteLatency(ts) {
    const d = Date.now() - ts;
    if (d > -60000 && d < 3600000) latencies.push(Math.max(0, d));
  }
  setInterval(() => {
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
  }, 1000);

  async function pollStats() {
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
  pollStats();
  setInterval(pollStats, STATS_POLL_MS);

  // ---------------------------------------------------------------- connection

  const CONN_LIVE = { connecting: 'Connecting', connected: 'Connected', reconnecting: 'Connection lost, reconnecting', disconnected: 'Disconnected' };
  function setConn(kind, text) {
    // the visible text ticks down every half second; screen readers only hear state changes
    if (el.conn.dataset.state !== kind) el.connLive.textContent = CONN_LIVE[kind] || kind;
    el.conn.dataset.state = kind;
    el.connText.textContent = text;
  }

  let countdown = null;
  function showReconnecting() {
    clearInterval(countdown);
    const tick = () => {
      const s = Math.max(0, Math.ceil((state.retryAt - Date.now()) / 1000));
      setConn('reconnecting', s > 0 ? `Reconnecting in ${s}s (attempt ${state.attempt})` : `Reconnecting… (attempt ${state.attempt})`);
    };
    tick();
    countdown = setInterval(tick, 500);
  }

  function loginName() { return (localStorage.getItem(NAME_KEY) || '').trim(); }

  const client = new Client({
    brokerURL: wsUrl(),
    connectHeaders: {},
    reconnectDelay: RECONNECT_BASE_MS,
    maxReconnectDelay: RECONNECT_MAX_MS,
    reconnectTimeMode: ReconnectionTimeMode.EXPONENTIAL,
    connectionTimeout: 8000,
    heartbeatIncoming: 10000,
    heartbeatOutgoing: 10000,
    debug: () => {},
  });

  function applyLogin() {
    const name = loginName();
    client.connectHeaders = name ? { login: name } : {};
  }

  client.beforeConnect = () => {
    applyLogin();
    if (!state.everConnected && state.attempt === 0) setConn('connecting', 'Connecting…');
    else { clearInterval(countdown); setConn('reconnecting', `Reconnecting… (attempt ${state.attempt})`); }
  };

  client.onConnect = (frame) => {
    clearInterval(countdown);
    state.connected = true;
    state.everConnected = true;
    state.attempt = 0;
    state.me = frame.headers['user-name'] || loginName() || null;
    el.meName.textContent = state.me || 'guest';
    setConn('connected', 'Connected');
    el.conn.title = `${frame.headers.server || 'server'} · session ${frame.headers.session || '?'} · STOMP ${frame.headers.version || '?'}`;
    // subscriptions do not survive a reconnect: subscribe again on every CONNECTED
    client.subscribe('/topic/market/*', onMessage);
    updateChatForm();
    renderChat();
    pollStats();
  };

  function lost() {
    const wasConnected = state.connected;
    state.connected = false;
    updateChatForm();
    // anything still waiting for a receipt on the old connection will never get one
    for (const c of state.chat.values()) {
      for (const e of c.list) { if (e.status === 'pending') e.status = 'failed'; e.op = null; }
    }
    if (state.selected) renderChat();
    if (!client.active) { clearInterval(countdown); setConn('disconnected', 'Disconnected'); return; }
    state.attempt += 1;
    const delay = Math.min(RECONNECT_BASE_MS * 2 ** (state.attempt - 1), RECONNECT_MAX_MS);
    state.retryAt = Date.now() + delay;
    if (wasConnected || state.everConnected || state.attempt > 0) showReconnecting();
  }

  client.onWebSocketClose = () => lost();
  client.onStompError = (frame) => {
    const why = frame.headers.message || 'error';
    el.conn.title = `Gateway error: ${why}`;
  };

  function onMessage(msg) {
    state.received += 1;
    windowCount += 1;
    const type = msg.headers['event-type'] || 'trade';
    let body;
    try { body = JSON.parse(msg.body); } catch (err) { return; }
    const ts = Number(msg.headers.timestamp) || Number(body.ts) || 0;
    if (ts) noteLatency(ts);
    const dest = msg.headers.destination || '';
    const id = body.market || (dest.startsWith('/topic/market/') ? dest.slice('/topic/market/'.length) : null);
    if (type === 'trade') {
      onTrade(id, body, ts);
      if (!state.selected && id) select(id, false);
    } else if (type.startsWith('chat.')) {
      onChat(type, id, body);
    }
  }

  // ---------------------------------------------------------------- display name

  el.nameInput.value = loginName();
  el.nameForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const name = el.nameInput.value.trim();
    if (name === loginName() && state.connected) return;
    if (name) localStorage.setItem(NAME_KEY, name); else localStorage.removeItem(NAME_KEY);
    // the name is the CONNECT login header, so a new name means a new session
    state.attempt = 0;
    state.everConnected = false;
    await client.deactivate();
    setConn('connecting', 'Connecting…');
    client.activate();
  });

  // ---------------------------------------------------------------- start

  const initial = decodeURIComponent(window.location.hash.slice(1));
  if (initial) select(initial, false);
  renderChat();
  updateChatForm();
  client.activate();
})();
