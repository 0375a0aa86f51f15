import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import { parseDuration } from '../config/index.js';
import { isStrandError } from '../errors.js';
import { type DeadJob, type ListedDeadJob, listDeadJobs, replayDeadJobs } from '../failure/dlq.js';
import { action, CliError, EXIT, parseIntOption } from './common.js';
import { type ConnectionFlags, resolveConnection, withConnectionFlags } from './connection.js';

function parseSince(value: string): number {
  const asDate = Date.parse(value);
  if (!Number.isNaN(asDate) && /\d{4}-\d{2}-\d{2}/.test(value)) return asDate;
  try {
    return Date.now() - parseDuration(value, '--since');
  } catch {
    throw new CliError(
      `--since: expected an ISO time (2026-11-28T10:00:00Z) or a duration ago (30m, 2h), got "${value}"`,
      EXIT.usage,
    );
  }
}

function table(jobs: (DeadJob | ListedDeadJob)[]): string {
  const listed = jobs.some((j) => 'replayed' in j);
  const rows = jobs.map((j) => [
    `${j.partition}/${j.offset}`,
    j.key ?? '(null)',
    j.jobId ?? '-',
    j.errorClass ?? '-',
    j.reason ?? '-',
    j.cause ?? '-',
    (j.errorMessage ?? '').replace(/\s+/g, ' ').slice(0, 60),
    String(j.attempts ?? '-'),
    j.failedAt ? new Date(j.failedAt).toISOString() : '-',
    ...(listed ? [(j as ListedDeadJob).replayed ? 'yes' : '-'] : []),
  ]);
  const head = [
    'PART/OFFSET',
    'KEY',
    'JOB ID',
    'ERROR',
    'REASON',
    'AFTER',
    'MESSAGE',
    'ATTEMPTS',
    'FAILED AT',
    ...(listed ? ['REPLAYED'] : []),
  ];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [head, ...rows]
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

export function registerDlq(program: Command): void {
  const dlq = program
    .command('dlq')
    .description('inspect and replay dead-lettered jobs')
    .addHelpText(
      'after',
      `
Examples:
  strand dlq list payments                          # what failed, why, and whether it was replayed
  strand dlq replay payments --dry-run              # what would be sent
  strand dlq replay payments --error TimeoutError --since 2h --rate 100`,
    );
  const list = dlq
    .command('list')
    .description('list the dead-letter topic of a job topic')
    .argument('<topic>', 'job topic (its DLQ is <topic>.dlq)')
    .option('--limit <n>', 'show the newest N', parseIntOption('--limit', 1), 50)
    .option('--dlq <topic>', 'dead-letter topic name')
    .option('--json', 'one JSON array');
  withConnectionFlags(list, { registry: false }).addHelpText(
    'after',
    '\nExamples:\n  strand dlq list payments\n  strand dlq list payments --limit 500 --json',
  );
  list.action(
    action(
      async (topic: string, flags: ConnectionFlags & { limit: number; dlq?: string; json?: boolean }) => {
        const { kafka } = resolveConnection(flags);
        const jobs = await listDeadJobs(kafka, topic, {
          limit: flags.limit,
          ...(flags.dlq ? { dlqTopic: flags.dlq } : {}),
        });
        if (flags.json) process.stdout.write(`${JSON.stringify(jobs)}\n`);
        else if (jobs.length === 0) process.stdout.write('the dead-letter topic is empty\n');
        else {
          const replayed = jobs.filter((j) => j.replayed).length;
          process.stdout.write(
            `${table(jobs)}\n${jobs.length} dead job(s)${replayed ? `, ${replayed} of them replayed already` : ''}\n`,
          );
        }
      },
    ),
  );

  const replay = dlq
    .command('replay')
    .description('send matching dead jobs back to the job topic (exactly once per replay filter)')
    .argument('<topic>', 'job topic')
    .option('--error <class>', 'only jobs whose last error class is CLASS')
    .option('--key <key>', 'only jobs with this ordering key')
    .option('--since <time>', 'only jobs that failed since TIME (ISO time, or a duration ago like 2h)')
    .option('--limit <n>', 'replay at most N jobs', parseIntOption('--limit', 1))
    .option('--rate <r>', 'at most R jobs per second', parseIntOption('--rate', 1))
    .option('--dlq <topic>', 'dead-letter topic name')
    .option('--dry-run', 'list what this replay would send now, and send nothing')
    .option('--json', 'print the result as JSON');
  withConnectionFlags(replay, { registry: false }).addHelpText(
    'after',
    `
Each filter keeps its own position (consumer group strand-dlq-replay.<topic>.<hash>), committed in
the same Kafka transaction as the re-published jobs: an interrupted replay resumes without sending
anything twice, and running it again sends only jobs dead-lettered since. The commit also records
the DLQ offsets the filter sent, so queue_dlq_depth counts only the records no replay has sent
(after --key a replays 5 of 10, the depth is 5).

Examples:
  strand dlq replay payments --dry-run
  strand dlq replay payments --error TimeoutError --since 2h --rate 100`,
  );
  replay.action(
    action(
      async (
        topic: string,
        flags: ConnectionFlags & {
          error?: string;
          key?: string;
          since?: string;
          limit?: number;
          rate?: number;
          dlq?: string;
          dryRun?: boolean;
          json?: boolean;
        },
      ) => {
        const { kafka } = resolveConnection(flags);
        const bar =
          process.stderr.isTTY && !flags.json
            ? new cliProgress.SingleBar(
                {
                  format: 'replay {scanned} scanned, {matched} matched, {sent} sent',
                  stream: process.stderr,
                },
                cliProgress.Presets.shades_classic,
              )
            : undefined;
        bar?.start(0, 0, { scanned: 0, matched: 0, sent: 0 });
        const result = await replayDeadJobs(kafka, topic, {
          ...(flags.error ? { errorClass: flags.error } : {}),
          ...(flags.key ? { key: flags.key } : {}),
          ...(flags.since ? { since: parseSince(flags.since) } : {}),
          ...(flags.limit ? { limit: flags.limit } : {}),
          ...(flags.rate ? { rate: flags.rate } : {}),
          ...(flags.dlq ? { dlqTopic: flags.dlq } : {}),
          dryRun: flags.dryRun === true,
          onProgress: (p) => bar?.update(0, p),
        })
          .catch((error: unknown) => {
            if (isStrandError(error, 'CONFIG') && (error as { path?: string }).path === 'errorClass')
              throw new CliError(`--error ${error.message.replace(/^errorClass: /, '')}`, EXIT.usage);
            throw error;
          })
          .finally(() => bar?.stop());
        if (result.undecodable > 0 && !flags.json)
          process.stderr.write(
            `strand: warning: ${result.undecodable} of the ${result.matched} matched job(s) could not be decoded when they were dead-lettered; replayed, the same bytes ${result.dryRun ? 'would fail' : 'will fail'} again (select the other jobs with --error CLASS)\n`,
          );
        if (flags.json) {
          process.stdout.write(`${JSON.stringify(result)}\n`);
          return;
        }
        if (result.dryRun) {
          const again = result.jobs.filter((j) => j.replayed).length;
          process.stdout.write(result.jobs.length ? `${table(result.jobs)}\n` : '');
          process.stdout.write(
            `dry run: ${result.matched} job(s) would be replayed to ${topic} (scanned ${result.scanned} from where this filter's replay group stands); nothing sent\n`,
          );
          if (again > 0)
            process.stderr.write(
              `strand: warning: ${again} of them were replayed before (one by one, or by another filter) and would be sent again: narrow the filter to leave them out\n`,
            );
        } else {
          process.stdout.write(
            `replayed ${result.sent} job(s) to ${topic} (scanned ${result.scanned}, group ${result.group})\n`,
          );
        }
      },
    ),
  );
}
