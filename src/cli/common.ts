import { type Command, CommanderError, InvalidArgumentError } from 'commander';
import { connectionFromEnv, explainConnectError, type KafkaConnection } from '../kafka/client.js';

/** Exit codes of every `strand` command (docs/cli.md). */
export const EXIT = { ok: 0, failure: 1, usage: 2 } as const;

/** An error whose message is meant for the user as is; `exitCode` 2 means bad usage or config. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = EXIT.failure,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

const useColour = () => process.stdout.isTTY === true && !process.env.NO_COLOR;

export const colour = {
  bold: (s: string) => (useColour() ? `\u001b[1m${s}\u001b[22m` : s),
  green: (s: string) => (useColour() ? `\u001b[32m${s}\u001b[39m` : s),
  red: (s: string) => (useColour() ? `\u001b[31m${s}\u001b[39m` : s),
  dim: (s: string) => (useColour() ? `\u001b[2m${s}\u001b[22m` : s),
};

const UNREACHABLE =
  /Connection error|ECONNREFUSED|ENOTFOUND|EHOSTUNREACH|ETIMEDOUT|Connection timeout|KafkaJSNonRetriableError.*connect/i;

function saslFromEnv(): Pick<KafkaConnection, 'sasl'> {
  try {
    const { sasl } = connectionFromEnv();
    return sasl ? { sasl } : {};
  } catch {
    return {};
  }
}

/** One line: the message, with the first cause appended when it adds something. */
export function oneLine(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  if (error.name.startsWith('KafkaJS')) {
    // The same one line as the library gives, with the credentials the CLI took from STRAND_SASL_*.
    const explained = explainConnectError(error, { brokers: [], ...saslFromEnv() });
    if (explained !== error) return oneLine(explained);
  }
  if (
    error.name.startsWith('KafkaJS') &&
    UNREACHABLE.test(`${error.message} ${String((error as { cause?: Error }).cause?.message ?? '')}`)
  ) {
    const detail = (error.message.split('\n')[0] ?? '').replace(/^Connection error: /, '');
    return `cannot reach Kafka (${detail}); check --brokers or STRAND_BROKERS`;
  }
  const code = (error as { exitCode?: number; code?: string }).code;
  let message = error.message.split('\n')[0] ?? error.message;
  if (code === 'DEVSTACK') message = error.message; // devstack errors may carry a log tail on purpose
  const cause = (error as { cause?: unknown }).cause;
  if (cause instanceof Error && !message.includes(cause.message))
    message += ` (${cause.message.split('\n')[0]})`;
  return message;
}

/** Wraps an action: prints a one-line error (no stack trace) and sets the exit code. */
export function action<A extends unknown[]>(
  fn: (...args: A) => Promise<void>,
): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await fn(...args);
    } catch (error) {
      const exitCode = (error as { exitCode?: number }).exitCode;
      const isConfig = (error as { name?: string }).name === 'ConfigError';
      process.stderr.write(`strand: ${oneLine(error)}\n`);
      process.exitCode = isConfig ? EXIT.usage : typeof exitCode === 'number' ? exitCode : EXIT.failure;
    }
  };
}

/** Makes commander's usage errors exit with 2 and keep to one line. */
export function configureProgram(program: Command): Command {
  program.exitOverride();
  program.configureOutput({
    writeErr: (s) => process.stderr.write(s),
    outputError: (s, write) => write(`strand: ${s.replace(/^error: /, '').trim()}\n`),
  });
  return program;
}

export function handleCommanderExit(error: unknown): never {
  if (error instanceof CommanderError) {
    const helpish = ['commander.helpDisplayed', 'commander.version', 'commander.help'].includes(error.code);
    process.exit(helpish ? EXIT.ok : EXIT.usage);
  }
  throw error;
}

export function parseIntOption(name: string, min = 0) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min)
      throw new InvalidArgumentError(`${name}: expected an integer >= ${min}`);
    return n;
  };
}
