import type { Command } from 'commander';
import { ConfigError, parseDuration } from '../config/index.js';
import { createJobTopics } from '../kafka/topics.js';
import { DEFAULT_DELAY_BUCKETS_MS, delayLabel } from '../topology/delays.js';
import { action, parseIntOption } from './common.js';
import { type ConnectionFlags, resolveConnection, withConnectionFlags } from './connection.js';

export function registerTopics(program: Command): void {
  const topics = program
    .command('topics')
    .description('provision job topics')
    .addHelpText(
      'after',
      `
Examples:
  strand topics create payments                     # payments, payments.retry.1-3, payments.dlq
  strand topics create payments --partitions 12 --retry-tiers 1s,10s,60s
  strand topics create orders --replication 3 --min-insync-replicas 2 --retry-tiers ""`,
    );
  const create = topics
    .command('create')
    .description(
      'create a job topic, its retry tiers, its dead-letter topic and (--delays) its delay buckets (idempotent)',
    )
    .argument('<topic>', 'job topic')
    .option('--partitions <n>', 'partitions of each topic', parseIntOption('--partitions', 1), 6)
    .option(
      '--replication <r>',
      'replication factor (default: the broker default)',
      parseIntOption('--replication', 1),
    )
    .option('--retry-tiers <delays>', 'comma-separated tier delays ("" for none)', '1s,10s,60s')
    .option('--dlq <topic>', 'dead-letter topic name (default <topic>.dlq)')
    .option('--delays', 'also the delay buckets <topic>.delay.<length> for delayed jobs (enqueue --delay)')
    .option(
      '--delay-buckets <lengths>',
      `delay bucket lengths (implies --delays; default ${DEFAULT_DELAY_BUCKETS_MS.map(delayLabel).join(',')})`,
    )
    .option(
      '--min-insync-replicas <n>',
      'min.insync.replicas of each topic',
      parseIntOption('--min-insync-replicas', 1),
    )
    .option('--json', 'machine-readable output');
  withConnectionFlags(create, { registry: false }).addHelpText(
    'after',
    `
Examples:
  strand topics create payments --partitions 12 --retry-tiers 1s,10s,60s
  strand topics create orders --partitions 6 --replication 3 --min-insync-replicas 2 --retry-tiers ""
  strand topics create payments --delays          # adds delay buckets to an existing topic too
  strand topics create reminders --delay-buckets 1s,10s,1m,10m,1h,1d`,
  );
  create.action(
    action(
      async (
        topic: string,
        flags: ConnectionFlags & {
          partitions: number;
          replication?: number;
          retryTiers: string;
          dlq?: string;
          delays?: boolean;
          delayBuckets?: string;
          minInsyncReplicas?: number;
          json?: boolean;
        },
      ) => {
        const tierDelays = flags.retryTiers
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean)
          .map((d, i) => parseDuration(d, `--retry-tiers[${i}]`));
        const delayBucketsMs =
          flags.delayBuckets !== undefined
            ? flags.delayBuckets
                .split(',')
                .map((s) => s.trim())
                .filter(Boolean)
                .map((d, i) => {
                  const ms = parseDuration(d, `--delay-buckets[${i}]`);
                  if (ms < 1000 || ms % 1000 !== 0)
                    throw new ConfigError(
                      `--delay-buckets[${i}]`,
                      `expected whole seconds of at least 1s, got "${d}"`,
                    );
                  return ms;
                })
            : flags.delays
              ? [...DEFAULT_DELAY_BUCKETS_MS]
              : undefined;
        const { kafka } = resolveConnection(flags);
        const outcome = await createJobTopics(kafka, {
          topic,
          partitions: flags.partitions,
          tierDelays,
          ...(delayBucketsMs ? { delayBucketsMs } : {}),
          ...(flags.replication ? { replication: flags.replication } : {}),
          ...(flags.dlq ? { dlqTopic: flags.dlq } : {}),
          ...(flags.minInsyncReplicas
            ? { configs: { 'min.insync.replicas': String(flags.minInsyncReplicas) } }
            : {}),
        });
        if (flags.json) {
          process.stdout.write(`${JSON.stringify(outcome)}\n`);
          return;
        }
        for (const o of outcome) {
          const note =
            o.existingPartitions !== undefined
              ? ` (exists with ${o.existingPartitions} partitions, left unchanged)`
              : '';
          process.stdout.write(
            `${o.status === 'created' ? 'created' : 'exists '}  ${o.role.padEnd(6)}  ${o.topic}  ${o.partitions} partitions${note}\n`,
          );
        }
        const created = outcome.filter((o) => o.status === 'created').length;
        process.stdout.write(
          created === 0 ? 'nothing to do: every topic already exists\n' : `${created} topic(s) created\n`,
        );
      },
    ),
  );
}
