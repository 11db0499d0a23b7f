/**
 * The facade's fallback, with a fake store at the seam (SharedStore): what the store answers is used,
 * and when it answers `undefined` this pod decides, continuing from what it already counted.
 */
import { LocalFleetState } from '../../../relay/fleet/local.js';
import { FleetState } from '../../../relay/fleet/state.js';
import type { Admission, SharedStore, StoreState, Suppression } from '../../../relay/fleet/types.js';
import { silentLogger } from '../../../relay/log.js';

/** A store whose fleet-wide state is another LocalFleetState; `up = false` makes it answer undefined. */
class FakeStore implements SharedStore {
  up = true;
  readonly fleet: LocalFleetState;
  readonly calls: string[] = [];
  renewAnswer: boolean | undefined = true;
  private readonly holders = new Map<string, Set<string>>();
  private readonly listeners = new Set<(s: StoreState, reason: string) => void>();
  constructor(now: () => number) {
    this.fleet = new LocalFleetState({ now });
  }
  setUp(up: boolean): void {
    this.up = up;
    for (const l of this.listeners) l(this.state(), 'test');
  }
  state(): StoreState {
    return this.up ? 'connected' : 'degraded';
  }
  private answer<T>(call: string, fn: () => T): Promise<T | undefined> {
    this.calls.push(call);
    return Promise.resolve(this.up ? fn() : undefined);
  }
  takeRate(key: string, perMinute: number) {
    return this.answer(`takeRate ${key}`, () => this.fleet.takeRate(key, perMinute));
  }
  acquireLease(key: string, limit: number, holder: string) {
    return this.answer(`acquire ${key} ${holder}`, () => {
      const set = this.holders.get(key) ?? new Set();
      this.holders.set(key, set);
      if (set.size >= limit) return false;
      set.add(holder);
      return true;
    });
  }
  admit(leaseKey: string, rateKey: string, limit: number, holder: string, _ttl: number, perMinute: number) {
    return this.answer(`admit ${leaseKey} ${holder}`, (): Admission => {
      const set = this.holders.get(leaseKey) ?? new Set();
      this.holders.set(leaseKey, set);
      if (set.size >= limit) return { admitted: false, limit: 'connections', retryAfterMs: 0 };
      const rate = this.fleet.takeRate(rateKey, perMinute);
      if (!rate.allowed) return { admitted: false, limit: 'rate', retryAfterMs: rate.retryAfterMs };
      set.add(holder);
      return { admitted: true };
    });
  }
  renewLease(key: string, holder: string) {
    return this.answer(`renew ${key} ${holder}`, () => this.renewAnswer);
  }
  releaseLease(key: string, holder: string) {
    return this.answer(`release ${key} ${holder}`, () => this.holders.get(key)?.delete(holder) ?? false);
  }
  suppress(address: string, reason: string, ttlSeconds: number) {
    return this.answer(`suppress ${address} ${ttlSeconds}`, () =>
      this.fleet.suppress(address, reason, ttlSeconds),
    );
  }
  unsuppress(address: string) {
    return this.answer(`unsuppress ${address}`, () => this.fleet.unsuppress(address));
  }
  isSuppressed(address: string): Promise<Suppression | null | undefined> {
    return this.answer(`isSuppressed ${address}`, () => this.fleet.isSuppressed(address));
  }
  listSuppressed(cursor?: string, limit?: number) {
    return this.answer('list', () => this.fleet.listSuppressed(cursor, limit));
  }
  onStateChange(l: (s: StoreState, reason: string) => void) {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }
  close() {
    this.calls.push('close');
    return Promise.resolve();
  }
}

let now: number;
let store: FakeStore;
let fleet: FleetState;
beforeEach(() => {
  now = 5_000_000;
  store = new FakeStore(() => now);
  fleet = new FleetState({
    store,
    holderPrefix: 'pod-a:1',
    log: silentLogger(),
    now: () => now,
    leaseTtlMs: 30_000,
  });
});
afterEach(async () => {
  await fleet.close();
});

describe('mode', () => {
  test('local without a store; fleet or degraded with one, and listeners hear the change', () => {
    expect(new FleetState({ holderPrefix: 'p', log: silentLogger() }).mode()).toBe('local');
    const modes: string[] = [];
    fleet.onModeChange((m) => modes.push(m));
    expect(fleet.mode()).toBe('fleet');
    store.setUp(false);
    expect(fleet.mode()).toBe('degraded');
    store.setUp(true);
    expect(modes).toEqual(['degraded', 'fleet']);
  });
});

describe('rates', () => {
  test('the store decides while it answers, even against a local bucket with room', async () => {
    // Another pod used the fleet-wide bucket up.
    for (let i = 0; i < 3; i++) store.fleet.takeRate('user:alice', 3);
    const r = await fleet.takeRate('user', 'alice', 3);
    expect(r).toEqual({ allowed: false, retryAfterMs: 20_000, decidedBy: 'fleet' });
  });

  test('store down: this pod decides, continuing from the takes the store allowed it', async () => {
    expect((await fleet.takeRate('user', 'alice', 3)).decidedBy).toBe('fleet');
    expect((await fleet.takeRate('user', 'alice', 3)).decidedBy).toBe('fleet');
    store.up = false;
    expect(await fleet.takeRate('user', 'alice', 3)).toEqual({
      allowed: true,
      retryAfterMs: 0,
      decidedBy: 'local',
    });
    expect(await fleet.takeRate('user', 'alice', 3)).toMatchObject({ allowed: false, decidedBy: 'local' });
  });

  test('0 is unlimited and never asks the store; with no store every answer is local', async () => {
    expect((await fleet.takeRate('client', '10.0.0.1', 0)).allowed).toBe(true);
    expect(store.calls).toEqual([]);
    const alone = new FleetState({ holderPrefix: 'p', log: silentLogger(), now: () => now });
    expect(await alone.takeRate('user', 'bob', 1)).toEqual({
      allowed: true,
      retryAfterMs: 0,
      decidedBy: 'local',
    });
    expect((await alone.takeRate('user', 'bob', 1)).allowed).toBe(false);
  });
});

describe('admit: a site slot and a message of its rate, both or neither', () => {
  test('the store decides both; a rate refusal leaves no slot taken', async () => {
    const first = await fleet.admit('site', 'mx.example', 2, 1);
    expect(first).toMatchObject({ decidedBy: 'fleet', kind: 'site' });
    expect(await fleet.admit('site', 'mx.example', 2, 1)).toMatchObject({
      refused: 'rate',
      decidedBy: 'fleet',
      retryAfterMs: 60_000,
    });
    expect(store.calls.filter((c) => c.startsWith('admit'))).toHaveLength(2);
    now += 60_000;
    const second = await fleet.admit('site', 'mx.example', 2, 1);
    now += 60_000;
    expect(await fleet.admit('site', 'mx.example', 2, 1)).toMatchObject({ refused: 'connections' });
    await (first as { release(): Promise<void> }).release();
    await (second as { release(): Promise<void> }).release();
  });

  test('store down: decided here the same way, counting what the store granted', async () => {
    const held = await fleet.admit('site', 'mx.example', 2, 0);
    store.up = false;
    const local = await fleet.admit('site', 'mx.example', 2, 0);
    expect(local).toMatchObject({ decidedBy: 'local' });
    expect(await fleet.admit('site', 'mx.example', 2, 0)).toMatchObject({
      refused: 'connections',
      decidedBy: 'local',
    });
    await (held as { release(): Promise<void> }).release();
    expect(await fleet.admit('site', 'x', 5, 1)).toMatchObject({ decidedBy: 'local', id: 'x' });
    expect(await fleet.admit('site', 'x', 5, 1)).toMatchObject({ refused: 'rate', decidedBy: 'local' });
    await (local as { release(): Promise<void> }).release();
  });
});

describe('leases', () => {
  test('granted by the store, refused by it even with local room, released to it once', async () => {
    const a = await fleet.acquireLease('site', 'mx.example', 2);
    expect(a?.decidedBy).toBe('fleet');
    const b = await fleet.acquireLease('site', 'mx.example', 2);
    expect(await fleet.acquireLease('site', 'mx.example', 2)).toBeNull();
    expect(store.calls.filter((c) => c.startsWith('acquire')).map((c) => c.split(' ')[2])).toEqual([
      'pod-a:1:1',
      'pod-a:1:2',
      'pod-a:1:3',
    ]); // holder ids unique per lease
    await a!.release();
    await a!.release();
    expect(store.calls.filter((c) => c.startsWith('release'))).toEqual(['release site:mx.example pod-a:1:1']);
    expect((await fleet.acquireLease('site', 'mx.example', 2))?.decidedBy).toBe('fleet');
    await b!.release();
  });

  test('store down: the local limit counts the leases the store granted', async () => {
    const held = await fleet.acquireLease('site', 'mx.example', 2);
    store.up = false;
    const local = await fleet.acquireLease('site', 'mx.example', 2);
    expect(local?.decidedBy).toBe('local');
    expect(await fleet.acquireLease('site', 'mx.example', 2)).toBeNull();
    await held!.release(); // the store does not answer: its copy expires by itself
    expect((await fleet.acquireLease('site', 'mx.example', 2))?.decidedBy).toBe('local');
    await local!.release();
    expect(store.calls.filter((c) => c.startsWith('release'))).toEqual(['release site:mx.example pod-a:1:1']);
  });

  test('a fleet lease is renewed every ttl/3 until released; a refused renewal counts as lost', async () => {
    jest.useFakeTimers();
    try {
      const lease = await fleet.acquireLease('site', 'mx.example', 1);
      await jest.advanceTimersByTimeAsync(30_000);
      expect(store.calls.filter((c) => c.startsWith('renew'))).toHaveLength(3);
      store.renewAnswer = false;
      await jest.advanceTimersByTimeAsync(10_000);
      expect(fleet.leasesLost()).toBe(1);
      await lease!.release();
      await jest.advanceTimersByTimeAsync(60_000);
      expect(store.calls.filter((c) => c.startsWith('renew'))).toHaveLength(4);
    } finally {
      jest.useRealTimers();
    }
  });

  test('close() releases what is still held', async () => {
    await fleet.acquireLease('site', 'a', 1);
    await fleet.acquireLease('site', 'b', 1);
    await fleet.close();
    expect(store.calls.filter((c) => c.startsWith('release'))).toHaveLength(2);
    expect(store.calls.at(-1)).toBe('close');
  });
});

describe('suppression list', () => {
  test('answers from the store are remembered, so a fallback still knows them', async () => {
    store.fleet.suppress('Bob@example.com', 'bounce', 3600); // suppressed by another pod
    expect(await fleet.isSuppressed('Bob@example.com')).toMatchObject({
      reason: 'bounce',
      decidedBy: 'fleet',
    });
    store.up = false;
    expect(await fleet.isSuppressed('Bob@example.com')).toMatchObject({
      reason: 'bounce',
      decidedBy: 'local',
    });
    expect(await fleet.isSuppressed('other@example.com')).toBeNull();
  });

  test('changes made while the store is away apply at once locally and are replayed when it is back', async () => {
    store.setUp(false);
    expect(await fleet.suppress('a@example.com', 'bounce', 600)).toMatchObject({ decidedBy: 'local' });
    store.fleet.suppress('b@example.com', 'old', 600);
    await fleet.unsuppress('b@example.com');
    expect(await fleet.isSuppressed('a@example.com')).toMatchObject({ decidedBy: 'local' });
    now += 100_000;
    store.setUp(true);
    await new Promise((r) => setImmediate(r)); // the fake store answers at once: the replay is done

    expect(store.calls).toContain('suppress a@example.com 500');
    expect(store.calls).toContain('unsuppress b@example.com');
    expect(store.fleet.isSuppressed('a@example.com')?.reason).toBe('bounce');
    expect(store.fleet.isSuppressed('b@example.com')).toBeNull();
    expect(await fleet.isSuppressed('a@example.com')).toMatchObject({ decidedBy: 'fleet' });
  });

  test('listing falls back to the local list while the store is away', async () => {
    store.up = false;
    await fleet.suppress('x@example.com', 'r', 60);
    expect(await fleet.listSuppressed()).toMatchObject({
      decidedBy: 'local',
      entries: [{ address: 'x@example.com' }],
    });
    store.up = true;
    expect(await fleet.listSuppressed()).toEqual({ decidedBy: 'fleet', entries: [] });
  });
});
