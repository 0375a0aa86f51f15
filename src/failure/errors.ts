import { isStrandError, StrandError } from '../errors.js';

/** Thrown by a handler: the job goes straight to the dead-letter topic. */
export class NonRetriableError extends StrandError {
  constructor(message: string, opts: { cause?: unknown } = {}) {
    super('NON_RETRIABLE', message, { retriable: false, cause: opts.cause });
  }
}

/**
 * Thrown by a handler: run the job again after `delayMs` (through a retry tier), without counting
 * it as a failed attempt (e.g. a downstream said "come back later").
 */
export class RetryLaterError extends StrandError {
  readonly delayMs: number;
  constructor(opts: { delayMs: number; message?: string; cause?: unknown }) {
    super('RETRY_LATER', opts.message ?? `retry later (in ${opts.delayMs} ms)`, {
      retriable: true,
      cause: opts.cause,
    });
    this.delayMs = opts.delayMs;
  }
}

/** The handler did not finish within `jobTimeoutMs`; retriable. */
export class JobTimeoutError extends StrandError {
  constructor(timeoutMs: number) {
    super('JOB_TIMEOUT', `job did not finish within ${timeoutMs} ms`, { retriable: true });
  }
}

/** How a failure is routed. */
export type FailureKind = 'retriable' | 'non-retriable' | 'retry-later';

/** Programmer errors: retrying cannot fix them (the KafkaJS retrier treats them the same way). */
const PROGRAMMER_ERRORS = new Set(['TypeError', 'RangeError', 'ReferenceError', 'SyntaxError']);

/** Default classification; a worker's `classify` hook may override it per error. */
export function defaultClassify(error: unknown): FailureKind {
  if (isStrandError(error, 'RETRY_LATER')) return 'retry-later';
  if (isStrandError(error)) return error.retriable ? 'retriable' : 'non-retriable';
  if (error instanceof Error && PROGRAMMER_ERRORS.has(error.name)) return 'non-retriable';
  return 'retriable';
}

/** The class name recorded in `strand-error-class`. */
export function errorClassName(error: unknown): string {
  if (error instanceof Error)
    return error.name && error.name !== 'Error' ? error.name : error.constructor.name;
  return typeof error;
}
