import { loadAvroSchemaFile } from '../src/codec/index.js';
import type { Logger } from '../src/observability/logger.js';
import { createLogger } from '../src/observability/logger.js';
import { JobProducer, type JobProducerOptions } from '../src/producer/job-producer.js';

export const paymentSchema = loadAvroSchemaFile('schemas/payment.avsc');

export interface Payment {
  paymentId: string;
  accountId: string;
  amountCents: number;
  currency: 'EUR' | 'USD' | 'GBP' | 'CHF';
  sequence: number;
  createdAt: number;
  memo: string | null;
}

/**
 * The `j`-th payment over `keys` accounts; `seqs` holds each account's last sequence, so the
 * per-account `sequence` (1, 2, ...) lets a check read per-key order from the data alone.
 */
export function payment(
  j: number,
  keys: number,
  seqs: Map<string, number>,
  memo: string | null = null,
): { key: string; data: Payment } {
  const accountId = `acct-${j % keys}`;
  const sequence = (seqs.get(accountId) ?? 0) + 1;
  seqs.set(accountId, sequence);
  return {
    key: accountId,
    data: {
      paymentId: `pay-${j}`,
      accountId,
      amountCents: j,
      currency: 'EUR',
      sequence,
      createdAt: Date.now(),
      memo,
    },
  };
}

/** A connected producer of payment jobs on `topic`. */
export async function paymentProducer(
  conn: { brokers: string[]; registryUrl: string },
  topic: string,
  logger: Logger = createLogger({ level: 'silent' }),
  options: Pick<JobProducerOptions, 'tracing'> = {},
): Promise<JobProducer<Payment>> {
  const p = new JobProducer<Payment>({
    brokers: conn.brokers,
    registry: { url: conn.registryUrl },
    topic,
    schema: paymentSchema,
    logger,
    ...options,
  });
  await p.connect();
  return p;
}

/**
 * Enqueues payments over `keys` accounts in successive calls, continuing the numbering and the
 * per-account sequences, so a backlog and later top-ups form one ordered stream per key.
 */
export class PaymentFeed {
  /** Acknowledged job ids in enqueue order. */
  readonly jobIds: string[] = [];
  private readonly seqs = new Map<string, number>();
  private next = 0;

  private constructor(
    private readonly producer: JobProducer<Payment>,
    private readonly keys: number,
  ) {}

  static async open(
    conn: { brokers: string[]; registryUrl: string },
    topic: string,
    keys: number,
  ): Promise<PaymentFeed> {
    return new PaymentFeed(await paymentProducer(conn, topic), keys);
  }

  async enqueue(
    count: number,
    opts: { memo?: (i: number) => string | null; batch?: number } = {},
  ): Promise<string[]> {
    const batch = opts.batch ?? 1000;
    const ids: string[] = [];
    for (let done = 0; done < count; ) {
      const jobs = Array.from({ length: Math.min(batch, count - done) }, () => {
        const i = this.next++;
        return payment(i, this.keys, this.seqs, opts.memo ? opts.memo(i) : null);
      });
      const results = await this.producer.enqueueMany(jobs);
      for (const r of results) {
        ids.push(r.jobId);
        this.jobIds.push(r.jobId);
      }
      done += jobs.length;
    }
    return ids;
  }

  /**
   * Tops the topic up with `perTick` jobs every `tickMs` until `until()` holds or `maxMs` passed, so
   * every partition keeps receiving work (a worker that joins late still has jobs to run).
   */
  async feedWhile(
    until: () => boolean,
    o: { perTick: number; tickMs: number; maxMs: number },
  ): Promise<void> {
    const by = Date.now() + o.maxMs;
    while (!until() && Date.now() < by) {
      const tick = Date.now();
      await this.enqueue(o.perTick);
      await new Promise((r) => setTimeout(r, Math.max(0, o.tickMs - (Date.now() - tick))));
    }
  }

  close(): Promise<void> {
    return this.producer.disconnect();
  }
}

/** Enqueues `count` payments over `keys` accounts with a feed of its own; returns their job ids. */
export async function enqueuePaymentBacklog(
  conn: { brokers: string[]; registryUrl: string },
  topic: string,
  count: number,
  keys: number,
  opts: { memo?: (i: number) => string | null; batch?: number } = {},
): Promise<string[]> {
  const feed = await PaymentFeed.open(conn, topic, keys);
  try {
    return await feed.enqueue(count, opts);
  } finally {
    await feed.close();
  }
}
