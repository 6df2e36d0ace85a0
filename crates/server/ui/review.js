// Human review: one image of the review queue at a time (leased to this
// reviewer by `GET /v1/review/next`), its prompt, score and flags, a good
// or bad verdict with labels (`POST /v1/review/{image_id}`), keyboard
// shortcuts, and the reviewer's own counts (`GET /v1/review/stats`).

import { api } from './api.js';
import { h, replace, dl, fmtNum, fmtPct, shortHash, thead } from './dom.js';
import { errorBox, scopeNote, storedImage } from './widgets.js';

const LABELS = ['off_prompt', 'artifact', 'unsafe', 'copyright', 'low_quality', 'other'];

/** Mounts the review view. */
export async function mount(root, _arg, ctx) {
  if (!ctx.hasScope('review')) {
    replace(root, h('h1', { text: 'Review' }), scopeNote('review', 'Human review'));
    return undefined;
  }
  const stats = h('section', { class: 'card', attrs: { 'aria-labelledby': 'rv-stats-h' } });
  const item = h('section', { class: 'card review-item', id: 'rv-item', attrs: { 'aria-label': 'Image to review' } });
  const messages = h('div');
  replace(root, h('h1', { text: 'Review' }),
    h('p', { class: 'hint', text: 'Shortcuts: G good, B bad, 1–6 toggle a label, N check for a new item.' }),
    messages, item, stats);

  let current = null;
  let checks = [];

  async function loadStats() {
    try {
      const s = await api('/v1/review/stats');
      const rows = s.versions.map((v) => h('tr', {},
        h('td', { text: v.model }), h('td', {}, h('code', { text: shortHash(v.model_version) })),
        h('td', { class: 'num', text: v.pending }), h('td', { class: 'num', text: v.good }),
        h('td', { class: 'num', text: v.bad }), h('td', { class: 'num', text: fmtPct(v.approval_rate) })));
      replace(stats, h('h2', { id: 'rv-stats-h', text: 'Counts' }),
        h('p', { id: 'rv-mine', text: `Your verdicts: ${s.mine.good} good, ${s.mine.bad} bad.` }),
        rows.length ? h('div', { class: 'table-wrap' }, h('table', {},
          thead(['Model', 'Version', 'Pending', 'Good', 'Bad', 'Approval']),
          h('tbody', {}, rows))) : h('p', { class: 'note', text: 'Nothing has entered the review queue yet.' }),
        Object.keys(s.score_agreement || {}).length
          ? dl(Object.entries(s.score_agreement).map(([m, auc]) => [`Score agreement (${m})`, `${fmtNum(auc, 2)} ROC AUC`]))
          : null);
    } catch (e) {
      replace(stats, errorBox(e));
    }
  }

  async function next() {
    replace(messages);
    current = null;
    checks = [];
    replace(item, h('p', { class: 'status', text: 'Loading…' }));
    let it;
    try {
      it = await api('/v1/review/next');
    } catch (e) {
      replace(item, e.status === 403 ? scopeNote('review', 'Human review') : errorBox(e));
      return;
    }
    if (!it) {
      replace(item, h('p', { class: 'status', id: 'rv-empty', text: 'Nothing to review right now.' }),
        h('button', { type: 'button', text: 'Check again (N)', on: { click: next } }));
      return;
    }
    current = it;
    checks = LABELS.map((label, i) => h('input', { type: 'checkbox', id: `rv-label-${label}`, value: label, data: { key: String(i + 1) } }));
    const good = h('button', { type: 'button', class: 'primary', id: 'rv-good', text: 'Good (G)', on: { click: () => verdict('good') } });
    const bad = h('button', { type: 'button', class: 'danger', id: 'rv-bad', text: 'Bad (B)', on: { click: () => verdict('bad') } });
    replace(item,
      h('div', { class: 'split' },
        h('figure', {}, storedImage(it.image_id, it.prompt || '', 'shot large')),
        h('div', {},
          h('h2', { class: 'prompt-title', text: it.prompt || '(prompt not stored)' }),
          dl([
            ['Image', h('a', { href: `#/gallery/${encodeURIComponent(it.image_id)}`, text: it.image_id })],
            ['Model', `${it.model} ${shortHash(it.model_version)}`],
            ['Quality score', it.quality_score === null ? 'not scored' : fmtNum(it.quality_score, 3)],
            ['Why in the queue', it.reason],
            ['Flags', it.flags.length ? it.flags.join(', ') : 'none'],
          ]),
          h('fieldset', { class: 'labels' }, h('legend', { text: 'Labels (for a bad verdict, optional)' }),
            checks.map((c, i) => h('label', { class: 'check', htmlFor: c.id }, c, ` ${i + 1} ${LABELS[i].replace('_', ' ')}`))),
          h('div', { class: 'row' }, good, bad))));
    good.focus();
  }

  async function verdict(v) {
    if (!current) return;
    const labels = checks.filter((c) => c.checked).map((c) => c.value);
    try {
      await api(`/v1/review/${encodeURIComponent(current.image_id)}`, { method: 'POST', body: { verdict: v, labels } });
    } catch (e) {
      messages.append(errorBox(e));
      return;
    }
    await Promise.all([next(), loadStats()]);
  }

  function onKey(e) {
    if (e.altKey || e.ctrlKey || e.metaKey) return;
    const t = e.target;
    if (t && (t.tagName === 'TEXTAREA' || (t.tagName === 'INPUT' && t.type !== 'checkbox')) ) return;
    if (document.getElementById('key-dialog').open) return;
    const k = e.key.toLowerCase();
    if (k === 'g' && current) { e.preventDefault(); verdict('good'); } else if (k === 'b' && current) { e.preventDefault(); verdict('bad'); } else if (k === 'n') { e.preventDefault(); next(); } else if (/^[1-6]$/.test(k) && checks.length) {
      e.preventDefault();
      const c = checks[Number(k) - 1];
      c.checked = !c.checked;
    }
  }
  document.addEventListener('keydown', onKey);
  await Promise.all([next(), loadStats()]);
  return () => document.removeEventListener('keydown', onKey);
}
