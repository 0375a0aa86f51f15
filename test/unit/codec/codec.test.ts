import { describe, expect, it } from 'vitest';
import {
  assertValid,
  DecodeError,
  encodeWire,
  loadAvroSchemaFile,
  parseAvroSchema,
  parseWire,
  ValidationError,
  validationProblems,
} from '../../../src/codec/index.js';

const type = parseAvroSchema(loadAvroSchemaFile('schemas/payment.avsc'));
const good = {
  paymentId: 'p-1',
  accountId: 'acct-1',
  amountCents: -1250,
  currency: 'EUR',
  sequence: 1,
  createdAt: 1_700_000_000_000,
  memo: null,
};

describe('wire format', () => {
  it('writes magic byte 0 and the schema id big-endian before the body', () => {
    const out = encodeWire(0x01020304, Buffer.from([9, 8]));
    expect([...out]).toEqual([0, 1, 2, 3, 4, 9, 8]);
    expect(parseWire(out)).toEqual({ schemaId: 0x01020304, body: Buffer.from([9, 8]) });
  });

  it.each([
    ['empty', Buffer.alloc(0), 'truncated'],
    ['null', null, 'truncated'],
    ['magic 1', Buffer.from([1, 0, 0, 0, 1, 2]), 'bad-magic'],
    ['garbage', Buffer.from('hello world'), 'bad-magic'],
    ['short header', Buffer.from([0, 0, 1]), 'truncated'],
  ])('rejects %s with reason %s', (_, value, reason) => {
    try {
      parseWire(value);
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(DecodeError);
      expect((error as DecodeError).reason).toBe(reason);
      expect((error as DecodeError).byteLength).toBe(value?.length ?? 0);
    }
  });
});

describe('validation', () => {
  it('accepts a valid payment', () => {
    expect(validationProblems(type, good)).toEqual([]);
  });

  it('names every bad field', () => {
    const problems = validationProblems(type, { ...good, amountCents: 'ten', currency: 'XXX', extra: 1 });
    expect(problems.join('\n')).toMatch(/amountCents: expected long, got "ten"/);
    expect(problems.join('\n')).toMatch(/currency: expected .*Currency, got "XXX"/);
    expect(problems.join('\n')).toMatch(/extra: not a field of/);
  });

  it('throws a ValidationError whose message is one line with the path', () => {
    const { paymentId: _, ...missing } = good;
    try {
      assertValid(type, missing);
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(ValidationError);
      expect((error as Error).message).toContain('paymentId: expected string, got nothing');
      expect((error as Error).message).not.toContain('\n');
    }
  });
});

describe('schema files', () => {
  it('gives one-line errors for a missing file and a bad schema', () => {
    expect(() => loadAvroSchemaFile('schemas/nope.avsc')).toThrow(
      /^schema: schema file schemas\/nope.avsc not found$/,
    );
    expect(() => loadAvroSchemaFile('package.json')).toThrow(/not a valid Avro schema/);
  });
});
