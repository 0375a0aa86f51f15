import { formatTime, type Html, href, html, prettyJson } from '../html.js';
import type { ShownRecord } from '../records.js';

function short(text: string, max = 110): string {
  const one = text.replace(/\s+/g, ' ');
  return one.length > max ? `${one.slice(0, max - 1)}…` : one;
}

export function schemaLabel(r: ShownRecord): Html {
  if (!r.schema) return html`<span class="muted">-</span>`;
  const { id, subject, version } = r.schema;
  return subject
    ? html`<a href="${href('/schemas/subject', { subject, v: version })}">${subject}</a> v${version} <small>#${id}</small>`
    : html`id ${id}`;
}

/** The payload: decoded JSON, or the decode error and the first bytes (all escaped). */
export function payloadBlock(r: ShownRecord, open = false): Html {
  if (r.decodeError !== undefined) {
    return html`<details${open ? html` open` : ''}><summary class="bad">undecodable: ${short(r.decodeError, 90)}</summary><pre class="payload">${r.rawPreview ?? ''}</pre></details>`;
  }
  const json = prettyJson(r.data);
  if (open) return html`<pre class="payload" data-testid="payload">${json}</pre>`;
  return html`<details><summary><code>${short(JSON.stringify(JSON.parse(json)))}</code></summary><pre class="payload" data-testid="payload">${json}</pre></details>`;
}

/** Headers as name/value rows; times (`…-at` in ms) also as ISO; `omit` lists ones shown elsewhere. */
export function headersTable(headers: [string, string][], omit: string[] = []): Html {
  return html`<table class="kv"><tbody>${headers.map(([k, v]) => {
    if (omit.includes(k)) return html`<tr><th>${k}</th><td class="muted">(shown above)</td></tr>`;
    const time =
      /-at$/.test(k) && /^\d{12,14}$/.test(v) ? html` <small>${formatTime(Number(v))}</small>` : '';
    return html`<tr><th>${k}</th><td>${v}${time}</td></tr>`;
  })}</tbody></table>`;
}

/** The records table of the Jobs page. */
export function recordsTable(records: ShownRecord[]): Html {
  return html`<table class="grid records" data-testid="records">
<thead><tr><th>partition / offset</th><th>time</th><th>key</th><th>job id</th><th class="num">attempt</th><th>schema</th><th>payload and headers</th></tr></thead>
<tbody>
${records.map(
  (r) => html`<tr data-testid="record" data-partition="${r.partition}" data-offset="${r.offset}">
<td class="mono">${r.partition} / ${r.offset}</td>
<td>${formatTime(r.timestamp)}</td>
<td class="mono" data-testid="record-key">${r.key ?? html`<span class="muted">null</span>`}</td>
<td class="mono">${r.jobId ?? '-'}</td>
<td class="num">${r.attempt ?? '-'}</td>
<td>${schemaLabel(r)}</td>
<td class="payload-cell">${payloadBlock(r)}<details><summary>${r.headers.length} headers, ${r.valueBytes} bytes</summary>${headersTable(r.headers)}</details></td>
</tr>`,
)}
</tbody></table>`;
}
