import { describe, expect, it } from 'vitest';
import { createKafka } from '../../src/kafka/client.js';
import { runCli } from '../support/cli.js';
import { stack, uniqueName } from '../support/helpers.js';

describe('strand topics create', () => {
  it('creates the job topic, its tiers and its DLQ; a second run changes nothing and says so', async () => {
    const topic = uniqueName('cli-topics');
    const first = await runCli([
      'topics',
      'create',
      topic,
      '--partitions',
      '4',
      '--retry-tiers',
      '1s,10s',
      '--json',
    ]);
    expect(first.code).toBe(0);
    expect(JSON.parse(first.stdout)).toEqual([
      { topic, role: 'job', partitions: 4, status: 'created' },
      { topic: `${topic}.retry.1`, role: 'retry', partitions: 4, status: 'created' },
      { topic: `${topic}.retry.2`, role: 'retry', partitions: 4, status: 'created' },
      { topic: `${topic}.dlq`, role: 'dlq', partitions: 4, status: 'created' },
      { topic: `${topic}.parked`, role: 'parked', partitions: 4, status: 'created' },
    ]);
    const second = await runCli(['topics', 'create', topic, '--partitions', '8', '--retry-tiers', '1s,10s']);
    expect(second.code).toBe(0);
    expect(second.stdout).toContain('nothing to do: every topic already exists');
    expect(second.stdout).toContain('exists with 4 partitions, left unchanged');
    const admin = createKafka(stack().connection).admin();
    await admin.connect();
    const meta = await admin.fetchTopicMetadata({ topics: [topic] });
    expect(meta.topics[0]?.partitions).toHaveLength(4);
    await admin.deleteTopics({
      topics: [topic, `${topic}.retry.1`, `${topic}.retry.2`, `${topic}.dlq`, `${topic}.parked`],
    });
    await admin.disconnect();
  });

  it('rejects a bad tier delay with exit 2 and the flag in the message', async () => {
    const r = await runCli(['topics', 'create', 'x', '--retry-tiers', '1s,soon']);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('strand: --retry-tiers[1]: expected a duration like "10s", got "soon"\n');
  });
});
