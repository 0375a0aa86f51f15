import avro from 'avsc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AvroCodec,
  loadAvroSchemaFile,
  RegistryUnavailableError,
  SchemaRegistryGateway,
} from '../../src/codec/index.js';
import { JobProducer, SchemaRejectedError, ValidationError } from '../../src/index.js';
import { createKafka } from '../../src/kafka/client.js';
import { createTopics, stack, uniqueName } from '../support/helpers.js';
import { TcpProxy } from '../support/proxy.js';
import { rawConsume } from '../support/raw-kafka.js';

const paymentSchema = loadAvroSchemaFile('schemas/payment.avsc');
const payment = (i: number, account = `acct-${i % 7}`) => ({
  paymentId: `p-${i}`,
  accountId: account,
  amountCents: 1000 + i,
  currency: 'EUR' as const,
  sequence: i,
  createdAt: 1_700_000_000_000 + i,
  memo: i % 2 ? `memo ${i}` : null,
});

async function endOffsets(topic: string): Promise<number> {
  const admin = createKafka(stack().connection).admin();
  await admin.connect();
  const offsets = await admin.fetchTopicOffsets(topic);
  await admin.disconnect();
  return offsets.reduce((sum, o) => sum + Number(o.high), 0);
}

describe('JobProducer against the real broker and registry', () => {
  const topic = uniqueName('producer');
  let cleanup: () => Promise<void>;
  let producer: JobProducer;

  beforeAll(async () => {
    cleanup = await createTopics([{ topic, numPartitions: 6 }]);
    producer = new JobProducer({
      brokers: stack().brokers,
      registry: { url: stack().registryUrl },
      topic,
      schema: paymentSchema,
    });
    await producer.connect();
  });
  afterAll(async () => {
    await producer.disconnect();
    await cleanup();
  });

  it('writes the Confluent wire format that an independent client and avsc decode', async () => {
    const jobs = Array.from({ length: 12 }, (_, i) => ({
      key: `acct-${i % 4}`,
      data: payment(i),
      traceparent: `00-${'a'.repeat(32)}-${'b'.repeat(16)}-01`,
    }));
    const results = await producer.enqueueMany(jobs);
    const raw = await rawConsume(stack().brokers, topic, 12);
    expect(raw).toHaveLength(12);

    const latest = (await (
      await fetch(`${stack().registryUrl}/subjects/${topic}-value/versions/latest`)
    ).json()) as { id: number };
    const type = avro.Type.forSchema(paymentSchema as avro.Schema);
    for (const record of raw) {
      const value = record.value!;
      expect(value[0]).toBe(0);
      expect(value.readUInt32BE(1)).toBe(latest.id);
      const data = type.fromBuffer(value.subarray(5)) as ReturnType<typeof payment>;
      const i = data.sequence;
      expect(data).toEqual(payment(i));
      expect(record.key).toBe(`acct-${i % 4}`);
      const result = results[i]!;
      expect(record.headers['strand-job-id']).toBe(result.jobId);
      expect(result.jobId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-/); // UUIDv7
      expect(Number(record.headers['strand-enqueued-at'])).toBeGreaterThan(Date.now() - 60_000);
      expect(record.headers.traceparent).toBe(jobs[i]!.traceparent);
      expect({ partition: record.partition, offset: String(record.offset) }).toEqual({
        partition: result.partition,
        offset: result.offset,
      });
    }
  });

  it('keeps a caller-supplied job id', async () => {
    const r = await producer.enqueue({ key: 'acct-x', data: payment(100, 'acct-x'), jobId: 'idem-100' });
    expect(r.jobId).toBe('idem-100');
  });

  it('sends nothing for invalid data, naming the bad field; one bad job in a batch stops the batch', async () => {
    const before = await endOffsets(topic);
    await expect(
      producer.enqueue({ key: 'k', data: { ...payment(1), amountCents: 'lots' } as never }),
    ).rejects.toThrow(/amountCents: expected long, got "lots"/);
    const batch = [payment(1), payment(2), { ...payment(3), currency: 'DOGE' }, payment(4)].map((data) => ({
      key: 'k',
      data,
    }));
    const error = await producer.enqueueMany(batch as never).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as Error).message).toMatch(/^jobs\[2\]\.data does not match schema .*currency/);
    expect((error as Error).message).not.toContain('\n');
    expect(await endOffsets(topic)).toBe(before);
  });

  it('fails with a clear error for a topic that does not exist', async () => {
    const p = new JobProducer({
      brokers: stack().brokers,
      registry: { url: stack().registryUrl },
      topic: uniqueName('missing'),
      schema: paymentSchema,
    });
    await expect(p.connect()).rejects.toThrow(/does not exist \(create it with "strand topics create/);
    await p.disconnect();
  });
});

describe('schema evolution under BACKWARD', () => {
  it('reads v1 records with a v2 reader and v2 records with a v1 reader; rejects an incompatible schema', async () => {
    const topic = uniqueName('evolve');
    const cleanup = await createTopics([{ topic, numPartitions: 1 }]);
    const v1 = paymentSchema as { fields: object[] };
    const v2 = { ...v1, fields: [...v1.fields, { name: 'channel', type: 'string', default: 'web' }] };
    const p1 = new JobProducer({
      brokers: stack().brokers,
      registry: { url: stack().registryUrl },
      topic,
      schema: v1,
    });
    const p2 = new JobProducer({
      brokers: stack().brokers,
      registry: { url: stack().registryUrl },
      topic,
      schema: v2,
    });
    await p1.connect();
    await p2.connect();
    await p1.enqueue({ key: 'a', data: payment(1) });
    await p2.enqueue({ key: 'a', data: { ...payment(2), channel: 'app' } });
    expect(await p2.schemaId()).not.toBe(await p1.schemaId());

    const config = (await (await fetch(`${stack().registryUrl}/config/${topic}-value`)).json()) as {
      compatibilityLevel: string;
    };
    expect(config.compatibilityLevel).toBe('BACKWARD');

    const raw = await rawConsume(stack().brokers, topic, 2);
    const gateway = new SchemaRegistryGateway({ url: stack().registryUrl });
    const v2Reader = new AvroCodec(gateway, { readerSchema: v2 });
    const v1Reader = new AvroCodec(gateway, { readerSchema: v1 });
    const [old, neu] = [raw[0]!.value!, raw[1]!.value!];
    expect((await v2Reader.decode(old)).data).toEqual({ ...payment(1), channel: 'web' });
    expect((await v2Reader.decode(neu)).data).toEqual({ ...payment(2), channel: 'app' });
    expect((await v1Reader.decode(neu)).data).toEqual(payment(2));

    const incompatible = { ...v1, fields: [...v1.fields, { name: 'required', type: 'string' }] };
    const p3 = new JobProducer({
      brokers: stack().brokers,
      registry: { url: stack().registryUrl },
      topic,
      schema: incompatible,
    });
    await p3.connect();
    const error = await p3
      .enqueue({ key: 'a', data: { ...payment(3), required: 'x' } })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SchemaRejectedError);
    expect((error as Error).message).toMatch(/rejected the schema .*[Ii]ncompatible/);
    expect(await endOffsets(topic)).toBe(2);
    await Promise.all([p1.disconnect(), p2.disconnect(), p3.disconnect()]);
    await cleanup();
  });

  it('processes registering a new subject at the same moment all get its one id (no 409 from the race on its rule)', async () => {
    // Apicurio answers 409 to all but one of several concurrent PUT /config on a new subject; a
    // follow-up's first enqueue in three fresh workers at once went to the DLQ for it.
    const schema = { type: 'record', name: 'Race', fields: [{ name: 'a', type: 'string' }] };
    for (let round = 0; round < 10; round++) {
      const subject = `${uniqueName('race')}-value`;
      const gateways = Array.from(
        { length: 6 },
        () => new SchemaRegistryGateway({ url: stack().registryUrl }),
      );
      const ids = await Promise.all(gateways.map((g) => g.schemaId(subject, schema, { autoRegister: true })));
      expect(new Set(ids).size).toBe(1);
      const config = (await (await fetch(`${stack().registryUrl}/config/${subject}`)).json()) as {
        compatibilityLevel: string;
      };
      expect(config.compatibilityLevel).toBe('BACKWARD');
    }
  });

  it('with autoRegister off, refuses a schema the subject does not have', async () => {
    const topic = uniqueName('noreg');
    const cleanup = await createTopics([{ topic, numPartitions: 1 }]);
    const p = new JobProducer({
      brokers: stack().brokers,
      registry: { url: stack().registryUrl },
      topic,
      schema: paymentSchema,
      autoRegister: false,
    });
    await p.connect();
    await expect(p.enqueue({ key: 'a', data: payment(1) })).rejects.toThrow(
      /not registered under subject .*autoRegister is off/,
    );
    expect(await endOffsets(topic)).toBe(0);
    await p.disconnect();
    await cleanup();
  });
});

describe('registry unreachable', () => {
  it('retries for a bounded time then fails with a clear error; with a cached id it keeps producing', async () => {
    const topic = uniqueName('regdown');
    const cleanup = await createTopics([{ topic, numPartitions: 2 }]);
    const url = new URL(stack().registryUrl);
    const proxy = new TcpProxy(url.hostname, Number(url.port));
    const port = await proxy.start();
    const registry = { url: `http://127.0.0.1:${port}${url.pathname}`, timeoutMs: 1500 };

    // Never reached the registry: the call fails after ~timeoutMs and sends nothing.
    await proxy.cut();
    const cold = new JobProducer({ brokers: stack().brokers, registry, topic, schema: paymentSchema });
    await cold.connect();
    const t0 = Date.now();
    const error = await cold.enqueue({ key: 'a', data: payment(1) }).catch((e: unknown) => e);
    const waited = Date.now() - t0;
    expect(error).toBeInstanceOf(RegistryUnavailableError);
    expect((error as Error).message).toMatch(/schema registry at .* unreachable .*retried for 2s/);
    expect(waited).toBeGreaterThanOrEqual(1000);
    expect(waited).toBeLessThan(10_000);
    expect(await endOffsets(topic)).toBe(0);

    // Id cached while the registry was up: producing goes on after it becomes unreachable.
    await proxy.restore();
    await cold.enqueue({ key: 'a', data: payment(1) });
    await proxy.cut();
    await cold.enqueue({ key: 'a', data: payment(2) });
    expect(await endOffsets(topic)).toBe(2);
    await cold.disconnect();
    await cleanup();
  });
});
