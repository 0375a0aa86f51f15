import { execFile, spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
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

/** Where bench/child.mjs runs from: the repository root. */
export const ROOT = join(import.meta.dirname, '..');

/** What a measured child process reports (bench/child.mjs), besides `event`. */
export type ChildResult = Record<string, unknown> & { seconds: number };

/**
 * Runs one measurement in its own plain-node process (bench/child.mjs, Strand from dist/): no
 * tsx loader, a fresh JIT and heap for every run. `onReady` runs when the child says it can
 * start; the promise resolves with its result line, or rejects with its error line or exit code.
 */
export function child(
  mode: 'strand' | 'kafkajs' | 'produce' | 'paced',
  params: Record<string, unknown>,
  opts: { nodeArgs?: string[]; onReady?: () => void; timeoutMs?: number } = {},
): Promise<ChildResult> {
  const env = { ...process.env };
  delete env.NODE_OPTIONS; // a loader there (tsx) would transform dist/ too
  const proc = spawn(
    process.execPath,
    [...(opts.nodeArgs ?? []), join(ROOT, 'bench', 'child.mjs'), mode, JSON.stringify(params)],
    { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  return new Promise((resolve, reject) => {
    let result: ChildResult | undefined;
    let error: string | undefined;
    const timer = setTimeout(() => {
      error = `${mode} child timed out after ${Math.round((opts.timeoutMs ?? 900_000) / 1000)} s`;
      proc.kill('SIGKILL');
    }, opts.timeoutMs ?? 900_000);
    createInterface({ input: proc.stdout! }).on('line', (line) => {
      let msg: { event?: string; message?: string } & Record<string, unknown>;
      try {
        msg = JSON.parse(line) as typeof msg;
      } catch {
        console.error(`[${mode}] ${line}`);
        return;
      }
      if (msg.event === 'ready') opts.onReady?.();
      else if (msg.event === 'error') error = `${mode}: ${msg.message}`;
      else if (msg.event === 'result') {
        const { event: _, ...rest } = msg;
        result = rest as ChildResult;
      }
    });
    proc.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    proc.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (result && code === 0) resolve(result);
      else reject(new Error(error ?? `${mode} child exited with ${signal ?? code} and no result`));
    });
  });
}

/** Median, min and max of the runs of one figure (and the runs, in order). */
export interface Stats {
  median: number;
  min: number;
  max: number;
  runs: number[];
}

export function stats(runs: number[], digits = 0): Stats {
  const sorted = [...runs].sort((a, b) => a - b);
  const mid = sorted.length / 2;
  const median = sorted.length % 2 ? sorted[Math.floor(mid)]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return {
    median: round(median, digits),
    min: round(sorted[0]!, digits),
    max: round(sorted[sorted.length - 1]!, digits),
    runs: runs.map((r) => round(r, digits)),
  };
}

/** ~200-byte Avro payments (Confluent wire format) over `keys` accounts; bench/child.mjs has a copy. */
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

export const round = (n: number, digits = 0) => Number(n.toFixed(digits));

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
