import { StrandError } from '../errors.js';

/** A bad option; the message starts with the path of the bad field (`retry.tiers[2]: ...`). */
export class ConfigError extends StrandError {
  readonly path: string;
  constructor(path: string, message: string) {
    super('CONFIG', path ? `${path}: ${message}` : message, { retriable: false });
    this.path = path;
  }
}
