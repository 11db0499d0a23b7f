import { backoffMs, delayWarningDue, isExpired, nextAttemptAt } from '../../../../relay/delivery/retry.js';

const postfix = { firstRetry: 300, maxBackoff: 4000, maxLifetime: 432000, delayWarningAfter: 0 };
const T0 = 1_800_000_000_000;

describe('retry schedule', () => {
  test('follows Postfix defaults: 300 s, doubling, capped at 4000 s', () => {
    expect([1, 2, 3, 4, 5, 6, 50].map((n) => backoffMs(n, postfix) / 1000)).toEqual([
      300, 600, 1200, 2400, 4000, 4000, 4000,
    ]);
  });

  test('a cap below the first retry never shortens the first retry', () => {
    expect(backoffMs(1, { ...postfix, firstRetry: 60, maxBackoff: 10 })).toBe(60_000);
  });

  test('expires after maxLifetime, and the next attempt is never scheduled past expiry', () => {
    const r = { ...postfix, maxLifetime: 1000 };
    expect(isExpired(T0, T0 + 999_999, r)).toBe(false);
    expect(isExpired(T0, T0 + 1_000_000, r)).toBe(true);
    // after 5 failures the backoff is 4000 s, but the message expires 1000 s after arrival
    expect(nextAttemptAt(T0, 5, T0 + 900_000, r)).toBe(T0 + 1_000_000);
    expect(nextAttemptAt(T0, 1, T0, r)).toBe(T0 + 300_000);
  });

  test('maxLifetime 0 gives up after the first failed attempt', () => {
    const r = { ...postfix, maxLifetime: 0 };
    expect(isExpired(T0, T0, r)).toBe(true);
  });

  test('a delay warning is due once, only when enabled and late enough', () => {
    const r = { ...postfix, delayWarningAfter: 3600 };
    expect(delayWarningDue(T0, T0 + 3_599_999, false, r)).toBe(false);
    expect(delayWarningDue(T0, T0 + 3_600_000, false, r)).toBe(true);
    expect(delayWarningDue(T0, T0 + 3_600_000, true, r)).toBe(false);
    expect(delayWarningDue(T0, T0 + 99_999_999, false, postfix)).toBe(false);
  });
});
