import { AssignerProtocol } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { CO_PARTITIONED, coPartitionedAssigner, stickyShares } from '../../../src/kafka/assigner.js';

const counts: Record<string, number> = { jobs: 6, 'jobs.retry.1': 6, 'jobs.retry.2': 6, 'jobs.delay.10s': 3 };
const cluster = {
  findTopicPartitionMetadata: (topic: string) =>
    Array.from({ length: counts[topic] ?? 0 }, (_, partitionId) => ({ partitionId })),
};

/** Each member's JoinGroup metadata as its own assigner writes it, saying what it owns now. */
async function assign(members: Record<string, number[]>) {
  const metadata = (owned: number[]) =>
    coPartitionedAssigner(() => owned)({ cluster, groupId: 'g' } as never).protocol({
      topics: Object.keys(counts),
    }).metadata;
  const assigner = coPartitionedAssigner()({ cluster, groupId: 'g' } as never);
  const out = await assigner.assign({
    members: Object.entries(members).map(([memberId, owned]) => ({
      memberId,
      memberMetadata: metadata(owned),
    })),
    topics: Object.keys(counts),
  });
  return new Map(
    out.map((a) => [
      a.memberId,
      AssignerProtocol.MemberAssignment.decode(a.memberAssignment)!.assignment as Record<string, number[]>,
    ]),
  );
}

describe('co-partitioned assignment', () => {
  it('gives one member partition i of the job topic and of every tier, spread evenly over the members', async () => {
    const byMember = await assign({ 'm-b': [], 'm-a': [], 'm-c': [] });
    expect(byMember.get('m-a')).toEqual({
      jobs: [0, 1],
      'jobs.retry.1': [0, 1],
      'jobs.retry.2': [0, 1],
      'jobs.delay.10s': [0, 1],
    });
    expect(byMember.get('m-b')?.jobs).toEqual([2, 3]);
    expect(byMember.get('m-c')?.['jobs.retry.2']).toEqual([4, 5]);
    // Every topic-partition once.
    const all = [...byMember.values()].flatMap((a) =>
      Object.entries(a).flatMap(([t, ps]) => ps.map((p) => `${t}:${p}`)),
    );
    expect(all.length).toBe(6 + 6 + 6 + 3);
    expect(new Set(all).size).toBe(all.length);
  });

  it('is sticky: a member joining or leaving moves only the partitions that must move', async () => {
    const before = await assign({ 'm-a': [0, 3], 'm-b': [1, 4], 'm-c': [2, 5] });
    expect(before.get('m-a')?.jobs).toEqual([0, 3]);
    expect(before.get('m-b')?.jobs).toEqual([1, 4]);
    expect(before.get('m-c')?.jobs).toEqual([2, 5]);
    // m-b leaves: only its two partitions move.
    const after = await assign({ 'm-a': [0, 3], 'm-c': [2, 5] });
    expect(after.get('m-a')?.jobs).toEqual([0, 1, 3]);
    expect(after.get('m-c')?.jobs).toEqual([2, 4, 5]);
    // m-d joins three members of two each: it takes one from each of the two above the fair share.
    const shares = stickyShares(
      Array.from({ length: 12 }, (_, i) => i),
      [
        { id: 'a', owned: [0, 1, 2, 3] },
        { id: 'b', owned: [4, 5, 6, 7] },
        { id: 'c', owned: [8, 9, 10, 11] },
        { id: 'd', owned: [] },
      ],
    );
    const moved = [...shares].filter(([p, id]) => id !== ['a', 'b', 'c'][Math.floor(p / 4)]).length;
    expect(moved).toBe(3);
    expect([...shares.values()].filter((id) => id === 'd')).toHaveLength(3);
  });

  it('gives an index two members claim to one of them, and ignores indexes the topics do not have', () => {
    const shares = stickyShares(
      [0, 1, 2, 3],
      [
        { id: 'b', owned: [0, 1, 9] },
        { id: 'a', owned: [0] },
      ],
    );
    expect([...shares.keys()].sort()).toEqual([0, 1, 2, 3]);
    expect(shares.get(0)).toBe('a');
    expect(shares.get(1)).toBe('b');
    expect([...shares.values()].filter((id) => id === 'a')).toHaveLength(2);
  });

  it('reads a member without Strand metadata (an older worker) as owning nothing', async () => {
    const assigner = coPartitionedAssigner()({ cluster, groupId: 'g' } as never);
    const out = await assigner.assign({
      members: [
        { memberId: 'm-a', memberMetadata: Buffer.alloc(0) },
        { memberId: 'm-b', memberMetadata: Buffer.from('not kafka metadata') },
      ],
      topics: ['jobs'],
    });
    expect(out).toHaveLength(2);
  });

  it('offers its own protocol name (a worker offers round robin as well, for older members)', () => {
    const assigner = coPartitionedAssigner()({ cluster, groupId: 'g' } as never);
    expect(assigner.protocol({ topics: ['jobs'] }).name).toBe(CO_PARTITIONED);
  });
});
