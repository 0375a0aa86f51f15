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

/** Routes kafkajs log lines into a pino logger. */
export function kafkaLogSink(logger: Logger) {
  return (level: 'error' | 'warn' | 'info' | 'debug', message: string, extra: object) => {
    // kafkajs logs every rebalance response as an error; a rebalance is routine for a worker.
    const error = String((extra as { error?: unknown }).error ?? '');
    const routine = /rebalanc|not the correct coordinator|coordinator is loading|leadership election/i.test(
      error + message,
    );
    logger[routine && (level === 'error' || level === 'warn') ? 'debug' : level]({ kafka: extra }, message);
  };
}
