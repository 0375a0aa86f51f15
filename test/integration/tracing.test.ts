import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { context, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { KafkaJsInstrumentation } from '@opentelemetry/instrumentation-kafkajs';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace-base';
import kafkajs from 'kafkajs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { paymentProducer } from '../../chaos/payments.js';
import { replayDeadJobs } from '../../src/failure/dlq.js';
import { NonRetriableError } from '../../src/failure/errors.js';
import { createKafka } from '../../src/kafka/client.js';
import { createLogger } from '../../src/observability/logger.js';
import type { JobProducer } from '../../src/producer/job-producer.js';
import type { WorkerOptions } from '../../src/worker/options.js';
import type { Worker } from '../../src/worker/worker.js';
import { jobTopic, stack, uniqueName, waitUntil } from '../support/helpers.js';
import { enqueuePayments, type Payment } from '../support/jobs.js';
import { readSpanFile, registerTracing, type SpanLine, spanLine } from '../support/otel.js';
import { WorkerFleet } from '../support/processes.js';
import { rawConsume, rawProduce } from '../support/raw-kafka.js';
import { paymentWorker } from '../support/worker.js';

const exporter = new InMemorySpanExporter();
let unregister: () => Promise<void>;
beforeAll(() => {
  unregister = registerTracing(exporter);
});
afterAll(() => unregister());

const workers: Worker<Payment>[] = [];
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  await Promise.all(workers.splice(0).map((w) => w.stop({ timeoutMs: 1000 })));
  await Promise.all(cleanups.splice(0).map((c) => c()));
});

const spans = (): SpanLine[] => exporter.getFinishedSpans().map(spanLine);
const inTrace = (traceId: string) => spans().filter((s) => s.traceId === traceId);
const payment = (i: number, memo: string | null = null): { key: string; data: Payment } => ({
  key: `acct-${i}`,
  data: {
    paymentId: `pay-${i}`,
    accountId: `acct-${i}`,
    amountCents: 100 + i,
    currency: 'EUR',
    sequence: 1,
    createdAt: Date.now(),
    memo,
  },
});

async function producerFor(topic: string, opts: { tracing?: boolean } = {}): Promise<JobProducer<Payment>> {
  const producer = await paymentProducer(stack(), topic, undefined, opts);
  cleanups.push(() => producer.disconnect());
  return producer;
}

/** A pino logger whose JSON lines land in `lines`. */
function capturingLogger(lines: Record<string, unknown>[]) {
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n').filter(Boolean))
        lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return createLogger({ level: 'info', destination });
}

/** Members of a stable consumer group (0 while it rebalances). */
async function groupMembers(groupId: string): Promise<number> {
  const admin = createKafka(stack().connection).admin();
  await admin.connect();
  try {
    const { groups } = await admin.describeGroups([groupId]);
    return groups[0]?.state === 'Stable' ? groups[0].members.length : 0;
  } finally {
    await admin.disconnect();
  }
}

function expectConsumerAttributes(span: SpanLine, want: Record<string, unknown>) {
  expect(span.kind).toBe(SpanKind.CONSUMER);
  expect(span.attributes).toMatchObject({
    'messaging.system': 'kafka',
    'messaging.operation.type': 'process',
    ...want,
  });
  expect(typeof span.attributes['messaging.kafka.message.offset']).toBe('number');
  expect(typeof span.attributes['messaging.kafka.destination.partition']).toBe('number');
}

/** A job topic with one 300 ms tier, and job `i` enqueued inside a parent span `checkout`. */
async function jobInParentSpan(prefix: string, i: number) {
  const { topic, cleanup } = await jobTopic(prefix, { partitions: 2, tierDelays: [300] });
  cleanups.push(cleanup);
  const producer = await producerFor(topic);
  const parent = trace.getTracer('test').startSpan('checkout');
  const { jobId } = await context.with(trace.setSpan(context.active(), parent), () =>
    producer.enqueue(payment(i)),
  );
  parent.end();
  return { topic, jobId, parent: parent.spanContext() };
}

/** Strand's send span and its two attempt spans in the trace, once both attempts ended. */
async function attemptChain(traceId: string) {
  const ours = () => inTrace(traceId).filter((s) => s.scope === 'strand');
  await waitUntil(() => ours().filter((s) => s.kind === SpanKind.CONSUMER).length === 2, {
    what: 'two attempt spans in the trace',
  });
  const [first, second] = ours()
    .filter((s) => s.kind === SpanKind.CONSUMER)
    .sort((a, b) => Number(a.attributes['strand.attempt']) - Number(b.attributes['strand.attempt']));
  return { send: ours().find((s) => s.kind === SpanKind.PRODUCER)!, first: first!, second: second! };
}

/** Starts a worker whose handler fails each job's first attempt; returns the trace's attempt chain. */
async function failOnce(topic: string, traceId: string, opts: Partial<WorkerOptions<Payment>>) {
  const w = paymentWorker(topic, uniqueName(`${topic}-g`), {
    ...opts,
    handler: async (job) => {
      if (job.attempt === 1) throw new Error('flaky downstream');
    },
  });
  workers.push(w);
  await w.start();
  return attemptChain(traceId);
}

describe('OpenTelemetry traces', () => {
  it('enqueue in a parent span, a failed attempt and a retry through a tier: one trace, handler sees its span', async () => {
    const { topic, jobId, parent } = await jobInParentSpan('trace-tier', 1);
    const { traceId } = parent;

    const seen: {
      attempt: number;
      active: string | undefined;
      ctxSpan: string;
      trace: string | undefined;
    }[] = [];
    const lines: Record<string, unknown>[] = [];
    const groupId = uniqueName(`${topic}-g`);
    const w = paymentWorker(topic, groupId, {
      retry: { inPlace: 0, tiers: [300], maxAttempts: 3 },
      logger: capturingLogger(lines),
      handler: async (job, ctx) => {
        await new Promise((r) => setTimeout(r, 5)); // the span stays active across awaits
        seen.push({
          attempt: job.attempt,
          active: trace.getActiveSpan()?.spanContext().spanId,
          ctxSpan: ctx.span.spanContext().spanId,
          trace: trace.getActiveSpan()?.spanContext().traceId,
        });
        ctx.logger.info({ marker: 'in-handler' }, 'handling');
        if (job.attempt === 1) throw new Error('flaky downstream');
      },
    });
    workers.push(w);
    await w.start();
    const { send, first, second } = await attemptChain(traceId);
    const all = inTrace(traceId);
    expect(all.map((s) => s.name).sort()).toEqual(
      ['checkout', `process ${topic}`, `process ${topic}.retry.1`, `send ${topic}`].sort(),
    );
    expect(send.parentSpanId).toBe(parent.spanId);
    expect(send.attributes).toMatchObject({
      'messaging.system': 'kafka',
      'messaging.destination.name': topic,
      'messaging.operation.type': 'send',
      'messaging.message.id': jobId,
      'messaging.kafka.message.key': 'acct-1',
    });
    expect(first.parentSpanId).toBe(send.spanId);
    expectConsumerAttributes(first, {
      'messaging.destination.name': topic,
      'messaging.kafka.message.key': 'acct-1',
      'messaging.message.id': jobId,
      'messaging.consumer.group.name': groupId,
      'strand.attempt': 1,
      'strand.tier': 0,
      'strand.outcome': 'retried',
    });
    expect(first.status).toBe(SpanStatusCode.ERROR);
    expect(first.events).toContain('exception');
    // The tier record carried the first attempt's context.
    expect(second.parentSpanId).toBe(first.spanId);
    expectConsumerAttributes(second, {
      'messaging.destination.name': `${topic}.retry.1`,
      'messaging.message.id': jobId,
      'strand.attempt': 2,
      'strand.tier': 1,
      'strand.outcome': 'completed',
    });
    expect(second.status).toBe(SpanStatusCode.UNSET);

    expect(seen.map((s) => s.attempt)).toEqual([1, 2]);
    expect(seen.map((s) => s.active)).toEqual([first.spanId, second.spanId]);
    expect(seen.map((s) => s.ctxSpan)).toEqual([first.spanId, second.spanId]);
    expect(seen.every((s) => s.trace === traceId)).toBe(true);
    const handlerLines = lines.filter((l) => l.marker === 'in-handler');
    expect(handlerLines.map((l) => [l.trace_id, l.span_id])).toEqual([
      [traceId, first.spanId],
      [traceId, second.spanId],
    ]);
  });

  it('a dead job carries its attempt context into the DLQ; a replay starts a new trace linked to it; an undecodable record gets one error span', async () => {
    const { topic, cleanup } = await jobTopic('trace-dlq', { partitions: 1 });
    cleanups.push(cleanup);
    const producer = await producerFor(topic);
    const { jobId } = await producer.enqueue(payment(2));
    await rawProduce(stack().brokers, topic, [{ key: 'poison', value: Buffer.from('not avro') }]);
    const completed: string[] = [];
    const w = paymentWorker(topic, uniqueName(`${topic}-g`), {
      handler: async (job) => {
        if (!job.headers['strand-replay-count']) throw new NonRetriableError('card declined');
        completed.push(job.id);
      },
    });
    workers.push(w);
    await w.start();
    const consumerSpans = () =>
      spans().filter(
        (s) => s.kind === SpanKind.CONSUMER && s.attributes['messaging.destination.name'] === topic,
      );
    await waitUntil(() => consumerSpans().length === 2, { what: 'the dead job and the poison record spans' });
    const dead = consumerSpans().find((s) => s.attributes['messaging.message.id'] === jobId)!;
    const poison = consumerSpans().find((s) => s.attributes['messaging.kafka.message.key'] === 'poison')!;
    expect(dead.status).toBe(SpanStatusCode.ERROR);
    expect(dead.attributes).toMatchObject({
      'strand.outcome': 'dead_lettered',
      'strand.dead_reason': 'non-retriable',
    });
    expect(dead.exceptionTypes).toEqual(['NonRetriableError']);
    const send = spans().find((s) => s.kind === SpanKind.PRODUCER && s.traceId === dead.traceId)!;
    expect(dead.parentSpanId).toBe(send.spanId);

    // One span for the record that never decoded, with the decode error.
    expect(poison.status).toBe(SpanStatusCode.ERROR);
    expect(poison.exceptionTypes).toEqual(['DecodeError']);
    expect(poison.attributes).toMatchObject({
      'strand.outcome': 'dead_lettered',
      'strand.dead_reason': 'undecodable:bad-magic',
    });
    expect(poison.parentSpanId).toBeUndefined();

    const records = await waitUntil(async () => {
      const r = await rawConsume(stack().brokers, `${topic}.dlq`, 2);
      return r.length === 2 ? r : undefined;
    });
    const deadRecord = records.find((r) => r.headers['strand-job-id'] === jobId)!;
    expect(deadRecord.headers.traceparent).toBe(`00-${dead.traceId}-${dead.spanId}-01`);

    const replay = await replayDeadJobs(stack().connection, topic, { key: 'acct-2' });
    expect(replay.sent).toBe(1);
    await waitUntil(() => completed.length === 1, { what: 'the replayed job' });
    const replaySend = await waitUntil(() =>
      spans().find((s) => s.kind === SpanKind.PRODUCER && s.links.some((l) => l.spanId === dead.spanId)),
    );
    expect(replaySend.name).toBe(`send ${topic}`);
    expect(replaySend.traceId).not.toBe(dead.traceId);
    expect(replaySend.parentSpanId).toBeUndefined();
    expect(replaySend.links).toEqual([{ traceId: dead.traceId, spanId: dead.spanId }]);
    expect(replaySend.attributes).toMatchObject({ 'messaging.message.id': jobId, 'strand.replay_count': 1 });
    const rerun = await waitUntil(() =>
      consumerSpans().find((s) => s.traceId === replaySend.traceId && s.attributes['strand.outcome']),
    );
    expect(rerun.parentSpanId).toBe(replaySend.spanId);
    expect(rerun.attributes).toMatchObject({ 'strand.outcome': 'completed', 'messaging.message.id': jobId });
  });

  it('an in-place retry is a sibling span under the same parent; a duplicate job id gets a duplicate span', async () => {
    const { topic, jobId, parent } = await jobInParentSpan('trace-inplace', 5);
    const producer = await producerFor(topic);
    const again = await producer.enqueue({ ...payment(5), jobId });
    const { send, first, second } = await failOnce(topic, parent.traceId, {
      retry: { inPlace: 1, inPlaceBackoff: { baseMs: 10, maxMs: 10, jitter: 0 }, tiers: [300] },
      idempotency: { store: 'memory' },
    });
    expect(send.parentSpanId).toBe(parent.spanId);
    expect([first.parentSpanId, second.parentSpanId]).toEqual([send.spanId, send.spanId]);
    expect(first.attributes).toMatchObject({
      'strand.attempt': 1,
      'strand.tier': 0,
      'strand.outcome': 'retried',
    });
    expect(first.status).toBe(SpanStatusCode.ERROR);
    expect(second.attributes).toMatchObject({
      'strand.attempt': 2,
      'strand.tier': 0,
      'strand.outcome': 'completed',
    });
    const duplicate = await waitUntil(() =>
      spans().find(
        (s) =>
          s.kind === SpanKind.CONSUMER &&
          s.attributes['messaging.kafka.message.offset'] === Number(again.offset) &&
          s.attributes['messaging.destination.name'] === topic,
      ),
    );
    expect(duplicate.attributes).toMatchObject({
      'strand.outcome': 'duplicate',
      'messaging.message.id': jobId,
    });
    expect(duplicate.status).toBe(SpanStatusCode.UNSET);
  });

  it('tracing: false on producer and worker: no spans, the handler sees no active span', async () => {
    const { topic, cleanup } = await jobTopic('trace-off', { partitions: 1 });
    cleanups.push(cleanup);
    const producer = await producerFor(topic, { tracing: false });
    await producer.enqueue(payment(3));
    const seen: { recording: boolean; active: boolean }[] = [];
    const w = paymentWorker(topic, uniqueName(`${topic}-g`), {
      tracing: false,
      handler: async (_job, ctx) => {
        seen.push({ recording: ctx.span.isRecording(), active: trace.getActiveSpan() !== undefined });
      },
    });
    workers.push(w);
    await w.start();
    await waitUntil(() => seen.length === 1, { what: 'the job' });
    expect(seen).toEqual([{ recording: false, active: false }]);
    expect(
      spans().filter((s) => String(s.attributes['messaging.destination.name']).startsWith(topic)),
    ).toEqual([]);
  });

  it('with @opentelemetry/instrumentation-kafkajs patching kafkajs, the job chain holds and its spans nest under it', async () => {
    const instrumentation = new KafkaJsInstrumentation({ enabled: false });
    instrumentation.setTracerProvider(trace.getTracerProvider());
    const [definition] = instrumentation.getModuleDefinitions();
    // What the instrumentation's module hook does when kafkajs loads (the class is shared, so the
    // clients Strand creates from here on are patched).
    definition!.patch!(kafkajs, '2.2.4');
    try {
      const { topic, jobId, parent } = await jobInParentSpan('trace-kjs', 4);
      const { send, first, second } = await failOnce(topic, parent.traceId, {
        retry: { inPlace: 0, tiers: [300], maxAttempts: 3 },
      });
      expect(send.parentSpanId).toBe(parent.spanId);
      expect(first.parentSpanId).toBe(send.spanId);
      expect(second.parentSpanId).toBe(first.spanId);
      expect(second.attributes['messaging.message.id']).toBe(jobId);
      // kafkajs' own send spans: under the job's send span, and under the attempt that routed it.
      const kafkajsSpans = inTrace(parent.traceId).filter(
        (s) => s.scope !== 'strand' && s.name !== 'checkout',
      );
      const kafkajsSend = kafkajsSpans.find((s) => s.name === `send ${topic}`);
      const kafkajsTier = kafkajsSpans.find((s) => s.name === `send ${topic}.retry.1`);
      expect(kafkajsSend?.parentSpanId).toBe(send.spanId);
      expect(kafkajsTier?.parentSpanId).toBe(first.spanId);
      // Its consumer-side spans link to the context the record carried.
      const linked = spans().filter(
        (s) =>
          s.scope !== 'strand' && s.links.some((l) => l.spanId === send.spanId || l.spanId === first.spanId),
      );
      expect(linked.map((s) => s.name).sort()).toEqual([`process ${topic}`, `process ${topic}.retry.1`]);
    } finally {
      definition!.unpatch!(kafkajs, '2.2.4');
    }
  });

  it('worker processes: each job is one trace from the enqueuing process through attempts in the workers', async () => {
    const { topic, cleanup } = await jobTopic('trace-procs', { partitions: 4, tierDelays: [300] });
    cleanups.push(cleanup);
    const groupId = uniqueName(`${topic}-g`);
    const traceFile = join(tmpdir(), `${uniqueName('strand-trace')}.jsonl`);
    const fleet = new WorkerFleet(
      { topic, groupId, tiers: [300], inPlace: 0, traceFile },
      'test/support/traced-worker.ts',
    );
    cleanups.push(() => fleet.killAll());
    fleet.start();
    fleet.start();
    await waitUntil(async () => (await groupMembers(groupId)) === 2, {
      timeoutMs: 60_000,
      what: 'both worker processes in the group',
    });
    const count = 12;
    const { jobIds } = await enqueuePayments(topic, count, count, { memo: () => 'fail-times-1' });
    const workerSpans = () => readSpanFile(traceFile);
    await waitUntil(
      () => workerSpans().filter((s) => s.attributes['strand.outcome'] === 'completed').length === count,
      { timeoutMs: 60_000, what: 'every job completed on its second attempt' },
    );
    const local = spans().filter((s) => s.kind === SpanKind.PRODUCER && s.name === `send ${topic}`);
    const remote = workerSpans();
    for (const jobId of jobIds) {
      const send = local.find((s) => s.attributes['messaging.message.id'] === jobId)!;
      const attempts = remote
        .filter((s) => s.attributes['messaging.message.id'] === jobId)
        .sort((a, b) => Number(a.attributes['strand.attempt']) - Number(b.attributes['strand.attempt']));
      expect(
        attempts.map((s) => s.attributes['strand.outcome']),
        jobId,
      ).toEqual(['retried', 'completed']);
      expect(new Set([send.traceId, ...attempts.map((s) => s.traceId)]).size, jobId).toBe(1);
      expect(attempts[0]!.parentSpanId, jobId).toBe(send.spanId);
      expect(attempts[1]!.parentSpanId, jobId).toBe(attempts[0]!.spanId);
      expect(attempts.every((s) => s.pid !== process.pid)).toBe(true);
    }
    // Both worker processes took part.
    expect(new Set(remote.map((s) => s.pid)).size).toBe(2);
  });
});
