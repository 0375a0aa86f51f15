import { StrandError } from '../errors.js';

export type DecodeReason = 'bad-magic' | 'unknown-schema-id' | 'truncated' | 'schema-mismatch';

/** A record value that cannot be decoded. Never retriable: the bytes will not change. */
export class DecodeError extends StrandError {
  readonly reason: DecodeReason;
  readonly byteLength: number;
  readonly schemaId: number | undefined;
  constructor(
    reason: DecodeReason,
    message: string,
    info: { byteLength: number; schemaId?: number; cause?: unknown },
  ) {
    super('DECODE', `${reason}: ${message}`, { retriable: false, cause: info.cause });
    this.reason = reason;
    this.byteLength = info.byteLength;
    this.schemaId = info.schemaId;
  }
}

/** The registry did not answer (network, 5xx, timeout). Retriable: nothing is wrong with the data. */
export class RegistryUnavailableError extends StrandError {
  constructor(message: string, cause?: unknown) {
    super('REGISTRY_UNAVAILABLE', message, { retriable: true, cause });
  }
}

/**
 * The registry refused this client (HTTP 401/403) or its TLS certificate could not be verified:
 * a configuration fault, so it is not retried like an outage.
 */
export class RegistryAccessError extends StrandError {
  constructor(message: string, cause?: unknown) {
    super('CONFIG', message, { retriable: false, cause });
  }
}

/** The registry refused a schema (incompatible with the subject's rule, or invalid). */
export class SchemaRejectedError extends StrandError {
  constructor(message: string, cause?: unknown) {
    super('SCHEMA_REJECTED', message, { retriable: false, cause });
  }
}

/** With `autoRegister: false`, the schema is not registered under the subject. */
export class SchemaNotFoundError extends StrandError {
  constructor(message: string, cause?: unknown) {
    super('SCHEMA_NOT_FOUND', message, { retriable: false, cause });
  }
}

/** Job data does not match its schema; `paths` names each bad field. */
export class ValidationError extends StrandError {
  readonly paths: string[];
  constructor(message: string, paths: string[]) {
    super('VALIDATION', message, { retriable: false });
    this.paths = paths;
  }
}
