// Admin (scope `admin`): the model pool (state, memory, load and unload),
// the workers, the rollouts, and the API keys (create, showing the secret
// once; revoke). Each section explains a 403 instead of failing the page.

import { api } from './api.js';
import { h, field, replace, fmtBytes, fmtAgo, fmtTime, badge, shortHash, thead } from './dom.js';
import { errorBox, scopeNote } from './widgets.js';

const SCOPES = ['generate', 'read', 'review', 'admin'];

function table(headers, rows, empty) {
  if (!rows.length) return h('p', { class: 'note', text: empty });
  return h('div', { class: 'table-wrap' }, h('table', {},
    thead(headers),
    h('tbody', {}, rows)));
}

function section(id, title) {
  const body = h('div');
  const el = h('section', { class: 'card', id, attrs: { 'aria-labelledby': `${id}-h` } }, h('h2', { id: `${id}-h`, text: title }), body);
  return [el, body];
}

/** Mounts the admin view. */
export async function mount(root, _arg, ctx) {
  if (!ctx.hasScope('admin')) {
    replace(root, h('h1', { text: 'Admin' }), scopeNote('admin', 'Administration'));
    return undefined;
  }
  const [modelsEl, models] = section('adm-models', 'Models');
  const [workersEl, workers] = section('adm-workers', 'Workers');
  const [rolloutsEl, rollouts] = section('adm-rollouts', 'Rollouts');
  const [keysEl, keys] = section('adm-keys', 'API keys');
  replace(root, h('h1', { text: 'Admin' }), modelsEl, keysEl, rolloutsEl, workersEl);

  async function loadModels() {
    try {
      const list = await api('/v1/models');
      const rows = list.data.map((m) => {
        const msg = h('span', { class: 'row-msg' });
        const act = async (what, button) => {
          button.disabled = true;
          replace(msg);
          try {
            await api(`/v1/admin/models/${encodeURIComponent(m.id)}/${what}`, { method: 'POST' });
            setTimeout(loadModels, what === 'load' ? 1000 : 0);
          } catch (e) {
            button.disabled = false;
            replace(msg, errorBox(e));
          }
        };
        const load = h('button', { type: 'button', class: 'small', text: 'Load', disabled: m.state === 'ready' || m.state === 'loading', attrs: { 'aria-label': `Load ${m.id}` } });
        const unload = h('button', { type: 'button', class: 'small', text: 'Unload', disabled: m.state !== 'ready', attrs: { 'aria-label': `Unload ${m.id}` } });
        load.addEventListener('click', () => act('load', load));
        unload.addEventListener('click', () => act('unload', unload));
        return h('tr', { data: { model: m.id } },
          h('td', { text: `${m.id}${m.default ? ' (default)' : ''}` }),
          h('td', {}, badge(m.state), m.error ? h('small', { class: 'bad', text: ` ${m.error}` }) : null),
          h('td', { text: m.architecture || '—' }),
          h('td', {}, h('code', { title: m.content_hash || '', text: shortHash(m.content_hash) })),
          h('td', { class: 'num', text: fmtBytes(m.memory_bytes) }),
          h('td', { class: 'num', text: String(m.in_use) }),
          h('td', { text: fmtAgo(m.last_used_at) }),
          h('td', {}, h('div', { class: 'row tight' }, load, unload), msg));
      });
      const used = list.data.filter((m) => m.state === 'ready').reduce((a, m) => a + m.memory_bytes, 0);
      replace(models, h('p', { class: 'hint', text: `Memory: ${fmtBytes(used)} loaded of a ${fmtBytes(list.memory_budget_bytes)} budget.` }),
        table(['Model', 'State', 'Architecture', 'Version', 'Memory', 'In use', 'Last used', ''], rows, 'No models configured.'));
      if (list.data.some((m) => m.state === 'loading')) setTimeout(loadModels, 1500);
    } catch (e) {
      replace(models, errorBox(e));
    }
  }

  async function loadWorkers() {
    try {
      const list = await api('/v1/admin/workers');
      replace(workers, table(['Worker', 'State', 'Host', 'Version', 'Models', 'Current jobs', 'Heartbeat'],
        list.data.map((w) => h('tr', {},
          h('td', {}, h('code', { text: w.id })), h('td', {}, badge(w.state), w.drain_requested ? ' draining' : ''),
          h('td', { text: `${w.host} (pid ${w.pid})` }), h('td', { text: w.version }),
          h('td', { text: w.models.join(', ') || '—' }), h('td', { text: String(w.current_jobs.length) }),
          h('td', { text: `${w.heartbeat_age_seconds.toFixed(0)} s ago` }))),
        'No workers registered.'));
    } catch (e) {
      replace(workers, e.status === 404 ? h('p', { class: 'note', text: 'This server does not list workers.' }) : errorBox(e));
    }
  }

  async function loadRollouts() {
    try {
      const list = await api('/v1/admin/rollouts');
      replace(rollouts, table(['Rollout', 'Model', 'State', 'Mode', 'Share', 'Baseline → candidate', 'Created'],
        list.data.map((r) => h('tr', { data: { rolloutId: r.id, state: r.state } },
          h('td', {}, h('code', { text: r.id })), h('td', { text: r.model }),
          h('td', {}, badge(r.state), r.reason ? h('small', { text: ` ${r.reason}` }) : null),
          h('td', { text: r.mode }), h('td', { class: 'num', text: `${r.percent}%` }),
          h('td', {}, h('code', { text: `${shortHash(r.baseline)} → ${shortHash(r.candidate)}` })),
          // A rollout's times are Unix milliseconds (the API's other times are seconds).
          h('td', { class: 'created', text: fmtTime(r.created_at / 1000) }))),
        'No rollouts. Start one with POST /v1/admin/rollouts (docs/rollouts.md).'));
    } catch (e) {
      replace(rollouts, errorBox(e));
    }
  }

  const created = h('div', { attrs: { 'aria-live': 'polite' } });
  const keyList = h('div');
  const name = h('input', { id: 'adm-key-name', name: 'name', type: 'text', required: true, maxLength: 64, placeholder: 'ci-bot' });
  const project = h('input', { id: 'adm-key-project', name: 'project', type: 'text', required: true, value: (ctx.principal && ctx.principal.project) || 'default' });
  const scopeBoxes = SCOPES.map((s) => h('input', { type: 'checkbox', id: `adm-scope-${s}`, value: s, checked: s === 'generate' || s === 'read' }));
  const form = h('form', { class: 'form-grid', id: 'adm-key-form', attrs: { 'aria-label': 'Create an API key' } },
    field('Name', name), field('Project', project),
    h('fieldset', { class: 'span-2 labels', attrs: { name: 'scopes' } }, h('legend', { text: 'Scopes' }),
      scopeBoxes.map((c) => h('label', { class: 'check', htmlFor: c.id }, c, ` ${c.value}`))),
    h('div', { class: 'row span-2' }, h('button', { type: 'submit', class: 'primary', text: 'Create key' }),
      h('small', { class: 'hint', text: 'Creating the first key makes this server ask every caller for one.' })));
  replace(keys, form, created, keyList);

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    replace(created);
    try {
      const k = await api('/v1/admin/keys', { method: 'POST', body: { name: name.value.trim(), project: project.value.trim(), scopes: scopeBoxes.filter((c) => c.checked).map((c) => c.value) } });
      const secret = h('input', { id: 'adm-key-secret', type: 'text', readOnly: true, value: k.key, class: 'secret' });
      const copy = h('button', { type: 'button', text: 'Copy', on: { click: async () => { try { await navigator.clipboard.writeText(k.key); copy.textContent = 'Copied'; } catch { secret.select(); } } } });
      replace(created, h('div', { class: 'notice', attrs: { role: 'status' } },
        h('p', {}, h('strong', { text: `Key ${k.name} created.` }), ' Its secret is shown this once: store it now.'),
        field('Secret', secret), copy));
      name.value = '';
      loadKeys();
    } catch (err) {
      replace(created, errorBox(err));
    }
  });

  async function loadKeys() {
    try {
      const list = await api('/v1/admin/keys');
      replace(keyList, table(['Name', 'Project', 'Prefix', 'Scopes', 'Status', 'Last used', 'Expires', ''],
        list.data.map((k) => {
          const revoke = k.status === 'active'
            ? h('button', { type: 'button', class: 'small danger', text: 'Revoke', attrs: { 'aria-label': `Revoke key ${k.name}` } })
            : null;
          if (revoke) {
            revoke.addEventListener('click', async () => {
              if (!window.confirm(`Revoke key ${k.name}? Callers using it are refused from now on.`)) return;
              try { await api(`/v1/admin/keys/${encodeURIComponent(k.id)}`, { method: 'DELETE' }); loadKeys(); } catch (err) { replace(created, errorBox(err)); }
            });
          }
          return h('tr', { data: { keyId: k.id } },
            h('td', { text: k.name }), h('td', { text: k.project }), h('td', {}, h('code', { text: k.prefix })),
            h('td', { text: k.scopes.join(', ') }), h('td', {}, badge(k.status)),
            h('td', { text: fmtAgo(k.last_used_at) }), h('td', { text: k.expires_at ? fmtTime(k.expires_at) : 'never' }),
            h('td', {}, revoke));
        }), 'No keys: this server is open to callers on its loopback address.'));
    } catch (e) {
      replace(keyList, errorBox(e));
    }
  }

  await Promise.all([loadModels(), loadKeys(), loadRollouts(), loadWorkers()]);
  return undefined;
}
