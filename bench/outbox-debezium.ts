/**
 * Strand's outbox relay next to Debezium's PostgreSQL connector with its outbox event router, on
 * Kafka Connect standalone (`npm run bench:debezium`; not part of CI or `npm run bench`).
 *
 * Both publish the same kind of rows (Strand's outbox table, written by `Outbox.enqueue` in
 * business transactions) from one throwaway PostgreSQL 15 with `wal_level=logical`, to the same
 * Kafka, measured in the same run and interleaved (strand, debezium, strand, debezium, ...):
 * achieved transactions/s, commit → consumed latency p50/p99 and whether every key's jobs arrived
 * in commit order (per key the outbox ids must rise: a key's writers serialise on its lock before
 * the id is drawn, so id order is commit order). Debezium reads the WAL of one table (`filtered`
 * publication, `pgoutput`), routes each row by its `topic` column, keys it by `key`, passes the
 * `body` bytes through and puts `job_id` and `id` in headers. Writes
 * bench/results/outbox-debezium.json.
 *
 * Needs: the Maven classpath of debezium-connector-postgres 3.6.1.Final + connect-runtime (resolved
 * once with `mvn dependency:build-classpath` into .tmp/debezium/cp.txt, see DEBEZIUM_POM), the
 * local stack (STRAND_BROKERS / STRAND_REGISTRY_URL or `strand dev up`), PostgreSQL binaries.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { paymentSchema } from '../chaos/payments.js';
import { createKafka } from '../src/kafka/client.js';
import { Outbox } from '../src/outbox/outbox.js';
import { OutboxRelay } from '../src/outbox/relay.js';
import { migrateOutbox } from '../src/outbox/table.js';
import { freePort } from '../test/support/ports.js';
import { usePostgres } from '../test/support/postgres-server.js';
import { machine } from './env.js';
import { type BenchStack, benchStack, benchTopic, type Payment, payment, quiet, ROOT, round } from './lib.js';
import { paceTransactions } from './outbox.js';

/** CPU seconds (user + system) a process used so far, from /proc (Linux). */
function cpuSecondsOf(pid: number | undefined): number {
  if (!pid) return Number.NaN;
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return Number.NaN;
  }
}
function rssMiB(pid: number | undefined): number {
  try {
    const kb = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return round(Number(kb) / 1024);
  } catch {
    return Number.NaN;
  }
}
const selfCpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};
let connectPid: number | undefined;
/** Runs `fn` and adds the CPU seconds this process (writers, watcher, Strand's relay) and Kafka Connect used meanwhile. */
async function withCpu<T extends object>(fn: () => Promise<T>) {
  const [n0, c0] = [selfCpu(), cpuSecondsOf(connectPid)];
  const r = await fn();
  return {
    ...r,
    cpuSeconds: {
      benchProcess: round(selfCpu() - n0, 1),
      kafkaConnect: round(cpuSecondsOf(connectPid) - c0, 1),
    },
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '15' },
    rates: { type: 'string', default: '1000,5000' },
    rounds: { type: 'string', default: '2' },
    'poll-interval-ms': { type: 'string', default: '500' },
    'drain-rows': { type: 'string', default: '2000' },
    warmup: { type: 'string', default: '5' },
  },
});
const SECONDS = Number(values.seconds);
const RATES = values.rates!.split(',').map(Number);
const ROUNDS = Number(values.rounds);
const DBZ_POLL_MS = Number(values['poll-interval-ms']);
const DRAIN_ROWS = Number(values['drain-rows']);
const WARMUP_SECONDS = Number(values.warmup);

const WORK = join(ROOT, '.tmp', 'debezium');
/** Debezium 3.6 brings jackson-databind 2.21, Connect 2.19's annotations: one Jackson for all (else Connect fails to start). */
export const DEBEZIUM_POM = `<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>
<groupId>strand.bench</groupId><artifactId>debezium-connect</artifactId><version>1</version><packaging>pom</packaging>
<dependencyManagement><dependencies><dependency><groupId>com.fasterxml.jackson</groupId><artifactId>jackson-bom</artifactId><version>2.21.2</version><type>pom</type><scope>import</scope></dependency></dependencies></dependencyManagement>
<dependencies>
<dependency><groupId>io.debezium</groupId><artifactId>debezium-connector-postgres</artifactId><version>3.6.1.Final</version></dependency>
<dependency><groupId>org.apache.kafka</groupId><artifactId>connect-runtime</artifactId><version>4.1.1</version></dependency>
<dependency><groupId>org.slf4j</groupId><artifactId>slf4j-simple</artifactId><version>1.7.36</version></dependency>
</dependencies></project>`;

function debeziumClasspath(): string {
  const cpFile = join(WORK, 'cp.txt');
  if (!existsSync(cpFile)) {
    mkdirSync(WORK, { recursive: true });
    writeFileSync(join(WORK, 'pom.xml'), DEBEZIUM_POM);
    execFileSync(
      'mvn',
      ['-q', '-B', 'dependency:build-classpath', '-Dmdep.outputFile=cp.txt', '-Dmdep.includeScope=runtime'],
      { cwd: WORK, stdio: 'inherit' },
    );
  }
  return readFileSync(cpFile, 'utf8').trim();
}

interface Connect {
  proc: ChildProcess;
  log: string;
  /** Pauses or resumes the connector (Connect's REST API); resolves once its state says so. */
  setState(state: 'pause' | 'resume'): Promise<void>;
  stop(): Promise<void>;
}

/** Kafka Connect standalone with the Debezium PostgreSQL connector and the outbox event router. */
async function startConnect(
  s: BenchStack,
  db: { host: string; port: number; user: string; database: string },
  table: string,
  run: string,
): Promise<Connect> {
  const dir = join(WORK, run);
  mkdirSync(dir, { recursive: true });
  const restPort = await freePort();
  const worker = {
    'bootstrap.servers': s.brokers.join(','),
    'key.converter': 'org.apache.kafka.connect.storage.StringConverter',
    'value.converter': 'org.apache.kafka.connect.converters.ByteArrayConverter',
    'offset.storage.file.filename': join(dir, 'offsets.dat'),
    'offset.flush.interval.ms': '1000',
    listeners: `http://127.0.0.1:${restPort}`,
    'plugin.discovery': 'only_scan',
  };
  const connector = {
    name: `strand-bench-${run}`,
    'connector.class': 'io.debezium.connector.postgresql.PostgresConnector',
    'tasks.max': '1',
    'database.hostname': db.host,
    'database.port': String(db.port),
    'database.user': db.user,
    'database.dbname': db.database,
    'topic.prefix': `dbz${run}`,
    'plugin.name': 'pgoutput',
    'slot.name': `strand_bench_${run}`,
    'publication.name': `strand_bench_${run}`,
    'publication.autocreate.mode': 'filtered',
    'table.include.list': `public.${table}`,
    'snapshot.mode': 'no_data',
    'binary.handling.mode': 'bytes',
    'tombstones.on.delete': 'false',
    'poll.interval.ms': String(DBZ_POLL_MS),
    transforms: 'outbox',
    'transforms.outbox.type': 'io.debezium.transforms.outbox.EventRouter',
    'transforms.outbox.table.field.event.id': 'job_id',
    'transforms.outbox.table.field.event.key': 'key',
    'transforms.outbox.table.field.event.payload': 'body',
    'transforms.outbox.route.by.field': 'topic',
    // biome-ignore lint/suspicious/noTemplateCurlyInString: Debezium's placeholder, not JavaScript's
    'transforms.outbox.route.topic.replacement': '${routedByValue}',
    'transforms.outbox.table.fields.additional.placement':
      'job_id:header:strand-job-id,id:header:strand-outbox-id',
  };
  const props = (o: Record<string, string>) =>
    Object.entries(o)
      .map(([k, v]) => `${k}=${v}`)
      .join('\n');
  writeFileSync(join(dir, 'worker.properties'), props(worker));
  writeFileSync(join(dir, 'connector.properties'), props(connector));
  const log = join(dir, 'connect.log');
  const proc = spawn(
    'java',
    [
      '-Xmx768m',
      '-cp',
      debeziumClasspath(),
      'org.apache.kafka.connect.cli.ConnectStandalone',
      join(dir, 'worker.properties'),
      join(dir, 'connector.properties'),
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const chunks: string[] = [];
  proc.stdout!.on('data', (d: Buffer) => chunks.push(d.toString()));
  proc.stderr!.on('data', (d: Buffer) => chunks.push(d.toString()));
  const flush = () => writeFileSync(log, chunks.join(''));
  // Ready: the task's streaming has started (the slot exists and is read).
  const deadline = Date.now() + 180_000;
  for (;;) {
    const text = chunks.join('');
    if (/Starting streaming|Processing messages|Searching for WAL resume position/.test(text)) break;
    if (proc.exitCode !== null || Date.now() > deadline) {
      flush();
      throw new Error(`Kafka Connect did not start streaming (exit ${proc.exitCode}); see ${log}`);
    }
    await sleep(250);
  }
  const rest = `http://127.0.0.1:${restPort}/connectors/${connector.name}`;
  return {
    proc,
    log,
    async setState(state) {
      const res = await fetch(`${rest}/${state}`, { method: 'PUT' });
      if (!res.ok) throw new Error(`Connect ${state}: HTTP ${res.status} ${await res.text()}`);
      const want = state === 'pause' ? 'PAUSED' : 'RUNNING';
      for (let i = 0; i < 200; i++) {
        const st = (await (await fetch(`${rest}/status`)).json()) as {
          connector: { state: string };
          tasks: { state: string }[];
        };
        if (st.connector.state === want && st.tasks.every((t) => t.state === want)) return;
        await sleep(100);
      }
      throw new Error(`Connect did not reach ${want}`);
    },
    async stop() {
      proc.kill('SIGTERM');
      const done = new Promise((r) => proc.once('exit', r));
      await Promise.race([done, sleep(20_000)]);
      if (proc.exitCode === null) proc.kill('SIGKILL');
      flush();
    },
  };
}

/** Notes when each job id is first consumed, and each key's outbox ids in log order. */
async function watch(s: BenchStack, topic: string) {
  const kafka = createKafka({ brokers: s.brokers, clientId: 'bench-dbz-watch' });
  const consumer = kafka.consumer({ groupId: `bench-dbz-${topic}`, maxWaitTimeInMs: 5 });
  const seenAt = new Map<string, number>();
  const idsByKey = new Map<string, number[]>();
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    eachBatch: async ({ batch }) => {
      const now = Date.now();
      for (const m of batch.messages) {
        const id = m.headers?.['strand-job-id']?.toString();
        const outboxId = Number(m.headers?.['strand-outbox-id']?.toString());
        const key = m.key?.toString() ?? '';
        if (!id || seenAt.has(id)) continue;
        seenAt.set(id, now);
        const list = idsByKey.get(key) ?? [];
        list.push(outboxId);
        idsByKey.set(key, list);
      }
    },
  });
  return { seenAt, idsByKey, stop: () => consumer.disconnect() };
}

const percentile = (sorted: number[], p: number) =>
  sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]! : Number.NaN;

/** `rate` tx/s (one job each, 300 keys, ≤ 64 open) for `seconds` into `table`, topic `topic`. */
async function load(pool: pg.Pool, table: string, topic: string, rate: number, seconds = SECONDS) {
  const outbox = new Outbox<Payment>({ topic, schema: paymentSchema, table });
  return paceTransactions(pool, outbox, rate, seconds, (i) => `${topic}-${i}`);
}

async function cell(
  s: BenchStack,
  pool: pg.Pool,
  side: 'strand' | 'debezium',
  table: string,
  rate: number,
  seconds = SECONDS,
) {
  const topic = await benchTopic(s, `outbox-${side}`, 6);
  const seen = await watch(s, topic);
  const w = await load(pool, table, topic, rate, seconds);
  const deadline = Date.now() + 90_000;
  while (Date.now() < deadline && [...w.committedAt.keys()].some((id) => !seen.seenAt.has(id)))
    await sleep(100);
  await seen.stop();
  const lat = [...w.committedAt]
    .map(([id, at]) => (seen.seenAt.get(id) ?? Number.NaN) - at)
    .filter(Number.isFinite);
  lat.sort((a, b) => a - b);
  let outOfOrderKeys = 0;
  for (const ids of seen.idsByKey.values())
    if (ids.some((v, i) => i > 0 && v <= ids[i - 1]!)) outOfOrderKeys++;
  const lastSeen = Math.max(...seen.seenAt.values());
  return {
    side,
    targetTxPerSecond: rate,
    achievedTxPerSecond: round(w.committedAt.size / w.writeSeconds),
    publishedRowsPerSecond: round(seen.seenAt.size / ((lastSeen - w.t0) / 1000)),
    committed: w.committedAt.size,
    published: seen.seenAt.size,
    missing: [...w.committedAt.keys()].filter((id) => !seen.seenAt.has(id)).length,
    writerSkippedAt64Open: w.skipped,
    keys: seen.idsByKey.size,
    keysOutOfCommitOrder: outOfOrderKeys,
    commitToConsumedMs: {
      p50: percentile(lat, 50),
      p99: percentile(lat, 99),
      max: lat[lat.length - 1] ?? null,
    },
  };
}

/**
 * A backlog of `rows` (500 per transaction) written while the publisher is off (Strand: no relay
 * running; Debezium: the connector paused, its slot retaining the WAL), then the publisher turned
 * on: rows/s until the last one is consumed, and per-key order.
 */
async function drain(
  s: BenchStack,
  pool: pg.Pool,
  side: 'strand' | 'debezium',
  table: string,
  rows: number,
  on: () => Promise<void>,
  off: () => Promise<void>,
) {
  const topic = await benchTopic(s, `outbox-drain-${side}`, 6);
  const seen = await watch(s, topic);
  await off();
  const outbox = new Outbox<Payment>({ topic, schema: paymentSchema, table });
  for (let i = 0; i < rows; i += 500) {
    const c = await pool.connect();
    await c.query('BEGIN');
    await outbox.enqueueMany(
      c,
      Array.from({ length: Math.min(500, rows - i) }, (_, j) => ({
        key: `acct-${(i + j) % 300}`,
        data: payment(i + j, 300),
        jobId: `${topic}-${i + j}`,
      })),
    );
    await c.query('COMMIT');
    c.release();
  }
  const t0 = Date.now();
  await on();
  const deadline = Date.now() + 180_000;
  while (seen.seenAt.size < rows && Date.now() < deadline) await sleep(50);
  const seconds = (Math.max(...seen.seenAt.values()) - t0) / 1000;
  await seen.stop();
  let outOfOrderKeys = 0;
  for (const ids of seen.idsByKey.values())
    if (ids.some((v, i) => i > 0 && v <= ids[i - 1]!)) outOfOrderKeys++;
  return {
    side,
    rows,
    published: seen.seenAt.size,
    rowsPerSecond: round(seen.seenAt.size / seconds),
    keysOutOfCommitOrder: outOfOrderKeys,
  };
}

const s = await benchStack();
const server = await usePostgres({ fresh: true, walLevel: 'logical' });
if ('missing' in server) throw new Error(`no PostgreSQL: ${server.missing}`);
const run = Date.now().toString(36);
const pool = new pg.Pool({ connectionString: server.url, max: 16 });
const strandTable = `bench_strand_${run}`;
const dbzTable = `bench_dbz_${run}`;
await migrateOutbox(pool, strandTable);
await migrateOutbox(pool, dbzTable);
let connect: Connect | undefined;
let relay: OutboxRelay | undefined;
const cells: (Awaited<ReturnType<typeof cell>> & { round: number; cpuSeconds: object })[] = [];
try {
  const connectStarted = Date.now();
  connect = await startConnect(s, server, dbzTable, run);
  connectPid = connect.proc.pid;
  const connectStartSeconds = (Date.now() - connectStarted) / 1000;
  const newRelay = async () => {
    relay = new OutboxRelay({
      databaseUrl: server.url,
      brokers: s.brokers,
      registry: { url: s.registryUrl },
      table: strandTable,
      logger: quiet,
    });
    await relay.start();
  };
  await newRelay();
  // Not recorded: the JVM's JIT and both sides' first registry lookups and metadata happen here.
  if (WARMUP_SECONDS > 0)
    for (const side of ['strand', 'debezium'] as const)
      console.error(
        `warm-up ${JSON.stringify(await cell(s, pool, side, side === 'strand' ? strandTable : dbzTable, 200, WARMUP_SECONDS))}`,
      );
  for (let r = 0; r < ROUNDS; r++)
    for (const rate of RATES)
      for (const side of r % 2 ? (['debezium', 'strand'] as const) : (['strand', 'debezium'] as const)) {
        const c = await withCpu(() => cell(s, pool, side, side === 'strand' ? strandTable : dbzTable, rate));
        console.error(JSON.stringify(c));
        cells.push({ round: r + 1, ...c });
      }
  const drains: (Awaited<ReturnType<typeof drain>> & { cpuSeconds: object })[] = [];
  for (let r = 0; r < ROUNDS; r++)
    for (const side of r % 2 ? (['debezium', 'strand'] as const) : (['strand', 'debezium'] as const)) {
      const d = await withCpu(() =>
        side === 'strand'
          ? drain(s, pool, side, strandTable, DRAIN_ROWS, newRelay, async () => {
              await relay?.stop();
              relay = undefined;
            })
          : drain(
              s,
              pool,
              side,
              dbzTable,
              DRAIN_ROWS,
              () => connect!.setState('resume'),
              () => connect!.setState('pause'),
            ),
      );
      console.error(JSON.stringify(d));
      drains.push(d);
    }
  const slot = await pool.query(
    `SELECT slot_name, pg_size_pretty(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)) AS retained FROM pg_replication_slots`,
  );
  const ratios = RATES.map((rate) => {
    const pick = (side: string) => cells.filter((c) => c.side === side && c.targetTxPerSecond === rate);
    const med = (xs: number[]) => {
      const v = [...xs].sort((a, b) => a - b);
      const m = Math.floor(v.length / 2);
      return v.length % 2 ? v[m]! : (v[m - 1]! + v[m]!) / 2;
    };
    const [st, db] = [pick('strand'), pick('debezium')];
    return {
      targetTxPerSecond: rate,
      throughputStrandOverDebezium: round(
        med(st.map((c) => c.publishedRowsPerSecond)) / med(db.map((c) => c.publishedRowsPerSecond)),
        2,
      ),
      p50StrandOverDebezium: round(
        med(st.map((c) => c.commitToConsumedMs.p50)) / med(db.map((c) => c.commitToConsumedMs.p50)),
        2,
      ),
      p99StrandOverDebezium: round(
        med(st.map((c) => c.commitToConsumedMs.p99)) / med(db.map((c) => c.commitToConsumedMs.p99)),
        2,
      ),
    };
  });
  const medOf = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const drainRatio = round(
    medOf(drains.filter((d) => d.side === 'strand').map((d) => d.rowsPerSecond)) /
      medOf(drains.filter((d) => d.side === 'debezium').map((d) => d.rowsPerSecond)),
    2,
  );
  console.log(`drain rows/s strand / debezium: ${drainRatio}`);
  const result = {
    machine: machine(),
    scenario: 'outbox-debezium',
    debezium: {
      version: 'debezium-connector-postgres 3.6.1.Final, connect-runtime 4.1.1 (Connect standalone, 1 task)',
      pollIntervalMs: DBZ_POLL_MS,
      connectStartSeconds: round(connectStartSeconds, 1),
      connectRssMiB: rssMiB(connectPid),
      benchProcessRssMiB: round(process.memoryUsage().rss / 2 ** 20),
      slotsAfterRun: slot.rows,
    },
    postgres: 'a throwaway PostgreSQL 15 (initdb, wal_level=logical, fsync off) on the same 2 cores',
    secondsPerCell: SECONDS,
    warmupSecondsPerSide: WARMUP_SECONDS,
    cells,
    drain: drains,
    ratios: { sustained: ratios, drainRowsPerSecondStrandOverDebezium: drainRatio },
  };
  const out = join(
    ROOT,
    'bench',
    'results',
    `outbox-debezium${DBZ_POLL_MS === 500 ? '' : `-poll${DBZ_POLL_MS}`}.json`,
  );
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  console.log(JSON.stringify(ratios, null, 2));
} finally {
  await relay?.stop();
  await connect?.stop();
  await pool
    .query(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE NOT active`)
    .catch(() => undefined);
  await pool.end();
  await server.stop();
}
