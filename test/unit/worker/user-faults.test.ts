import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { classifySafely, normalizeThrown, RetryLaterError } from '../../../src/failure/errors.js';
import { emitGuarded } from '../../../src/worker/events.js';

// User code the worker calls besides the handler must never leave a job without an outcome (issue 25, defect 3).

const bomb = () =>
  Object.defineProperty(new Error('x'), 'message', {
    get() {
      throw new Error('getter bomb');
    },
  });

describe('what a handler throws', () => {
  it.each([
    ['a string', 'oops', /threw the string "oops", not an Error/],
    ['null', null, /threw null, not an Error/],
    ['undefined', undefined, /threw undefined, not an Error/],
    ['a number', 42, /threw the number 42/],
    ['a plain object', { code: 1 }, /threw an object \[object Object\]/],
    ['an Error whose message getter throws', bomb(), /cannot be read/],
    // Found by the simulation: `instanceof` on it throws (a listener threw one; its job started over).
    [
      'a proxy whose prototype cannot be read',
      new Proxy(
        {},
        {
          getPrototypeOf() {
            throw new Error('hostile');
          },
        },
      ),
      /threw an object that cannot be inspected/,
    ],
  ])('%s becomes a readable Error', (_what, value, message) => {
    const e = normalizeThrown(value) as Error;
    expect(e).toBeInstanceOf(Error);
    expect(e.name).toBe('NonErrorThrown');
    expect(e.message).toMatch(message);
  });

  it('a sane Error, and Strand routing errors, pass unchanged', () => {
    const plain = new TypeError('bad');
    const later = new RetryLaterError({ delayMs: 10 });
    expect(normalizeThrown(plain)).toBe(plain);
    expect(normalizeThrown(later)).toBe(later);
  });
});

describe('classify', () => {
  it('a classify that throws, or answers no failure kind, makes the job retriable and reports the fault', () => {
    const faults: unknown[] = [];
    const onFault = (f: unknown) => faults.push(f);
    expect(
      classifySafely(
        () => {
          throw new Error('bug');
        },
        new Error('x'),
        onFault,
      ),
    ).toBe('retriable');
    expect(classifySafely(() => 'nonsense' as never, new Error('x'), onFault)).toBe('retriable');
    expect(classifySafely(() => undefined, new TypeError('x'), onFault)).toBe('non-retriable');
    expect(classifySafely(() => 'retry-later', new Error('x'), onFault)).toBe('retry-later');
    expect(faults).toHaveLength(2);
    expect(String(faults[1])).toMatch(/classify returned the string "nonsense"/);
  });
});

describe('event listeners', () => {
  it('one that throws or rejects is reported; every other listener still hears the event', async () => {
    const emitter = new EventEmitter();
    const heard: string[] = [];
    const faults: unknown[] = [];
    emitter.on('job:started', () => {
      throw new Error('sync');
    });
    emitter.on('job:started', async () => {
      throw 'async';
    });
    emitter.once('job:started', () => heard.push('once'));
    emitter.on('job:started', () => heard.push('last'));
    expect(emitGuarded(emitter, 'job:started', [{}], (_e, f) => faults.push(f))).toBe(true);
    expect(emitGuarded(emitter, 'job:started', [{}], (_e, f) => faults.push(f))).toBe(true);
    await new Promise((r) => setImmediate(r));
    expect(heard).toEqual(['once', 'last', 'last']);
    expect(faults).toHaveLength(4);
  });
});
