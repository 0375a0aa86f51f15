import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { HEADERS } from '../../src/headers.js';
import { runCli } from '../support/cli.js';
import { jobTopic, stack, uniqueName, waitUntil } from '../support/helpers.js';
import { type RawRecord, rawConsume, rawProduce } from '../support/raw-kafka.js';

/**
 * `strand dlq replay` flags, end to end through the CLI: what reaches the job topic is read back
 * with an independent client and compared with the dead records this test wrote.
 */
interface Dead {
  jobId: string;
  key: string;
  partition: number;
  failedAt: number;
}

/** Writes the dead records to the DLQ and checks that exactly those are there. */
async function writeDead(topic: string, dead: Dead[]): Promise<void> {
  await rawProduce(
    stack().brokers,
    `${topic}.dlq`,
    dead.map((d) => ({
      key: d.key,
      partition: d.partition,
      value: Buffer.from(`body of ${d.jobId}`),
      headers: {
        [HEADERS.jobId]: d.jobId,
        [HEADERS.errorClass]: 'TimeoutError',
        [HEADERS.errorMessage]: 'downstream timed out',
        [HEADERS.attempt]: '3',
        [HEADERS.failedAt]: String(d.failedAt),
        [HEADERS.originTopic]: topic,
      },
    })),
  );
  expect(await replayedIds(`${topic}.dlq`)).toEqual(ids(dead));
}

function deadJobs(n: number, f: (i: number) => Partial<Dead> = () => ({})): Dead[] {
  return Array.from({ length: n }, (_, i) => ({
    jobId: uniqueName(`dead-${i}`),
    key: i % 2 === 0 ? 'acct-a' : 'acct-b',
    partition: 0,
    failedAt: Date.now(),
    ...f(i),
  }));
}

/** Job ids on the job topic (committed records only), sorted. */
async function replayedIds(topic: string, expectAtMost = 1000): Promise<string[]> {
  const records: RawRecord[] = await rawConsume(stack().brokers, topic, expectAtMost);
  return records.map((r) => r.headers[HEADERS.jobId] ?? '?').sort();
}

const ids = (dead: Dead[]) => dead.map((d) => d.jobId).sort();

describe('strand dlq replay, flag by flag', () => {
  it('--key sends exactly that key’s dead jobs', async () => {
    const { topic, cleanup } = await jobTopic('replay-key', { partitions: 2 });
    const dead = deadJobs(10);
    await writeDead(topic, dead);
    const r = await runCli(['dlq', 'replay', topic, '--key', 'acct-a']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^replayed 5 job\(s\)/);
    expect(await replayedIds(topic)).toEqual(ids(dead.filter((d) => d.key === 'acct-a')));
    await cleanup();
  });

  it('--since sends only jobs dead-lettered since then', async () => {
    const { topic, cleanup } = await jobTopic('replay-since', { partitions: 2 });
    const hour = 3_600_000;
    const dead = deadJobs(10, (i) => ({ failedAt: Date.now() - (i < 6 ? 3 * hour : 60_000) }));
    await writeDead(topic, dead);
    const r = await runCli(['dlq', 'replay', topic, '--since', '1h']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^replayed 4 job\(s\)/);
    expect(await replayedIds(topic)).toEqual(ids(dead.slice(6)));
    await cleanup();
  });

  it('--limit sends that many, in DLQ order; the same replay again sends the rest, none twice', async () => {
    const { topic, cleanup } = await jobTopic('replay-limit', { partitions: 2 });
    const dead = deadJobs(10);
    await writeDead(topic, dead);
    const first = await runCli(['dlq', 'replay', topic, '--limit', '4']);
    expect(first.code, first.stderr).toBe(0);
    expect(await replayedIds(topic)).toEqual(ids(dead.slice(0, 4)));
    const rest = await runCli(['dlq', 'replay', topic]);
    expect(rest.stdout).toMatch(/^replayed 6 job\(s\)/);
    expect(await replayedIds(topic)).toEqual(ids(dead));
    await cleanup();
  });

  it('--rate holds the replay to R jobs per second', async () => {
    const { topic, cleanup } = await jobTopic('replay-rate', { partitions: 4 });
    const dead = deadJobs(40, (i) => ({ partition: i % 4 }));
    await writeDead(topic, dead);
    const t0 = Date.now();
    const r = await runCli(['dlq', 'replay', topic, '--rate', '5'], { timeoutMs: 60_000 });
    const elapsed = Date.now() - t0;
    expect(r.code, r.stderr).toBe(0);
    console.info(`40 jobs at --rate 5: ${elapsed} ms; ${r.stdout.trim()}`);
    expect(r.stdout).toMatch(/^replayed 40 job\(s\) .*\(scanned 40,/);
    // A bucket of 5 to start with, then one every 200 ms: 35 more take at least 7 s.
    expect(elapsed).toBeGreaterThanOrEqual(6800);
    expect(elapsed).toBeLessThan(40_000);
    expect(await replayedIds(topic)).toEqual(ids(dead));
    await cleanup();
  });

  it('a replay killed midway resumes where it stopped: every job sent once', async () => {
    const { topic, cleanup } = await jobTopic('replay-resume', { partitions: 4 });
    // Four DLQ partitions: each is sent (and its position committed) in a transaction of its own.
    const dead = deadJobs(48, (i) => ({ partition: i % 4 }));
    await writeDead(topic, dead);
    const { brokers, registryUrl } = stack();
    const child = spawn(process.execPath, ['dist/cli/main.js', 'dlq', 'replay', topic, '--rate', '4'], {
      env: { ...process.env, STRAND_BROKERS: brokers.join(','), STRAND_REGISTRY_URL: registryUrl },
      stdio: 'ignore',
    });
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const sentBeforeKill = await waitUntil(
      async () => {
        const n = (await replayedIds(topic)).length;
        return n > 0 ? n : undefined;
      },
      { timeoutMs: 40_000, intervalMs: 300, what: 'the first replayed partition' },
    );
    child.kill('SIGKILL');
    await exited;
    const atKill = (await replayedIds(topic)).length;
    console.info(`killed after ${atKill} of 48 (first seen: ${sentBeforeKill})`);
    expect(atKill).toBeLessThan(48);
    const resumed = await runCli(['dlq', 'replay', topic]);
    expect(resumed.code, resumed.stderr).toBe(0);
    // The resumed run sends only what the killed one had not committed.
    expect(resumed.stdout).toMatch(new RegExp(`^replayed ${48 - atKill} job\\(s\\)`));
    expect(await replayedIds(topic)).toEqual(ids(dead));
    await cleanup();
  });
});
