import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { jobTopic, stack, uniqueName, waitUntil } from '../support/helpers.js';
import { rawConsume } from '../support/raw-kafka.js';
import { paymentWorker } from '../support/worker.js';

const run = promisify(execFile);

/** The README tour's command that writes bytes that are not a job (`node -e` with kafkajs). */
function tourRawBytesCommand(): string {
  const readme = readFileSync('README.md', 'utf8');
  const start = readme.indexOf('node -e "const { Kafka');
  expect(start, 'the tour has a `node -e` command writing raw bytes').toBeGreaterThan(0);
  const end = readme.indexOf('\n```', start);
  return readme.slice(start, end);
}

describe('README tour', () => {
  it('the raw-bytes command runs with only the npm dependencies, and its record lands in the DLQ as bad-magic', async () => {
    const { topic, cleanup } = await jobTopic('tour-raw', { partitions: 2 });
    const command = tourRawBytesCommand()
      .replaceAll('127.0.0.1:9092', stack().brokers[0]!)
      .replaceAll("topic: 'payments'", `topic: '${topic}'`);
    expect(command).toContain(topic);
    // As a user types it in a shell, in the clone (kafkajs resolves from its node_modules).
    const { stdout, stderr } = await run('sh', ['-c', command], { timeout: 60_000 });
    expect(stdout + stderr).toBe(''); // no kafkajs log lines
    const [record, ...more] = await rawConsume(stack().brokers, topic, 10);
    expect(more).toEqual([]);
    expect(record?.key).toBe('acct-2');
    expect(record?.value?.toString()).toBe('not avro');

    const w = paymentWorker(topic, uniqueName('tour-g'), { handler: async () => undefined });
    await w.start();
    const [dead] = await waitUntil(
      async () => {
        const r = await rawConsume(stack().brokers, `${topic}.dlq`, 1);
        return r.length === 1 ? r : undefined;
      },
      { timeoutMs: 30_000, what: 'the record in the DLQ' },
    );
    await w.stop();
    expect(dead!.key).toBe('acct-2');
    expect(dead!.value?.toString()).toBe('not avro');
    expect(dead!.headers['strand-decode-reason']).toBe('bad-magic');
    // The reason the tour says `strand dlq list` shows for it.
    const said = /with its bytes untouched and reason `([^`]+)`/.exec(readFileSync('README.md', 'utf8'))?.[1];
    expect(said).toBe(dead!.headers['strand-dead-reason']);
    await cleanup();
  });
});
