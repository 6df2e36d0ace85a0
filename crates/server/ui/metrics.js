// The server's own `/metrics` read in the page: a parser for Prometheus
// text (0.0.4) and OpenMetrics, and the service-level indicators between
// two scrapes. The arithmetic is `easel top`'s (crates/cli/src/top/
// exposition.rs and frame.rs), line for line, so the page and the terminal
// show the same numbers: counter increases with resets counted as their new
// value, rates over the window, and window quantiles of histogram bucket
// increases interpolated like PromQL's histogram_quantile. Pure functions,
// no DOM: tools/ui/e2e.mjs checks them against top's fixtures in Node.

const TIERS = ['realtime', 'batch'];

function parseValue(v) {
  if (v === '+Inf' || v === 'Inf') return Infinity;
  if (v === '-Inf') return -Infinity;
  if (v === 'NaN') return NaN;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(v)) throw new Error(`bad value ${JSON.stringify(v)}`);
  return Number(v);
}

function parseLabels(text, start) {
  const labels = {};
  let i = start;
  for (;;) {
    while (text[i] === ' ' || text[i] === '\t') i += 1;
    if (text[i] === '}') return [labels, i + 1];
    const eq = text.indexOf('=', i);
    if (eq < 0) throw new Error('a label needs `=`');
    const key = text.slice(i, eq).trim();
    if (!key) throw new Error('empty label name');
    i = eq + 1;
    while (text[i] === ' ') i += 1;
    if (text[i] !== '"') throw new Error('a label value must be quoted');
    i += 1;
    let value = '';
    for (;;) {
      if (i >= text.length) throw new Error('unterminated label value');
      const c = text[i];
      if (c === '\\') {
        if (i + 1 >= text.length) throw new Error('unterminated escape');
        value += text[i + 1] === 'n' ? '\n' : text[i + 1];
        i += 2;
      } else if (c === '"') { i += 1; break; } else { value += c; i += 1; }
    }
    labels[key] = value;
    while (text[i] === ' ') i += 1;
    if (text[i] === ',') i += 1;
  }
}

/**
 * Parses a scrape into `{samples: [{name, labels, value}], types}`. HELP,
 * UNIT, other comments, timestamps and exemplars are skipped; `# EOF` ends
 * it. Throws `Error("line N: …")` on a broken line.
 */
export function parseExposition(text) {
  const out = { samples: [], types: {} };
  const lines = text.split(/\r?\n/);
  for (let n = 0; n < lines.length; n += 1) {
    const line = lines[n].trim();
    if (!line) continue;
    if (line === '# EOF') break;
    try {
      if (line.startsWith('#')) {
        const parts = line.slice(1).trim().split(/\s+/);
        if (parts[0] === 'TYPE') {
          if (parts.length < 3) throw new Error('a TYPE line needs a name and a type');
          out.types[parts[1]] = parts[2];
        }
        continue;
      }
      const m = /^[^{\s]+/.exec(line);
      const name = m ? m[0] : '';
      if (!name || !/^[A-Za-z0-9_:]+$/.test(name) || name.length === line.length) throw new Error(`bad metric name or no value: ${JSON.stringify(line.slice(0, 40))}`);
      let labels = {};
      let rest = line.slice(name.length);
      if (rest.startsWith('{')) {
        const [parsed, end] = parseLabels(rest, 1);
        labels = parsed;
        rest = rest.slice(end);
      }
      const value = rest.trim().split(/\s+/)[0];
      if (!value) throw new Error('a sample needs a value');
      out.samples.push({ name, labels, value: parseValue(value) });
    } catch (e) {
      throw new Error(`line ${n + 1}: ${e.message}`);
    }
  }
  return out;
}

/** An empty scrape (what a just-opened page compares its first one with). */
export function emptyExposition() {
  return { samples: [], types: {} };
}

function matches(sample, name, filter) {
  return sample.name === name && filter.every(([k, v]) => sample.labels[k] === v);
}

/** Samples named `name` whose labels include every `[key, value]` of `filter`. */
export function select(exp, name, filter = []) {
  return exp.samples.filter((s) => matches(s, name, filter));
}

function labelKey(labels) {
  return JSON.stringify(Object.keys(labels).sort().map((k) => [k, labels[k]]));
}

/** Cumulative buckets `[le, count]` of histogram `name`, summed over the matching series, sorted by `le`. */
export function buckets(exp, name, filter = []) {
  const byLe = new Map();
  for (const s of select(exp, `${name}_bucket`, filter)) {
    if (s.labels.le === undefined) continue;
    let le;
    try { le = parseValue(s.labels.le); } catch { continue; }
    byLe.set(le, (byLe.get(le) || 0) + s.value);
  }
  return [...byLe.entries()].sort((a, b) => a[0] - b[0]);
}

/**
 * The `q` quantile of cumulative buckets, interpolated linearly inside its
 * bucket as PromQL's histogram_quantile does; the highest finite bound when
 * it falls in `+Inf`; null without observations.
 */
export function quantile(q, bkts) {
  if (!bkts.length) return null;
  const last = bkts[bkts.length - 1];
  const total = last[1];
  if (!(total > 0) || last[0] !== Infinity) return null;
  const rank = q * total;
  let prev = [0, 0];
  for (let i = 0; i < bkts.length; i += 1) {
    const [le, count] = bkts[i];
    if (count >= rank) {
      if (le === Infinity) return i > 0 ? bkts[i - 1][0] : 0;
      if (i === 0 && le <= 0) return le;
      const lower = i === 0 ? 0 : prev[0];
      const inBucket = count - prev[1];
      if (inBucket <= 0) return le;
      return lower + (le - lower) * (rank - prev[1]) / inBucket;
    }
    prev = [le, count];
  }
  return null;
}

/** `cur - prev`, or `cur` when the counter was reset in between. */
function increase(prev, cur) {
  return cur >= prev ? cur - prev : cur;
}

function increasesBy(prev, cur, name, by) {
  const before = new Map(select(prev, name).map((s) => [labelKey(s.labels), s.value]));
  const out = new Map();
  for (const s of select(cur, name)) {
    const inc = increase(before.get(labelKey(s.labels)) ?? 0, s.value);
    const key = JSON.stringify(by.map((l) => s.labels[l] ?? ''));
    out.set(key, (out.get(key) || 0) + inc);
  }
  return [...out.entries()].map(([k, v]) => [JSON.parse(k), v]);
}

function windowQuantile(prev, cur, name, filter, q) {
  const before = new Map(buckets(prev, name, filter));
  const delta = buckets(cur, name, filter).map(([le, c]) => [le, increase(before.get(le) ?? 0, c)]);
  return quantile(q, delta);
}

function filteredIncrease(prev, cur, name, filter = []) {
  const before = new Map(select(prev, name, filter).map((s) => [labelKey(s.labels), s.value]));
  return select(cur, name, filter).reduce((sum, s) => sum + increase(before.get(labelKey(s.labels)) ?? 0, s.value), 0);
}

function gauge(cur, name, filter = []) {
  const found = select(cur, name, filter);
  return found.length ? found.reduce((a, s) => a + s.value, 0) : null;
}

function sumOf(exp, name) {
  return select(exp, name).reduce((a, s) => a + s.value, 0);
}

/**
 * The SLIs between scrape `prev` and scrape `cur`, `windowS` seconds apart:
 * `easel top`'s frame, plus P99s, the overall latency quantiles, the mean
 * quality score and moderation ratios per stage.
 */
export function frameBetween(prev, cur, windowS) {
  const dt = Math.max(windowS, 1e-9);
  const perS = (x) => x / dt;

  const http = increasesBy(prev, cur, 'easel_http_requests_total', ['status']);
  const httpByClass = {};
  let httpTotal = 0;
  for (const [[status], v] of http) {
    const cls = `${(status || '?')[0]}xx`;
    httpByClass[cls] = (httpByClass[cls] || 0) + perS(v);
    httpTotal += v;
  }

  const jobs = increasesBy(prev, cur, 'easel_jobs_finished_total', ['tier', 'outcome', 'code']);
  const outcomeTotal = (pred) => jobs.filter(([k]) => pred(k[1])).reduce((a, [, v]) => a + v, 0);
  const counted = outcomeTotal((o) => o !== 'cancelled');
  const succeeded = outcomeTotal((o) => o === 'succeeded');
  const errorsByCode = {};
  for (const [k, v] of jobs) {
    if ((k[1] === 'failed' || k[1] === 'rejected') && v > 0) errorsByCode[k[2]] = (errorsByCode[k[2]] || 0) + perS(v);
  }

  const gen = 'easel_generation_duration_seconds';
  const tiers = TIERS.map((tier) => {
    const finishedPerS = {};
    for (const [k, v] of jobs) if (k[0] === tier) finishedPerS[k[1]] = (finishedPerS[k[1]] || 0) + perS(v);
    const f = [['tier', tier]];
    return {
      tier,
      finishedPerS,
      p50: windowQuantile(prev, cur, gen, f, 0.5),
      p95: windowQuantile(prev, cur, gen, f, 0.95),
      p99: windowQuantile(prev, cur, gen, f, 0.99),
      queueDepth: gauge(cur, 'easel_queue_depth', f) ?? 0,
      oldestAge: gauge(cur, 'easel_queue_oldest_age_seconds', f) ?? 0,
    };
  });

  const images = filteredIncrease(prev, cur, 'easel_images_generated_total');
  const cost = filteredIncrease(prev, cur, 'easel_cost_total');
  const stageNames = [...new Set(select(cur, 'easel_stage_duration_seconds_bucket').map((s) => s.labels.stage).filter((s) => s !== undefined))].sort();
  const stagesP95 = stageNames
    .map((stage) => [stage, windowQuantile(prev, cur, 'easel_stage_duration_seconds', [['stage', stage]], 0.95)])
    .filter(([, p]) => p !== null)
    .sort((a, b) => b[1] - a[1]);

  const modelMemory = {};
  for (const s of select(cur, 'easel_model_memory_bytes')) modelMemory[s.labels.model ?? ''] = s.value;

  const moderationPerS = {};
  const moderationByStage = {};
  for (const [[stage, action], v] of increasesBy(prev, cur, 'easel_moderation_decisions_total', ['stage', 'action'])) {
    moderationPerS[`${stage}/${action}`] = perS(v);
    const st = moderationByStage[stage] || (moderationByStage[stage] = { total: 0, block: 0, flag: 0 });
    st.total += v;
    if (action === 'block') st.block += v;
    if (action === 'flag') st.flag += v;
  }
  // Block and flag shares of the decisions in the window, per stage (the
  // recording rule stage:easel_moderation_block:ratio_rate15m's ratio).
  const moderationRatios = {};
  for (const [stage, st] of Object.entries(moderationByStage)) {
    moderationRatios[stage] = st.total > 0 ? { block: st.block / st.total, flag: st.flag / st.total, decisions: st.total } : null;
  }

  // The mean score of the images scored in the window. A cosine can be
  // negative, so `_sum` may fall: its change is taken as is, and only a
  // fall of `_count` is read as a reset.
  const qCount0 = sumOf(prev, 'easel_image_quality_score_count');
  const qCount1 = sumOf(cur, 'easel_image_quality_score_count');
  const qSum0 = sumOf(prev, 'easel_image_quality_score_sum');
  const qSum1 = sumOf(cur, 'easel_image_quality_score_sum');
  const reset = qCount1 < qCount0;
  const qn = reset ? qCount1 : qCount1 - qCount0;
  const qs = reset ? qSum1 : qSum1 - qSum0;

  const gpus = {};
  for (const s of select(cur, 'easel_gpu_utilization_ratio')) gpus[s.labels.gpu ?? ''] = s.value;
  const build = select(cur, 'easel_build_info').find((s) => s.labels.version !== undefined);

  return {
    windowS,
    version: build ? build.labels.version : null,
    httpPerS: perS(httpTotal),
    httpByClass,
    successRatio: counted > 0 ? succeeded / counted : null,
    jobsCounted: counted,
    errorsByCode,
    tiers,
    latency: {
      p50: windowQuantile(prev, cur, gen, [], 0.5),
      p95: windowQuantile(prev, cur, gen, [], 0.95),
      p99: windowQuantile(prev, cur, gen, [], 0.99),
    },
    imagesPerS: perS(images),
    batchP50: windowQuantile(prev, cur, 'easel_batch_images', [], 0.5),
    costPerImage: images > 0 ? cost / images : null,
    stagesP95,
    modelsLoaded: gauge(cur, 'easel_models_loaded'),
    modelMemory,
    moderationPerS,
    moderationRatios,
    qualityP50: windowQuantile(prev, cur, 'easel_image_quality_score', [], 0.5),
    qualityMean: qn > 0 ? qs / qn : null,
    cpu: gauge(cur, 'easel_cpu_utilization_ratio'),
    gpus,
  };
}
