import type { Command } from 'commander';
import { parseDuration } from '../config/index.js';
import { createKafka, type KafkaConnection } from '../kafka/client.js';
import {
  computeLag,
  DesiredReplicas,
  dlqDepth,
  type LagOptions,
  type PartitionLag,
  tierDelaysOf,
  totalLag,
} from '../lag/lag.js';
import { startMetricsServer } from '../observability/http.js';
import { QueueMetrics } from '../observability/metrics.js';
import type { OutboxBacklog } from '../outbox/pg.js';
import { OutboxReader } from '../outbox/reader.js';
import { DEFAULT_OUTBOX_TABLE } from '../outbox/table.js';
import { every, setAnyTimeout, systemClock } from '../timing/clock.js';
import { findDelayBuckets } from '../topology/delays.js';
import { topicNames } from '../topology/topics.js';
import { action, CliError, colour, EXIT, parseIntOption } from './common.js';
import { type ConnectionFlags, resolveConnection, withConnectionFlags } from './connection.js';

/** `--retry-tiers 1s,10s,60s`: the tier delays in ms ("" or absent: no tiers). */
function parseTiers(value: string | undefined): number[] {
  return (value ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((d, i) => parseDuration(d, `--retry-tiers[${i}]`));
}

/** The job topics plus their retry tiers, and the tiers' delays for `computeLag`. */
function withTiers(jobTopics: string[], delays: number[]): { topics: string[]; opts: LagOptions } {
  const topics: string[] = [];
  const tierDelays: Record<string, number> = {};
  for (const t of jobTopics) {
    const { tiers } = topicNames(t, delays.length);
    topics.push(t, ...tiers);
    Object.assign(tierDelays, tierDelaysOf(tiers, delays));
  }
  return { topics, opts: { tierDelays } };
}

async function topicsOf(
  conn: KafkaConnection,
  groupId: string,
  topic: string | undefined,
): Promise<string[]> {
  if (topic) return [topic];
  const admin = createKafka(conn).admin();
  await admin.connect();
  try {
    const res = await admin.fetchOffsets({ groupId });
    const topics = res
      .map((r) => r.topic)
      .filter((t) => !/\.(dlq|retry\.\d+|delay\.\d+(ms|s|m|h|d))$/.test(t));
    if (topics.length === 0) {
      throw new CliError(
        `group ${groupId} has no committed offsets; name the topic with --topic`,
        EXIT.usage,
      );
    }
    return topics;
  } finally {
    await admin.disconnect();
  }
}

async function readLag(
  conn: KafkaConnection,
  groupId: string,
  topics: string[],
  opts: LagOptions,
): Promise<PartitionLag[]> {
  const admin = createKafka(conn).admin();
  await admin.connect();
  try {
    const existing = new Set(await admin.listTopics());
    const missing = topics.filter((t) => !existing.has(t));
    if (missing.length) throw new CliError(`topic ${missing.join(', ')} does not exist`, EXIT.failure);
    // Delayed jobs wait in the job topics' delay buckets: shown, never due, not lag.
    const delayTopics = new Set(topics.flatMap((t) => findDelayBuckets(t, existing).map((b) => b.topic)));
    return await computeLag(admin, groupId, [...topics, ...delayTopics], { ...opts, delayTopics });
  } finally {
    await admin.disconnect();
  }
}

/** What waits in the outbox table for `topics` (jobs committed in PostgreSQL, not yet in Kafka). */
async function readOutbox(url: string, table: string, topics: string[]): Promise<OutboxBacklog[]> {
  return new OutboxReader(url, table).backlog(topics).catch((error: unknown) => {
    throw new CliError((error as Error).message);
  });
}

function renderOutbox(table: string, backlog: OutboxBacklog[]): string {
  return backlog
    .map(
      (b) =>
        `outbox ${table} → ${b.topic}: ${b.pending} job(s) committed, not yet in Kafka` +
        (b.pending ? `, oldest ${b.oldestAgeSeconds.toFixed(1)}s` : ''),
    )
    .join('\n');
}

const DELAY_TOPIC = /\.delay\.\d+(ms|s|m|h|d)$/;
const ANSI = new RegExp(`${String.fromCharCode(27)}\\[\\d+m`, 'g');

function render(lag: PartitionLag[], previous: Map<string, number>, seconds: number): string {
  const rows = lag.map((l) => {
    const key = `${l.topic}:${l.partition}`;
    const before = previous.get(key);
    let trend = '';
    if (before !== undefined && seconds > 0) {
      const rate = (l.lag - before) / seconds;
      trend =
        rate > 0
          ? colour.red(`↑ ${rate.toFixed(1)}/s`)
          : rate < 0
            ? colour.green(`↓ ${(-rate).toFixed(1)}/s`)
            : '=';
    }
    return [
      l.topic,
      String(l.partition),
      String(l.end),
      l.committed === null ? '-' : String(l.committed),
      String(l.doneAbove),
      String(l.lag),
      String(l.due),
      trend,
    ];
  });
  const head = ['TOPIC', 'PARTITION', 'END', 'COMMITTED', 'DONE', 'LAG', 'DUE', 'TREND'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.replace(ANSI, '').length)));
  const lines = [head, ...rows].map((r) =>
    r
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd(),
  );
  const delayed = lag.filter((l) => DELAY_TOPIC.test(l.topic));
  const jobs = lag.filter((l) => !DELAY_TOPIC.test(l.topic));
  lines.push(
    `total lag ${totalLag(jobs)}, due ${totalLag(jobs, 'due')}` +
      (delayed.length ? `; delayed jobs not yet due ${totalLag(delayed)} (not lag)` : ''),
  );
  return lines.join('\n');
}

export function registerLag(program: Command): void {
  const lag = program
    .command('lag')
    .description(
      'consumer lag per partition (end offset − committed − done above it), without a running worker',
    )
    .requiredOption('--group <id>', 'consumer group')
    .option('--topic <topic>', 'job topic (default: every topic the group committed on)')
    .option(
      '--retry-tiers <delays>',
      'also the retry tiers <topic>.retry.N with these delays, e.g. 1s,10s,60s',
    )
    .option('--json', 'machine-readable output')
    .option(
      '--database-url <url>',
      'also the transactional outbox in this PostgreSQL (env STRAND_DATABASE_URL): jobs committed, not yet in Kafka',
    )
    .option('--outbox-table <name>', 'the outbox table', DEFAULT_OUTBOX_TABLE)
    .option('--watch', 'refresh every --interval')
    .option('--interval <ms>', 'refresh period for --watch', parseIntOption('--interval', 100), 2000);
  withConnectionFlags(lag, { registry: false }).addHelpText(
    'after',
    `
LAG = END − COMMITTED − DONE: DONE counts the jobs a worker finished out of order above the
committed offset (the offset map in the commit), so one slow job with thousands finished behind it
is a lag of 1. A partition without a committed offset counts every retained record (end − log
start). DUE is the part that can run now: on a retry tier, the records appended at least the
tier's delay ago.

Examples:
  strand lag --group payments-workers
  strand lag --group payments-workers --topic payments --retry-tiers 1s,10s,60s --json
  strand lag --group payments-workers --watch
  strand lag --group payments-workers --topic payments --database-url postgres://app@db/shop`,
  );
  lag.action(
    action(
      async (
        flags: ConnectionFlags & {
          group: string;
          topic?: string;
          retryTiers?: string;
          json?: boolean;
          watch?: boolean;
          interval: number;
          databaseUrl?: string;
          outboxTable: string;
        },
      ) => {
        const delays = parseTiers(flags.retryTiers);
        const databaseUrl = flags.databaseUrl ?? process.env.STRAND_DATABASE_URL;
        const { kafka } = resolveConnection(flags);
        const { topics, opts } = withTiers(await topicsOf(kafka, flags.group, flags.topic), delays);
        const previous = new Map<string, number>();
        let last = Date.now();
        for (;;) {
          const rows = await readLag(kafka, flags.group, topics, opts);
          const jobTopics = topics.filter((t) => !/\.retry\.\d+$/.test(t));
          const outbox = databaseUrl
            ? await readOutbox(databaseUrl, flags.outboxTable, jobTopics)
            : undefined;
          const now = Date.now();
          if (flags.json) process.stdout.write(`${JSON.stringify(outbox ? { lag: rows, outbox } : rows)}\n`);
          else {
            if (flags.watch && process.stdout.isTTY) process.stdout.write('\u001b[2J\u001b[H');
            process.stdout.write(`${render(rows, previous, (now - last) / 1000)}\n`);
            if (outbox) process.stdout.write(`${renderOutbox(flags.outboxTable, outbox)}\n`);
          }
          if (!flags.watch) return;
          for (const r of rows) previous.set(`${r.topic}:${r.partition}`, r.lag);
          last = now;
          // A plain timer would fire at once past ~24.8 days (--interval has no upper bound).
          await new Promise<void>((r) => setAnyTimeout(r, flags.interval));
        }
      },
    ),
  );

  const exporter = program
    .command('exporter')
    .description(
      'standalone Prometheus exporter of lag, DLQ depth and desired replicas (workers may be down)',
    )
    .requiredOption('--group <id>', 'consumer group')
    .option('--topic <topic>', 'job topic (default: every topic the group committed on)')
    .option(
      '--retry-tiers <delays>',
      'also the retry tiers <topic>.retry.N with these delays (as the workers have them), e.g. 1s,10s,60s',
    )
    .option('--port <port>', 'HTTP port', parseIntOption('--port', 0), 9464)
    .option('--host <host>', 'bind address', '0.0.0.0')
    .option('--interval <ms>', 'refresh period', parseIntOption('--interval', 100), 5000)
    .option(
      '--target-lag-per-replica <n>',
      'due lag one replica should handle',
      parseIntOption('--target-lag-per-replica', 1),
      500,
    )
    .option(
      '--min-replicas <n>',
      'lower bound of queue_desired_replicas',
      parseIntOption('--min-replicas', 0),
      1,
    )
    .option(
      '--max-replicas <n>',
      'upper bound of queue_desired_replicas',
      parseIntOption('--max-replicas', 1),
      50,
    );
  withConnectionFlags(exporter, { registry: false }).addHelpText(
    'after',
    `
Exposes queue_depth_pending, queue_dlq_depth and queue_desired_replicas on /metrics, with the
same names and labels as a worker, so an HPA or KEDA keeps a signal when workers are scaled to zero.
queue_depth_pending counts every pending record (jobs finished out of order above the committed
offset are not pending); queue_desired_replicas only those that can run now (retry-tier records
once their tier's delay has passed).

Examples:
  strand exporter --group payments-workers --topic payments --retry-tiers 1s,10s,60s --port 9464`,
  );
  exporter.action(
    action(
      async (
        flags: ConnectionFlags & {
          group: string;
          topic?: string;
          retryTiers?: string;
          port: number;
          host: string;
          interval: number;
          targetLagPerReplica: number;
          minReplicas: number;
          maxReplicas: number;
        },
      ) => {
        const delays = parseTiers(flags.retryTiers);
        const { kafka } = resolveConnection(flags);
        const jobTopics = await topicsOf(kafka, flags.group, flags.topic);
        const { topics, opts } = withTiers(jobTopics, delays);
        const metrics = new QueueMetrics();
        const desired = new DesiredReplicas({
          targetLagPerReplica: flags.targetLagPerReplica,
          minReplicas: flags.minReplicas,
          maxReplicas: flags.maxReplicas,
          scaleDownWindowMs: 300_000,
        });
        const admin = createKafka(kafka).admin();
        await admin.connect();
        const existing = await admin.listTopics();
        const delaysOf = new Map(
          jobTopics.map((t) => [t, findDelayBuckets(t, existing).map((b) => b.topic)]),
        );
        const delayTopics = new Set([...delaysOf.values()].flat());
        let healthy = false;
        const refresh = async () => {
          try {
            const lag = await computeLag(admin, flags.group, [...topics, ...delayTopics], {
              ...opts,
              delayTopics,
            });
            metrics.depthPending.reset();
            for (const l of lag) {
              if (delayTopics.has(l.topic)) continue;
              metrics.depthPending.set(
                { topic: l.topic, partition: String(l.partition), group: flags.group },
                l.lag,
              );
            }
            for (const [t, buckets] of delaysOf)
              if (buckets.length)
                metrics.delayedJobs.set(
                  { topic: t, group: flags.group },
                  totalLag(lag.filter((l) => buckets.includes(l.topic))),
                );
            metrics.desiredReplicas.set({ group: flags.group }, desired.update(totalLag(lag, 'due')));
            for (const t of jobTopics) {
              metrics.dlqDepth.set(
                { topic: t },
                await dlqDepth(admin, t, topicNames(t, 0).dlq).catch(() => 0),
              );
            }
            healthy = true;
          } catch (error) {
            healthy = false;
            process.stderr.write(`strand exporter: refresh failed: ${(error as Error).message}\n`);
          }
        };
        await refresh();
        const server = await startMetricsServer({
          port: flags.port,
          host: flags.host,
          registry: metrics.registry,
          ready: () => healthy,
          option: '--port',
        }).catch(async (error: unknown) => {
          // An open admin client would keep the process running after the error.
          await admin.disconnect().catch(() => undefined);
          throw error;
        });
        const address = server.address();
        process.stdout.write(
          `exporting lag of group ${flags.group} on http://${flags.host}:${typeof address === 'object' && address ? address.port : flags.port}/metrics\n`,
        );
        const stopRefresh = every(systemClock, flags.interval, () => void refresh());
        const stop = () => {
          stopRefresh();
          server.close();
          void admin.disconnect().finally(() => process.exit(EXIT.ok));
        };
        process.on('SIGTERM', stop);
        process.on('SIGINT', stop);
        await new Promise(() => undefined);
      },
    ),
  );
}
