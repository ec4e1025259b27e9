// How numbers and times are shown: prices at the market's own precision, change in percent,
// sizes without trailing zeros, local wall-clock times. Pure functions; no DOM.

const fmtCache = new Map();
export function numFmt(decimals) {
  let f = fmtCache.get(decimals);
  if (!f) {
    f = new Intl.NumberFormat('en-US', { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
    fmtCache.set(decimals, f);
  }
  return f;
}

// Decimal places written in a price string ("95000.50" -> 2), at most 8.
export function decimalsOf(s) {
  const i = s.indexOf('.');
  return i < 0 ? 0 : Math.min(8, s.length - i - 1);
}

export const fmtPrice = (m, v) => (v == null || !isFinite(v) ? '—' : numFmt(m.decimals).format(v));

// Change from the first price seen to the last, with the CSS class that colours it.
export function fmtChange(m) {
  if (m.first == null || m.last == null || m.first === 0) return { text: '—', cls: 'flat' };
  const pct = ((m.last - m.first) / m.first) * 100;
  const cls = pct > 0 ? 'up' : pct < 0 ? 'down' : 'flat';
  const sign = pct > 0 ? '+' : '';
  return { text: `${sign}${pct.toFixed(2)}%`, cls };
}

// Spread of price `a` over price `b` (one coin on two exchanges): absolute and in percent of
// `b`; null while either is unknown.
export function spread(a, b) {
  if (a == null || b == null || !isFinite(a) || !isFinite(b) || b === 0) return null;
  return { abs: a - b, pct: ((a - b) / b) * 100 };
}

export function fmtQty(s) {
  if (typeof s !== 'string') s = String(s ?? '');
  return s.includes('.') ? s.replace(/0+$/, '').replace(/\.$/, '') : s;
}

const pad = (n, w = 2) => String(n).padStart(w, '0');
export function fmtTime(ms, withMs) {
  const d = new Date(ms);
  const t = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return withMs ? `${t}.${pad(d.getMilliseconds(), 3)}` : t;
}

export const fmtInt = (n) => numFmt(0).format(n);
