import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
import { createTopics, stack, uniqueName } from '../support/helpers.js';
import { rawConsume } from '../support/raw-kafka.js';

const job = (i: number) => ({
  paymentId: `p-${i}`,
  accountId: `acct-${i % 5}`,
  amountCents: i,
  currency: 'USD',
  sequence: i,
  createdAt: 1_700_000_000_000,
  memo: null,
});

describe('strand enqueue', () => {
  it('enqueues an NDJSON file with keys from --key-field and prints a summary', async () => {
    const topic = uniqueName('cli-enq');
    const cleanup = await createTopics([{ topic, numPartitions: 3 }]);
    const dir = mkdtempSync(join(tmpdir(), 'strand-'));
    const file = join(dir, 'jobs.ndjson');
    writeFileSync(file, Array.from({ length: 250 }, (_, i) => JSON.stringify(job(i))).join('\n') + '\n');
    const r = await runCli([
      'enqueue',
      topic,
      '--schema',
      'schemas/payment.avsc',
      '--file',
      file,
      '--key-field',
      'accountId',
      '--job-id-field',
      'paymentId',
      '--batch-size',
      '100',
      '--json',
    ]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const summary = JSON.parse(r.stdout) as {
      jobs: number;
      first: { jobId: string };
      last: { jobId: string };
    };
    expect(summary.jobs).toBe(250);
    expect(summary.first.jobId).toBe('p-0');
    expect(summary.last.jobId).toBe('p-249');
    const raw = await rawConsume(stack().brokers, topic, 250);
    expect(raw).toHaveLength(250);
    for (const rec of raw) expect(rec.key).toBe(`acct-${Number(rec.headers['strand-job-id']!.slice(2)) % 5}`);
    await cleanup();
  });

  it('sends nothing when one line is invalid, and says which line and field (exit 2)', async () => {
    const topic = uniqueName('cli-enq-bad');
    const cleanup = await createTopics([{ topic, numPartitions: 1 }]);
    const lines = [job(1), job(2), { ...job(3), currency: 'ZZZ' }, job(4)]
      .map((j) => JSON.stringify(j))
      .join('\n');
    const r = await runCli(
      ['enqueue', topic, '--schema', 'schemas/payment.avsc', '--key-field', 'accountId'],
      { input: lines },
    );
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/line 3 does not match schema .*currency: expected .*Currency, got "ZZZ"/);
    const read = await runCli([
      'enqueue',
      topic,
      '--schema',
      'schemas/payment.avsc',
      '--data',
      JSON.stringify(job(9)),
    ]);
    expect(read.code).toBe(0);
    expect(read.stdout).toMatch(/: partition 0 offset 0 /); // nothing was written before it
    await cleanup();
  });

  it('gives one-line errors for an unknown schema file and an unreachable registry', async () => {
    const missing = await runCli(['enqueue', 'any', '--schema', 'schemas/missing.avsc', '--data', '{}']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toBe('strand: schema: schema file schemas/missing.avsc not found\n');

    const topic = uniqueName('cli-enq-reg');
    const cleanup = await createTopics([{ topic, numPartitions: 1 }]);
    const down = await runCli([
      'enqueue',
      topic,
      '--schema',
      'schemas/payment.avsc',
      '--data',
      JSON.stringify(job(1)),
      '--registry-url',
      'http://127.0.0.1:1/apis/ccompat/v7',
    ]);
    expect(down.code).toBe(1);
    expect(down.stderr.trim().split('\n')).toHaveLength(1);
    expect(down.stderr).toMatch(
      /^strand: schema registry at http:\/\/127\.0\.0\.1:1\/apis\/ccompat\/v7 unreachable/,
    );
    await cleanup();
  });

  it('reads --file once, as a stream: process substitution and a named FIFO send every line', async () => {
    const topic = uniqueName('cli-enq-pipe');
    const cleanup = await createTopics([{ topic, numPartitions: 2 }]);
    const dir = mkdtempSync(join(tmpdir(), 'strand-'));
    const file = join(dir, 'jobs.ndjson');
    writeFileSync(file, `${Array.from({ length: 30 }, (_, i) => JSON.stringify(job(i))).join('\n')}\n`);
    const { brokers, registryUrl } = stack();
    const env = { ...process.env, STRAND_BROKERS: brokers.join(','), STRAND_REGISTRY_URL: registryUrl };
    const enqueue = `node dist/cli/main.js enqueue ${topic} --schema schemas/payment.avsc --key-field accountId --json`;

    // bash's <(…) is a pipe behind /dev/fd/N: it can be read once only.
    const sub = await runShell(`${enqueue} --file <(cat ${file})`, env);
    expect(sub.stderr).toBe('');
    expect(sub.code).toBe(0);
    expect((JSON.parse(sub.stdout) as { jobs: number }).jobs).toBe(30);

    // A named FIFO: a second open would wait for a writer that never comes.
    const fifo = join(dir, 'jobs.fifo');
    execFileSync('mkfifo', [fifo]);
    const fed = await runShell(`${enqueue} --file ${fifo} & cat ${file} > ${fifo}; wait $!`, env);
    expect(fed.ended, 'enqueue from a FIFO hung').toBe(true);
    expect(fed.stderr).toBe('');
    expect(fed.code).toBe(0);
    expect((JSON.parse(fed.stdout) as { jobs: number }).jobs).toBe(30);

    // An empty pipe is an error, not "enqueued 0 jobs".
    const empty = await runShell(`${enqueue} --file <(true)`, env);
    expect(empty.code).toBe(2);
    expect(empty.stderr).toBe('strand: no jobs to enqueue (empty input)\n');
    expect(await rawConsume(stack().brokers, topic, 100)).toHaveLength(60);
    await cleanup();
  });
});

/** Runs a bash command line (process substitution needs bash), killed after 30 s. */
function runShell(
  line: string,
  env: NodeJS.ProcessEnv,
): Promise<{ code: number | null; stdout: string; stderr: string; ended: boolean }> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-c', line], { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let stdout = '';
    let stderr = '';
    let ended = true;
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      ended = false;
      process.kill(-child.pid!, 'SIGKILL');
    }, 30_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ended });
    });
  });
}
