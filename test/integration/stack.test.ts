import { describe, expect, inject, it } from 'vitest';
import { stackStatus, stackUp } from '../../src/devstack/index.js';
import { createKafka } from '../../src/kafka/client.js';
import { createTopics, stack, uniqueName, waitUntil } from '../support/helpers.js';

describe('the local stack is real', () => {
  it('creates a topic, produces and consumes records with headers through the broker', async () => {
    const topic = uniqueName('stack-smoke');
    const cleanup = await createTopics([{ topic, numPartitions: 3 }]);
    const kafka = createKafka(stack().connection);
    const producer = kafka.producer({ idempotent: true });
    await producer.connect();
    const sent = Array.from({ length: 30 }, (_, i) => ({
      key: `k${i % 5}`,
      value: `v${i}`,
      headers: { n: String(i) },
    }));
    const meta = await producer.send({ topic, acks: -1, messages: sent });
    await producer.disconnect();
    expect(meta.every((m) => m.errorCode === 0)).toBe(true);

    const consumer = kafka.consumer({ groupId: uniqueName('stack-smoke-g') });
    const received: { key: string; value: string; n: string }[] = [];
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ message }) => {
        received.push({
          key: String(message.key),
          value: String(message.value),
          n: String(message.headers?.n),
        });
      },
    });
    await waitUntil(() => received.length >= 30, { what: '30 records' });
    await consumer.disconnect();
    await cleanup();
    expect(received.map((r) => r.value).sort()).toEqual(sent.map((s) => s.value).sort());
    for (const r of received) expect(r.value).toBe(`v${r.n}`);
  });

  it('registers an Avro schema in the registry and reads it back by id', async () => {
    const { registryUrl } = stack();
    const subject = `${uniqueName('stack-schema')}-value`;
    const schema = JSON.stringify({
      type: 'record',
      name: 'Smoke',
      namespace: 'dev.strand.test',
      fields: [{ name: 'id', type: 'string' }],
    });
    const res = await fetch(`${registryUrl}/subjects/${subject}/versions`, {
      method: 'POST',
      headers: { 'content-type': 'application/vnd.schemaregistry.v1+json' },
      body: JSON.stringify({ schema }),
    });
    expect(res.status).toBe(200);
    const { id } = (await res.json()) as { id: number };
    expect(id).toBeGreaterThan(0);
    const byId = (await (await fetch(`${registryUrl}/schemas/ids/${id}`)).json()) as { schema: string };
    expect(JSON.parse(byId.schema)).toEqual(JSON.parse(schema));
    const subjects = (await (await fetch(`${registryUrl}/subjects`)).json()) as string[];
    expect(subjects).toContain(subject);
  });

  it.runIf(inject('stackSource') === 'devstack')('a second "up" while running is a fast no-op', async () => {
    const before = stackStatus();
    const t0 = Date.now();
    const { alreadyRunning, info } = await stackUp();
    expect(alreadyRunning).toBe(true);
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(info.processes.map((p) => p.pid)).toEqual(before?.processes.map((p) => p.pid));
  });
});
