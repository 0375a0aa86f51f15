import { spawn } from 'node:child_process';
import { createConnection } from 'node:net';
import { describe, expect, it } from 'vitest';
import { jobTopic, stack, uniqueName } from '../support/helpers.js';

/** Runs test/support/exit-program.ts; `exited` false when it was still running after `timeoutMs`. */
function runProgram(
  mode: string,
  topic: string,
  timeoutMs = 45_000,
): Promise<{ exited: boolean; code: number | null; out: Record<string, unknown>; stderr: string }> {
  const { brokers, registryUrl } = stack();
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'test/support/exit-program.ts', mode, topic, brokers.join(','), registryUrl],
      { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, STRAND_LOG_LEVEL: 'warn' } },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    let exited = true;
    const timer = setTimeout(() => {
      exited = false;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      const line = stdout.trim().split('\n').pop() ?? '';
      resolve({ exited, code, out: line.startsWith('{') ? JSON.parse(line) : {}, stderr });
    });
  });
}

const redisUp = await new Promise<boolean>((resolve) => {
  const socket = createConnection({ host: '127.0.0.1', port: 6379 });
  const answer = (up: boolean) => {
    socket.destroy();
    resolve(up);
  };
  socket.setTimeout(1000, () => answer(false));
  socket.on('connect', () => answer(true));
  socket.on('error', () => answer(false));
});

describe('a program ends when it has stopped what it started', () => {
  it('after a JobProducer.connect() that failed on a missing topic', async () => {
    const topic = uniqueName('exit-missing');
    const r = await runProgram('producer-missing-topic', topic);
    expect(r.out.error, r.stderr).toBe(
      `topic ${topic} does not exist (create it with "strand topics create ${topic}")`,
    );
    expect(r.exited, 'still running 45 s after connect() failed').toBe(true);
    expect(r.code).toBe(0);
  });

  it('after a Worker.start() that failed on missing topics', async () => {
    const topic = uniqueName('exit-missing');
    const r = await runProgram('worker-missing-topic', topic);
    expect(r.out.error, r.stderr).toMatch(new RegExp(`^topic\\(s\\) ${topic}, .* do not exist`));
    expect(r.exited, 'still running 45 s after start() failed').toBe(true);
    expect(r.code).toBe(0);
  });

  it.skipIf(!redisUp)(
    'after worker.stop(), producer.disconnect() and store.close() with a RedisIdempotencyStore (and the traceparent given at enqueue reaches the handler)',
    async () => {
      const { topic, cleanup } = await jobTopic('exit-redis', { partitions: 2 });
      try {
        const r = await runProgram('redis', topic, 90_000);
        expect(r.out, r.stderr).toEqual({
          traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
          stopped: true,
        });
        expect(r.exited, 'still running after stop, disconnect and store.close()').toBe(true);
        expect(r.code).toBe(0);
      } finally {
        await cleanup();
      }
    },
  );
});
