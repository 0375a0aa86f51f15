import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { type Payment, paymentProducer } from '../chaos/payments.js';
import { kafkaClasspath, stackHome, stackUp } from '../src/devstack/index.js';
import { createKafka, type KafkaConnection } from '../src/kafka/client.js';
import { createJobTopics } from '../src/kafka/topics.js';
import { createLogger } from '../src/observability/logger.js';
import type { JobProducer } from '../src/producer/job-producer.js';

const run = promisify(execFile);

export const quiet = createLogger({ level: 'error' });
export type { Payment };

export interface BenchStack {
  brokers: string[];
  registryUrl: string;
  conn: KafkaConnection;
}

export async function benchStack(): Promise<BenchStack> {
  let brokers = process.env.STRAND_BROKERS?.split(',');
  let registryUrl = process.env.STRAND_REGISTRY_URL;
  if (!brokers || !registryUrl) {
    const { info } = await stackUp({ onProgress: (l) => console.error(`[devstack] ${l}`) });
    brokers = info.brokers;
    registryUrl = info.registryUrl;
  }
  return { brokers, registryUrl, conn: { brokers, clientId: 'strand-bench' } };
}

let topicCounter = 0;
/** A fresh job topic (with tiers and DLQ) for one measurement. */
export async function benchTopic(
  s: BenchStack,
  name: string,
  partitions: number,
  tierDelays: number[] = [],
): Promise<string> {
  const topic = `bench-${name}-${Date.now().toString(36)}-${topicCounter++}`;
  await createJobTopics(s.conn, { topic, partitions, tierDelays });
  return topic;
}

export async function deleteBenchTopics(s: BenchStack): Promise<void> {
  const admin = createKafka(s.conn).admin();
  await admin.connect();
  const topics = (await admin.listTopics()).filter((t) => t.startsWith('bench-'));
  if (topics.length) await admin.deleteTopics({ topics }).catch(() => undefined);
  await admin.disconnect();
}

/** ~200-byte Avro payments (Confluent wire format) over `keys` accounts. */
export function payment(i: number, keys: number, memo: string | null = null): Payment {
  return {
    paymentId: `pay-${i.toString().padStart(9, '0')}-settlement-batch-2026-11`,
    accountId: `account-${(i % keys).toString().padStart(6, '0')}`,
    amountCents: 1000 + (i % 977),
    currency: 'EUR',
    sequence: i,
    createdAt: Date.now(),
    memo:
      memo ??
      'monthly subscription renewal, card on file, merchant 4417-22, terminal 09, region eu-west, ref. 77A1-BC9F-0042-XY',
  };
}

/** A connected JobProducer of payments for `topic`. */
export function benchProducer(s: BenchStack, topic: string): Promise<JobProducer<Payment>> {
  return paymentProducer(s, topic, quiet);
}

/** Enqueues `count` jobs with a JobProducer; returns the time it took. */
export async function fill(
  s: BenchStack,
  topic: string,
  count: number,
  keys: number,
  memo?: (i: number) => string | null,
): Promise<number> {
  const producer = await benchProducer(s, topic);
  const t0 = performance.now();
  for (let i = 0; i < count; i += 2000) {
    const batch = [];
    for (let j = i; j < Math.min(count, i + 2000); j++) {
      const data = payment(j, keys, memo ? memo(j) : null);
      batch.push({ key: data.accountId, data });
    }
    await producer.enqueueMany(batch);
  }
  const ms = performance.now() - t0;
  await producer.disconnect();
  return ms;
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export const round = (n: number, digits = 0) => Number(n.toFixed(digits));

export async function until(check: () => boolean, timeoutMs: number, intervalMs = 20): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  return true;
}

/** Kafka's own perf tools from the kafka-tools artifact (resolved by Maven, cached). */
export async function kafkaTool(
  tool: 'ProducerPerformance' | 'ConsumerPerformance',
  args: string[],
): Promise<string> {
  const cp = await kafkaClasspath(`${stackHome()}/cache`, { tools: true });
  const { stdout } = await run('java', ['-Xmx512m', '-cp', cp, `org.apache.kafka.tools.${tool}`, ...args], {
    timeout: 10 * 60_000,
    maxBuffer: 64 * 1024 * 1024,
  });
  return stdout;
}
