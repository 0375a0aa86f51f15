import { type ChildProcess, spawn } from 'node:child_process';
import { appendFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import pg from 'pg';
import { parseAvroSchema } from '../src/codec/index.js';
import { createJobTopics } from '../src/kafka/topics.js';
import { migrateOutbox } from '../src/outbox/table.js';
import { usePostgres } from '../test/support/postgres-server.js';
import { rawConsume } from '../test/support/raw-kafka.js';
import { ChaosFleet, keyOrderViolations } from './fleet.js';
import { type Payment, paymentSchema } from './payments.js';
import { type ChaosStack, chaosTopicName, type Verdict } from './scenarios.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const redisPort = () => Number(process.env.STRAND_TEST_REDIS_PORT ?? 6379);

export interface OutboxChaosSize {
  /** Business transactions in all, split over the writers. */
  transactions: number;
  writers: number;
  keys: number;
  /** Relay processes running at once (one publishes, the others stand by). */
  relays: number;
  /** SIGKILL a random relay (and start another) every lo–hi ms while the writers run. */
  killEveryMs: [number, number];
  /** Restart PostgreSQL (immediate stop: every connection cut) once this share of the transactions is written. */
  restartAt: number;
  workers: number;
  /** How long to wait for the relays and workers after the writers ended. */
  waitMs?: number;
}

/**
 * The transactional outbox under crashes (issue 27): `writers` processes run business
 * transactions on a throwaway PostgreSQL (an order row, the account's row locked, 1–3 payment
 * jobs of the account through the outbox; one in three rolled back); `relays` relay processes
 * (`strand outbox relay`) publish, one SIGKILLed every few seconds and replaced; PostgreSQL is
 * restarted once (immediate stop); ledger workers with the Redis idempotency store run the jobs
 * and push each job id to a Redis list as their side effect. Verdict: Kafka holds every job of
 * every committed transaction (the orders table after the run is the truth) and none of any
 * other; per account, the first record of each job is in commit order (the job's sequence comes
 * from the account row, locked to the end of its transaction); every committed job completed, its
 * side effect once; the outbox is empty.
 */
export async function outboxScenario(s: ChaosStack, o: OutboxChaosSize): Promise<Verdict> {
  const failures: string[] = [];
  const server = await usePostgres({ fresh: true });
  if ('missing' in server || !server.restart)
    return {
      scenario: 'outbox',
      passed: false,
      figures: {},
      failures: [
        `no PostgreSQL to restart: ${'missing' in server ? server.missing : 'not a throwaway server'}`,
      ],
    };
  const topic = chaosTopicName('outbox');
  const table = 'chaos_outbox';
  await createJobTopics({ brokers: s.brokers }, { topic, partitions: 6, tierDelays: [] });
  const admin = new pg.Client({ connectionString: server.url });
  await admin.connect();
  await migrateOutbox(admin, table);
  await admin.query('CREATE TABLE chaos_accounts (key text PRIMARY KEY, seq bigint NOT NULL DEFAULT 0)');
  await admin.query(
    'CREATE TABLE chaos_orders (id text PRIMARY KEY, key text NOT NULL, job_ids text[] NOT NULL)',
  );
  await admin.query(
    `INSERT INTO chaos_accounts (key) SELECT 'acct-' || i FROM generate_series(0, $1 - 1) AS i`,
    [o.keys],
  );
  await admin.end();

  const list = `${topic}:effects`;
  const fleet = new ChaosFleet(s, {
    topic,
    groupId: `${topic}-g`,
    concurrency: 8,
    minMs: 0,
    maxMs: 1,
    redisPrefix: `${topic}:idem:`,
    leaseMs: 5000,
    sideEffectList: list,
  });
  for (let i = 0; i < o.workers; i++) fleet.start();

  const env = { ...process.env, STRAND_BROKERS: s.brokers.join(','), STRAND_REGISTRY_URL: s.registryUrl };
  const relayLog = join(fleet.dir, 'relays.log');
  const relays = new Set<ChildProcess>();
  const startRelay = () => {
    const child = spawn(
      process.execPath,
      [
        'dist/cli/main.js',
        'outbox',
        'relay',
        '--database-url',
        server.url,
        '--table',
        table,
        '--poll-interval',
        '200',
      ],
      { env: { ...env, STRAND_LOG_LEVEL: 'info' }, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    child.stderr?.on('data', (d: Buffer) => appendFileSync(relayLog, d));
    relays.add(child);
    child.on('exit', () => relays.delete(child));
  };
  const kill = (child: ChildProcess) =>
    new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill('SIGKILL');
    });
  for (let i = 0; i < o.relays; i++) startRelay();

  const t0 = Date.now();
  const per = Math.ceil(o.transactions / o.writers);
  const writerOut: string[] = [];
  const writers = Array.from(
    { length: o.writers },
    (_, w) =>
      new Promise<void>((resolve) => {
        const child = spawn(process.execPath, ['--import', 'tsx', 'chaos/outbox-writer.ts'], {
          env: {
            ...process.env,
            STRAND_OUTBOX_WRITER: JSON.stringify({
              url: server.url,
              table,
              topic,
              transactions: Math.min(per, o.transactions - w * per),
              keys: o.keys,
              writer: w,
            }),
          },
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        child.stdout?.on('data', (d: Buffer) => writerOut.push(d.toString()));
        child.stderr?.on('data', (d: Buffer) => appendFileSync(join(fleet.dir, `writer-${w}.log`), d));
        child.on('exit', () => resolve());
      }),
  );
  const probe = new pg.Client({ connectionString: server.url });
  await probe.connect();
  const ordersWritten = async () =>
    Number((await probe.query('SELECT count(*) AS n FROM chaos_orders')).rows[0].n);
  let writing = true;
  const allWritten = Promise.all(writers).then(() => {
    writing = false;
  });
  let kills = 0;
  let restarts = 0;
  let restartedAt = 0;
  while (writing) {
    const [lo, hi] = o.killEveryMs;
    await Promise.race([allWritten, sleep(lo + Math.random() * (hi - lo))]);
    if (!writing) break;
    if (restarts === 0 && (await ordersWritten()) >= o.restartAt * o.transactions * (2 / 3)) {
      restartedAt = Date.now();
      await probe.end();
      await server.restart('immediate');
      restarts++;
      continue;
    }
    const alive = [...relays];
    const victim = alive[Math.floor(Math.random() * alive.length)];
    if (victim) {
      await kill(victim);
      kills++;
      startRelay();
    }
  }
  const writeSeconds = (Date.now() - t0) / 1000;
  if (restarts === 0) {
    await probe.end();
    // The writers were faster than the restart's time: restart now, with the relays still publishing.
    restartedAt = Date.now();
    await server.restart('immediate');
    restarts++;
  }

  // The truth: what PostgreSQL committed.
  const db = new pg.Client({ connectionString: server.url });
  await db.connect();
  const orders = (
    await db.query<{ id: string; key: string; job_ids: string[] }>(
      'SELECT id, key, job_ids FROM chaos_orders',
    )
  ).rows;
  const committed = new Set(orders.flatMap((r) => r.job_ids));
  const deadline = Date.now() + (o.waitMs ?? 5 * 60_000);
  const done = () => {
    const ids = new Set(
      fleet
        .read()
        .filter((l) => l.kind === 'C')
        .map((l) => l.jobId),
    );
    return [...committed].every((id) => ids.has(id));
  };
  let outboxLeft = -1;
  while (Date.now() < deadline) {
    outboxLeft = Number((await db.query(`SELECT count(*) AS n FROM ${table}`)).rows[0].n);
    if (outboxLeft === 0 && done()) break;
    await sleep(500);
  }
  const seconds = (Date.now() - t0) / 1000;
  await db.end();
  await Promise.all([...relays].map(kill));
  await fleet.killAll();
  await server.stop();

  const records = await rawConsume(s.brokers, topic, Number.MAX_SAFE_INTEGER, { timeoutMs: 120_000 });
  const inKafka = new Map<string, number>();
  for (const r of [...records].sort((a, b) => a.partition - b.partition || a.offset - b.offset)) {
    const id = r.headers['strand-job-id']!;
    inKafka.set(id, (inKafka.get(id) ?? 0) + 1);
  }
  // Per-key commit order from the data: the sequence each job got from its locked account row.
  const type = parseAvroSchema(paymentSchema);
  const kafkaOrderViolations: string[] = [];
  const lastSeq = new Map<string, number>();
  const firstSeen = new Set<string>();
  for (const r of [...records].sort((a, b) => a.partition - b.partition || a.offset - b.offset)) {
    const id = r.headers['strand-job-id']!;
    if (firstSeen.has(id)) continue;
    firstSeen.add(id);
    const seq = Number((type.fromBuffer(r.value!.subarray(5)) as Payment).sequence);
    const key = r.key ?? '';
    const last = lastSeq.get(key);
    if (last !== undefined && seq < last) kafkaOrderViolations.push(`${key}: ${seq} after ${last}`);
    lastSeq.set(key, seq);
  }
  const lines = fleet.read();
  const missing = [...committed].filter((id) => !inKafka.has(id));
  const notCommitted = [...inKafka.keys()].filter((id) => !committed.has(id));

  const redis = new Redis({ host: '127.0.0.1', port: redisPort() });
  const effects = await redis.lrange(list, 0, -1);
  await redis.del(list);
  await redis.quit();
  const effectCounts = new Map<string, number>();
  for (const id of effects) effectCounts.set(id, (effectCounts.get(id) ?? 0) + 1);
  const completedIds = new Set(lines.filter((l) => l.kind === 'C').map((l) => l.jobId));
  const writerTotals = writerOut
    .join('')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { committed: number; rolledBack: number; failed: number });
  const sum = (k: 'committed' | 'rolledBack' | 'failed') => writerTotals.reduce((n, w) => n + w[k], 0);
  const relayLines = readFileSync(relayLog, 'utf8').split('\n');
  const figures = {
    transactions: o.transactions,
    writers: o.writers,
    committedTransactions: orders.length,
    rolledBackTransactions: sum('rolledBack'),
    transactionsCutByRestart: sum('failed'),
    committedJobs: committed.size,
    recordsInKafka: records.length,
    jobsInKafka: inKafka.size,
    republished: records.length - inKafka.size,
    missingFromKafka: missing.length,
    notCommittedInKafka: notCommitted.length,
    kafkaOrderViolations: kafkaOrderViolations.length,
    relayKills: kills,
    postgresRestarts: restarts,
    relayFaultLines: relayLines.filter((l) => l.includes('retrying in')).length,
    completed: [...committed].filter((id) => completedIds.has(id)).length,
    sideEffects: effects.length,
    duplicateSideEffects: [...effectCounts.values()].filter((n) => n > 1).length,
    workerOrderViolations: keyOrderViolations(lines).length,
    outboxLeft,
    writeSeconds: Math.round(writeSeconds),
    restartAtSecond: Math.round((restartedAt - t0) / 1000),
    seconds: Math.round(seconds),
    logs: fleet.dir,
  };
  if (missing.length)
    failures.push(`${missing.length} committed jobs not in Kafka (e.g. ${missing.slice(0, 3).join(', ')})`);
  if (notCommitted.length)
    failures.push(
      `${notCommitted.length} jobs in Kafka from transactions that did not commit (e.g. ${notCommitted[0]})`,
    );
  if (kafkaOrderViolations.length)
    failures.push(
      `${kafkaOrderViolations.length} jobs out of commit order in Kafka (${kafkaOrderViolations.slice(0, 3).join('; ')})`,
    );
  if (figures.completed !== committed.size)
    failures.push(`${committed.size - figures.completed} committed jobs not completed`);
  if (figures.duplicateSideEffects)
    failures.push(`${figures.duplicateSideEffects} side effects ran more than once`);
  if (effectCounts.size !== figures.completed)
    failures.push(`${effectCounts.size} distinct side effects for ${figures.completed} completed jobs`);
  if (figures.workerOrderViolations)
    failures.push(`${figures.workerOrderViolations} keys completed out of order`);
  if (outboxLeft !== 0) failures.push(`${outboxLeft} rows left in the outbox`);
  if (kills < 1) failures.push('no relay was killed');
  if (sum('rolledBack') === 0) failures.push('no transaction was rolled back');
  return { scenario: 'outbox', passed: failures.length === 0, figures, failures };
}
