import { type Kafka, Partitioners, type Producer, type RetryOptions, type Transaction } from 'kafkajs';
import { retryWithBackoff } from '../timing/backoff.js';

/**
 * Answers of the transaction coordinator that pass with time. CONCURRENT_TRANSACTIONS comes when a
 * transaction starts with its offsets right after the previous one committed: the coordinator is
 * still writing that one's markers. kafkajs retries it for AddPartitionsToTxn (the first step of a
 * send) but not for AddOffsetsToTxn (tulios/kafkajs#430, #1068), so a transaction that sends no
 * record, only a position, failed after the records of the earlier ones had gone out.
 */
const TRANSIENT = new Set([
  'CONCURRENT_TRANSACTIONS',
  'COORDINATOR_LOAD_IN_PROGRESS',
  'COORDINATOR_NOT_AVAILABLE',
  'NOT_COORDINATOR',
]);

/** How long a transaction step is asked again: well within kafkajs' transaction timeout (60 s). */
const BUDGET_MS = 20_000;

export type OffsetsInTransaction = Parameters<Transaction['sendOffsets']>[0];

/**
 * `tx.sendOffsets`, asked again with the `transaction` retry policy while the coordinator answers
 * with a transient error (kafkajs leaves the transaction in its state, and the coordinator takes
 * the same offsets twice as once). Any other error, or the same one past the budget, is thrown.
 */
export async function sendOffsetsInTransaction(
  tx: Pick<Transaction, 'sendOffsets'>,
  offsets: OffsetsInTransaction,
  opts: { budgetMs?: number; wait?: (ms: number) => Promise<void>; random?: () => number } = {},
): Promise<void> {
  const giveUpAt = Date.now() + (opts.budgetMs ?? BUDGET_MS);
  await retryWithBackoff('transaction', () => tx.sendOffsets(offsets), {
    onError: (error) => {
      const type = (error as { type?: unknown }).type;
      if (typeof type !== 'string' || !TRANSIENT.has(type) || Date.now() >= giveUpAt) throw error;
    },
    wait: opts.wait ?? ((ms) => new Promise((r) => setTimeout(r, ms))),
    ...(opts.random ? { random: opts.random } : {}),
  });
}

/**
 * Fences every earlier producer with the same transactional id, now. kafkajs asks for the
 * transactional producer id only at the first `transaction()`, not at `connect()`: until then an
 * earlier run (another `strand dlq replay` of the same filter, a pick still in flight) may still
 * commit, and whatever this run read of the group's position and replayed set would be stale.
 * An empty transaction ended at once takes the id (the coordinator aborts the earlier one's open
 * transaction and refuses its next step) without writing anything.
 */
export async function fenceEarlierTransactions(producer: Pick<Producer, 'transaction'>): Promise<void> {
  const tx = await producer.transaction();
  await tx.abort();
}

/**
 * A transactional producer under `transactionalId` that holds the id: connected, and its
 * InitProducerId made (the coordinator aborts and waits out the previous holder's open transaction,
 * and refuses that holder's next step). Disconnected again when either fails.
 */
export async function takeTransactionalId(
  kafka: Kafka,
  o: { transactionalId: string; transactionTimeoutMs?: number | undefined; retry: RetryOptions },
): Promise<Producer> {
  const producer = kafka.producer({
    transactionalId: o.transactionalId,
    idempotent: true,
    maxInFlightRequests: 1,
    transactionTimeout: o.transactionTimeoutMs ?? 60_000,
    allowAutoTopicCreation: false,
    // Every record gets an explicit partition (sendAcknowledged); this only silences kafkajs' v2 notice.
    createPartitioner: Partitioners.DefaultPartitioner,
    retry: o.retry,
  });
  try {
    await producer.connect();
    await fenceEarlierTransactions(producer);
  } catch (error) {
    await producer.disconnect().catch(() => undefined);
    throw error;
  }
  return producer;
}

/**
 * Steps run one after another per key (a partition): each waits for the key's earlier steps to
 * settle, whatever they did; a key with nothing under way holds no entry.
 */
export class KeyedSerial<K> {
  private readonly chains = new Map<K, Promise<unknown>>();

  run<T>(key: K, step: () => Promise<T>): Promise<T> {
    const next = (this.chains.get(key) ?? Promise.resolve()).catch(() => undefined).then(step);
    this.chains.set(key, next);
    void next
      .catch(() => undefined)
      .then(() => {
        if (this.chains.get(key) === next) this.chains.delete(key);
      });
    return next;
  }
}
