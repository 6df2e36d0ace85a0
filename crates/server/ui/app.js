// The UI's entry point: hash routing between the views, the API-key
// dialog, and which tabs to show for the key's scopes (`GET /v1/me`).
// Each view module exports `mount(root, arg)`, which may return a function
// that stops its timers and streams when the user leaves the view.

import { api, getKey, setKey, setKeyPrompt } from './api.js';
import { h, replace } from './dom.js';
import { errorBox } from './widgets.js';
import * as playground from './playground.js';
import * as gallery from './gallery.js';
import * as jobs from './jobs.js';
import * as review from './review.js';
import * as ops from './ops.js';
import * as admin from './admin.js';

const ROUTES = {
  playground: { view: playground, title: 'Playground' },
  gallery: { view: gallery, title: 'Gallery' },
  jobs: { view: jobs, title: 'Jobs' },
  review: { view: review, title: 'Review' },
  ops: { view: ops, title: 'Operations' },
  admin: { view: admin, title: 'Admin' },
};

const main = document.getElementById('main');
let unmount = null;
let renderSeq = 0;

// Who the page acts as: `GET /v1/me`, or null when the server has no such route.
let principal = null;

// The key dialog: resolves to the key typed, or null on cancel.
function askKey(reason) {
  const dialog = document.getElementById('key-dialog');
  const input = document.getElementById('key-input');
  document.getElementById('key-reason').textContent = reason
    ? `The server says: ${reason}`
    : 'This server asks for an API key.';
  input.value = '';
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => {
      resolve(dialog.returnValue === 'ok' && input.value.trim() ? input.value.trim() : null);
    }, { once: true });
    dialog.showModal();
    input.focus();
  });
}

function hasScope(scope) {
  if (!principal || !Array.isArray(principal.scopes)) return true;
  const scopes = principal.scopes;
  return scopes.includes(scope) || scopes.includes('admin');
}

function renderWho() {
  const who = document.getElementById('who');
  const parts = [];
  if (principal) {
    const label = principal.auth === 'open'
      ? 'Open server (no key needed)'
      : `Key ${principal.key_name || principal.key_id || ''} · project ${principal.project}`;
    parts.push(h('span', { class: 'who-label', text: label, title: `Scopes: ${(principal.scopes || []).join(', ')}` }));
  }
  if (getKey()) {
    parts.push(h('button', {
      type: 'button', class: 'link', text: 'Forget key',
      on: { click: () => { setKey(null); location.reload(); } },
    }));
  } else if (principal && principal.auth === 'open') {
    // nothing: no key to forget
  } else {
    parts.push(h('button', {
      type: 'button', class: 'link', text: 'Enter key',
      on: { click: async () => { const k = await askKey(null); if (k) { setKey(k); location.reload(); } } },
    }));
  }
  replace(who, parts);
  for (const link of document.querySelectorAll('#nav a[data-scope]')) {
    link.parentElement.hidden = !hasScope(link.dataset.scope);
  }
}

async function loadPrincipal() {
  try {
    principal = await api('/v1/me');
  } catch (e) {
    // An older server without /v1/me: show every tab, and let each view
    // explain a 403.
    principal = null;
    if (e.status === 401) throw e;
  }
  renderWho();
}

function parseHash() {
  const parts = location.hash.replace(/^#\/?/, '').split('/');
  const name = ROUTES[parts[0]] ? parts[0] : 'playground';
  return { name, arg: parts.slice(1).map(decodeURIComponent).join('/') || null };
}

async function render() {
  const seq = ++renderSeq;
  if (unmount) { try { unmount(); } catch { /* a view's cleanup must not stop routing */ } }
  unmount = null;
  const { name, arg } = parseHash();
  const route = ROUTES[name];
  document.title = `${route.title} · Easel`;
  for (const link of document.querySelectorAll('#nav a')) {
    if (link.dataset.route === name) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  const root = h('div', { class: `view view-${name}`, data: { view: name } });
  replace(main, root);
  try {
    const cleanup = await route.view.mount(root, arg, { hasScope, principal });
    if (seq !== renderSeq) { if (typeof cleanup === 'function') cleanup(); return; }
    unmount = typeof cleanup === 'function' ? cleanup : null;
  } catch (e) {
    if (seq === renderSeq) root.append(errorBox(e));
  }
}

async function boot() {
  setKeyPrompt(askKey);
  try {
    await loadPrincipal();
  } catch (e) {
    replace(main, errorBox(e, 'An API key is needed'),
      h('button', { type: 'button', class: 'primary', text: 'Enter a key', on: { click: () => location.reload() } }));
    return;
  }
  window.addEventListener('hashchange', () => {
    render();
    // Move focus to the new view for keyboard and screen-reader users.
    main.focus({ preventScroll: true });
  });
  await render();
}

boot();
