/**
 * DNS rechecks of MailDomains, off the reconcile workers: each domain's records are looked up on their own
 * schedule (every interval, jittered by ±10 % per check so thousands of domains do not query in step),
 * at most `concurrency` names at once. The reconcile only reads the latest result; a domain is re-queued
 * only when its result changed. So a resolver that times out delays DNS status, nothing else, and an idle
 * operator makes no reconcile per check.
 */
import type { Clock } from '../runtime/clock.js';
import { hashObject } from '../runtime/diff.js';
import { matchRecords, type ExpectedRecord, type Lookup, type TxtLookup, type TxtResult } from './dns.js';

export interface DnsCheckerOptions {
  lookup: TxtLookup;
  clock: Clock;
  intervalMs: number;
  /** Names looked up at once (default 8). */
  concurrency?: number;
  /** ±fraction of the interval (default 0.1). */
  jitter?: number;
  /** Called with a domain's key when its result changed. */
  onChange?: (key: string) => void;
  random?: () => number;
}

interface Entry {
  expected: readonly ExpectedRecord[];
  expectHash: string;
  result?: Lookup;
  resultHash?: string;
  timer?: unknown;
  running: boolean;
}

export class DnsChecker {
  private readonly entries = new Map<string, Entry>();
  private readonly waiting: Array<() => void> = [];
  private active = 0;
  private inFlight = new Set<Promise<void>>();
  private stopped = false;

  constructor(private readonly opts: DnsCheckerOptions) {}

  /**
   * The latest lookup of `key`'s records, or undefined when none has finished for these expected records
   * yet (one is scheduled now).
   */
  current(key: string, expected: readonly ExpectedRecord[]): Lookup | undefined {
    const expectHash = hashObject(expected);
    const e = this.entries.get(key);
    if (e && e.expectHash === expectHash) return e.result;
    if (e?.timer !== undefined) this.opts.clock.clearTimeout(e.timer);
    const fresh: Entry = { expected, expectHash, running: false };
    this.entries.set(key, fresh);
    this.schedule(key, fresh, 0);
    return undefined;
  }

  forget(key: string): void {
    const e = this.entries.get(key);
    if (e?.timer !== undefined) this.opts.clock.clearTimeout(e.timer);
    this.entries.delete(key);
  }

  /** Resolves when no check is running or waiting to run (tests). */
  async idle(): Promise<void> {
    for (let i = 0; i < 1000 && this.inFlight.size > 0; i++) await Promise.all([...this.inFlight]);
  }

  stop(): void {
    this.stopped = true;
    for (const e of this.entries.values()) if (e.timer !== undefined) this.opts.clock.clearTimeout(e.timer);
    for (const w of this.waiting.splice(0)) w();
  }

  private schedule(key: string, e: Entry, ms: number): void {
    if (this.stopped) return;
    const run = () => {
      e.timer = undefined;
      if (this.entries.get(key) !== e || e.running) return;
      const p = this.check(key, e).finally(() => this.inFlight.delete(p));
      this.inFlight.add(p);
    };
    if (ms <= 0) run();
    else e.timer = this.opts.clock.setTimeout(run, ms);
  }

  private async check(key: string, e: Entry): Promise<void> {
    e.running = true;
    const results = new Map<string, TxtResult>();
    try {
      for (const name of new Set(e.expected.map((x) => x.name))) {
        await this.slot();
        try {
          if (this.stopped) return;
          results.set(name, await this.opts.lookup.txt(name));
        } catch (err) {
          results.set(name, { error: err instanceof Error ? err.message : String(err) });
        } finally {
          this.release();
        }
      }
    } finally {
      e.running = false;
    }
    if (this.stopped || this.entries.get(key) !== e) return;
    const lookup = matchRecords(e.expected, results);
    const h = hashObject(lookup);
    const changed = h !== e.resultHash;
    e.result = lookup;
    e.resultHash = h;
    const jitter = this.opts.jitter ?? 0.1;
    const spread = 1 + jitter * (2 * (this.opts.random ?? Math.random)() - 1);
    this.schedule(key, e, Math.max(1000, Math.round(this.opts.intervalMs * spread)));
    if (changed) this.opts.onChange?.(key);
  }

  private slot(): Promise<void> {
    if (this.active < (this.opts.concurrency ?? 8)) {
      this.active++;
      return Promise.resolve();
    }
    return new Promise((resolve) =>
      this.waiting.push(() => {
        this.active++;
        resolve();
      }),
    );
  }

  private release(): void {
    this.active--;
    this.waiting.shift()?.();
  }
}
