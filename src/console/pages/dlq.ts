import { isStrandError } from '../../errors.js';
import { type DeadJob, replayDeadJobs, unconfirmedNote } from '../../failure/dlq.js';
import { HEADERS, headerString } from '../../headers.js';
import { readRanges } from '../../kafka/browse.js';
import { formatNumber, formatTime, type Html, href, html, postForm } from '../html.js';
import type { DeadLetter, ReplayTask } from '../model.js';
import {
  badge,
  intParam,
  notice,
  type Page,
  type PageContext,
  PageError,
  parseSince,
  type Redirect,
  stat,
  topicInput,
} from './context.js';
import { headersTable, payloadBlock, schemaLabel } from './records-view.js';
import { choiceLine, chooseTopic, topicPicker } from './topic-choice.js';

interface Filter {
  errorClass?: string;
  key?: string;
  since?: number;
}

function filterOf(q: URLSearchParams): Filter {
  const f: Filter = {};
  const error = q.get('error')?.trim();
  const key = q.get('key');
  const since = parseSince(q.get('since')?.trim() || null);
  if (error) f.errorClass = error;
  if (key !== null && key !== '') f.key = key;
  if (since !== undefined) f.since = since;
  return f;
}

function matches(l: DeadLetter, f: Filter): boolean {
  if (f.errorClass !== undefined && l.job.errorClass !== f.errorClass) return false;
  if (f.key !== undefined && l.job.key !== f.key) return false;
  if (f.since !== undefined && (l.job.failedAt ?? 0) < f.since) return false;
  return true;
}

function topicOf(ctx: PageContext, q: URLSearchParams = ctx.query): string {
  const topic = (q.get('topic') ?? '').trim();
  if (!topic) throw new PageError(400, 'name a job topic');
  return topic;
}

function short(text: string | undefined, max = 70): string {
  const one = (text ?? '').replace(/\s+/g, ' ');
  return one.length > max ? `${one.slice(0, max - 1)}…` : one;
}

function lettersTable(topic: string, letters: readonly { job: DeadJob; replayed: boolean }[]): Html {
  return html`<table class="grid dlq" data-testid="dlq-table">
<thead><tr><th>failed at</th><th>partition / offset</th><th>key</th><th>job id</th><th>error</th><th>message</th><th class="num">attempts</th><th>reason</th><th></th></tr></thead>
<tbody>
${letters.map((l) => {
  const j = l.job;
  const link = href('/dlq/job', { topic, partition: j.partition, offset: j.offset });
  return html`<tr data-testid="dead-row" data-partition="${j.partition}" data-offset="${j.offset}" data-job-id="${j.jobId ?? ''}">
<td>${formatTime(j.failedAt)}</td>
<td class="mono"><a href="${link}" data-testid="dead-link">${j.partition} / ${j.offset}</a></td>
<td class="mono">${j.key ?? html`<span class="muted">null</span>`}</td>
<td class="mono">${j.jobId ?? '-'}</td>
<td>${j.errorClass ?? (j.decodeReason ? 'undecodable' : '-')}</td>
<td>${short(j.errorMessage ?? j.decodeReason)}</td>
<td class="num">${j.attempts ?? '-'}</td>
<td>${j.reason ?? '-'}</td>
<td>${l.replayed ? badge('replayed', 'muted') : ''}</td>
</tr>`;
})}
</tbody></table>`;
}

function filterForm(ctx: PageContext, topic: string, classes: string[], action = '/dlq'): Html {
  const q = ctx.query;
  return html`<form method="get" action="${action}" class="filters" data-testid="dlq-filters">
<label>topic ${topicInput('topic', topic, ctx.model.jobTopics())}</label>
<label>error class <select name="error"><option value="">any</option>${classes.map((c) => html`<option${c === q.get('error') ? html` selected` : ''}>${c}</option>`)}</select></label>
<label>key <input name="key" value="${q.get('key') ?? ''}" size="14"></label>
<label>since <input name="since" value="${q.get('since') ?? ''}" size="14" placeholder="2h or ISO time"></label>
<button class="btn">Filter</button>
</form>`;
}

export async function dlqPage(ctx: PageContext): Promise<Page> {
  const choice = chooseTopic(ctx, 'dlq');
  if (!choice)
    return {
      title: 'Dead letters',
      active: '/dlq',
      body: html`<h1>Dead letters</h1>${filterForm(ctx, '', [])}${topicPicker(ctx, 'dlq', '/dlq')}`,
    };
  const topic = choice.topic;
  const filter = filterOf(ctx.query);
  const letters = await ctx.model.deadLetters(topic);
  const classes = [...new Set(letters.map((l) => l.job.errorClass).filter((c): c is string => !!c))].sort();
  const shown = letters.filter((l) => matches(l, filter));
  const unreplayed = letters.filter((l) => !l.replayed).length;
  const q = ctx.query;
  const body = html`<h1>Dead letters <small>${topic}.dlq</small></h1>
${filterForm(ctx, topic, classes)}
${choiceLine(ctx, choice, 'dlq', '/dlq')}
${
  ctx.readOnly || shown.length === 0
    ? ''
    : html`<form method="get" action="/dlq/preview" class="filters replay" data-testid="replay-filter-form">
<input type="hidden" name="topic" value="${topic}">
<input type="hidden" name="error" value="${q.get('error') ?? ''}">
<input type="hidden" name="key" value="${q.get('key') ?? ''}">
<input type="hidden" name="since" value="${filter.since === undefined ? '' : new Date(filter.since).toISOString()}">
<label>rate (jobs/s) <input name="rate" value="${q.get('rate') ?? '100'}" size="5"></label>
<button class="btn warn">Replay the jobs matching this filter…</button> <small>(a dry run first shows how many)</small>
</form>`
}
<div id="dlq" data-live>
<div class="stats">
${stat('not replayed', formatNumber(unreplayed), { testId: 'dlq-unreplayed', tone: unreplayed ? 'bad' : '' })}
${stat('retained', formatNumber(letters.length))}
${stat('matching the filter', formatNumber(shown.length), { testId: 'dlq-matching' })}
</div>
${shown.length ? lettersTable(topic, shown.slice(0, 200)) : notice('No dead letters match.')}
${shown.length > 200 ? html`<p class="hint">Showing the newest 200 of ${shown.length}.</p>` : ''}
</div>`;
  return { title: 'Dead letters', active: '/dlq', body };
}

/** The dry run: what a replay of this filter would send now (its group resumes where it stopped). */
export async function dlqPreviewPage(ctx: PageContext): Promise<Page> {
  if (ctx.readOnly) throw new PageError(403, 'read-only console');
  const topic = topicOf(ctx);
  const filter = filterOf(ctx.query);
  const rate = intParam(ctx.query, 'rate', 1, 100_000);
  // The same dry run as `strand dlq replay --dry-run`: from where this filter's replay group stands.
  const dry = await replayDeadJobs(ctx.model.connection, topic, { ...filter, dryRun: true }).catch(
    (error: unknown) => {
      if (isStrandError(error, 'CONFIG')) throw new PageError(400, error.message);
      throw error;
    },
  );
  const would = dry.jobs.map((job) => ({ job, replayed: job.replayed }));
  const body = html`<h1>Replay preview <small>${topic}.dlq</small></h1>
<p class="caption">Filter: error class <b>${filter.errorClass ?? 'any'}</b>, key <b>${filter.key ?? 'any'}</b>, since <b>${filter.since ? formatTime(filter.since) : 'any time'}</b>${rate ? html`, at most ${rate} jobs/s` : ''}.</p>
<div class="stats">${stat('would be replayed', formatNumber(would.length), { testId: 'preview-count' })}</div>
${
  would.some((l) => l.replayed)
    ? notice(
        `${would.filter((l) => l.replayed).length} of them were replayed before (one by one, or by another filter) and would be sent again: narrow the filter to leave them out.`,
        'warn',
      )
    : ''
}
<p class="hint">Dry run: nothing was sent. Each filter has its own replay group that resumes where it stopped, so jobs this filter already replayed are not counted.</p>
${would.length ? lettersTable(topic, would.slice(0, 100)) : ''}
${
  would.length
    ? postForm(
        '/dlq/replay',
        ctx.csrf,
        {
          topic,
          error: filter.errorClass,
          key: filter.key,
          since: filter.since === undefined ? undefined : String(filter.since),
          rate,
          limit: would.length,
        },
        `Replay ${would.length} job(s) to ${topic}`,
        { buttonClass: 'btn warn', testId: 'replay-confirm' },
      )
    : notice('Nothing to replay.')
}
<p><a href="${href('/dlq', { topic })}">back to the dead letters</a></p>`;
  return { title: 'Replay preview', active: '/dlq', body, live: false };
}

export function dlqReplayPost(ctx: PageContext, form: URLSearchParams): Redirect {
  const topic = topicOf(ctx, form);
  const since = form.get('since');
  const filter: Filter = {};
  if (form.get('error')) filter.errorClass = form.get('error')!;
  if (form.get('key') !== null && form.get('key') !== '') filter.key = form.get('key')!;
  if (since) filter.since = Number(since);
  const task = ctx.model.startReplay(topic, filter, {
    rate: intParam(form, 'rate', 1, 100_000),
    limit: intParam(form, 'limit', 1, Number.MAX_SAFE_INTEGER),
  });
  return { redirect: href('/dlq/task', { id: task.id }) };
}

/** A replay that stopped partway: what it sent, that replaying the filter again is safe, and a way to. */
function stoppedNotice(task: ReplayTask, stopped: NonNullable<ReplayTask['stopped']>): Html {
  const f = task.filter;
  const again = href('/dlq/preview', {
    topic: task.topic,
    error: f.errorClass,
    key: f.key,
    since: f.since === undefined ? undefined : new Date(f.since).toISOString(),
    rate: task.rate,
  });
  return html`<p class="notice error" data-testid="task-stopped">Stopped after sending ${formatNumber(task.progress.sent)} job(s)${unconfirmedNote(stopped.unconfirmed)}: ${stopped.reason}.
What was sent is committed with this filter's replay position, so replaying the same filter again sends only the rest, none twice.
<a href="${again}" data-testid="task-again">Preview the rest</a></p>`;
}

export function dlqTaskPage(ctx: PageContext): Page {
  const task = ctx.model.tasks.get(ctx.query.get('id') ?? '');
  if (!task) throw new PageError(404, 'no such replay (replays are kept while the console runs)');
  const state = task.error ? 'failed' : task.result ? 'done' : 'running';
  const body = html`<h1>Replay <small>${task.topic}</small></h1>
<div id="task" data-live data-testid="task" data-state="${state}">
<div class="stats">
${stat('state', badge(state, state === 'done' ? 'ok' : state === 'failed' ? 'bad' : 'warn'))}
${stat('scanned', formatNumber(task.progress.scanned))}
${stat('matched', formatNumber(task.progress.matched))}
${stat('sent', formatNumber(task.progress.sent), { testId: 'task-sent' })}
</div>
${task.error ? (task.stopped ? stoppedNotice(task, task.stopped) : notice(task.error, 'error')) : ''}
${task.result ? notice(`Replayed ${task.result.sent} job(s) to ${task.topic} (replay group ${task.result.group}).`, 'ok') : ''}
<p class="hint">Started ${formatTime(task.startedAt)}${task.rate ? `, at most ${task.rate} jobs/s` : ''}.</p>
</div>
<p><a href="${href('/dlq', { topic: task.topic })}">back to the dead letters</a></p>`;
  return { title: 'Replay', active: '/dlq', body };
}

export async function dlqJobPage(ctx: PageContext): Promise<Page> {
  const topic = topicOf(ctx);
  const partition = intParam(ctx.query, 'partition', 0, 100_000);
  const offset = intParam(ctx.query, 'offset', 0, Number.MAX_SAFE_INTEGER);
  if (partition === undefined || offset === undefined)
    throw new PageError(400, 'partition and offset needed');
  const letters = await ctx.model.deadLetters(topic);
  let letter = letters.find((l) => l.job.partition === partition && Number(l.job.offset) === offset);
  if (!letter) {
    const [record] = await readRanges(ctx.model.connection, `${topic}.dlq`, [
      { partition, from: offset, to: offset + 1 },
    ]);
    if (!record)
      throw new PageError(404, `no dead letter at ${topic}.dlq partition ${partition} offset ${offset}`);
    const { toDeadJob } = await import('../../failure/dlq.js');
    letter = { job: toDeadJob(partition, record.message), record, replayed: false };
  }
  const j = letter.job;
  const h = (name: string) => headerString(letter.record.message.headers, name);
  const shown = await ctx.decoder.show(letter.record);
  const done = ctx.query.get('done');
  const body = html`<h1>Dead job <small>${topic}.dlq ${partition} / ${offset}</small></h1>
${done === 'sent' ? notice(`Replayed to ${topic} (partition ${ctx.query.get('to') ?? '?'}).`, 'ok') : ''}
${done === 'already-replayed' ? notice('This job was already replayed; nothing sent.', 'warn') : ''}
<div id="dead-job" data-live>
<div class="detail-head">
${letter.replayed ? badge('replayed', 'muted') : badge('dead', 'bad')}
${
  ctx.readOnly || letter.replayed
    ? ''
    : postForm('/dlq/replay-one', ctx.csrf, { topic, partition, offset }, 'Replay this job', {
        buttonClass: 'btn primary',
        testId: 'replay-one',
      })
}
</div>
<div class="two">
<table class="kv" data-testid="dead-fields"><tbody>
<tr><th>job id</th><td class="mono">${j.jobId ?? '-'}</td></tr>
<tr><th>key</th><td class="mono" data-testid="dead-key">${j.key ?? 'null'}</td></tr>
<tr><th>error class</th><td data-testid="error-class">${j.errorClass ?? '-'}</td></tr>
<tr><th>message</th><td>${j.errorMessage ?? '-'}</td></tr>
<tr><th>reason</th><td>${h(HEADERS.deadReason) ?? '-'}${j.decodeReason ? ` (${j.decodeReason})` : ''}</td></tr>
<tr><th>attempts</th><td>${j.attempts ?? '-'}</td></tr>
<tr><th>origin</th><td class="mono">${h(HEADERS.originTopic) ?? '-'} / ${h(HEADERS.originPartition) ?? '-'} / ${h(HEADERS.originOffset) ?? '-'}</td></tr>
<tr><th>failed at</th><td>${formatTime(j.failedAt)}</td></tr>
<tr><th>group</th><td>${h(HEADERS.group) ?? '-'}</td></tr>
<tr><th>replayed before</th><td>${j.replayCount} time(s)</td></tr>
<tr><th>schema</th><td>${schemaLabel(shown)}</td></tr>
</tbody></table>
<div><h3>Payload</h3>${payloadBlock(shown, true)}</div>
</div>
<h3>Stack</h3>
<pre class="stack">${h(HEADERS.errorStack) ?? '(none)'}</pre>
<h3>Headers</h3>
${headersTable(shown.headers, [HEADERS.errorStack])}
</div>
<p><a href="${href('/dlq', { topic })}">back to the dead letters</a></p>`;
  return { title: `Dead job ${partition}/${offset}`, active: '/dlq', body };
}

export async function dlqReplayOnePost(ctx: PageContext, form: URLSearchParams): Promise<Redirect> {
  const topic = topicOf(ctx, form);
  const partition = intParam(form, 'partition', 0, 100_000);
  const offset = intParam(form, 'offset', 0, Number.MAX_SAFE_INTEGER);
  if (partition === undefined || offset === undefined)
    throw new PageError(400, 'partition and offset needed');
  const result = await ctx.model.replayOne(topic, { partition, offset });
  if (result.status === 'not-found') throw new PageError(404, 'no such dead letter');
  return {
    redirect: href('/dlq/job', {
      topic,
      partition,
      offset,
      done: result.status,
      to: result.status === 'sent' ? `${result.partition} / ${result.offset}` : undefined,
    }),
  };
}
