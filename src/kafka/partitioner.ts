import { Partitioners, type PartitionMetadata } from 'kafkajs';

/**
 * Partition choice identical to the Java client's default for keyed records
 * (`toPositive(murmur2(key)) % numPartitions`), so Java, Go and Strand producers agree.
 * Null keys are spread round-robin.
 */
export function createKeyPartitioner(): (
  topic: string,
  key: string | Buffer | null,
  numPartitions: number,
) => number {
  const partitioner = Partitioners.DefaultPartitioner();
  const metadata = new Map<number, PartitionMetadata[]>();
  const message: { key: string | Buffer | null; value: null } = { key: null, value: null };
  // Job keys repeat (accounts, orders); hashing each once keeps the producer's CPU for encoding.
  const cache = new Map<string, number>();
  return (topic, key, numPartitions) => {
    const cacheKey = typeof key === 'string' ? `${numPartitions}\u0000${key}` : undefined;
    if (cacheKey !== undefined) {
      const hit = cache.get(cacheKey);
      if (hit !== undefined) return hit;
    }
    let partitionMetadata = metadata.get(numPartitions);
    if (!partitionMetadata) {
      partitionMetadata = Array.from({ length: numPartitions }, (_, i) => ({
        partitionId: i,
        leader: 0,
        partitionErrorCode: 0,
        replicas: [],
        isr: [],
      }));
      metadata.set(numPartitions, partitionMetadata);
    }
    message.key = key;
    const partition = partitioner({ topic, partitionMetadata, message });
    if (cacheKey !== undefined) {
      if (cache.size >= 50_000) cache.clear();
      cache.set(cacheKey, partition);
    }
    return partition;
  };
}
