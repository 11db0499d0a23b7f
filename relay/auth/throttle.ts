/**
 * Throttling of failed AUTH attempts per client address (auth.throttle), with an injected clock.
 *
 * After `delayAfterFailures` failures within `window`, each further failure is answered only after a
 * delay that doubles from 1 s up to `maxDelayMs` (slows a guesser to a crawl without a lockout anyone
 * can trigger on purpose too cheaply). At `lockoutAfterFailures` failures the address is refused AUTH
 * outright (454 4.7.0) for `lockout` seconds, without even checking the password. A success clears the
 * address's failures. Keys are what network.clientKey() returns (IPv6 grouped by /64).
 *
 * Memory stays bounded: entries whose failures have all expired are pruned, and at most `maxKeys`
 * addresses are tracked (the least recently failing are forgotten first).
 */
import type { AuthConfig } from '../config/schema.js';

export type ThrottleSettings = AuthConfig['throttle'];

interface Entry {
  /** Times of recent failures (ms), oldest first, at most lockoutAfterFailures of them. */
  failures: number[];
  lockedUntil: number;
}

export type GateResult = { allowed: true } | { allowed: false; retryAfterMs: number };

export interface FailureResult {
  /** Wait this long before answering the failure. */
  delayMs: number;
  /** This failure locked the address out. */
  lockedOut: boolean;
  /** Failures of this address within the window, this one included. */
  failures: number;
}

/** The delay before answering the n-th failure (pure). */
export function failureDelayMs(failures: number, s: ThrottleSettings): number {
  if (failures <= s.delayAfterFailures) return 0;
  const exponent = Math.min(30, failures - s.delayAfterFailures - 1);
  return Math.min(s.maxDelayMs, 1000 * 2 ** exponent);
}

export class AuthThrottle {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly settings: () => ThrottleSettings,
    private readonly now: () => number = Date.now,
    private readonly maxKeys = 100_000,
  ) {}

  /** Before checking credentials: is this address locked out? */
  gate(key: string): GateResult {
    const entry = this.entries.get(key);
    const now = this.now();
    if (entry && entry.lockedUntil > now) return { allowed: false, retryAfterMs: entry.lockedUntil - now };
    return { allowed: true };
  }

  failure(key: string): FailureResult {
    const s = this.settings();
    const now = this.now();
    const entry = this.entries.get(key) ?? { failures: [], lockedUntil: 0 };
    const since = now - s.window * 1000;
    entry.failures = entry.failures.filter((t) => t > since);
    entry.failures.push(now);
    const failures = entry.failures.length;
    let lockedOut = false;
    if (failures >= s.lockoutAfterFailures) {
      entry.lockedUntil = now + s.lockout * 1000;
      entry.failures = [];
      lockedOut = true;
    }
    this.entries.delete(key);
    this.entries.set(key, entry);
    this.prune(now, s);
    return { delayMs: lockedOut ? 0 : failureDelayMs(failures, s), lockedOut, failures };
  }

  success(key: string): void {
    this.entries.delete(key);
  }

  get size(): number {
    return this.entries.size;
  }

  private prune(now: number, s: ThrottleSettings): void {
    while (this.entries.size > this.maxKeys) {
      const oldest = this.entries.keys().next();
      if (oldest.done) break;
      this.entries.delete(oldest.value);
    }
    const since = now - s.window * 1000;
    for (const [key, e] of this.entries) {
      const last = e.failures[e.failures.length - 1] ?? 0;
      if (last > since || e.lockedUntil > now) break; // insertion order: the rest failed more recently
      this.entries.delete(key);
    }
  }
}
