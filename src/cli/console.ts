import { readFileSync, statSync } from 'node:fs';
import type { Command } from 'commander';
import { SchemaRegistryGateway } from '../codec/index.js';
import { ConsoleModel } from '../console/model.js';
import { OutboxWatch } from '../console/outbox.js';
import { isLoopback } from '../console/security.js';
import { ConsoleServer } from '../console/server.js';
import { createLogger } from '../observability/logger.js';
import { DEFAULT_OUTBOX_TABLE, outboxTable } from '../outbox/table.js';
import { action, CliError, EXIT, parseIntOption } from './common.js';
import { type ConnectionFlags, resolveConnection, withConnectionFlags } from './connection.js';

interface ConsoleFlags extends ConnectionFlags {
  port: number;
  host: string;
  readOnly?: boolean;
  authTokenFile?: string;
  group: string[];
  databaseUrl?: string;
  outboxTable: string;
}

function readToken(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new CliError(`--auth-token-file: cannot read ${file} (${(error as Error).message})`, EXIT.usage);
  }
  const token = text.trim();
  if (token.length < 16)
    throw new CliError(`--auth-token-file: ${file} must hold a token of at least 16 characters`, EXIT.usage);
  if ((statSync(file).mode & 0o077) !== 0)
    process.stderr.write(`strand console: warning: ${file} is readable by other users (chmod 600 it)\n`);
  return token;
}

/** The one-line refusal for an exposed console without protection, or undefined when it may start. */
export function exposureProblem(flags: {
  host: string;
  readOnly?: boolean;
  authTokenFile?: string;
}): string | undefined {
  if (isLoopback(flags.host) || flags.authTokenFile || flags.readOnly) return undefined;
  return `refusing to serve the console on ${flags.host} without --auth-token-file or --read-only (anyone who reaches it could replay jobs and pause groups)`;
}

export function registerConsole(program: Command): void {
  const cmd = program
    .command('console')
    .description(
      'web UI: groups and lag, workers, jobs, dead letters with replay, retry tiers, schemas, pause/resume, the outbox',
    )
    .option('--port <port>', 'HTTP port (0 picks a free one)', parseIntOption('--port', 0), 9400)
    .option(
      '--host <host>',
      'bind address; anything but loopback needs --auth-token-file or --read-only',
      '127.0.0.1',
    )
    .option('--read-only', 'no actions: no replay, no pause/resume (POSTs are refused)')
    .option(
      '--auth-token-file <file>',
      'require the token in this file (bearer, or a login that sets a cookie)',
    )
    .option(
      '--group <id>',
      'also show this consumer group when none of its workers reports (repeatable)',
      (v: string, acc: string[]) => [...acc, v],
      [] as string[],
    )
    .option(
      '--database-url <url>',
      'also the transactional outbox in this PostgreSQL (env STRAND_DATABASE_URL): pending rows, relays, publish rate',
    )
    .option('--outbox-table <name>', 'the outbox table', DEFAULT_OUTBOX_TABLE);
  withConnectionFlags(cmd).addHelpText(
    'after',
    `
Workers publish a status snapshot every 5 s to the compacted topic __strand_status and obey
pause/resume from __strand_control; the console reads both, and lag, DLQ depth and records from
the brokers. It keeps no database: charts cover what it saw while running (up to 15 min). With
--database-url it also reads the transactional outbox table every 5 s (page "Outbox", a column on
the overview): rows pending, oldest age, publish rate, rejected rows, relays and key shards.

Examples:
  strand console                                   # http://127.0.0.1:9400
  strand console --read-only --port 8080
  strand console --host 0.0.0.0 --auth-token-file /run/secrets/console-token
  strand console --database-url postgres://app@db/shop --outbox-table strand_outbox`,
  );
  cmd.action(
    action(async (flags: ConsoleFlags) => {
      const problem = exposureProblem(flags);
      if (problem) throw new CliError(problem, EXIT.usage);
      const token = flags.authTokenFile ? readToken(flags.authTokenFile) : undefined;
      const databaseUrl = flags.databaseUrl ?? process.env.STRAND_DATABASE_URL;
      if (databaseUrl !== undefined && !/^postgres(ql)?:\/\/./.test(databaseUrl))
        throw new CliError('--database-url: expected postgres://user@host:port/database', EXIT.usage);
      outboxTable(flags.outboxTable, '--outbox-table');
      const { kafka, registry } = resolveConnection(flags);
      kafka.clientId = 'strand-console';
      const logger = createLogger({ name: 'strand-console', level: process.env.STRAND_LOG_LEVEL ?? 'warn' });
      const model = new ConsoleModel(kafka, {
        readOnly: flags.readOnly === true,
        pinnedGroups: flags.group,
        logger,
      });
      await model.start();
      if (databaseUrl) {
        model.outbox = new OutboxWatch(databaseUrl, flags.outboxTable, {
          rejected: (topic) => model.outboxRejected(topic),
          jobTopics: () => model.jobTopics(),
          logger,
        });
        model.outbox.start();
      }
      const gateway = new SchemaRegistryGateway(registry);
      const server = new ConsoleServer({
        model,
        registry: gateway,
        host: flags.host,
        port: flags.port,
        readOnly: flags.readOnly === true,
        token,
        logger,
      });
      let listening: { url: string };
      try {
        listening = await server.listen();
      } catch (error) {
        await model.stop();
        throw new CliError(`cannot listen on ${flags.host}:${flags.port}: ${(error as Error).message}`);
      }
      const mode = [flags.readOnly ? 'read-only' : '', token ? 'token required' : '']
        .filter(Boolean)
        .join(', ');
      process.stdout.write(`Strand console on ${listening.url}${mode ? ` (${mode})` : ''}\n`);
      let stopping = false;
      const stop = () => {
        if (stopping) process.exit(EXIT.failure);
        stopping = true;
        void Promise.allSettled([server.close(), model.stop()]).then(() => {
          gateway.close();
          process.exit(EXIT.ok);
        });
      };
      process.on('SIGTERM', stop);
      process.on('SIGINT', stop);
      // kafkajs can reject a request that timed out on a loaded broker where nobody awaits it any
      // more (a metadata refresh of an admin client): the console reads again at its next sample,
      // so a retriable client error is logged, not fatal. Anything else still ends the process.
      process.on('unhandledRejection', (reason) => {
        if ((reason as { retriable?: unknown } | null)?.retriable !== true) throw reason;
        logger.warn({ err: reason }, 'a Kafka request failed outside a sample; the console goes on');
      });
      await new Promise(() => undefined);
    }),
  );
}
