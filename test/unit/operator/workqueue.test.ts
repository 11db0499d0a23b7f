import {
  BucketRateLimiter,
  ItemExponentialFailureRateLimiter,
  MaxOfRateLimiter,
  defaultControllerRateLimiter,
} from '../../../operator/runtime/ratelimit.js';
import { WorkQueue } from '../../../operator/runtime/workqueue.js';
import { FakeClock } from '../../helpers/fake-clock.js';

describe('ItemExponentialFailureRateLimiter', () => {
  it('doubles from 5 ms per failure up to 1000 s, per key, and forget resets', () => {
    const l = new ItemExponentialFailureRateLimiter(5, 1000_000);
    const delays = Array.from({ length: 20 }, () => l.when('a'));
    expect(delays.slice(0, 5)).toEqual([5, 10, 20, 40, 80]);
    expect(delays[17]).toBe(655_360);
    expect(delays[18]).toBe(1000_000);
    expect(delays[19]).toBe(1000_000);
    expect(l.when('b')).toBe(5);
    expect(l.numRequeues('a')).toBe(20);
    l.forget('a');
    expect(l.numRequeues('a')).toBe(0);
    expect(l.when('a')).toBe(5);
  });

  it('stays capped after very many failures', () => {
    const l = new ItemExponentialFailureRateLimiter(5, 1000_000);
    for (let i = 0; i < 2000; i++) l.when('x');
    expect(l.when('x')).toBe(1000_000);
  });
});

describe('BucketRateLimiter', () => {
  it('lets a burst through, then spaces requests at 1/qps, refilling with time', () => {
    const clock = new FakeClock();
    const l = new BucketRateLimiter(10, 3, clock);
    expect([l.when('a'), l.when('b'), l.when('c')]).toEqual([0, 0, 0]);
    expect(l.when('d')).toBe(100);
    expect(l.when('e')).toBe(200);
    clock.advance(1000);
    // 10 tokens refilled but capped at the burst of 3, minus the 2 borrowed.
    expect(l.when('f')).toBe(0);
  });
});

describe('defaultControllerRateLimiter', () => {
  it('is the max of per-item backoff and the overall bucket', () => {
    const clock = new FakeClock();
    const l = defaultControllerRateLimiter(clock);
    expect(l.when('a')).toBe(5);
    expect(l.when('a')).toBe(10);
    const m = new MaxOfRateLimiter(
      new ItemExponentialFailureRateLimiter(1, 10),
      new BucketRateLimiter(1, 1, clock),
    );
    expect(m.when('k')).toBe(1);
    expect(m.when('k')).toBe(1000);
  });
});

function newQueue(clock = new FakeClock()) {
  return { clock, q: new WorkQueue(clock, defaultControllerRateLimiter(clock)) };
}

describe('WorkQueue', () => {
  it('deduplicates keys that are waiting', async () => {
    const { q } = newQueue();
    q.add('ns/a');
    q.add('ns/b');
    q.add('ns/a');
    expect(q.len()).toBe(2);
    expect(await q.get()).toBe('ns/a');
    expect(await q.get()).toBe('ns/b');
    expect(q.len()).toBe(0);
  });

  it('never hands a key being processed to a second worker, and requeues it on done', async () => {
    const { q } = newQueue();
    q.add('k');
    const k = await q.get();
    q.add('k');
    expect(q.len()).toBe(0);
    q.add('k');
    q.done(k as string);
    expect(q.len()).toBe(1);
    expect(await q.get()).toBe('k');
    q.done('k');
    expect(q.len()).toBe(0);
  });

  it('wakes a waiting getter when a key arrives', async () => {
    const { q } = newQueue();
    const pending = q.get();
    q.add('x');
    await expect(pending).resolves.toBe('x');
  });

  it('addAfter fires at the time and keeps only the earliest pending time', () => {
    const { q, clock } = newQueue();
    q.addAfter('k', 1000);
    q.addAfter('k', 5000);
    q.addAfter('k', 300);
    expect(q.len()).toBe(0);
    clock.advance(299);
    expect(q.len()).toBe(0);
    clock.advance(1);
    expect(q.len()).toBe(1);
    expect(clock.pending()).toBe(0);
  });

  it('addRateLimited backs off exponentially until forget', () => {
    const { q, clock } = newQueue();
    q.addRateLimited('k');
    q.addRateLimited('k');
    expect(q.pendingDelayed().get('k')).toBe(clock.now() + 5);
    clock.advance(5);
    expect(q.len()).toBe(1);
    expect(q.numRequeues('k')).toBe(2);
    q.forget('k');
    expect(q.numRequeues('k')).toBe(0);
  });

  it('shutDown releases getters with undefined and refuses adds', async () => {
    const { q, clock } = newQueue();
    const g = q.get();
    q.addAfter('later', 100);
    q.shutDown();
    await expect(g).resolves.toBeUndefined();
    q.add('x');
    clock.advance(200);
    expect(q.len()).toBe(0);
    await expect(q.get()).resolves.toBeUndefined();
  });

  it('reports metrics: adds, depth, latency and work duration', async () => {
    const clock = new FakeClock();
    const seen = {
      adds: 0,
      retries: 0,
      depth: [] as number[],
      latency: [] as number[],
      work: [] as number[],
    };
    const q = new WorkQueue(clock, defaultControllerRateLimiter(clock), {
      add: () => seen.adds++,
      retry: () => seen.retries++,
      depth: (n) => seen.depth.push(n),
      queueLatency: (s) => seen.latency.push(s),
      workDuration: (s) => seen.work.push(s),
    });
    q.add('a');
    clock.advance(2000);
    const k = await q.get();
    clock.advance(500);
    q.done(k as string);
    q.addRateLimited('a');
    expect(seen.adds).toBe(1);
    expect(seen.retries).toBe(1);
    expect(seen.latency).toEqual([2]);
    expect(seen.work).toEqual([0.5]);
    expect(seen.depth).toEqual([1, 0]);
  });
});
