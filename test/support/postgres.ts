import { afterAll, beforeAll, inject } from 'vitest';
import { skipWhenMissing } from './optional.js';
import {
  type PostgresInfo,
  type PostgresMissing,
  type TestPostgres,
  type UsePostgresOptions,
  usePostgres,
} from './postgres-server.js';

export { type PostgresInfo, pgEnv, pgPool } from './postgres-server.js';

/** The PostgreSQL the global setup found or started (shared by every test file), or undefined. */
export function testPostgres(): PostgresInfo | undefined {
  const p = inject('postgres');
  return 'missing' in p ? undefined : p;
}

/** The shared PostgreSQL; without one the test is skipped with the reason (fails in CI: `skipWhenMissing`). */
export function needPostgres(ctx: { skip: (note?: string) => never }): PostgresInfo {
  const p = inject('postgres');
  if (!('missing' in p)) return p;
  skipWhenMissing(ctx, `needs PostgreSQL: ${p.missing}`);
  throw new Error('unreachable: skipWhenMissing skips or throws');
}

/**
 * A PostgreSQL for one test file, with needs the shared one may not meet (`walLevel: 'logical'`
 * for logical decoding): the shared server when it qualifies, else one of its own, started in
 * `beforeAll` and stopped and deleted in `afterAll` (hooks registered by this call, at the file's
 * top level). `need(ctx)` in a test gives it, or skips with the reason.
 */
export function postgresForFile(opts: UsePostgresOptions = {}): {
  need(ctx: { skip: (note?: string) => never }): PostgresInfo;
} {
  let found: TestPostgres | PostgresMissing | undefined;
  beforeAll(async () => {
    const shared = inject('postgres');
    if (!('missing' in shared) && (opts.walLevel !== 'logical' || shared.walLevel === 'logical')) {
      found = { ...shared, stop: async () => undefined };
      return;
    }
    found = await usePostgres(opts);
  }, 180_000);
  afterAll(async () => {
    if (found && !('missing' in found)) await found.stop();
  });
  return {
    need(ctx) {
      if (found && !('missing' in found)) return found;
      skipWhenMissing(
        ctx,
        `needs PostgreSQL: ${found?.missing ?? 'postgresForFile() was not called at the top level'}`,
      );
      throw new Error('unreachable: skipWhenMissing skips or throws');
    },
  };
}
