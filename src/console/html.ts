/**
 * HTML built on the server. Every interpolated value is escaped unless it is already `Html` (made
 * by this module), so a Kafka key, header or payload holding markup shows as text.
 */
export class Html {
  constructor(readonly value: string) {}
  toString(): string {
    return this.value;
  }
}

const ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
  '`': '&#96;',
};

/** Escapes text for element content and quoted attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"'`]/g, (c) => ESCAPES[c] ?? c);
}

export type Fragment = Html | string | number | boolean | null | undefined | readonly Fragment[];

function render(value: Fragment): string {
  if (value === null || value === undefined || value === false) return '';
  if (value instanceof Html) return value.value;
  if (Array.isArray(value)) return value.map((v) => render(v as Fragment)).join('');
  return escapeHtml(String(value));
}

/** The tagged template: `html\`<td>${key}</td>\`` escapes `key`. */
export function html(strings: TemplateStringsArray, ...values: Fragment[]): Html {
  let out = strings[0] ?? '';
  values.forEach((v, i) => {
    out += render(v) + (strings[i + 1] ?? '');
  });
  return new Html(out);
}

/** A link to a console page with query parameters (undefined and empty ones left out). */
export function href(path: string, params: Record<string, string | number | undefined> = {}): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = -1;
  do {
    v /= 1024;
    u++;
  } while (v >= 1024 && u < units.length - 1);
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[u]}`;
}

/** A duration in seconds as `4 s`, `3 min 20 s`, `2 h 5 min`, `3 d 4 h`. */
export function formatAge(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 86_400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86_400)} d ${Math.floor((s % 86_400) / 3600)} h`;
}

export function formatTime(ms: number | undefined): string {
  if (ms === undefined || !Number.isFinite(ms)) return '-';
  return new Date(ms)
    .toISOString()
    .replace('T', ' ')
    .replace(/\.\d+Z$/, 'Z');
}

export function formatNumber(n: number, digits = 0): string {
  return n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

/** JSON for display: Buffers as hex, bigints as strings, pretty-printed. */
export function prettyJson(value: unknown): string {
  return JSON.stringify(
    value,
    (_k, v: unknown) => {
      if (typeof v === 'bigint') return v.toString();
      if (v && typeof v === 'object' && (v as { type?: string }).type === 'Buffer') {
        const data = (v as { data?: number[] }).data ?? [];
        return `0x${Buffer.from(data).toString('hex')}`;
      }
      return v;
    },
    2,
  );
}

export const NAV = [
  ['/', 'Overview'],
  ['/workers', 'Workers'],
  ['/jobs', 'Jobs'],
  ['/dlq', 'Dead letters'],
  ['/tiers', 'Tiers and delays'],
  ['/schemas', 'Schemas'],
  ['/outbox', 'Outbox'],
  ['/controls', 'Controls'],
] as const;

export interface LayoutOptions {
  title: string;
  /** The nav entry to mark (its path). */
  active: string;
  readOnly: boolean;
  /** Shows the logout button (token auth). */
  loggedIn: boolean;
  /** Not logged in: the header shows the brand only (no nav, no brokers, no mode). */
  anonymous: boolean;
  csrf: string;
  cluster: string;
  body: Html;
  /** Live refresh period in ms; 0 = the page does not refresh itself. */
  refreshMs: number;
}

/** The page around every view: nav, status line, scripts (no inline script or style: strict CSP). */
export function layout(o: LayoutOptions): Html {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${o.title} · Strand Console</title>
<link rel="stylesheet" href="/assets/uPlot.min.css">
<link rel="stylesheet" href="/assets/console.css">
<script src="/assets/uPlot.iife.min.js" defer></script>
<script src="/assets/console.js" defer></script>
</head>
<body data-refresh-ms="${o.refreshMs}">
<header class="top">
  <a class="brand" href="/">Strand <span>Console</span></a>
${
  o.anonymous
    ? ''
    : html`  <nav>${NAV.map(([path, label]) => html`<a href="${path}"${path === o.active ? html` class="active" aria-current="page"` : ''}>${label}</a>`)}</nav>
  <div class="meta">
    ${o.readOnly ? html`<span class="badge ro" title="--read-only: no actions">read-only</span>` : ''}
    <span class="cluster" title="bootstrap brokers">${o.cluster}</span>
    <span id="live" class="live" title="live updates">${o.refreshMs > 0 ? 'live' : ''}</span>
    ${
      o.loggedIn
        ? html`<form method="post" action="/logout" class="inline"><input type="hidden" name="_csrf" value="${o.csrf}"><button class="link">log out</button></form>`
        : ''
    }
  </div>`
}
</header>
<main>
${o.body}
</main>
</body>
</html>
`;
}

/** A form that POSTs with the CSRF token (never rendered on a read-only console). */
export function postForm(
  action: string,
  csrf: string,
  fields: Record<string, string | number | undefined>,
  button: Html | string,
  opts: { className?: string; buttonClass?: string; testId?: string } = {},
): Html {
  return html`<form method="post" action="${action}" class="${opts.className ?? 'inline'}">
<input type="hidden" name="_csrf" value="${csrf}">
${Object.entries(fields).map(([k, v]) => (v === undefined ? '' : html`<input type="hidden" name="${k}" value="${v}">`))}
<button type="submit" class="${opts.buttonClass ?? 'btn'}"${opts.testId ? html` data-testid="${opts.testId}"` : ''}>${button}</button>
</form>`;
}
