import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { replayGroupName } from '../../src/lag/replayed.js';
import { runCli } from '../support/cli.js';
import {
  deadAfterKeyReplay,
  deadJobs,
  deleteReplayGroups,
  ids,
  replayedIds,
  writeDead,
} from '../support/dead-jobs.js';
import { committedOffsets, jobTopic, stack, waitUntil } from '../support/helpers.js';

// `strand dlq replay` flags, end to end through the CLI: what reaches the job topic is read back
// with an independent client and compared with the dead records each test wrote.

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
    expect(await replayedIds(topic, ids(dead.slice(6)))).toEqual(ids(dead.slice(6)));
    await cleanup();
  });

  it('--limit sends that many, in DLQ order; the same replay again sends the rest, none twice', async () => {
    const { topic, cleanup } = await jobTopic('replay-limit', { partitions: 2 });
    const dead = deadJobs(10);
    await writeDead(topic, dead);
    const first = await runCli(['dlq', 'replay', topic, '--limit', '4']);
    expect(first.code, first.stderr).toBe(0);
    expect(await replayedIds(topic, ids(dead.slice(0, 4)))).toEqual(ids(dead.slice(0, 4)));
    const rest = await runCli(['dlq', 'replay', topic]);
    expect(rest.stdout).toMatch(/^replayed 6 job\(s\)/);
    expect(await replayedIds(topic, ids(dead))).toEqual(ids(dead));
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
    expect(await replayedIds(topic, ids(dead))).toEqual(ids(dead));
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
    expect(await replayedIds(topic, ids(dead))).toEqual(ids(dead));
    await cleanup();
  });

  it('one key after another, back to back on 6 partitions: every replay finishes and sends its job', async () => {
    const { topic, cleanup } = await jobTopic('replay-keys', { partitions: 6 });
    const dead = deadJobs(12, (i) => ({ key: `k${i}`, partition: i % 6 }));
    await writeDead(topic, dead);
    const failures: string[] = [];
    for (const d of dead) {
      const r = await runCli(['dlq', 'replay', topic, '--key', d.key]);
      if (r.code !== 0 || !/^replayed 1 job\(s\)/.test(r.stdout))
        failures.push(`--key ${d.key}: exit ${r.code}: ${(r.stdout + r.stderr).trim()}`);
    }
    expect(failures).toEqual([]);
    expect(await replayedIds(topic, ids(dead))).toEqual(ids(dead));
    await deleteReplayGroups(topic);
    await cleanup();
  });

  it('a replay stopped partway says exactly what it sent; the same replay again sends the rest, none twice', async () => {
    const { topic, cleanup } = await jobTopic('replay-stopped', { partitions: 2 });
    // Two DLQ partitions, two transactions of 6 jobs (about 6 s each at --rate 1).
    const dead = deadJobs(12, (i) => ({ partition: i % 2 }));
    await writeDead(topic, dead);
    const { brokers, registryUrl } = stack();
    const first = spawn(process.execPath, ['dist/cli/main.js', 'dlq', 'replay', topic, '--rate', '1'], {
      env: { ...process.env, STRAND_BROKERS: brokers.join(','), STRAND_REGISTRY_URL: registryUrl },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let firstOut = '';
    first.stdout.on('data', (d) => (firstOut += d));
    first.stderr.on('data', (d) => (firstOut += d));
    const firstExit = new Promise<number | null>((resolve) => first.once('exit', (code) => resolve(code)));
    const group = replayGroupName(topic, {});
    const committed = async () => [...(await committedOffsets(group, `${topic}.dlq`)).values()];
    await waitUntil(async () => (await committed()).some((offset) => offset > 0), {
      timeoutMs: 40_000,
      intervalMs: 100,
      what: "the first replay's first transaction",
    });
    // The same replay started again fences the first (one transactional id per filter), which
    // stops at its next transaction, after sending exactly the 6 of its first.
    const second = await runCli(['dlq', 'replay', topic]);
    const code = await firstExit;
    console.info(
      `stopped replay: exit ${code}: ${firstOut.trim()}\nsecond: ${second.stdout.trim()} ${second.stderr.trim()}`,
    );
    expect(code).toBe(1);
    expect(firstOut).toMatch(
      new RegExp(
        `^strand: replay to ${topic} stopped after sending 6 job\\(s\\): .+; running the same replay again is safe: it resumes after what was sent and sends nothing twice\n$`,
      ),
    );
    expect(second.code, second.stderr).toBe(0);
    expect(second.stdout).toMatch(/^replayed 6 job\(s\)/);
    expect(await replayedIds(topic, ids(dead))).toEqual(ids(dead));
    await deleteReplayGroups(topic);
    await cleanup();
  });

  it('--dry-run after earlier replays counts what the replay would send, and marks what another replay sent', async () => {
    const { topic, cleanup } = await jobTopic('replay-dry', { partitions: 2 });
    const { later } = await deadAfterKeyReplay(topic);
    const dry = await runCli(['dlq', 'replay', topic, '--key', 'acct-a', '--dry-run', '--json']);
    expect(dry.code, dry.stderr).toBe(0);
    const counted = JSON.parse(dry.stdout) as { matched: number; sent: number; jobs: { jobId: string }[] };
    expect(counted).toMatchObject({ matched: 3, sent: 0 });
    expect(counted.jobs.map((j) => j.jobId).sort()).toEqual(ids(later.slice(0, 3)));
    // Unfiltered: all 15 would go, 5 of them a second time (the --key acct-a replay sent them).
    const all = await runCli(['dlq', 'replay', topic, '--dry-run']);
    expect(all.stdout).toMatch(/dry run: 15 job\(s\) would be replayed/);
    expect(all.stderr).toMatch(/warning: 5 of them were replayed before/);
    const real = await runCli(['dlq', 'replay', topic, '--key', 'acct-a']);
    expect(real.stdout).toMatch(/^replayed 3 job\(s\)/);
    await deleteReplayGroups(topic);
    await cleanup();
  });
});
