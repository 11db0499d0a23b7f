/**
 * The rate-limited work queue, with client-go's semantics:
 * - a key is queued at most once (dirty set): adding a queued key is a no-op;
 * - a key being processed is not handed to a second worker; if it is added meanwhile it is queued again
 *   when the worker calls done() (so no update is lost and no key is reconciled concurrently);
 * - addAfter keeps only the earliest pending time per key;
 * - addRateLimited delays by the rate limiter; forget clears the key's failure history;
 * - addCoalesced debounces: the key is added once no further call came for `quietMs`, and at the latest
 *   `maxMs` after the first call of the burst (a burst of changes costs one reconcile, not one each).
 * Bounded: the queue holds one entry per distinct key. Time comes from an injected Clock.
 */
import type { Clock } from './clock.js';
import type { RateLimiter } from './ratelimit.js';

/** Hooks for workqueue_* metrics. Durations in seconds. */
export interface QueueMetrics {
  add(): void;
  retry(): void;
  depth(n: number): void;
  queueLatency(seconds: number): void;
  workDuration(seconds: number): void;
}

const noMetrics: QueueMetrics = {
  add() {},
  retry() {},
  depth() {},
  queueLatency() {},
  workDuration() {},
};

export class WorkQueue {
  private readonly queue: string[] = [];
  private readonly dirty = new Set<string>();
  private readonly processing = new Set<string>();
  private readonly addedAt = new Map<string, number>();
  private readonly startedAt = new Map<string, number>();
  private readonly waiting = new Map<string, { at: number; handle: unknown }>();
  private readonly coalescing = new Map<string, { first: number; handle: unknown }>();
  private readonly getters: Array<(key: string | undefined) => void> = [];
  private shuttingDown = false;

  constructor(
    private readonly clock: Clock,
    private readonly limiter: RateLimiter,
    private readonly metrics: QueueMetrics = noMetrics,
  ) {}

  add(key: string): void {
    if (this.shuttingDown || this.dirty.has(key)) return;
    this.metrics.add();
    this.dirty.add(key);
    if (!this.addedAt.has(key)) this.addedAt.set(key, this.clock.now());
    if (this.processing.has(key)) return;
    this.push(key);
  }

  addAfter(key: string, ms: number): void {
    if (this.shuttingDown) return;
    if (ms <= 0) {
      this.add(key);
      return;
    }
    const at = this.clock.now() + ms;
    const pending = this.waiting.get(key);
    if (pending && pending.at <= at) return;
    if (pending) this.clock.clearTimeout(pending.handle);
    const handle = this.clock.setTimeout(() => {
      this.waiting.delete(key);
      this.add(key);
    }, ms);
    this.waiting.set(key, { at, handle });
  }

  addCoalesced(key: string, quietMs: number, maxMs: number): void {
    if (this.shuttingDown) return;
    const now = this.clock.now();
    const pending = this.coalescing.get(key);
    const first = pending?.first ?? now;
    if (pending) this.clock.clearTimeout(pending.handle);
    const delay = Math.max(0, Math.min(now + quietMs, first + maxMs) - now);
    const handle = this.clock.setTimeout(() => {
      this.coalescing.delete(key);
      this.add(key);
    }, delay);
    this.coalescing.set(key, { first, handle });
  }

  addRateLimited(key: string): void {
    this.metrics.retry();
    this.addAfter(key, this.limiter.when(key));
  }

  forget(key: string): void {
    this.limiter.forget(key);
  }

  numRequeues(key: string): number {
    return this.limiter.numRequeues(key);
  }

  /** The next key, or undefined once the queue is shut down. */
  get(): Promise<string | undefined> {
    const key = this.queue.shift();
    if (key !== undefined) return Promise.resolve(this.start(key));
    if (this.shuttingDown) return Promise.resolve(undefined);
    return new Promise((resolve) => this.getters.push(resolve));
  }

  done(key: string): void {
    this.processing.delete(key);
    const started = this.startedAt.get(key);
    this.startedAt.delete(key);
    if (started !== undefined) this.metrics.workDuration((this.clock.now() - started) / 1000);
    if (this.dirty.has(key)) this.push(key);
  }

  len(): number {
    return this.queue.length;
  }

  /** Seconds of work in progress that has not finished, summed (workqueue_unfinished_work_seconds). */
  unfinishedWorkSeconds(): number {
    const now = this.clock.now();
    return [...this.startedAt.values()].reduce((acc, t) => acc + (now - t) / 1000, 0);
  }

  /** Seconds the longest-running item has been processed (workqueue_longest_running_processor_seconds). */
  longestRunningSeconds(): number {
    const now = this.clock.now();
    return Math.max(0, ...[...this.startedAt.values()].map((t) => (now - t) / 1000));
  }

  /** Keys waiting for a delayed add (for tests and diagnostics). */
  pendingDelayed(): Map<string, number> {
    return new Map([...this.waiting].map(([k, v]) => [k, v.at]));
  }

  shutDown(): void {
    this.shuttingDown = true;
    for (const { handle } of [...this.waiting.values(), ...this.coalescing.values()])
      this.clock.clearTimeout(handle);
    this.waiting.clear();
    this.coalescing.clear();
    for (const g of this.getters.splice(0)) g(undefined);
  }

  isShuttingDown(): boolean {
    return this.shuttingDown;
  }

  private push(key: string): void {
    const getter = this.getters.shift();
    if (getter) {
      getter(this.start(key));
      return;
    }
    this.queue.push(key);
    this.metrics.depth(this.queue.length);
  }

  private start(key: string): string {
    this.dirty.delete(key);
    this.processing.add(key);
    const added = this.addedAt.get(key);
    this.addedAt.delete(key);
    const now = this.clock.now();
    if (added !== undefined) this.metrics.queueLatency((now - added) / 1000);
    this.startedAt.set(key, now);
    this.metrics.depth(this.queue.length);
    return key;
  }
}
