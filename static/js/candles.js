// Candle folding: a trade goes into the candle of its time bucket. Depends only on its
// arguments (no DOM, no page state), so it is unit-tested in Node (tests/node/dashboard.test.mjs).

import { MAX_BARS } from './state.js';

// Open time of the `interval`-second candle holding second `sec`.
export const candleTime = (sec, interval) => Math.floor(sec / interval) * interval;

// Folds trade t = { time, price, qty } (time: its candle's open time, see candleTime) into
// `bars`, a series of { time, open, high, low, close, volume } ordered by time, in place:
// - same time as the last candle: widen it and move its close;
// - later: start a new candle, dropping the oldest beyond `maxBars`;
// - earlier: widen that candle if it is among the last ten (its close stays), else skip.
// Returns the candle the chart should redraw (the last one), or null for a late trade.
export function foldTrade(bars, t, maxBars = MAX_BARS) {
  const { time, price, qty } = t;
  const b = bars[bars.length - 1];
  if (b && b.time === time) {
    b.high = Math.max(b.high, price); b.low = Math.min(b.low, price); b.close = price; b.volume += qty;
    return b;
  }
  if (!b || time > b.time) {
    const nb = { time, open: price, high: price, low: price, close: price, volume: qty };
    bars.push(nb);
    if (bars.length > maxBars) bars.splice(0, bars.length - maxBars);
    return nb;
  }
  for (let i = bars.length - 2; i >= 0 && i >= bars.length - 10; i--) {
    if (bars[i].time === time) {
      const o = bars[i];
      o.high = Math.max(o.high, price); o.low = Math.min(o.low, price); o.volume += qty;
      break;
    }
  }
  return null;
}
