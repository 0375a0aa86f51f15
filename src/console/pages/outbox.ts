import { OUTBOX_SHARDS } from '../../outbox/table.js';
import { formatAge, formatNumber, formatTime, type Html, href, html } from '../html.js';
import type { OutboxWatch } from '../outbox.js';
import { chart, notice, type Page, type PageContext, stat } from './context.js';

/** An age in seconds, "-" when nothing waits; the cell warns past a minute. */
function ageCell(pending: number, age: number, testId?: string): Html {
  return html`<td class="num${age > 60 ? ' bad' : ''}"${testId ? html` data-testid="${testId}"` : ''}>${pending ? formatAge(age) : '-'}</td>`;
}

function rejectedCell(n: number | undefined, topic: string): Html {
  if (n === undefined)
    return html`<td class="num" data-testid="outbox-rejected" title="the DLQ could not be read">?</td>`;
  if (n === 0) return html`<td class="num" data-testid="outbox-rejected">0</td>`;
  return html`<td class="num bad" data-testid="outbox-rejected"><a href="${href('/dlq', { topic })}">${formatNumber(n)}</a></td>`;
}

function relaysTable(w: OutboxWatch, now: number): Html {
  const relays = w.state?.relays ?? [];
  if (relays.length === 0)
    return notice(
      html`No relay holds a shard of <code>${w.reader.table}</code>: rows wait until <code>strand outbox relay</code> runs.`,
      'warn',
    );
  return html`<table class="grid" data-testid="outbox-relays">
<thead><tr><th>relay session</th><th>client</th><th class="num">shards</th><th>connected</th></tr></thead>
<tbody>${relays.map(
    (r) =>
      html`<tr data-testid="outbox-relay" data-pid="${r.pid}"><td class="mono">${r.application || 'relay'} <small>pid ${r.pid}</small></td><td>${r.client}</td><td class="num" data-testid="relay-shards">${r.shards} / ${OUTBOX_SHARDS}</td><td>${formatAge((now - r.since) / 1000)} ago</td></tr>`,
  )}</tbody></table>`;
}

/** The 32 key shards as a compact grid: who publishes each, and what waits in it. */
function shardsTable(w: OutboxWatch): Html {
  const shards = w.state?.shards ?? [];
  const rows: (typeof shards)[] = [];
  for (let i = 0; i < shards.length; i += 8) rows.push(shards.slice(i, i + 8));
  return html`<table class="grid shards" data-testid="outbox-shards">
<tbody>${rows.map(
    (row) =>
      html`<tr>${row.map(
        (s) =>
          html`<td data-testid="outbox-shard" data-shard="${s.shard}" data-pending="${s.pending}" class="${s.relay ? '' : 'bad'}" title="shard ${s.shard}: ${s.relay ? `relay pid ${s.relay.pid}` : 'no relay'}${s.pending ? `, oldest ${formatAge(s.oldestAgeSeconds)}` : ''}"><small>#${s.shard}</small> <b>${formatNumber(s.pending)}</b><br><small>${s.relay ? `pid ${s.relay.pid}` : 'no relay'}</small></td>`,
      )}</tr>`,
  )}</tbody></table>
<p class="hint">Each cell: shard, rows waiting in it, the relay session publishing it. A key's rows all live in one shard.</p>`;
}

/** The transactional outbox: per job topic, per relay session and per key shard. */
export function outboxPage(ctx: PageContext): Page {
  const w = ctx.model.outbox;
  if (!w)
    return {
      title: 'Outbox',
      active: '/outbox',
      body: html`<h1>Outbox</h1>${notice(html`Start the console with <code>--database-url postgres://…</code> (and <code>--outbox-table</code> when it is not <code>strand_outbox</code>) to see the jobs committed in PostgreSQL and not yet in Kafka.`)}`,
    };
  const now = Date.now();
  const st = w.state;
  const pending = st ? st.topics.reduce((s, t) => s + t.pending, 0) : 0;
  const oldest = st ? Math.max(0, ...st.topics.map((t) => t.oldestAgeSeconds)) : 0;
  const rejected = [...w.rejected.values()].reduce<number>((s, n) => s + (n ?? 0), 0);
  const t = w.history.map((p) => Math.round(p.at / 1000));
  const body = html`<h1>Outbox <small>${w.reader.table}</small></h1>
<div id="outbox" data-live data-testid="outbox">
${w.error ? notice(html`Last reading failed (${w.error}); trying again every 5 s.`, 'warn') : ''}
${
  !st
    ? notice('Reading the outbox table…')
    : html`<div class="stats">
${stat('pending rows', formatNumber(pending), { testId: 'outbox-pending', tone: pending && oldest > 60 ? 'bad' : '' })}
${stat('oldest pending', pending ? formatAge(oldest) : '-', { testId: 'outbox-oldest', tone: oldest > 60 ? 'bad' : '' })}
${stat('published / s', formatNumber(w.publishedPerSec, 1), { testId: 'outbox-rate' })}
${stat('rejected (to DLQ)', formatNumber(rejected), { testId: 'outbox-rejected-total', tone: rejected ? 'bad' : '' })}
${stat('relays', formatNumber(st.relays.length), { testId: 'outbox-relay-count', tone: st.relays.length ? '' : 'bad' })}
${stat('shards held', `${st.shards.filter((s) => s.relay).length} / ${OUTBOX_SHARDS}`, { testId: 'outbox-shards-held' })}
</div>
<div class="charts">
${chart('outbox-rate', 'published / s (last 15 min)', [{ label: 'published', stroke: '#2f9e44' }], [t, w.history.map((p) => p.publishedPerSec)])}
${chart(
  'outbox-pending',
  'pending rows and oldest age (s)',
  [
    { label: 'pending', stroke: '#1971c2' },
    { label: 'oldest s', stroke: '#f08c00' },
  ],
  [t, w.history.map((p) => p.pending), w.history.map((p) => p.oldestAgeSeconds)],
)}
</div>
<h3>Job topics</h3>
<table class="grid" data-testid="outbox-topics">
<thead><tr><th>topic</th><th class="num">pending</th><th class="num">oldest</th><th class="num">rejected</th></tr></thead>
<tbody>${w.topics().map((topic) => {
        const b = w.backlogOf(topic)!;
        return html`<tr data-testid="outbox-topic" data-topic="${topic}"><td><a href="${href('/jobs', { topic })}">${topic}</a></td><td class="num" data-testid="outbox-topic-pending">${formatNumber(b.pending)}</td>${ageCell(b.pending, b.oldestAgeSeconds)}${rejectedCell(w.rejected.get(topic), topic)}</tr>`;
      })}</tbody></table>
<div class="two">
<div><h3>Relays</h3>${relaysTable(w, now)}</div>
<div><h3>Key shards</h3>${shardsTable(w)}</div>
</div>
<p class="hint">Read ${formatTime(st.at)} from PostgreSQL (the same reading as <code>strand lag --database-url</code>), every 5 s. Published / s counts the rows the relays removed (each after Kafka acknowledged it); rejected counts dead letters with reason <code>outbox-rejected</code> among each DLQ's newest 5,000.</p>`
}
</div>`;
  return { title: 'Outbox', active: '/outbox', body };
}
