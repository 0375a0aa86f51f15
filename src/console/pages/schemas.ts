import { diffLines } from 'diff';
import { type Html, href, html, prettyJson } from '../html.js';
import { intParam, notice, type Page, type PageContext, PageError } from './context.js';

async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i]!);
      }
    }),
  );
  return out;
}

export async function schemasPage(ctx: PageContext): Promise<Page> {
  const filter = (ctx.query.get('q') ?? '').trim();
  const all = await ctx.catalog.subjects();
  const subjects = all.filter((s) => s.includes(filter)).slice(0, 200);
  const summaries = await mapLimit(subjects, 6, (s) =>
    ctx.catalog.summary(s).catch(() => ({ subject: s, versions: [] as number[], compatibility: '?' })),
  );
  const body = html`<h1>Schemas</h1>
<form method="get" action="/schemas" class="filters"><label>subject contains <input name="q" value="${filter}"></label><button class="btn">Filter</button></form>
<div id="schemas" data-live>
<p class="caption">${subjects.length} of ${all.length} subject(s) in the registry</p>
<table class="grid" data-testid="subjects"><thead><tr><th>subject</th><th class="num">versions</th><th class="num">latest</th><th>compatibility</th></tr></thead>
<tbody>${summaries.map(
    (s) =>
      html`<tr data-testid="subject-row" data-subject="${s.subject}"><td><a href="${href('/schemas/subject', { subject: s.subject })}">${s.subject}</a></td><td class="num">${s.versions.length}</td><td class="num">${s.versions[s.versions.length - 1] ?? '-'}</td><td>${s.compatibility}</td></tr>`,
  )}</tbody></table>
</div>`;
  return { title: 'Schemas', active: '/schemas', body };
}

type Field = { name: string; type: unknown; default?: unknown };

function fieldsOf(schema: unknown): Map<string, Field> {
  const fields = (schema as { fields?: Field[] } | undefined)?.fields ?? [];
  return new Map(fields.map((f) => [f.name, f]));
}

/** Field-level changes of a record schema: added, removed, changed type or default. */
function fieldChanges(a: unknown, b: unknown): Html {
  const fa = fieldsOf(a);
  const fb = fieldsOf(b);
  const rows: Html[] = [];
  for (const [name, f] of fb) {
    const before = fa.get(name);
    if (!before)
      rows.push(
        html`<tr class="add"><td>added</td><td class="mono">${name}</td><td class="mono">${JSON.stringify(f.type)}${'default' in f ? ` = ${JSON.stringify(f.default)}` : ''}</td></tr>`,
      );
    else if (
      JSON.stringify(before.type) !== JSON.stringify(f.type) ||
      JSON.stringify(before.default) !== JSON.stringify(f.default)
    )
      rows.push(
        html`<tr class="chg"><td>changed</td><td class="mono">${name}</td><td class="mono">${JSON.stringify(before.type)} → ${JSON.stringify(f.type)}</td></tr>`,
      );
  }
  for (const [name, f] of fa)
    if (!fb.has(name))
      rows.push(
        html`<tr class="del"><td>removed</td><td class="mono">${name}</td><td class="mono">${JSON.stringify(f.type)}</td></tr>`,
      );
  if (rows.length === 0) return html`<p class="hint">No field was added, removed or changed.</p>`;
  return html`<table class="grid fields" data-testid="field-changes"><thead><tr><th>change</th><th>field</th><th>type</th></tr></thead><tbody>${rows}</tbody></table>`;
}

export async function subjectPage(ctx: PageContext): Promise<Page> {
  const subject = ctx.query.get('subject') ?? '';
  if (!subject) throw new PageError(400, 'name a subject');
  const { versions, compatibility } = await ctx.catalog.summary(subject).catch((error: unknown) => {
    throw new PageError(404, (error as Error).message);
  });
  const latest = versions[versions.length - 1];
  if (latest === undefined) throw new PageError(404, `subject ${subject} has no versions`);
  const shownVersion = intParam(ctx.query, 'v', 1, Number.MAX_SAFE_INTEGER) ?? latest;
  const a = intParam(ctx.query, 'a', 1, Number.MAX_SAFE_INTEGER) ?? versions[versions.length - 2] ?? latest;
  const b = intParam(ctx.query, 'b', 1, Number.MAX_SAFE_INTEGER) ?? latest;
  const diffing = ctx.query.has('a') || ctx.query.has('b');
  let main: Html;
  if (diffing) {
    const [va, vb] = await Promise.all([ctx.catalog.version(subject, a), ctx.catalog.version(subject, b)]);
    const parts = diffLines(prettyJson(va.schema), prettyJson(vb.schema));
    main = html`<h2>Diff v${a} → v${b} <small>ids #${va.id} → #${vb.id}</small></h2>
${fieldChanges(va.schema, vb.schema)}
<pre class="diff" data-testid="diff">${parts.map((p) => {
      const cls = p.added ? 'add' : p.removed ? 'del' : 'same';
      const mark = p.added ? '+ ' : p.removed ? '- ' : '  ';
      const lines = p.value.replace(/\n$/, '').split('\n');
      return html`<span class="${cls}">${lines.map((l) => `${mark}${l}\n`).join('')}</span>`;
    })}</pre>`;
  } else {
    const v = await ctx.catalog.version(subject, shownVersion);
    main = html`<h2>Version ${v.version} <small>id #${v.id}</small></h2><pre class="payload">${prettyJson(v.schema)}</pre>`;
  }
  const select = (name: string, value: number) =>
    html`<select name="${name}">${versions.map((v) => html`<option value="${v}"${v === value ? html` selected` : ''}>v${v}</option>`)}</select>`;
  const body = html`<h1>${subject}</h1>
<p class="caption">compatibility <b>${compatibility}</b> · versions ${versions.map((v) => html`<a class="${!diffing && v === shownVersion ? 'chip active' : 'chip'}" href="${href('/schemas/subject', { subject, v })}">v${v}</a> `)}</p>
<form method="get" action="/schemas/subject" class="filters" data-testid="diff-form">
<input type="hidden" name="subject" value="${subject}">
<label>diff ${select('a', a)}</label><label>→ ${select('b', b)}</label><button class="btn">Compare</button>
</form>
${main}
<p><a href="/schemas">all subjects</a></p>`;
  return { title: subject, active: '/schemas', body, live: false };
}

export function noSchemaRegistry(message: string): Html {
  return notice(message, 'error');
}
