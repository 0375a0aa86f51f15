import type pg from 'pg';
import { StrandError } from '../errors.js';

/**
 * The `pg` driver, loaded when first needed: it is an optional peer dependency (the application's
 * own driver, the one its transactions run on), so `import 'strand'` works without it.
 */
export async function loadPg(): Promise<typeof pg> {
  try {
    const mod = (await import('pg')) as unknown as { default?: typeof pg } & typeof pg;
    return mod.default ?? mod;
  } catch (error) {
    throw new StrandError('CONFIG', 'the outbox needs the "pg" package: npm install pg', { cause: error });
  }
}
