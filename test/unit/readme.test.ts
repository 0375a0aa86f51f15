import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { QueueMetrics } from '../../src/observability/metrics.js';
import { OutboxMetrics } from '../../src/outbox/metrics.js';
import { workerOptionNames } from '../../src/worker/options.js';

const readme = readFileSync('README.md', 'utf8');
const docs = readdirSync('docs')
  .filter((f) => f.endsWith('.md'))
  .map((f) => join('docs', f));

describe('README and docs stay in sync', () => {
  it('starts with the two commands for a fresh machine', () => {
    const firstBlock = /```sh\n([\s\S]*?)```/.exec(readme)?.[1] ?? '';
    expect(firstBlock).toContain('npm ci && npm run demo');
    expect(firstBlock).toContain('npm test');
  });

  it('documents every worker option', () => {
    const options = readFileSync('docs/options.md', 'utf8');
    const table = options.slice(options.indexOf('## Worker options'));
    for (const name of workerOptionNames) expect(table, name).toMatch(new RegExp(`\`${name}\``));
  });

  it('documents every metric', () => {
    const metrics = readFileSync('docs/metrics.md', 'utf8');
    for (const m of [
      ...new QueueMetrics({ defaultMetrics: false }).registry.getMetricsAsArray(),
      ...new OutboxMetrics({ defaultMetrics: false }).registry.getMetricsAsArray(),
    ])
      expect(metrics).toContain(`\`${m.name}\``);
  });

  it('links only to files that exist, and the README links every docs page', () => {
    for (const file of ['README.md', ...docs]) {
      const text = readFileSync(file, 'utf8');
      for (const [, target] of text.matchAll(/\]\(([^)#\s]+)(?:#[^)]*)?\)/g)) {
        if (!target || /^[a-z]+:/.test(target)) continue;
        expect(existsSync(join(dirname(file), target)), `${file} → ${target}`).toBe(true);
      }
    }
    for (const page of docs) expect(readme, page).toContain(`](${page})`);
  });

  it('the "In code" program has a consumer group of its own, not one the tour runs', () => {
    const inCode = readme.slice(readme.indexOf('## In code'));
    const program = /```ts\n([\s\S]*?)```/.exec(inCode)?.[1] ?? '';
    const groups = [...program.matchAll(/groupId: '([^']+)'/g)].map((m) => m[1]);
    expect(groups).toHaveLength(1);
    const tour =
      readme.slice(0, readme.indexOf('## In code')) + readFileSync('examples/payment-worker.ts', 'utf8');
    const tourGroups = new Set([...tour.matchAll(/(?:groupId: '|--group )([\w.-]+)/g)].map((m) => m[1]));
    expect(tourGroups.size).toBeGreaterThan(0);
    expect(groups.filter((g) => tourGroups.has(g))).toEqual([]);
  });

  it('the tour: no restart for new delay buckets (delayed.test.ts proves a running worker takes them); the npx SIGTERM note where it runs npx', () => {
    const tour = readme.slice(readme.indexOf('## A five-minute tour'), readme.indexOf('## In code'));
    expect(tour).not.toMatch(/restart the worker/i);
    expect(tour).toMatch(/picks the new delay buckets up by itself/);
    // The paragraph right after the block that starts the worker with npx.
    const afterNpxWorker = tour.slice(tour.indexOf('npx strand worker '));
    const note =
      afterNpxWorker
        .slice(afterNpxWorker.indexOf('```') + 3)
        .trim()
        .split('\n\n')[0] ?? '';
    expect(note).toMatch(/SIGTERM sent to npx/);
    expect(note).toMatch(/node dist\/cli\/main\.js worker examples\/payment-worker\.ts/);
  });
});
