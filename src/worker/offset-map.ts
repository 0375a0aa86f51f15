/**
 * Completed offsets above a commit point, carried in the commit's metadata (as the Confluent
 * Parallel Consumer does), so the next owner of a partition skips jobs that already finished out
 * of order instead of running them again. Format: `s1:<base64 bitmap>`; bit i = offset point+1+i.
 */
const PREFIX = 's1:';
/** Kafka's default offset.metadata.max.bytes is 4096. */
const MAX_CHARS = 4000;

export function encodeOffsetMap(point: number, doneAbove: readonly number[]): string {
  if (doneAbove.length === 0) return '';
  const maxBits = Math.floor(((MAX_CHARS - PREFIX.length) * 3) / 4) * 8;
  const span = Math.min(doneAbove[doneAbove.length - 1]! - point, maxBits);
  const bytes = Buffer.alloc(Math.ceil(span / 8));
  for (const offset of doneAbove) {
    const bit = offset - point - 1;
    if (bit < 0 || bit >= span) continue;
    bytes[bit >> 3]! |= 1 << (bit & 7);
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
