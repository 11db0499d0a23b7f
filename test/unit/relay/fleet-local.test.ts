import { LocalFleetState } from '../../../relay/fleet/local.js';
import { RateLimiter } from '../../../relay/policy/rate-limit.js';

describe('LocalFleetState (per-pod rates, leases, suppressions; injected clock)', () => {
  let now: number;
  let local: LocalFleetState;
  beforeEach(() => {
    now = 1_000_000;
    local = new LocalFleetState({ now: () => now });
  });

  test('rates mean what relay/policy/rate-limit.ts means: a burst of perMinute, then one per 60/perMinute s', () => {
    const reference = new RateLimiter(() => now);
    for (let step = 0; step < 40; step++) {
      const a = local.takeRate('user:alice', 6);
      const b = reference.take('user:alice', 6);
      expect(a).toEqual({ allowed: b.allowed, retryAfterMs: b.retryAfterMs });
      now += 1_700;
    }
    now += 120_000;
    const results = Array.from({ length: 8 }, () => local.takeRate('user:alice', 6).allowed);
    expect(results).toEqual([true, true, true, true, true, true, false, false]);
    expect(local.takeRate('user:alice', 6).retryAfterMs).toBe(10_000);
    expect(local.takeRate('user:alice', 0).allowed).toBe(true);
  });

  test('leases: at most `limit` per key, counting those held through the store; released ones free a slot', () => {
    expect(local.acquireLease('site:a', 2)).toBe(true);
    local.holdLease('site:a'); // granted by the store
    expect(local.leasesHeld('site:a')).toBe(2);
    expect(local.acquireLease('site:a', 2)).toBe(false);
    expect(local.acquireLease('site:b', 2)).toBe(true);
    local.releaseLease('site:a');
    expect(local.acquireLease('site:a', 2)).toBe(true);
    expect(local.acquireLease('site:a', 0)).toBe(true); // 0: unlimited
    for (let i = 0; i < 4; i++) local.releaseLease('site:a');
    local.releaseLease('site:b');
    expect(local.leaseKeys).toBe(0);
  });

  test('suppressions expire at their ttl and keep the address exactly as given', () => {
    const e = local.suppress('Bob@example.com', 'bounce', 60);
    expect(e).toEqual({ reason: 'bounce', until: now + 60_000 });
    expect(local.isSuppressed('Bob@example.com')).toEqual(e);
    expect(local.isSuppressed('bob@example.com')).toBeNull();
    now += 59_999;
    expect(local.isSuppressed('Bob@example.com')).not.toBeNull();
    now += 1;
    expect(local.isSuppressed('Bob@example.com')).toBeNull();
    expect(local.unsuppress('Bob@example.com')).toBe(false);
    local.suppress('c@example.com', 'complaint', 10);
    expect(local.unsuppress('c@example.com')).toBe(true);
    expect(local.isSuppressed('c@example.com')).toBeNull();
  });

  test('an entry remembered from the store keeps its expiry; an expired one is not kept', () => {
    local.remember('a@example.com', { reason: 'fleet', until: now + 5_000 });
    local.remember('b@example.com', { reason: 'fleet', until: now - 1 });
    expect(local.isSuppressed('a@example.com')?.until).toBe(now + 5_000);
    expect(local.isSuppressed('b@example.com')).toBeNull();
  });

  test('the map stays bounded: past maxSuppressed the oldest inserted go first', () => {
    const small = new LocalFleetState({ now: () => now, maxSuppressed: 100 });
    for (let i = 0; i < 1000; i++) small.suppress(`u${i}@example.com`, 'r', 3600);
    expect(small.suppressedCount).toBe(100);
    expect(small.isSuppressed('u999@example.com')).not.toBeNull();
    expect(small.isSuppressed('u0@example.com')).toBeNull();
  });

  test('listing: expiry order, then address; pages follow the cursor without repeats or gaps', () => {
    for (const [address, ttl] of [
      ['d@x', 40],
      ['a@x', 10],
      ['c@x', 10],
      ['b@x', 30],
      ['e@x', 20],
    ] as const)
      local.suppress(address, 'r', ttl);
    const seen: string[] = [];
    let cursor: string | undefined;
    for (let i = 0; i < 10; i++) {
      const page = local.listSuppressed(cursor, 2);
      seen.push(...page.entries.map((e) => e.address));
      cursor = page.cursor;
      if (!cursor) break;
    }
    expect(seen).toEqual(['a@x', 'c@x', 'e@x', 'b@x', 'd@x']);
    now += 15_000;
    expect(local.listSuppressed().entries.map((e) => e.address)).toEqual(['e@x', 'b@x', 'd@x']);
  });
});
