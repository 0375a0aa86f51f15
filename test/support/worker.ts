import { createLogger } from '../../src/observability/logger.js';
import type { WorkerOptions } from '../../src/worker/options.js';
import { Worker } from '../../src/worker/worker.js';
import { stack } from './helpers.js';
import type { Payment } from './jobs.js';

const quiet = createLogger({ level: 'error' });

/** An in-process payment worker on the test stack: no tiers, quiet logs, commits every 200 ms. */
export function paymentWorker(
  topic: string,
  groupId: string,
  opts: Partial<WorkerOptions<Payment>> & Pick<WorkerOptions<Payment>, 'handler'>,
): Worker<Payment> {
  return new Worker<Payment>({
    brokers: stack().brokers,
    registry: { url: stack().registryUrl },
    topic,
    groupId,
    retry: { tiers: [] },
    logger: quiet,
    commitIntervalMs: 200,
    status: false,
    ...opts,
  });
}
