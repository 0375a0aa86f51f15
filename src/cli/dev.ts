import type { Command } from 'commander';
import { type StackInfo, stackDown, stackStatus, stackUp } from '../devstack/index.js';
import { action, colour, parseIntOption } from './common.js';

function describe(info: StackInfo, alive?: boolean[]): string {
  const now = Date.now();
  const lines = [
    `brokers       ${info.brokers.join(',')}   (Kafka ${info.kafkaVersion}, KRaft)`,
    `registry      ${info.registryUrl}   (Apicurio ${info.registryVersion}, Confluent API)`,
    ...(info.sasl
      ? [
          `sasl          ${info.sasl.brokers.join(',')}   (SASL_PLAINTEXT, ${info.sasl.mechanism}, user ${info.sasl.username}, password ${info.sasl.password}; local only)`,
        ]
      : []),
    ...(info.tls ? [`tls           ${info.tls.brokers.join(',')}   (SSL, trust ${info.tls.caFile})`] : []),
    '',
    'process      pid       port   uptime   log',
  ];
  info.processes.forEach((p, i) => {
    const up = alive && !alive[i] ? colour.red('down') : `${Math.round((now - p.startedAt) / 1000)}s`;
    lines.push(
      `${p.name.padEnd(12)} ${String(p.pid).padEnd(9)} ${String(p.port).padEnd(6)} ${up.padEnd(8)} ${p.log}`,
    );
  });
  lines.push(
    '',
    `export STRAND_BROKERS=${info.brokers.join(',')}`,
    `export STRAND_REGISTRY_URL=${info.registryUrl}`,
  );
  return lines.join('\n');
}

export function registerDev(program: Command): void {
  const dev = program
    .command('dev')
    .description('a real local Kafka (KRaft) and schema registry, without Docker')
    .addHelpText(
      'after',
      '\nExamples:\n  strand dev up              # one broker + registry on 127.0.0.1:9092 / :8081\n  strand dev up --brokers 3  # three KRaft nodes on 9092, 9094, 9096\n  strand dev status --json\n  strand dev down',
    );

  dev
    .command('up')
    .description('start the stack (downloads jars from Maven Central on first use); a no-op when it runs')
    .option('--brokers <n>', 'number of KRaft nodes', parseIntOption('--brokers', 1), 1)
    .option('--kafka-port <port>', 'first broker port', parseIntOption('--kafka-port', 1), 9092)
    .option('--registry-port <port>', 'registry port', parseIntOption('--registry-port', 1), 8081)
    .option('--home <dir>', 'state folder (default $STRAND_HOME or ./.strand)')
    .addHelpText(
      'after',
      '\nExamples:\n  strand dev up\n  strand dev up --brokers 3\n  strand dev up --kafka-port 19092 --registry-port 18081 --home /tmp/stack2',
    )
    .action(
      action(async (opts: { brokers: number; kafkaPort: number; registryPort: number; home?: string }) => {
        const t0 = Date.now();
        const { info, alreadyRunning } = await stackUp({
          brokers: opts.brokers,
          kafkaPort: opts.kafkaPort,
          registryPort: opts.registryPort,
          ...(opts.home ? { home: opts.home } : {}),
          onProgress: (line) => process.stderr.write(colour.dim(`… ${line}\n`)),
        });
        const took = ((Date.now() - t0) / 1000).toFixed(1);
        process.stdout.write(
          `${colour.green(alreadyRunning ? 'already running' : `started in ${took}s`)}\n${describe(info)}\n`,
        );
      }),
    );

  dev
    .command('down')
    .description('stop the processes that "strand dev up" started (data is kept)')
    .option('--home <dir>', 'state folder')
    .addHelpText(
      'after',
      '\nExamples:\n  strand dev down\n  rm -rf .strand   # also forget the data and the cached jars',
    )
    .action(
      action(async (opts: { home?: string }) => {
        const { stopped } = await stackDown(opts.home ? { home: opts.home } : {});
        process.stdout.write(stopped.length ? `stopped ${stopped.join(', ')}\n` : 'nothing was running\n');
      }),
    );

  dev
    .command('status')
    .description('brokers, registry URL, pids and uptime of the local stack')
    .option('--json', 'machine-readable output')
    .option('--home <dir>', 'state folder')
    .addHelpText(
      'after',
      '\nExit code 1 when the stack is not (fully) running.\n\nExamples:\n  strand dev status\n  strand dev status --json',
    )
    .action(
      action(async (opts: { json?: boolean; home?: string }) => {
        const status = stackStatus(opts.home ? { home: opts.home } : {});
        if (opts.json) {
          process.stdout.write(
            `${JSON.stringify(status ? { running: status.alive.every(Boolean), ...status } : { running: false })}\n`,
          );
          return;
        }
        if (!status) {
          process.stdout.write('not running (start it with "strand dev up")\n');
          process.exitCode = 1;
          return;
        }
        process.stdout.write(`${describe(status, status.alive)}\n`);
        if (!status.alive.every(Boolean)) process.exitCode = 1;
      }),
    );
}
