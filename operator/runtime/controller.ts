/**
 * A controller: a rate-limited work queue of object keys drained by workers that call a level-triggered
 * reconcile function, with controller-runtime's result semantics and metrics:
 * - throw → error: requeue with per-item backoff (and counted in controller_runtime_reconcile_errors_total);
 * - { retry: true } → requeue with backoff without counting an error (e.g. waiting on a drain that failed);
 * - { requeueAfterMs } → forget the backoff, requeue after that delay;
 * - nothing → forget the backoff, done until the next event.
 */
import type { Clock } from './clock.js';
import { errorMessage, type Logger } from './logger.js';
import type { OperatorMetrics } from './metrics.js';
import { defaultControllerRateLimiter } from './ratelimit.js';
import { WorkQueue } from './workqueue.js';

export interface ReconcileResult {
  requeueAfterMs?: number;
  retry?: boolean;
}

export type ReconcileFn = (key: string) => Promise<ReconcileResult | void>;

export class Controller {
  /** Replaced by start() after a stop(): a controller stops when leadership is lost and starts again. */
  queue: WorkQueue;
  private workers: Promise<void>[] = [];

  constructor(
    readonly name: string,
    private readonly reconcile: ReconcileFn,
    private readonly clock: Clock,
    private readonly metrics: OperatorMetrics,
    private readonly log: Logger,
    private readonly concurrency = 2,
  ) {
    this.queue = this.newQueue();
    metrics.maxConcurrent.set({ controller: name }, concurrency);
    metrics.activeWorkers.set({ controller: name }, 0);
  }

  private newQueue(): WorkQueue {
    const q = new WorkQueue(
      this.clock,
      defaultControllerRateLimiter(this.clock),
      this.metrics.queue(this.name),
    );
    this.metrics.watchQueue(this.name, q);
    return q;
  }

  enqueue(key: string): void {
    this.queue.add(key);
  }

  start(): void {
    if (this.queue.isShuttingDown()) this.queue = this.newQueue();
    for (let i = 0; i < this.concurrency; i++) this.workers.push(this.worker());
  }

  /** Stops handing out work and waits for the reconciles in progress. */
  async stop(): Promise<void> {
    this.queue.shutDown();
    await Promise.all(this.workers);
    this.workers = [];
  }

  private async worker(): Promise<void> {
    // Ends when its queue shuts down (get() resolves undefined).
    const queue = this.queue;
    for (;;) {
      const key = await queue.get();
      if (key === undefined) return;
      await this.processOne(key, queue);
    }
  }

  /** Runs one reconcile and requeues per its result. Exposed for tests. */
  async processOne(key: string, queue = this.queue): Promise<void> {
    const labels = { controller: this.name };
    this.metrics.activeWorkers.inc(labels);
    const start = this.clock.now();
    try {
      const res = (await this.reconcile(key)) ?? {};
      if (res.retry) {
        this.metrics.reconcileTotal.inc({ ...labels, result: 'requeue' });
        queue.addRateLimited(key);
      } else if (res.requeueAfterMs !== undefined) {
        this.metrics.reconcileTotal.inc({ ...labels, result: 'requeue_after' });
        queue.forget(key);
        queue.addAfter(key, res.requeueAfterMs);
      } else {
        this.metrics.reconcileTotal.inc({ ...labels, result: 'success' });
        queue.forget(key);
      }
    } catch (e) {
      this.metrics.reconcileTotal.inc({ ...labels, result: 'error' });
      this.metrics.reconcileErrors.inc(labels);
      this.log.error(
        { controller: this.name, key, err: errorMessage(e), retries: queue.numRequeues(key) },
        'reconcile failed; will retry with backoff',
      );
      queue.addRateLimited(key);
    } finally {
      this.metrics.reconcileTime.observe(labels, (this.clock.now() - start) / 1000);
      this.metrics.activeWorkers.dec(labels);
      queue.done(key);
    }
  }
}
