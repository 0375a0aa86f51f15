import { formatNumber, type Html, html } from '../html.js';
import type { GroupView } from '../model.js';

/** Tenant rows the group page shows (the rest summed into `other`). */
const SHOWN = 10;

const LIMIT_NAMES: Record<string, string> = {
  tenant_rate: 'tenant rate',
  tenant_concurrency: 'tenant concurrency',
  key_rate: 'key rate',
  key_concurrency: 'key concurrency',
  store_error: 'limit store failed',
};

/**
 * The group's waiting tenants, from its live workers' snapshots: each worker reports its top
 * tenants by runnable jobs plus `other` (`limits.metricsTopTenants`), summed here per tenant (a
 * tenant in one worker's `other` stays in `other`), and the limits' counts summed over the workers,
 * with their rate since each worker's previous snapshot. Nothing when no live worker has tenants.
 */
export function waitingTenants(g: GroupView): Html | '' {
  const reporting = g.live.filter((w) => w.snapshot.tenants);
  if (reporting.length === 0) return '';
  const jobs = new Map<string, number>();
  const workers = new Map<string, number>();
  let other = 0;
  let deferred = 0;
  const limited = new Map<string, { total: number; perSec: number | undefined }>();
  for (const { snapshot: s, previous: p } of reporting) {
    const t = s.tenants!;
    deferred += t.deferred;
    for (const w of t.waiting) {
      if (w.tenant === 'other') {
        other += w.jobs;
        continue;
      }
      jobs.set(w.tenant, (jobs.get(w.tenant) ?? 0) + w.jobs);
      workers.set(w.tenant, (workers.get(w.tenant) ?? 0) + 1);
    }
    const seconds = p?.tenants ? (s.at - p.at) / 1000 : 0;
    for (const [limit, n] of Object.entries(t.limited)) {
      const l = limited.get(limit) ?? { total: 0, perSec: undefined };
      l.total += n;
      if (seconds > 0)
        l.perSec = (l.perSec ?? 0) + Math.max(0, n - (p!.tenants!.limited[limit] ?? 0)) / seconds;
      limited.set(limit, l);
    }
  }
  const rows = [...jobs].sort((a, b) => b[1] - a[1]);
  other += rows.slice(SHOWN).reduce((sum, [, n]) => sum + n, 0);
  const all = rows.reduce((sum, [, n]) => sum + n, 0) + other;
  const share = (n: number) => (all > 0 ? `${Math.round((100 * n) / all)} %` : '-');
  return html`<h3>Waiting tenants</h3>
<table class="grid" data-testid="tenant-table">
<thead><tr><th>tenant</th><th class="num">runnable jobs</th><th class="num">share</th><th class="num">workers</th></tr></thead>
<tbody>${rows.length === 0 && other === 0 ? html`<tr><td colspan="4" class="hint">no runnable job waits</td></tr>` : ''}${rows
    .slice(0, SHOWN)
    .map(
      ([tenant, n]) =>
        html`<tr data-testid="tenant-row" data-tenant="${tenant}"><td class="mono">${tenant === 'none' ? html`<small>(no tenant)</small>` : tenant}</td><td class="num" data-testid="tenant-waiting">${formatNumber(n)}</td><td class="num">${share(n)}</td><td class="num">${workers.get(tenant) ?? 0}</td></tr>`,
    )}${other > 0 ? html`<tr data-testid="tenant-row" data-tenant="other"><td><small>other tenants</small></td><td class="num" data-testid="tenant-waiting">${formatNumber(other)}</td><td class="num">${share(other)}</td><td></td></tr>` : ''}</tbody>
</table>
<h3>Held back by a limit</h3>
<table class="grid" data-testid="limited-table">
<thead><tr><th>limit</th><th class="num">times a runnable job was passed over</th><th class="num">per s</th></tr></thead>
<tbody>${limited.size === 0 ? html`<tr><td colspan="3" class="hint">no limit held a job back</td></tr>` : ''}${[
    ...limited,
  ]
    .sort((a, b) => b[1].total - a[1].total)
    .map(
      ([limit, l]) =>
        html`<tr data-testid="limited-row" data-limit="${limit}"><td>${LIMIT_NAMES[limit] ?? limit}</td><td class="num" data-testid="limited-total">${formatNumber(l.total)}</td><td class="num">${l.perSec === undefined ? '-' : formatNumber(l.perSec, 1)}</td></tr>`,
    )}</tbody>
</table>
<p class="hint">Runnable jobs in the workers' tenant queues (${reporting.length} worker${reporting.length === 1 ? '' : 's'} reporting; each reports its top tenants and sums the rest as other). Deferred records, read again once their tenant is under its share: <span data-testid="tenant-deferred">${formatNumber(deferred)}</span>.</p>`;
}
