import { AssignerProtocol } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { CO_PARTITIONED, coPartitionedAssigner } from '../../../src/kafka/assigner.js';

const counts: Record<string, number> = { jobs: 6, 'jobs.retry.1': 6, 'jobs.retry.2': 6, 'jobs.delay.10s': 3 };
const cluster = {
  findTopicPartitionMetadata: (topic: string) =>
    Array.from({ length: counts[topic] ?? 0 }, (_, partitionId) => ({ partitionId })),
};

async function assign(memberIds: string[]) {
  const assigner = coPartitionedAssigner({ cluster, groupId: 'g', logger: undefined } as never);
  const members = memberIds.map((memberId) => ({ memberId, memberMetadata: Buffer.alloc(0) }));
  const out = await assigner.assign({ members, topics: Object.keys(counts) });
  return new Map(
    out.map((a) => [a.memberId, AssignerProtocol.MemberAssignment.decode(a.memberAssignment)!.assignment]),
  );
}

describe('co-partitioned assignment', () => {
  it('gives one member partition i of the job topic and of every tier, spread over the members', async () => {
    const byMember = await assign(['m-b', 'm-a', 'm-c']);
    expect(byMember.get('m-a')).toEqual({
      jobs: [0, 3],
      'jobs.retry.1': [0, 3],
      'jobs.retry.2': [0, 3],
      'jobs.delay.10s': [0],
    });
    expect(byMember.get('m-b')?.jobs).toEqual([1, 4]);
    expect(byMember.get('m-c')?.['jobs.retry.2']).toEqual([2, 5]);
    // Every topic-partition once.
    const all = [...byMember.values()].flatMap((a) =>
      Object.entries(a).flatMap(([t, ps]) => ps.map((p) => `${t}:${p}`)),
    );
    expect(all.length).toBe(6 + 6 + 6 + 3);
    expect(new Set(all).size).toBe(all.length);
  });

  it('offers its own protocol name (a worker offers round robin as well, for older members)', () => {
    const assigner = coPartitionedAssigner({ cluster, groupId: 'g', logger: undefined } as never);
    expect(assigner.protocol({ topics: ['jobs'] }).name).toBe(CO_PARTITIONED);
  });
});
