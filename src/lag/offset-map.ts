/**
 * Completed offsets above a commit point, carried in the commit's metadata (as the Confluent
 * Parallel Consumer does), so the next owner of a partition skips jobs that already finished out
 * of order instead of running them again. Format: `s1:<base64 bitmap>`; bit i = offset point+1+i.
 *
 * The metadata has a size limit (Kafka's `offset.metadata.max.bytes`, 4096 by default), so a map
 * can only cover so many offsets above the commit point. Nothing is ever cut off: the intake stops
 * accepting records of a partition whose next offset would fall outside the map (the Parallel
 * Consumer blocks such a partition the same way) until its oldest job finishes.
 *
 * The lag reads it too (`computeLag`): a job done above the commit point is not pending.
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

/** Set bits per byte value. */
const BITS = Uint8Array.from({ length: 256 }, (_, b) => {
  let n = 0;
  for (let v = b; v; v >>= 1) n += v & 1;
  return n;
});

/**
 * How many offsets the map of a commit at `point` marks done below `before` (all of them when
 * `before` is omitted): the jobs finished out of order above the commit point, which lag must not
 * count as pending. Counted on the bitmap, without building the set (up to 23,976 offsets a partition).
 */
export function countOffsetMap(
  point: number,
  metadata: string | null | undefined,
  before = Infinity,
): number {
  if (!metadata?.startsWith(PREFIX)) return 0;
  const bytes = Buffer.from(metadata.slice(PREFIX.length), 'base64');
  // Bit i is offset point + 1 + i: bits below `limit` are offsets below `before`.
  const limit = Math.min(bytes.length * 8, Math.max(0, before - point - 1));
  const whole = limit >> 3;
  let n = 0;
  for (let i = 0; i < whole; i++) n += BITS[bytes[i]!]!;
  const rest = limit & 7;
  if (rest > 0) n += BITS[bytes[whole]! & ((1 << rest) - 1)]!;
  return n;
}
