import { describe, expect, it } from 'vitest';
import { createLogger } from '../../../src/observability/logger.js';
import type { OffsetCommit, TopicRecords, TransactionPort } from '../../../src/ports.js';
import { systemClock } from '../../../src/timing/clock.js';
import { PartitionTracker } from '../../../src/worker/partition-tracker.js';
import { TransactionRounds } from '../../../src/worker/rounds.js';
import { WorkItem } from '../../../src/worker/work-item.js';

/** A transaction port that records each round and can be told to refuse them. */
class FakePort implements TransactionPort {
  rounds: { records: readonly TopicRecords[]; offset?: OffsetCommit | undefined }[] = [];
  fences = 0;
  failFences = 0;
  refuse = false;
  async fence(): Promise<void> {
    this.fences++;
    if (this.failFences-- > 0) throw new Error('coordinator loading');
  }
  async commitRound(round: {
    records: readonly TopicRecords[];
    offset?: OffsetCommit | undefined;
  }): Promise<number[]> {
    if (this.refuse) throw Object.assign(new Error('fenced'), { type: 'PRODUCER_FENCED' });
    this.rounds.push(round);
    return round.records.flatMap((r) => r.messages.map(() => this.next++));
  }
  next = 0;
  async release(): Promise<void> {}
  async stop(): Promise<void> {}
}

function setup() {
  const port = new FakePort();
  const gaveUp: string[] = [];
  let full = 0;
  const rounds = new TransactionRounds({
    port,
    clock: systemClock,
    logger: createLogger({ level: 'silent' }),
    random: () => 0,
    full: () => full++,
    current: () => true,
    giveUp: (tp) => gaveUp.push(tp),
  });
  const tracker = new PartitionTracker('payments', 2);
  const item = (offset: number, followUps = 1) => {
    tracker.accept(offset);
    const it = new WorkItem(
      'payments',
      2,
      { offset: String(offset), key: null, value: null },
      0,
      tracker,
      0,
      0,
    );
    for (let i = 0; i < followUps; i++)
      TransactionRounds.add(it, 'ledger', { key: 'k', value: Buffer.from(`${offset}/${i}`), headers: {} });
    return it;
  };
  const done = (it: WorkItem) => {
    it.tracker.complete(Number(it.offset));
    rounds.settled(it, true);
  };
  const offset = (): OffsetCommit => ({
    topic: 'payments',
    partition: 2,
    offset: tracker.commitPoint()!,
    metadata: '',
  });
  return { port, rounds, tracker, item, done, offset, gaveUp, full: () => full };
}

describe('exactly-once rounds', () => {
  it('a round carries exactly the writes of the jobs marked done before it, and the next one starts empty', async () => {
    const { port, rounds, tracker, item, done, offset } = setup();
    const a = item(10, 2);
    const b = item(11);
    const c = item(12);
    done(a);
    done(c); // out of order: in the offset map, its writes in this round too
    expect(await rounds.commit(tracker, offset())).toBe(true);
    expect(port.rounds[0]!.offset!.offset).toBe(11);
    expect(port.rounds[0]!.records.flatMap((r) => r.messages.map((m) => String(m.value)))).toEqual([
      '10/0',
      '10/1',
      '12/0',
    ]);
    done(b);
    expect(rounds.hasStaged(tracker)).toBe(true);
    await rounds.commit(tracker, offset());
    expect(port.rounds[1]!.offset!.offset).toBe(13);
    expect(port.rounds[1]!.records.flatMap((r) => r.messages.map((m) => String(m.value)))).toEqual(['11/0']);
    expect(rounds.hasStaged(tracker)).toBe(false);
  });

  it('a round made now (parking writes) carries what was staged first, then its records, and returns their offsets', async () => {
    const { port, rounds, tracker, item, done, offset } = setup();
    const a = item(10);
    item(11);
    done(a);
    const parked = [{ key: 'g\0k:x', value: Buffer.from('state'), headers: {}, partition: 2 }];
    const carried = { key: 'x', value: Buffer.from('tier'), headers: {} };
    const placed = await rounds.commitNow(tracker, offset(), [
      { topic: 'payments.parked', messages: parked },
      { topic: 'payments-retry-1', messages: [carried] },
    ]);
    // The staged follow-up of job 10 took offset 0; the parking record 1, the carried record 2.
    expect(placed).toEqual([1, 2]);
    expect(port.rounds[0]!.offset!.offset).toBe(11);
    expect(port.rounds[0]!.records.map((r) => r.topic)).toEqual([
      'ledger',
      'payments.parked',
      'payments-retry-1',
    ]);
    expect(rounds.hasStaged(tracker)).toBe(false);
    // Without an offset to commit, what is staged waits for the next round; the records go alone.
    done(item(12));
    await rounds.commitNow(tracker, undefined, [{ topic: 'payments.parked', messages: parked }]);
    expect(port.rounds[1]!.offset).toBeUndefined();
    expect(port.rounds[1]!.records.map((r) => r.topic)).toEqual(['payments.parked']);
    expect(rounds.hasStaged(tracker)).toBe(true);
  });

  it('a round made now that fails breaks the ownership like any round, and later ones are refused', async () => {
    const { port, rounds, tracker, item, done, offset, gaveUp } = setup();
    done(item(10));
    port.refuse = true;
    await expect(rounds.commitNow(tracker, offset(), [])).rejects.toThrow('fenced');
    expect(gaveUp).toEqual(['payments:2']);
    expect(rounds.isBroken(tracker)).toBe(true);
    port.refuse = false;
    await expect(rounds.commitNow(tracker, offset(), [])).rejects.toThrow('its round failed');
    expect(port.rounds).toHaveLength(0);
  });

  it('a refused round breaks its ownership: told to the jobs, nothing staged later, the partition given up', async () => {
    const { port, rounds, tracker, item, done, offset, gaveUp } = setup();
    const told: boolean[] = [];
    const a = item(5);
    a.onRound = (committed) => told.push(committed);
    done(a);
    port.refuse = true;
    expect(await rounds.commit(tracker, offset())).toBe(false);
    expect(told).toEqual([false]);
    expect(gaveUp).toEqual(['payments:2']);
    expect(rounds.isBroken(tracker)).toBe(true);
    const b = item(6);
    b.onRound = (committed) => told.push(committed);
    done(b);
    expect(told).toEqual([false, false]);
    expect(rounds.hasStaged(tracker)).toBe(false);
  });

  it('a job whose round committed is told so (its idempotency done marker waits for this)', async () => {
    const { rounds, tracker, item, done, offset } = setup();
    const told: boolean[] = [];
    const a = item(1, 0);
    a.onRound = (committed) => told.push(committed);
    done(a);
    expect(told).toEqual([]);
    await rounds.commit(tracker, offset());
    expect(told).toEqual([true]);
  });

  it('asks for an early round at the size limit, and drops what a revoked partition staged', () => {
    const { rounds, tracker, item, done, full } = setup();
    done(item(1, 5000));
    expect(full()).toBe(1);
    rounds.released('payments:2');
    expect(rounds.hasStaged(tracker)).toBe(false);
  });

  it('fences a new partition again until the coordinator answers', async () => {
    const { port, rounds, tracker } = setup();
    port.failFences = 2;
    await rounds.fenceAll([tracker]);
    expect(port.fences).toBe(3);
  });
});
