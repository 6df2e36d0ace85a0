// End-to-end test of Easel's web UI in headless Chromium (Debian's
// `chromium`, driven by playwright-core; no browser download).
//
//   EASEL_BASE_URL     the running `easel serve` (required), e.g. http://127.0.0.1:18080
//   EASEL_SCREENSHOTS  folder for the screenshots (default: a temporary folder)
//   EASEL_CHROMIUM     the browser (default /usr/bin/chromium)
//
// The server must be open (loopback, no API keys) when this starts: the
// last steps create keys, which turns authentication on. crates/cli/tests/
// ui.rs starts such a server on the bundled model and runs this script.
// Each step prints `ok <step>`; the first failure prints `FAILED <step>:
// <why>`, saves a screenshot named after the step and exits 1.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const BASE = (process.env.EASEL_BASE_URL || '').replace(/\/$/, '');
const SHOTS = process.env.EASEL_SCREENSHOTS || fs.mkdtempSync(path.join(os.tmpdir(), 'easel-ui-'));
const BROWSER = process.env.EASEL_CHROMIUM || '/usr/bin/chromium';
const VIEWPORT = { width: 1280, height: 800 };
const T = 30_000;

if (!BASE) {
  console.error('FAILED setup: set EASEL_BASE_URL to a running easel serve');
  process.exit(2);
}
fs.mkdirSync(SHOTS, { recursive: true });

let browser;
let page; // the page a failure screenshot is taken of
const problems = []; // console errors, CSP violations, uncaught exceptions

class StepError extends Error {}
function check(cond, message) {
  if (!cond) throw new StepError(message);
}

async function step(name, fn) {
  const started = Date.now();
  try {
    await fn();
  } catch (e) {
    console.error(`FAILED ${name}: ${e.message}`);
    if (page) {
      try { await page.screenshot({ path: path.join(SHOTS, `FAILED-${name.replace(/[^a-z0-9]+/gi, '-')}.png`) }); } catch { /* page gone */ }
    }
    if (browser) await browser.close().catch(() => {});
    process.exit(1);
  }
  console.log(`ok ${name} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
}

async function shot(p, name) {
  await p.screenshot({ path: path.join(SHOTS, `${name}.png`) });
  console.log(`   screenshot ${name}.png`);
}

/** An API call from Node (the server is open until the auth steps). */
async function apiCall(method, route, body, key) {
  const headers = {};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (key) headers.Authorization = `Bearer ${key}`;
  const r = await fetch(`${BASE}${route}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  if (!r.ok) throw new StepError(`${method} ${route} answered ${r.status}: ${text.slice(0, 300)}`);
  return json;
}

/** An API call that may fail: its status and parsed body. */
async function apiAnswer(method, route, body, key) {
  const headers = {};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (key) headers.Authorization = `Bearer ${key}`;
  const r = await fetch(`${BASE}${route}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: r.status, json, text };
}

/**
 * A copy of the model folder `from` whose UNet header gains metadata: the
 * same weights under a new content hash (the hash covers the weight files'
 * bytes), so it registers as a new version. Like model_variant in
 * crates/server/tests/api/helpers.rs.
 */
function modelVariant(from, variant) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'easel-ui-candidate-'));
  // The engine's hash cache belongs to the original's files.
  fs.cpSync(from, dir, { recursive: true, filter: (src) => !path.basename(src).startsWith('.easel') });
  const file = path.join(dir, 'unet/diffusion_pytorch_model.safetensors');
  const bytes = fs.readFileSync(file);
  const len = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + len).toString('utf8'));
  header.__metadata__ = { ...(header.__metadata__ || {}), variant };
  // Padded with spaces to a multiple of 8, so the tensors stay aligned.
  let json = Buffer.from(JSON.stringify(header));
  json = Buffer.concat([json, Buffer.alloc((8 - (json.length % 8)) % 8, ' ')]);
  const head = Buffer.alloc(8);
  head.writeBigUInt64LE(BigInt(json.length));
  fs.writeFileSync(file, Buffer.concat([head, json, bytes.subarray(8 + len)]));
  return dir;
}

async function waitJob(id, pred, what, ms = 60_000) {
  const until = Date.now() + ms;
  for (;;) {
    const job = await apiCall('GET', `/v1/jobs/${id}`);
    if (pred(job)) return job;
    if (Date.now() > until) throw new StepError(`job ${id} never became ${what} (status ${job.status})`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Fails unless every form control on the page has a label. */
async function checkLabels(p, where) {
  const bare = await p.$$eval('input, select, textarea', (els) => els
    .filter((el) => el.type !== 'hidden' && !(el.labels && el.labels.length) && !el.getAttribute('aria-label') && !el.getAttribute('aria-labelledby'))
    .map((el) => el.id || el.name || el.outerHTML.slice(0, 60)));
  check(bare.length === 0, `unlabelled controls on ${where}: ${bare.join(', ')}`);
}

async function newPage(options = {}) {
  const context = await browser.newContext({ viewport: VIEWPORT, colorScheme: 'light', ...options });
  const p = await context.newPage();
  p.on('console', (msg) => {
    const text = msg.text();
    // A 4xx the UI asked for on purpose is logged by Chromium as a failed
    // resource: only script errors and policy violations count.
    if (/Content.Security.Policy|Refused to/i.test(text) || (msg.type() === 'error' && !/Failed to load resource/.test(text))) {
      problems.push(`console ${msg.type()}: ${text}`);
    }
  });
  p.on('pageerror', (e) => problems.push(`uncaught: ${e.message}`));
  page = p;
  return p;
}

// ---------------------------------------------------------------------------

await step('metrics arithmetic agrees with easel top', async () => {
  // The same fixtures and expectations as crates/cli/src/top/frame.rs.
  const m = await import(path.join(root, 'crates/server/ui/metrics.js'));
  const fx = (f) => fs.readFileSync(path.join(root, 'crates/cli/tests/fixtures/top', f), 'utf8');
  const f = m.frameBetween(m.parseExposition(fx('before.prom')), m.parseExposition(fx('after.prom')), 10);
  const near = (a, b) => a !== null && Math.abs(a - b) < 1e-9;
  check(f.httpPerS === 3 && f.httpByClass['2xx'] === 2 && f.httpByClass['4xx'] === 1, `HTTP rates ${JSON.stringify(f.httpByClass)}`);
  check(f.successRatio === 0.9, `success ratio ${f.successRatio}`);
  check(near(f.errorsByCode.engine_failed, 0.1) && near(f.errorsByCode.image_rejected, 0.1), `errors ${JSON.stringify(f.errorsByCode)}`);
  check(near(f.imagesPerS, 1.8) && f.costPerImage === 0.5, `images ${f.imagesPerS}, cost ${f.costPerImage}`);
  const rt = f.tiers[0];
  check(near(rt.p50, 0.5 + 0.5 * 9 / 10) && near(rt.p95, 1 + (17.1 - 10) / 8), `realtime P50 ${rt.p50} P95 ${rt.p95}`);
  check(rt.queueDepth === 3 && rt.oldestAge === 4.5 && f.tiers[1].p50 === null, 'queue gauges');
  check(f.stagesP95[0][0] === 'denoise_step', `slowest stage ${f.stagesP95[0]}`);
  const om = m.frameBetween(m.emptyExposition(), m.parseExposition(fx('openmetrics.txt')), 1);
  check(om.version === '0.1.0' && om.httpPerS === 9 && near(om.successRatio, 6 / 7) && om.tiers[0].p50 === 0.375, 'OpenMetrics frame');
  check(m.quantile(0.95, [[1, 0], [10, 10], [15, 20], [Infinity, 20]]) === 14.5, 'quantile interpolation');
});

await step('the event-stream parser reads split chunks, CRLF, comments and multi-line data', async () => {
  const { parseEvents } = await import(path.join(root, 'crates/server/ui/sse.js'));
  const chunks = [': keep-alive\r\n\r\nevent: prog', 'ress\r\ndata: {"step":1,', '"total":2}\r', '\n\r\n', 'data: a\ndata: b\n\nevent: completed\ndata: {}\n\n'];
  const body = new ReadableStream({ start(c) { for (const x of chunks) c.enqueue(new TextEncoder().encode(x)); c.close(); } });
  const got = [];
  for await (const e of parseEvents(body)) got.push(e);
  check(JSON.stringify(got) === JSON.stringify([
    { event: 'progress', data: '{"step":1,"total":2}' },
    { event: 'message', data: 'a\nb' },
    { event: 'completed', data: '{}' },
  ]), `parsed ${JSON.stringify(got)}`);
});

await step('launch chromium', async () => {
  browser = await chromium.launch({ executablePath: BROWSER, args: ['--no-sandbox'] });
});

let p;
await step('page loads with a strict CSP and the open principal', async () => {
  const r = await fetch(`${BASE}/`);
  check(r.ok, `GET / answered ${r.status}`);
  const csp = r.headers.get('content-security-policy') || '';
  check(/script-src 'self'/.test(csp) && !/unsafe-inline/.test(csp), `Content-Security-Policy is ${JSON.stringify(csp)}`);
  p = await newPage();
  await p.goto(`${BASE}/`);
  await p.waitForSelector('h1:text("Playground")', { timeout: T });
  await p.waitForSelector('#pg-model option', { state: 'attached', timeout: T });
  await checkLabels(p, 'the playground');
  const who = await p.textContent('#who');
  check(/Open server/.test(who), `header says ${JSON.stringify(who)}`);
  check(await p.isVisible('#nav a[data-route="admin"]'), 'Admin tab hidden on an open server');
});

await step('keyboard: skip link and tabs are reachable with visible focus', async () => {
  await p.keyboard.press('Tab');
  check(await p.evaluate(() => document.activeElement.classList.contains('skip')), 'first Tab does not reach the skip link');
  await p.keyboard.press('Tab');
  await p.keyboard.press('Tab');
  const focused = await p.evaluate(() => {
    const el = document.activeElement;
    return { text: el.textContent, outline: getComputedStyle(el).outlineStyle };
  });
  check(focused.text === 'Playground' && focused.outline !== 'none', `third Tab focuses ${JSON.stringify(focused)}`);
});

await step('a 400 from the API is shown as a readable message', async () => {
  await p.fill('#pg-prompt', 'x'.repeat(4001));
  await p.click('#pg-generate');
  const box = await p.waitForSelector('#pg-messages .error', { timeout: T });
  const text = await box.textContent();
  check(/4000/.test(text) && /prompt/i.test(text), `error box says ${JSON.stringify(text)}`);
  check(!/\{"error"/.test(text), 'the error box shows raw JSON');
  check(await p.getAttribute('#pg-prompt', 'aria-invalid') === 'true', 'the prompt is not marked invalid');
  // An invalid size names the size field.
  await p.fill('#pg-prompt', 'a cat');
  await p.fill('#pg-size', '33x33');
  await p.click('#pg-generate');
  await p.waitForFunction(() => document.querySelector('#pg-messages .error')?.dataset.code?.includes('size'), null, { timeout: T });
  check(await p.getAttribute('#pg-size', 'aria-invalid') === 'true', 'the size field is not marked invalid');
  await shot(p, 'playground-error');
  await p.fill('#pg-size', '');
});

let imageId;
let record;
await step('generate from the playground: progress, previews, image, provenance', async () => {
  await p.fill('#pg-prompt', 'a smiling yellow sun');
  await p.fill('#pg-negative', 'blurry');
  await p.uncheck('#pg-random');
  await p.fill('#pg-seed', '42');
  await p.fill('#pg-steps', '12');
  // Record every status text and preview the page shows along the way.
  await p.evaluate(() => {
    window.seen = { statuses: [], previews: 0, progress: 0 };
    const status = document.getElementById('pg-status');
    new MutationObserver(() => window.seen.statuses.push(status.textContent)).observe(status, { childList: true, characterData: true, subtree: true });
    new MutationObserver(() => { window.seen.previews = Math.max(window.seen.previews, document.querySelectorAll('#pg-previews img').length); })
      .observe(document.getElementById('pg-previews'), { childList: true });
    const bar = document.getElementById('pg-progress');
    new MutationObserver(() => { if (bar.value > 0 && bar.value < bar.max) window.seen.progress += 1; }).observe(bar, { attributes: true });
  });
  await p.click('#pg-generate');
  await p.waitForSelector('#pg-results .result img.shot[src^="blob:"]', { timeout: 120_000 });
  await p.waitForFunction(() => { const i = document.querySelector('#pg-results img.shot'); return i && i.complete && i.naturalWidth > 0; }, null, { timeout: T });
  const seen = await p.evaluate(() => window.seen);
  check(seen.statuses.some((s) => /queued/.test(s)), `no queued status among ${JSON.stringify(seen.statuses)}`);
  check(seen.statuses.some((s) => /^Step \d+ of 12$/.test(s)), `no step progress among ${JSON.stringify(seen.statuses)}`);
  check(seen.progress > 0, 'the progress bar never moved');
  check(seen.previews > 0, 'no per-step preview was shown');
  imageId = await p.getAttribute('#pg-results .result', 'data-image-id');
  check(/^img_/.test(imageId || ''), `result has image id ${imageId}`);
  record = await apiCall('GET', `/v1/images/${imageId}`);
  const prov = await p.textContent('#pg-results .prov');
  for (const want of ['Seed42', 'Modeleasel-emoji', 'Model versionblake3:', 'Watermark id', 'C2PA', 'Quality score', 'Moderation', 'Flags']) {
    check(prov.replace(/\s+/g, '').includes(want.replace(/\s+/g, '')), `provenance lacks ${want}: ${prov}`);
  }
  if (record.watermark_id) check(prov.includes(record.watermark_id), 'provenance lacks the watermark id');
  check(prov.includes(record.c2pa ? 'signed C2PA manifest' : 'no C2PA manifest'), 'provenance C2PA status disagrees with the record');
  const href = await p.getAttribute('#pg-results .result a[download]', 'href');
  check(href && href.startsWith('blob:'), `download link is ${href}`);
  await shot(p, 'playground');
});

await step('use these settings again fills the form', async () => {
  await p.fill('#pg-prompt', 'something else');
  await p.click('#pg-results button:text("Use these settings again")');
  await p.waitForFunction(() => document.getElementById('pg-prompt')?.value === 'a smiling yellow sun', null, { timeout: T });
  check(await p.inputValue('#pg-seed') === '42' && !(await p.isChecked('#pg-random')), 'seed not reused');
  check(await p.inputValue('#pg-steps') === '12', 'steps not reused');
});

await step('cancel a running generation from the playground, then reuse its seed', async () => {
  // A long job (150 steps, 4 images) with a random seed, cancelled while
  // its steps are running.
  await p.fill('#pg-prompt', 'a generation to cancel');
  await p.check('#pg-random');
  await p.fill('#pg-steps', '150');
  await p.fill('#pg-n', '4');
  await p.fill('#pg-size', '64x64');
  check(await p.isDisabled('#pg-cancel'), 'Cancel is enabled before anything runs');
  await p.click('#pg-generate');
  await p.waitForFunction(() => /^Step \d+ of 150$/.test(document.getElementById('pg-status')?.textContent || ''), null, { timeout: 60_000 });
  const jobId = await p.getAttribute('#pg-status', 'data-job-id');
  check(/^job_/.test(jobId || ''), `the status names job ${jobId}`);
  check(await p.isEnabled('#pg-cancel') && await p.isDisabled('#pg-generate'), 'Cancel is not the enabled button while the job runs');
  await p.click('#pg-cancel');
  await p.waitForFunction((id) => document.getElementById('pg-status')?.textContent === `Job ${id} cancelled.`, jobId, { timeout: 30_000 });
  const job = await apiCall('GET', `/v1/jobs/${jobId}`);
  check(job.status === 'cancelled', `the job is ${job.status} after Cancel`);
  check(!(await p.$('#pg-results .result')), 'a cancelled job shows results');
  check(await p.isDisabled('#pg-cancel') && await p.isEnabled('#pg-generate'), 'the buttons are not reset after the cancel');
  // "Reuse last seed": the seed the server drew for that job, fixed.
  check(await p.isChecked('#pg-random') && await p.isDisabled('#pg-seed'), 'the seed is not random before the reuse');
  await p.click('#pg-reuse');
  const seed = await p.inputValue('#pg-seed');
  check(seed === String(job.params.seed), `Reuse last seed gave ${seed}, the job's seed is ${job.params.seed}`);
  check(!(await p.isChecked('#pg-random')) && await p.isEnabled('#pg-seed'), 'the reused seed is not fixed in the form');
  // Back to a small request for the steps that follow.
  await p.fill('#pg-steps', '12');
  await p.fill('#pg-n', '1');
  await p.fill('#pg-size', '');
});

await step('find the image in the gallery and open its details', async () => {
  await p.goto(`${BASE}/#/gallery`);
  await p.waitForSelector(`.tile[data-image-id="${imageId}"] img[src^="blob:"]`, { timeout: T });
  await p.fill('#gal-prompt', 'SMILING');
  await p.click('form[role=search] button[type=submit]');
  await p.waitForSelector(`.tile[data-image-id="${imageId}"]`, { timeout: T });
  await checkLabels(p, 'the gallery');
  await shot(p, 'gallery');
  await p.selectOption('#gal-model', 'easel-emoji');
  // Dates as the page reads them: the browser's local calendar.
  const localDay = (offsetDays) => p.evaluate((o) => {
    const d = new Date(Date.now() + o * 86400e3);
    return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
  }, offsetDays);
  await p.fill('#gal-from', await localDay(0));
  await p.click('form[role=search] button[type=submit]');
  await p.waitForSelector(`.tile[data-image-id="${imageId}"]`, { timeout: T });
  await p.fill('#gal-prompt', 'no-such-prompt-text');
  await p.click('form[role=search] button[type=submit]');
  await p.waitForSelector('text=No images match.', { timeout: T });
  await p.fill('#gal-prompt', '');
  await p.fill('#gal-from', await localDay(1));
  await p.click('form[role=search] button[type=submit]');
  await p.waitForFunction(() => /No images match/.test(document.querySelector('.view-gallery .status')?.textContent || ''), null, { timeout: T });
  await p.click('form[role=search] button[type=reset]');
  await p.waitForSelector(`.tile[data-image-id="${imageId}"]`, { timeout: T });
  await p.click(`.tile[data-image-id="${imageId}"] a`);
  await p.waitForSelector('#gal-detail-image img[src^="blob:"]', { timeout: T });
  const params = await p.textContent('#gal-params');
  check(/Seed: 42/.test(params) && /Steps: 12/.test(params), `parameters text is ${JSON.stringify(params)}`);
  const prov = await p.textContent('.prov');
  check(prov.includes(imageId), 'detail provenance lacks the image id');
  await shot(p, 'gallery-detail');
});

await step('verify a file: watermark and C2PA of the downloaded image', async () => {
  const bytes = Buffer.from(await (await fetch(`${BASE}/v1/images/${imageId}/content`)).arrayBuffer());
  await p.setInputFiles('.verify input[type=file]', { name: `${imageId}.png`, mimeType: 'image/png', buffer: bytes });
  const result = await p.waitForSelector('.verify-result, .verify-out .error', { timeout: 60_000 });
  const text = await result.textContent();
  if (record.watermark_id) {
    check(text.includes(record.watermark_id) && text.includes(imageId), `verify result lacks the watermark or image: ${text}`);
  } else {
    check(/none found|too small|at least/.test(text), `unexpected verify result without a watermark: ${text}`);
  }
  if (record.c2pa) check(/Trusted|Valid/.test(text), `a signed image's C2PA not shown valid: ${text}`);
  await p.$eval('.verify', (el) => el.scrollIntoView({ block: 'end' }));
  await shot(p, 'gallery-verify');
});

await step('cancel a queued job from the jobs page', async () => {
  // One worker: a long job runs, so the next one waits in the queue.
  const long = await apiCall('POST', '/v1/jobs', { prompt: 'a long running job', steps: 150, n: 4, size: '64x64', tier: 'batch' });
  await waitJob(long.id, (j) => j.status === 'running', 'running');
  // Realtime, so the tier column has both tiers to tell apart.
  const queued = await apiCall('POST', '/v1/jobs', { prompt: 'a job to cancel', steps: 8, tier: 'realtime' });
  // A small batch (a prompt template of two lines), queued behind them.
  const batch = await apiCall('POST', '/v1/batches', {
    endpoint: '/v1/images/generations', completion_window: '24h',
    template: { prompt: 'a {animal} emoji', variables: { animal: ['cat', 'dog'] }, body: { steps: 2 } },
  });
  const tierOf = async (sel) => (await p.textContent(`${sel} td.tier`)).trim();
  try {
    await p.goto(`${BASE}/#/jobs`);
    const row = `tr[data-job-id="${queued.id}"]`;
    await p.waitForSelector(`${row}[data-status="queued"] button:text("Cancel")`, { timeout: T });
    const position = (await p.textContent(`${row} td.position`)).trim();
    check(position === '1', `queue position shown is ${JSON.stringify(position)}`);
    await p.waitForSelector(`tr[data-job-id="${long.id}"][data-status="running"] progress`, { timeout: T });
    // The tier column: each job's own tier, under the Tier heading.
    const tierColumn = await p.$eval('#jobs-active-h + .table-wrap table', (t) => ({
      heading: [...t.querySelectorAll('thead th')].findIndex((th) => th.textContent === 'Tier'),
      cells: [...t.querySelectorAll('tbody tr')].map((tr) => tr.querySelector('td.tier')?.cellIndex),
    }));
    check(tierColumn.heading >= 0 && tierColumn.cells.every((i) => i === tierColumn.heading), `tier cells ${JSON.stringify(tierColumn)} are not under the Tier heading`);
    check(await tierOf(`tr[data-job-id="${long.id}"]`) === 'batch', 'the running job is not shown in the batch tier');
    check(await tierOf(row) === 'realtime', 'the queued job is not shown in the realtime tier');
    await p.waitForSelector(`tr[data-batch-id="${batch.id}"] progress`, { timeout: T });
    await shot(p, 'jobs');
    await p.click(`${row} button:text("Cancel")`);
    await waitJob(queued.id, (j) => j.status === 'cancelled', 'cancelled', 15_000);
    await p.waitForSelector(`${row}[data-status="cancelled"]`, { timeout: T });
    check(!(await p.$(`${row}[data-status="queued"]`)), 'the cancelled job is still listed as queued');
    check(await tierOf(row) === 'realtime', 'the finished job lost its tier');
  } finally {
    await apiCall('DELETE', `/v1/jobs/${long.id}`).catch(() => {});
  }
  await waitJob(long.id, (j) => !['queued', 'running'].includes(j.status), 'finished', 60_000);
  // With the worker free, the batch runs: its row shows both lines done.
  await p.waitForFunction((id) => /2\/2/.test(document.querySelector(`tr[data-batch-id="${id}"]`)?.textContent || ''), batch.id, { timeout: 90_000 });
});

await step('the operations view updates after traffic', async () => {
  await p.goto(`${BASE}/#/ops`);
  await p.waitForFunction(() => Number(document.querySelector('[data-view=ops]')?.dataset.samples) >= 1, null, { timeout: T });
  const before = await p.evaluate(() => Number(document.querySelector('[data-view=ops]').dataset.images));
  await apiCall('POST', '/v1/images/generations', { prompt: 'traffic for the operations view', n: 2, steps: 4 });
  await p.waitForFunction((b) => Number(document.querySelector('[data-view=ops]').dataset.images) >= b + 2, before, { timeout: 45_000 });
  const tiles = await p.textContent('.sli-grid');
  for (const want of ['Latency P50 / P95 / P99', 'Success rate', 'Queued jobs', 'Images per second', 'Quality score', 'Moderation', 'Cost per image', 'Models loaded']) {
    check(tiles.includes(want), `SLI tile ${want} missing`);
  }
  check(await p.$$eval('.chart-svg polyline, .chart-svg circle', (els) => els.length) > 0, 'no chart has a line');
  check(/easel-emoji/.test(await p.textContent('#ops-models-h + .table-wrap')), 'model table lacks easel-emoji');
  // The dashboards of deploy/grafana/, by the uids their files give them:
  // links into Grafana where the server names it (server.grafana_url; ui.rs
  // sets one), else the files to import.
  const { grafana_url: grafana } = await apiCall('GET', '/ui/config.json');
  await p.waitForSelector('#ops-grafana li', { timeout: T });
  const listed = await p.$$eval('#ops-grafana li', (els) => els.map((li) => {
    const a = li.querySelector('a');
    return { uid: li.dataset.dashboard, text: li.textContent, link: a && { href: a.href, target: a.target } };
  }));
  const files = fs.readdirSync(path.join(root, 'deploy/grafana')).filter((f) => f.endsWith('.json')).sort();
  check(listed.length === files.length, `${listed.length} dashboards listed for ${files.length} files`);
  for (const f of files) {
    const { uid } = JSON.parse(fs.readFileSync(path.join(root, 'deploy/grafana', f), 'utf8'));
    const item = listed.find((l) => l.uid === uid);
    check(item && item.text.includes(`deploy/grafana/${f}`), `dashboard ${f} (uid ${uid}) not listed: ${JSON.stringify(listed)}`);
    if (grafana) {
      check(item.link && item.link.href === `${grafana}/d/${uid}` && item.link.target === '_blank', `dashboard ${uid} links to ${JSON.stringify(item.link)}, not ${grafana}/d/${uid}`);
    } else {
      check(!item.link, `dashboard ${uid} is a link with no server.grafana_url`);
    }
  }
  await shot(p, 'ops');
});

await step('the gallery pages through every image, newest first', async () => {
  // Pages of one image (the request's limit rewritten), so the few images
  // made so far need several pages and the server's cursors.
  const all = [];
  for (let cursor = null; ;) {
    const page = await apiCall('GET', `/v1/images?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    all.push(...page.data.map((r) => r.id));
    if (!page.has_more) break;
    cursor = page.next_cursor;
  }
  check(all.length >= 3, `only ${all.length} images stored`);
  await p.route(/\/v1\/images\?/, (route) => route.continue({ url: route.request().url().replace(/limit=\d+/, 'limit=1') }));
  try {
    await p.goto(`${BASE}/#/gallery`);
    for (let shown = 1; shown <= all.length; shown += 1) {
      await p.waitForFunction((n) => document.querySelectorAll('#gal-grid .tile').length === n, shown, { timeout: T });
      if (shown < all.length) {
        check(await p.isVisible('#gal-more'), `no "Load more" after ${shown} of ${all.length}`);
        await p.click('#gal-more');
      }
    }
    await p.waitForFunction(() => document.getElementById('gal-more').hidden, null, { timeout: T });
    const ids = await p.$$eval('#gal-grid .tile', (els) => els.map((el) => el.dataset.imageId));
    check(JSON.stringify(ids) === JSON.stringify(all), `gallery order ${ids} differs from the API's ${all}`);
  } finally {
    await p.unroute(/\/v1\/images\?/);
  }
});

await step('review: two images, good and bad by keyboard, the counts', async () => {
  // Every image made so far entered the queue (ui.rs serves with
  // review.sample_percent = 100): the playground's, the batch's and the
  // operations view's at least are waiting.
  const before = await apiCall('GET', '/v1/review/stats');
  const pending = before.versions.reduce((a, v) => a + v.pending, 0);
  check(pending >= 2, `the review queue holds ${pending} items, the step needs 2: serve with EASEL_REVIEW__SAMPLE_PERCENT=100`);
  const counts = (good, bad) => `Your verdicts: ${good} good, ${bad} bad.`;
  const waitCounts = (text) => p.waitForFunction((t) => document.getElementById('rv-mine')?.textContent === t, text, { timeout: T });
  const shown = () => p.textContent('#rv-item a[href^="#/gallery/"]');
  await p.goto(`${BASE}/#/review`);
  await p.waitForSelector('#rv-good, #rv-empty', { timeout: T });
  check(!(await p.$('#rv-empty')), `the page says the queue is empty with ${pending} items pending`);
  await p.waitForSelector('#rv-item img[src^="blob:"]', { timeout: T });
  await waitCounts(counts(before.mine.good, before.mine.bad));
  await checkLabels(p, 'the review page');
  await shot(p, 'review');
  const first = await shown();
  check(/^img_/.test(first), `the item shown is ${first}`);
  await p.keyboard.press('g');
  await waitCounts(counts(before.mine.good + 1, before.mine.bad));
  // The next item replaces it: a label, then bad.
  await p.waitForFunction((f) => { const a = document.querySelector('#rv-item a[href^="#/gallery/"]'); return a && a.textContent !== f; }, first, { timeout: T });
  await p.waitForSelector('#rv-item img[src^="blob:"]', { timeout: T });
  const second = await shown();
  await p.keyboard.press('2');
  check(await p.isChecked('#rv-label-artifact'), 'key 2 did not toggle the artifact label');
  await p.keyboard.press('b');
  await waitCounts(counts(before.mine.good + 1, before.mine.bad + 1));
  const after = await apiCall('GET', '/v1/review/stats');
  check(after.mine.good === before.mine.good + 1 && after.mine.bad === before.mine.bad + 1, `the API counts ${JSON.stringify(after.mine)}`);
  // The verdicts are on the images shown: each refuses a second one.
  for (const id of [first, second]) {
    const again = await apiAnswer('POST', `/v1/review/${id}`, { verdict: 'good' });
    check(again.status === 409 && again.json?.error?.code === 'already_reviewed', `a second verdict on ${id} answered ${again.status}: ${again.text.slice(0, 200)}`);
  }
});

await step('admin: unload and load a model, the key form', async () => {
  await p.goto(`${BASE}/#/admin`);
  const model = 'tr[data-model="easel-emoji"]';
  await p.waitForSelector(`${model} .badge-ready`, { timeout: T });
  await p.click(`${model} button:text("Unload")`);
  await p.waitForSelector(`${model} .badge-unloaded`, { timeout: T });
  await p.click(`${model} button:text("Load")`);
  await p.waitForSelector(`${model} .badge-ready`, { timeout: 120_000 });
  await p.waitForSelector('#adm-key-form', { timeout: T });
  await checkLabels(p, 'the admin page');
});

await step('admin: a rollout is listed with its mode, share and start', async () => {
  // A candidate version of easel-emoji (same weights, new hash) in a canary
  // of 10 %, started through the API (the page lists rollouts), then aborted.
  const model = await apiCall('GET', '/v1/models/easel-emoji');
  const serving = model.versions.find((v) => v.serving);
  check(serving, `no version of easel-emoji is serving: ${JSON.stringify(model.versions)}`);
  const folder = modelVariant(serving.path, 'ui-e2e-candidate');
  try {
    const version = await apiCall('POST', '/v1/admin/models/easel-emoji/versions', { path: folder });
    const rollout = await apiCall('POST', '/v1/admin/rollouts', {
      model: 'easel-emoji', candidate: version.version, mode: 'canary', percent: 10, guards: { min_requests: 10 },
    });
    try {
      // The page is on #/admin already: a reload reads the rollouts again.
      await p.goto(`${BASE}/#/admin`);
      await p.reload();
      const row = `#adm-rollouts tr[data-rollout-id="${rollout.id}"]`;
      await p.waitForSelector(`${row}[data-state="running"] .badge-running`, { timeout: T });
      const text = await p.textContent(row);
      for (const want of ['easel-emoji', 'canary', '10%', version.version.slice(7, 15)]) {
        check(text.includes(want), `the rollout row lacks ${want}: ${text}`);
      }
      // Its start is today's date, not a millisecond count read as seconds.
      const started = await p.textContent(`${row} td.created`);
      const expected = await p.evaluate((ms) => new Date(ms).toLocaleString(), rollout.created_at);
      check(started === expected, `the rollout started ${JSON.stringify(started)}, not ${JSON.stringify(expected)}`);
      await p.$eval('#adm-rollouts', (el) => el.scrollIntoView({ block: 'end' }));
      await shot(p, 'admin');
    } finally {
      await apiCall('POST', `/v1/admin/rollouts/${rollout.id}/abort`);
    }
    await p.reload();
    await p.waitForSelector(`#adm-rollouts tr[data-rollout-id="${rollout.id}"][data-state="aborted"]`, { timeout: T });
  } finally {
    fs.rmSync(folder, { recursive: true, force: true });
  }
});

await step('phone-sized layout (390×844)', async () => {
  const phone = await newPage({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  await phone.goto(`${BASE}/#/playground`);
  await phone.waitForSelector('#pg-model option', { state: 'attached', timeout: T });
  const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 1, `the page is ${overflow}px wider than the phone`);
  await shot(phone, 'phone-playground');
  await phone.goto(`${BASE}/#/gallery/${imageId}`);
  await phone.waitForSelector('#gal-detail-image img[src^="blob:"]', { timeout: T });
  const overflow2 = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow2 <= 1, `the detail page is ${overflow2}px wider than the phone`);
  await shot(phone, 'phone-gallery-detail');
  await phone.context().close();
  page = p;
});

await step('dark mode follows the system', async () => {
  const dark = await newPage({ colorScheme: 'dark' });
  await dark.goto(`${BASE}/#/gallery/${imageId}`);
  await dark.waitForSelector('#gal-detail-image img[src^="blob:"]', { timeout: T });
  const bg = await dark.evaluate(() => getComputedStyle(document.body).backgroundColor);
  const [r, g, b] = bg.match(/\d+/g).map(Number);
  check(r + g + b < 120, `dark background is ${bg}`);
  await shot(dark, 'dark-gallery-detail');
  await dark.context().close();
  page = p;
  // The first tab, switched to dark, has the operations view's history.
  await p.emulateMedia({ colorScheme: 'dark' });
  await p.goto(`${BASE}/#/ops`);
  await p.waitForFunction(() => Number(document.querySelector('[data-view=ops]')?.dataset.samples) >= 3, null, { timeout: T });
  await shot(p, 'dark-ops');
  await p.emulateMedia({ colorScheme: 'light' });
});

await step('text keeps a 4.5:1 contrast on its backgrounds, light and dark', async () => {
  // WCAG 2 relative luminance of the stylesheet's own colour variables, as
  // the browser resolves them for each scheme.
  const pairs = [
    ...['text', 'muted', 'accent', 'good', 'bad', 'warn'].flatMap((t) => [[t, 'bg'], [t, 'card']]),
    ['accent-text', 'accent'], ['text', 'accent-soft'], ['accent', 'accent-soft'],
    ['bad', 'bad-soft'], ['text', 'bad-soft'],
  ];
  for (const scheme of ['light', 'dark']) {
    await p.emulateMedia({ colorScheme: scheme });
    const colours = await p.evaluate(() => {
      const style = getComputedStyle(document.documentElement);
      const out = {};
      for (const name of ['text', 'muted', 'accent', 'good', 'bad', 'warn', 'bg', 'card',
        'accent-text', 'accent-soft', 'bad-soft']) {
        out[name] = style.getPropertyValue(`--${name}`).trim();
      }
      return out;
    });
    const lum = (hex) => {
      const c = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16) / 255)
        .map((x) => (x <= 0.03928 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4));
      return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
    };
    for (const [fg, bg] of pairs) {
      check(/^#[0-9a-f]{6}$/i.test(colours[fg]) && /^#[0-9a-f]{6}$/i.test(colours[bg]),
        `--${fg} / --${bg} are not #rrggbb colours in ${scheme}: ${colours[fg]} ${colours[bg]}`);
      const [hi, lo] = [lum(colours[fg]), lum(colours[bg])].sort((a, b) => b - a);
      const ratio = (hi + 0.05) / (lo + 0.05);
      check(ratio >= 4.5, `--${fg} on --${bg} in ${scheme}: contrast ${ratio.toFixed(2)} < 4.5`);
    }
  }
  await p.emulateMedia({ colorScheme: 'light' });
});

let adminKey;
await step('auth: a key created in the admin page is asked for, kept and used', async () => {
  await p.goto(`${BASE}/#/admin`);
  await p.waitForSelector('#adm-key-form', { timeout: T });
  await p.fill('#adm-key-name', 'ui-admin');
  for (const s of ['generate', 'read', 'review', 'admin']) await p.check(`#adm-scope-${s}`);
  await p.click('#adm-key-form button[type=submit]');
  await p.waitForSelector('#adm-key-secret', { timeout: T });
  adminKey = await p.inputValue('#adm-key-secret');
  check(adminKey.length > 20, 'no secret shown');
  // A fresh tab: no key in its session storage, so the page asks.
  const fresh = await newPage();
  await fresh.goto(`${BASE}/`);
  await fresh.waitForSelector('#key-dialog[open]', { timeout: T });
  const reason = await fresh.textContent('#key-reason');
  check(/API key/i.test(reason), `the dialog says ${JSON.stringify(reason)}`);
  await shot(fresh, 'auth-key-dialog');
  await fresh.fill('#key-input', adminKey);
  await fresh.click('#key-dialog button[value=ok]');
  await fresh.waitForSelector('h1:text("Playground")', { timeout: T });
  await fresh.waitForSelector('#pg-model option', { state: 'attached', timeout: T });
  check(/ui-admin/.test(await fresh.textContent('#who')), 'the header does not name the key');
  check(await fresh.evaluate(() => sessionStorage.getItem('easel.apiKey')) === adminKey, 'the key is not in session storage');
  // A reload keeps it: no second prompt; image bytes come with the key.
  await fresh.reload();
  await fresh.waitForSelector('#pg-model option', { state: 'attached', timeout: T });
  check(!(await fresh.$('#key-dialog[open]')), 'the key was asked for again after a reload');
  await fresh.goto(`${BASE}/#/gallery`);
  await fresh.waitForSelector(`.tile[data-image-id="${imageId}"] img[src^="blob:"]`, { timeout: T });
  check(!(await fresh.$('#key-dialog[open]')), 'the gallery asked for the key again');
  await fresh.context().close();
  page = p;
});

let readerKey;
await step('auth: a key without review or admin scope sees neither tab', async () => {
  const k = await apiCall('POST', '/v1/admin/keys', { name: 'ui-reader', project: 'default', scopes: ['generate', 'read'] }, adminKey);
  const reader = await newPage();
  await reader.goto(`${BASE}/`);
  await reader.waitForSelector('#key-dialog[open]', { timeout: T });
  await reader.fill('#key-input', k.key);
  await reader.click('#key-dialog button[value=ok]');
  await reader.waitForSelector('#pg-model option', { state: 'attached', timeout: T });
  check(!(await reader.isVisible('#nav a[data-route="admin"]')), 'Admin tab shown to a key without the admin scope');
  check(!(await reader.isVisible('#nav a[data-route="review"]')), 'Review tab shown to a key without the review scope');
  await reader.goto(`${BASE}/#/admin`);
  await reader.waitForSelector('text=needs an API key with the admin scope', { timeout: T });
  await reader.context().close();
  page = p;
  readerKey = k;
});

await step('admin: revoke a key from the key list', async () => {
  const admin = await newPage();
  await admin.goto(`${BASE}/`);
  await admin.waitForSelector('#key-dialog[open]', { timeout: T });
  await admin.fill('#key-input', adminKey);
  await admin.click('#key-dialog button[value=ok]');
  await admin.waitForSelector('#pg-model option', { state: 'attached', timeout: T });
  await admin.goto(`${BASE}/#/admin`);
  const row = `#adm-keys tr[data-key-id="${readerKey.id}"]`;
  await admin.waitForSelector(`${row} .badge-active`, { timeout: T });
  const me = () => apiAnswer('GET', '/v1/me', undefined, readerKey.key);
  // Dismissing the confirmation revokes nothing.
  admin.once('dialog', (d) => d.dismiss());
  await admin.click(`${row} button:text("Revoke")`);
  check((await me()).status === 200, 'the key stopped working though the revoke was dismissed');
  let asked = '';
  admin.once('dialog', (d) => { asked = d.message(); d.accept(); });
  await admin.click(`${row} button:text("Revoke")`);
  await admin.waitForSelector(`${row} .badge-revoked`, { timeout: T });
  check(/Revoke key ui-reader\?/.test(asked), `the confirmation said ${JSON.stringify(asked)}`);
  check(!(await admin.$(`${row} button:text("Revoke")`)), 'a revoked key still has a Revoke button');
  const after = await me();
  check(after.status === 401, `the revoked key is answered ${after.status} on /v1/me`);
  await admin.context().close();
  page = p;
});

await step('no script errors or policy violations', async () => {
  check(problems.length === 0, problems.join('\n'));
});

await browser.close();
console.log(`all UI checks passed; screenshots in ${SHOTS}`);
