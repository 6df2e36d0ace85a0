// "Verify a file": a drop zone (and file picker) that sends an image to
// `POST /v1/watermark/detect` and shows what its invisible watermark and
// its C2PA manifest say, with a link to the stored image it names.

import { api } from './api.js';
import { h, dl, fmtNum, fmtTime, replace } from './dom.js';
import { errorBox } from './widgets.js';

let counter = 0;

function c2paPart(result) {
  if (result.c2pa_error) return h('span', { class: 'bad', text: `manifest unreadable: ${result.c2pa_error}` });
  const c = result.c2pa;
  if (c === undefined) return 'not checked by this server';
  if (!c) return 'no C2PA manifest';
  // `validation_state`: Trusted (intact, signed by this server's CA),
  // Valid (intact, signer not trusted here) or Invalid (changed after
  // signing).
  const state = c.validation_state || (c.valid ? 'Valid' : 'Invalid');
  const ok = state === 'Trusted' || state === 'Valid';
  const words = { Trusted: 'intact, signed by this server', Valid: 'intact, signer not trusted here', Invalid: 'INVALID: changed after signing' };
  const parts = [`${state} (${words[state] || 'see errors'})`];
  if (c.claim_generator) parts.push(`made by ${c.claim_generator}`);
  if (c.digital_source_type && /trainedAlgorithmicMedia/.test(c.digital_source_type)) parts.push('declared AI-generated');
  if (c.soft_binding) parts.push(`soft binding ${c.soft_binding}`);
  if (c.errors && c.errors.length) parts.push(`errors: ${c.errors.join(', ')}`);
  return h('span', { class: ok ? 'good' : 'bad', text: parts.join(' · ') });
}

function resultView(file, r) {
  const image = r.image
    ? h('a', { href: `#/gallery/${encodeURIComponent(r.image.id)}`, text: `${r.image.id} (${r.image.model}, ${fmtTime(r.image.created_at)})` })
    : (r.watermarked ? 'not an image you can see on this server' : '—');
  return h('div', { class: 'verify-result', attrs: { role: 'status' } },
    h('h4', { text: file.name || 'Uploaded image' }),
    dl([
      ['Watermark', r.watermarked ? h('span', { class: 'good', text: `found (${r.method})` }) : 'none found'],
      ['Watermark id', r.watermark_id ? h('code', { text: r.watermark_id }) : '—'],
      ['Confidence', r.confidence === null || r.confidence === undefined ? '—' : fmtNum(r.confidence, 3)],
      ['Stored image', image],
      ['C2PA', c2paPart(r)],
    ]));
}

/** The drop zone; its results appear below it. */
export function verifyPanel() {
  counter += 1;
  const id = `verify-file-${counter}`;
  const out = h('div', { class: 'verify-out', attrs: { 'aria-live': 'polite' } });
  const input = h('input', { type: 'file', id, accept: 'image/png,image/jpeg,image/webp', class: 'visually-hidden' });
  const zone = h('div', { class: 'drop', data: { drop: '' } },
    h('p', {}, 'Drop an image here, or ', h('label', { htmlFor: id, class: 'button', text: 'choose a file' }), input),
    h('small', { class: 'hint', text: 'PNG, JPEG or WebP, at least 96 pixels a side. Checks the invisible watermark and the C2PA manifest.' }));

  async function check(file) {
    replace(out, h('p', { class: 'status', text: `Checking ${file.name}…` }));
    try {
      const result = await api('/v1/watermark/detect', {
        method: 'POST', body: file, headers: { 'Content-Type': file.type || 'application/octet-stream' },
      });
      replace(out, resultView(file, result));
    } catch (e) {
      replace(out, errorBox(e));
    }
  }
  input.addEventListener('change', () => { if (input.files[0]) check(input.files[0]); input.value = ''; });
  zone.addEventListener('dragover', (e) => { e.preventDefault(); zone.classList.add('over'); });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (e) => {
    e.preventDefault();
    zone.classList.remove('over');
    const file = e.dataTransfer.files[0];
    if (file) check(file);
  });
  return h('section', { class: 'card verify', attrs: { 'aria-label': 'Verify a file' } }, h('h2', { text: 'Verify a file' }), zone, out);
}
