/** The closed set of error codes Strand raises. */
export type StrandErrorCode =
  | 'CONFIG'
  | 'DECODE'
  | 'VALIDATION'
  | 'REGISTRY_UNAVAILABLE'
  | 'SCHEMA_REJECTED'
  | 'SCHEMA_NOT_FOUND'
  | 'KAFKA'
  | 'STORE_UNAVAILABLE'
  | 'NON_RETRIABLE'
  | 'RETRY_LATER'
  | 'JOB_TIMEOUT';

const BRAND = Symbol.for('strand.error');

/** Base of Strand's errors: a code, a `retriable` flag and a `cause` chain. */
export class StrandError extends Error {
  readonly [BRAND] = true;
  readonly code: StrandErrorCode;
  readonly retriable: boolean;
  constructor(code: StrandErrorCode, message: string, opts: { retriable?: boolean; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.code = code;
    this.retriable = opts.retriable ?? false;
    this.name = new.target.name;
  }
}

/** Recognises Strand errors across module copies (a branded check, not `instanceof` alone). */
export function isStrandError(error: unknown, code?: StrandErrorCode): error is StrandError {
  return (
    typeof error === 'object' &&
    error !== null &&
    (error as Record<symbol, unknown>)[BRAND] === true &&
    (code === undefined || (error as StrandError).code === code)
  );
}

/** Certificate problems: a configuration fault, not an outage, so never retried as one. */
const TLS_FAILURE =
  /CERT_|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|ERR_TLS|ERR_SSL|certificate|self[- ]signed|wrong version number/i;

/** The TLS verification problem somewhere in an error's cause chain (its first line), if any. */
export function tlsProblem(error: unknown): string | undefined {
  for (
    let e = error as { message?: string; code?: string; cause?: unknown } | undefined;
    e;
    e = e.cause as typeof e
  ) {
    const message = e.message ?? '';
    if (TLS_FAILURE.test(`${e.code ?? ''} ${message}`))
      return (message.split('\n')[0] ?? message).replace(/^(Connection error|network): /, '');
  }
  return undefined;
}
