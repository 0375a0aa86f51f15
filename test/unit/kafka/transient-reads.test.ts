import type { Admin } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { retryingTransientReads } from '../../../src/kafka/client.js';

/** An error shaped as kafkajs' KafkaJSProtocolError for the given protocol error type. */
function protocolError(type: string): Error {
  return Object.assign(new Error(type), { name: 'KafkaJSProtocolError', type, retriable: true });
}

function fakeAdmin(failures: string[]): { admin: Admin; calls: () => number } {
  let calls = 0;
  const answer = async () => {
    const failure = failures[calls++];
    if (failure) throw protocolError(failure);
    return [{ partition: 0, offset: '5', high: '5', low: '0' }];
  };
  const admin = { fetchTopicOffsets: answer, fetchTopicOffsetsByTimestamp: answer } as unknown as Admin;
  return { admin, calls: () => calls };
}

describe('admin reads retry while a leader moves or a broker is down', () => {
  it('"not the leader" twice, then an answer: the answer', async () => {
    const { admin, calls } = fakeAdmin(['NOT_LEADER_FOR_PARTITION', 'LEADER_NOT_AVAILABLE']);
    const offsets = await retryingTransientReads(admin).fetchTopicOffsets('t');
    expect(offsets[0]?.high).toBe('5');
    expect(calls()).toBe(3);
  });

  it('the same for offsets by timestamp', async () => {
    const { admin, calls } = fakeAdmin(['OFFSET_NOT_AVAILABLE']);
    await retryingTransientReads(admin).fetchTopicOffsetsByTimestamp('t', 0);
    expect(calls()).toBe(2);
  });

  it('a metadata read that picked a broker that is down is tried again', async () => {
    let calls = 0;
    const admin = {
      listTopics: async () => {
        if (calls++ === 0)
          throw Object.assign(new Error('Connection error: connect ECONNREFUSED 127.0.0.1:19092'), {
            name: 'KafkaJSConnectionError',
          });
        return ['jobs'];
      },
    } as unknown as Admin;
    expect(await retryingTransientReads(admin).listTopics()).toEqual(['jobs']);
    expect(calls).toBe(2);
  });

  it('an unknown topic fails at once (the CLI says so in one line)', async () => {
    const { admin, calls } = fakeAdmin(['UNKNOWN_TOPIC_OR_PARTITION']);
    await expect(retryingTransientReads(admin).fetchTopicOffsets('t')).rejects.toThrow(
      'UNKNOWN_TOPIC_OR_PARTITION',
    );
    expect(calls()).toBe(1);
  });

  it("gives up after ten tries and throws the broker's answer", async () => {
    const { admin, calls } = fakeAdmin(Array(20).fill('NOT_LEADER_FOR_PARTITION'));
    await expect(retryingTransientReads(admin).fetchTopicOffsets('t')).rejects.toThrow(
      'NOT_LEADER_FOR_PARTITION',
    );
    expect(calls()).toBe(10);
  }, 30_000);
});
