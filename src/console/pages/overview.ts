import { totalLag } from '../../lag/lag.js';
import { formatAge, formatNumber, type Html, href, html } from '../html.js';
import type { GroupView, Point } from '../model.js';
import type { OutboxWatch } from '../outbox.js';
import { badge, notice, type Page, type PageContext, PageError, rateAndLagCharts, stat } from './context.js';

/** Group state for a badge: the control topic's word, else what the workers report. */
export function groupState(g: GroupView): { text: string; tone: string } {
  if (g.topicGone) return { text: 'topic deleted', tone: 'muted' };
  if (g.control?.action === 'pause') {
    const obeyed = g.live.filter((w) => w.snapshot.state === 'paused').length;
    return { text: g.live.length ? `paused (${obeyed}/${g.live.length} workers)` : 'paused', tone: 'warn' };
  }
  if (g.live.length === 0) return { text: 'no live workers', tone: 'muted' };
  const odd = g.live.filter((w) => w.snapshot.state !== 'running');
  if (odd.length > 0) return { text: odd.map((w) => w.snapshot.state).join(', '), tone: 'warn' };
  return { text: 'running', tone: 'ok' };
}

/** Live workers, and the stopped ones (silent, not removed) as a quiet second number. */
export function workerCount(g: GroupView): Html {
  return html`<span data-testid="workers-alive">${g.live.length}</span>${g.stale.length ? html` <small data-testid="workers-stopped">+${g.stale.length} stopped</small>` : ''}`;
}

/** One quiet line for a group that cannot be sampled (its topic deleted, Kafka not answering). */
export function groupNote(g: GroupView): Html | '' {
  if (g.topicGone)
    return html`<p class="hint" data-testid="group-note">Topic ${g.topic} was deleted; shown because ${g.pinned ? 'it was named with --group' : 'a worker of it still reports'}.</p>`;
  if (g.error)
    return html`<p class="hint" data-testid="group-note">Last sample failed (${g.error}); trying again every 5 s.</p>`;
  return '';
}

const SORTS = {
  name: { label: 'group', key: () => 0 },
  lag: { label: 'lag', key: (g: GroupView) => (g.lagAt ? totalLag(g.lag) : -1) },
  dlq: { label: 'DLQ depth', key: (g: GroupView) => g.dlqDepth ?? -1 },
  age: {
    label: 'oldest pending',
    key: (g: GroupView) => (g.live.length ? g.oldestPendingAgeSeconds : -1),
  },
} as const;
type SortKey = keyof typeof SORTS;
const isSort = (s: string): s is SortKey => Object.hasOwn(SORTS, s);

/** All groups' points summed by sample (one sample round stamps every group with the same time). */
function totals(groups: GroupView[]): Point[] {
  const byTime = new Map<number, Point>();
  for (const g of groups)
    for (const p of g.history) {
      const t = byTime.get(p.at) ?? { at: p.at, lag: 0, completedPerSec: 0, failedPerSec: 0 };
      t.lag += p.lag;
      t.completedPerSec += p.completedPerSec;
      t.failedPerSec += p.failedPerSec;
      byTime.set(p.at, t);
    }
  return [...byTime.values()].sort((a, b) => a.at - b.at);
}

/** At most this many rows: a search narrows the rest down. */
const MAX_ROWS = 200;

/** Groups matching `q` (group or topic contains it, any case), largest first by `sort`, then by name. */
export function pickGroups(groups: GroupView[], q: string, sort: SortKey): GroupView[] {
  const needle = q.toLowerCase();
  const key = SORTS[sort].key;
  return groups
    .filter(
      (g) => !needle || g.group.toLowerCase().includes(needle) || g.topic.toLowerCase().includes(needle),
    )
    .sort((a, b) => key(b) - key(a) || a.group.localeCompare(b.group));
}

/**
 * Lag as a small inline SVG (no script, so it survives the strict CSP). Every row shares the time
 * axis from `since` (the oldest point shown) to now, so rows compare.
 */
function sparkline(g: GroupView, since: number, now: number): Html {
  const points = g.history.filter((p) => p.at >= since);
  if (points.length < 2) return html`<span class="muted" title="a point every 5 s">…</span>`;
  const [w, h] = [120, 24];
  const span = Math.max(1, now - since);
  const max = Math.max(1, ...points.map((p) => p.lag));
  const xy = points
    .map((p) => `${(((p.at - since) / span) * w).toFixed(1)},${(h - 2 - (p.lag / max) * (h - 4)).toFixed(1)}`)
    .join(' ');
  return html`<svg class="spark" viewBox="0 0 ${w} ${h}" width="${w}" height="${h}" role="img" aria-label="lag, last 15 min, peak ${max}"><title>lag, last 15 min (peak ${formatNumber(max)})</title><line x1="0" y1="${h - 2}" x2="${w}" y2="${h - 2}" stroke="#dee2e6" stroke-width="1"/><polyline points="${xy}" fill="none" stroke="#1971c2" stroke-width="1.5"/></svg>`;
}

function sortLink(label: string, sort: SortKey, current: SortKey, q: string, num: boolean): Html {
  const link = href('/', { q, sort: sort === 'name' ? undefined : sort });
  const on = sort === current;
  return html`<th class="${num ? 'num ' : ''}sortable${on ? ' sorted' : ''}"${on ? html` aria-sort="${sort === 'name' ? 'ascending' : 'descending'}"` : ''}><a href="${link}" data-testid="sort-${sort}">${label}${on ? ' ▾' : ''}</a></th>`;
}

/** The outbox cell of a group's row: jobs of its topic committed in PostgreSQL, not yet in Kafka. */
function outboxCell(w: OutboxWatch, topic: string): Html {
  const b = w.backlogOf(topic);
  if (!b)
    return html`<td class="num" data-testid="outbox-cell">${w.error ? html`<span title="${w.error}">?</span>` : '…'}</td>`;
  const title = b.pending ? `oldest ${formatAge(b.oldestAgeSeconds)}` : 'nothing waiting';
  return html`<td class="num${b.oldestAgeSeconds > 60 ? ' bad' : ''}" data-testid="outbox-cell" title="${title}"><a href="/outbox">${formatNumber(b.pending)}</a>${b.pending ? html` <small>${formatAge(b.oldestAgeSeconds)}</small>` : ''}</td>`;
}

function groupRow(g: GroupView, since: number, now: number, outbox: OutboxWatch | undefined): Html {
  const state = groupState(g);
  const sampled = g.lagAt !== undefined && !g.topicGone;
  const link = href('/group', { name: g.group });
  return html`<tr data-testid="group-row" data-group="${g.group}" data-href="${link}">
<td><a href="${link}" data-testid="group-link"><b>${g.group}</b></a></td>
<td class="topic">${g.topicGone ? html`<span class="muted">${g.topic} (deleted)</span>` : g.topic}${g.error ? html` <small title="${g.error}">· last sample failed</small>` : ''}</td>
<td data-testid="group-state">${badge(state.text, state.tone)}</td>
<td class="num">${workerCount(g)}</td>
<td class="num" data-testid="total-lag">${sampled ? formatNumber(totalLag(g.lag)) : '-'}</td>
<td class="spark-cell">${sparkline(g, since, now)}</td>
<td class="num" data-testid="oldest-pending">${g.live.length ? formatAge(g.oldestPendingAgeSeconds) : '-'}</td>
<td class="num">${formatNumber(g.completedPerSec, 1)}</td>
<td class="num${g.failedPerSec > 0 ? ' bad' : ''}">${formatNumber(g.failedPerSec, 1)}</td>
<td class="num${g.dlqDepth ? ' bad' : ''}" data-testid="dlq-depth">${g.dlqDepth === undefined || g.topicGone ? '-' : g.dlqDepth === 0 ? '0' : html`<a href="${href('/dlq', { topic: g.topic })}">${formatNumber(g.dlqDepth)}</a>`}</td>
${outbox ? outboxCell(outbox, g.topic) : ''}
<td class="num">${g.desiredReplicas ?? '-'}</td>
<td class="num">${g.activeAt ? html`${formatAge((now - g.activeAt) / 1000)} ago` : '-'}</td>
</tr>`;
}

export function overviewPage(ctx: PageContext): Page {
  const q = (ctx.query.get('q') ?? '').trim();
  const sortParam = ctx.query.get('sort') || 'name';
  if (!isSort(sortParam))
    throw new PageError(400, `sort: expected one of ${Object.keys(SORTS).join(', ')}, got "${sortParam}"`);
  const now = Date.now();
  const all = ctx.model.groups(now);
  const matching = pickGroups(all, q, sortParam);
  const shown = matching.slice(0, MAX_ROWS);
  const sum = (f: (g: GroupView) => number) => all.reduce((s, g) => s + f(g), 0);
  const th = (label: string, sort: SortKey, num = true) => sortLink(label, sort, sortParam, q, num);
  const since = Math.min(now, ...all.map((g) => g.history[0]?.at ?? now));
  const outbox = ctx.model.outbox;
  const outboxPending = outbox?.state?.topics.reduce((s, t) => s + t.pending, 0);
  const table = html`<table class="grid groups" data-testid="groups-table">
<thead><tr>${th('group', 'name', false)}<th>topic</th><th>state</th><th class="num">workers</th>${th('lag', 'lag')}<th title="since ${formatAge((now - since) / 1000)} ago">lag trend</th>${th('oldest pending', 'age')}<th class="num">done / s</th><th class="num">failed / s</th>${th('DLQ', 'dlq')}${outbox ? html`<th class="num" title="jobs committed in the outbox table, not yet in Kafka">outbox</th>` : ''}<th class="num">replicas</th><th class="num">last active</th></tr></thead>
<tbody>${shown.map((g) => groupRow(g, since, now, outbox))}</tbody>
</table>`;
  const body = html`<h1>Overview</h1>
<form method="get" action="/" class="filters" data-testid="group-search">
<label>group or topic contains <input type="search" name="q" value="${q}" size="28" placeholder="e.g. payments"></label>
${sortParam === 'name' ? '' : html`<input type="hidden" name="sort" value="${sortParam}">`}
<button class="btn">Search</button>${q ? html` <a href="${href('/', { sort: sortParam === 'name' ? undefined : sortParam })}">clear</a>` : ''}
</form>
<div id="overview" data-live>
${ctx.model.feedError ? notice(ctx.model.feedError, 'warn') : ''}
${
  all.length === 0
    ? notice(
        html`No consumer group to show yet. Groups appear when a worker publishes its status (every 5 s, to <code>__strand_status</code>), or name them with <code>strand console --group G</code>.`,
      )
    : html`<div class="stats">
${stat('groups', formatNumber(all.length), { testId: 'group-count' })}
${stat('workers alive', formatNumber(sum((g) => g.live.length)))}
${stat('total lag', formatNumber(sum((g) => (g.lagAt && !g.topicGone ? totalLag(g.lag) : 0))))}
${stat('DLQ depth', formatNumber(sum((g) => g.dlqDepth ?? 0)), { tone: sum((g) => g.dlqDepth ?? 0) ? 'bad' : '' })}
${stat(
  'failed / s',
  formatNumber(
    sum((g) => g.failedPerSec),
    1,
  ),
  { tone: sum((g) => g.failedPerSec) > 0 ? 'bad' : '' },
)}
${outbox ? stat('outbox pending', outboxPending === undefined ? '…' : html`<a href="/outbox">${formatNumber(outboxPending)}</a>`, { testId: 'overview-outbox-pending' }) : ''}
</div>
${rateAndLagCharts('chart-all', totals(all))}
${matching.length === 0 ? notice(html`No group or topic contains <b>${q}</b>.`) : table}
<p class="hint">${q ? `${matching.length} of ${all.length} groups match. ` : ''}${matching.length > shown.length ? `Showing the first ${shown.length}: search to narrow them down. ` : ''}A group's page has its charts, partitions and workers.</p>`
}
</div>`;
  return { title: 'Overview', active: '/', body };
}
