/**
 * The fleet state the relay uses: rates, connection leases and the suppression list, decided by the
 * shared store when there is one and it answers, and by this pod (local.ts) otherwise.
 *
 *   session:        const r = await fleet.takeRate('user', user, perMinute)   // r.allowed, r.retryAfterMs
 *   queue manager:  const lease = await fleet.acquireLease('site', siteKey, limit)  // null: at the limit
 *                   ... deliver ...; await lease.release()
 *   policy:         await fleet.isSuppressed(address)   // { reason, until } | null
 *
 * Modes: `local` (no store configured), `fleet` (the store answers), `degraded` (a store is configured
 * but did not answer in time: this pod decides with its own limits). A caller never waits longer than
 * the store's timeout and never sees an error from here.
 *
 * Invariants
 * - The local side sees everything: rate takes the store allowed are taken locally too (so a fallback
 *   continues from this pod's recent use, not from a full bucket), and leases the store granted are
 *   counted locally (so a fallback admits up to the limit including them).
 * - Lease holder ids are `<holderPrefix>:<counter>`: unique per lease as long as holderPrefix is unique
 *   per process (the pod name plus its start time). A lease held through the store is renewed every
 *   ttl/3 until released; a pod that dies stops renewing and its leases expire after leaseTtlMs.
 * - Suppressions changed while the store is away are kept locally and replayed to it (remaining ttl,
 *   in order, at most `maxPending`) when it is connected again, so an outage loses no decision.
 *
 * Diagnostics: mode() and onModeChange() (a gauge and a log line), `decidedBy` on every answer (a counter
 * by decider), leasesLost() (renewals the store refused: the lease had expired during an outage).
 */
import type { Logger } from '../log.js';
import { LocalFleetState } from './local.js';
import type { RateDecision, SharedStore, Suppression, SuppressionPage } from './types.js';

export type FleetMode = 'fleet' | 'degraded' | 'local';
/** Who decided: the shared store, or this pod. */
export type Decider = 'fleet' | 'local';
/** What a limit counts: an authenticated user, a client address key, a sender domain, a destination site. */
export type LimitKind = 'user' | 'client' | 'domain' | 'site';

export interface FleetStateOptions {
  /** The shared store; absent: every decision is this pod's (mode `local`). */
  store?: SharedStore;
  local?: LocalFleetState;
  /** Unique per process, e.g. `${podName}:${startTimeMs}`. */
  holderPrefix: string;
  /** How long a lease outlives a pod that stops renewing it (default 60 s). */
  leaseTtlMs?: number;
  /** Suppression changes kept for replay while the store is away (default 10 000). */
  maxPending?: number;
  log: Logger;
  now?: () => number;
}

export interface FleetLease {
  readonly kind: LimitKind;
  readonly id: string;
  readonly decidedBy: Decider;
  /** Gives the slot back (idempotent, never throws). */
  release(): Promise<void>;
}

type PendingChange = { op: 'suppress'; reason: string; until: number } | { op: 'unsuppress' };

export class FleetState {
  private readonly local: LocalFleetState;
  private readonly store?: SharedStore;
  private readonly now: () => number;
  private readonly ttlMs: number;
  private readonly maxPending: number;
  private readonly held = new Set<LeaseHandle>();
  /** address → its latest change while the store was away (Map order: oldest first). */
  private readonly pending = new Map<string, PendingChange>();
  private readonly listeners = new Set<(mode: FleetMode) => void>();
  private readonly unsubscribe?: () => void;
  private counter = 0;
  private lost = 0;
  private replaying?: Promise<void>;

  constructor(private readonly opts: FleetStateOptions) {
    this.store = opts.store;
    this.now = opts.now ?? Date.now;
    this.local = opts.local ?? new LocalFleetState({ now: this.now });
    this.ttlMs = opts.leaseTtlMs ?? 60_000;
    this.maxPending = opts.maxPending ?? 10_000;
    this.unsubscribe = this.store?.onStateChange((state) => {
      if (state === 'connected') void this.replay();
      const mode = this.mode();
      for (const l of this.listeners) l(mode);
    });
  }

  mode(): FleetMode {
    if (!this.store) return 'local';
    return this.store.state() === 'connected' ? 'fleet' : 'degraded';
  }

  onModeChange(listener: (mode: FleetMode) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Takes one from the `kind:id` rate (perMinute <= 0: unlimited). */
  async takeRate(
    kind: LimitKind,
    id: string,
    perMinute: number,
  ): Promise<RateDecision & { decidedBy: Decider }> {
    const key = `${kind}:${id}`;
    if (perMinute <= 0) return { allowed: true, retryAfterMs: 0, decidedBy: this.store ? 'fleet' : 'local' };
    const shared = await this.store?.takeRate(key, perMinute);
    if (shared) {
      if (shared.allowed) this.local.takeRate(key, perMinute);
      return { ...shared, decidedBy: 'fleet' };
    }
    return { ...this.local.takeRate(key, perMinute), decidedBy: 'local' };
  }

  /** A slot of the `kind:id` concurrency limit (limit <= 0: unlimited), or null when all are taken. */
  async acquireLease(kind: LimitKind, id: string, limit: number): Promise<FleetLease | null> {
    const key = `${kind}:${id}`;
    const holder = `${this.opts.holderPrefix}:${++this.counter}`;
    if (limit > 0 && this.store) {
      const granted = await this.store.acquireLease(key, limit, holder, this.ttlMs);
      if (granted === false) return null;
      if (granted === true) {
        this.local.holdLease(key);
        return this.track(new LeaseHandle(this, kind, id, key, holder, 'fleet'));
      }
    }
    if (!this.local.acquireLease(key, limit)) return null;
    return this.track(new LeaseHandle(this, kind, id, key, holder, 'local'));
  }

  /**
   * A slot of the `kind:id` concurrency limit together with one of its rate (perMinute <= 0: no rate),
   * decided in one call: both or neither. Refused: which limit, and when to ask again (rate).
   */
  async admit(
    kind: LimitKind,
    id: string,
    limit: number,
    perMinute: number,
  ): Promise<FleetLease | { refused: 'connections' | 'rate'; retryAfterMs: number; decidedBy: Decider }> {
    const key = `${kind}:${id}`;
    const holder = `${this.opts.holderPrefix}:${++this.counter}`;
    const shared = this.store && (await this.store.admit(key, key, limit, holder, this.ttlMs, perMinute));
    if (shared) {
      if (!shared.admitted)
        return { refused: shared.limit, retryAfterMs: shared.retryAfterMs, decidedBy: 'fleet' };
      this.local.holdLease(key);
      if (perMinute > 0) this.local.takeRate(key, perMinute);
      return this.track(new LeaseHandle(this, kind, id, key, holder, 'fleet'));
    }
    if (!this.local.acquireLease(key, limit))
      return { refused: 'connections', retryAfterMs: 0, decidedBy: 'local' };
    const rate = perMinute > 0 ? this.local.takeRate(key, perMinute) : undefined;
    if (rate && !rate.allowed) {
      this.local.releaseLease(key);
      return { refused: 'rate', retryAfterMs: rate.retryAfterMs, decidedBy: 'local' };
    }
    return this.track(new LeaseHandle(this, kind, id, key, holder, 'local'));
  }

  /** Leases whose renewal the store refused since start (they had expired there). */
  leasesLost(): number {
    return this.lost;
  }

  async suppress(
    address: string,
    reason: string,
    ttlSeconds: number,
  ): Promise<Suppression & { decidedBy: Decider }> {
    const shared = await this.store?.suppress(address, reason, ttlSeconds);
    if (shared) {
      this.pending.delete(address);
      this.local.remember(address, shared);
      return { ...shared, decidedBy: 'fleet' };
    }
    const entry = this.local.suppress(address, reason, ttlSeconds);
    if (this.store) this.queue(address, { op: 'suppress', ...entry });
    return { ...entry, decidedBy: 'local' };
  }

  async unsuppress(address: string): Promise<{ removed: boolean; decidedBy: Decider }> {
    const shared = await this.store?.unsuppress(address);
    const local = this.local.unsuppress(address);
    if (shared !== undefined) {
      this.pending.delete(address);
      return { removed: shared || local, decidedBy: 'fleet' };
    }
    if (this.store) this.queue(address, { op: 'unsuppress' });
    return { removed: local, decidedBy: 'local' };
  }

  /** The suppression of `address` (canonical form, as stored), or null. */
  async isSuppressed(address: string): Promise<(Suppression & { decidedBy: Decider }) | null> {
    // A change not yet replayed is newer than what the store says.
    const unsent = this.pending.get(address);
    const shared = unsent ? undefined : await this.store?.isSuppressed(address);
    if (shared !== undefined) {
      if (shared) this.local.remember(address, shared);
      else this.local.unsuppress(address);
      return shared && { ...shared, decidedBy: 'fleet' };
    }
    const entry = this.local.isSuppressed(address);
    return entry && { ...entry, decidedBy: 'local' };
  }

  async listSuppressed(cursor?: string, limit?: number): Promise<SuppressionPage & { decidedBy: Decider }> {
    const shared = await this.store?.listSuppressed(cursor, limit);
    if (shared) return { ...shared, decidedBy: 'fleet' };
    return { ...this.local.listSuppressed(cursor, limit), decidedBy: 'local' };
  }

  /** Releases every lease still held (best effort), then closes the store. */
  async close(): Promise<void> {
    this.unsubscribe?.();
    await Promise.all([...this.held].map((h) => h.release()));
    await this.replaying;
    await this.store?.close();
  }

  // --- for LeaseHandle -------------------------------------------------------------------------------

  /** @internal */
  async renew(h: LeaseHandle): Promise<void> {
    const ok = await this.store?.renewLease(h.key, h.holder, this.ttlMs);
    if (ok === false) {
      this.lost++;
      this.opts.log.warn(
        { event: 'fleet_lease_lost', kind: h.kind, id: h.id },
        'a fleet lease expired in the store before its renewal; the limit may be exceeded until it is released',
      );
    }
  }

  /** @internal */
  async untrack(h: LeaseHandle): Promise<void> {
    this.held.delete(h);
    this.local.releaseLease(h.key);
    // Not answered: the store lets the lease expire after its ttl.
    if (h.decidedBy === 'fleet') await this.store?.releaseLease(h.key, h.holder);
  }

  get leaseTtlMs(): number {
    return this.ttlMs;
  }

  private track(h: LeaseHandle): LeaseHandle {
    this.held.add(h);
    return h;
  }

  private queue(address: string, change: PendingChange): void {
    this.pending.delete(address);
    this.pending.set(address, change);
    if (this.pending.size <= this.maxPending) return;
    const oldest = this.pending.keys().next();
    if (!oldest.done) this.pending.delete(oldest.value);
    this.opts.log.warn(
      { event: 'fleet_suppression_replay_dropped' },
      'too many suppression changes waiting for the fleet store; the oldest is kept on this pod only',
    );
  }

  /** Sends the changes made while the store was away; stops at the first one it does not answer. */
  private replay(): Promise<void> {
    if (this.replaying || !this.store) return this.replaying ?? Promise.resolve();
    const store = this.store;
    this.replaying = (async () => {
      let sent = 0;
      for (const [address, change] of [...this.pending]) {
        const left = change.op === 'suppress' ? (change.until - this.now()) / 1000 : 0;
        const answer =
          change.op === 'unsuppress'
            ? await store.unsuppress(address)
            : left > 0
              ? await store.suppress(address, change.reason, left)
              : true; // expired meanwhile: nothing to send
        if (answer === undefined) break;
        if (this.pending.get(address) === change) this.pending.delete(address);
        sent++;
      }
      if (sent > 0)
        this.opts.log.info(
          { event: 'fleet_suppressions_replayed', sent, waiting: this.pending.size },
          'suppression changes made while the fleet store was away sent to it',
        );
    })().finally(() => (this.replaying = undefined));
    return this.replaying;
  }
}

class LeaseHandle implements FleetLease {
  private released = false;
  private readonly timer?: NodeJS.Timeout;

  constructor(
    private readonly fleet: FleetState,
    readonly kind: LimitKind,
    readonly id: string,
    readonly key: string,
    readonly holder: string,
    readonly decidedBy: Decider,
  ) {
    if (decidedBy === 'fleet') {
      this.timer = setInterval(() => void fleet.renew(this), Math.max(1, Math.floor(fleet.leaseTtlMs / 3)));
      this.timer.unref();
    }
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    clearInterval(this.timer);
    await this.fleet.untrack(this);
  }
}
