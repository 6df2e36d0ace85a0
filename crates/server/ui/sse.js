// A job's server-sent events (`GET /v1/jobs/{id}/events`), read with
// fetch() and a small text/event-stream parser: EventSource cannot send the
// Authorization header. If the stream ends before a terminal event (a proxy
// cut it, the server restarted), the job is polled until it finishes.

import { api } from './api.js';

const TERMINAL = new Set(['completed', 'failed', 'cancelled']);

/**
 * Parses a text/event-stream body into `{event, data}` objects: `data`
 * lines joined with newlines, comments (keep-alives) skipped, `event`
 * defaulting to `message` (https://html.spec.whatwg.org/multipage/server-sent-events.html).
 */
export async function* parseEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let event = 'message';
  let data = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let nl;
    while ((nl = buffer.search(/\r\n|\r|\n/)) >= 0) {
      // A CR that ends the chunk may be the first half of a CRLF.
      if (buffer[nl] === '\r' && nl === buffer.length - 1) break;
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + (buffer.startsWith('\r\n', nl) ? 2 : 1));
      if (line === '') {
        if (data.length) yield { event, data: data.join('\n') };
        event = 'message';
        data = [];
      } else if (!line.startsWith(':')) {
        const colon = line.indexOf(':');
        const name = colon < 0 ? line : line.slice(0, colon);
        let val = colon < 0 ? '' : line.slice(colon + 1);
        if (val.startsWith(' ')) val = val.slice(1);
        if (name === 'event') event = val;
        else if (name === 'data') data.push(val);
      }
    }
  }
}

/** The terminal event a finished job record stands for. */
function eventOfJob(job) {
  if (job.status === 'succeeded') return { type: 'completed', job_id: job.id, image_ids: job.image_ids };
  if (job.status === 'cancelled') return { type: 'cancelled', job_id: job.id };
  if (job.status === 'failed' || job.status === 'rejected') {
    return { type: 'failed', job_id: job.id, code: job.error?.code || job.status, message: job.error?.message || `the job was ${job.status}` };
  }
  return null;
}

/**
 * Follows job `id`, calling `onEvent(data)` for each event (`data.type`
 * is `queued`, `started`, `progress`, `completed`, `failed` or
 * `cancelled`). Resolves to the terminal event. `signal` stops following.
 */
export async function followJob(id, onEvent, signal) {
  const path = `/v1/jobs/${encodeURIComponent(id)}/events`;
  try {
    const response = await api(path, { raw: true, signal, headers: { Accept: 'text/event-stream' } });
    for await (const { event, data } of parseEvents(response.body)) {
      let parsed;
      try { parsed = JSON.parse(data); } catch { continue; }
      if (!parsed.type) parsed.type = event;
      onEvent(parsed);
      if (TERMINAL.has(parsed.type)) return parsed;
    }
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    // Fall through to polling: the stream failed, the job may not have.
  }
  for (;;) {
    if (signal?.aborted) throw new DOMException('aborted', 'AbortError');
    const job = await api(`/v1/jobs/${encodeURIComponent(id)}`, { signal });
    const done = eventOfJob(job);
    if (done) { onEvent(done); return done; }
    if (job.progress) onEvent({ type: 'progress', job_id: id, step: job.progress.step, total: job.progress.total });
    await new Promise((r) => setTimeout(r, 1000));
  }
}
