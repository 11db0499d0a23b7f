/**
 * Draining (before a scale-down removes this pod): stop accepting mail, then empty the queue, either by
 * delivering it (no peers) or by handing every queued message to peer relays.
 *
 *   POST /drain {"peers": ["host:port", …]}   start, or change the peers of a drain in progress
 *   GET  /drain → {"state": "idle"|"draining"|"drained"|"failed", "queued", "handedOff", "delivered",
 *                  "failed", "error"?}
 *
 * - Without peers the queue manager keeps delivering and every deferred message is made due once
 *   (like `postqueue -f`); the drain is over when the queue is empty. Mail that keeps failing keeps the
 *   drain going (it follows its retry schedule) — name peers to move it elsewhere.
 * - With peers the queue manager is paused (sends in flight get `pauseGraceMs` to finish, then are
 *   aborted: their recipients stay pending), then passes over the queue hand each message to a peer,
 *   round-robin, trying the next peer for what one refused. A message is removed only after the peer's
 *   250 for each of its pending recipients; a partial acceptance is saved so those recipients are never
 *   sent again. Messages that no peer took wait `retryDelayMs` for the next pass.
 * - Counters: handedOff and failed count messages per hand-off outcome (failed: no peer took it on
 *   that pass, so one message can count several times); delivered counts messages the queue manager
 *   finished while draining. The relay stays not-ready after "drained"; the operator removes the pod.
 * - The queue manager writes for the drain (its one-writer rule): each message is claimed with
 *   beginHandOff() before it goes to a peer and let go with endHandOff(), what peers took is recorded
 *   with handedOff(). A claimed message is not attempted and the queue tools get "active" (409) for it;
 *   one the queue tools are changing is skipped until the next pass.
 * - A drain loop that fails (an unreadable handoff password, a spool error, handoff gone after a reload)
 *   reports state "failed" with `error`, counts mailfleet_relay_drain_failures_total, and resumes the
 *   queue manager so queued mail is still delivered; the relay keeps refusing new mail. POST /drain starts
 *   the drain again.
 */
import type { RelayMetrics } from '../metrics.js';
import { CorruptEntryError, type Spool, type SpoolEntry } from '../spool/spool.js';
import { initialState, pendingRecipients, recordOutcomes } from './outcome.js';
import { systemClock, type Clock, type Log, type QueueManager, type Settlement } from './queue-manager.js';
import type { RecipientOutcome } from './replies.js';

export type DrainState = 'idle' | 'draining' | 'drained' | 'failed';

export interface DrainStatus {
  state: DrainState;
  queued: number;
  handedOff: number;
  delivered: number;
  failed: number;
  /** Why the drain loop failed (state "failed"). */
  error?: string;
}

export interface DrainerOptions {
  spool: Spool;
  queue: QueueManager;
  /** Hands `entry` to `peer` for `recipients`; one outcome per recipient. */
  handOff: (entry: SpoolEntry, recipients: string[], peer: string) => Promise<RecipientOutcome[]>;
  /** Stops (true) accepting mail and turns readiness off. */
  setDraining: (on: boolean) => void;
  metrics?: RelayMetrics;
  log?: Log;
  clock?: Clock;
  /** Pause between hand-off passes when messages are left (default 5 s). */
  retryDelayMs?: number;
  /** Messages handed off at once (default 8). */
  parallel?: number;
  /** How long sends in flight may finish before a hand-off drain aborts them (default 10 s). */
  pauseGraceMs?: number;
}

const silent: Log = { debug() {}, info() {}, warn() {}, error() {} };

export class Drainer {
  private state: DrainState = 'idle';
  private error: string | undefined;
  private peers: string[] = [];
  private readonly counts = { handedOff: 0, delivered: 0, failed: 0 };
  private loop: Promise<void> | undefined;
  private again = false;
  private stopped = false;
  private flushed = false;
  private nextPeer = 0;
  private wakeSleep: (() => void) | undefined;
  private readonly log: Log;
  private readonly clock: Clock;

  private readonly onSettled = (_id: string, how: Settlement) => {
    if (how === 'removed') this.counts.delivered++;
    this.checkEmpty();
  };
  private readonly onAccepted = () => {
    if (this.state === 'drained') this.state = 'draining';
    this.kick();
  };

  constructor(private readonly opts: DrainerOptions) {
    this.log = opts.log ?? silent;
    this.clock = opts.clock ?? systemClock;
  }

  status(): DrainStatus {
    return {
      state: this.state,
      queued: this.opts.spool.count,
      ...this.counts,
      ...(this.error !== undefined ? { error: this.error } : {}),
    };
  }

  /** Starts draining, or sets new peers for the drain in progress (idempotent for the same peers). */
  start(peers: string[]): DrainStatus {
    if (this.stopped) throw new Error('the relay is stopping');
    if (this.state === 'idle') {
      this.opts.setDraining(true);
      this.state = 'draining';
      this.opts.queue.on('settled', this.onSettled);
      this.opts.spool.on('accepted', this.onAccepted);
      this.log.info({ event: 'drain_started', peers, queued: this.opts.spool.count }, 'draining');
    } else if (this.state === 'failed') {
      this.log.info({ peers, queued: this.opts.spool.count }, 'draining again after a failure');
      this.state = 'draining';
      this.error = undefined;
    } else if (peers.join(',') !== this.peers.join(',')) {
      this.log.info({ peers, queued: this.opts.spool.count }, 'drain peers changed');
    }
    this.peers = [...peers];
    this.kick();
    return this.status();
  }

  /** Ends the drain loop (relay shutdown); the queue manager is stopped by its owner. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wakeSleep?.();
    await this.loop;
    this.opts.queue.off('settled', this.onSettled);
    this.opts.spool.off('accepted', this.onAccepted);
  }

  private kick(): void {
    this.wakeSleep?.();
    if (this.loop) {
      this.again = true;
      return;
    }
    this.loop = this.run()
      .catch((err: unknown) => this.fail(err))
      .finally(() => {
        this.loop = undefined;
        if (this.again && !this.stopped) {
          this.again = false;
          this.kick();
        }
      });
  }

  /** The loop stopped on an error: say so, and let the queue manager deliver meanwhile. */
  private fail(err: unknown): void {
    this.state = 'failed';
    this.error = (err instanceof Error ? err.message : String(err)).slice(0, 500);
    this.again = false;
    this.opts.metrics?.drainFailures.inc();
    this.opts.queue.resume();
    this.log.error(
      { event: 'drain_failed', err: this.error },
      'drain loop failed; POST /drain starts it again',
    );
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      this.again = false;
      if (this.peers.length === 0) return this.deliverMode();
      this.flushed = false;
      await this.opts.queue.pause({ abortAfterMs: this.opts.pauseGraceMs ?? 10_000 });
      if (this.peers.length === 0 || this.stopped) continue;
      const entries = [...this.opts.spool.entries()].sort((a, b) => (a.id < b.id ? -1 : 1));
      if (entries.length === 0) return this.checkEmpty();
      this.state = 'draining';
      await this.pass(entries);
      if (this.opts.spool.count > 0 && !this.again) await this.sleep(this.opts.retryDelayMs ?? 5000);
    }
  }

  private async deliverMode(): Promise<void> {
    this.opts.queue.resume();
    if (!this.flushed) {
      this.flushed = true;
      const due = await this.opts.queue.retryAll();
      this.log.info({ due }, 'draining by delivery: every deferred message made due');
    }
    this.checkEmpty();
  }

  private checkEmpty(): void {
    // Nothing queued and no attempt still settling (its counters are final when we say drained).
    if (this.state === 'draining' && this.opts.spool.count === 0 && this.opts.queue.counts().active === 0) {
      this.state = 'drained';
      this.log.info({ event: 'drained', ...this.counts }, 'drained: the queue is empty');
    }
  }

  /**
   * Hands `entries` over, `parallel` at a time. A failure stops new hand-offs, but the pass returns (and
   * rethrows it) only once every hand-off in flight has ended: none may write after stop() returned.
   */
  private async pass(entries: SpoolEntry[]): Promise<void> {
    let next = 0;
    let failed: { err: unknown } | undefined;
    const worker = async () => {
      while (!failed && next < entries.length && !this.stopped && this.peers.length > 0) {
        const { id } = entries[next++]!;
        // undefined: gone, or a queue tool is changing it right now (the next pass sees it again)
        const entry = this.opts.queue.beginHandOff(id);
        if (!entry) continue;
        try {
          await this.handOne(entry);
        } catch (err) {
          failed ??= { err };
        } finally {
          this.opts.queue.endHandOff(id);
        }
      }
    };
    await Promise.all(Array.from({ length: this.opts.parallel ?? 8 }, worker));
    if (failed) throw failed.err;
  }

  private async handOne(entry: SpoolEntry): Promise<void> {
    const { id } = entry;
    let state = entry.state ?? initialState(entry.envelope);
    let pending = pendingRecipients(entry.envelope, state);
    let lastError = '';
    const peers = this.peers;
    const first = this.nextPeer++;
    try {
      for (let i = 0; i < peers.length && pending.length > 0; i++) {
        const peer = peers[(first + i) % peers.length]!;
        const outcomes = await this.opts.handOff(entry, pending, peer);
        const taken = outcomes.filter((o) => o.result === 'delivered');
        lastError = outcomes.find((o) => o.result !== 'delivered')?.reply ?? '';
        if (taken.length === 0) continue;
        state = recordOutcomes(state, taken);
        pending = pendingRecipients(entry.envelope, state);
        if (pending.length > 0) await this.opts.queue.handedOff(id, state);
      }
    } catch (err) {
      if (!(err instanceof CorruptEntryError)) throw err;
      await this.opts.queue.quarantine(id, err.reason);
      this.log.error(
        { id, reason: err.reason },
        'message body is damaged; moved to corrupt/, not handed off',
      );
      return;
    }
    if (pending.length === 0) {
      // 'kept': the queue manager logged it and kept the state, so the next pass only removes the file
      if ((await this.opts.queue.handedOff(id, state)) === 'kept') return;
      this.counts.handedOff++;
      this.opts.metrics?.handoffs.inc({ result: 'ok' });
      this.log.info({ id, recipients: entry.envelope.recipients.length }, 'message handed off');
    } else {
      this.counts.failed++;
      this.opts.metrics?.handoffs.inc({ result: 'failed' });
      this.log.warn({ id, pending: pending.length, lastError }, 'hand-off failed; will try again');
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timers: unknown[] = [];
      const done = () => {
        for (const t of timers) this.clock.clearTimeout(t);
        this.wakeSleep = undefined;
        resolve();
      };
      timers.push(this.clock.setTimeout(done, ms));
      this.wakeSleep = done;
    });
  }
}
