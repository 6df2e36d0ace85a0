// The one way the UI talks to the server: the public API, with the API
// key the user gave (kept in session storage) as a Bearer token, so the
// page can do nothing that key cannot. A 401 asks for a key (once for
// however many calls were waiting) and retries; every error answer becomes
// an `ApiError` carrying the body's `code`, `message` and `param`.

const KEY_STORAGE = 'easel.apiKey';

/** An error answer of the API (or a network failure, status 0). */
export class ApiError extends Error {
  constructor(status, body, fallback) {
    const err = body && typeof body === 'object' && body.error ? body.error : null;
    super(err && err.message ? err.message : fallback);
    this.name = 'ApiError';
    this.status = status;
    this.code = err ? err.code : null;
    this.param = err ? err.param : null;
    this.type = err ? err.type : null;
  }
}

/** The key in use, or null. */
export function getKey() {
  try { return sessionStorage.getItem(KEY_STORAGE); } catch { return null; }
}

/** Keeps `key` for this tab; null forgets it. */
export function setKey(key) {
  try {
    if (key) sessionStorage.setItem(KEY_STORAGE, key);
    else sessionStorage.removeItem(KEY_STORAGE);
  } catch { /* storage disabled: the key lives for this call only */ }
}

let askForKey = async () => null;
let pendingAsk = null;

/**
 * Sets the function that asks the user for a key: given the 401's
 * message, it resolves to the key, or null when the user declines.
 */
export function setKeyPrompt(fn) {
  askForKey = fn;
}

// Many calls may fail with 401 at once (a page loads several lists): they
// all wait on one prompt.
function promptOnce(message) {
  if (!pendingAsk) {
    pendingAsk = askForKey(message).finally(() => { pendingAsk = null; });
  }
  return pendingAsk;
}

function headersFor(extra) {
  const headers = new Headers(extra || {});
  const key = getKey();
  if (key && !headers.has('Authorization')) headers.set('Authorization', `Bearer ${key}`);
  return headers;
}

/**
 * Calls the API. `options`: `method`, `body` (a plain object is sent as
 * JSON; a Blob or FormData as is), `headers`, `signal`, `raw` (resolve to
 * the Response instead of its JSON). Resolves to the JSON answer (null for
 * 204); rejects with an `ApiError`.
 */
export async function api(path, options = {}) {
  const { method = 'GET', body, headers, signal, raw = false } = options;
  let sent = body;
  const extra = new Headers(headers || {});
  if (body !== undefined && !(body instanceof Blob) && !(body instanceof FormData) && typeof body !== 'string') {
    sent = JSON.stringify(body);
    extra.set('Content-Type', 'application/json');
  }
  for (let attempt = 0; ; attempt += 1) {
    let response;
    try {
      response = await fetch(path, { method, body: sent, headers: headersFor(extra), signal, cache: 'no-store' });
    } catch (e) {
      if (e.name === 'AbortError') throw e;
      throw new ApiError(0, null, `Could not reach the server (${e.message}). Is it running?`);
    }
    if (response.status === 401 && attempt < 3) {
      const error = await errorOf(response);
      const key = await promptOnce(error.message);
      if (!key) throw error;
      setKey(key);
      continue;
    }
    if (!response.ok) throw await errorOf(response);
    if (raw) return response;
    if (response.status === 204) return null;
    const type = response.headers.get('Content-Type') || '';
    return type.includes('json') ? response.json() : response.text();
  }
}

async function errorOf(response) {
  let body = null;
  try { body = await response.json(); } catch { /* not JSON */ }
  return new ApiError(response.status, body, `${response.status} ${response.statusText || 'error'} from the server`);
}

// Object URLs of image bytes, by image id: a stored image never changes.
const blobUrls = new Map();

/**
 * An object URL of a stored image's bytes (`GET /v1/images/{id}/content`
 * with the key: an <img> cannot send the Authorization header itself).
 */
export async function imageUrl(id) {
  if (blobUrls.has(id)) return blobUrls.get(id);
  const response = await api(`/v1/images/${encodeURIComponent(id)}/content`, { raw: true });
  const url = URL.createObjectURL(await response.blob());
  blobUrls.set(id, url);
  return url;
}

/** Forgets a deleted image's object URL. */
export function forgetImage(id) {
  const url = blobUrls.get(id);
  if (url) URL.revokeObjectURL(url);
  blobUrls.delete(id);
}

/** A query string from an object, leaving out empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}
