// Pieces several views share: the readable error box (from the API's error
// body), the provenance panel of a stored image, the image card with its
// download link, and the hand-over of "use these settings again" to the
// playground.

import { h, dl, fmtNum, fmtSecs, fmtBytes, fmtTime, shortHash } from './dom.js';
import { imageUrl } from './api.js';

/**
 * A readable error from an `ApiError` (or any Error): the server's message,
 * then its code and the field at fault. `role=alert` so screen readers say
 * it at once.
 */
export function errorBox(err, title) {
  const box = h('div', { class: 'error', attrs: { role: 'alert' }, data: { code: err.code || '' } });
  let heading = title;
  if (!heading) {
    if (err.status === 403) heading = 'Not allowed with this API key';
    else if (err.status === 0) heading = 'The server could not be reached';
    else if (err.status >= 500) heading = 'The server failed';
    else if (err.status) heading = 'The server refused the request';
    else heading = 'Something went wrong';
  }
  box.append(h('strong', { text: heading }), h('p', { class: 'error-message', text: err.message || String(err) }));
  const details = [];
  if (err.code) details.push(`code ${err.code}`);
  if (err.param) details.push(`field ${err.param}`);
  if (err.status) details.push(`HTTP ${err.status}`);
  if (details.length) box.append(h('small', { text: details.join(' · ') }));
  return box;
}

/**
 * Marks the control named by the error's `param` as invalid (and focuses
 * it); clears earlier marks in `form`.
 */
export function markInvalid(form, err) {
  for (const el of form.querySelectorAll('[aria-invalid="true"]')) el.removeAttribute('aria-invalid');
  if (!err || !err.param) return;
  const control = form.querySelector(`[name="${CSS.escape(err.param)}"]`);
  if (control) {
    control.setAttribute('aria-invalid', 'true');
    control.focus();
  }
}

/** A one-line note for a section the key's scopes do not reach. */
export function scopeNote(scope, what) {
  return h('p', { class: 'note', text: `${what} needs an API key with the ${scope} scope; this key does not have it.` });
}

/** The moderation decision in words, from the record's `moderation`. */
function moderationText(record) {
  const m = record.moderation;
  const parts = [];
  if (m && m.nsfw) {
    const score = typeof m.nsfw.nsfw_score === 'number' ? ` (score ${m.nsfw.nsfw_score.toFixed(3)})` : '';
    parts.push(`${m.nsfw.action || 'checked'}${score}`);
  }
  if (m && m.memorization) {
    parts.push(m.memorization.near_copy ? `near-copy (distance ${m.memorization.nearest_distance})` : `no near-copy (distance ${m.memorization.nearest_distance})`);
  }
  return parts.length ? parts.join('; ') : 'not checked';
}

function c2paText(record) {
  if (record.c2pa === true) return 'signed C2PA manifest in the file';
  if (record.c2pa === false) return 'no C2PA manifest';
  return 'unknown (this server does not report it)';
}

/** The provenance panel of a stored image record. */
export function provenance(record, requestedSize) {
  const flags = record.flags && record.flags.length ? record.flags.join(', ') : 'none';
  return h('section', { class: 'prov', attrs: { 'aria-label': `Provenance of ${record.id}` } },
    h('h3', { text: 'Provenance' }),
    dl([
      ['Image', record.id],
      ['Seed', String(record.seed)],
      ['Model', record.model],
      ['Model version', h('code', { title: record.model_hash, text: shortHash(record.model_hash) })],
      ['Sampler', `${record.sampler} · ${record.schedule}`],
      ['Steps · guidance', `${record.steps} · ${fmtNum(record.guidance_scale, 1)}`],
      ['Size', requestedSize ? `${requestedSize} (file ${record.width}×${record.height})` : `${record.width}×${record.height}`],
      ['Watermark id', record.watermark_id ? h('code', { text: record.watermark_id }) : 'none (watermarking off)'],
      ['C2PA', c2paText(record)],
      ['Quality score', record.quality_score === null || record.quality_score === undefined ? 'not scored' : fmtNum(record.quality_score, 3)],
      ['Moderation', moderationText(record)],
      ['Flags', flags],
      ['Cost', `${fmtNum(record.cost, 6)} (${fmtSecs(record.device_seconds)} device)`],
      ['File', `${record.format}, ${fmtBytes(record.bytes)}`],
      ['SHA-256', h('code', { class: 'wrap', text: record.sha256 })],
      ['Created', fmtTime(record.created_at)],
      ['Job', record.job_id],
    ]));
}

/**
 * An <img> of stored image `id`, loaded through the API with the key;
 * `alt` is its prompt. Resolves the source in the background.
 */
export function storedImage(id, alt, cls = 'shot') {
  const img = h('img', { class: cls, alt: alt || '', decoding: 'async' });
  imageUrl(id).then((url) => { img.src = url; }).catch(() => { img.alt = `${alt || id} (could not load the image)`; img.classList.add('broken'); });
  return img;
}

/** A download link for stored image `record`. */
export function downloadLink(record) {
  // No href (not yet a link) until the bytes are here.
  const a = h('a', { class: 'button', text: 'Download', download: `${record.id}.${record.format === 'jpeg' ? 'jpg' : record.format}`, attrs: { 'aria-disabled': 'true' } });
  imageUrl(record.id).then((url) => { a.href = url; a.removeAttribute('aria-disabled'); }).catch(() => {});
  return a;
}

// Settings handed from a result or the gallery to the playground.
let pendingSettings = null;

/**
 * Opens the playground filled with `settings` (prompt, negative_prompt,
 * model, size, steps, guidance_scale, sampler, seed, n).
 */
export function reuseSettings(settings) {
  pendingSettings = settings;
  if (location.hash === '#/playground') window.dispatchEvent(new HashChangeEvent('hashchange'));
  else location.hash = '#/playground';
}

/** The settings waiting for the playground, once. */
export function takeSettings() {
  const s = pendingSettings;
  pendingSettings = null;
  return s;
}

/** A record's settings, the requested size preferred over the file's. */
export function settingsOf(record, size) {
  return {
    prompt: record.prompt,
    negative_prompt: record.negative_prompt,
    model: record.model,
    size: size || `${record.width}x${record.height}`,
    steps: record.steps,
    guidance_scale: record.guidance_scale,
    sampler: record.sampler,
    seed: record.seed,
    n: 1,
  };
}
