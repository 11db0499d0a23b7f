import { RateLimiter, takeToken } from '../../../relay/policy/rate-limit.js';

describe('rate limiter (token bucket, injected clock)', () => {
  test('a burst of perMinute, then one per 60/perMinute seconds', () => {
    let now = 1_000_000;
    const limiter = new RateLimiter(() => now);
    for (let i = 0; i < 6; i++) expect(limiter.take('k', 6).allowed).toBe(true);
    const refused = limiter.take('k', 6);
    expect(refused.allowed).toBe(false);
    expect(refused.retryAfterMs).toBe(10_000);
    now += 9_999;
    expect(limiter.take('k', 6).allowed).toBe(false);
    now += 1;
    expect(limiter.take('k', 6).allowed).toBe(true);
    expect(limiter.take('k', 6).allowed).toBe(false);
  });

  test('keys are independent; 0 means unlimited', () => {
    const limiter = new RateLimiter(() => 0);
    expect(limiter.take('a', 1).allowed).toBe(true);
    expect(limiter.take('a', 1).allowed).toBe(false);
    expect(limiter.take('b', 1).allowed).toBe(true);
    for (let i = 0; i < 1000; i++) expect(limiter.take('c', 0).allowed).toBe(true);
  });

  test('refill never exceeds the capacity', () => {
    const b = takeToken(undefined, 10, 0).bucket;
    const later = takeToken(b, 10, 10 * 60_000);
    expect(later.bucket.tokens).toBe(9);
  });

  test('memory stays bounded', () => {
    let now = 0;
    const limiter = new RateLimiter(() => now, 100);
    for (let i = 0; i < 1000; i++) limiter.take(`k${i}`, 5);
    expect(limiter.size).toBeLessThanOrEqual(100);
    now += 61_000;
    limiter.take('fresh', 5);
    expect(limiter.size).toBe(1);
  });
});
