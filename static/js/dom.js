// The page's elements by id, a small element builder, and the price flash. Loaded as a module,
// so it runs after the document is parsed and every id below exists.

const $ = (id) => document.getElementById(id);

export const el = {
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
  regList: $('reg-list'), regEmpty: $('reg-empty'), regCount: $('reg-count'), regNote: $('reg-note'),
  regForm: $('reg-form'), regExchange: $('reg-exchange'), regSymbol: $('reg-symbol'),
  adminDialog: $('admin-dialog'), adminWhy: $('admin-why'), adminInput: $('admin-token'),
  adminCancel: $('admin-cancel'),
};

// h('li', { class: 'x', text: 'hi', onclick: fn }, ...children)
export function h(tag, attrs, ...children) {
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

const reduceMotion = window.matchMedia && window.matchMedia('(prefers-reduced-motion: reduce)').matches;
export function flash(node, dir) {
  if (reduceMotion || !node.animate) return;
  const color = dir > 0 ? 'rgba(56,211,159,0.30)' : dir < 0 ? 'rgba(255,107,107,0.30)' : 'rgba(151,166,184,0.20)';
  node.animate([{ backgroundColor: color }, { backgroundColor: 'rgba(0,0,0,0)' }], { duration: 450, easing: 'ease-out' });
}
