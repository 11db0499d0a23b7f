/**
 * Message rate limits (limits.messagesPerMinutePerUser / …PerClient): a token bucket per key with an
 * injected clock.
 *
 * A bucket holds up to `perMinute` tokens and refills at perMinute/60 per second, so a client may send
 * a burst of `perMinute` messages and then `perMinute` per minute on average. One token is taken per
 * MAIL FROM that passed the sender policy (like Postfix's anvil, which counts MAIL requests, not
 * delivered messages), so parallel sessions cannot overshoot the limit while their DATA is in flight.
 *
 * Memory stays bounded: a bucket that has refilled completely carries no information and is pruned;
 * past `maxKeys` buckets the oldest-touched are dropped (which can only make the limiter more lenient).
 */

export interface Bucket {
  tokens: number;
  /** When `tokens` was last computed (clock ms). */
  at: number;
}

export interface TakeResult {
  allowed: boolean;
  bucket: Bucket;
  /** When refused: ms until one token is available. */
  retryAfterMs: number;
}

/** Pure core: refill `bucket` to `now`, then try to take one token. perMinute 0 means unlimited. */
export function takeToken(bucket: Bucket | undefined, perMinute: number, now: number): TakeResult {
  if (perMinute <= 0) return { allowed: true, bucket: { tokens: 0, at: now }, retryAfterMs: 0 };
  const ratePerMs = perMinute / 60_000;
  const elapsed = bucket ? Math.max(0, now - bucket.at) : 0;
  const tokens = bucket ? Math.min(perMinute, bucket.tokens + elapsed * ratePerMs) : perMinute;
  if (tokens >= 1) return { allowed: true, bucket: { tokens: tokens - 1, at: now }, retryAfterMs: 0 };
  return {
    allowed: false,
    bucket: { tokens, at: now },
    retryAfterMs: Math.ceil((1 - tokens) / ratePerMs),
  };
}

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private lastPrune: number;

  constructor(
    private readonly now: () => number = Date.now,
    private readonly maxKeys = 100_000,
  ) {
    this.lastPrune = now();
  }

  take(key: string, perMinute: number): TakeResult {
    const now = this.now();
    const result = takeToken(this.buckets.get(key), perMinute, now);
    if (perMinute > 0) {
      this.buckets.delete(key); // re-insert: Map order becomes least-recently-used first
      this.buckets.set(key, result.bucket);
    }
    this.maybePrune(now);
    return result;
  }

  get size(): number {
    return this.buckets.size;
  }

  private maybePrune(now: number): void {
    while (this.buckets.size > this.maxKeys) {
      const oldest = this.buckets.keys().next();
      if (oldest.done) break;
      this.buckets.delete(oldest.value);
    }
    if (now - this.lastPrune < 60_000) return;
    this.lastPrune = now;
    // A bucket untouched for a minute has refilled completely (capacity = one minute's worth), which is
    // exactly what an absent bucket means: drop it.
    for (const [key, b] of this.buckets) {
      if (now - b.at < 60_000) break; // LRU order: the rest are newer
      this.buckets.delete(key);
    }
  }
}
