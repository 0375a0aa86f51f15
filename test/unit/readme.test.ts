import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { QueueMetrics } from '../../src/observability/metrics.js';
import { workerOptionNames } from '../../src/worker/options.js';

const readme = readFileSync('README.md', 'utf8');

describe('README stays in sync', () => {
  it('starts with the two commands for a fresh machine', () => {
    const firstBlock = /```sh\n([\s\S]*?)```/.exec(readme)?.[1] ?? '';
    expect(firstBlock).toContain('npm ci && npm run demo');
    expect(firstBlock).toContain('npm test');
  });

  it('documents every worker option', () => {
    const table = readme.slice(readme.indexOf('## Worker options'));
    for (const name of workerOptionNames) expect(table, name).toMatch(new RegExp(`\`${name}\``));
  });

  it('documents every metric', () => {
    for (const m of new QueueMetrics({ defaultMetrics: false }).registry.getMetricsAsArray())
      expect(readme).toContain(`\`${m.name}\``);
  });
});
