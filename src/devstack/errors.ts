/** A failure of the local stack that the user can act on; the message is one line. */
export class DevStackError extends Error {
  readonly code = 'DEVSTACK';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'DevStackError';
  }
}
