import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { HEADERS } from '../../src/headers.js';
import { createKafka } from '../../src/kafka/client.js';
import { runCli } from '../support/cli.js';
import { jobTopic, stack, uniqueName } from '../support/helpers.js';

const payment =
  '{"paymentId":"p1","accountId":"a1","amountCents":500,"currency":"EUR","sequence":1,"createdAt":1700000000000,"memo":null}';

/** stderr must be exactly one `strand: …` line: no kafkajs JSON log lines, no stack. */
function oneLine(stderr: string): string {
  const lines = stderr.trim().split('\n');
  expect(lines, stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^strand: /);
  return lines[0]!;
}

describe('commands on a missing topic end at once with one line', () => {
  it('strand enqueue', async () => {
    const topic = uniqueName('missing');
    const t0 = Date.now();
    const r = await runCli(['enqueue', topic, '--schema', 'schemas/payment.avsc', '--data', payment]);
    expect(r.code, r.stderr).toBe(1);
    expect(oneLine(r.stderr)).toBe(
      `strand: topic ${topic} does not exist (create it with "strand topics create ${topic}")`,
    );
    expect(Date.now() - t0).toBeLessThan(30_000);
  });

  it.each([[['dlq', 'list']], [['dlq', 'replay']], [['dlq', 'replay', '--dry-run']]])(
    'strand %j',
    async (args) => {
      const topic = uniqueName('missing');
      const [group, command, ...flags] = args as [string, string, ...string[]];
      const t0 = Date.now();
      const r = await runCli([group, command, topic, ...flags]);
      expect(r.code, r.stderr).toBe(1);
      expect(oneLine(r.stderr)).toMatch(
        new RegExp(`^strand: dead-letter topic ${topic}\\.dlq does not exist`),
      );
      expect(Date.now() - t0).toBeLessThan(30_000);
    },
  );
});

describe.each([
  ['a CommonJS package', {}],
  ['an ESM package', { type: 'module' }],
])('worker modules in %s that do not load', (_, pkg) => {
  const dir = mkdtempSync(join(tmpdir(), 'strand-modules-'));
  writeFileSync(join(dir, 'package.json'), JSON.stringify(pkg));

  it('a throw at import time: exit 1, the message and file:line', async () => {
    const file = join(dir, 'throws.ts');
    writeFileSync(
      file,
      "const ready = false;\n\nif (!ready) throw new Error('no DATABASE_URL set');\nexport default {};\n",
    );
    const r = await runCli(['worker', file]);
    expect(r.code, r.stderr).toBe(1);
    expect(oneLine(r.stderr)).toBe(`strand: cannot load ${file}: no DATABASE_URL set (at ${file}:3:19)`);
  });

  it('a syntax error: exit 1, every error with its place, not just "Transform failed"', async () => {
    const file = join(dir, 'syntax.ts');
    writeFileSync(file, 'export default {\n  topic: "t",,\n};\n');
    const r = await runCli(['worker', file]);
    expect(r.code, r.stderr).toBe(1);
    expect(oneLine(r.stderr)).toBe(
      `strand: cannot load ${file}: ${file}:2:13: Expected identifier but found ","`,
    );
  });

  it('a JavaScript syntax error: exit 1, with its line', async () => {
    const file = join(dir, 'syntax.mjs');
    writeFileSync(file, 'export default {\n  topic: "t",,\n};\n');
    const r = await runCli(['worker', file]);
    expect(r.code, r.stderr).toBe(1);
    expect(oneLine(r.stderr)).toMatch(
      new RegExp(`^strand: cannot load ${file}: SyntaxError: .* \\(at ${file}:2\\)$`),
    );
  });
});

describe('DLQ tools', () => {
  it('list marks replayed rows; --dry-run warns about undecodable records; an unknown --error lists the classes', async () => {
    const { topic, cleanup } = await jobTopic('dlqtools', { partitions: 1 });
    const kafka = createKafka(stack().connection);
    const producer = kafka.producer();
    await producer.connect();
    const dead = (key: string, errorClass: string, extra: Record<string, string> = {}) => ({
      key,
      value: Buffer.from(`bytes of ${key}`),
      headers: {
        [HEADERS.jobId]: `job-${key}`,
        [HEADERS.errorClass]: errorClass,
        [HEADERS.errorMessage]: `${errorClass} for ${key}`,
        [HEADERS.attempt]: '1',
        [HEADERS.failedAt]: String(Date.now()),
        ...extra,
      },
    });
    await producer.send({
      topic: `${topic}.dlq`,
      messages: [
        dead('a', 'NonRetriableError'),
        dead('b', 'DecodeError', { [HEADERS.decodeReason]: 'bad-magic' }),
        dead('c', 'NonRetriableError'),
      ],
    });
    await producer.disconnect();
    const endOffset = async () => {
      const admin = kafka.admin();
      await admin.connect();
      const [o] = await admin.fetchTopicOffsets(topic);
      await admin.disconnect();
      return Number(o?.high);
    };
    try {
      for (const dry of [['--dry-run'], []]) {
        const typo = await runCli(['dlq', 'replay', topic, '--error', 'NonRetriable', ...dry]);
        expect(typo.code, typo.stderr).toBe(2);
        expect(oneLine(typo.stderr)).toBe(
          'strand: --error no dead job has error class "NonRetriable"; classes present: NonRetriableError (2), DecodeError (1)',
        );
      }
      expect(await endOffset(), 'a typo sends nothing').toBe(0);

      const dry = await runCli(['dlq', 'replay', topic, '--dry-run']);
      expect(dry.code, dry.stderr).toBe(0);
      expect(dry.stdout).toMatch(/dry run: 3 job\(s\) would be replayed/);
      expect(oneLine(dry.stderr)).toMatch(
        /^strand: warning: 1 of the 3 matched job\(s\) could not be decoded .* would fail again/,
      );
      const clean = await runCli(['dlq', 'replay', topic, '--error', 'NonRetriableError', '--dry-run']);
      expect(clean.stderr, 'no warning when no undecodable job matches').toBe('');

      const sent = await runCli(['dlq', 'replay', topic, '--error', 'NonRetriableError']);
      expect(sent.code, sent.stderr).toBe(0);
      expect(sent.stdout).toMatch(/^replayed 2 job\(s\)/);

      const list = await runCli(['dlq', 'list', topic, '--json']);
      expect(list.code, list.stderr).toBe(0);
      const rows = JSON.parse(list.stdout) as { key: string; replayed: boolean }[];
      expect(Object.fromEntries(rows.map((j) => [j.key, j.replayed]))).toEqual({
        a: true,
        b: false,
        c: true,
      });
      const text = await runCli(['dlq', 'list', topic]);
      expect(text.stdout).toMatch(/REPLAYED/);
      expect(text.stdout).toMatch(/3 dead job\(s\), 2 of them replayed already/);
    } finally {
      await cleanup();
    }
  });
});
