import type { Admin } from '../kafka/client.js';
import {
  decodeReplayed,
  type ReplayedSet,
  replayGroupName,
  replayGroupPrefix,
  unreplayedCount,
} from './replayed.js';

/** Lag of one partition for one group. */
export interface PartitionLag {
  topic: string;
  partition: number;
  /** Log-end offset (high watermark). */
  end: number;
  /** Log-start offset (oldest retained record). */
  start: number;
  /** Committed offset, or null when the group has none for this partition. */
  committed: number | null;
  /**
   * end − committed; with no committed offset, every retained record counts (end − start),
   * which is what a worker starting from the earliest offset has to process.
   */
  lag: number;
}

/** Lag per partition of `groupId` on `topics`, from the broker (no worker needed). */
export async function computeLag(admin: Admin, groupId: string, topics: string[]): Promise<PartitionLag[]> {
  const out: PartitionLag[] = [];
  const committed = await admin.fetchOffsets({ groupId, topics });
  for (const topic of topics) {
    const offsets = await admin.fetchTopicOffsets(topic);
    const c = committed.find((x) => x.topic === topic);
    for (const o of offsets) {
      const end = Number(o.high);
      const start = Number(o.low);
      const raw = Number(c?.partitions.find((p) => p.partition === o.partition)?.offset ?? -1);
      const at = raw >= 0 ? raw : null;
      out.push({
        topic,
        partition: o.partition,
        end,
        start,
        committed: at,
        lag: Math.max(0, end - (at ?? start)),
      });
    }
  }
  return out.sort((a, b) => a.topic.localeCompare(b.topic) || a.partition - b.partition);
}

/**
 * Dead-lettered records not yet replayed: per DLQ partition, the retained records minus the union of
 * the offsets that `strand dlq replay` groups of the job topic re-published (each group keeps its
 * set in its commit metadata, see `replayed.ts`). A filtered replay (`--key a`) counts only the
 * records it sent, not the ones it skipped. A replay group committed by an older Strand (no set)
 * counts everything below its position only when it is the unfiltered group.
 */
export async function dlqDepth(admin: Admin, jobTopic: string, dlqTopic: string): Promise<number> {
  const offsets = await admin.fetchTopicOffsets(dlqTopic);
  const prefix = replayGroupPrefix(jobTopic);
  const unfiltered = replayGroupName(jobTopic, {});
  const groups = (await admin.listGroups()).groups.map((g) => g.groupId).filter((g) => g.startsWith(prefix));
  const sets = new Map<number, ReplayedSet[]>();
  for (const groupId of groups) {
    const [res] = await admin.fetchOffsets({ groupId, topics: [dlqTopic] });
    for (const p of res?.partitions ?? []) {
      const position = Number(p.offset);
      if (position < 0) continue;
      const set =
        decodeReplayed(p.metadata) ?? (groupId === unfiltered ? { runs: [[0, position]] } : undefined);
      if (!set) continue;
      const list = sets.get(p.partition);
      if (list) list.push(set);
      else sets.set(p.partition, [set]);
    }
  }
  return offsets.reduce(
    (sum, o) => sum + unreplayedCount(Number(o.low), Number(o.high), sets.get(o.partition) ?? []),
    0,
  );
}

/**
 * The desired replica count: clamp(ceil(total lag / target per replica), min, max). Scaling up
 * follows the signal at once; scaling down takes the highest value seen within the window, so a
 * brief dip does not remove workers (the HPA's stabilisation window, applied at the source).
 */
export class DesiredReplicas {
  private history: { at: number; value: number }[] = [];

  constructor(
    private readonly opts: {
      targetLagPerReplica: number;
      minReplicas: number;
      maxReplicas: number;
      scaleDownWindowMs: number;
    },
  ) {}

  raw(totalLag: number): number {
    const { targetLagPerReplica, minReplicas, maxReplicas } = this.opts;
    return Math.min(maxReplicas, Math.max(minReplicas, Math.ceil(totalLag / targetLagPerReplica)));
  }

  update(totalLag: number, now = Date.now()): number {
    this.history.push({ at: now, value: this.raw(totalLag) });
    this.history = this.history.filter((h) => h.at >= now - this.opts.scaleDownWindowMs);
    return Math.max(...this.history.map((h) => h.value));
  }
}
