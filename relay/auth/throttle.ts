/**
 * Throttling of AUTH attempts per client address (auth.throttle), with an injected clock.
 *
 * After `delayAfterFailures` failures within `window`, each further failure is answered only after a
 * delay that doubles from 1 s up to `maxDelayMs` (slows a guesser to a crawl without a lockout anyone
 * can trigger on purpose too cheaply). At `lockoutAfterFailures` failures the address is refused AUTH
 * outright (454 4.7.0) for `lockout` seconds, without even checking the password. Keys are what
 * network.clientKey() returns (IPv6 grouped by /64).
 *
 * Invariants
 * - Attempts in flight count. A password check is only started (begin() resolves with an Attempt)
 *   while recent failures + checks in flight < lockoutAfterFailures; a further attempt waits, in
 *   arrival order, until a check in flight ends. So however many connections try at the same moment,
 *   at most lockoutAfterFailures passwords are checked before the lockout, and the attempts that waited
 *   are refused once it is in force. (Refusing them outright instead would turn a burst of correct
 *   logins from one busy application into 454s.)
 * - A lockout, once in force, is never lifted early: a check that succeeds while the address is locked
 *   out (the lockout began while it ran) is refused like any other attempt, and a success never clears
 *   the failure count (failures only age out after `window`): otherwise one valid account could reset
 *   the count between guesses at another's password.
 * - Memory stays bounded: an entry with no check in flight, nobody waiting, no failure in the window
 *   and no lockout in force is dropped; past `maxKeys` entries the least recently failing idle ones
 *   are forgotten first.
 */
import type { AuthConfig } from '../config/schema.js';

export type ThrottleSettings = AuthConfig['throttle'];

interface Entry {
  /** Times of recent failures (ms), oldest first. */
  failures: number[];
  lockedUntil: number;
  /** Password checks started and not yet ended. */
  inFlight: number;
  /** Attempts waiting for a check in flight to end, oldest first. */
  waiting: ((r: BeginResult) => void)[];
}

export interface Refusal {
  allowed: false;
  /** The lockout in force ends in this many ms. */
  retryAfterMs: number;
}

export interface FailureResult {
  /** Wait this long before answering the failure. */
  delayMs: number;
  /** The address is locked out: answer 454, not 535. */
  lockedOut: boolean;
  /** This failure began the lockout (the others ended while it was already in force). */
  startedLockout: boolean;
  /** Failures of this address within the window, this one included. */
  failures: number;
}

/** One password check, admitted by begin(); exactly one of its methods ends it. */
export interface Attempt {
  /** The password matched. Refused (a Refusal) when a lockout came into force meanwhile. */
  succeeded(): { allowed: true } | Refusal;
  /** The password did not match. */
  failed(): FailureResult;
  /** The check could not be made (internal error): counts as neither. */
  abandoned(): void;
}

export type BeginResult = { allowed: true; attempt: Attempt } | Refusal;

/** The delay before answering the n-th failure (pure). */
export function failureDelayMs(failures: number, s: ThrottleSettings): number {
  if (failures <= s.delayAfterFailures) return 0;
  const exponent = Math.min(30, failures - s.delayAfterFailures - 1);
  return Math.min(s.maxDelayMs, 1000 * 2 ** exponent);
}

/**
 * What an attempt arriving now gets (pure): refused (a lockout is in force), a check of its own, or a
 * wait for the checks in flight. `recentFailures` counts the failures inside the window.
 */
export function admission(
  e: { recentFailures: number; inFlight: number; lockedUntil: number },
  s: ThrottleSettings,
  now: number,
): 'locked' | 'check' | 'wait' {
  if (e.lockedUntil > now) return 'locked';
  if (e.recentFailures + e.inFlight < s.lockoutAfterFailures) return 'check';
  // Only a lowered lockoutAfterFailures (reload) gets here with nothing in flight: the failures
  // already seen are over the new allowance, so the lockout begins now.
  return e.inFlight > 0 ? 'wait' : 'locked';
}

export class AuthThrottle {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly settings: () => ThrottleSettings,
    private readonly now: () => number = Date.now,
    private readonly maxKeys = 100_000,
  ) {}

  /** Before checking credentials: resolves with a check to make, or a refusal (454). */
  begin(key: string): Promise<BeginResult> {
    const entry = this.entries.get(key) ?? { failures: [], lockedUntil: 0, inFlight: 0, waiting: [] };
    this.entries.set(key, entry);
    return new Promise<BeginResult>((resolve) => {
      entry.waiting.push(resolve);
      this.admit(key, entry);
    });
  }

  get size(): number {
    return this.entries.size;
  }

  /** Checks in flight for this key (tests and diagnostics). */
  inFlight(key: string): number {
    return this.entries.get(key)?.inFlight ?? 0;
  }

  /** Lets waiting attempts in, in order, as far as the allowance goes; refuses them all when locked. */
  private admit(key: string, entry: Entry): void {
    const s = this.settings();
    const now = this.now();
    while (entry.waiting.length > 0) {
      this.forgetOld(entry, now, s);
      const verdict = admission(
        { recentFailures: entry.failures.length, inFlight: entry.inFlight, lockedUntil: entry.lockedUntil },
        s,
        now,
      );
      if (verdict === 'wait') return;
      const next = entry.waiting.shift()!;
      if (verdict === 'locked') {
        if (entry.lockedUntil <= now) this.lock(entry, now, s);
        next({ allowed: false, retryAfterMs: entry.lockedUntil - now });
        continue;
      }
      entry.inFlight++;
      next({ allowed: true, attempt: this.attempt(key, entry) });
    }
    this.dropIfIdle(key, entry, now);
  }

  private attempt(key: string, entry: Entry): Attempt {
    let ended = false;
    const end = () => {
      if (ended) throw new Error('AUTH attempt ended twice');
      ended = true;
      entry.inFlight--;
    };
    return {
      succeeded: () => {
        end();
        const now = this.now();
        const result: { allowed: true } | Refusal =
          entry.lockedUntil > now
            ? { allowed: false, retryAfterMs: entry.lockedUntil - now }
            : { allowed: true };
        this.admit(key, entry);
        return result;
      },
      failed: () => {
        end();
        const result = this.recordFailure(key, entry);
        this.admit(key, entry);
        return result;
      },
      abandoned: () => {
        end();
        this.admit(key, entry);
      },
    };
  }

  private recordFailure(key: string, entry: Entry): FailureResult {
    const s = this.settings();
    const now = this.now();
    this.forgetOld(entry, now, s);
    // Failures of checks that began before a lockout and ended during it do not start another one.
    if (entry.lockedUntil > now)
      return { delayMs: 0, lockedOut: true, startedLockout: false, failures: entry.failures.length };
    entry.failures.push(now);
    const failures = entry.failures.length;
    const lockedOut = failures >= s.lockoutAfterFailures;
    if (lockedOut) this.lock(entry, now, s);
    // Re-insert: Map order becomes least recently failing first.
    this.entries.delete(key);
    this.entries.set(key, entry);
    this.prune(now, s);
    return {
      delayMs: lockedOut ? 0 : failureDelayMs(failures, s),
      lockedOut,
      startedLockout: lockedOut,
      failures,
    };
  }

  private lock(entry: Entry, now: number, s: ThrottleSettings): void {
    entry.lockedUntil = now + s.lockout * 1000;
    entry.failures = []; // the lockout is the penalty for these; after it the count starts over
  }

  private forgetOld(entry: Entry, now: number, s: ThrottleSettings): void {
    const since = now - s.window * 1000;
    while (entry.failures.length > 0 && entry.failures[0]! <= since) entry.failures.shift();
  }

  private idle(entry: Entry, now: number, s: ThrottleSettings): boolean {
    this.forgetOld(entry, now, s);
    return (
      entry.inFlight === 0 &&
      entry.waiting.length === 0 &&
      entry.failures.length === 0 &&
      entry.lockedUntil <= now
    );
  }

  private dropIfIdle(key: string, entry: Entry, now: number): void {
    if (this.idle(entry, now, this.settings())) this.entries.delete(key);
  }

  private prune(now: number, s: ThrottleSettings): void {
    if (this.entries.size > this.maxKeys) {
      for (const [key, e] of this.entries) {
        if (this.entries.size <= this.maxKeys) break;
        if (e.inFlight === 0 && e.waiting.length === 0) this.entries.delete(key);
      }
    }
    for (const [key, e] of this.entries) {
      if (this.idle(e, now, s)) this.entries.delete(key);
      else if (e.inFlight === 0 && e.waiting.length === 0) break; // insertion order: the rest failed more recently
    }
  }
}
