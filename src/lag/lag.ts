import type { Admin } from '../kafka/client.js';

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

/** Dead-lettered records not yet passed by any `strand dlq replay` group of the job topic. */
export async function dlqDepth(admin: Admin, jobTopic: string, dlqTopic: string): Promise<number> {
  const offsets = await admin.fetchTopicOffsets(dlqTopic);
  const prefix = `strand-dlq-replay.${jobTopic}.`;
  const groups = (await admin.listGroups()).groups.map((g) => g.groupId).filter((g) => g.startsWith(prefix));
  const replayed = new Map<number, number>();
  for (const groupId of groups) {
    const [res] = await admin.fetchOffsets({ groupId, topics: [dlqTopic] });
    for (const p of res?.partitions ?? []) {
      replayed.set(p.partition, Math.max(replayed.get(p.partition) ?? -1, Number(p.offset)));
    }
  }
  return offsets.reduce((sum, o) => {
    const from = Math.max(Number(o.low), replayed.get(o.partition) ?? -1);
    return sum + Math.max(0, Number(o.high) - from);
  }, 0);
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
