// The gallery: the caller's stored images, newest first, a page at a time
// (`GET /v1/images`), filtered by model, prompt text and date; and the
// detail view of one image (`#/gallery/<id>`): the picture, its provenance,
// the full record, its A1111 `parameters`, download, reuse, delete, and
// the "verify a file" drop zone.

import { api, query, forgetImage } from './api.js';
import { h, field, dl, replace, fmtTime, fmtAgo } from './dom.js';
import { errorBox, provenance, storedImage, downloadLink, reuseSettings, settingsOf } from './widgets.js';
import { verifyPanel } from './verify.js';

const PAGE = 24;
// The filters, kept across visits to the tab.
let filters = { model: '', prompt: '', from: '', to: '' };

function dayStart(value) { return value ? Math.floor(new Date(`${value}T00:00:00`).getTime() / 1000) : ''; }
function dayEnd(value) { return value ? Math.floor(new Date(`${value}T23:59:59`).getTime() / 1000) + 1 : ''; }

/** Mounts the gallery (list) or one image's details when `id` is given. */
export async function mount(root, id) {
  if (id) return detail(root, id);
  return list(root);
}

async function list(root) {
  const models = await api('/v1/models').catch(() => ({ data: [] }));
  const model = h('select', { id: 'gal-model', name: 'model' }, h('option', { value: '', text: 'All models' }),
    (models.data || []).map((m) => h('option', { value: m.id, text: m.id })));
  const prompt = h('input', { id: 'gal-prompt', name: 'prompt', type: 'search', placeholder: 'words in the prompt' });
  const from = h('input', { id: 'gal-from', name: 'created_after', type: 'date' });
  const to = h('input', { id: 'gal-to', name: 'created_before', type: 'date' });
  model.value = filters.model; prompt.value = filters.prompt; from.value = filters.from; to.value = filters.to;
  const form = h('form', { class: 'card filters', attrs: { role: 'search', 'aria-label': 'Filter images' } },
    field('Model', model), field('Prompt contains', prompt), field('From', from), field('To', to),
    h('div', { class: 'row' }, h('button', { type: 'submit', class: 'primary', text: 'Filter' }),
      h('button', { type: 'reset', text: 'Clear' })));
  const grid = h('ul', { class: 'grid', id: 'gal-grid', attrs: { 'aria-label': 'Images' } });
  const more = h('button', { type: 'button', id: 'gal-more', text: 'Load more', hidden: true });
  const info = h('p', { class: 'status', attrs: { role: 'status' } });
  const messages = h('div');
  replace(root, h('h1', { text: 'Gallery' }), form, messages, info, grid, h('div', { class: 'row center' }, more), verifyPanel());

  let cursor = null;
  let shown = 0;
  async function load(reset) {
    if (reset) { cursor = null; shown = 0; replace(grid); replace(messages); }
    more.disabled = true;
    info.textContent = 'Loading…';
    try {
      const page = await api(`/v1/images${query({
        limit: PAGE, cursor, model: filters.model, prompt: filters.prompt,
        created_after: dayStart(filters.from), created_before: dayEnd(filters.to),
      })}`);
      for (const record of page.data) grid.append(tile(record));
      shown += page.data.length;
      cursor = page.next_cursor;
      more.hidden = !page.has_more;
      info.textContent = shown ? `${shown} image${shown === 1 ? '' : 's'}${page.has_more ? ' so far' : ''}, newest first.` : 'No images match.';
    } catch (e) {
      info.textContent = '';
      messages.append(errorBox(e));
    } finally {
      more.disabled = false;
    }
  }
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    filters = { model: model.value, prompt: prompt.value.trim(), from: from.value, to: to.value };
    load(true);
  });
  form.addEventListener('reset', () => {
    filters = { model: '', prompt: '', from: '', to: '' };
    setTimeout(() => load(true));
  });
  more.addEventListener('click', () => load(false));
  await load(true);
}

function tile(record) {
  return h('li', { class: 'tile', data: { imageId: record.id } },
    h('a', { href: `#/gallery/${encodeURIComponent(record.id)}`, attrs: { 'aria-label': `${record.prompt} (${record.id})` } },
      storedImage(record.id, '', 'thumb'),
      h('span', { class: 'tile-prompt', text: record.prompt }),
      h('small', { text: `${record.model} · ${fmtAgo(record.created_at)}` })));
}

async function detail(root, id) {
  const back = h('a', { href: '#/gallery', class: 'back', text: '← All images' });
  let record;
  try {
    record = await api(`/v1/images/${encodeURIComponent(id)}`);
  } catch (e) {
    replace(root, back, h('h1', { text: 'Image' }), errorBox(e));
    return;
  }
  // The generated size (the file may be enlarged for the watermark).
  const size = record.size;
  const messages = h('div');
  const del = h('button', { type: 'button', class: 'danger', text: 'Delete', disabled: record.legal_hold, title: record.legal_hold ? 'Under legal hold' : '' });
  del.addEventListener('click', async () => {
    if (!window.confirm(`Delete ${record.id}? Its file and record are removed.`)) return;
    try {
      await api(`/v1/images/${encodeURIComponent(record.id)}`, { method: 'DELETE' });
      forgetImage(record.id);
      location.hash = '#/gallery';
    } catch (e) { messages.append(errorBox(e)); }
  });
  const rest = Object.entries(record).filter(([k]) => !['parameters', 'url'].includes(k))
    .map(([k, v]) => [k, typeof v === 'object' && v !== null ? h('code', { class: 'wrap', text: JSON.stringify(v) }) : String(v ?? '—')]);
  replace(root, back,
    h('h1', { class: 'prompt-title', text: record.prompt }),
    messages,
    h('div', { class: 'split' },
      h('div', { class: 'card' },
        h('figure', { id: 'gal-detail-image' }, storedImage(record.id, record.prompt, 'shot large'),
          h('figcaption', { text: `${record.model} · seed ${record.seed} · ${fmtTime(record.created_at)}` })),
        h('div', { class: 'row' }, downloadLink(record),
          h('button', { type: 'button', text: 'Use these settings again', on: { click: () => reuseSettings(settingsOf(record, size)) } }),
          del)),
      provenance(record, size)),
    h('section', { class: 'card', attrs: { 'aria-labelledby': 'gal-params-h' } },
      h('h2', { id: 'gal-params-h', text: 'A1111 parameters' }),
      record.parameters
        ? h('pre', { class: 'params', id: 'gal-params', text: record.parameters })
        : h('p', { class: 'note', text: 'This server does not report the parameters text.' })),
    h('details', { class: 'card' }, h('summary', { text: 'Full record' }), dl(rest, 'kv record')),
    verifyPanel());
}
