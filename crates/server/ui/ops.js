// Operations: live service-level indicators from the server's own
// `/metrics`, scraped every few seconds and turned into `easel top`'s
// figures between consecutive scrapes (metrics.js): latency P50/P95/P99,
// success rate, queue depth and oldest job, images per second, quality,
// moderation block and flag ratios, cost per image, model states and
// memory. An hour of frames is kept in the page (it keeps scraping while
// the tab is visible, whichever view is open) and drawn as small charts.
// The Grafana dashboards are linked where the server names its Grafana
// (`server.grafana_url`, read from /ui/config.json).

import { api } from './api.js';
import { h, replace, dl, fmtSecs, fmtPct, fmtNum, fmtBytes, fmtAgo, badge, thead } from './dom.js';
import { parseExposition, frameBetween } from './metrics.js';
import { lineChart } from './charts.js';
import { errorBox } from './widgets.js';

const SCRAPE_MS = 5000;
const KEEP_MS = 3600e3;
// The dashboards of deploy/grafana/ with the uids their JSON gives them, so
// a Grafana they were imported into serves each at /d/<uid>.
const DASHBOARDS = [
  ['executive', 'easel-executive', 'Executive', 'success ratio, error budget, images per hour, cost per image, quality, moderation'],
  ['oncall', 'easel-oncall', 'On-call', 'error ratios, queues, latency by tier, HTTP, models, rollouts'],
  ['debug', 'easel-debug', 'Debug', 'stages, batch sizes, HTTP by route, model load and memory, GPU'],
];

// Module state: survives leaving and reopening the tab.
const history = []; // {t: unix ms, f: frame}
let prev = null; // {t, exp}
let timer = null;
let disabled = null; // the error when /metrics is off
let lastError = null;
let listener = null;

async function scrape() {
  if (document.visibilityState !== 'visible') return;
  let text;
  try {
    text = await api('/metrics', { headers: { Accept: 'application/openmetrics-text; version=1.0.0, text/plain;q=0.5' } });
  } catch (e) {
    if (e.status === 404) { disabled = e; stop(); } else lastError = e;
    if (listener) listener();
    return;
  }
  const t = Date.now();
  let exp;
  try { exp = parseExposition(String(text)); } catch (e) { lastError = e; if (listener) listener(); return; }
  lastError = null;
  if (prev) {
    history.push({ t, f: frameBetween(prev.exp, exp, (t - prev.t) / 1000) });
    while (history.length && history[0].t < t - KEEP_MS) history.shift();
  }
  prev = { t, exp };
  if (listener) listener();
}

function start() {
  if (timer || disabled) return;
  scrape();
  // A second scrape soon, so the first frame does not wait a whole period.
  setTimeout(scrape, 1000);
  timer = setInterval(scrape, SCRAPE_MS);
}

function stop() {
  clearInterval(timer);
  timer = null;
}

function tile(id, label, value, sub) {
  return h('div', { class: 'tile-sli', data: { metric: id } },
    h('span', { class: 'sli-label', text: label }),
    h('span', { class: 'sli-value', text: value }),
    sub ? h('small', { text: sub }) : null);
}

function series(name, pick) {
  return { name, points: history.map(({ t, f }) => [t, pick(f)]) };
}

// P50 / P95 / P99 in one unit: milliseconds when all are under a second.
function fmtTriple(a, b, c) {
  const xs = [a, b, c];
  if (xs.every((x) => x === null)) return '—';
  const ms = xs.every((x) => x === null || x < 1);
  return `${xs.map((x) => (x === null ? '—' : ms ? (x * 1000).toFixed(0) : x.toFixed(2))).join('\u2009/\u2009')} ${ms ? 'ms' : 's'}`;
}

function tiles(f) {
  const rt = f.tiers.find((t) => t.tier === 'realtime');
  const bt = f.tiers.find((t) => t.tier === 'batch');
  const mod = f.moderationRatios;
  const modText = (stage) => (mod[stage] ? `${fmtPct(mod[stage].block)} / ${fmtPct(mod[stage].flag)}` : '—');
  return h('div', { class: 'sli-grid', attrs: { 'aria-label': 'Latest window' } },
    tile('latency', 'Latency P50 / P95 / P99', fmtTriple(f.latency.p50, f.latency.p95, f.latency.p99),
      `realtime P95 ${fmtSecs(rt.p95)} · batch P95 ${fmtSecs(bt.p95)}`),
    tile('success', 'Success rate', fmtPct(f.successRatio), f.jobsCounted ? `${Math.round(f.jobsCounted)} finished jobs (SLO 99.5%)` : 'no finished jobs in the window'),
    tile('queue', 'Queued jobs', `${rt.queueDepth + bt.queueDepth}`, `realtime ${rt.queueDepth} (oldest ${fmtSecs(rt.oldestAge)}) · batch ${bt.queueDepth} (oldest ${fmtSecs(bt.oldestAge)})`),
    tile('images', 'Images per second', fmtNum(f.imagesPerS, 2), f.batchP50 !== null ? `median ${fmtNum(f.batchP50, 1)} per engine call` : null),
    tile('quality', 'Quality score', `mean ${fmtNum(f.qualityMean, 3)}`, `median ${fmtNum(f.qualityP50, 3)}`),
    tile('moderation', 'Moderation blocks', mod.prompt || mod.image ? fmtPct(((mod.prompt?.block || 0) * (mod.prompt?.decisions || 0) + (mod.image?.block || 0) * (mod.image?.decisions || 0)) / ((mod.prompt?.decisions || 0) + (mod.image?.decisions || 0))) : '—',
      `blocked / flagged: prompts ${modText('prompt')} · images ${modText('image')}`),
    tile('cost', 'Cost per image', f.costPerImage === null ? '—' : fmtNum(f.costPerImage, 6)),
    tile('http', 'HTTP requests', `${fmtNum(f.httpPerS, 2)}/s`, Object.entries(f.httpByClass).map(([k, v]) => `${k} ${fmtNum(v, 2)}/s`).join(' · ')),
    tile('models', 'Models loaded', f.modelsLoaded === null ? '—' : String(f.modelsLoaded),
      Object.entries(f.modelMemory).map(([m, b]) => `${m} ${fmtBytes(b)}`).join(' · ')),
    tile('cpu', 'CPU', fmtPct(f.cpu), Object.entries(f.gpus).map(([g, u]) => `gpu${g} ${fmtPct(u)}`).join(' · ') || null));
}

function charts() {
  const now = Date.now();
  // The time axis spans what the page holds, from a minute to the hour.
  const span = history.length ? now - history[0].t : 0;
  const common = { now, windowMs: Math.min(KEEP_MS, Math.max(60e3, span)) };
  return h('div', { class: 'charts' },
    lineChart({ ...common, title: 'Generation latency', format: fmtSecs, series: [series('P50', (f) => f.latency.p50), series('P95', (f) => f.latency.p95), series('P99', (f) => f.latency.p99)] }),
    lineChart({ ...common, title: 'Success rate', format: fmtPct, min: 0, max: 1, series: [series('', (f) => f.successRatio)] }),
    lineChart({ ...common, title: 'Queue depth', format: (v) => fmtNum(v, 0), series: [series('realtime', (f) => f.tiers[0].queueDepth), series('batch', (f) => f.tiers[1].queueDepth)] }),
    lineChart({ ...common, title: 'Oldest queued job', format: fmtSecs, series: [series('realtime', (f) => f.tiers[0].oldestAge), series('batch', (f) => f.tiers[1].oldestAge)] }),
    lineChart({ ...common, title: 'Images per second', format: (v) => fmtNum(v, 2), series: [series('', (f) => f.imagesPerS)] }),
    lineChart({ ...common, title: 'HTTP requests per second', format: (v) => fmtNum(v, 1), series: [series('', (f) => f.httpPerS)] }),
    lineChart({ ...common, title: 'Quality score (mean)', format: (v) => fmtNum(v, 3), series: [series('', (f) => f.qualityMean)] }),
    lineChart({ ...common, title: 'Moderation block ratio', format: fmtPct, min: 0, series: [series('prompt', (f) => f.moderationRatios.prompt?.block ?? null), series('image', (f) => f.moderationRatios.image?.block ?? null)] }),
    lineChart({ ...common, title: 'Cost per image', format: (v) => fmtNum(v, 6), series: [series('', (f) => f.costPerImage)] }));
}

function details(f) {
  const errors = Object.entries(f.errorsByCode);
  return h('div', { class: 'split' },
    h('section', { class: 'card', attrs: { 'aria-labelledby': 'ops-stages-h' } },
      h('h2', { id: 'ops-stages-h', text: 'Stages (P95 in the window)' }),
      f.stagesP95.length ? dl(f.stagesP95.map(([s, v]) => [s, fmtSecs(v)])) : h('p', { class: 'note', text: 'No stage ran in the window.' })),
    h('section', { class: 'card', attrs: { 'aria-labelledby': 'ops-errors-h' } },
      h('h2', { id: 'ops-errors-h', text: 'Failed and rejected jobs' }),
      errors.length ? dl(errors.map(([c, v]) => [c, `${fmtNum(v, 3)}/s`])) : h('p', { class: 'note', text: 'None in the window.' })));
}

async function modelsSection() {
  const section = h('section', { class: 'card', attrs: { 'aria-labelledby': 'ops-models-h' } }, h('h2', { id: 'ops-models-h', text: 'Models' }));
  try {
    const list = await api('/v1/models');
    section.append(h('div', { class: 'table-wrap' }, h('table', {},
      thead(['Model', 'State', 'Memory', 'In use', 'Last used']),
      h('tbody', {}, list.data.map((m) => h('tr', {},
        h('td', { text: `${m.id}${m.default ? ' (default)' : ''}` }), h('td', {}, badge(m.state), m.error ? ` ${m.error}` : ''),
        h('td', { class: 'num', text: fmtBytes(m.memory_bytes) }), h('td', { class: 'num', text: String(m.in_use) }),
        h('td', { text: fmtAgo(m.last_used_at) })))))),
    h('p', { class: 'hint', text: `Memory budget ${fmtBytes(list.memory_budget_bytes)}.` }));
  } catch (e) {
    section.append(errorBox(e));
  }
  return section;
}

/** The page's settings (`/ui/config.json`, no key needed); {} if unreadable. */
async function pageConfig() {
  try {
    const r = await fetch('/ui/config.json');
    return r.ok ? await r.json() : {};
  } catch {
    return {};
  }
}

/**
 * The Grafana dashboards: links into the operator's Grafana when the server
 * names it (`server.grafana_url`), else the files to import.
 */
function dashboards(grafana) {
  const file = (name) => `deploy/grafana/${name}.json`;
  const items = DASHBOARDS.map(([name, uid, title, what]) => h('li', { data: { dashboard: uid } },
    grafana
      ? [h('a', { href: `${grafana}/d/${encodeURIComponent(uid)}`, target: '_blank', rel: 'noopener noreferrer', text: title }),
        ` — ${what} (`, h('code', { text: file(name) }), ')']
      : [h('code', { text: file(name) }), ` — ${title}: ${what}`]));
  const hint = grafana
    ? `For longer windows and alerts: the dashboards in Grafana at ${grafana} (server.grafana_url), imported from these files of the Easel repository; the alert rules are in deploy/prometheus/rules.yml.`
    : 'For longer windows and alerts: import these files of the Easel repository into Grafana (datasource ${DS_PROMETHEUS}), and set server.grafana_url to link them here; the alert rules are in deploy/prometheus/rules.yml.';
  return h('section', { class: 'card', id: 'ops-grafana', attrs: { 'aria-labelledby': 'ops-grafana-h' } },
    h('h2', { id: 'ops-grafana-h', text: 'Grafana dashboards' }),
    h('p', { class: 'hint', text: hint }),
    h('ul', { class: 'links' }, items));
}

/** Mounts the operations view. */
export async function mount(root) {
  const status = h('p', { class: 'status', id: 'ops-status', attrs: { role: 'status' } });
  const live = h('div', { id: 'ops-live' });
  const models = h('div');
  const grafana = h('div');
  replace(root, h('h1', { text: 'Operations' }), status, live, models, grafana);
  pageConfig().then((c) => replace(grafana, dashboards(typeof c.grafana_url === 'string' ? c.grafana_url : null)));
  let modelsAt = 0;

  async function refreshModels() {
    modelsAt = Date.now();
    replace(models, await modelsSection());
  }

  function render() {
    if (disabled) {
      replace(status);
      replace(live, h('div', { class: 'error', attrs: { role: 'alert' } },
        h('strong', { text: 'Metrics are turned off on this server' }),
        h('p', { text: 'GET /metrics answered 404: the server runs with [metrics] enabled = false (environment EASEL_METRICS__ENABLED=false). Turn it on to see live service-level indicators here, in easel top and in Grafana.' })));
      return;
    }
    root.dataset.samples = String(history.length);
    root.dataset.images = String(history.reduce((a, { f }) => a + f.imagesPerS * f.windowS, 0));
    const last = history[history.length - 1];
    const span = history.length ? (last.t - history[0].t) / 60000 : 0;
    status.textContent = last
      ? `Scraping /metrics every ${SCRAPE_MS / 1000} s · ${history.length} window${history.length === 1 ? '' : 's'} over ${span.toFixed(1)} min kept in this page · last window ${last.f.windowS.toFixed(1)} s at ${new Date(last.t).toLocaleTimeString()}${last.f.version ? ` · server ${last.f.version}` : ''}`
      : 'Waiting for two scrapes of /metrics…';
    replace(live, lastError ? errorBox(lastError, 'The last scrape failed') : null,
      last ? tiles(last.f) : null, charts(), last ? details(last.f) : null);
    if (Date.now() - modelsAt > 15000) refreshModels();
  }

  listener = render;
  start();
  render();
  await refreshModels();
  return () => { if (listener === render) listener = null; };
}
