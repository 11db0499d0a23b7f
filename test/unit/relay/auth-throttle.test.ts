import { AuthThrottle, failureDelayMs, type ThrottleSettings } from '../../../relay/auth/throttle.js';

const settings: ThrottleSettings = {
  delayAfterFailures: 3,
  maxDelayMs: 8000,
  lockoutAfterFailures: 10,
  lockout: 300,
  window: 900,
};

describe('AUTH failure throttle', () => {
  test('no delay for the first failures, then doubling up to the cap', () => {
    expect([1, 2, 3, 4, 5, 6, 7, 8, 9].map((n) => failureDelayMs(n, settings))).toEqual([
      0, 0, 0, 1000, 2000, 4000, 8000, 8000, 8000,
    ]);
  });

  test('locks out after lockoutAfterFailures, for `lockout` seconds', () => {
    let now = 0;
    const t = new AuthThrottle(
      () => settings,
      () => now,
    );
    for (let i = 1; i < 10; i++) expect(t.failure('192.0.2.1').lockedOut).toBe(false);
    expect(t.gate('192.0.2.1').allowed).toBe(true);
    expect(t.failure('192.0.2.1')).toMatchObject({ lockedOut: true, delayMs: 0 });
    expect(t.gate('192.0.2.1')).toEqual({ allowed: false, retryAfterMs: 300_000 });
    expect(t.gate('192.0.2.2').allowed).toBe(true);
    now += 300_000;
    expect(t.gate('192.0.2.1').allowed).toBe(true);
    expect(t.failure('192.0.2.1').failures).toBe(1); // the lockout cleared the count
  });

  test('failures older than the window are forgotten; success clears', () => {
    let now = 0;
    const t = new AuthThrottle(
      () => settings,
      () => now,
    );
    for (let i = 0; i < 5; i++) t.failure('a');
    now += 901_000;
    expect(t.failure('a').failures).toBe(1);
    t.failure('a');
    t.success('a');
    expect(t.failure('a').failures).toBe(1);
  });

  test('memory stays bounded', () => {
    let now = 0;
    const t = new AuthThrottle(
      () => settings,
      () => now,
      50,
    );
    for (let i = 0; i < 500; i++) t.failure(`k${i}`);
    expect(t.size).toBeLessThanOrEqual(50);
    now += 1_000_000;
    t.failure('late');
    expect(t.size).toBe(1);
  });
});
