/**
 * The fleet store against a real redis-server (test/helpers/redis.ts): the scripts' limits hold across
 * several clients at once, leases of a vanished holder expire, the suppression list expires and pages,
 * and a store that is killed, restarted or stalled never blocks or throws into callers: operations
 * answer `undefined` (decide locally), the state says degraded, and it comes back by itself.
 */
import { Writable } from 'node:stream';
import { createLogger, silentLogger } from '../../relay/log.js';
import { FleetState } from '../../relay/fleet/state.js';
import { FleetStore, type FleetStoreOptions } from '../../relay/fleet/store.js';
import type { StoreState } from '../../relay/fleet/types.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';

jest.setTimeout(60_000);

let redis: TestRedis;
const open: FleetStore[] = [];
let prefixes = 0;

beforeAll(async () => {
  redis = await startRedis();
});

afterEach(async () => {
  await Promise.all(open.splice(0).map((s) => s.close()));
});

afterAll(async () => {
  await redis?.stop();
});

/** A connected store; each test gets its own key prefix, so tests never see each other's keys. */
async function store(extra: Partial<FleetStoreOptions> = {}, prefix?: string): Promise<FleetStore> {
  const s = new FleetStore({
    url: redis.url,
    keyPrefix: prefix ?? `test${++prefixes}:`,
    // Generous: a loaded 2-core CI machine must not turn a count test into a timeout.
    timeoutMs: 2000,
    log: silentLogger(),
    probeIntervalMs: 50,
    ...extra,
  });
  open.push(s);
  if (extra.url === undefined) expect(await s.waitConnected(20_000)).toBe(true);
  return s;
}

/** Stores sharing one prefix: the pods of one fleet. */
async function fleet(n: number, extra: Partial<FleetStoreOptions> = {}): Promise<FleetStore[]> {
  const prefix = `fleet${++prefixes}:`;
  return Promise.all(Array.from({ length: n }, () => store(extra, prefix)));
}

/** Polls `cond` until it holds (bounded); no sleep stands in for the condition. */
async function until(cond: () => boolean | Promise<boolean>, what: string, maxMs = 20_000): Promise<void> {
  const end = Date.now() + maxMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`not within ${maxMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('rate (GCRA in one script)', () => {
  test('allows exactly the burst, then refuses with the time until the next one', async () => {
    const s = await store();
    // 4 per minute: a burst of 4, then one every 15 s (far longer than these calls take).
    const answers = [];
    for (let i = 0; i < 8; i++) answers.push(await s.takeRate('user:alice', 4));
    expect(answers.map((a) => a?.allowed)).toEqual([true, true, true, true, false, false, false, false]);
    for (const refused of answers.slice(4)) {
      expect(refused!.retryAfterMs).toBeGreaterThan(5_000);
      expect(refused!.retryAfterMs).toBeLessThanOrEqual(15_000);
    }
    // A refusal takes nothing: the wait only shrinks.
    expect(answers[7]!.retryAfterMs).toBeLessThanOrEqual(answers[4]!.retryAfterMs);
    // Keys are independent, and 0 means unlimited (never asks the store).
    expect((await s.takeRate('user:bob', 4))?.allowed).toBe(true);
    expect((await s.takeRate('user:alice', 0))?.allowed).toBe(true);
  });

  test('an explicit burst smaller than the rate', async () => {
    const s = await store();
    const allowed = [];
    for (let i = 0; i < 5; i++) allowed.push((await s.takeRate('client:10.0.0.1', 1, 2))?.allowed);
    expect(allowed).toEqual([true, true, false, false, false]);
  });

  test('3 clients × 50 concurrent takes never exceed the burst in sum', async () => {
    const pods = await fleet(3);
    // 1 per minute with a burst of 20: no refill during the test, so exactly 20 may pass.
    const answers = await Promise.all(
      pods.flatMap((p) => Array.from({ length: 50 }, () => p.takeRate('domain:example.com', 1, 20))),
    );
    expect(answers.every((a) => a !== undefined)).toBe(true);
    expect(answers.filter((a) => a!.allowed)).toHaveLength(20);
  });
});

describe('leases (sorted set of holder → expiry)', () => {
  test('the limit holds across 3 clients under concurrency; release frees a slot', async () => {
    const pods = await fleet(3);
    const tries = pods.flatMap((p, i) =>
      Array.from({ length: 20 }, (_, j) => ({ p, holder: `pod${i}:${j}` })),
    );
    const granted = await Promise.all(
      tries.map((t) => t.p.acquireLease('site:mx.example', 5, t.holder, 30_000)),
    );
    expect(granted.every((g) => g !== undefined)).toBe(true);
    const holders = tries.filter((_, i) => granted[i]);
    expect(holders).toHaveLength(5);
    expect(await pods[0]!.acquireLease('site:mx.example', 5, 'late:1', 30_000)).toBe(false);

    // A holder asking again is renewed, not counted twice.
    expect(await holders[0]!.p.acquireLease('site:mx.example', 5, holders[0]!.holder, 30_000)).toBe(true);
    expect(await pods[1]!.acquireLease('site:mx.example', 5, 'late:2', 30_000)).toBe(false);

    expect(await holders[0]!.p.releaseLease('site:mx.example', holders[0]!.holder)).toBe(true);
    expect(await holders[0]!.p.releaseLease('site:mx.example', holders[0]!.holder)).toBe(false);
    expect(await pods[2]!.acquireLease('site:mx.example', 5, 'late:3', 30_000)).toBe(true);
    expect(await pods[2]!.acquireLease('site:mx.example', 5, 'late:4', 30_000)).toBe(false);
  });

  test('admit: a slot and a message of the rate in one call, both or neither, across 3 clients', async () => {
    const pods = await fleet(3);
    // 5 slots, a rate of 3 per minute (a burst of 3): 60 concurrent asks get exactly 3 admissions.
    const tries = pods.flatMap((p, i) =>
      Array.from({ length: 20 }, (_, j) => ({ p, holder: `pod${i}:${j}` })),
    );
    const answers = await Promise.all(
      tries.map((t) => t.p.admit('site:mx.example', 'site:mx.example', 5, t.holder, 30_000, 3)),
    );
    expect(answers.filter((a) => a?.admitted)).toHaveLength(3);
    const refused = answers.filter((a) => a && !a.admitted);
    expect(refused).toHaveLength(57);
    for (const r of refused) expect(r).toMatchObject({ limit: 'rate', retryAfterMs: expect.any(Number) });
    // The rate refusals took no slot: 2 of the 5 are still free for asks without a rate.
    expect(await pods[0]!.admit('site:mx.example', 'site:other', 5, 'x:1', 30_000, 0)).toEqual({
      admitted: true,
    });
    expect(await pods[1]!.admit('site:mx.example', 'site:other', 5, 'x:2', 30_000, 0)).toEqual({
      admitted: true,
    });
    expect(await pods[2]!.admit('site:mx.example', 'site:other', 5, 'x:3', 30_000, 0)).toEqual({
      admitted: false,
      limit: 'connections',
      retryAfterMs: 0,
    });
  });

  test('a killed holder’s leases expire after their ttl; renewal keeps a live one', async () => {
    const [dying, other] = await fleet(2);
    expect(await dying!.acquireLease('site:slow.example', 2, 'dying:1', 300)).toBe(true);
    expect(await dying!.acquireLease('site:slow.example', 2, 'dying:2', 300)).toBe(true);
    await dying!.close(); // gone without releasing, like a killed pod
    expect(await other!.acquireLease('site:slow.example', 2, 'other:1', 60_000)).toBe(false);
    await until(
      async () => (await other!.acquireLease('site:slow.example', 2, 'other:1', 60_000)) === true,
      'the dead holder’s lease expires',
    );
    expect(await other!.renewLease('site:slow.example', 'other:1', 60_000)).toBe(true);
    expect(await other!.renewLease('site:slow.example', 'never-held', 60_000)).toBe(false);
    // Expired leases are not revived by a renewal: the slot may be someone else's.
    expect(await other!.acquireLease('site:slow.example', 2, 'short', 50)).toBe(true);
    await until(
      async () => (await other!.acquireLease('site:slow.example', 2, 'probe', 60_000)) === true,
      'the short lease expires',
    );
    expect(await other!.renewLease('site:slow.example', 'short', 60_000)).toBe(false);
  });
});

describe('suppression list', () => {
  test('add, check, remove; addresses are kept exactly as given', async () => {
    const s = await store();
    expect(await s.isSuppressed('Bob@example.com')).toBeNull();
    const entry = await s.suppress('Bob@example.com', '550 5.1.1 user unknown', 3600);
    expect(entry?.reason).toBe('550 5.1.1 user unknown');
    expect(entry!.until).toBeGreaterThan(Date.now() + 3_000_000); // the store's clock, near ours
    expect(await s.isSuppressed('Bob@example.com')).toEqual(entry);
    expect(await s.isSuppressed('bob@example.com')).toBeNull(); // local parts may be case-sensitive
    expect(await s.unsuppress('Bob@example.com')).toBe(true);
    expect(await s.unsuppress('Bob@example.com')).toBe(false);
    expect(await s.isSuppressed('Bob@example.com')).toBeNull();
  });

  test('entries expire after their ttl, and leave the listing', async () => {
    const s = await store();
    await s.suppress('short@example.com', 'bounce', 0.2);
    await s.suppress('long@example.com', 'complaint', 3600);
    expect((await s.isSuppressed('short@example.com'))?.reason).toBe('bounce');
    await until(async () => (await s.isSuppressed('short@example.com')) === null, 'the entry expires');
    const page = await s.listSuppressed();
    expect(page?.entries.map((e) => e.address)).toEqual(['long@example.com']);
    expect(page?.cursor).toBeUndefined();
  });

  test('listing pages in expiry order, each entry once', async () => {
    const s = await store();
    const ttl = [500, 100, 300, 200, 400, 100, 600];
    for (const [i, t] of ttl.entries()) await s.suppress(`u${i}@example.com`, `r${i}`, t);
    const seen: { address: string; until: number; reason: string }[] = [];
    let cursor: string | undefined;
    for (let pages = 0; pages < 10; pages++) {
      const page = await s.listSuppressed(cursor, 2);
      expect(page).toBeDefined();
      expect(page!.entries.length).toBeLessThanOrEqual(2);
      seen.push(...page!.entries);
      cursor = page!.cursor;
      if (!cursor) break;
    }
    expect(cursor).toBeUndefined();
    expect(seen.map((e) => e.address).sort()).toEqual(ttl.map((_, i) => `u${i}@example.com`).sort());
    for (let i = 1; i < seen.length; i++) expect(seen[i]!.until).toBeGreaterThanOrEqual(seen[i - 1]!.until);
    expect(seen.find((e) => e.address === 'u3@example.com')?.reason).toBe('r3');
  });
});

describe('authentication', () => {
  let secured: TestRedis;
  const password = 'fleet-secret-pw-1';
  beforeAll(async () => {
    secured = await startRedis({ password });
  });
  afterAll(async () => {
    await secured?.stop();
  });

  test('requirepass: the password opens the store, its absence leaves it degraded, and it is never logged', async () => {
    const lines: string[] = [];
    const log = createLogger({
      level: 'debug',
      destination: new Writable({
        write(chunk: Buffer, _enc, cb) {
          lines.push(chunk.toString());
          cb();
        },
      }),
    });
    const withPassword = await store({ url: secured.url, password, log });
    expect(await withPassword.waitConnected(20_000)).toBe(true);
    expect((await withPassword.takeRate('user:a', 10))?.allowed).toBe(true);

    const inUrl = await store({ url: `redis://:${password}@127.0.0.1:${secured.port}`, log });
    expect(await inUrl.waitConnected(20_000)).toBe(true);

    const without = await store({ url: secured.url, log, maxReconnectDelayMs: 100 });
    const states: StoreState[] = [];
    without.onStateChange((s) => states.push(s));
    await until(
      () => lines.some((l) => l.includes('NOAUTH') || l.includes('WRONGPASS')),
      'the refusal is logged',
    );
    expect(without.state()).toBe('degraded');
    expect(await without.takeRate('user:a', 10)).toBeUndefined();
    const wrong = await store({ url: secured.url, password: 'not-it', log, maxReconnectDelayMs: 100 });
    expect(await wrong.isSuppressed('x@example.com')).toBeUndefined();
    expect(states).not.toContain('connected');
    expect(lines.join('')).not.toContain(password);
  });
});

describe('a store that goes away', () => {
  test('killed mid-load: answers undefined at once, degraded; restarted: connected by itself, scripts work', async () => {
    const pods = await fleet(3, { timeoutMs: 200 });
    const transitions: StoreState[] = [];
    pods[0]!.onStateChange((s) => transitions.push(s));
    expect((await pods[0]!.takeRate('user:load', 1000))?.allowed).toBe(true); // scripts now cached

    // A bounded load from every pod while the server dies under it: nothing throws, nothing hangs.
    let stop = false;
    const answers = { fleet: 0, undecided: 0 };
    const load = pods.map(async (p) => {
      for (let i = 0; i < 5000 && !stop; i++) {
        const r = await p.takeRate(`user:load${i % 7}`, 100_000);
        answers[r ? 'fleet' : 'undecided']++;
        if (!r) await new Promise((res) => setImmediate(res));
      }
    });
    await until(() => answers.fleet > 50, 'load is running');
    await redis.kill('SIGKILL');
    await until(() => pods.every((p) => p.state() === 'degraded'), 'every pod sees the store gone');

    const started = Date.now();
    const down = await Promise.all(
      pods.flatMap((p) => [
        p.takeRate('user:x', 10),
        p.acquireLease('site:x', 1, 'h', 1000),
        p.isSuppressed('a@b.c'),
      ]),
    );
    expect(down.every((d) => d === undefined)).toBe(true);
    expect(Date.now() - started).toBeLessThan(5_000); // does not hang
    stop = true;
    await Promise.all(load);
    expect(answers.undecided).toBeGreaterThan(0);

    await redis.restart(); // empty: no scripts cached, so the next EVALSHA meets NOSCRIPT
    await until(() => pods.every((p) => p.state() === 'connected'), 'every pod reconnects by itself');
    expect(transitions).toEqual(['degraded', 'connected']);
    const after = await Promise.all(pods.map((p, i) => p.acquireLease('site:after', 2, `pod${i}`, 30_000)));
    expect(after.filter((g) => g === true)).toHaveLength(2);
    expect(after.filter((g) => g === false)).toHaveLength(1);
    expect((await pods[1]!.takeRate('user:after', 1, 1))?.allowed).toBe(true);
    expect((await pods[2]!.takeRate('user:after', 1, 1))?.allowed).toBe(false);
  });

  test('stalled (SIGSTOP): operations give up after timeoutMs, degraded; resumed: connected again', async () => {
    const s = await store({ timeoutMs: 200 });
    expect(await s.takeRate('user:stall', 100)).toBeDefined();
    redis.pause();
    try {
      const started = Date.now();
      expect(await s.takeRate('user:stall', 100)).toBeUndefined();
      expect(s.state()).toBe('degraded');
      // While degraded nothing is sent: answers come at once, not after another timeout.
      const many = await Promise.all(Array.from({ length: 20 }, () => s.isSuppressed('a@example.com')));
      expect(many.every((m) => m === undefined)).toBe(true);
      expect(Date.now() - started).toBeLessThan(5_000); // does not hang
    } finally {
      redis.resume();
    }
    await until(() => s.state() === 'connected', 'the probe finds the store answering again');
    expect((await s.takeRate('user:stall', 100))?.allowed).toBe(true);
  });
});

describe('FleetState over the real store', () => {
  test('fleet-wide while the store answers, per pod while it is killed, fleet-wide again after restart', async () => {
    const prefix = `facade${++prefixes}:`;
    const [s1, s2] = await Promise.all([
      store({ timeoutMs: 200 }, prefix),
      store({ timeoutMs: 200 }, prefix),
    ]);
    const pod1 = new FleetState({ store: s1, holderPrefix: 'pod1:1', log: silentLogger() });
    const pod2 = new FleetState({ store: s2, holderPrefix: 'pod2:1', log: silentLogger() });
    try {
      const a = await pod1.acquireLease('site', 'mx.example', 1);
      expect(a?.decidedBy).toBe('fleet');
      expect(await pod2.acquireLease('site', 'mx.example', 1)).toBeNull(); // the other pod's lease counts

      await redis.kill('SIGKILL');
      await until(() => pod1.mode() === 'degraded' && pod2.mode() === 'degraded', 'both pods degraded');
      const b = await pod2.acquireLease('site', 'mx.example', 1); // per pod now: pod2 holds none
      expect(b?.decidedBy).toBe('local');
      expect(await pod1.acquireLease('site', 'mx.example', 1)).toBeNull(); // pod1 still holds its own
      await pod2.suppress('late@example.com', 'bounce', 600);

      await redis.restart();
      await until(() => pod1.mode() === 'fleet' && pod2.mode() === 'fleet', 'both pods back in fleet mode');
      // The suppression made during the outage reached the store: the other pod sees it.
      await until(
        async () => (await pod1.isSuppressed('late@example.com'))?.decidedBy === 'fleet',
        'replayed',
      );
      await a!.release();
      await b!.release();
    } finally {
      await pod1.close();
      await pod2.close();
    }
  });
});
