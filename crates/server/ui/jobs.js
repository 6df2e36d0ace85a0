// Jobs: the queued and running jobs (tier, queue position, progress,
// cancel), the most recent finished ones, and the batches with their
// progress; refreshed every two seconds while the tab is open.

import { api, query } from './api.js';
import { h, replace, fmtAgo, badge, thead } from './dom.js';
import { errorBox } from './widgets.js';

const REFRESH_MS = 2000;

function truncate(text, n) {
  return text.length > n ? `${text.slice(0, n - 1)}…` : text;
}

function progressCell(job) {
  if (job.status === 'running' && job.progress) {
    return h('span', { class: 'progress-cell' },
      h('progress', { max: job.progress.total, value: job.progress.step, attrs: { 'aria-label': `Job ${job.id} progress` } }),
      ` ${job.progress.step}/${job.progress.total}`);
  }
  if (job.status === 'running') return 'starting';
  return '—';
}

function table(caption, headers, rows, empty) {
  if (!rows.length) return h('p', { class: 'note', text: empty });
  return h('div', { class: 'table-wrap' },
    h('table', {},
      h('caption', { class: 'visually-hidden', text: caption }),
      thead(headers),
      h('tbody', {}, rows)));
}

/** Mounts the jobs view. */
export async function mount(root) {
  const messages = h('div');
  const active = h('section', { class: 'card', attrs: { 'aria-labelledby': 'jobs-active-h' } });
  const recent = h('section', { class: 'card', attrs: { 'aria-labelledby': 'jobs-recent-h' } });
  const batches = h('section', { class: 'card', attrs: { 'aria-labelledby': 'jobs-batches-h' } });
  const stamp = h('p', { class: 'status', attrs: { role: 'status' } });
  replace(root, h('h1', { text: 'Jobs' }), stamp, messages, active, recent, batches);

  // Cancels in flight, so a refresh does not bring the button back.
  const cancelling = new Set();

  async function cancel(job, button) {
    cancelling.add(job.id);
    button.disabled = true;
    button.textContent = 'Cancelling…';
    try {
      await api(`/v1/jobs/${encodeURIComponent(job.id)}`, { method: 'DELETE' });
    } catch (e) {
      messages.append(errorBox(e));
    } finally {
      cancelling.delete(job.id);
      refresh();
    }
  }

  function liveRow(job) {
    const button = h('button', { type: 'button', class: 'small', text: cancelling.has(job.id) ? 'Cancelling…' : 'Cancel', disabled: cancelling.has(job.id), attrs: { 'aria-label': `Cancel job ${job.id}` } });
    button.addEventListener('click', () => cancel(job, button));
    return h('tr', { data: { jobId: job.id, status: job.status } },
      h('td', {}, h('code', { text: job.id })),
      h('td', {}, badge(job.status)),
      h('td', { class: 'tier', text: job.tier }),
      h('td', { class: 'num position', text: job.queue_position ?? '—' }),
      h('td', {}, progressCell(job)),
      h('td', { class: 'prompt-cell', title: job.params.prompt, text: truncate(job.params.prompt, 60) }),
      h('td', { text: fmtAgo(job.created_at) }),
      h('td', {}, button));
  }

  function finishedRow(job) {
    const images = (job.image_ids || []).map((id) => h('a', { href: `#/gallery/${encodeURIComponent(id)}`, text: id.slice(0, 12) }));
    const outcome = images.length ? images.flatMap((a, i) => (i ? [' ', a] : [a])) : (job.error ? `${job.error.code}: ${job.error.message}` : '—');
    return h('tr', { data: { jobId: job.id, status: job.status } },
      h('td', {}, h('code', { text: job.id })),
      h('td', {}, badge(job.status)),
      h('td', { class: 'tier', text: job.tier }),
      h('td', { class: 'prompt-cell', title: job.params.prompt, text: truncate(job.params.prompt, 60) }),
      h('td', { text: fmtAgo(job.finished_at || job.created_at) }),
      h('td', {}, outcome));
  }

  let inFlight = false;
  async function refresh() {
    if (inFlight) return;
    inFlight = true;
    try {
      const [queued, running, latest] = await Promise.all([
        api(`/v1/jobs${query({ status: 'queued', limit: 100 })}`),
        api(`/v1/jobs${query({ status: 'running', limit: 100 })}`),
        api(`/v1/jobs${query({ limit: 20 })}`),
      ]);
      const live = [...running.data, ...queued.data.sort((a, b) => (a.queue_position ?? 1e9) - (b.queue_position ?? 1e9))];
      const heads = ['Job', 'Status', 'Tier', 'Position', 'Progress', 'Prompt', 'Created', 'Action'];
      replace(active, h('h2', { id: 'jobs-active-h', text: `Queued and running (${live.length})` }),
        table('Queued and running jobs', heads, live.map(liveRow), 'Nothing queued or running.'));
      const finished = latest.data.filter((j) => j.status !== 'queued' && j.status !== 'running');
      replace(recent, h('h2', { id: 'jobs-recent-h', text: 'Recently finished' }),
        table('Recently finished jobs', ['Job', 'Status', 'Tier', 'Prompt', 'Finished', 'Images or error'],
          finished.map(finishedRow), 'No finished jobs yet.'));
      stamp.textContent = `Updated ${new Date().toLocaleTimeString()}; refreshes every ${REFRESH_MS / 1000} s.`;
    } catch (e) {
      replace(messages, errorBox(e));
    }
    try {
      const list = await api(`/v1/batches${query({ limit: 20 })}`);
      const rows = list.data.map((b) => {
        const c = b.request_counts || { total: 0, completed: 0, failed: 0 };
        const done = c.completed + c.failed;
        return h('tr', { data: { batchId: b.id } },
          h('td', {}, h('code', { text: b.id })),
          h('td', {}, badge(b.status)),
          h('td', {}, h('span', { class: 'progress-cell' },
            h('progress', { max: Math.max(1, c.total), value: done, attrs: { 'aria-label': `Batch ${b.id} progress` } }), ` ${done}/${c.total}`)),
          h('td', { class: 'num', text: String(c.failed) }),
          h('td', { text: fmtAgo(b.created_at) }));
      });
      replace(batches, h('h2', { id: 'jobs-batches-h', text: 'Batches' }),
        table('Batches', ['Batch', 'Status', 'Progress', 'Failed', 'Created'], rows, 'No batches.'));
    } catch (e) {
      replace(batches, h('h2', { id: 'jobs-batches-h', text: 'Batches' }), errorBox(e));
    } finally {
      inFlight = false;
    }
  }

  await refresh();
  const timer = setInterval(() => { if (document.visibilityState === 'visible') refresh(); }, REFRESH_MS);
  return () => clearInterval(timer);
}
