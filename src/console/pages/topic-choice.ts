import { totalLag } from '../../lag/lag.js';
import { formatAge, formatNumber, type Html, href, html } from '../html.js';
import type { GroupView } from '../model.js';
import type { PageContext } from './context.js';

export type TopicKind = 'jobs' | 'dlq';

/** The topic a page opens on, and why; undefined when the page should ask. */
export interface TopicChoice {
  topic: string;
  /** `asked`: in the URL; `active`: the latest activity seen; `only`: the one known topic. */
  why: 'asked' | 'active' | 'only';
}

const activity = (g: GroupView, kind: TopicKind) => (kind === 'jobs' ? g.activeAt : g.dlqActiveAt);

/**
 * The topic asked for, else the one with the latest activity of `kind` (records for Jobs, dead
 * letters or replays for Dead letters), else the only known one. Opening on the first topic by name
 * would show a random group's data once there are many.
 */
export function chooseTopic(ctx: PageContext, kind: TopicKind): TopicChoice | undefined {
  const asked = ctx.query.get('topic')?.trim();
  if (asked) return { topic: asked, why: 'asked' };
  if (ctx.query.get('choose')) return undefined;
  const active = ctx.model.mostActiveTopic(kind);
  if (active) return { topic: active, why: 'active' };
  const topics = ctx.model.jobTopics();
  return topics.length === 1 ? { topic: topics[0]!, why: 'only' } : undefined;
}

/** Why the page shows this topic, with a way to the others (nothing when it was asked for). */
export function choiceLine(ctx: PageContext, choice: TopicChoice, kind: TopicKind, path: string): Html | '' {
  if (choice.why === 'asked') return '';
  const n = ctx.model.jobTopics().length;
  const g = ctx.model.groups().find((x) => x.topic === choice.topic);
  const at = g ? activity(g, kind) : undefined;
  const what = kind === 'jobs' ? 'records' : 'dead letters';
  return html`<p class="hint" data-testid="default-topic" data-topic="${choice.topic}">${
    choice.why === 'active'
      ? html`Opened on <b>${choice.topic}</b>, the topic whose ${what} moved last${at ? ` (${formatAge((Date.now() - at) / 1000)} ago)` : ''}.`
      : html`Opened on <b>${choice.topic}</b>, the only topic known.`
  }${n > 1 ? html` <a href="${href(path, { choose: 1 })}">All ${n} topics</a>.` : ''}</p>`;
}

/** The known topics to pick from, latest activity first (then the deepest DLQ, then by name). */
export function topicPicker(ctx: PageContext, kind: TopicKind, path: string): Html {
  const groups = ctx.model.groups();
  const rows = [...groups].sort(
    (a, b) =>
      (activity(b, kind) ?? 0) - (activity(a, kind) ?? 0) ||
      (kind === 'dlq' ? (b.dlqDepth ?? 0) - (a.dlqDepth ?? 0) : 0) ||
      a.topic.localeCompare(b.topic),
  );
  const now = Date.now();
  return html`<p class="caption">Which topic? ${groups.length ? `${ctx.model.jobTopics().length} known` : 'None known yet'}${kind === 'jobs' ? ', or type any topic name above' : ''}.</p>
${
  groups.length
    ? html`<table class="grid pick" data-testid="topic-picker">
<thead><tr><th>topic</th><th>group</th><th class="num">lag</th><th class="num">DLQ depth</th><th class="num">${kind === 'jobs' ? 'records moved' : 'dead letters moved'}</th></tr></thead>
<tbody>${rows.map((g) => {
        const at = activity(g, kind);
        return html`<tr data-testid="topic-choice" data-topic="${g.topic}"><td><a href="${href(path, { topic: g.topic })}">${g.topic}</a></td><td>${g.group}</td>
<td class="num">${g.lagAt ? formatNumber(totalLag(g.lag)) : '-'}</td><td class="num">${g.dlqDepth === undefined ? '-' : formatNumber(g.dlqDepth)}</td>
<td class="num">${at ? `${formatAge((now - at) / 1000)} ago` : '-'}</td></tr>`;
      })}</tbody></table>`
    : ''
}`;
}
