import { Kafka, logLevel } from 'kafkajs';
import { CONTROL_TOPIC, parseSnapshot, STATUS_TOPIC } from '../../src/status/snapshot.js';
import { rawConsume, rawProduce } from './raw-kafka.js';

/** The broker and registry a test run used. */
export interface StackTarget {
  brokers: string[];
  registryUrl: string;
}

/**
 * What tests leave on a stack that a user sees afterwards: in `strand console`, `strand lag`, the
 * registry. Each list holds only names the matcher accepted.
 */
export interface Traces {
  topics: string[];
  /** Consumer groups: the workers', replay and dry-run groups, tails that committed. */
  groups: string[];
  /** Registry subjects, soft-deleted ones included (a soft-deleted subject still blocks its name). */
  subjects: string[];
  /** Live worker status records in `__strand_status` (a worker killed before its tombstone). */
  workers: { workerId: string; group: string; topic: string }[];
  /** Group commands in `__strand_control` (pause/resume from the console). */
  controls: string[];
}

/** Topics every stack has, never a test's. */
const internal = (topic: string) => topic.startsWith('__') || topic === '_schemas';

/**
 * True for a resource named after one of `names`: the names come from `uniqueName` (a prefix and 8
 * random hex digits), and what a test makes from one contains it — `<topic>.retry.1`, `<topic>.dlq`,
 * `<topic>-value`, `strand-replay-<topic>-…`.
 */
export function madeFrom(names: Iterable<string>): (resource: string) => boolean {
  const list = [...new Set(names)];
  return (resource) => list.some((n) => resource.includes(n));
}

function kafka(target: StackTarget): Kafka {
  return new Kafka({ brokers: target.brokers, clientId: 'strand-test-cleanup', logLevel: logLevel.NOTHING });
}

async function registry(target: StackTarget, path: string, method = 'GET'): Promise<Response> {
  return fetch(`${target.registryUrl}${path}`, { method, signal: AbortSignal.timeout(10_000) });
}

/** Every record of a compacted topic in order, and the latest value of each key (tombstoned keys left out). */
async function readCompacted(
  brokers: string[],
  topic: string,
): Promise<{ all: { key: string; value: Buffer | null }[]; latest: Map<string, Buffer> }> {
  const all: { key: string; value: Buffer | null }[] = [];
  const latest = new Map<string, Buffer>();
  for (const r of await rawConsume(brokers, topic, Number.MAX_SAFE_INTEGER, { timeoutMs: 30_000 })) {
    if (r.key === null) continue;
    all.push({ key: r.key, value: r.value });
    if (r.value === null) latest.delete(r.key);
    else latest.set(r.key, r.value);
  }
  return { all, latest };
}

/** Lists the traces on `target` whose names `match` accepts. */
export async function listTraces(target: StackTarget, match: (name: string) => boolean): Promise<Traces> {
  const admin = kafka(target).admin();
  await admin.connect();
  try {
    const topics = await admin.listTopics();
    const { groups } = await admin.listGroups();
    const subjects = new Set<string>();
    for (const path of ['/subjects', '/subjects?deleted=true']) {
      const res = await registry(target, path);
      if (res.status !== 200) throw new Error(`registry GET ${path}: HTTP ${res.status}`);
      for (const subject of (await res.json()) as string[]) subjects.add(subject);
    }
    const workers: Traces['workers'] = [];
    // Workers of matching groups, stopped ones too: their status agents' tail groups are named after them.
    const workerIds = new Set<string>();
    if (topics.includes(STATUS_TOPIC)) {
      const { all, latest } = await readCompacted(target.brokers, STATUS_TOPIC);
      for (const { key, value } of all) {
        const s = parseSnapshot(value);
        if (s && (match(s.group) || match(s.topic))) workerIds.add(key);
      }
      for (const [workerId, value] of latest) {
        const s = parseSnapshot(value);
        if (s && workerIds.has(workerId)) workers.push({ workerId, group: s.group, topic: s.topic });
      }
    }
    const controls: string[] = [];
    if (topics.includes(CONTROL_TOPIC)) {
      for (const group of (await readCompacted(target.brokers, CONTROL_TOPIC)).latest.keys())
        if (match(group)) controls.push(group);
    }
    const agentGroup = (g: string) => [...workerIds].some((id) => g.startsWith(`strand-agent-${id}-`));
    return {
      topics: topics.filter((t) => !internal(t) && match(t)).sort(),
      groups: groups
        .map((g) => g.groupId)
        .filter((g) => match(g) || agentGroup(g))
        .sort(),
      subjects: [...subjects].filter(match).sort(),
      workers,
      controls,
    };
  } finally {
    await admin.disconnect();
  }
}

export function isEmpty(t: Traces): boolean {
  return (
    !t.topics.length && !t.groups.length && !t.subjects.length && !t.workers.length && !t.controls.length
  );
}

/** One line per kind, for a failure message or a log. */
export function describeTraces(t: Traces): string {
  const part = (label: string, items: string[]) =>
    items.length ? [`${label} (${items.length}): ${items.join(', ')}`] : [];
  return [
    ...part('topics', t.topics),
    ...part('consumer groups', t.groups),
    ...part('registry subjects', t.subjects),
    ...part(
      'worker status records',
      t.workers.map((w) => `${w.workerId} (group ${w.group})`),
    ),
    ...part('control records', t.controls),
  ].join('; ');
}

/**
 * Deletes consumer groups, waiting (up to `waitMs`) for those that still have members: a worker
 * killed with SIGKILL stays a member until its session times out (30 s by default). Returns the
 * groups that kept a member.
 */
async function deleteGroups(target: StackTarget, groups: string[], waitMs: number): Promise<string[]> {
  if (!groups.length) return [];
  const admin = kafka(target).admin();
  await admin.connect();
  try {
    const deadline = Date.now() + waitMs;
    let left = groups;
    for (;;) {
      const { groups: described } = await admin.describeGroups(left);
      const empty = described.filter((g) => g.members.length === 0).map((g) => g.groupId);
      if (empty.length) await admin.deleteGroups(empty).catch(() => undefined);
      left = described.filter((g) => g.members.length > 0).map((g) => g.groupId);
      if (!left.length || Date.now() > deadline) return left;
      await new Promise((r) => setTimeout(r, 1000));
    }
  } finally {
    await admin.disconnect();
  }
}

/**
 * Deletes `traces`: topics, subjects (soft, then permanently, as the Confluent API asks), status and
 * control records (tombstones, so the console forgets those workers and groups at once), and
 * consumer groups once they have no member left. Returns the groups that kept a member.
 */
export async function removeTraces(
  target: StackTarget,
  traces: Traces,
  opts: { groupWaitMs?: number } = {},
): Promise<string[]> {
  const tombstones = async (topic: string, keys: string[]) => {
    if (keys.length)
      await rawProduce(
        target.brokers,
        topic,
        keys.map((key) => ({ key, value: null })),
      );
  };
  const settled = await Promise.allSettled([
    tombstones(
      STATUS_TOPIC,
      traces.workers.map((w) => w.workerId),
    ),
    tombstones(CONTROL_TOPIC, traces.controls),
    (async () => {
      if (!traces.topics.length) return;
      const admin = kafka(target).admin();
      await admin.connect();
      await admin.deleteTopics({ topics: traces.topics }).catch(() => undefined);
      await admin.disconnect();
    })(),
    ...traces.subjects.map(async (subject) => {
      const path = `/subjects/${encodeURIComponent(subject)}`;
      await registry(target, path, 'DELETE');
      const res = await registry(target, `${path}?permanent=true`, 'DELETE');
      // 404: deleted already (by the test itself, or a worker's own cleanup)
      if (res.status !== 200 && res.status !== 404) {
        throw new Error(
          `the registry refused to delete subject ${subject}: HTTP ${res.status} ${(await res.text()).slice(0, 200)} (Apicurio: set apicurio.rest.deletion.artifact.enabled=true)`,
        );
      }
    }),
  ]);
  const busy = await deleteGroups(target, traces.groups, opts.groupWaitMs ?? 45_000);
  const failed = settled.find((r) => r.status === 'rejected');
  if (failed) throw failed.reason;
  return busy;
}

/**
 * Removes everything made from `names` (see `madeFrom`) and returns what is still there afterwards:
 * empty when all is gone. Deletions take a moment to show in listings, so it looks again for up to
 * 5 s, less when all that is left is groups that kept a member past `groupWaitMs` (a worker still
 * running: its status record is then published again too).
 */
export async function cleanUpNames(
  target: StackTarget,
  names: Iterable<string>,
  opts: { groupWaitMs?: number } = {},
): Promise<Traces> {
  const match = madeFrom(names);
  const found = await listTraces(target, match);
  if (isEmpty(found)) return found;
  const busy = new Set(await removeTraces(target, found, opts));
  const deadline = Date.now() + 5000;
  for (;;) {
    const left = await listTraces(target, match);
    const onlyBusy = left.groups.every((g) => busy.has(g)) && isEmpty({ ...left, groups: [] });
    if (onlyBusy || Date.now() > deadline) return left;
    await new Promise((r) => setTimeout(r, 300));
  }
}
