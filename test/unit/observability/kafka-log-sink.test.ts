import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger, kafkaLogSink } from '../../../src/observability/logger.js';

function capture() {
  const lines: { level: number; msg: string; kafka?: Record<string, unknown> }[] = [];
  const destination = new Writable({
    write(chunk, _enc, done) {
      for (const l of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(l));
      done();
    },
  });
  let now = 0;
  const sink = kafkaLogSink(createLogger({ level: 'debug', destination }), () => now);
  return { lines, sink, advance: (ms: number) => (now += ms) };
}

const WARN = 40;
const DEBUG = 20;

describe('kafkaLogSink', () => {
  it('puts transient start-up trouble at debug, in Strand words, without the stack', () => {
    const { lines, sink } = capture();
    sink('error', 'Response GroupCoordinator(key: 10, version: 2)', {
      error: 'The group coordinator is not available',
      stack: 'KafkaJSProtocolError: …\n    at …',
    });
    sink(
      'error',
      'Failed to connect to seed broker, trying another broker from the list: Connection error: connect ECONNREFUSED 127.0.0.1:1',
      {
        retryCount: 0,
      },
    );
    sink('error', 'Response Metadata(key: 3, version: 6)', {
      error: 'There is no leader for this topic-partition as we are in the middle of a leadership election',
    });
    expect(lines.map((l) => [l.level, l.msg])).toEqual([
      [DEBUG, 'the group coordinator is not ready yet; retrying'],
      [DEBUG, 'cannot reach a Kafka broker; retrying'],
      [DEBUG, 'a partition has no leader yet; retrying'],
    ]);
    expect(lines[0]?.kafka).toEqual({
      message: 'Response GroupCoordinator(key: 10, version: 2)',
      error: 'The group coordinator is not available',
    });
  });

  it('leaves kafkajs\' "Restarting the consumer" at debug: the worker logs the crash itself, with its error', () => {
    const { lines, sink } = capture();
    sink('error', 'Restarting the consumer in 100ms', { retryTime: 100, groupId: 'g' });
    expect(lines.map((l) => [l.level, l.msg])).toEqual([[DEBUG, 'Restarting the consumer in 100ms']]);
  });

  it('warns once when the trouble lasts 30 s, then at most every 30 s; a quiet spell starts over', () => {
    const { lines, sink, advance } = capture();
    const refused = () =>
      sink('error', 'Connection error: connect ECONNREFUSED 10.0.0.1:9092', { broker: '10.0.0.1:9092' });
    for (let s = 0; s <= 65; s += 5) {
      refused();
      advance(5000);
    }
    const warnings = lines.filter((l) => l.level >= WARN);
    expect(warnings.map((l) => l.msg)).toEqual([
      'cannot reach a Kafka broker; retrying (for 30 s)',
      'cannot reach a Kafka broker; retrying (for 60 s)',
    ]);
    advance(60_000); // quiet
    refused();
    expect(lines.filter((l) => l.level >= WARN)).toHaveLength(2);
    expect(lines.at(-1)?.level).toBe(DEBUG);
  });

  it('puts CONCURRENT_TRANSACTIONS (a transaction begun while the last one completes) at debug, not counted as trouble', () => {
    const { lines, sink, advance } = capture();
    for (let s = 0; s <= 65; s += 5) {
      sink('error', 'Response AddPartitionsToTxn(key: 24, version: 1)', {
        error:
          'The producer attempted to update a transaction while another concurrent operation on the same transaction was ongoing',
      });
      sink(
        'error',
        'Failed to send messages: The producer attempted to update a transaction while another concurrent operation on the same transaction was ongoing',
        { retryCount: 0 },
      );
      advance(5000);
    }
    expect(lines.every((l) => l.level === DEBUG)).toBe(true);
  });

  it("puts kafkajs' notice on a transactional producer's bounded retries at debug (they are bounded on purpose)", () => {
    const { lines, sink } = capture();
    sink('warn', 'Limiting retries for the idempotent producer may invalidate EoS guarantees', {});
    expect(lines.map((l) => l.level)).toEqual([DEBUG]);
  });

  it('keeps the level of everything else kafkajs says', () => {
    const { lines, sink } = capture();
    sink('error', '[Consumer] Crash: KafkaJSNonRetriableError: something new', { groupId: 'g' });
    sink('warn', 'KafkaJS v2.0.0 switched default partitioner', {});
    expect(lines.map((l) => l.level)).toEqual([50, WARN]);
  });
});
