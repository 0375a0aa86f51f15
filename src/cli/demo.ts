import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { loadAvroSchemaFile } from '../codec/index.js';
import { stackUp } from '../devstack/index.js';
import { createKafka, type KafkaConnection } from '../kafka/client.js';
import { createJobTopics } from '../kafka/topics.js';
import { computeLag } from '../lag/lag.js';
import { createLogger } from '../observability/logger.js';
import { JobProducer } from '../producer/job-producer.js';
import { topicNames } from '../topology/topics.js';
import { action, colour, EXIT, parseIntOption } from './common.js';

const here = fileURLToPath(new URL('.', import.meta.url));
const SCHEMA = join(here, '..', '..', 'schemas', 'payment.avsc');
const WORKER_MODULE = join(here, '..', 'demo', 'worker.js');
const CLI = join(here, 'main.js');
const TIERS = [1000, 3000];

interface DemoFlags {
  jobs: number;
  keys: number;
  workers: number;
  timeout: number;
  json?: boolean;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

/**
 * What each job of the workload does: most succeed, some fail transiently, a few permanently.
 * Payment `i` belongs to account `i % keys`; transient failures are spread over the accounts and
 * their payments (about one in twenty of each account's), as a flaky downstream's would be — not
 * every payment of a few accounts, which strict order would run one retry at a time.
 */
function memoFor(i: number, keys: number): string | null {
  if (i % 500 === 250) return 'declined';
  const spread = i + Math.floor(i / keys);
  if (spread % 100 === 13) return 'flaky-2';
  if (spread % 20 === 7) return 'flaky-1';
  return null;
}

function metricSum(texts: string[], name: string, label?: [string, string]): number {
  let sum = 0;
  for (const text of texts) {
    for (const line of text.split('\n')) {
      if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
      if (label && !line.includes(`${label[0]}="${label[1]}"`)) continue;
      sum += Number(line.split(' ').pop()) || 0;
    }
  }
  return sum;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

interface Ledger {
  starts: number;
  completedIds: Set<string>;
  e2e: number[];
  firstStart: number;
  lastCompletion: number;
  orderViolations: string[];
}

function readLedger(file: string): Ledger {
  const text = existsSync(file) ? readFileSync(file, 'utf8') : '';
  // Per job: its key and sequence, its first and last start, its first completion.
  const jobs = new Map<
    string,
    { key: string; seq: number; firstS: number; lastS: number; firstC?: number }
  >();
  const ledger: Ledger = {
    starts: 0,
    completedIds: new Set(),
    e2e: [],
    firstStart: 0,
    lastCompletion: 0,
    orderViolations: [],
  };
  for (const line of text.split('\n')) {
    if (!line) continue;
    const [kind, id, key, seq, , , at, e2e] = line.split(' ');
    const time = Number(at);
    if (kind === 'S') {
      ledger.starts++;
      if (!ledger.firstStart || time < ledger.firstStart) ledger.firstStart = time;
      const job = jobs.get(id!);
      if (job) job.lastS = time;
      else jobs.set(id!, { key: key!, seq: Number(seq), firstS: time, lastS: time });
    } else if (kind === 'C' && !ledger.completedIds.has(id!)) {
      ledger.completedIds.add(id!);
      const job = jobs.get(id!);
      if (job) job.firstC = time;
      ledger.lastCompletion = Math.max(ledger.lastCompletion, time);
      if (Number(e2e) >= 0) ledger.e2e.push(Number(e2e));
    }
  }
  // Judged by time, not by first starts alone: per account, no job starts before every earlier one
  // ended (its first completion; a dead-lettered one, its last start). That catches two payments of
  // an account at once, and a later one passing an earlier one that waits in a retry tier.
  const byKey = new Map<string, { seq: number; firstS: number; end: number }[]>();
  for (const j of jobs.values())
    byKey.set(j.key, [
      ...(byKey.get(j.key) ?? []),
      { seq: j.seq, firstS: j.firstS, end: j.firstC ?? j.lastS },
    ]);
  for (const [key, list] of byKey) {
    list.sort((a, b) => a.seq - b.seq);
    let ended = 0;
    let by = 0;
    for (const j of list) {
      if (j.firstS < ended) {
        ledger.orderViolations.push(`${key}: ${j.seq} started before ${by} ended`);
        break;
      }
      if (j.end > ended) [ended, by] = [j.end, j.seq];
    }
  }
  ledger.e2e.sort((a, b) => a - b);
  return ledger;
}

async function removeOldDemoTopics(conn: KafkaConnection): Promise<void> {
  const admin = createKafka(conn).admin();
  await admin.connect();
  const old = (await admin.listTopics()).filter((t) => t.startsWith('demo-payments-'));
  if (old.length) await admin.deleteTopics({ topics: old }).catch(() => undefined);
  await admin.disconnect();
}

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description('the main job: a payment workload through two workers on the local stack, with a summary')
    .option('--jobs <n>', 'payments to enqueue', parseIntOption('--jobs', 10), 5000)
    .option('--keys <n>', 'accounts (ordering keys)', parseIntOption('--keys', 1), 300)
    .option('--workers <n>', 'worker processes', parseIntOption('--workers', 1), 2)
    .option('--timeout <s>', 'give up after this many seconds', parseIntOption('--timeout', 10), 180)
    .option('--json', 'print the summary as JSON')
    .addHelpText(
      'after',
      `
Starts the local stack if needed (or uses STRAND_BROKERS / STRAND_REGISTRY_URL), creates a fresh
demo topic with retry tiers and a DLQ, enqueues payments over many accounts, runs worker processes
against a flaky simulated downstream (transient failures, a few permanent ones, one poison record)
and checks the outcome. Exit code 0 when every job ended where it should, 1 otherwise.

Examples:
  npm run demo
  strand demo --jobs 20000 --keys 1000 --workers 3`,
    )
    .action(
      action(async (flags: DemoFlags) => {
        const say = (line: string) => {
          if (!flags.json) process.stderr.write(`${line}\n`);
        };
        const t0 = Date.now();
        let brokers = process.env.STRAND_BROKERS?.split(',');
        let registryUrl = process.env.STRAND_REGISTRY_URL;
        if (!brokers || !registryUrl) {
          say(colour.dim('… starting the local stack (Kafka + schema registry) if it is not running'));
          const { info, alreadyRunning } = await stackUp({ onProgress: (l) => say(colour.dim(`… ${l}`)) });
          say(
            colour.dim(
              `… local stack ${alreadyRunning ? 'already running' : 'started'}: ${info.brokers.join(',')}`,
            ),
          );
          brokers = info.brokers;
          registryUrl = info.registryUrl;
        }
        const conn: KafkaConnection = { brokers, clientId: 'strand-demo' };
        await removeOldDemoTopics(conn);
        const topic = `demo-payments-${Date.now().toString(36)}`;
        const groupId = `${topic}-workers`;
        await createJobTopics(conn, { topic, partitions: 6, tierDelays: TIERS });
        say(
          `topic ${colour.bold(topic)}: 6 partitions, retry tiers ${TIERS.map((d) => `${d / 1000}s`).join(', ')}, DLQ ${topic}.dlq`,
        );

        const dir = mkdtempSync(join(tmpdir(), 'strand-demo-'));
        const ledger = join(dir, 'ledger.txt');
        writeFileSync(ledger, '');
        const ports: number[] = [];
        const children: ChildProcess[] = [];
        for (let i = 0; i < flags.workers; i++) {
          const port = await freePort();
          ports.push(port);
          const child = spawn(process.execPath, [CLI, 'worker', WORKER_MODULE], {
            env: {
              ...process.env,
              STRAND_BROKERS: brokers.join(','),
              STRAND_REGISTRY_URL: registryUrl,
              STRAND_LOG_LEVEL: process.env.STRAND_LOG_LEVEL ?? 'error',
              STRAND_DEMO: JSON.stringify({ topic, groupId, ledger, metricsPort: port, tiers: TIERS }),
            },
            stdio: ['ignore', 'ignore', flags.json ? 'ignore' : 'inherit'],
          });
          children.push(child);
        }
        const stopWorkers = async () => {
          await Promise.all(
            children.map(
              (c) =>
                new Promise<void>((resolve) => {
                  if (c.exitCode !== null || c.signalCode !== null) return resolve();
                  c.once('exit', () => resolve());
                  c.kill('SIGTERM');
                  setTimeout(() => c.kill('SIGKILL'), 20_000).unref();
                }),
            ),
          );
        };
        const scrape = async () =>
          Promise.all(
            ports.map((p) =>
              fetch(`http://127.0.0.1:${p}/metrics`).then(
                (r) => r.text(),
                () => '',
              ),
            ),
          );
        try {
          // Wait until every worker joined the group before producing.
          const readyBy = Date.now() + 60_000;
          for (;;) {
            const states = await Promise.all(
              ports.map((p) =>
                fetch(`http://127.0.0.1:${p}/readyz`).then(
                  (r) => r.status,
                  () => 0,
                ),
              ),
            );
            if (states.every((s) => s === 200)) break;
            if (children.some((c) => c.exitCode !== null))
              throw new Error('a demo worker exited during start (see its error above)');
            if (Date.now() > readyBy) throw new Error('demo workers did not join the group within 60 s');
            await new Promise((r) => setTimeout(r, 200));
          }
          say(`${flags.workers} workers joined group ${groupId}`);

          // Enqueue the workload: payments, then duplicates of some, then one poison record.
          const producer = new JobProducer({
            brokers,
            registry: { url: registryUrl },
            topic,
            schema: loadAvroSchemaFile(SCHEMA),
            logger: createLogger({ level: 'error' }),
          });
          await producer.connect();
          const seq = new Map<string, number>();
          const plain: { key: string; jobId: string; data: Record<string, unknown> }[] = [];
          const produceStart = Date.now();
          for (let i = 0; i < flags.jobs; i += 500) {
            const batch = [];
            for (let j = i; j < Math.min(flags.jobs, i + 500); j++) {
              const accountId = `acct-${String(j % flags.keys).padStart(4, '0')}`;
              const sequence = (seq.get(accountId) ?? 0) + 1;
              seq.set(accountId, sequence);
              const memo = memoFor(j, flags.keys);
              const data = {
                paymentId: `pay-${j}`,
                accountId,
                amountCents: 100 + (j % 9000),
                currency: 'EUR',
                sequence,
                createdAt: Date.now(),
                memo,
              };
              batch.push({ key: accountId, data, jobId: `pay-${j}` });
              if (memo === null) plain.push({ key: accountId, jobId: `pay-${j}`, data });
            }
            await producer.enqueueMany(batch);
          }
          const duplicates = plain.filter((_, i) => i % 200 === 0);
          await producer.enqueueMany(duplicates.map((d) => ({ key: d.key, data: d.data, jobId: d.jobId })));
          await producer.disconnect();
          const raw = createKafka(conn).producer({ idempotent: true, maxInFlightRequests: 1 });
          await raw.connect();
          await raw.send({
            topic,
            acks: -1,
            messages: [{ key: 'acct-poison', value: Buffer.from('{"this is":"not avro"}') }],
          });
          await raw.disconnect();
          const produced = flags.jobs + duplicates.length + 1;
          const declined = Array.from({ length: flags.jobs }, (_, j) => memoFor(j, flags.keys)).filter(
            (m) => m === 'declined',
          ).length;
          const expectedCompleted = flags.jobs - declined;
          const expectedDead = declined + 1;
          say(
            `enqueued ${produced} records in ${Date.now() - produceStart} ms (${flags.jobs} payments, ${duplicates.length} duplicate enqueues, 1 poison record)`,
          );

          // Live progress until every job has reached its outcome.
          const admin = createKafka(conn).admin();
          await admin.connect();
          const tty = process.stderr.isTTY && !flags.json;
          const deadline = Date.now() + flags.timeout * 1000;
          let view = { completed: 0, retried: 0, dead: 0, duplicate: 0, lag: 0 };
          for (;;) {
            const texts = await scrape();
            const lag = await computeLag(admin, groupId, [
              topic,
              ...topicNames(topic, TIERS.length).tiers,
            ]).catch(() => []);
            view = {
              completed: readLedger(ledger).completedIds.size,
              retried: metricSum(texts, 'queue_jobs_total', ['outcome', 'retried']),
              dead: metricSum(texts, 'queue_jobs_total', ['outcome', 'dead_lettered']),
              duplicate: metricSum(texts, 'queue_jobs_total', ['outcome', 'duplicate']),
              lag: lag.reduce((s, l) => s + l.lag, 0),
            };
            const line = `produced ${produced}  completed ${view.completed}/${expectedCompleted}  retried ${view.retried}  dead-lettered ${view.dead}  duplicates ${view.duplicate}  lag ${view.lag}`;
            if (tty) process.stderr.write(`\r\u001b[2K${line}`);
            else say(line);
            const finished =
              view.completed >= expectedCompleted &&
              view.dead >= expectedDead &&
              view.duplicate >= duplicates.length &&
              view.lag === 0;
            if (finished || Date.now() > deadline) break;
            await new Promise((r) => setTimeout(r, tty ? 300 : 2000));
          }
          if (tty) process.stderr.write('\n');
          const texts = await scrape();
          const dlqRecords = (await admin.fetchTopicOffsets(`${topic}.dlq`)).reduce(
            (s, o) => s + Number(o.high),
            0,
          );
          await admin.disconnect();
          await stopWorkers();

          const l = readLedger(ledger);
          // End to end: from the first start to the last completion, retry delays included, and the
          // waits of payments behind a retried payment of their account (strict order).
          const seconds = Math.max(0.001, (l.lastCompletion - l.firstStart) / 1000);
          const summary = {
            topic,
            group: groupId,
            jobs: flags.jobs,
            keys: flags.keys,
            workers: flags.workers,
            completed: l.completedIds.size,
            expectedCompleted,
            handlerRuns: l.starts,
            throughputPerSecond: Math.round(l.completedIds.size / seconds),
            latencyMs: { p50: percentile(l.e2e, 50), p99: percentile(l.e2e, 99) },
            retriesPerTier: Object.fromEntries(
              TIERS.map((_, i) => [
                `tier${i + 1}`,
                metricSum(texts, 'queue_retries_total', ['tier', String(i + 1)]),
              ]),
            ),
            deadLettered: dlqRecords,
            expectedDeadLettered: expectedDead,
            orderViolations: l.orderViolations.length,
            duplicatesSuppressed: view.duplicate,
            expectedDuplicates: duplicates.length,
            wallSeconds: Math.round((Date.now() - t0) / 100) / 10,
          };
          const ok =
            summary.completed === expectedCompleted &&
            summary.deadLettered === expectedDead &&
            summary.orderViolations === 0 &&
            summary.duplicatesSuppressed === duplicates.length;
          if (flags.json) {
            process.stdout.write(`${JSON.stringify({ ok, ...summary })}\n`);
          } else {
            const rows: [string, string][] = [
              ['jobs', `${summary.jobs} payments over ${summary.keys} accounts, ${summary.workers} workers`],
              [
                'completed',
                `${summary.completed} / ${expectedCompleted} (${summary.handlerRuns} handler runs)`,
              ],
              [
                'throughput',
                `${summary.throughputPerSecond} jobs/s end to end (retry delays and the waits behind them included)`,
              ],
              [
                'latency (enqueue → done)',
                `p50 ${summary.latencyMs.p50} ms, p99 ${summary.latencyMs.p99} ms (a retried payment waits in its tier, and its account's later payments wait behind it)`,
              ],
              [
                'retries per tier',
                Object.entries(summary.retriesPerTier)
                  .map(([t, n]) => `${t} ${n}`)
                  .join(', '),
              ],
              [
                'dead-lettered',
                `${summary.deadLettered} (expected ${expectedDead}: ${declined} declined + 1 poison record)`,
              ],
              [
                'per-key order violations',
                `${summary.orderViolations} (by start and end times; retry.ordering strict)`,
              ],
              ['duplicates suppressed', `${summary.duplicatesSuppressed} / ${duplicates.length}`],
              ['wall time', `${summary.wallSeconds} s`],
            ];
            const w = Math.max(...rows.map((r) => r[0].length));
            process.stdout.write(`\n${colour.bold('Strand demo summary')}\n`);
            for (const [k, v] of rows) process.stdout.write(`  ${k.padEnd(w)}  ${v}\n`);
            process.stdout.write(
              `\n${ok ? colour.green('OK: every job ended where it should.') : colour.red('NOT OK: see the figures above.')}\n\nWhere to look next:\n` +
                `  npx strand dlq list ${topic}          the dead-lettered jobs and why\n` +
                `  npx strand dlq replay ${topic} --dry-run\n` +
                `  npx strand lag --group ${groupId}\n` +
                `  worker metrics: run a worker with metrics: { port: 9464 } and open http://127.0.0.1:9464/metrics\n` +
                `  npx strand dev down                  stops the local stack\n` +
                `\nOpen the console (lag, workers, jobs, dead letters with replay) on http://127.0.0.1:9400:\n` +
                `  npx strand console --group ${groupId}\n`,
            );
          }
          if (!ok) process.exitCode = EXIT.failure;
        } finally {
          await stopWorkers();
        }
      }),
    );
}
