import { describe, expect, it } from 'vitest';
import { createKeyPartitioner } from '../../../src/kafka/partitioner.js';

/**
 * Kafka's Utils.murmur2, written here from the published algorithm (seed 0x9747b28c, m 0x5bd1e995,
 * r 24), independently of kafkajs, so the test does not trust the code it checks.
 */
function javaMurmur2(data: Buffer): number {
  const length = data.length;
  const seed = 0x9747b28c;
  const m = 0x5bd1e995;
  const r = 24;
  let h = seed ^ length;
  const length4 = length >> 2;
  for (let i = 0; i < length4; i++) {
    const i4 = i << 2;
    let k =
      (data[i4]! & 0xff) +
      ((data[i4 + 1]! & 0xff) << 8) +
      ((data[i4 + 2]! & 0xff) << 16) +
      ((data[i4 + 3]! & 0xff) << 24);
    k = Math.imul(k, m);
    k ^= k >>> r;
    k = Math.imul(k, m);
    h = Math.imul(h, m);
    h ^= k;
  }
  const index = length4 << 2;
  const rest = length - index;
  if (rest >= 3) h ^= (data[index + 2]! & 0xff) << 16;
  if (rest >= 2) h ^= (data[index + 1]! & 0xff) << 8;
  if (rest >= 1) {
    h ^= data[index]! & 0xff;
    h = Math.imul(h, m);
  }
  h ^= h >>> 13;
  h = Math.imul(h, m);
  h ^= h >>> 15;
  return h | 0;
}

const javaPartition = (key: string, n: number) => (javaMurmur2(Buffer.from(key, 'utf8')) & 0x7fffffff) % n;

describe('key partitioner', () => {
  it('the reference murmur2 reproduces the values in Kafka UtilsTest.testMurmur2', () => {
    const known: [string, number][] = [
      ['21', -973932308],
      ['foobar', -790332482],
      ['a-little-bit-long-string', -985981536],
      ['a-little-bit-longer-string', -1486304829],
      ['lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8', -58897971],
      ['abc', 479470107],
    ];
    for (const [key, hash] of known) expect(javaMurmur2(Buffer.from(key)), key).toBe(hash);
  });

  it('agrees with the Java default partitioner on a table of keys and partition counts', () => {
    const partitionFor = createKeyPartitioner();
    const keys = [
      'acct-1',
      'acct-42',
      'acct-999',
      '21',
      'foobar',
      'abc',
      'ключ',
      '客户-7',
      '',
      'x'.repeat(300),
    ];
    for (let i = 0; i < 200; i++) keys.push(`key-${i * 7919}`);
    for (const n of [1, 3, 6, 12, 50]) {
      for (const key of keys) expect(partitionFor('t', key, n), `${key} / ${n}`).toBe(javaPartition(key, n));
    }
  });

  it('spreads null keys over all partitions', () => {
    const partitionFor = createKeyPartitioner();
    const seen = new Set<number>();
    for (let i = 0; i < 60; i++) seen.add(partitionFor('t', null, 6));
    expect(seen.size).toBe(6);
  });
});
