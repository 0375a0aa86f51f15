/**
 * Completed offsets above a commit point, carried in the commit's metadata (as the Confluent
 * Parallel Consumer does), so the next owner of a partition skips jobs that already finished out
 * of order instead of running them again. Format: `s1:<base64 bitmap>`; bit i = offset point+1+i.
 *
 * The metadata has a size limit (Kafka's `offset.metadata.max.bytes`, 4096 by default), so a map
 * can only cover so many offsets above the commit point. Nothing is ever cut off: the intake stops
 * accepting records of a partition whose next offset would fall outside the map (the Parallel
 * Consumer blocks such a partition the same way) until its oldest job finishes.
 */
const PREFIX = 's1:';
/** Kafka's default offset.metadata.max.bytes is 4096; keep a margin. */
export const DEFAULT_METADATA_MAX_CHARS = 4000;

/** Offsets above a commit point that a map of at most `maxChars` characters can cover. */
export function offsetMapCapacity(maxChars: number = DEFAULT_METADATA_MAX_CHARS): number {
  // base64: 4 characters per 3 bytes, no padding when the byte count is a multiple of 3.
  return Math.max(0, Math.floor((maxChars - PREFIX.length) / 4) * 3 * 8);
}

/**
 * The map of `doneAbove` (ascending, all > `point`), or undefined when it does not fit in
 * `maxChars` (never truncated: a cut map would make the next owner run finished jobs again).
 */
export function encodeOffsetMap(
  point: number,
  doneAbove: readonly number[],
  maxChars: number = DEFAULT_METADATA_MAX_CHARS,
): string | undefined {
  if (doneAbove.length === 0) return '';
  const span = doneAbove[doneAbove.length - 1]! - point;
  if (span > offsetMapCapacity(maxChars)) return undefined;
  const bytes = Buffer.alloc(Math.ceil(span / 8));
  for (const offset of doneAbove) {
    const bit = offset - point - 1;
    if (bit >= 0) bytes[bit >> 3]! |= 1 << (bit & 7);
  }
  return PREFIX + bytes.toString('base64');
}

export function decodeOffsetMap(point: number, metadata: string | null | undefined): Set<number> {
  const done = new Set<number>();
  if (!metadata?.startsWith(PREFIX)) return done;
  const bytes = Buffer.from(metadata.slice(PREFIX.length), 'base64');
  for (let i = 0; i < bytes.length * 8; i++) {
    if (bytes[i >> 3]! & (1 << (i & 7))) done.add(point + 1 + i);
  }
  return done;
}
