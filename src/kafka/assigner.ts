import { AssignerProtocol, type PartitionAssigner } from 'kafkajs';

type AssignerConfig = Parameters<PartitionAssigner>[0];

/** Its group protocol name: a worker also offers kafkajs' round robin, for groups with older members. */
export const CO_PARTITIONED = 'StrandCoPartitioned';

/** What a member tells the group of itself: the partition indexes it owns now (its JoinGroup metadata). */
interface Owned {
  v: 1;
  p: number[];
}

function ownedOf(metadata: Buffer): number[] {
  try {
    const userData = AssignerProtocol.MemberMetadata.decode(metadata)?.userData;
    if (!userData?.length) return [];
    const o = JSON.parse(userData.toString('utf8')) as Owned;
    return o.v === 1 && Array.isArray(o.p) ? o.p.filter((p) => Number.isInteger(p) && p >= 0) : [];
  } catch {
    return []; // an older member, or another client's metadata: it owns nothing it can keep
  }
}

/**
 * Which member takes each partition index: every member gets ⌊n/m⌋ or ⌈n/m⌉ of the `n` indexes,
 * keeping as many of those it owns now as that allows (sticky: a member joining or leaving moves
 * only the indexes that must move — each move of a job-topic partition re-reads its parking
 * partition and drains its jobs). An index two members claim stays with the first in id order;
 * the rest go, lowest first, to the members below their share, in id order.
 */
export function stickyShares(indexes: readonly number[], members: { id: string; owned: number[] }[]) {
  const sorted = [...members].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const valid = new Set(indexes);
  const claimed = new Set<number>();
  const prev = new Map<string, number[]>();
  for (const m of sorted) {
    const mine = [...new Set(m.owned)].filter((p) => valid.has(p) && !claimed.has(p)).sort((a, b) => a - b);
    for (const p of mine) claimed.add(p);
    prev.set(m.id, mine);
  }
  const base = Math.floor(indexes.length / sorted.length);
  let extra = indexes.length % sorted.length;
  // The larger shares go to the members that own the most now (fewer moves), then in id order.
  const share = new Map<string, number>();
  for (const m of [...sorted].sort((a, b) => prev.get(b.id)!.length - prev.get(a.id)!.length))
    share.set(m.id, base + (extra-- > 0 ? 1 : 0));
  const owner = new Map<number, string>();
  for (const m of sorted) for (const p of prev.get(m.id)!.slice(0, share.get(m.id))) owner.set(p, m.id);
  const free = [...indexes].filter((p) => !owner.has(p)).sort((a, b) => a - b);
  for (const m of sorted) {
    let have = [...owner.values()].filter((id) => id === m.id).length;
    while (have++ < share.get(m.id)! && free.length > 0) owner.set(free.shift()!, m.id);
  }
  return owner;
}

/**
 * Partition i of every subscribed topic goes to one member: the job topic's partition with the same
 * partition of each retry tier (and delay bucket). Under strict key order the worker that ends a
 * parked key's head in a tier then owns the key's job-topic partition too, and releases the key at
 * once (parked-keys.ts `releaseNow`). The indexes are shared out by `stickyShares`: each member
 * sends the indexes it owns (`owned()`) with its JoinGroup, and keeps them where the shares allow.
 */
export function coPartitionedAssigner(owned: () => readonly number[] = () => []): PartitionAssigner {
  return ({ cluster }: AssignerConfig) => ({
    name: CO_PARTITIONED,
    version: 0,
    async assign({ members, topics }) {
      const partitionsOf = new Map(
        topics.map((t) => [t, cluster.findTopicPartitionMetadata(t).map((p) => p.partitionId)]),
      );
      const indexes = [...new Set([...partitionsOf.values()].flat())];
      const owner = stickyShares(
        indexes,
        members.map((m) => ({ id: m.memberId, owned: ownedOf(m.memberMetadata) })),
      );
      const assignment = new Map<string, Record<string, number[]>>();
      for (const [topic, partitions] of partitionsOf) {
        for (const partitionId of [...partitions].sort((a, b) => a - b)) {
          const member = owner.get(partitionId)!;
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
      const userData = Buffer.from(JSON.stringify({ v: 1, p: [...owned()] } satisfies Owned));
      return {
        name: CO_PARTITIONED,
        metadata: AssignerProtocol.MemberMetadata.encode({ version: 0, topics, userData }),
      };
    },
  });
}
