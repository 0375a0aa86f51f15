import type { Command } from 'commander';
import { createLogger } from '../observability/logger.js';
import { loadPg } from '../outbox/driver.js';
import { describeFault, redactUrl } from '../outbox/pg.js';
import { OutboxRelay } from '../outbox/relay.js';
import { DEFAULT_OUTBOX_TABLE, migrateOutbox, outboxTable } from '../outbox/table.js';
import { action, CliError, EXIT, parseIntOption } from './common.js';
import { type ConnectionFlags, resolveConnection, withConnectionFlags } from './connection.js';

interface DatabaseFlags {
  databaseUrl?: string;
  table: string;
}

/** `--database-url`, else STRAND_DATABASE_URL, else DATABASE_URL. */
export function databaseUrlOf(flags: { databaseUrl?: string }): string {
  const url = flags.databaseUrl ?? process.env.STRAND_DATABASE_URL ?? process.env.DATABASE_URL;
  if (!url)
    throw new CliError(
      'give --database-url postgres://user@host:5432/db (or STRAND_DATABASE_URL)',
      EXIT.usage,
    );
  if (!/^postgres(ql)?:\/\/./.test(url))
    throw new CliError(
      `--database-url: expected postgres://user@host:5432/db, got "${redactUrl(url)}"`,
      EXIT.usage,
    );
  return url;
}

function withDatabaseFlags(cmd: Command): Command {
  return cmd
    .option('--database-url <url>', 'PostgreSQL holding the outbox (env STRAND_DATABASE_URL or DATABASE_URL)')
    .option('--table <name>', 'outbox table (name or schema.name)', DEFAULT_OUTBOX_TABLE);
}

export function registerOutbox(program: Command): void {
  const outbox = program
    .command('outbox')
    .description('transactional outbox: jobs written in PostgreSQL transactions, published to Kafka')
    .addHelpText(
      'after',
      `
Examples:
  strand outbox migrate --database-url postgres://app@db:5432/shop
  strand outbox relay --database-url postgres://app@db:5432/shop --metrics-port 9466`,
    );

  withDatabaseFlags(
    outbox
      .command('migrate')
      .description('create the outbox table, its indexes and its NOTIFY trigger (idempotent)'),
  )
    .addHelpText(
      'after',
      `
Examples:
  strand outbox migrate --database-url postgres://app@db:5432/shop
  STRAND_DATABASE_URL=postgres://app@db/shop strand outbox migrate --table billing.outbox`,
    )
    .action(
      action(async (flags: DatabaseFlags) => {
        const url = databaseUrlOf(flags);
        const table = outboxTable(flags.table, '--table');
        const { Client } = await loadPg();
        const client = new Client({ connectionString: url, connectionTimeoutMillis: 5000 });
        client.on('error', () => undefined);
        try {
          await client.connect();
          await migrateOutbox(client, table.name);
        } catch (error) {
          throw new CliError(describeFault(error, url));
        } finally {
          await client.end().catch(() => undefined);
        }
        process.stdout.write(`outbox table ${table.name} is ready\n`);
      }),
    );

  const relay = withDatabaseFlags(
    outbox
      .command('relay')
      .description(
        'publish committed outbox rows to Kafka (runs until SIGTERM; several may run, one publishes each key)',
      ),
  )
    .option('--batch-size <n>', 'rows published at a time', parseIntOption('--batch-size', 1), 500)
    .option(
      '--poll-interval <ms>',
      'look for rows this often without a notification',
      parseIntOption('--poll-interval', 10),
      1000,
    )
    .option(
      '--metrics-port <port>',
      'serve /metrics, /healthz, /readyz on this port',
      parseIntOption('--metrics-port', 0),
    )
    .option('--no-auto-register', 'only look schemas up in the registry (production setups)');
  withConnectionFlags(relay).addHelpText(
    'after',
    `
Faults (database down, Kafka or registry unreachable) are logged in one line and retried with
backoff; the relay never exits on its own. Logs are JSON lines on stderr.

Examples:
  strand outbox relay --database-url postgres://app@db:5432/shop --metrics-port 9466
  strand outbox relay --table billing.outbox --batch-size 1000 --no-auto-register`,
  );
  relay.action(
    action(
      async (
        flags: DatabaseFlags &
          ConnectionFlags & {
            batchSize: number;
            pollInterval: number;
            metricsPort?: number;
            autoRegister: boolean;
          },
      ) => {
        const url = databaseUrlOf(flags);
        const { kafka, registry } = resolveConnection(flags);
        delete kafka.retries; // a long-running relay keeps retrying
        delete kafka.clientId;
        const logger = createLogger({ name: 'strand-outbox-relay' });
        const r = new OutboxRelay({
          databaseUrl: url,
          kafka,
          registry,
          table: flags.table,
          batchSize: flags.batchSize,
          pollIntervalMs: flags.pollInterval,
          autoRegister: flags.autoRegister,
          logger,
          ...(flags.metricsPort !== undefined ? { metrics: { port: flags.metricsPort } } : {}),
        });
        let stopping = false;
        const stop = (signal: string) => {
          if (stopping) process.exit(EXIT.failure);
          stopping = true;
          logger.info({ signal }, 'stopping the outbox relay');
          r.stop().then(
            () => process.exit(EXIT.ok),
            () => process.exit(EXIT.failure),
          );
        };
        process.on('SIGTERM', () => stop('SIGTERM'));
        process.on('SIGINT', () => stop('SIGINT'));
        await r.start();
        logger.info(
          { table: flags.table, database: redactUrl(url), metricsPort: r.metricsPort },
          `outbox relay started on ${flags.table}`,
        );
        await new Promise(() => undefined);
      },
    ),
  );
}
