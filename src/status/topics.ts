import type { Admin } from '../kafka/client.js';
import { createTopicsReady } from '../kafka/topics.js';
import { CONTROL_TOPIC, consoleTopicConfigs, STATUS_TOPIC } from './snapshot.js';

/** Creates `__strand_status` and `__strand_control` (compacted, one partition each) when missing. */
export async function ensureStatusTopics(admin: Admin): Promise<void> {
  const existing = new Set(await admin.listTopics());
  const missing = [STATUS_TOPIC, CONTROL_TOPIC].filter((t) => !existing.has(t));
  await createTopicsReady(
    admin,
    missing.map((topic) => ({ topic, numPartitions: 1, configEntries: consoleTopicConfigs })),
  );
}

/** True when both topics exist (a read-only console waits for a worker to create them). */
export async function statusTopicsExist(admin: Admin): Promise<boolean> {
  const existing = new Set(await admin.listTopics());
  return existing.has(STATUS_TOPIC) && existing.has(CONTROL_TOPIC);
}
