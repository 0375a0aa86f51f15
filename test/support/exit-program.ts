/**
 * A user's program, importing the package as a user does ('strand' is dist/), for
 * `test/integration/exits.test.ts`: each mode ends without process.exit, so the process ends only
 * if Strand closed everything it opened. Prints one JSON line of what it saw.
 *   node --import tsx test/support/exit-program.ts <mode> <topic> <brokers> <registryUrl>
 * modes: redis (worker with a RedisIdempotencyStore, then stop, disconnect, store.close()),
 * producer-missing-topic (connect() fails), worker-missing-topic (start() fails).
 */
import { defineWorker, JobProducer, loadAvroSchemaFile, RedisIdempotencyStore, Worker } from 'strand';

const [mode, topic, brokerList, registryUrl] = process.argv.slice(2) as [string, string, string, string];
const brokers = brokerList.split(',');
const registry = { url: registryUrl };
const schema = loadAvroSchemaFile('schemas/payment.avsc');
const say = (what: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(what)}\n`);

const payment = {
  paymentId: 'p-1',
  accountId: 'acct-1',
  amountCents: 100,
  currency: 'EUR',
  sequence: 1,
  createdAt: Date.now(),
  memo: null,
};

if (mode === 'producer-missing-topic') {
  const producer = new JobProducer({ brokers, registry, topic, schema });
  await producer.connect().catch((error: Error) => say({ error: error.message }));
} else if (mode === 'worker-missing-topic') {
  const worker = new Worker(
    defineWorker({ brokers, registry, topic, groupId: `${topic}-g`, status: false, handler: () => {} }),
  );
  await worker.start().catch((error: Error) => say({ error: error.message }));
} else if (mode === 'redis') {
  const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
  const producer = new JobProducer({ brokers, registry, topic, schema });
  await producer.connect();
  await producer.enqueue({ key: payment.accountId, data: payment, traceparent });
  const store = new RedisIdempotencyStore({
    host: '127.0.0.1',
    port: Number(process.env.STRAND_TEST_REDIS_PORT ?? 6379),
  });
  let seen: (headers: Record<string, string>) => void = () => {};
  const handled = new Promise<Record<string, string>>((resolve) => (seen = resolve));
  const worker = new Worker(
    defineWorker({
      brokers,
      registry,
      topic,
      groupId: `${topic}-g`,
      retry: { tiers: [] },
      idempotency: { store },
      metrics: { port: 0 },
      handler: (job) => seen({ ...job.headers }),
    }),
  );
  await worker.start();
  const headers = await handled;
  await worker.stop();
  await producer.disconnect();
  await store.close();
  say({ traceparent: headers.traceparent, stopped: true });
}
