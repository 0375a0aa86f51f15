import type { Admin } from '../kafka/client.js';
import { countOffsetMap } from './offset-map.js';
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
   * Jobs finished above the committed offset, out of order (the offset map in the commit's
   * metadata, docs/architecture.md "Commits and the offset map"): not pending, not in `lag`.
   */
  doneAbove: number;
  /**
   * Records still to process: end − committed − doneAbove. With no committed offset every retained
   * record counts (end − start), which is what a worker starting from the earliest offset has to do.
   * Offsets above the commit point that hold no job (a transaction marker, an aborted record) count
   * until the commit point passes them: the worker moves it past them once the jobs before are done.
   */
  lag: number;
  /**
   * The part of `lag` that can run now: all of it on a job topic; on a retry tier, the records whose
   * delay has passed (appended at least the tier's delay ago). Desired replicas follow this, so a
   * tier full of jobs due in an hour does not scale the fleet up now.
   */
  due: number;
}

export interface LagOptions {
  /** Delay in ms of each retry-tier topic (by topic name); other topics count as due at once. */
  tierDelays?: Record<string, number>;
  /** Delay bucket topics (delayed jobs): their records are never due (they count once moved to the job topic). */
  delayTopics?: ReadonlySet<string>;
  /** The current time in ms. @defaultValue Date.now() */
  now?: number;
}

/**
 * Lag per partition of `groupId` on `topics`, from the broker (no worker needed). For a topic in
 * `opts.tierDelays`, `due` counts the records appended at or before `now − delay`: the first offset
 * whose timestamp is later (ListOffsets by timestamp) is where the not-yet-due records start. Record
 * timestamps are the producer's (CreateTime), which is when the worker routed the job to the tier.
 */
export async function computeLag(
  admin: Admin,
  groupId: string,
  topics: string[],
  opts: LagOptions = {},
): Promise<PartitionLag[]> {
  const out: PartitionLag[] = [];
  const now = opts.now ?? Date.now();
  const committed = await admin.fetchOffsets({ groupId, topics });
  for (const topic of topics) {
    const offsets = await admin.fetchTopicOffsets(topic);
    const delay = opts.tierDelays?.[topic];
    const neverDue = opts.delayTopics?.has(topic) === true;
    const notYetDue =
      delay === undefined
        ? undefined
        : new Map(
            (await admin.fetchTopicOffsetsByTimestamp(topic, now - delay + 1)).map((o) => [
              o.partition,
              Number(o.offset),
            ]),
          );
    const c = committed.find((x) => x.topic === topic);
    for (const o of offsets) {
      const end = Number(o.high);
      const start = Number(o.low);
      const commit = c?.partitions.find((p) => p.partition === o.partition);
      const raw = Number(commit?.offset ?? -1);
      const at = raw >= 0 ? raw : null;
      const from = at ?? start;
      // Done out of order above the commit point, below `upTo`: finished, so not pending (nor due).
      const doneBelow = (upTo: number) => (at === null ? 0 : countOffsetMap(at, commit?.metadata, upTo));
      const doneAbove = doneBelow(end);
      const lag = Math.max(0, end - from - doneAbove);
      // No offset answered for a partition: count it all as due rather than hide work.
      const dueEnd = Math.min(end, notYetDue?.get(o.partition) ?? end);
      out.push({
        topic,
        partition: o.partition,
        end,
        start,
        committed: at,
        doneAbove,
        lag,
        due: neverDue ? 0 : Math.min(lag, Math.max(0, dueEnd - from - doneBelow(dueEnd))),
      });
    }
  }
  return out.sort((a, b) => a.topic.localeCompare(b.topic) || a.partition - b.partition);
}

/** Total `lag` (pending records) or `due` (records that can run now) over partitions. */
export function totalLag(rows: PartitionLag[], field: 'lag' | 'due' = 'lag'): number {
  return rows.reduce((sum, r) => sum + r[field], 0);
}

/** `tierDelays` for `computeLag` from tier topic names and their delays in ms, in tier order. */
export function tierDelaysOf(
  tierTopics: readonly string[],
  delaysMs: readonly number[],
): Record<string, number> {
  const out: Record<string, number> = {};
  tierTopics.forEach((t, i) => {
    const d = delaysMs[i];
    if (d !== undefined) out[t] = d;
  });
  return out;
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
  const sets = await replayedSets(admin, jobTopic, dlqTopic);
  return offsets.reduce(
    (sum, o) => sum + unreplayedCount(Number(o.low), Number(o.high), sets.get(o.partition) ?? []),
    0,
  );
}

/** What each replay group of `jobTopic` recorded as re-published, per DLQ partition. */
export async function replayedSets(
  admin: Admin,
  jobTopic: string,
  dlqTopic: string,
): Promise<Map<number, ReplayedSet[]>> {
  const prefix = replayGroupPrefix(jobTopic);
  const unfiltered = replayGroupName(jobTopic, {});
  const groups = (await admin.listGroups()).groups.map((g) => g.groupId).filter((g) => g.startsWith(prefix));
  const sets = new Map<number, ReplayedSet[]>();
  for (const groupId of groups) {
    const [res] = await admin.fetchOffsets({ groupId, topics: [dlqTopic] });
    for (const p of res?.partitions ?? []) {
      const position = Number(p.offset);
      if (position < 0) continue;
      // Older replay groups recorded no set: the unfiltered one sent everything below its position.
      const set =
        decodeReplayed(p.metadata) ?? (groupId === unfiltered ? { runs: [[0, position]] } : undefined);
      if (set) sets.set(p.partition, [...(sets.get(p.partition) ?? []), set]);
    }
  }
  return sets;
}

/**
 * The desired replica count: clamp(ceil(total due lag / target per replica), min, max). Scaling up
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
