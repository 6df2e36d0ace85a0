// Small SVG time-series charts for the operations view: one or more lines
// over the last hour, a gap where a value is missing, the latest value in
// the caption. Axis text is HTML beside the SVG, so the drawing can stretch
// to its box without distorting letters.

import { h } from './dom.js';

const SVG = 'http://www.w3.org/2000/svg';
const W = 300;
const H = 80;

function svg(tag, attrs) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

/**
 * A chart. `series`: `[{name, points: [[unixMs, value|null]], cls}]`;
 * `format(v)` prints a value; `windowMs` is the span shown (ending now);
 * `min` fixes the bottom of the scale (default 0, or the lowest value when
 * values go below 0).
 */
export function lineChart({ title, series, format, windowMs = 3600e3, now = Date.now(), min = null, max = null }) {
  const values = series.flatMap((s) => s.points.map((p) => p[1])).filter((v) => v !== null && Number.isFinite(v));
  let lo = min ?? Math.min(0, ...values);
  let hi = max ?? Math.max(...values, lo + 1e-9);
  if (values.length && hi - lo < 1e-9) hi = lo + 1;
  if (!values.length) { lo = 0; hi = 1; }
  const t0 = now - windowMs;
  const x = (t) => ((t - t0) / windowMs) * W;
  const y = (v) => H - ((v - lo) / (hi - lo)) * H;

  const chart = svg('svg', { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', class: 'chart-svg', 'aria-hidden': 'true' });
  for (const frac of [0.25, 0.5, 0.75]) chart.append(svg('line', { x1: 0, x2: W, y1: H * frac, y2: H * frac, class: 'grid-line' }));
  series.forEach((s, i) => {
    let run = [];
    const flush = () => {
      if (run.length === 1) chart.append(svg('circle', { cx: run[0][0], cy: run[0][1], r: 1.5, class: `dot s${i}` }));
      else if (run.length > 1) chart.append(svg('polyline', { points: run.map((p) => p.join(',')).join(' '), class: `line s${i}` }));
      run = [];
    };
    for (const [t, v] of s.points) {
      if (t < t0) continue;
      if (v === null || !Number.isFinite(v)) flush();
      else run.push([x(t).toFixed(1), y(v).toFixed(1)]);
    }
    flush();
  });

  const latest = series.map((s) => {
    const last = [...s.points].reverse().find((p) => p[1] !== null && Number.isFinite(p[1]));
    return `${s.name} ${last ? format(last[1]) : '—'}`;
  });
  const legend = series.length > 1 || series[0].name
    ? h('ul', { class: 'legend' }, series.map((s, i) => h('li', { class: `s${i}`, text: s.name })))
    : null;
  return h('figure', { class: 'chart', attrs: { role: 'img', 'aria-label': `${title}, last hour; latest: ${latest.join(', ')}` } },
    h('figcaption', {}, h('span', { class: 'chart-title', text: title }), h('span', { class: 'chart-latest', text: latest.join(' · ') })),
    h('div', { class: 'chart-body' },
      h('span', { class: 'axis y-hi', text: format(hi) }),
      chart,
      h('span', { class: 'axis y-lo', text: format(lo) })),
    h('div', { class: 'axis x' }, h('span', { text: windowMs < 120e3 ? `−${Math.round(windowMs / 1000)} s` : `−${Math.round(windowMs / 60000)} min` }), h('span', { text: 'now' })),
    legend);
}
