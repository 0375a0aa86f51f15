import { parseDuration } from '../../config/index.js';
import type { SchemaCatalog } from '../catalog.js';
import { type Fragment, type Html, html } from '../html.js';
import type { ConsoleModel, Point } from '../model.js';
import type { RecordDecoder } from '../records.js';

/** What a page handler gets. */
export interface PageContext {
  readonly model: ConsoleModel;
  readonly catalog: SchemaCatalog;
  readonly decoder: RecordDecoder;
  readonly readOnly: boolean;
  /** The CSRF token for forms of this browser. */
  readonly csrf: string;
  readonly query: URLSearchParams;
}

/** A rendered page: its title, nav entry and body. */
export interface Page {
  title: string;
  active: string;
  body: Html;
  /** False for pages that should not reload themselves (a diff, a login). @defaultValue true */
  live?: boolean;
}

/** A POST handler's answer: where to go next (303). */
export interface Redirect {
  redirect: string;
}

/** A client error shown as a page with this status. */
export class PageError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export function stat(label: string, value: Fragment, opts: { testId?: string; tone?: string } = {}): Html {
  return html`<div class="stat${opts.tone ? ` ${opts.tone}` : ''}"><div class="label">${label}</div><div class="value"${opts.testId ? html` data-testid="${opts.testId}"` : ''}>${value}</div></div>`;
}

/** A uPlot chart drawn by the client from its data attribute: `data[0]` is time in seconds. */
export function chart(
  id: string,
  title: string,
  series: { label: string; stroke: string }[],
  data: number[][],
): Html {
  return html`<figure class="chart-box"><figcaption>${title}</figcaption><div class="chart" id="${id}" data-chart="${JSON.stringify({ series, data })}"></div></figure>`;
}

/** The two charts of a group or of all groups: jobs/s completed and failed, and lag. */
export function rateAndLagCharts(idPrefix: string, history: Point[]): Html {
  const t = history.map((p) => Math.round(p.at / 1000));
  return html`<div class="charts">
${chart(
  `${idPrefix}-rate`,
  'jobs / s (last 15 min)',
  [
    { label: 'completed', stroke: '#2f9e44' },
    { label: 'failed', stroke: '#e03131' },
  ],
  [t, history.map((p) => p.completedPerSec), history.map((p) => p.failedPerSec)],
)}
${chart(`${idPrefix}-lag`, 'lag (last 15 min)', [{ label: 'lag', stroke: '#1971c2' }], [t, history.map((p) => p.lag)])}
</div>`;
}

export function badge(text: string, tone: string): Html {
  return html`<span class="badge ${tone}">${text}</span>`;
}

export function notice(text: Fragment, tone = 'info'): Html {
  return html`<p class="notice ${tone}">${text}</p>`;
}

/** `since`: an ISO time or a duration ago (`30m`, `2h`). */
export function parseSince(value: string | null): number | undefined {
  if (!value) return undefined;
  const asDate = Date.parse(value);
  if (!Number.isNaN(asDate) && /\d{4}-\d{2}-\d{2}/.test(value)) return asDate;
  try {
    return Date.now() - parseDuration(value, 'since');
  } catch {
    throw new PageError(400, `since: expected an ISO time or a duration ago like 30m, got "${value}"`);
  }
}

export function intParam(q: URLSearchParams, name: string, min: number, max: number): number | undefined {
  const raw = q.get(name);
  if (raw === null || raw.trim() === '') return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new PageError(400, `${name}: expected an integer from ${min} to ${max}, got "${raw}"`);
  return n;
}

/** A topic picker over the known job topics (with their tiers and DLQ when asked), free text allowed. */
export function topicInput(name: string, value: string, topics: string[]): Html {
  return html`<input name="${name}" value="${value}" list="${name}-known" placeholder="topic" required>
<datalist id="${name}-known">${topics.map((t) => html`<option value="${t}">`)}</datalist>`;
}
