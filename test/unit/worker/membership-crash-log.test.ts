import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../../src/observability/logger.js';
import { systemClock } from '../../../src/timing/clock.js';
import { Membership } from '../../../src/worker/membership.js';
import { RunState } from '../../../src/worker/run-state.js';

/** A crash report as kafkajs gives it: a KafkaJS error, retriable or not. */
function kafkaError(message: string, retriable: boolean): Error {
  return Object.assign(new Error(message), { name: 'KafkaJSProtocolError', retriable });
}

function membership() {
  const lines: { level: number; msg: string; reason?: string; err?: unknown }[] = [];
  const destination = new Writable({
    write(chunk, _enc, done) {
      for (const l of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(l));
      done();
    },
  });
  const state = new RunState();
  state.phase = 'running';
  const counter = { inc: () => undefined };
  const m = new Membership({
    options: { groupId: 'g' } as never,
    state,
    assignment: { revokeAll: () => undefined, assign: () => Promise.resolve() } as never,
    dispatcher: { pump: () => undefined } as never,
    committer: {} as never,
    consumer: {} as never,
    clock: systemClock,
    logger: createLogger({ level: 'debug', destination }),
    metrics: { rebalances: counter, consumerRestarts: counter } as never,
    random: () => 0.5,
    idle: async () => undefined,
    emit: () => undefined,
    unknownTopic: () => undefined,
  });
  return { m, lines };
}

const DEBUG = 20;
const WARN = 40;

describe('a consumer crash the client restarts by itself', () => {
  it('before the first join, a retriable fault is one debug line; after a join, one warning line without a stack', () => {
    const { m, lines } = membership();
    m.hooks.crashed(kafkaError('The group coordinator is not available', true), true);
    m.hooks.assigned({ jobs: [0, 1] });
    m.hooks.crashed(
      kafkaError("The coordinator is loading and hence can't process requests for this group", true),
      true,
    );
    const crashes = lines.filter((l) => l.msg !== 'assignment received');
    expect(crashes.map((l) => [l.level, l.msg, l.reason])).toEqual([
      [DEBUG, 'consumer not in the group yet; the client retries', 'The group coordinator is not available'],
      [
        WARN,
        'consumer crashed; the client restarts it',
        "The coordinator is loading and hence can't process requests for this group",
      ],
    ]);
    expect(crashes.every((l) => l.err === undefined)).toBe(true);
  });

  it('a fault that is not retriable keeps its stack, before a join too', () => {
    const { m, lines } = membership();
    m.hooks.crashed(kafkaError('Not authorized to access group', false), true);
    expect(lines.map((l) => [l.level, l.msg])).toEqual([[WARN, 'consumer crashed; the client restarts it']]);
    expect(JSON.stringify(lines[0]?.err)).toContain('Not authorized to access group');
  });
});
