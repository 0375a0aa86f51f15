import { describe, expect, it } from 'vitest';
import { runNode } from '../support/cli.js';
import { jobTopic, stack, uniqueName } from '../support/helpers.js';
import { needRedis } from '../support/redis.js';

/** Runs test/support/exit-program.ts; `ended` false when it was still running after `timeoutMs`. */
async function runProgram(mode: string, topic: string, timeoutMs = 45_000) {
  const { brokers, registryUrl } = stack();
  const r = await runNode(
    ['--import', 'tsx', 'test/support/exit-program.ts', mode, topic, brokers.join(','), registryUrl],
    { env: { ...process.env, STRAND_LOG_LEVEL: 'warn' }, timeoutMs },
  );
  const line = r.stdout.trim().split('\n').pop() ?? '';
  return { ...r, out: (line.startsWith('{') ? JSON.parse(line) : {}) as Record<string, unknown> };
}

describe('a program ends when it has stopped what it started', () => {
  it('after a JobProducer.connect() that failed on a missing topic', async () => {
    const topic = uniqueName('exit-missing');
    const r = await runProgram('producer-missing-topic', topic);
    expect(r.out.error, r.stderr).toBe(
      `topic ${topic} does not exist (create it with "strand topics create ${topic}")`,
    );
    expect(r.ended, 'still running 45 s after connect() failed').toBe(true);
    expect(r.code).toBe(0);
  });

  it('after a Worker.start() that failed on missing topics', async () => {
    const topic = uniqueName('exit-missing');
    const r = await runProgram('worker-missing-topic', topic);
    expect(r.out.error, r.stderr).toMatch(new RegExp(`^topic\\(s\\) ${topic}, .* do not exist`));
    expect(r.ended, 'still running 45 s after start() failed').toBe(true);
    expect(r.code).toBe(0);
  });

  it('after worker.stop(), producer.disconnect() and store.close() with a RedisIdempotencyStore (and the traceparent given at enqueue reaches the handler)', async ({
    skip,
  }) => {
    needRedis({ skip });
    const { topic, cleanup } = await jobTopic('exit-redis', { partitions: 2 });
    try {
      const r = await runProgram('redis', topic, 90_000);
      expect(r.out, r.stderr).toEqual({
        traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
        stopped: true,
      });
      expect(r.ended, 'still running after stop, disconnect and store.close()').toBe(true);
      expect(r.code).toBe(0);
    } finally {
      await cleanup();
    }
  });
});
