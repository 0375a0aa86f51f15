import { DecodeError } from './errors.js';

/** Confluent wire format: magic byte 0, 4-byte big-endian schema id, then the Avro body. */
export const MAGIC_BYTE = 0;
export const HEADER_SIZE = 5;

export function encodeWire(schemaId: number, body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(HEADER_SIZE + body.length);
  out.writeUInt8(MAGIC_BYTE, 0);
  out.writeUInt32BE(schemaId, 1);
  body.copy(out, HEADER_SIZE);
  return out;
}

/** Splits a record value into schema id and body, or throws a `DecodeError`. */
export function parseWire(value: Buffer | null | undefined): { schemaId: number; body: Buffer } {
  const length = value?.length ?? 0;
  if (!value || length === 0) {
    throw new DecodeError('truncated', 'empty or null record value', { byteLength: 0 });
  }
  if (value[0] !== MAGIC_BYTE) {
    throw new DecodeError('bad-magic', `first byte is ${value[0]}, expected 0 (Confluent wire format)`, {
      byteLength: length,
    });
  }
  if (length < HEADER_SIZE) {
    throw new DecodeError('truncated', `${length} bytes, shorter than the 5-byte wire header`, {
      byteLength: length,
    });
  }
  return { schemaId: value.readUInt32BE(1), body: value.subarray(HEADER_SIZE) };
}
