// The playground: a generation form (prompt, negative prompt, model, size,
// steps, guidance, sampler, seed, number of images, tier), submitted as a
// job (`POST /v1/jobs`) whose server-sent events drive a progress bar and
// the per-step previews; then the images with their provenance, download,
// "use these settings again" and a link to the gallery. Cancel deletes the
// job.

import { api } from './api.js';
import { h, field, replace } from './dom.js';
import { followJob } from './sse.js';
import { errorBox, markInvalid, provenance, storedImage, downloadLink, reuseSettings, takeSettings, settingsOf } from './widgets.js';

const SAMPLERS = ['euler', 'euler_ancestral', 'heun', 'dpmpp_2m', 'ddim', 'lcm'];
const MAX_PROMPT = 4000;

// Kept across visits to the tab: the last form values and the last seed.
let saved = null;
let lastSeed = null;
// Whether the server takes `preview_every_steps` on a job (older ones
// refuse unknown fields): learnt from the first refusal.
let previewsSupported = true;

function sizesFor(model) {
  const d = model && model.defaults;
  if (!d) return [];
  const out = new Set([d.size]);
  const m = d.size_multiple || 8;
  for (let s = m; s <= d.max_side; s *= 2) out.add(`${s}x${s}`);
  out.add(`${d.max_side}x${d.max_side}`);
  return [...out];
}

/** Mounts the playground in `root`. */
export async function mount(root) {
  const models = await api('/v1/models').catch((e) => ({ data: [], error: e }));
  const modelList = models.data || [];
  const defaultModel = modelList.find((m) => m.default) || modelList[0];

  const prompt = h('textarea', { id: 'pg-prompt', name: 'prompt', rows: 3, required: true, placeholder: 'a red fox in the snow', attrs: { autocomplete: 'off' } });
  const counter = h('small', { class: 'hint counter', attrs: { 'aria-live': 'polite' } });
  const negative = h('textarea', { id: 'pg-negative', name: 'negative_prompt', rows: 2, placeholder: 'blurry, text' });
  const model = h('select', { id: 'pg-model', name: 'model' },
    modelList.map((m) => h('option', { value: m.id, text: `${m.id}${m.state === 'ready' ? '' : ` (${m.state})`}`, selected: m === defaultModel })));
  const sizeList = h('datalist', { id: 'pg-size-list' });
  const size = h('input', { id: 'pg-size', name: 'size', type: 'text', placeholder: 'auto', attrs: { list: 'pg-size-list', inputmode: 'text', autocomplete: 'off', pattern: '\\s*(auto|\\d+\\s*x\\s*\\d+)?\\s*' } });
  const steps = h('input', { id: 'pg-steps', name: 'steps', type: 'number', min: 1, max: 150, step: 1 });
  const guidance = h('input', { id: 'pg-guidance', name: 'guidance_scale', type: 'number', min: 0, max: 50, step: 0.5 });
  const sampler = h('select', { id: 'pg-sampler', name: 'sampler' }, h('option', { value: '', text: 'default' }), SAMPLERS.map((s) => h('option', { value: s, text: s })));
  const seed = h('input', { id: 'pg-seed', name: 'seed', type: 'number', min: 0, max: 4294967295, step: 1, disabled: true, placeholder: 'random' });
  const random = h('input', { id: 'pg-random', type: 'checkbox', checked: true });
  const reuse = h('button', { type: 'button', id: 'pg-reuse', text: 'Reuse last seed', disabled: lastSeed === null });
  const n = h('input', { id: 'pg-n', name: 'n', type: 'number', min: 1, max: 10, step: 1, value: 1 });
  const tier = h('select', { id: 'pg-tier', name: 'tier' },
    h('option', { value: 'realtime', text: 'realtime' }), h('option', { value: 'batch', text: 'batch' }));
  const submit = h('button', { type: 'submit', class: 'primary', id: 'pg-generate', text: 'Generate' });
  const cancel = h('button', { type: 'button', id: 'pg-cancel', text: 'Cancel', disabled: true });

  const form = h('form', { class: 'card form-grid', id: 'pg-form', attrs: { 'aria-label': 'Generation settings' }, noValidate: true },
    h('div', { class: 'field span-2' }, h('label', { htmlFor: 'pg-prompt', text: 'Prompt' }), prompt, counter),
    h('div', { class: 'field span-2' }, h('label', { htmlFor: 'pg-negative', text: 'Negative prompt' }), negative),
    field('Model', model),
    h('div', { class: 'field' }, h('label', { htmlFor: 'pg-size', text: 'Size (W×H)' }), size, sizeList),
    field('Steps', steps),
    field('Guidance', guidance),
    field('Sampler', sampler),
    h('div', { class: 'field' }, h('label', { htmlFor: 'pg-seed', text: 'Seed' }), seed,
      h('div', { class: 'row tight' }, h('label', { class: 'check', htmlFor: 'pg-random' }, random, ' Random'), reuse)),
    field('Images', n),
    field('Tier', tier, 'realtime: ahead of batch work'),
    h('div', { class: 'row span-2' }, submit, cancel, h('small', { class: 'hint', text: 'Ctrl+Enter in the prompt generates.' })));

  const status = h('p', { class: 'status', id: 'pg-status', attrs: { role: 'status', 'aria-live': 'polite' }, text: 'Ready.' });
  const bar = h('progress', { id: 'pg-progress', max: 1, value: 0, attrs: { 'aria-label': 'Generation progress' } });
  const previews = h('div', { class: 'previews', id: 'pg-previews', attrs: { 'aria-label': 'Previews' } });
  const messages = h('div', { id: 'pg-messages' });
  const results = h('div', { class: 'results', id: 'pg-results' });
  const output = h('section', { class: 'card output', attrs: { 'aria-label': 'Results' } },
    h('h2', { text: 'Output' }), status, bar, messages, previews, results);

  replace(root, h('h1', { text: 'Playground' }), models.error ? errorBox(models.error) : null,
    h('div', { class: 'split' }, form, output));

  function modelInfo() { return modelList.find((m) => m.id === model.value); }
  function applyModelDefaults() {
    const m = modelInfo();
    const d = m && m.defaults;
    replace(sizeList, sizesFor(m).map((s) => h('option', { value: s })));
    size.placeholder = d ? `${d.size} (default)` : 'auto';
    steps.placeholder = d ? String(d.steps) : 'default';
    guidance.placeholder = d ? String(d.guidance_scale) : 'default';
    sampler.options[0].textContent = d ? `default (${d.sampler})` : 'default';
  }
  function updateCounter() {
    const len = prompt.value.length;
    counter.textContent = `${len} / ${MAX_PROMPT} characters`;
    counter.classList.toggle('over', len > MAX_PROMPT);
  }
  function setSeedMode(isRandom) {
    random.checked = isRandom;
    seed.disabled = isRandom;
  }
  function fill(s) {
    prompt.value = s.prompt || '';
    negative.value = s.negative_prompt || '';
    if (s.model && modelList.some((m) => m.id === s.model)) model.value = s.model;
    applyModelDefaults();
    size.value = s.size || '';
    steps.value = s.steps ?? '';
    guidance.value = s.guidance_scale ?? '';
    sampler.value = SAMPLERS.includes(s.sampler) ? s.sampler : '';
    n.value = s.n || 1;
    if (s.tier) tier.value = s.tier;
    if (s.seed !== null && s.seed !== undefined && s.seed !== '') { seed.value = s.seed; setSeedMode(false); } else setSeedMode(true);
    updateCounter();
  }
  function values() {
    return {
      prompt: prompt.value, negative_prompt: negative.value, model: model.value, size: size.value.trim(),
      steps: steps.value, guidance_scale: guidance.value, sampler: sampler.value,
      seed: random.checked ? '' : seed.value, n: n.value, tier: tier.value,
    };
  }

  model.addEventListener('change', applyModelDefaults);
  prompt.addEventListener('input', updateCounter);
  prompt.addEventListener('keydown', (e) => { if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); form.requestSubmit(); } });
  random.addEventListener('change', () => { setSeedMode(random.checked); if (!random.checked) seed.focus(); });
  reuse.addEventListener('click', () => { if (lastSeed !== null) { seed.value = lastSeed; setSeedMode(false); } });

  applyModelDefaults();
  const handed = takeSettings();
  if (handed) fill(handed);
  else if (saved) fill(saved);
  updateCounter();

  let controller = null;
  let currentJob = null;
  let pollTimer = null;

  function busy(on) {
    submit.disabled = on;
    cancel.disabled = !on;
    form.setAttribute('aria-busy', on ? 'true' : 'false');
  }

  cancel.addEventListener('click', async () => {
    if (!currentJob) return;
    cancel.disabled = true;
    status.textContent = 'Cancelling…';
    try { await api(`/v1/jobs/${encodeURIComponent(currentJob)}`, { method: 'DELETE' }); } catch (e) { messages.append(errorBox(e)); }
  });

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    saved = values();
    replace(messages);
    markInvalid(form, null);
    if (!prompt.value.trim()) {
      const err = { message: 'Write a prompt first: it says what to draw.', param: 'prompt' };
      messages.append(errorBox(err, 'Missing prompt'));
      markInvalid(form, err);
      return;
    }
    const body = { prompt: prompt.value, model: model.value || undefined, tier: tier.value };
    if (negative.value.trim()) body.negative_prompt = negative.value;
    if (size.value.trim()) body.size = size.value.trim().replace(/\s+/g, '');
    if (steps.value !== '') body.steps = Number(steps.value);
    if (guidance.value !== '') body.guidance_scale = Number(guidance.value);
    if (sampler.value) body.sampler = sampler.value;
    if (!random.checked && seed.value !== '') body.seed = Number(seed.value);
    if (n.value !== '') body.n = Number(n.value);
    const info = modelInfo();
    const totalSteps = body.steps || (info && info.defaults && info.defaults.steps) || 8;
    if (previewsSupported) body.preview_every_steps = Math.max(1, Math.floor(totalSteps / 8));

    busy(true);
    replace(previews);
    replace(results);
    bar.max = 1; bar.value = 0;
    bar.removeAttribute('value');
    status.textContent = 'Submitting…';
    let job;
    try {
      try {
        job = await api('/v1/jobs', { method: 'POST', body });
      } catch (err) {
        if (err.code === 'unsupported_parameter' && /preview_every_steps/.test(err.message) && body.preview_every_steps) {
          previewsSupported = false;
          delete body.preview_every_steps;
          job = await api('/v1/jobs', { method: 'POST', body });
        } else throw err;
      }
    } catch (err) {
      busy(false);
      bar.value = 0;
      status.textContent = 'Not generated.';
      messages.append(errorBox(err));
      markInvalid(form, err);
      return;
    }
    currentJob = job.id;
    lastSeed = job.params.seed;
    reuse.disabled = false;
    status.textContent = `Job ${job.id} queued (seed ${job.params.seed}).`;
    status.dataset.jobId = job.id;
    controller = new AbortController();
    // While queued, poll for the queue position the events do not carry.
    let started = false;
    pollTimer = setInterval(async () => {
      if (started) return;
      try {
        const j = await api(`/v1/jobs/${encodeURIComponent(job.id)}`);
        if (!started && j.status === 'queued') {
          status.textContent = `Job ${job.id} queued${j.queue_position ? `, position ${j.queue_position}` : ''}${j.hold_reason ? ` (held: ${j.hold_reason})` : ''}.`;
        }
      } catch { /* the stream reports failures */ }
    }, 1000);
    let done;
    try {
      done = await followJob(job.id, (ev) => {
        if (ev.type === 'started') { started = true; status.textContent = `Job ${job.id} running.`; }
        if (ev.type === 'progress') {
          started = true;
          bar.max = ev.total; bar.value = ev.step;
          status.textContent = `Step ${ev.step} of ${ev.total}`;
          if (ev.previews && ev.previews.length) {
            replace(previews, ev.previews.filter((src) => src.startsWith('data:image/'))
              .map((src, i) => h('img', { src, class: 'preview', alt: `Preview ${i + 1} at step ${ev.step}` })));
          }
        }
      }, controller.signal);
    } catch (err) {
      clearInterval(pollTimer);
      busy(false);
      if (err.name !== 'AbortError') messages.append(errorBox(err));
      return;
    }
    clearInterval(pollTimer);
    busy(false);
    currentJob = null;
    if (done.type === 'cancelled') {
      status.textContent = `Job ${job.id} cancelled.`;
      return;
    }
    if (done.type === 'failed') {
      status.textContent = `Job ${job.id} failed.`;
      messages.append(errorBox({ message: done.message, code: done.code }, 'The job failed'));
      return;
    }
    bar.max = 1; bar.value = 1;
    status.textContent = `Done: ${done.image_ids.length} image${done.image_ids.length === 1 ? '' : 's'} (job ${job.id}).`;
    replace(previews);
    for (const id of done.image_ids) {
      try {
        const record = await api(`/v1/images/${encodeURIComponent(id)}`);
        results.append(resultCard(record, job.params.size));
      } catch (err) {
        results.append(errorBox(err));
      }
    }
  });

  return () => {
    saved = values();
    clearInterval(pollTimer);
    if (controller) controller.abort();
  };
}

function resultCard(record, requestedSize) {
  return h('article', { class: 'result', data: { imageId: record.id } },
    h('figure', {}, storedImage(record.id, record.prompt, 'shot'),
      h('figcaption', { text: `Seed ${record.seed}` })),
    h('div', { class: 'row' },
      downloadLink(record),
      h('button', { type: 'button', text: 'Use these settings again', on: { click: () => reuseSettings(settingsOf(record, requestedSize)) } }),
      h('a', { class: 'button', href: `#/gallery/${encodeURIComponent(record.id)}`, text: 'Open in gallery' })),
    provenance(record, requestedSize));
}
