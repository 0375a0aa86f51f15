import { HEADERS, headerString } from '../../headers.js';
import { offsetsAtTime, readRanges } from '../../kafka/browse.js';
import { formatAge, formatNumber, formatTime, type Html, href, html } from '../html.js';
import type { GroupView } from '../model.js';
import { notice, type Page, type PageContext } from './context.js';

/** Due times of records at fixed offsets never change: remembered by topic/partition/offset. */
const dueAtCache = new Map<string, number>();

async function nextDue(
  ctx: PageContext,
  topic: string,
  delayMs: number,
  lagged: number[],
): Promise<number | undefined> {
  if (lagged.length === 0) return undefined;
  // The first record of each partition that is not due yet (appended less than the delay ago).
  const starts = await offsetsAtTime(ctx.model.connection, topic, Date.now() - delayMs + 1);
  const wanted = lagged
    .map((partition) => ({ partition, offset: starts.get(partition) }))
    .filter((w): w is { partition: number; offset: number } => w.offset !== undefined);
  const missing = wanted.filter((w) => !dueAtCache.has(`${topic}/${w.partition}/${w.offset}`));
  if (missing.length > 0) {
    const read = await readRanges(
      ctx.model.connection,
      topic,
      missing.map((w) => ({ partition: w.partition, from: w.offset, to: w.offset + 1 })),
      { timeoutMs: 5000 },
    );
    for (const r of read) {
      const due = Number(
        headerString(r.message.headers, HEADERS.dueAt) ?? Number(r.message.timestamp) + delayMs,
      );
      dueAtCache.set(`${topic}/${r.partition}/${r.message.offset}`, due);
    }
    if (dueAtCache.size > 10_000) dueAtCache.clear();
  }
  const dues = wanted
    .map((w) => dueAtCache.get(`${topic}/${w.partition}/${w.offset}`))
    .filter((d): d is number => d !== undefined);
  return dues.length ? Math.min(...dues) : undefined;
}

/** Delayed jobs waiting in the topic's delay buckets (docs/delayed-jobs.md). */
function groupDelays(g: GroupView): Html | string {
  if (g.delays.length === 0) return '';
  const total = g.delays.reduce((s, d) => s + d.waiting, 0);
  const rows = g.delays.map(
    (d) => html`<tr data-testid="delay-row" data-topic="${d.topic}">
<td><a href="${href('/jobs', { topic: d.topic })}">${d.topic}</a></td>
<td class="num">${d.ms ? formatAge(d.ms / 1000) : '0 (in memory until due)'}</td>
<td class="num" data-testid="delay-waiting">${formatNumber(d.waiting)}</td>
</tr>`,
  );
  return html`<h3>Delayed jobs <small data-testid="delayed-total">${formatNumber(total)} not yet due</small></h3>
<table class="grid"><thead><tr><th>delay bucket</th><th class="num">length</th><th class="num">waiting</th></tr></thead>
<tbody>${rows}</tbody></table>`;
}

async function groupTiers(ctx: PageContext, g: GroupView): Promise<Html> {
  if (g.tiers.length === 0)
    return html`<section class="card"><h2>${g.group} <small>${g.topic}</small></h2><p class="hint">No retry tiers: failures retry in place, then go to the DLQ.</p>${groupDelays(g)}</section>`;
  const rows: Html[] = [];
  for (const [i, tier] of g.tiers.entries()) {
    const lag = g.lag.filter((l) => l.topic === tier.topic);
    const waiting = lag.reduce((s, l) => s + l.lag, 0);
    const due = lag.reduce((s, l) => s + l.due, 0);
    const notDue = lag.filter((l) => l.lag > l.due).map((l) => l.partition);
    let next: Html | string = waiting === 0 ? '-' : due > 0 ? 'now' : '…';
    try {
      const at = await nextDue(ctx, tier.topic, tier.delayMs, notDue);
      if (at !== undefined)
        next = html`${formatTime(at)} <small>(in ${formatAge((at - Date.now()) / 1000)})</small>`;
    } catch (error) {
      next = `? (${(error as Error).message.split('\n')[0]})`;
    }
    rows.push(html`<tr data-testid="tier-row" data-topic="${tier.topic}">
<td>tier ${i + 1}</td>
<td><a href="${href('/jobs', { topic: tier.topic })}">${tier.topic}</a></td>
<td class="num">${tier.delayMs ? formatAge(tier.delayMs / 1000) : '?'}</td>
<td class="num" data-testid="tier-waiting">${formatNumber(waiting)}</td>
<td class="num">${formatNumber(due)}</td>
<td>${next}</td>
</tr>`);
  }
  return html`<section class="card"><h2>${g.group} <small>${g.topic}</small></h2>
<table class="grid"><thead><tr><th>tier</th><th>topic</th><th class="num">delay</th><th class="num">waiting</th><th class="num">due now</th><th>next due</th></tr></thead>
<tbody>${rows}</tbody></table>${groupDelays(g)}</section>`;
}

export async function tiersPage(ctx: PageContext): Promise<Page> {
  const groups = ctx.model.groups();
  // A card only for groups with something to show: with many groups, the rest is one line.
  const plain = groups.filter((g) => g.tiers.length === 0 && g.delays.length === 0);
  const sections: Html[] = [];
  for (const g of groups) if (!plain.includes(g)) sections.push(await groupTiers(ctx, g));
  if (plain.length > 0)
    sections.push(
      html`<p class="hint" data-testid="no-tiers">No retry tiers and no delayed jobs (failures retry in place, then go to the DLQ): ${plain.map((g, i) => html`${i ? ', ' : ''}<a href="${href('/group', { name: g.group })}">${g.group}</a>`)}.</p>`,
    );
  const body = html`<h1>Retry tiers and delayed jobs</h1>
<p class="hint">A failed job waits in its tier topic until its delay has passed (<code>strand-due-at</code>); <b>waiting</b> is the group's lag on the tier, <b>due now</b> the part whose delay has passed. <b>Delayed jobs</b> (<code>enqueue --delay</code>) wait in the topic's delay buckets until due and are not lag.</p>
<div id="tiers" data-live>
${groups.length === 0 ? notice('No consumer group known yet.') : sections}
</div>`;
  return { title: 'Retry tiers and delayed jobs', active: '/tiers', body };
}
