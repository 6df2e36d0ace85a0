// DOM helpers shared by every view: an element builder that only ever sets
// text (API strings such as prompts are user text, never HTML), and the
// formatters for times, sizes and ratios.

/**
 * Builds an element. `props` keys: `class`, `text`, `on` (event handlers),
 * `data` (dataset), `attrs` (attributes); any other key is set as a
 * property (`id`, `type`, `value`, `disabled`, `htmlFor`, …). Children may
 * be nodes, strings (text nodes), arrays, or null/false (skipped).
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null) continue;
    if (key === 'class') el.className = value;
    else if (key === 'text') el.textContent = value;
    else if (key === 'on') for (const [ev, fn] of Object.entries(value)) el.addEventListener(ev, fn);
    else if (key === 'data') Object.assign(el.dataset, value);
    else if (key === 'attrs') for (const [a, v] of Object.entries(value)) { if (v !== null && v !== undefined && v !== false) el.setAttribute(a, v === true ? '' : String(v)); }
    else el[key] = value;
  }
  append(el, children);
  return el;
}

/** Appends children as `h` takes them. */
export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Removes every child of `el`, then appends `children`. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** A labelled form field: `<div class=field><label/>control hint</div>`. */
export function field(label, control, hint) {
  const hintEl = hint ? h('small', { class: 'hint', id: `${control.id}-hint`, text: hint }) : null;
  if (hintEl) control.setAttribute('aria-describedby', hintEl.id);
  return h('div', { class: 'field' }, h('label', { htmlFor: control.id, text: label }), control, hintEl);
}

/** A `<dl>` from `[term, value]` pairs; values may be nodes or text. */
export function dl(pairs, cls = 'kv') {
  const list = h('dl', { class: cls });
  for (const [term, value] of pairs) {
    if (value === undefined) continue;
    list.append(h('dt', { text: term }), h('dd', {}, value === null || value === '' ? '—' : value));
  }
  return list;
}

/** Local date and time of a Unix-seconds timestamp. */
export function fmtTime(unix) {
  if (unix === null || unix === undefined) return '—';
  return new Date(unix * 1000).toLocaleString();
}

/** "12 s ago", "3 min ago", from Unix seconds. */
export function fmtAgo(unix) {
  if (!unix) return '—';
  const s = Math.max(0, Date.now() / 1000 - unix);
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return fmtTime(unix);
}

/** Bytes as B, kB, MB or GB (decimal units). */
export function fmtBytes(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return '—';
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0;
  let v = n;
  while (Math.abs(v) >= 1000 && i < units.length - 1) { v /= 1000; i += 1; }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

/** Seconds as "350 ms" or "2.40 s", as `easel top` prints them. */
export function fmtSecs(s) {
  if (s === null || s === undefined || Number.isNaN(s)) return '—';
  return s < 1 ? `${(s * 1000).toFixed(0)} ms` : `${s.toFixed(2)} s`;
}

/** A ratio as a percentage with one decimal. */
export function fmtPct(r) {
  if (r === null || r === undefined || Number.isNaN(r)) return '—';
  return `${(r * 100).toFixed(1)}%`;
}

/** A number with `digits` decimals, or a dash. */
export function fmtNum(x, digits = 2) {
  if (x === null || x === undefined || Number.isNaN(x)) return '—';
  return Number(x).toFixed(digits);
}

/** A short form of a content hash (`blake3:0123456789ab…`). */
export function shortHash(hash) {
  if (!hash) return '—';
  const [alg, hex] = hash.includes(':') ? hash.split(':', 2) : ['', hash];
  return `${alg ? `${alg}:` : ''}${hex.slice(0, 12)}…`;
}

/** A status badge (`ready`, `failed`, `queued`, …) styled by its value. */
export function badge(text) {
  return h('span', { class: `badge badge-${String(text).replace(/[^a-z_]/gi, '')}`, text });
}

// Column headings whose cells are numbers: right-aligned like the cells.
const NUMERIC = new Set(['Position', 'Pending', 'Good', 'Bad', 'Approval', 'Memory', 'In use', 'Failed', 'Share']);

/** A table's `<thead>` from column names; numeric columns align right. */
export function thead(names) {
  return h('thead', {}, h('tr', {}, names.map((x) => h('th', { scope: 'col', class: NUMERIC.has(x) ? 'num' : null, text: x }))));
}
