/**
 * The per-pod side of the fleet state: the same rates, leases and suppression list kept in this process,
 * for a relay with no store configured and for the moments its store cannot answer (state.ts falls back
 * here). Synchronous, so concurrent callers in one pod can never overshoot a limit.
 *
 * Invariants
 * - Rates are relay/policy/rate-limit.ts's token bucket (capacity perMinute, refilling perMinute/60 per
 *   second): the store's GCRA means the same number, so "20 per minute" is 20 per minute in both modes.
 * - Leases are counts per key of what this pod holds, whoever granted them: a lease the store granted is
 *   counted here too (holdLease), so a fallback admits only up to the limit including those.
 *   A key leaves the map when its last lease is released.
 * - Suppressions expire at their `until` (checked on read, swept when the map is full); at most
 *   `maxSuppressed` entries are kept, the oldest inserted dropped first (only ever more lenient).
 *
 * Diagnostics: sizes (leaseKeys, suppressedCount) for gauges.
 */
import { RateLimiter } from '../policy/rate-limit.js';
import type { RateDecision, SuppressedEntry, Suppression, SuppressionPage } from './types.js';

export interface LocalFleetStateOptions {
  now?: () => number;
  /** Rate buckets kept (rate-limit.ts prunes past this). */
  maxRateKeys?: number;
  /** Suppression entries kept. */
  maxSuppressed?: number;
}

export class LocalFleetState {
  private readonly now: () => number;
  private readonly rates: RateLimiter;
  private readonly leases = new Map<string, number>();
  private readonly suppressed = new Map<string, Suppression>();
  private readonly maxSuppressed: number;
  private lastSweep = -Infinity;

  constructor(opts: LocalFleetStateOptions = {}) {
    this.now = opts.now ?? Date.now;
    this.rates = new RateLimiter(this.now, opts.maxRateKeys ?? 100_000);
    this.maxSuppressed = opts.maxSuppressed ?? 100_000;
  }

  takeRate(key: string, perMinute: number): RateDecision {
    const r = this.rates.take(key, perMinute);
    return { allowed: r.allowed, retryAfterMs: r.retryAfterMs };
  }

  /** Takes a lease if this pod holds fewer than `limit` for the key (limit <= 0: unlimited). */
  acquireLease(key: string, limit: number): boolean {
    const held = this.leases.get(key) ?? 0;
    if (limit > 0 && held >= limit) return false;
    this.leases.set(key, held + 1);
    return true;
  }

  /** Counts a lease granted elsewhere (the store), without a limit check. */
  holdLease(key: string): void {
    this.leases.set(key, (this.leases.get(key) ?? 0) + 1);
  }

  releaseLease(key: string): void {
    const n = (this.leases.get(key) ?? 0) - 1;
    if (n > 0) this.leases.set(key, n);
    else this.leases.delete(key);
  }

  leasesHeld(key: string): number {
    return this.leases.get(key) ?? 0;
  }

  get leaseKeys(): number {
    return this.leases.size;
  }

  suppress(address: string, reason: string, ttlSeconds: number): Suppression {
    const entry = { reason, until: this.now() + Math.max(1, Math.round(ttlSeconds * 1000)) };
    this.remember(address, entry);
    return entry;
  }

  /** Keeps an entry decided elsewhere (the store's answer), so a fallback still knows it. */
  remember(address: string, entry: Suppression): void {
    if (entry.until <= this.now()) return;
    this.suppressed.delete(address); // re-insert: insertion order is what overflow drops first
    this.suppressed.set(address, entry);
    if (this.suppressed.size > this.maxSuppressed) this.shrink();
  }

  /** True when the address was suppressed. */
  unsuppress(address: string): boolean {
    const entry = this.isSuppressed(address);
    this.suppressed.delete(address);
    return entry !== null;
  }

  isSuppressed(address: string): Suppression | null {
    const entry = this.suppressed.get(address);
    if (!entry) return null;
    if (entry.until > this.now()) return entry;
    this.suppressed.delete(address);
    return null;
  }

  /** Same order and cursor as the store's: (until, address) ascending, cursor "until|address". */
  listSuppressed(cursor?: string, limit = 100): SuppressionPage {
    const now = this.now();
    const size = Math.max(1, Math.min(1000, Math.floor(limit)));
    const after = parseCursor(cursor);
    const live: SuppressedEntry[] = [];
    for (const [address, e] of this.suppressed)
      if (
        e.until > now &&
        (!after || e.until > after.until || (e.until === after.until && address > after.address))
      )
        live.push({ address, ...e });
    live.sort((a, b) => a.until - b.until || (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
    const entries = live.slice(0, size);
    const last = entries.at(-1);
    return { entries, ...(live.length > size && last ? { cursor: `${last.until}|${last.address}` } : {}) };
  }

  get suppressedCount(): number {
    return this.suppressed.size;
  }

  private shrink(): void {
    const now = this.now();
    // A full sweep costs the whole map: at most once a minute, dropping the oldest in between.
    if (now - this.lastSweep >= 60_000) {
      this.lastSweep = now;
      for (const [address, e] of this.suppressed) if (e.until <= now) this.suppressed.delete(address);
    }
    while (this.suppressed.size > this.maxSuppressed) {
      const oldest = this.suppressed.keys().next();
      if (oldest.done) break;
      this.suppressed.delete(oldest.value);
    }
  }
}

function parseCursor(cursor: string | undefined): { until: number; address: string } | undefined {
  if (!cursor) return undefined;
  const bar = cursor.indexOf('|');
  const until = Number(cursor.slice(0, bar));
  return bar > 0 && Number.isFinite(until) ? { until, address: cursor.slice(bar + 1) } : undefined;
}
