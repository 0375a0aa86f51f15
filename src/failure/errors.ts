import { isStrandError, StrandError } from '../errors.js';

/** Thrown by a handler: the job goes straight to the dead-letter topic. */
export class NonRetriableError extends StrandError {
  constructor(message: string, opts: { cause?: unknown } = {}) {
    super('NON_RETRIABLE', message, { retriable: false, cause: opts.cause });
  }
}

/**
 * Thrown by a handler: run the job again after `delayMs` (through a retry tier, or the delay buckets
 * when it is longer than the last tier), without counting it as a failed attempt (e.g. a downstream
 * said "come back later"). Without `delayMs`, after the first tier's delay. A `delayMs` given must be
 * a finite number of milliseconds >= 0: anything else (NaN from a missing Retry-After header, a
 * negative number, Infinity) throws a `RangeError` here, so the bug shows at the throw site and the
 * job is dead-lettered with that reason, not retried at an arbitrary time (docs/guarantees.md,
 * "Retry later").
 */
export class RetryLaterError extends StrandError {
  /** The delay asked for; undefined: none (the first tier's). */
  readonly delayMs: number | undefined;
  constructor(opts: { delayMs?: number; message?: string; cause?: unknown } = {}) {
    const { delayMs } = opts as { delayMs?: unknown };
    if (delayMs !== undefined && !isRetryDelay(delayMs))
      throw new RangeError(
        `RetryLaterError: delayMs must be a finite number of milliseconds >= 0, got ${describeValue(delayMs)}`,
      );
    super(
      'RETRY_LATER',
      opts.message ?? (delayMs === undefined ? 'retry later' : `retry later (in ${delayMs} ms)`),
      {
        retriable: true,
        cause: opts.cause,
      },
    );
    this.delayMs = delayMs;
  }
}

/** A delay a job may ask for: a finite number of milliseconds, not negative. */
export function isRetryDelay(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0;
}

function describeValue(value: unknown): string {
  if (typeof value === 'string') return `the string ${JSON.stringify(value.slice(0, 40))}`;
  return typeof value === 'number' || value === null ? String(value) : typeof value;
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

/**
 * A handler's thrown value as an Error the worker can read safely. Handlers may throw anything:
 * a string, `null`, a plain object, or an Error whose `name`/`message`/`stack` getters throw. Each
 * is wrapped in an Error (name `NonErrorThrown`) saying what was thrown; sane Errors pass as they
 * are (Strand's own errors keep their routing meaning).
 */
export function normalizeThrown(value: unknown, thrower = 'the handler'): unknown {
  let isError: boolean;
  try {
    isError = value instanceof Error;
  } catch {
    // A proxy whose prototype cannot be read.
    return nonError(thrower, 'an object that cannot be inspected');
  }
  if (isError) {
    const error = value as Error;
    try {
      void `${error.name}${error.message}${error.stack ?? ''}`;
      return error;
    } catch {
      return nonError(thrower, 'an Error whose name, message or stack cannot be read');
    }
  }
  return nonError(thrower, describe(value));
}

function nonError(thrower: string, what: string): Error {
  const error = new Error(`${thrower} threw ${what}, not an Error`);
  error.name = 'NonErrorThrown';
  return error;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  try {
    if (typeof value === 'string') return `the string ${JSON.stringify(value.slice(0, 200))}`;
    if (typeof value !== 'object' && typeof value !== 'function')
      return `the ${typeof value} ${String(value)}`;
    const name = Object.prototype.toString.call(value);
    return `an object ${name}`;
  } catch {
    return 'a value that cannot be described';
  }
}

/**
 * A worker's `classify` hook, guarded: a hook that throws, or answers something that is not a
 * failure kind, must not leave the job without an outcome. Such a job is retriable (it goes on
 * through the retry tiers to the DLQ, never lost); `onFault` hears of it (the worker logs it with
 * both errors).
 */
export function classifySafely(
  classify: ((error: unknown) => FailureKind | undefined) | undefined,
  error: unknown,
  onFault: (fault: unknown) => void,
): FailureKind {
  if (!classify) return defaultClassify(error);
  let kind: unknown;
  try {
    kind = classify(error);
  } catch (fault) {
    onFault(fault);
    return 'retriable';
  }
  if (kind === undefined) return defaultClassify(error);
  if (kind === 'retriable' || kind === 'non-retriable' || kind === 'retry-later') return kind;
  onFault(
    new TypeError(
      `classify returned ${describe(kind)}; expected 'retriable', 'non-retriable' or 'retry-later'`,
    ),
  );
  return 'retriable';
}

/** The class name recorded in `strand-error-class`. */
export function errorClassName(error: unknown): string {
  if (error instanceof Error)
    return error.name && error.name !== 'Error' ? error.name : error.constructor.name;
  return typeof error;
}
