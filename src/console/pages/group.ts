import { totalLag } from '../../lag/lag.js';
import { formatAge, formatNumber, type Html, href, html } from '../html.js';
import type { GroupView } from '../model.js';
import { badge, type Page, type PageContext, PageError, rateAndLagCharts, stat } from './context.js';
import { groupNote, groupState, workerCount } from './overview.js';
import { waitingTenants } from './tenants.js';
import { assignedCell, stateBadge } from './workers.js';

function workersOf(ctx: PageContext, g: GroupView, now: number): Html {
  const all = [...g.live, ...g.stale];
  if (all.length === 0) return html`<p class="hint">No worker of this group reported in the last hour.</p>`;
  return html`<table class="grid" data-testid="group-workers">
<thead><tr><th>worker</th><th>state</th><th>host / pid</th><th>partitions</th><th class="num">in flight</th><th class="num">completed</th><th class="num">failed</th><th>last seen</th></tr></thead>
<tbody>${all.map((w) => {
    const s = w.snapshot;
    return html`<tr data-testid="worker-row" data-worker="${s.workerId}" data-state="${ctx.model.shownState(w, now)}">
<td class="mono">${s.workerId}</td><td>${stateBadge(ctx.model.shownState(w, now))}</td><td>${s.host} <small>pid ${s.pid}</small></td>
${assignedCell(s)}
<td class="num">${s.inflight} / ${s.concurrency}</td><td class="num">${formatNumber(s.counters.completed)}</td><td class="num">${formatNumber(s.counters.failed)}</td>
<td>${formatAge((now - s.at) / 1000)} ago</td></tr>`;
  })}</tbody></table>`;
}

/** With `--database-url`: the topic's jobs committed in the outbox table, not yet in Kafka, next to its lag. */
function outboxStat(ctx: PageContext, topic: string): Html | '' {
  const w = ctx.model.outbox;
  if (!w) return '';
  const b = w.backlogOf(topic);
  const value = b
    ? html`<a href="/outbox">${formatNumber(b.pending)}</a>${b.pending ? html` <small>${formatAge(b.oldestAgeSeconds)}</small>` : ''}`
    : '…';
  return stat('outbox pending', value, {
    testId: 'group-outbox-pending',
    tone: b && b.oldestAgeSeconds > 60 ? 'bad' : '',
  });
}

/** One group: its numbers, charts, partitions and workers (the overview links here). */
export function groupPage(ctx: PageContext): Page {
  const name = ctx.query.get('name') ?? '';
  const now = Date.now();
  const g = ctx.model.groups(now).find((x) => x.group === name);
  if (!g)
    throw new PageError(
      404,
      `no group "${name}" here: a group shows while a worker of it reports (or reported within the hour) and its topic exists, or when named with --group`,
    );
  const state = groupState(g);
  const sampled = g.lagAt !== undefined && !g.topicGone;
  const body = html`<h1>${g.group} <small>group of topic <a href="${href('/jobs', { topic: g.topic })}">${g.topic}</a></small> ${badge(state.text, state.tone)}</h1>
<p class="links"><a href="${href('/jobs', { topic: g.topic })}">jobs</a> · <a href="${href('/dlq', { topic: g.topic })}">dead letters</a> · <a href="/tiers">retry tiers</a> · <a href="/controls">pause / resume</a> · <a href="/">all groups</a></p>
<div id="group" data-live data-testid="group" data-group="${g.group}">
${groupNote(g)}
<div class="stats">
${stat('workers alive', workerCount(g))}
${stat('total lag', sampled ? formatNumber(totalLag(g.lag)) : '…', { testId: 'total-lag' })}
${stat('due now', sampled ? formatNumber(totalLag(g.lag, 'due')) : '…')}
${stat('oldest pending', g.live.length ? formatAge(g.oldestPendingAgeSeconds) : '-')}
${stat('completed / s', formatNumber(g.completedPerSec, 1), { testId: 'completed-rate' })}
${stat('failed / s', formatNumber(g.failedPerSec, 1), { tone: g.failedPerSec > 0 ? 'bad' : '' })}
${stat('DLQ depth', g.dlqDepth === undefined ? '…' : html`<a href="${href('/dlq', { topic: g.topic })}">${formatNumber(g.dlqDepth)}</a>`, { testId: 'dlq-depth', tone: g.dlqDepth ? 'bad' : '' })}
${stat('desired replicas', g.desiredReplicas ?? '…')}
${outboxStat(ctx, g.topic)}
</div>
${rateAndLagCharts('chart', g.history)}
<div class="two">
<div>
<h3>Partitions</h3>
<table class="grid lag" data-testid="lag-table">
<thead><tr><th>topic</th><th class="num">partition</th><th class="num">end</th><th class="num">committed</th><th class="num">lag</th><th class="num">due</th></tr></thead>
<tbody>
${g.lag.map(
  (l) =>
    html`<tr data-testid="lag-row" data-topic="${l.topic}" data-partition="${l.partition}"><td>${l.topic === g.topic ? l.topic : html`<small>${g.topic}</small>${l.topic.slice(g.topic.length)}`}</td><td class="num">${l.partition}</td><td class="num">${l.end}</td><td class="num">${l.committed ?? '-'}</td><td class="num" data-testid="lag">${l.lag}</td><td class="num">${l.due}</td></tr>`,
)}
</tbody>
</table>
</div>
<div>
<h3>Workers</h3>
${workersOf(ctx, g, now)}
${waitingTenants(g)}
</div>
</div>
</div>`;
  return { title: g.group, active: '/', body };
}
