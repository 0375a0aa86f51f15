import { formatAge, formatBytes, formatNumber, formatTime, html } from '../html.js';
import { badge, notice, type Page, type PageContext } from './context.js';
import { groupState } from './overview.js';

const TONES: Record<string, string> = {
  running: 'ok',
  paused: 'warn',
  rebalancing: 'warn',
  restarting: 'bad',
};

export function workersPage(ctx: PageContext): Page {
  const now = Date.now();
  const workers = ctx.model.listedWorkers(now);
  const groups = ctx.model.groups(now);
  const body = html`<h1>Workers</h1>
<div id="workers" data-live>
${
  groups.length > 0
    ? html`<div class="group-states">${groups.map((g) => {
        const s = groupState(g);
        return html`<div class="group-state" data-testid="group-state" data-group="${g.group}"><b>${g.group}</b> ${badge(s.text, s.tone)}${g.control ? html` <small>last command: ${g.control.action} by ${g.control.by} at ${formatTime(g.control.at)}</small>` : ''}</div>`;
      })}</div>`
    : ''
}
${
  workers.length === 0
    ? notice('No worker has published a status in the last hour.')
    : html`<table class="grid workers" data-testid="workers-table">
<thead><tr><th>worker</th><th>group / topic</th><th>state</th><th>host / pid</th><th>version</th><th>partitions</th><th class="num">in flight</th><th class="num">buffered</th><th class="num">completed</th><th class="num">failed</th><th class="num">retried</th><th class="num">dead</th><th class="num">RSS</th><th class="num">uptime</th><th>last seen</th></tr></thead>
<tbody>
${workers.map((w) => {
  const s = w.snapshot;
  const stale = ctx.model.isStale(w, now);
  const parts = s.assigned.map(
    (a) => `${a.topic === s.topic ? '' : `${a.topic.slice(s.topic.length)}:`}${a.partition}`,
  );
  return html`<tr data-testid="worker-row" data-worker="${s.workerId}" data-state="${s.state}" data-stale="${stale ? 'yes' : 'no'}"${stale ? html` class="stale"` : ''}>
<td class="mono">${s.workerId}</td>
<td>${s.group}<br><small>${s.topic}</small></td>
<td>${badge(s.state, TONES[s.state] ?? 'muted')}${stale ? html` ${badge('stale', 'bad')}` : ''}</td>
<td>${s.host}<br><small>pid ${s.pid}</small></td>
<td>${s.version}</td>
<td class="parts" title="${s.assigned.map((a) => `${a.topic}[${a.partition}]`).join(' ')}">${parts.length ? parts.join(' ') : '-'}</td>
<td class="num">${s.inflight} / ${s.concurrency}</td>
<td class="num">${formatNumber(s.buffered.jobs)}<br><small>${formatBytes(s.buffered.bytes)}</small></td>
<td class="num">${formatNumber(s.counters.completed)}</td>
<td class="num">${formatNumber(s.counters.failed)}</td>
<td class="num">${formatNumber(s.counters.retried)}</td>
<td class="num">${formatNumber(s.counters.dead)}</td>
<td class="num">${formatBytes(s.rssBytes)}</td>
<td class="num">${formatAge((s.at - s.startedAt) / 1000)}</td>
<td>${formatAge((now - s.at) / 1000)} ago</td>
</tr>`;
})}
</tbody></table>`
}
<p class="hint">Workers publish a snapshot every 5 s; one silent for 15 s is flagged stale, and after an hour it is no longer listed. A worker that stops cleanly removes itself.</p>
</div>`;
  return { title: 'Workers', active: '/workers', body };
}
