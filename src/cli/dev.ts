import type { Command } from 'commander';
import {
  DEFAULT_KAFKA_VERSION,
  type ProcessState,
  type StackInfo,
  type StackPart,
  stackDown,
  stackHealth,
  stackUp,
} from '../devstack/index.js';
import { action, colour, parseIntOption } from './common.js';

/** `strand dev status` exit codes (docs/cli.md): every part up, nothing runs, some part down. */
const STATUS_EXIT = { up: 0, notRunning: 1, partly: 3 } as const;

function partLine(info: StackInfo, part: StackPart): string {
  const what =
    part.name === 'kafka'
      ? `${info.brokers.join(',')}   (Kafka ${info.kafkaVersion}, KRaft)`
      : `${info.registryUrl}   (Apicurio ${info.registryVersion}, Confluent API)`;
  const text =
    part.state === 'up'
      ? 'up'
      : part.state === 'down'
        ? 'down'
        : part.down.length
          ? `down: ${part.down.join(', ')}`
          : 'not answering';
  const state = (part.state === 'up' ? colour.green : colour.red)(text.padEnd(14));
  return `${part.name.padEnd(13)} ${state} ${what}`;
}

function describe(info: StackInfo, health?: { states: ProcessState[]; parts: StackPart[] }): string {
  const now = Date.now();
  const lines = [
    ...(health
      ? health.parts.map((part) => partLine(info, part))
      : [
          `brokers       ${info.brokers.join(',')}   (Kafka ${info.kafkaVersion}, KRaft)`,
          `registry      ${info.registryUrl}   (Apicurio ${info.registryVersion}, Confluent API)`,
        ]),
    ...(info.sasl
      ? [
          `sasl          ${info.sasl.brokers.join(',')}   (SASL_PLAINTEXT, ${info.sasl.mechanism}, user ${info.sasl.username}, password ${info.sasl.password}; local only)`,
        ]
      : []),
    ...(info.tls ? [`tls           ${info.tls.brokers.join(',')}   (SSL, trust ${info.tls.caFile})`] : []),
    '',
    'process      pid       port   uptime          log',
  ];
  info.processes.forEach((p, i) => {
    const state = health?.states[i] ?? 'running';
    const up =
      state === 'running'
        ? `${Math.round((now - p.startedAt) / 1000)}s`.padEnd(15)
        : colour.red(state.padEnd(15));
    lines.push(`${p.name.padEnd(12)} ${String(p.pid).padEnd(9)} ${String(p.port).padEnd(6)} ${up} ${p.log}`);
  });
  if (health?.parts.some((part) => part.down.length))
    lines.push('', '"strand dev up" starts only what is down; the parts that run keep running.');
  if (health?.states.includes('not answering'))
    lines.push('', 'A process that runs without accepting connections is starting or stuck: see its log.');
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
    .description(
      'start the stack (downloads jars from Maven Central on first use); a no-op when it runs; when part of it is down, starts only that part',
    )
    .option('--brokers <n>', 'number of KRaft nodes', parseIntOption('--brokers', 1), 1)
    .option('--kafka-port <port>', 'first broker port', parseIntOption('--kafka-port', 1), 9092)
    .option('--registry-port <port>', 'registry port', parseIntOption('--registry-port', 1), 8081)
    .option(
      '--kafka-version <version>',
      `Kafka release from Maven Central (default $STRAND_KAFKA_VERSION or ${DEFAULT_KAFKA_VERSION}; tested: docs/compatibility.md)`,
    )
    .option('--home <dir>', 'state folder (default $STRAND_HOME or ./.strand)')
    .addHelpText(
      'after',
      '\nExamples:\n  strand dev up\n  strand dev up --brokers 3\n  strand dev up --kafka-version 3.9.1\n  strand dev up --kafka-port 19092 --registry-port 18081 --home /tmp/stack2',
    )
    .action(
      action(
        async (opts: {
          brokers: number;
          kafkaPort: number;
          registryPort: number;
          kafkaVersion?: string;
          home?: string;
        }) => {
          const t0 = Date.now();
          const { info, alreadyRunning, started } = await stackUp({
            brokers: opts.brokers,
            ...(opts.kafkaVersion ? { kafkaVersion: opts.kafkaVersion } : {}),
            kafkaPort: opts.kafkaPort,
            registryPort: opts.registryPort,
            ...(opts.home ? { home: opts.home } : {}),
            onProgress: (line) => process.stderr.write(colour.dim(`… ${line}\n`)),
          });
          const took = ((Date.now() - t0) / 1000).toFixed(1);
          const kept = info.processes.filter((p) => !started.includes(p.name));
          const headline = alreadyRunning
            ? 'already running'
            : kept.length
              ? `started ${started.join(', ')} in ${took}s; ${kept.map((p) => `${p.name} (pid ${p.pid})`).join(', ')} kept running`
              : `started in ${took}s`;
          process.stdout.write(`${colour.green(headline)}\n${describe(info)}\n`);
        },
      ),
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
    .description('the state of each part (Kafka, registry), brokers, registry URL, pids and uptime')
    .option('--json', 'machine-readable output')
    .option('--home <dir>', 'state folder')
    .addHelpText(
      'after',
      `\nExit code ${STATUS_EXIT.up} when every part is up, ${STATUS_EXIT.notRunning} when the stack is not running, ${STATUS_EXIT.partly} when it runs in part (a part down or not answering: "strand dev up" starts only that).\n\nExamples:\n  strand dev status\n  strand dev status --json`,
    )
    .action(
      action(async (opts: { json?: boolean; home?: string }) => {
        const health = await stackHealth(opts.home ? { home: opts.home } : {});
        const anyAlive = health?.alive.some(Boolean) === true;
        const allUp = health?.parts.every((p) => p.state === 'up') === true;
        process.exitCode = allUp ? STATUS_EXIT.up : anyAlive ? STATUS_EXIT.partly : STATUS_EXIT.notRunning;
        if (opts.json) {
          const state = allUp ? 'up' : anyAlive ? 'partly' : 'down';
          process.stdout.write(
            `${JSON.stringify(health ? { running: allUp, state, ...health } : { running: false, state })}\n`,
          );
          return;
        }
        if (!health || !anyAlive) {
          process.stdout.write(
            health
              ? 'not running: no process of the last stack is alive (start it with "strand dev up")\n'
              : 'not running (start it with "strand dev up")\n',
          );
          return;
        }
        process.stdout.write(`${describe(health, health)}\n`);
      }),
    );
}
