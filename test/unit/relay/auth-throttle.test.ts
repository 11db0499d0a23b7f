import {
  AuthThrottle,
  admission,
  failureDelayMs,
  type Attempt,
  type BeginResult,
  type ThrottleSettings,
} from '../../../relay/auth/throttle.js';

const settings: ThrottleSettings = {
  delayAfterFailures: 3,
  maxDelayMs: 8000,
  lockoutAfterFailures: 10,
  lockout: 300,
  window: 900,
};

function throttle(s: ThrottleSettings = settings, maxKeys?: number) {
  const clock = { now: 0 };
  const t = new AuthThrottle(
    () => s,
    () => clock.now,
    maxKeys,
  );
  return { t, clock };
}

async function check(t: AuthThrottle, key: string): Promise<Attempt> {
  const r = await t.begin(key);
  if (!r.allowed) throw new Error(`refused: ${JSON.stringify(r)}`);
  return r.attempt;
}

/** n failures, one after the other. */
async function fail(t: AuthThrottle, key: string, n: number) {
  let last = (await check(t, key)).failed();
  for (let i = 1; i < n; i++) last = (await check(t, key)).failed();
  return last;
}

/** Lets pending promise callbacks run. */
const settle = () => new Promise((r) => setImmediate(r));

describe('AUTH throttle', () => {
  test('no delay for the first failures, then doubling up to the cap', () => {
    expect([1, 2, 3, 4, 5, 6, 7, 8, 9].map((n) => failureDelayMs(n, settings))).toEqual([
      0, 0, 0, 1000, 2000, 4000, 8000, 8000, 8000,
    ]);
  });

  test('admission: checks in flight count against the allowance', () => {
    const at = (recentFailures: number, inFlight: number, lockedUntil = 0) =>
      admission({ recentFailures, inFlight, lockedUntil }, settings, 1000);
    expect(at(0, 0)).toBe('check');
    expect(at(9, 0)).toBe('check');
    expect(at(5, 4)).toBe('check');
    expect(at(5, 5)).toBe('wait');
    expect(at(0, 10)).toBe('wait');
    expect(at(0, 0, 2000)).toBe('locked');
    expect(at(12, 0)).toBe('locked'); // lockoutAfterFailures lowered by a reload
  });

  test('locks out after lockoutAfterFailures, for `lockout` seconds', async () => {
    const { t, clock } = throttle();
    for (let i = 1; i < 10; i++) expect((await fail(t, '192.0.2.1', 1)).lockedOut).toBe(false);
    expect(await fail(t, '192.0.2.1', 1)).toMatchObject({
      lockedOut: true,
      startedLockout: true,
      delayMs: 0,
    });
    expect(await t.begin('192.0.2.1')).toEqual({ allowed: false, retryAfterMs: 300_000 });
    expect((await t.begin('192.0.2.2')).allowed).toBe(true);
    clock.now += 300_000;
    expect((await fail(t, '192.0.2.1', 1)).failures).toBe(1); // the lockout cleared the count
  });

  test('40 attempts at once: at most lockoutAfterFailures checks, the rest wait and are refused', async () => {
    const { t } = throttle();
    const results: BeginResult[] = [];
    const pending = Array.from({ length: 40 }, () => t.begin('a').then((r) => results.push(r)));
    await settle();
    const admitted = results.filter((r) => r.allowed);
    expect(admitted).toHaveLength(10);
    expect(t.inFlight('a')).toBe(10);
    // All ten fail; the tenth starts the lockout and every waiting attempt is refused.
    const failures = admitted.map((r) => (r as { attempt: Attempt }).attempt.failed());
    expect(failures.filter((f) => f.startedLockout)).toHaveLength(1);
    await Promise.all(pending);
    expect(results.filter((r) => r.allowed)).toHaveLength(10);
    expect(results.filter((r) => !r.allowed)).toHaveLength(30);
    expect(t.inFlight('a')).toBe(0);
  });

  test('a correct password whose check ends during a lockout is refused, and the lockout stays', async () => {
    // Within one configuration the allowance already keeps this from happening (a lockout needs
    // lockoutAfterFailures failed checks, and a check in flight takes one of those places); a reload
    // that lowers lockoutAfterFailures while checks are in flight can still get there.
    const s = { ...settings };
    const { t } = throttle(s);
    const right = await check(t, 'a');
    const wrong = await Promise.all(Array.from({ length: 8 }, () => check(t, 'a')));
    s.lockoutAfterFailures = 5;
    const failures = wrong.map((w) => w.failed());
    expect(failures.filter((f) => f.startedLockout)).toHaveLength(1);
    expect(failures.map((f) => f.lockedOut)).toEqual([false, false, false, false, true, true, true, true]);
    expect(right.succeeded()).toEqual({ allowed: false, retryAfterMs: 300_000 });
    expect(await t.begin('a')).toEqual({ allowed: false, retryAfterMs: 300_000 });
  });

  test('waiting attempts get a check when one in flight succeeds (a burst of correct logins)', async () => {
    const { t } = throttle({ ...settings, lockoutAfterFailures: 2 });
    const first = await check(t, 'app');
    const second = await check(t, 'app');
    let third: BeginResult | undefined;
    void t.begin('app').then((r) => (third = r));
    await settle();
    expect(third).toBeUndefined(); // waits: two checks in flight use up the allowance of 2
    expect(first.succeeded()).toEqual({ allowed: true });
    await settle();
    expect(third?.allowed).toBe(true);
    expect(second.succeeded()).toEqual({ allowed: true });
    (third as { attempt: Attempt }).attempt.succeeded();
    expect(t.size).toBe(0); // nothing left to remember
  });

  test('a success does not clear the failures; they age out after the window', async () => {
    const { t, clock } = throttle();
    await fail(t, 'a', 5);
    (await check(t, 'a')).succeeded();
    expect((await fail(t, 'a', 1)).failures).toBe(6);
    clock.now += 901_000;
    expect((await fail(t, 'a', 1)).failures).toBe(1);
  });

  test('an abandoned check frees its place without counting', async () => {
    const { t } = throttle({ ...settings, lockoutAfterFailures: 1 });
    (await check(t, 'a')).abandoned();
    expect((await check(t, 'a')).failed()).toMatchObject({ startedLockout: true, failures: 1 });
  });

  test('an attempt cannot be ended twice', async () => {
    const { t } = throttle();
    const a = await check(t, 'a');
    a.failed();
    expect(() => a.succeeded()).toThrow(/twice/);
  });

  test('memory stays bounded', async () => {
    const { t, clock } = throttle(settings, 50);
    for (let i = 0; i < 500; i++) await fail(t, `k${i}`, 1);
    expect(t.size).toBeLessThanOrEqual(50);
    clock.now += 1_000_000;
    await fail(t, 'late', 1);
    expect(t.size).toBe(1);
  });
});
