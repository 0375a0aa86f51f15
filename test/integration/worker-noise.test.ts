import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
import { jobTopic, stack, uniqueName, waitUntil } from '../support/helpers.js';
import { enqueuePayments } from '../support/jobs.js';
import { needRedis } from '../support/redis.js';

/** Log lines at warn (40) or above, and anything that is not one of Strand's JSON lines. */
function noise(stderr: string): string[] {
  return stderr
    .split('\n')
    .filter((l) => l.trim() !== '')
    .filter((l) => {
      if (!l.startsWith('{')) return true;
      const entry = JSON.parse(l) as { level?: number; kafka?: unknown };
      return (entry.level ?? 0) >= 40;
    });
}

describe('what a worker prints', () => {
  it('with an unreachable broker: only the one-line reason, exit 1', async () => {
    const r = await runCli(['worker', 'examples/payment-worker.ts', '--brokers', '127.0.0.1:1'], {
      env: { STRAND_LOG_LEVEL: 'info' },
      timeoutMs: 100_000,
    });
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toBe(
      'strand: cannot reach Kafka (connect ECONNREFUSED 127.0.0.1:1); check --brokers or STRAND_BROKERS\n',
    );
  }, 110_000);

  it('a module with its own Redis store whose topics are missing: exit 1 at once (the store is closed)', async ({
    skip,
  }) => {
    needRedis({ skip });
    const topic = uniqueName('missing');
    const t0 = Date.now();
    const r = await runCli(['worker', 'test/support/redis-store-worker.ts'], {
      env: { STRAND_TEST_TOPIC: topic },
      timeoutMs: 60_000,
    });
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`^strand: topic\\(s\\) ${topic}, .* do not exist`));
    expect(Date.now() - t0).toBeLessThan(30_000);
  });

  it('starting on a new group, running jobs and stopping: no warnings, no kafkajs lines at info level', async () => {
    const { topic, cleanup } = await jobTopic('noise', { partitions: 3, tierDelays: [60_000] });
    const ledger = join(mkdtempSync(join(tmpdir(), 'strand-noise-')), 'ledger');
    const { brokers, registryUrl } = stack();
    const child = spawn(process.execPath, ['dist/cli/main.js', 'worker', 'test/support/console-worker.ts'], {
      env: {
        ...process.env,
        STRAND_BROKERS: brokers.join(','),
        STRAND_REGISTRY_URL: registryUrl,
        STRAND_LOG_LEVEL: 'info',
        STRAND_TEST_WORKER: JSON.stringify({ topic, groupId: uniqueName('noise-g'), ledger }),
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    try {
      await waitUntil(() => stderr.includes('"worker started"'), {
        timeoutMs: 60_000,
        what: 'worker started',
      });
      await enqueuePayments(topic, 20, 5);
      await waitUntil(
        () =>
          existsSync(ledger) &&
          readFileSync(ledger, 'utf8')
            .split('\n')
            .filter((l) => l.startsWith('C ')).length >= 20,
        { timeoutMs: 60_000, what: '20 jobs completed' },
      );
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(noise(stderr), stderr).toEqual([]);
      expect(stderr).not.toMatch(/kafkajs|KafkaJS/);
    } finally {
      child.kill('SIGKILL');
      await cleanup();
    }
  }, 110_000);
});
