import { totalLag } from '../../lag/lag.js';
import { formatAge, formatNumber, type Html, href, html } from '../html.js';
import type { GroupView } from '../model.js';
import { badge, notice, type Page, type PageContext, stat } from './context.js';

/** Group state for a badge: the control topic's word, else what the workers report. */
export function groupState(g: GroupView): { text: string; tone: string } {
  if (g.control?.action === 'pause') {
    const obeyed = g.live.filter((w) => w.snapshot.state === 'paused').length;
    return { text: g.live.length ? `paused (${obeyed}/${g.live.length} workers)` : 'paused', tone: 'warn' };
  }
  if (g.live.length === 0) return { text: 'no live workers', tone: 'muted' };
  const odd = g.live.filter((w) => w.snapshot.state !== 'running');
  if (odd.length > 0) return { text: odd.map((w) => w.snapshot.state).join(', '), tone: 'warn' };
  return { text: 'running', tone: 'ok' };
}

function chart(
  id: string,
  title: string,
  series: { label: string; stroke: string }[],
  data: number[][],
): Html {
  return html`<figure class="chart-box"><figcaption>${title}</figcaption><div class="chart" id="${id}" data-chart="${JSON.stringify({ series, data })}"></div></figure>`;
}

function groupSection(g: GroupView, index: number): Html {
  const state = groupState(g);
  const t = g.history.map((p) => Math.round(p.at / 1000));
  const lagRows = g.lag;
  return html`<section class="card group" data-testid="group" data-group="${g.group}">
<h2>${g.group} <small>topic <a href="${href('/jobs', { topic: g.topic })}">${g.topic}</a></small> ${badge(state.text, state.tone)}</h2>
${g.error ? notice(`sampling failed: ${g.error}`, 'error') : ''}
<div class="stats">
${stat('workers alive', html`${g.live.length}${g.stale.length ? html` <small class="warn">+${g.stale.length} stale</small>` : ''}`, { testId: 'workers-alive' })}
${stat('total lag', g.lagAt ? formatNumber(totalLag(g.lag)) : '…', { testId: 'total-lag' })}
${stat('due now', g.lagAt ? formatNumber(totalLag(g.lag, 'due')) : '…')}
${stat('oldest pending', g.live.length ? formatAge(g.oldestPendingAgeSeconds) : '-')}
${stat('completed / s', formatNumber(g.completedPerSec, 1), { testId: 'completed-rate' })}
${stat('failed / s', formatNumber(g.failedPerSec, 1), { tone: g.failedPerSec > 0 ? 'bad' : '' })}
${stat('DLQ depth', g.dlqDepth === undefined ? '…' : html`<a href="${href('/dlq', { topic: g.topic })}">${formatNumber(g.dlqDepth)}</a>`, { testId: 'dlq-depth', tone: g.dlqDepth ? 'bad' : '' })}
${stat('desired replicas', g.desiredReplicas ?? '…')}
</div>
<div class="charts">
${chart(
  `chart-rate-${index}`,
  'jobs / s (last 15 min)',
  [
    { label: 'completed', stroke: '#2f9e44' },
    { label: 'failed', stroke: '#e03131' },
  ],
  [t, g.history.map((p) => p.completedPerSec), g.history.map((p) => p.failedPerSec)],
)}
${chart(`chart-lag-${index}`, 'lag (last 15 min)', [{ label: 'lag', stroke: '#1971c2' }], [t, g.history.map((p) => p.lag)])}
</div>
<table class="grid lag" data-testid="lag-table">
<thead><tr><th>topic</th><th class="num">partition</th><th class="num">end</th><th class="num">committed</th><th class="num">lag</th><th class="num">due</th></tr></thead>
<tbody>
${lagRows.map(
  (l) =>
    html`<tr data-testid="lag-row" data-topic="${l.topic}" data-partition="${l.partition}"><td>${l.topic}</td><td class="num">${l.partition}</td><td class="num">${l.end}</td><td class="num">${l.committed ?? '-'}</td><td class="num" data-testid="lag">${l.lag}</td><td class="num">${l.due}</td></tr>`,
)}
</tbody>
</table>
</section>`;
}

export function overviewPage(ctx: PageContext): Page {
  const groups = ctx.model.groups();
  const body = html`<h1>Overview</h1>
<div id="overview" data-live>
${ctx.model.feedError ? notice(ctx.model.feedError, 'warn') : ''}
${
  groups.length === 0
    ? notice(
        html`No consumer group to show yet. Groups appear when a worker publishes its status (every 5 s, to <code>__strand_status</code>), or name them with <code>strand console --group G</code>.`,
      )
    : groups.map((g, i) => groupSection(g, i))
}
</div>`;
  return { title: 'Overview', active: '/', body };
}
