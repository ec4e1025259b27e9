// The market board: one row per market, sorted by id, with last price, change and trade count,
// and a "gap" mark on a market whose stream could not be fully recovered.
// Choosing a row (click, or the arrow keys) is reported through the onSelect callback given to
// initBoard, so the board knows nothing of what selecting a market does.

import { el, h, flash } from './dom.js';
import { fmtPrice, fmtChange, fmtInt } from './format.js';
import { state } from './state.js';

let onSelect = () => {};

export function initBoard(opts) {
  onSelect = opts.onSelect;
  el.board.addEventListener('keydown', (ev) => {
    if (ev.key !== 'ArrowDown' && ev.key !== 'ArrowUp') return;
    const rows = [...el.board.querySelectorAll('.board-row')];
    const i = rows.indexOf(document.activeElement);
    if (i < 0) return;
    ev.preventDefault();
    const next = rows[(i + (ev.key === 'ArrowDown' ? 1 : rows.length - 1)) % rows.length];
    next.focus();
    onSelect(next.dataset.market);
  });
}

export function addRow(m) {
  el.boardEmpty.hidden = true;
  const btn = h('button', {
    type: 'button', class: 'board-row', 'data-market': m.id, 'aria-pressed': String(state.selected === m.id),
    onclick: () => onSelect(m.id),
  },
    h('span', { class: 'sym' }, h('b', { text: m.id }),
      h('span', { class: 'sym-sub' }, h('span', { class: 'gap', hidden: true, text: 'gap' }), h('small', { class: 'ex', text: '' }))),
    h('span', { class: 'px num', text: '—' }),
    h('span', { class: 'chg num flat', text: '—' }),
    h('span', { class: 'cnt num', text: '0' }),
  );
  const li = h('li', null, btn);
  m.row = {
    li, btn, ex: btn.querySelector('.ex'), px: btn.querySelector('.px'),
    chg: btn.querySelector('.chg'), cnt: btn.querySelector('.cnt'), gap: btn.querySelector('.gap'),
  };
  showGap(m);
  // keep the board sorted by market id
  const after = [...el.board.querySelectorAll('.board-row')].find((b) => b.dataset.market > m.id);
  if (after) el.board.insertBefore(li, after.parentElement); else el.board.append(li);
}

export function renderRow(m) {
  const r = m.row;
  r.ex.textContent = m.exchange;
  r.px.textContent = fmtPrice(m, m.last);
  r.px.className = `px num ${m.dir > 0 ? 'up' : m.dir < 0 ? 'down' : ''}`;
  const c = fmtChange(m);
  r.chg.textContent = c.text;
  r.chg.className = `chg num ${c.cls}`;
  r.cnt.textContent = fmtInt(m.count);
  r.btn.setAttribute('aria-label', `${m.id}, last ${fmtPrice(m, m.last)}, change ${c.text}, ${m.count} trades${m.gap ? ', with a gap' : ''}`);
  flash(r.px, m.dir);
}

export function showGap(m) {
  if (!m.row) return;
  m.row.gap.hidden = !m.gap;
  m.row.gap.title = m.gap || '';
}

export function markSelected(id) {
  for (const b of el.board.querySelectorAll('.board-row')) b.setAttribute('aria-pressed', String(b.dataset.market === id));
}
