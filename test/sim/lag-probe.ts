/**
 * Lag and desired replicas as the worker computes them (`computeLag` and `DesiredReplicas` of
 * src/lag, the code `Worker.refreshLag` and `strand exporter` run), against a model admin that
 * answers from the model's logs and the coordinator's committed offsets; and the truth the sim
 * computes itself from the model, to compare with.
 */

import type { Admin } from '../../src/kafka/client.js';
import { computeLag, DesiredReplicas, type PartitionLag, tierDelaysOf, totalLag } from '../../src/lag/lag.js';
import type { Cluster, Group } from './kafka-model.js';
import { tpOf } from './kafka-model.js';

/** What the checker needs of kafkajs' admin for `computeLag`, answered from the model. */
export function modelAdmin(cluster: Cluster, group: Group): Admin {
  const partitions = (topic: string) => Array.from({ length: cluster.partitionsOf(topic) }, (_, p) => p);
  const admin = {
    fetchOffsets: async ({ topics }: { groupId: string; topics: string[] }) =>
      topics.map((topic) => ({
        topic,
        partitions: partitions(topic).map((partition) => {
          const c = group.committed.get(tpOf(topic, partition));
          return { partition, offset: String(c ? c.offset : -1), metadata: c ? c.metadata : null };
        }),
      })),
    fetchTopicOffsets: async (topic: string) =>
      partitions(topic).map((partition) => {
        const end = cluster.log(tpOf(topic, partition)).length;
        return { partition, offset: String(end), high: String(end), low: '0' };
      }),
    // kafkajs: the first offset whose timestamp is at or after `ts`, else the high watermark.
    fetchTopicOffsetsByTimestamp: async (topic: string, ts: number) =>
      partitions(topic).map((partition) => {
        const log = cluster.log(tpOf(topic, partition));
        const i = log.findIndex((e) => e.timestamp >= ts);
        return { partition, offset: String(i < 0 ? log.length : i) };
      }),
  };
  return admin as unknown as Admin;
}

/** Offsets above `point` that a committed offset map (`s1:<base64 bitmap>`) says are done, below `end`. */
export function mapDone(point: number, metadata: string | null | undefined, end: number): Set<number> {
  const out = new Set<number>();
  if (!metadata?.startsWith('s1:')) return out;
  const bytes = Buffer.from(metadata.slice(3), 'base64');
  for (let i = 0; i < bytes.length * 8; i++)
    if ((bytes[i >> 3]! >> (i & 7)) & 1 && point + 1 + i < end) out.add(point + 1 + i);
  return out;
}

export interface LagTruth {
  tp: string;
  /** Offsets at or above the committed offset not claimed done by its map: what lag must be. */
  open: number;
  /** Of those, records without an outcome (jobs really unfinished): lag may never be below. */
  unfinished: number;
  /** Of the open ones, what is due now (job topic: all; tier: appended at least its delay ago; bucket: none). */
  due: number;
}

/** A small target, so a wrong lag shows in the replica count of a small simulation. */
export const SIM_AUTOSCALE = {
  targetLagPerReplica: 3,
  minReplicas: 1,
  maxReplicas: 50,
  scaleDownWindowMs: 0,
};

export async function workerLag(
  admin: Admin,
  groupId: string,
  topics: { main: string; tiers: readonly string[]; delays: readonly string[] },
  tierDelays: readonly number[],
  now: number,
): Promise<{ rows: PartitionLag[]; desired: number }> {
  const delayTopics = new Set(topics.delays);
  const rows = await computeLag(admin, groupId, [topics.main, ...topics.tiers, ...topics.delays], {
    tierDelays: tierDelaysOf(topics.tiers, tierDelays),
    delayTopics,
    now,
  });
  const desired = new DesiredReplicas(SIM_AUTOSCALE).update(totalLag(rows, 'due'), now);
  return { rows, desired };
}

export function desiredOf(due: number): number {
  return new DesiredReplicas(SIM_AUTOSCALE).raw(due);
}
