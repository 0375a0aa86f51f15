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
});
