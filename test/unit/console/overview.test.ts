import { describe, expect, it } from 'vitest';
import { type GroupView, mostActive } from '../../../src/console/model.js';
import { pickGroups } from '../../../src/console/pages/overview.js';

function group(name: string, over: Partial<GroupView> = {}): GroupView {
  return {
    group: name,
    topic: `${name}-topic`,
    tiers: [],
    dlq: `${name}-topic.dlq`,
    history: [],
    lag: [],
    delays: [],
    lagAt: 1,
    dlqDepth: 0,
    desiredReplicas: 1,
    error: undefined,
    topicGone: false,
    activeAt: undefined,
    dlqActiveAt: undefined,
    offsetsSum: undefined,
    live: [],
    stale: [],
    pinned: false,
    control: undefined,
    completedPerSec: 0,
    failedPerSec: 0,
    oldestPendingAgeSeconds: 0,
    ...over,
  };
}

const lagOf = (n: number) => [
  { topic: 't', partition: 0, start: 0, end: n, committed: 0, doneAbove: 0, lag: n, due: n },
];

describe('console overview', () => {
  const groups = [
    group('billing', { lag: lagOf(5), dlqDepth: 9 }),
    group('audit', { lag: lagOf(50), dlqDepth: 1 }),
    group('payments', { lag: lagOf(50), dlqDepth: 9, topic: 'pay-in' }),
    group('emails', { lagAt: undefined, dlqDepth: undefined }),
  ];
  const names = (gs: GroupView[]) => gs.map((g) => g.group);

  it('sorts by name, or by lag / DLQ depth largest first (ties by name, unsampled last)', () => {
    expect(names(pickGroups(groups, '', 'name'))).toEqual(['audit', 'billing', 'emails', 'payments']);
    expect(names(pickGroups(groups, '', 'lag'))).toEqual(['audit', 'payments', 'billing', 'emails']);
    expect(names(pickGroups(groups, '', 'dlq'))).toEqual(['billing', 'payments', 'audit', 'emails']);
  });

  it('sorts by oldest pending age; groups without a live worker have none and come last', () => {
    const live = [{ snapshot: {} }] as unknown as GroupView['live'];
    const aged = [
      group('a', { live, oldestPendingAgeSeconds: 3 }),
      group('b'),
      group('c', { live, oldestPendingAgeSeconds: 30 }),
    ];
    expect(names(pickGroups(aged, '', 'age'))).toEqual(['c', 'a', 'b']);
  });

  it('searches group and topic names, in any case', () => {
    expect(names(pickGroups(groups, 'PAY-', 'name'))).toEqual(['payments']);
    expect(names(pickGroups(groups, 'i', 'name'))).toEqual(['audit', 'billing', 'emails', 'payments']);
    expect(names(pickGroups(groups, 'nothing', 'name'))).toEqual([]);
  });

  it('opens Jobs and Dead letters on the topic that moved last, none when nothing moved', () => {
    const seen = [group('a', { activeAt: 100, dlqActiveAt: 300 }), group('b', { activeAt: 200 }), group('c')];
    expect(mostActive(seen, 'jobs')).toBe('b-topic');
    expect(mostActive(seen, 'dlq')).toBe('a-topic');
    expect(mostActive([group('c')], 'jobs')).toBeUndefined();
  });
});
