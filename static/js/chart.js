// The price chart of the selected market (lightweight-charts, loaded before the modules as the
// classic script vendor/lightweight-charts.standalone.production.js, global LightweightCharts):
// candles or a line with volume, the price format, and the interval and kind buttons.

import { el } from './dom.js';
import { numFmt } from './format.js';
import { state } from './state.js';

// Candle times are shifted so the axis shows local wall-clock time.
export const tzShift = -new Date().getTimezoneOffset() * 60;

// While the series is short, lay the candles out from the left edge at a fixed width instead of
// bunching them at the right; once they fill the chart it scrolls with new candles as usual.
const BAR_PX = 12;

let chart = null;
let candleSeries = null;
let lineSeries = null;
let volumeSeries = null;

const volColor = (b) => (b.close >= b.open ? 'rgba(56,211,159,0.35)' : 'rgba(255,107,107,0.35)');
const volPoint = (b) => ({ time: b.time, value: b.volume, color: volColor(b) });

export function initChart() {
  const LWC = window.LightweightCharts;
  const css = getComputedStyle(document.documentElement);
  const UP = css.getPropertyValue('--up').trim() || '#38d39f';
  const DOWN = css.getPropertyValue('--down').trim() || '#ff6b6b';
  chart = LWC.createChart(el.chart, {
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
  candleSeries = chart.addSeries(LWC.CandlestickSeries, {
    upColor: UP, downColor: DOWN, borderUpColor: UP, borderDownColor: DOWN, wickUpColor: UP, wickDownColor: DOWN,
  });
  lineSeries = chart.addSeries(LWC.LineSeries, { color: '#5cb3ff', lineWidth: 2, visible: false });
  volumeSeries = chart.addSeries(LWC.HistogramSeries, {
    priceScaleId: 'vol', priceFormat: { type: 'volume' }, lastValueVisible: false, priceLineVisible: false,
  });
  chart.priceScale('vol').applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });

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
}

export function applyPriceFormat(m) {
  const precision = m.decimals;
  const minMove = precision ? Number((10 ** -precision).toFixed(precision)) : 1;
  const priceFormat = { type: 'price', precision, minMove };
  candleSeries.applyOptions({ priceFormat });
  lineSeries.applyOptions({ priceFormat });
  chart.applyOptions({ localization: { priceFormatter: (p) => numFmt(precision).format(p) } });
}

function fitWhileShort(n) {
  const width = (el.chart.clientWidth || 600) - 90; // minus the price scale
  const capacity = Math.floor(width / BAR_PX);
  if (n > 0 && n < capacity - 4) chart.timeScale().setVisibleLogicalRange({ from: -3.5, to: capacity - 4.5 });
}

// Draws the selected market's series for the selected interval and kind from scratch.
export function loadChart() {
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

// Redraws candle b, the last of a series now `count` candles long.
export function chartUpdate(b, count) {
  const grew = String(count) !== el.chart.dataset.bars;
  candleSeries.update({ time: b.time, open: b.open, high: b.high, low: b.low, close: b.close });
  lineSeries.update({ time: b.time, value: b.close });
  volumeSeries.update(volPoint(b));
  el.chart.dataset.bars = String(count);
  if (grew) fitWhileShort(count);
}
