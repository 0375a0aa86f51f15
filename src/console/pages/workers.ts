import { STALE_AFTER_MS, type WorkerSnapshot } from '../../status/snapshot.js';
import { formatAge, formatBytes, formatNumber, formatTime, type Html, html } from '../html.js';
import type { ShownWorkerState } from '../model.js';
import { badge, notice, type Page, type PageContext } from './context.js';
import { groupState } from './overview.js';

const TONES: Record<ShownWorkerState, string> = {
  running: 'ok',
  paused: 'warn',
  rebalancing: 'warn',
  restarting: 'bad',
  stopped: 'muted',
};

/** One badge per worker: its state as shown (a silent worker is `stopped`, whatever it said last). */
export function stateBadge(state: ShownWorkerState): Html {
  return html`<span class="badge ${TONES[state]}" data-testid="worker-state"${state === 'stopped' ? html` title="no status for ${STALE_AFTER_MS / 1000} s or more: killed, crashed or cut off from Kafka (a worker that stops cleanly removes itself)"` : ''}>${state}</span>`;
}

/** Assigned partitions, one line per topic: `0 1 2` for the job topic, `.retry.1: 0 1 2` for a tier. */
export function assignedCell(s: WorkerSnapshot): Html {
  const byTopic = new Map<string, number[]>();
  for (const a of s.assigned) byTopic.set(a.topic, [...(byTopic.get(a.topic) ?? []), a.partition]);
  const lines = [...byTopic].map(([topic, ps]) => {
    const name =
      topic === s.topic ? '' : topic.startsWith(s.topic) ? `${topic.slice(s.topic.length)}: ` : `${topic}: `;
    return `${name}${ps.sort((a, b) => a - b).join(' ')}`;
  });
  return html`<td class="parts" title="${s.assigned.map((a) => `${a.topic}[${a.partition}]`).join(' ')}">${lines.length ? lines.map((l, i) => html`${i ? html`<br>` : ''}${l}`) : '-'}</td>`;
}

export function workersPage(ctx: PageContext): Page {
  const now = Date.now();
  const workers = ctx.model.listedWorkers(now);
  // The groups of the listed workers only: with many groups, the rest is the overview's business.
  const groups = ctx.model.groups(now).filter((g) => g.live.length + g.stale.length > 0);
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
  const state = ctx.model.shownState(w, now);
  return html`<tr data-testid="worker-row" data-worker="${s.workerId}" data-group="${s.group}" data-state="${state}"${state === 'stopped' ? html` class="stopped"` : ''}>
<td class="mono">${s.workerId}</td>
<td>${s.group}<br><small>${s.topic}</small></td>
<td>${stateBadge(state)}</td>
<td>${s.host}<br><small>pid ${s.pid}</small></td>
<td>${s.version}</td>
${assignedCell(s)}
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
<p class="hint">Workers publish a snapshot every 5 s and remove themselves when they stop cleanly; one silent for 15 s is shown as stopped (killed, crashed or cut off from Kafka), and after an hour it is no longer listed.</p>
</div>`;
  return { title: 'Workers', active: '/workers', body };
}
