import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import { assertValid, loadAvroSchemaFile, parseAvroSchema } from '../codec/index.js';
import { ConfigError, parseDuration } from '../config/index.js';
import { createLogger } from '../observability/logger.js';
import { type EnqueueResult, type JobInput, JobProducer } from '../producer/job-producer.js';
import { action, CliError, EXIT, parseIntOption } from './common.js';
import { type ConnectionFlags, resolveConnection, withConnectionFlags } from './connection.js';

interface EnqueueFlags extends ConnectionFlags {
  schema: string;
  data?: string;
  file?: string;
  keyField?: string;
  jobIdField?: string;
  batchSize: number;
  delay?: string;
  runAt?: string;
  json?: boolean;
}

async function* lines(source: NodeJS.ReadableStream): AsyncGenerator<{ n: number; text: string }> {
  let n = 0;
  for await (const text of createInterface({ input: source, crlfDelay: Number.POSITIVE_INFINITY })) {
    n++;
    if (text.trim()) yield { n, text };
  }
}

function toJob(record: unknown, where: string, flags: EnqueueFlags): JobInput {
  if (typeof record !== 'object' || record === null || Array.isArray(record)) {
    throw new CliError(`${where}: expected a JSON object`, EXIT.usage);
  }
  const data = record as Record<string, unknown>;
  let key: string | null = null;
  if (flags.keyField) {
    const value = data[flags.keyField];
    if (value === undefined || value === null)
      throw new CliError(`${where}: --key-field ${flags.keyField} is missing`, EXIT.usage);
    key = String(value);
  }
  const job: JobInput = { key, data };
  if (flags.delay !== undefined) job.delay = flags.delay;
  if (flags.runAt !== undefined) job.runAt = parseRunAt(flags.runAt);
  if (flags.jobIdField && data[flags.jobIdField] !== undefined) job.jobId = String(data[flags.jobIdField]);
  return job;
}

function parseRunAt(value: string): number {
  const t = Date.parse(value);
  if (!Number.isFinite(t))
    throw new CliError(
      `--run-at: expected an ISO 8601 time like 2026-12-01T09:00:00Z, got "${value}"`,
      EXIT.usage,
    );
  return t;
}

function parseLine(text: string, where: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new CliError(`${where}: not JSON (${(error as Error).message})`, EXIT.usage);
  }
}

export function registerEnqueue(program: Command): void {
  const cmd = program
    .command('enqueue')
    .description('validate jobs against an Avro schema and enqueue them (all or nothing)')
    .argument('<topic>', 'job topic')
    .requiredOption('--schema <file.avsc>', 'Avro schema of the jobs')
    .option('--data <json>', 'one job as JSON')
    .option('--file <jobs.ndjson>', 'jobs as newline-delimited JSON ("-" or no --data/--file: stdin)')
    .option('--key-field <field>', 'field whose value is the ordering key (default: no key)')
    .option('--job-id-field <field>', 'field whose value is the job id (idempotency key)')
    .option('--batch-size <n>', 'jobs per produce request', parseIntOption('--batch-size', 1), 500)
    .option(
      '--delay <duration>',
      'run the jobs no earlier than this from now, e.g. 10m (needs topics create --delays)',
    )
    .option('--run-at <time>', 'run the jobs no earlier than this ISO 8601 time, e.g. 2026-12-01T09:00:00Z')
    .option('--json', 'print the summary as JSON');
  withConnectionFlags(cmd).addHelpText(
    'after',
    `
Every job is validated before the first one is sent: one invalid line sends nothing.

Examples:
  strand enqueue payments --schema schemas/payment.avsc --key-field accountId \\
    --data '{"paymentId":"p1","accountId":"a1","amountCents":500,"currency":"EUR","sequence":1,"createdAt":1700000000000,"memo":null}'
  strand enqueue payments --schema schemas/payment.avsc --key-field accountId --file jobs.ndjson
  cat jobs.ndjson | strand enqueue payments --schema schemas/payment.avsc --key-field accountId
  strand enqueue reminders --schema schemas/reminder.avsc --delay 10m --data '{"userId":"u1"}'
  strand enqueue reminders --schema schemas/reminder.avsc --run-at 2026-12-01T09:00:00Z --file reminders.ndjson`,
  );
  cmd.action(
    action(async (topic: string, flags: EnqueueFlags) => {
      const schema = loadAvroSchemaFile(flags.schema);
      const type = parseAvroSchema(schema);
      if (flags.data && flags.file)
        throw new CliError('--data and --file cannot be used together', EXIT.usage);
      if (flags.delay !== undefined && flags.runAt !== undefined)
        throw new CliError('--delay and --run-at cannot be used together', EXIT.usage);
      if (flags.delay !== undefined && !/^\s*-/.test(flags.delay)) parseDuration(flags.delay, '--delay');

      // Every job is validated before the first is sent, and the input is read once, as a stream:
      // a pipe (`--file <(…)`, a FIFO, stdin) can be read only once. The valid lines are kept (as
      // text, about the input's size) until the last one was read.
      const kept: { where: string; text: string }[] = [];
      const validate = (text: string, where: string) => {
        const job = toJob(parseLine(text, where), where, flags);
        try {
          assertValid(type, job.data, where);
        } catch (error) {
          throw new CliError((error as Error).message, EXIT.usage);
        }
      };
      if (flags.data) {
        validate(flags.data, '--data');
        kept.push({ where: '--data', text: flags.data });
      } else {
        const fromStdin = !flags.file || flags.file === '-';
        const source = fromStdin ? process.stdin : createReadStream(flags.file!);
        // The read's error reaches the loop below; this keeps it from being an unhandled event too.
        source.on('error', () => undefined);
        try {
          for await (const { n, text } of lines(source)) {
            const where = `line ${n}`;
            validate(text, where);
            kept.push({ where, text });
          }
        } catch (error) {
          const code = (error as NodeJS.ErrnoException).code;
          if (code === 'ENOENT') throw new ConfigError('--file', `${flags.file} not found`);
          if (code === 'EISDIR') throw new ConfigError('--file', `${flags.file} is a directory`);
          throw error;
        }
      }
      const total = kept.length;
      if (total === 0) throw new CliError('no jobs to enqueue (empty input)', EXIT.usage);

      const { kafka, registry } = resolveConnection(flags);
      const producer = new JobProducer({
        kafka,
        registry,
        topic,
        schema,
        logger: createLogger({ name: 'strand-enqueue', level: process.env.STRAND_LOG_LEVEL ?? 'silent' }),
      });
      await producer.connect();
      const bar =
        total > 1 && process.stderr.isTTY && !flags.json
          ? new cliProgress.SingleBar(
              {
                format: 'enqueue [{bar}] {value}/{total} jobs  {rate} jobs/s',
                stream: process.stderr,
                hideCursor: true,
              },
              cliProgress.Presets.shades_classic,
            )
          : undefined;
      bar?.start(total, 0, { rate: 0 });
      const t0 = Date.now();
      let first: EnqueueResult | undefined;
      let last: EnqueueResult | undefined;
      let sent = 0;
      const flush = async (batch: JobInput[]) => {
        if (batch.length === 0) return;
        const results = await producer.enqueueMany(batch);
        first ??= results[0];
        last = results[results.length - 1];
        sent += results.length;
        bar?.update(sent, { rate: Math.round(sent / Math.max(0.001, (Date.now() - t0) / 1000)) });
      };
      try {
        for (let i = 0; i < kept.length; i += flags.batchSize) {
          const batch = kept
            .slice(i, i + flags.batchSize)
            .map(({ where, text }) => toJob(parseLine(text, where), where, flags));
          await flush(batch);
        }
      } finally {
        bar?.stop();
        await producer.disconnect();
      }
      const seconds = (Date.now() - t0) / 1000;
      const summary = {
        topic,
        jobs: sent,
        seconds: Number(seconds.toFixed(3)),
        jobsPerSecond: Math.round(sent / Math.max(seconds, 0.001)),
        first,
        last,
      };
      if (flags.json) {
        process.stdout.write(`${JSON.stringify(summary)}\n`);
      } else {
        const at = (r?: EnqueueResult) =>
          r
            ? `${r.topic === topic ? '' : `${r.topic} `}partition ${r.partition} offset ${r.offset}${r.dueAt ? `, due ${new Date(r.dueAt).toISOString()}` : ''}`
            : '-';
        process.stdout.write(
          sent === 1
            ? `enqueued 1 job to ${topic} in ${summary.seconds}s: ${at(first)} (job ${first?.jobId})\n`
            : `enqueued ${sent} jobs to ${topic} in ${summary.seconds}s (${summary.jobsPerSecond} jobs/s)\n` +
                `first: ${at(first)} (job ${first?.jobId})\nlast:  ${at(last)} (job ${last?.jobId})\n`,
        );
      }
    }),
  );
}
