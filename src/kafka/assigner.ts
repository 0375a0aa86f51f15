import { AssignerProtocol, type PartitionAssigner } from 'kafkajs';

type AssignerConfig = Parameters<PartitionAssigner>[0];

/** Its group protocol name: a worker also offers kafkajs' round robin, for groups with older members. */
export const CO_PARTITIONED = 'StrandCoPartitioned';

/**
 * Partition i of every subscribed topic goes to one member: the job topic's partition with the same
 * partition of each retry tier (and delay bucket). Under strict key order the worker that ends a
 * parked key's head in a tier then owns the key's job-topic partition too, and releases the key at
 * once (parked-keys.ts `releaseNow`). Partition indexes are spread over the members in turn, the
 * members in id order, as kafkajs' round robin spreads topic-partitions.
 */
export const coPartitionedAssigner: PartitionAssigner = ({ cluster }: AssignerConfig) => ({
  name: CO_PARTITIONED,
  version: 0,
  async assign({ members, topics }) {
    const sorted = members.map((m) => m.memberId).sort();
    const assignment = new Map<string, Record<string, number[]>>();
    for (const topic of topics) {
      for (const { partitionId } of cluster.findTopicPartitionMetadata(topic)) {
        const member = sorted[partitionId % sorted.length]!;
        const mine = assignment.get(member) ?? Object.create(null);
        assignment.set(member, mine);
        const list = mine[topic] ?? [];
        mine[topic] = list;
        list.push(partitionId);
      }
    }
    return [...assignment].map(([memberId, a]) => ({
      memberId,
      memberAssignment: AssignerProtocol.MemberAssignment.encode({
        version: 0,
        assignment: a,
        userData: Buffer.alloc(0),
      }),
    }));
  },
  protocol({ topics }) {
    return {
      name: CO_PARTITIONED,
      metadata: AssignerProtocol.MemberMetadata.encode({ version: 0, topics, userData: Buffer.alloc(0) }),
    };
  },
});
