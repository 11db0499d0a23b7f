/**
 * The shapes the fleet modules share: what a rate check, a lease and a suppression answer, and the seam
 * between the facade (state.ts) and the shared store (store.ts), so the facade is tested with a fake.
 *
 * The one convention every store method keeps: `undefined` means "the store could not answer in time
 * (down, slow, erroring): decide locally". It is never thrown.
 */

export interface RateDecision {
  allowed: boolean;
  /** When refused: ms until one more would be allowed (0 when allowed). */
  retryAfterMs: number;
}

/** A delivery's admission at a site: a connection slot and a message of its rate, or why not. */
export type Admission =
  { admitted: true } | { admitted: false; limit: 'connections' | 'rate'; retryAfterMs: number };

export interface Suppression {
  reason: string;
  /** Expiry, ms since the epoch (the store's clock for fleet entries). */
  until: number;
}

export interface SuppressedEntry extends Suppression {
  address: string;
}

export interface SuppressionPage {
  entries: SuppressedEntry[];
  /** Pass back for the next page; absent when this page is the last. */
  cursor?: string;
}

/** Addresses one POST /suppression/add may carry (the tool sends a seed file in batches of this many). */
export const MAX_SUPPRESSION_ADD = 1000;

export type StoreState = 'connected' | 'degraded';

/** What the facade needs from the shared store (FleetStore implements it). */
export interface SharedStore {
  state(): StoreState;
  takeRate(key: string, perMinute: number, burst?: number): Promise<RateDecision | undefined>;
  acquireLease(key: string, limit: number, holderId: string, ttlMs: number): Promise<boolean | undefined>;
  /** acquireLease(leaseKey) and takeRate(rateKey) in one atomic call: both or neither. */
  admit(
    leaseKey: string,
    rateKey: string,
    limit: number,
    holderId: string,
    ttlMs: number,
    perMinute: number,
  ): Promise<Admission | undefined>;
  renewLease(key: string, holderId: string, ttlMs: number): Promise<boolean | undefined>;
  releaseLease(key: string, holderId: string): Promise<boolean | undefined>;
  suppress(address: string, reason: string, ttlSeconds: number): Promise<Suppression | undefined>;
  unsuppress(address: string): Promise<boolean | undefined>;
  isSuppressed(address: string): Promise<Suppression | null | undefined>;
  listSuppressed(cursor?: string, limit?: number): Promise<SuppressionPage | undefined>;
  /** Adds a listener for state transitions; returns a function that removes it. */
  onStateChange(listener: (state: StoreState, reason: string) => void): () => void;
  close(): Promise<void>;
}
