import { describe, expect, it } from 'vitest';
import type { Admin } from '../../../src/kafka/client.js';
import { computeLag, totalLag } from '../../../src/lag/lag.js';
import {
  countOffsetMap,
  decodeOffsetMap,
  encodeOffsetMap,
  offsetMapCapacity,
} from '../../../src/lag/offset-map.js';

/** An admin that answers one partition's offsets and one group's commit (lag arithmetic only). */
function adminWith(p: {
  low: number;
  high: number;
  committed?: { offset: number; metadata: string | null };
  /** First offset appended after `now − delay` (ListOffsets by timestamp). */
  notYetDueFrom?: number;
}): Admin {
  return {
    fetchOffsets: async () => [
      {
        topic: 't',
        partitions: p.committed
          ? [{ partition: 0, offset: String(p.committed.offset), metadata: p.committed.metadata }]
          : [{ partition: 0, offset: '-1', metadata: null }],
      },
    ],
    fetchTopicOffsets: async () => [
      { partition: 0, offset: String(p.high), high: String(p.high), low: String(p.low) },
    ],
    fetchTopicOffsetsByTimestamp: async () => [{ partition: 0, offset: String(p.notYetDueFrom ?? p.high) }],
  } as unknown as Admin;
}

describe('countOffsetMap', () => {
  it('counts the offsets a map marks done, below a bound, like decoding it would', () => {
    let seed = 7;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    for (let round = 0; round < 50; round++) {
      const point = Math.floor(random() * 1e9);
      const span = 1 + Math.floor(random() * offsetMapCapacity());
      const done = [
        ...new Set(
          Array.from({ length: Math.floor(random() * 300) }, () => point + 1 + Math.floor(random() * span)),
        ),
      ].sort((a, b) => a - b);
      const metadata = encodeOffsetMap(point, done);
      const decoded = [...decodeOffsetMap(point, metadata)];
      expect(countOffsetMap(point, metadata)).toBe(decoded.length);
      for (const before of [
        point,
        point + 1,
        point + 2,
        point + 9,
        point + Math.floor(span / 2),
        point + span + 1,
      ]) {
        expect(countOffsetMap(point, metadata, before), `before ${before}`).toBe(
          decoded.filter((o) => o < before).length,
        );
      }
    }
  });

  it('is 0 for no map, an empty map and metadata that is not an offset map', () => {
    expect(countOffsetMap(5, null)).toBe(0);
    expect(countOffsetMap(5, undefined)).toBe(0);
    expect(countOffsetMap(5, '')).toBe(0);
    expect(countOffsetMap(5, 'r1:AAAA')).toBe(0);
  });

  it('counts a full map (23,976 offsets) exactly', () => {
    const all = Array.from({ length: offsetMapCapacity() }, (_, i) => 1000 + 1 + i);
    const metadata = encodeOffsetMap(1000, all);
    expect(metadata!.length).toBeLessThanOrEqual(4000);
    expect(countOffsetMap(1000, metadata)).toBe(23_976);
    expect(countOffsetMap(1000, metadata, 1000 + 1 + 8)).toBe(8);
  });
});

describe('computeLag subtracts jobs done above the commit point', () => {
  it('lag = end − committed − done above it', async () => {
    // One slow job at 100, 20,000 finished behind it, 10 not yet done at the end: 11 pending.
    const done = Array.from({ length: 20_000 }, (_, i) => 101 + i);
    const admin = adminWith({
      low: 0,
      high: 20_111,
      committed: { offset: 100, metadata: encodeOffsetMap(100, done)! },
    });
    const [row] = await computeLag(admin, 'g', ['t']);
    expect(row).toMatchObject({ committed: 100, end: 20_111, doneAbove: 20_000, lag: 11, due: 11 });
  });

  it('without a commit every retained record counts; with a commit but no map, end − committed', async () => {
    expect((await computeLag(adminWith({ low: 40, high: 100 }), 'g', ['t']))[0]).toMatchObject({
      committed: null,
      doneAbove: 0,
      lag: 60,
    });
    const plain = adminWith({ low: 0, high: 100, committed: { offset: 70, metadata: '' } });
    expect((await computeLag(plain, 'g', ['t']))[0]).toMatchObject({ doneAbove: 0, lag: 30 });
  });

  it('on a retry tier, due counts only the done offsets below the first not-yet-due one', async () => {
    // Point 100; done 101–150 (due part) and 190–199 (not yet due); records from 180 on are not due.
    const done = [
      ...Array.from({ length: 50 }, (_, i) => 101 + i),
      ...Array.from({ length: 10 }, (_, i) => 190 + i),
    ];
    const admin = adminWith({
      low: 0,
      high: 300,
      committed: { offset: 100, metadata: encodeOffsetMap(100, done)! },
      notYetDueFrom: 180,
    });
    const [row] = await computeLag(admin, 'g', ['t'], { tierDelays: { t: 60_000 } });
    // Pending: 300 − 100 − 60 = 140. Due: offsets 100–179 less the 50 done = 30.
    expect(row).toMatchObject({ doneAbove: 60, lag: 140, due: 30 });
    expect(totalLag([row!], 'due')).toBe(30);
  });

  it('a delay bucket is never due, whatever its map says', async () => {
    const admin = adminWith({
      low: 0,
      high: 50,
      committed: { offset: 10, metadata: encodeOffsetMap(10, [11, 12])! },
    });
    const [row] = await computeLag(admin, 'g', ['t'], { delayTopics: new Set(['t']) });
    expect(row).toMatchObject({ lag: 38, due: 0 });
  });
});
