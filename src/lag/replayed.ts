import { createHash } from 'node:crypto';

/**
 * Which records of one DLQ partition a `strand dlq replay` group re-published. Each replay batch
 * commits its group's position together with this set (in the commit's metadata, in the same Kafka
 * transaction as the re-published jobs), so the DLQ depth can subtract exactly what was replayed:
 * a filtered replay that skips records no longer makes them look replayed.
 */
export interface ReplayedSet {
  /** Replayed offsets as sorted, disjoint, non-adjacent half-open runs `[from, to)`. */
  runs: [number, number][];
  /**
   * Only when the runs no longer fit the metadata (Kafka allows 4096 bytes): the oldest runs folded
   * into a count of replayed offsets within `[from, to)`, positions unknown. Every run lies above.
   */
  folded?: { from: number; to: number; count: number };
}

/** A job topic's replay groups: `strand-dlq-replay.<topic>.<hash of the filter>`. */
export function replayGroupPrefix(topic: string): string {
  return `strand-dlq-replay.${topic}.`;
}

/** The replay group of one filter, so each filter resumes where it stopped. */
export function replayGroupName(
  topic: string,
  f: { errorClass?: string | undefined; key?: string | undefined; since?: number | undefined },
): string {
  const hash = createHash('sha256')
    .update(JSON.stringify([f.errorClass ?? null, f.key ?? null, f.since ?? null]))
    .digest('hex')
    .slice(0, 12);
  return `${replayGroupPrefix(topic)}${hash}`;
}

const PREFIX = 'r1:';
/** Kafka's default offset.metadata.max.bytes is 4096; base64 is one byte per character. */
const MAX_CHARS = 4000;

function pushVarint(out: number[], n: number): void {
  let v = Math.max(0, Math.floor(n));
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
}

function readVarints(bytes: Buffer): number[] {
  const out: number[] = [];
  let value = 0;
  let scale = 1;
  for (const b of bytes) {
    value += (b & 0x7f) * scale;
    if (b & 0x80) scale *= 0x80;
    else {
      out.push(value);
      value = 0;
      scale = 1;
    }
  }
  return out;
}

function encodeRaw(set: ReplayedSet): string {
  const out: number[] = [];
  const base = set.folded?.from ?? set.runs[0]?.[0] ?? 0;
  const foldedEnd = set.folded ? set.folded.to : base;
  pushVarint(out, base);
  pushVarint(out, foldedEnd - base);
  pushVarint(out, set.folded?.count ?? 0);
  let prev = foldedEnd;
  for (const [from, to] of set.runs) {
    pushVarint(out, from - prev);
    pushVarint(out, to - from);
    prev = to;
  }
  return PREFIX + Buffer.from(out).toString('base64');
}

/** Folds the oldest `n` runs into the counted prefix. */
function fold(set: ReplayedSet, n: number): ReplayedSet {
  const taken = set.runs.slice(0, n);
  if (taken.length === 0) return set;
  const count = taken.reduce((s, [from, to]) => s + (to - from), set.folded?.count ?? 0);
  return {
    runs: set.runs.slice(n),
    folded: { from: set.folded?.from ?? taken[0]![0], to: taken[taken.length - 1]![1], count },
  };
}

/** Commit metadata for a replayed set; folds the oldest runs into a count when it would not fit. */
export function encodeReplayed(set: ReplayedSet, maxChars = MAX_CHARS): string {
  let current = set;
  let text = encodeRaw(current);
  while (text.length > maxChars && current.runs.length > 0) {
    // About four characters per run: fold enough of them at once, at least one.
    const excess = Math.max(1, Math.ceil((text.length - maxChars) / 4));
    current = fold(current, excess);
    text = encodeRaw(current);
  }
  return text;
}

/** The set in a replay group's commit metadata, or undefined when the metadata is not one. */
export function decodeReplayed(metadata: string | null | undefined): ReplayedSet | undefined {
  if (!metadata?.startsWith(PREFIX)) return undefined;
  const v = readVarints(Buffer.from(metadata.slice(PREFIX.length), 'base64'));
  if (v.length < 3) return undefined;
  const [base, foldedLen, count] = v as [number, number, number];
  const set: ReplayedSet = { runs: [] };
  if (foldedLen > 0) set.folded = { from: base, to: base + foldedLen, count };
  let prev = base + foldedLen;
  for (let i = 3; i + 1 < v.length; i += 2) {
    const from = prev + v[i]!;
    const to = from + v[i + 1]!;
    set.runs.push([from, to]);
    prev = to;
  }
  return set;
}

/** The set with `offsets` added (runs merged). */
export function addReplayed(set: ReplayedSet, offsets: number[]): ReplayedSet {
  if (offsets.length === 0) return set;
  const all: [number, number][] = [...set.runs, ...offsets.map((o): [number, number] => [o, o + 1])];
  all.sort((a, b) => a[0] - b[0]);
  const runs: [number, number][] = [];
  for (const [from, to] of all) {
    const last = runs[runs.length - 1];
    if (last && from <= last[1]) last[1] = Math.max(last[1], to);
    else runs.push([from, to]);
  }
  return set.folded ? { runs, folded: set.folded } : { runs };
}

/** The set without offsets below `low` (records the DLQ no longer retains). */
export function pruneReplayed(set: ReplayedSet, low: number): ReplayedSet {
  const runs = set.runs
    .filter(([, to]) => to > low)
    .map(([from, to]): [number, number] => [Math.max(from, low), to]);
  const f = set.folded;
  if (!f || f.to <= low) return { runs };
  if (f.from >= low) return { runs, folded: f };
  // Retention removed part of the folded range: keep the share of the count that is left.
  const kept = Math.round((f.count * (f.to - low)) / (f.to - f.from));
  return { runs, folded: { from: low, to: f.to, count: Math.min(kept, f.to - low) } };
}

/**
 * Records of the DLQ partition `[low, high)` that no replay group re-published: the retained records
 * minus the union of the groups' replayed offsets. Exact unless a set had to fold runs into a count
 * (more than about a thousand separate runs in one partition), where the count is spread evenly.
 */
export function unreplayedCount(low: number, high: number, sets: ReplayedSet[]): number {
  if (high <= low) return 0;
  const runs = sets
    .flatMap((s) => s.runs)
    .map(([from, to]): [number, number] => [Math.max(from, low), Math.min(to, high)])
    .filter(([from, to]) => to > from)
    .sort((a, b) => a[0] - b[0]);
  let replayed = 0;
  let covered = low;
  for (const [from, to] of runs) {
    const start = Math.max(from, covered);
    if (to > start) {
      replayed += to - start;
      covered = to;
    }
  }
  for (const s of sets) {
    const f = s.folded;
    if (!f) continue;
    const overlap = Math.min(f.to, high) - Math.max(f.from, low);
    if (overlap > 0) replayed += Math.round((f.count * overlap) / (f.to - f.from));
  }
  return Math.max(0, high - low - replayed);
}

/** True when `offset` is in one of the sets (a folded range counts as replayed: its positions are unknown). */
export function wasReplayed(sets: readonly ReplayedSet[] | undefined, offset: number): boolean {
  return (sets ?? []).some(
    (s) =>
      s.runs.some(([from, to]) => offset >= from && offset < to) ||
      (s.folded !== undefined && offset >= s.folded.from && offset < s.folded.to),
  );
}
