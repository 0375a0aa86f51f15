import type { DelayBucket } from './delays.js';

/** Names of a job topic's retry tiers and dead-letter topic. */
export interface TopicNames {
  main: string;
  tiers: string[];
  dlq: string;
  /** Parked jobs of keys waiting behind a failed job (strict key order): `<topic>.parked`, compacted. */
  parked: string;
  /** Delay bucket topics (delayed jobs), shortest first; empty or absent: the topic has none. */
  delays?: DelayBucket[];
}

export function topicNames(
  topic: string,
  tierCount: number,
  opts: { tierPrefix?: string; dlq?: string } = {},
): TopicNames {
  const prefix = opts.tierPrefix ?? `${topic}.retry.`;
  return {
    main: topic,
    tiers: Array.from({ length: tierCount }, (_, i) => `${prefix}${i + 1}`),
    dlq: opts.dlq ?? `${topic}.dlq`,
    parked: `${topic}.parked`,
  };
}
