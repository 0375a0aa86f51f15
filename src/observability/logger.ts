import { pino } from 'pino';

export type Logger = pino.Logger;

/**
 * The pino logger Strand components share. JSON lines on stderr; level from `STRAND_LOG_LEVEL`
 * (default `info`). Secrets are redacted wherever they appear in logged objects.
 */
export function createLogger(
  opts: { name?: string; level?: string; destination?: pino.DestinationStream } = {},
): Logger {
  const options: pino.LoggerOptions = {
    name: opts.name ?? 'strand',
    level: opts.level ?? process.env.STRAND_LOG_LEVEL ?? 'info',
    redact: {
      paths: ['password', '*.password', '*.*.password', 'sasl', '*.sasl', 'auth', '*.auth'],
      censor: '[redacted]',
    },
  };
  return opts.destination ? pino(options, opts.destination) : pino(options, pino.destination(2));
}

/**
 * kafkajs' transient complaints, in Strand's words: what a client says while a broker starts, a
 * group coordinator is elected, a partition leader moves, or the group rebalances. Each is retried
 * by kafkajs (or answered by the worker) and, when it does not pass, ends in an error the caller
 * reports in one line; on its own it is not worth a JSON stack at warn level.
 */
const TRANSIENT: [RegExp, string][] = [
  [/rebalanc/i, 'the group is rebalancing'],
  [
    /group coordinator is not available|coordinator is loading|not the correct coordinator/i,
    'the group coordinator is not ready yet; retrying',
  ],
  [
    /leadership election|no leader|LEADER_NOT_AVAILABLE|not the leader/i,
    'a partition has no leader yet; retrying',
  ],
  [/does not host this topic-partition|UNKNOWN_TOPIC/i, 'topic metadata is not ready yet; retrying'],
  [
    /Connection error|Connection timeout|Failed to connect|ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|ENOTFOUND|Closed connection|socket hang up|timed out/i,
    'cannot reach a Kafka broker; retrying',
  ],
];

/**
 * kafkajs lines that Strand reports itself, in its own words and with the error: the worker logs
 * "consumer crashed; the client restarts it" (membership.ts) where kafkajs says only "Restarting the
 * consumer in 100ms", at error level.
 */
const REPORTED_BY_STRAND = /^Restarting the consumer in \d+ms/;

/**
 * Routine answers kafkajs retries at once and logs at error level: a transaction begun right after
 * the previous one of its producer committed (exactly-once rounds, transactional DLQ replays) is
 * answered CONCURRENT_TRANSACTIONS while the coordinator writes that one's markers. At debug,
 * without counting as trouble.
 */
const ROUTINE = /another concurrent operation on the same transaction|CONCURRENT_TRANSACTIONS/i;

/**
 * kafkajs' notice for every transactional producer Strand makes (exactly-once rounds, DLQ
 * replays): their retries are bounded on purpose — a transaction that does not go
 * through is aborted whole and its work done again — so the notice says nothing to act on.
 */
const BOUNDED_RETRIES = /^Limiting retries for the idempotent producer may invalidate EoS guarantees/;

/** How long kafkajs may keep reporting transient trouble before it is worth a warning. */
const TRANSIENT_WARN_AFTER_MS = 30_000;

/**
 * Routes kafkajs log lines into a pino logger. Transient trouble goes to debug, in Strand's words;
 * if it persists (TRANSIENT_WARN_AFTER_MS without a quiet spell), one warning says so, again at most
 * once per that interval. Anything else kafkajs says keeps its level.
 */
export function kafkaLogSink(logger: Logger, now: () => number = Date.now) {
  let troubleSince: number | undefined;
  let lastTrouble = 0;
  let lastWarned = 0;
  return (level: 'error' | 'warn' | 'info' | 'debug', message: string, extra: object) => {
    if (REPORTED_BY_STRAND.test(message) || BOUNDED_RETRIES.test(message)) {
      logger.debug({ kafka: extra }, message);
      return;
    }
    const error = String((extra as { error?: unknown }).error ?? '');
    if (ROUTINE.test(`${error} ${message}`)) {
      logger.debug({ kafka: extra }, message);
      return;
    }
    const transient = TRANSIENT.find(([pattern]) => pattern.test(`${error} ${message}`));
    if (!transient || level === 'info' || level === 'debug') {
      logger[level]({ kafka: extra }, message);
      return;
    }
    const [, words] = transient;
    const at = now();
    if (troubleSince === undefined || at - lastTrouble > TRANSIENT_WARN_AFTER_MS) troubleSince = at;
    lastTrouble = at;
    const { broker, retryCount } = extra as { broker?: string; retryCount?: number };
    const detail = {
      kafka: {
        message,
        ...(error ? { error } : {}),
        ...(broker ? { broker } : {}),
        ...(retryCount !== undefined ? { retryCount } : {}),
      },
    };
    const persisting =
      at - troubleSince >= TRANSIENT_WARN_AFTER_MS && !words.startsWith('the group is rebalancing');
    if (persisting && at - lastWarned >= TRANSIENT_WARN_AFTER_MS) {
      lastWarned = at;
      logger.warn(detail, `${words} (for ${Math.round((at - troubleSince) / 1000)} s)`);
    } else logger.debug(detail, words);
  };
}
