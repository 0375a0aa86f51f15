import { AvroCodec, parseWire } from '../codec/index.js';
import { HEADERS, headerString } from '../headers.js';
import type { BrowsedRecord } from '../kafka/browse.js';
import type { SchemaCatalog } from './catalog.js';

/** A record as the console shows it: decoded with its schema, or why it does not decode. */
export interface ShownRecord {
  topic: string;
  partition: number;
  offset: string;
  timestamp: number;
  key: string | null;
  jobId: string | undefined;
  attempt: string | undefined;
  headers: [string, string][];
  valueBytes: number;
  schema?: { id: number; subject?: string; version?: number };
  data?: unknown;
  decodeError?: string;
  /** The first bytes of an undecodable value, as text with escapes. */
  rawPreview?: string;
}

/** The job topic a tier or DLQ record belongs to (its origin header, else the name). */
export function jobTopicOf(topic: string, headers: [string, string][]): string {
  const origin = headers.find(([k]) => k === HEADERS.originTopic)?.[1];
  return origin ?? topic.replace(/\.(dlq|retry\.\d+)$/, '');
}

function preview(value: Buffer | null): string {
  if (!value) return '(null)';
  const head = value.subarray(0, 256);
  // Control bytes and undecodable sequences as escapes; the page escapes the markup.
  let shown = '';
  for (const c of head.toString('utf8')) {
    const code = c.charCodeAt(0);
    const control = (code < 0x20 && c !== '\n' && c !== '\t') || code === 0x7f;
    shown += c === '\ufffd' ? '\\ufffd' : control ? `\\x${code.toString(16).padStart(2, '0')}` : c;
  }
  return value.length > head.length ? `${shown}… (${value.length} bytes)` : shown;
}

/** Decodes records with the registry (Confluent wire format, Avro), caching schemas as a worker does. */
export class RecordDecoder {
  private readonly codec: AvroCodec;

  constructor(private readonly catalog: SchemaCatalog) {
    this.codec = new AvroCodec(catalog.gateway);
  }

  async show(r: BrowsedRecord): Promise<ShownRecord> {
    const m = r.message;
    const headers: [string, string][] = Object.keys(m.headers ?? {}).map((k) => [
      k,
      headerString(m.headers, k) ?? '',
    ]);
    const shown: ShownRecord = {
      topic: r.topic,
      partition: r.partition,
      offset: m.offset,
      timestamp: Number(m.timestamp),
      key: m.key ? m.key.toString('utf8') : null,
      jobId: headerString(m.headers, HEADERS.jobId),
      attempt: headerString(m.headers, HEADERS.attempt),
      headers,
      valueBytes: m.value?.length ?? 0,
    };
    let schemaId: number | undefined;
    try {
      schemaId = parseWire(m.value).schemaId;
    } catch {
      // not the wire format: the decode below says why
    }
    try {
      const decoded = await this.codec.decode(m.value);
      shown.data = decoded.data;
    } catch (error) {
      shown.decodeError = (error as Error).message.split('\n')[0] ?? String(error);
      shown.rawPreview = preview(m.value);
    }
    if (schemaId !== undefined) {
      const where = await this.catalog.whereIs(schemaId, `${jobTopicOf(r.topic, headers)}-value`);
      shown.schema = { id: schemaId, ...(where ?? {}) };
    }
    return shown;
  }

  showAll(records: BrowsedRecord[]): Promise<ShownRecord[]> {
    return Promise.all(records.map((r) => this.show(r)));
  }
}
