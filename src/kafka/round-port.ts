import type { Kafka, PartitionOffset, Producer, Transaction } from 'kafkajs';
import type { Logger } from '../observability/logger.js';
import type { RoundRequest, TransactionPort } from '../ports.js';
import { type PartitionCounts, sendAcknowledged } from './send.js';
import { KeyedSerial, sendOffsetsInTransaction, takeTransactionalId } from './transaction.js';

export interface KafkaTransactionPortOptions {
  groupId: string;
  counts: PartitionCounts;
  logger: Logger;
  /** The coordinator aborts a transaction open longer than this. @defaultValue 60000 */
  transactionTimeoutMs?: number;
}

/** The transactional id of one input partition: the pre-KIP-447 scheme (kafkajs has no group fencing). */
export function transactionalIdOf(groupId: string, topic: string, partition: number): string {
  return `strand-eos.${groupId}.${topic}.${partition}`;
}

/**
 * Exactly-once rounds on kafkajs: one transactional producer per owned input partition, each under
 * the partition's own transactional id, so the next owner's `fence` (InitProducerId) bumps the
 * epoch and the previous owner's open transaction is aborted and its next step refused
 * (PRODUCER_FENCED / INVALID_PRODUCER_EPOCH). Steps of one partition run one after another.
 *
 * kafkajs leaves a producer whose EndTxn failed in a state it cannot leave (COMMITTING), so a failed
 * round closes its producer: the core gives the partition up and fences it afresh.
 */
export class KafkaTransactionPort implements TransactionPort {
  private readonly producers = new Map<string, Producer>();
  /** Steps of one input partition (`topic:partition`), in turn. */
  private readonly serial = new KeyedSerial<string>();

  constructor(
    private readonly kafka: Kafka,
    private readonly opts: KafkaTransactionPortOptions,
  ) {}

  /** The port of a worker with `exactlyOnce`; undefined without. */
  static forWorker(
    o: { exactlyOnce: boolean; groupId: string },
    kafka: Kafka,
    counts: PartitionCounts,
    logger: Logger,
  ): KafkaTransactionPort | undefined {
    return o.exactlyOnce
      ? new KafkaTransactionPort(kafka, { groupId: o.groupId, counts, logger })
      : undefined;
  }

  fence(topic: string, partition: number): Promise<void> {
    return this.serial.run(`${topic}:${partition}`, async () => {
      await this.close(topic, partition);
      const producer = await takeTransactionalId(this.kafka, {
        transactionalId: transactionalIdOf(this.opts.groupId, topic, partition),
        transactionTimeoutMs: this.opts.transactionTimeoutMs,
        retry: { retries: 5, initialRetryTime: 100, maxRetryTime: 2000 },
      });
      this.producers.set(`${topic}:${partition}`, producer);
    });
  }

  commitRound(round: RoundRequest): Promise<number[]> {
    const { topic, partition } = round;
    return this.serial.run(`${topic}:${partition}`, async () => {
      const producer = this.producers.get(`${topic}:${partition}`);
      if (!producer) throw new Error(`no transactional producer for ${topic}[${partition}] (not fenced)`);
      const tx = await producer.transaction();
      try {
        const placed =
          round.records.length > 0
            ? await sendAcknowledged(
                tx,
                round.records.map(({ topic: t, messages }) => ({
                  topic: t,
                  messages: messages.map((m) => ({ ...m })),
                })),
                { counts: this.opts.counts, inTransaction: true },
              )
            : [];
        if (round.offset) {
          const { offset, metadata } = round.offset;
          await sendOffsetsInTransaction(tx, {
            consumerGroupId: this.opts.groupId,
            topics: [
              { topic, partitions: [{ partition, offset: String(offset), metadata } as PartitionOffset] },
            ],
          });
        }
        await this.end(tx);
        return placed.map((p) => Number(p.offset));
      } catch (error) {
        await tx.abort().catch(() => undefined);
        await this.close(topic, partition);
        throw error;
      }
    });
  }

  /** Commits a round's transaction (a seam: tests hold a round open here to fence it meanwhile). */
  protected async end(tx: Transaction): Promise<void> {
    await tx.commit();
  }

  release(topic: string, partition: number): Promise<void> {
    return this.serial.run(`${topic}:${partition}`, () => this.close(topic, partition));
  }

  /** Closes every producer (the worker stops). */
  async stop(): Promise<void> {
    await Promise.all(
      [...this.producers.keys()].map((tp) => {
        const cut = tp.lastIndexOf(':');
        return this.release(tp.slice(0, cut), Number(tp.slice(cut + 1)));
      }),
    );
  }

  private async close(topic: string, partition: number): Promise<void> {
    const tp = `${topic}:${partition}`;
    const producer = this.producers.get(tp);
    this.producers.delete(tp);
    await producer
      ?.disconnect()
      .catch((error: unknown) =>
        this.opts.logger.warn({ err: error, tp }, 'could not disconnect a transactional producer'),
      );
  }
}
