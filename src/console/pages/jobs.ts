import { HEADERS, headerString } from '../../headers.js';
import { type BrowsedRecord, offsetsAtTime, partitionBounds, readRanges } from '../../kafka/browse.js';
import { topicNames } from '../../topology/topics.js';
import { type Html, href, html } from '../html.js';
import {
  intParam,
  notice,
  type Page,
  type PageContext,
  PageError,
  parseSince,
  topicInput,
} from './context.js';
import { recordsTable } from './records-view.js';
import { choiceLine, chooseTopic, topicPicker } from './topic-choice.js';

function knownTopics(ctx: PageContext): string[] {
  return ctx.model.groups().flatMap((g) => [g.topic, ...g.tiers.map((t) => t.topic), g.dlq]);
}

function form(ctx: PageContext, topic: string): Html {
  const q = ctx.query;
  return html`<form method="get" action="/jobs" class="filters" data-testid="jobs-form">
<label>topic ${topicInput('topic', topic, knownTopics(ctx))}</label>
<label>partition <input name="partition" value="${q.get('partition') ?? ''}" size="4" placeholder="all"></label>
<label>offset <input name="offset" value="${q.get('offset') ?? ''}" size="8" placeholder="newest"></label>
<label>or time <input name="time" value="${q.get('time') ?? ''}" size="18" placeholder="2h or 2026-01-31T10:00Z"></label>
<label>limit <input name="limit" value="${q.get('limit') ?? '20'}" size="4"></label>
<button class="btn">Browse</button>
</form>
<form method="get" action="/jobs" class="filters">
<input type="hidden" name="topic" value="${topic}">
<label>find job id or key <input name="find" value="${q.get('find') ?? ''}" size="28" data-testid="find"></label>
<label>in the last <input name="window" value="${q.get('window') ?? '5000'}" size="6"> records per partition</label>
<button class="btn">Find</button>
</form>`;
}

export async function jobsPage(ctx: PageContext): Promise<Page> {
  const q = ctx.query;
  const choice = chooseTopic(ctx, 'jobs');
  const topic = choice?.topic ?? '';
  const head = html`<h1>Jobs</h1>${form(ctx, topic)}`;
  if (!choice)
    return { title: 'Jobs', active: '/jobs', body: html`${head}${topicPicker(ctx, 'jobs', '/jobs')}` };
  const conn = ctx.model.connection;
  const limit = intParam(q, 'limit', 1, 500) ?? 20;
  const partition = intParam(q, 'partition', 0, 100_000);
  const offset = intParam(q, 'offset', 0, Number.MAX_SAFE_INTEGER);
  const find = q.get('find')?.trim();
  let bounds: Awaited<ReturnType<typeof partitionBounds>>;
  try {
    bounds = await partitionBounds(conn, topic);
  } catch (error) {
    throw new PageError(404, `topic ${topic}: ${(error as Error).message.split('\n')[0]}`);
  }
  const chosen = bounds.filter((b) => partition === undefined || b.partition === partition);
  if (partition !== undefined && chosen.length === 0)
    throw new PageError(404, `topic ${topic} has no partition ${partition}`);
  let records: BrowsedRecord[];
  let caption: Html;
  let live = false;
  let nav: Html = html``;
  if (find) {
    const window = intParam(q, 'window', 1, 100_000) ?? 5000;
    const read = await readRanges(
      conn,
      topic,
      chosen.map((b) => ({ partition: b.partition, from: b.high - window, to: b.high })),
      { timeoutMs: 30_000 },
    );
    records = read
      .filter(
        (r) =>
          r.message.key?.toString('utf8') === find || headerString(r.message.headers, HEADERS.jobId) === find,
      )
      .sort((a, b) => Number(b.message.timestamp) - Number(a.message.timestamp))
      .slice(0, limit);
    caption = html`${records.length} record(s) with key or job id <b>${find}</b> among the last ${window} of each partition (${read.length} read)`;
  } else if (q.get('time')) {
    const at = parseSince(q.get('time'))!;
    const starts = await offsetsAtTime(conn, topic, at);
    const read = await readRanges(
      conn,
      topic,
      chosen.map((b) => {
        const from = starts.get(b.partition) ?? b.high;
        return { partition: b.partition, from, to: from + limit };
      }),
    );
    records = read.sort((a, b) => Number(a.message.timestamp) - Number(b.message.timestamp)).slice(0, limit);
    caption = html`the first ${records.length} record(s) at or after ${new Date(at).toISOString()}`;
  } else if (offset !== undefined) {
    if (partition === undefined) throw new PageError(400, 'an offset needs a partition');
    records = await readRanges(conn, topic, [{ partition, from: offset, to: offset + limit }]);
    caption = html`partition ${partition}, offsets ${offset} to ${offset + limit - 1}`;
    const p = chosen[0]!;
    nav = html`<p class="pager">${offset > p.low ? html`<a href="${href('/jobs', { topic, partition, offset: Math.max(p.low, offset - limit), limit })}">← older</a>` : ''}
${offset + limit < p.high ? html`<a href="${href('/jobs', { topic, partition, offset: offset + limit, limit })}">newer →</a>` : ''}</p>`;
  } else {
    live = true;
    const read = await readRanges(
      conn,
      topic,
      chosen.map((b) => ({ partition: b.partition, from: b.high - limit, to: b.high })),
    );
    records = read.sort((a, b) => Number(b.message.timestamp) - Number(a.message.timestamp)).slice(0, limit);
    caption = html`the newest ${records.length} record(s)${partition === undefined ? '' : html` of partition ${partition}`}`;
    if (partition !== undefined) {
      const p = chosen[0]!;
      const from = Math.max(p.low, p.high - limit * 2);
      if (p.high - limit > p.low)
        nav = html`<p class="pager"><a href="${href('/jobs', { topic, partition, offset: from, limit })}">← older</a></p>`;
    }
  }
  const shown = await ctx.decoder.showAll(records);
  const names = topicNames(topic.replace(/\.(dlq|retry\.\d+)$/, ''), 0);
  const body = html`${head}
${choiceLine(ctx, choice, 'jobs', '/jobs')}
<div class="partitions">${bounds.map(
    (b) =>
      html`<a href="${href('/jobs', { topic, partition: b.partition, limit })}" class="${b.partition === partition ? 'chip active' : 'chip'}">p${b.partition} <small>${b.low}…${b.high}</small></a>`,
  )}</div>
<div id="jobs" ${live ? html`data-live` : ''}>
<p class="caption">${caption} <small>(<a href="${href('/dlq', { topic: names.main })}">dead letters of ${names.main}</a>)</small></p>
${shown.length ? recordsTable(shown) : notice('No records there.')}
${nav}
</div>`;
  return { title: `Jobs · ${topic}`, active: '/jobs', body, live };
}
