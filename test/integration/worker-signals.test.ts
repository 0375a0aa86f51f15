import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { jobTopic, stack, uniqueName, waitUntil } from '../support/helpers.js';
import { enqueuePayments } from '../support/jobs.js';

/** `strand worker test/support/ledger-worker.ts` with long jobs; its exit code and output. */
function startWorker(settings: Record<string, unknown>) {
  const dir = mkdtempSync(join(tmpdir(), 'strand-signals-'));
  const ledger = join(dir, 'ledger.txt');
  const child: ChildProcess = spawn(
    process.execPath,
    ['dist/cli/main.js', 'worker', 'test/support/ledger-worker.ts'],
    {
      env: {
        ...process.env,
        STRAND_BROKERS: stack().brokers.join(','),
        STRAND_REGISTRY_URL: stack().registryUrl,
        STRAND_LOG_LEVEL: 'info',
        STRAND_TEST_WORKER: JSON.stringify({ ...settings, ledger }),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let output = '';
  child.stdout?.on('data', (d) => (output += d));
  child.stderr?.on('data', (d) => (output += d));
  const exit = new Promise<{ code: number | null; at: number }>((resolve) =>
    child.once('exit', (code) => resolve({ code, at: Date.now() })),
  );
  const lines = (kind: 'S' | 'C') =>
    existsSync(ledger)
      ? readFileSync(ledger, 'utf8')
          .split('\n')
          .filter((l) => l.startsWith(`${kind} `))
      : [];
  return { child, exit, lines, output: () => output, dir };
}

let running: ReturnType<typeof startWorker> | undefined;
afterEach(() => {
  running?.child.kill('SIGKILL');
  if (running) rmSync(running.dir, { recursive: true, force: true });
  running = undefined;
});

describe('strand worker exit codes on signals', () => {
  it('SIGINT: the running jobs finish, then exit 0', async () => {
    const { topic, cleanup } = await jobTopic('sig-once', { partitions: 2 });
    await enqueuePayments(topic, 4, 4, { memo: () => 'long' });
    running = startWorker({ topic, groupId: uniqueName('sig-once-g'), concurrency: 4, longMs: 2000 });
    const w = running;
    await waitUntil(() => w.lines('S').length >= 1, { timeoutMs: 60_000, what: 'a job running' });
    const sentAt = Date.now();
    w.child.kill('SIGINT');
    const { code, at } = await w.exit;
    expect(code, w.output().slice(-2000)).toBe(0);
    expect(w.output()).toContain('worker stopped');
    // Graceful: every job that had started completed before the exit.
    expect(w.lines('C').length).toBe(w.lines('S').length);
    expect(at - sentAt).toBeLessThan(15_000);
    await cleanup();
  });

  it('a second signal during the graceful stop exits 1 at once, without waiting for the running job', async () => {
    const { topic, cleanup } = await jobTopic('sig-twice', { partitions: 1 });
    await enqueuePayments(topic, 2, 1, { memo: () => 'long' });
    running = startWorker({
      topic,
      groupId: uniqueName('sig-twice-g'),
      concurrency: 1,
      longMs: 60_000,
      shutdownTimeoutMs: 60_000,
    });
    const w = running;
    await waitUntil(() => w.lines('S').length >= 1, { timeoutMs: 60_000, what: 'the long job running' });
    w.child.kill('SIGTERM');
    // The first signal waits for the running job (60 s): the process is still there.
    await waitUntil(() => w.output().includes('stopping: finishing running jobs'), {
      timeoutMs: 10_000,
      what: 'the graceful stop begun',
    });
    expect(w.child.exitCode).toBeNull();
    const sentAt = Date.now();
    w.child.kill('SIGTERM');
    const { code, at } = await w.exit;
    expect(code, w.output().slice(-2000)).toBe(1);
    expect(w.output()).toContain('second signal: exiting without waiting');
    expect(at - sentAt).toBeLessThan(3000);
    expect(w.lines('C')).toEqual([]); // the long job did not finish
    await cleanup();
  });
});
