/**
 * The queue manager (Postfix's qmgr): decides which spooled message is attempted when, and is the one
 * writer of a queued message's delivery state (delivery/state.ts) and of its removal.
 *
 *   spool ──ready──► active message ──routing──► one job per destination group ──siteOf──► its site
 *                                                     │  per-site FIFO queues, served round-robin under
 *                                                     │  the global limit and the site's shaping limits
 *                                                     ▼  (this pod's count, then the ShapingGate)
 *                                               deliver (attempt.ts) → outcomes per recipient
 *                                                     ▼
 *                    record outcomes ─► (all groups answered) finishAttempt ─► DSN? ─► remove | defer
 *
 * Invariants
 * - At-least-once. A recipient's outcome is written to the spool right after the downstream's final
 *   reply and before anything else happens (when other groups of the message are still out, its state
 *   is saved at once; for the last group, the removal or the state save that ends the attempt is the
 *   record). Saved state is on stable storage when the save resolves; a removal only with the spool's
 *   next directory fsync (up to 200 ms later), so a power cut can bring a delivered message back
 *   (ADR 36). A message is removed only after every recipient was delivered or reported; a DSN is in
 *   the spool before the failure it reports is marked reported. A crash in between redelivers or
 *   re-reports, never loses.
 * - The schedule lives in the spool: a deferred message's next attempt time is its state's
 *   nextAttemptAt. The wake-up heap and the ready set are caches, rebuilt from the spool at start().
 * - Fairness: a job waiting for a busy site holds no slot. Sites (sites.ts: the smarthost, or the MX
 *   hosts a recipient domain shares with others) are served round-robin, so a slow site can use at most
 *   its maxConnections slots and never starves the rest.
 * - Shaping: a site's jobs in flight on this pod (asking the gate or delivering) never exceed its
 *   maxConnections. A job over a limit (this pod's, or the gate's: connections fleet-wide, messages per
 *   minute) goes back to the head of its site's queue and the site is held: until the retry time the
 *   gate gave, or a re-check interval, or (connections) until one of its deliveries here ends. Waiting is
 *   not an attempt: nothing is written, no attempt counted, nothing bounced.
 * - One writer: after accept(), only this module calls the spool's saveState(), remove() and quarantine()
 *   (eslint.config.js enforces it). The drain asks through beginHandOff() / handedOff() / quarantine() /
 *   endHandOff(), the queue tools through retryNow() and delete().
 * - A message is active (in `activeIds`, untouchable by the queue tools and the drain) from the moment
 *   its jobs are queued until its attempt is settled on disk. A message the drain is handing off, or a
 *   tool is changing, is claimed instead: not attempted, refused to the tools ('active') and skipped by
 *   the drain until the change is on disk. So no two writes to one message ever overlap.
 * - A damaged body (checksum mismatch) sets the message aside in corrupt/, never drops it.
 *
 * Diagnostics: one log line per settled attempt (id, outcome, per-result counts), per DSN queued, per
 * message set aside and per DKIM signing failure; metrics delivery_attempts_total,
 * delivery_duration_seconds, time_in_queue_seconds, bounces_total, bounces_dropped_total,
 * dkim_signing_failures_total, site_queued, site_in_flight, site_shaping_deferrals_total.
 */
import { EventEmitter } from 'node:events';
import { Readable } from 'node:stream';
import type { RelayConfig, ShapingConfig } from '../config/schema.js';
import type { RelayMetrics } from '../metrics.js';
import { CorruptEntryError, type Spool, type SpoolEntry } from '../spool/spool.js';
import type { OutgoingMessage } from './attempt.js';
import type { BounceRequest } from './bounce.js';
import type { DkimResult } from './dkim.js';
import { finishAttempt, initialState, pendingRecipients, recordOutcomes } from './outcome.js';
import { localDeferral, type RecipientOutcome } from './replies.js';
import { backoffMs } from './retry.js';
import { groupRecipients, routeFor, type DeliveryGroup } from './router.js';
import type { DeliveryState } from './state.js';
import {
  localShapingGate,
  siteLimits,
  siteWithoutDns,
  type ShapingGate,
  type ShapingLimit,
  type Site,
  type SiteLimits,
} from './sites.js';
import { WakeHeap } from './wake-heap.js';

export interface Log {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}
const silent: Log = { debug() {}, info() {}, warn() {}, error() {} };

export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

export interface QueueManagerOptions {
  spool: Spool;
  /** The configuration in force (read at each decision, so reloads apply to the next attempt). */
  config: () => RelayConfig;
  /** `limits`: the site's, for the connection (deliveriesPerConnection). */
  deliver: (
    msg: OutgoingMessage,
    group: DeliveryGroup,
    signal: AbortSignal,
    limits: SiteLimits,
  ) => Promise<RecipientOutcome[]>;
  /** The site a group is delivered to (default: siteWithoutDns, the smarthost or the domain alone). */
  siteOf?: (group: DeliveryGroup) => Promise<Site>;
  /** Shaping beyond this pod (default: localShapingGate, this pod's counts). */
  gate?: ShapingGate;
  /** How long a site the gate found full fleet-wide is held before asking again (default 1000 ms). */
  shapingRecheckMs?: number;
  /** DKIM signature for a message, or undefined when its domain does not sign. */
  sign: (entry: SpoolEntry) => Promise<DkimResult | undefined>;
  queueDsn: (req: BounceRequest) => Promise<string>;
  metrics?: RelayMetrics;
  log?: Log;
  clock?: Clock;
  /** Messages in an attempt at once (Postfix qmgr_message_active_limit). */
  maxActive?: number;
}

export type DeleteResult = 'deleted' | 'not-found' | 'active';
/** The longest a site is held before the gate is asked again, whatever retry time it gave. */
const MAX_HOLD_MS = 60_000;

/** How an attempt ended for a message. */
export type Settlement = 'removed' | 'deferred' | 'quarantined' | 'released';

interface ActiveMessage {
  entry: SpoolEntry;
  state: DeliveryState;
  /** Jobs queued or running. */
  jobsLeft: number;
  queued: Set<Job>;
  /** The attempt was interrupted (pause/stop) before all its jobs ran: settle nothing, try again later. */
  abandoned: boolean;
  corrupt?: string;
  /** Outcomes recorded in `state` that are not on disk yet. */
  dirty: boolean;
  signing?: Promise<string>;
  saving: Promise<void>;
}

interface Job {
  msg: ActiveMessage;
  group: DeliveryGroup;
  site: Site;
  controller: AbortController;
  /** The job's limits, for the shaping config they were computed from (recomputed after a reload). */
  limits?: SiteLimits;
  limitsFrom?: unknown;
  /** Limits this job was held back by (each counted once in site_shaping_deferrals_total). */
  heldBy: Set<ShapingLimit>;
}

interface SiteQueue {
  site: Site;
  queue: Job[];
  /** Jobs taken from the queue: asking the gate or delivering. */
  running: number;
  delivering: number;
  /** In the round-robin list (queued jobs, not held). */
  inRr: boolean;
  /** Over a limit: no job of this site is started until the hold ends. */
  hold?: { limit: ShapingLimit; timer: unknown };
}

interface QueueEvents {
  settled: [id: string, how: Settlement];
  quiet: [];
}

export class QueueManager extends EventEmitter<QueueEvents> {
  private readonly active = new Map<string, ActiveMessage>();
  /** The active ids, shared with the spool (its metrics tell active messages apart). */
  private readonly activeIds = new Set<string>();
  /** Messages off the schedule while the drain hands them off or a queue tool changes them. */
  private readonly claimed = new Set<string>();
  private readonly ready = new Set<string>();
  private readonly wakeups = new WakeHeap();
  private readonly sites = new Map<string, SiteQueue>();
  /** Sites with queued jobs and no hold, served round-robin. */
  private rr: SiteQueue[] = [];
  private rrNext = 0;
  private readonly runningJobs = new Set<Job>();
  private paused = true;
  private timer: unknown;
  private timerAt = Infinity;
  private readonly clock: Clock;
  private readonly log: Log;
  private readonly maxActive: number;
  private readonly recheckMs: number;
  private readonly gate: ShapingGate;
  private readonly siteOf: (group: DeliveryGroup) => Promise<Site>;
  private readonly onAccepted = (entry: SpoolEntry) => this.schedule(entry);

  constructor(private readonly opts: QueueManagerOptions) {
    super();
    this.clock = opts.clock ?? systemClock;
    this.log = opts.log ?? silent;
    this.maxActive = opts.maxActive ?? 10_000;
    this.recheckMs = opts.shapingRecheckMs ?? 1000;
    this.gate = opts.gate ?? localShapingGate(() => this.clock.now());
    this.siteOf = opts.siteOf ?? ((group) => Promise.resolve(siteWithoutDns(group)));
    opts.spool.activeIds = this.activeIds;
    opts.metrics?.setSiteCollector(() => this.collectSiteMetrics());
  }

  /** Rebuilds the schedule from the spool and starts delivering; new mail starts at once. */
  start(): void {
    const entries = [...this.opts.spool.entries()].sort((a, b) => (a.id < b.id ? -1 : 1));
    for (const e of entries) this.schedule(e);
    this.opts.spool.on('accepted', this.onAccepted);
    this.paused = false;
    this.log.info(
      { messages: entries.length, ready: this.ready.size, deferred: this.wakeups.size },
      'queue recovered',
    );
    this.pump();
  }

  /**
   * Stops starting attempts and waits until none is in progress (running sends finish normally; jobs
   * not started yet are given up and their messages tried again after resume()). With `abort`, running
   * sends are cancelled too (their recipients stay pending: at-least-once); with `abortAfterMs`, those
   * still running after that long are.
   */
  async pause(opts: { abort?: boolean; abortAfterMs?: number } = {}): Promise<void> {
    this.paused = true;
    for (const s of [...this.sites.values()]) {
      for (const job of s.queue) {
        job.msg.queued.delete(job);
        job.msg.jobsLeft--;
        job.msg.abandoned = true;
      }
      s.queue = [];
      s.inRr = false;
      this.unhold(s);
      this.cleanupSite(s);
    }
    this.rr = [];
    const abort = () => {
      for (const job of this.runningJobs) job.controller.abort();
    };
    if (opts.abort) abort();
    const timer =
      !opts.abort && opts.abortAfterMs !== undefined
        ? this.clock.setTimeout(abort, opts.abortAfterMs)
        : undefined;
    for (const msg of [...this.active.values()])
      if (msg.jobsLeft === 0 && msg.abandoned) void this.settle(msg);
    while (this.active.size > 0) await new Promise<void>((resolve) => this.once('quiet', resolve));
    if (timer !== undefined) this.clock.clearTimeout(timer);
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.pump();
  }

  /** Stops for good: aborts running sends, waits for their state to be saved, stops listening. */
  async stop(): Promise<void> {
    this.opts.spool.off('accepted', this.onAccepted);
    await this.pause({ abort: true });
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = Infinity;
  }

  get isPaused(): boolean {
    return this.paused;
  }

  isActive(id: string): boolean {
    return this.active.has(id);
  }

  /** In an attempt, or claimed by the drain or a queue tool: nobody else may change it now. */
  private busy(id: string): boolean {
    return this.active.has(id) || this.claimed.has(id);
  }

  private claim(id: string): void {
    this.claimed.add(id);
    this.ready.delete(id);
    this.wakeups.delete(id);
  }

  /** Ends a claim: the message, if it is still queued, goes back on the schedule its state says. */
  private unclaim(id: string): void {
    if (!this.claimed.delete(id)) return;
    const entry = this.opts.spool.get(id);
    if (entry) this.schedule(entry);
  }

  /** Counts for the queue tools and tests. */
  counts(): { active: number; ready: number; waiting: number; running: number } {
    return {
      active: this.active.size,
      ready: this.ready.size,
      waiting: this.wakeups.size,
      running: this.runningJobs.size,
    };
  }

  /**
   * Makes a deferred message due now (persisted, so it holds across a restart).
   * Returns 'not-found', 'active' (being attempted, handed off or changed by another tool) or 'scheduled'.
   */
  async retryNow(id: string): Promise<'not-found' | 'active' | 'scheduled'> {
    const entry = this.opts.spool.get(id);
    if (!entry) return 'not-found';
    if (this.busy(id)) return 'active';
    this.claim(id);
    try {
      if (entry.state && entry.state.nextAttemptAt > this.clock.now()) {
        await this.opts.spool.saveState(id, { ...entry.state, nextAttemptAt: 0 });
      }
    } finally {
      this.unclaim(id);
    }
    return 'scheduled';
  }

  /** retryNow() for every message; returns how many were made due (busy ones are not). */
  async retryAll(): Promise<number> {
    let n = 0;
    for (const e of [...this.opts.spool.entries()]) if ((await this.retryNow(e.id)) === 'scheduled') n++;
    return n;
  }

  /**
   * Removes a message for the queue tools. 'active' while it is attempted or handed off (try again);
   * rejects when the file cannot be removed, and the message stays queued.
   */
  async delete(id: string): Promise<DeleteResult> {
    if (!this.opts.spool.get(id)) return 'not-found';
    if (this.busy(id)) return 'active';
    this.claim(id);
    try {
      await this.opts.spool.remove(id);
    } finally {
      this.unclaim(id);
    }
    return 'deleted';
  }

  // ── hand-off (the drain): claimed, not attempted, until endHandOff() ─────────────────────────────

  /**
   * Takes a queued message off the schedule for the drain to hand to peers. Returns its entry, or
   * undefined when it is gone or busy (attempted, or a queue tool is changing it): the drain's next pass
   * sees it again.
   */
  beginHandOff(id: string): SpoolEntry | undefined {
    const entry = this.opts.spool.get(id);
    if (!entry || this.busy(id)) return undefined;
    this.claim(id);
    return entry;
  }

  /**
   * Records what peers took (`state`, from recordOutcomes) for a message in hand-off: saved while
   * recipients are pending, removed once none is. 'kept': the file could not be removed, so the final
   * state is saved (best effort) and the next pass only removes it. A failed save rejects.
   */
  async handedOff(id: string, state: DeliveryState): Promise<'recorded' | 'removed' | 'kept'> {
    const entry = this.handingOff(id);
    if (pendingRecipients(entry.envelope, state).length > 0) {
      await this.opts.spool.saveState(id, state);
      return 'recorded';
    }
    try {
      await this.opts.spool.remove(id);
      return 'removed';
    } catch (err) {
      await this.opts.spool.saveState(id, state).catch(() => undefined);
      this.log.error(
        { id, err: String(err) },
        'handed off, but the file could not be removed; the removal is retried',
      );
      return 'kept';
    }
  }

  /** Sets a message in hand-off aside in corrupt/: its body turned out damaged. */
  async quarantine(id: string, reason: string): Promise<void> {
    this.handingOff(id);
    await this.opts.spool.quarantine(id, reason);
  }

  /** The drain is done with the message: if it is still queued, it goes back on its schedule. */
  endHandOff(id: string): void {
    this.unclaim(id);
  }

  private handingOff(id: string): SpoolEntry {
    const entry = this.opts.spool.get(id);
    if (!entry || !this.claimed.has(id)) throw new Error(`message ${id} is not being handed off`);
    return entry;
  }

  /** Puts a message on the schedule its spool state says (ready now, or a wake-up later). */
  schedule(entry: SpoolEntry): void {
    const { id } = entry;
    if (this.busy(id) || this.ready.has(id)) return;
    const at = entry.state?.nextAttemptAt ?? 0;
    if (at <= this.clock.now()) {
      this.wakeups.delete(id);
      this.ready.add(id);
      this.pump();
    } else {
      this.wakeAt(id, at);
    }
  }

  // ── scheduling ──────────────────────────────────────────────────────────────────────────────────

  private wakeAt(id: string, at: number): void {
    this.wakeups.set(id, at);
    this.armTimer();
  }

  private armTimer(): void {
    const next = this.wakeups.peek();
    if (next === undefined || next >= this.timerAt) return;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timerAt = next;
    const delay = Math.min(Math.max(next - this.clock.now(), 1), 2 ** 31 - 1);
    this.timer = this.clock.setTimeout(() => this.onTimer(), delay);
  }

  private onTimer(): void {
    this.timer = undefined;
    this.timerAt = Infinity;
    for (const id of this.wakeups.popDue(this.clock.now())) {
      if (!this.busy(id) && this.opts.spool.get(id)) this.ready.add(id);
    }
    this.armTimer();
    this.pump();
  }

  private pump(): void {
    if (this.paused) return;
    while (this.ready.size > 0 && this.active.size < this.maxActive) {
      const id = this.ready.values().next().value!;
      this.ready.delete(id);
      this.activate(id);
    }
    const { concurrency, shaping } = this.opts.config().delivery;
    while (this.runningJobs.size < concurrency) {
      const job = this.nextJob(shaping);
      if (!job) break;
      void this.startJob(job);
    }
  }

  /** Round-robin over sites with queued jobs, no hold and a free slot on this pod. */
  private nextJob(shaping: ShapingConfig): Job | undefined {
    for (let n = 0; n < this.rr.length; n++) {
      const i = (this.rrNext + n) % this.rr.length;
      const s = this.rr[i]!;
      const job = s.queue[0]!;
      if (s.running >= this.limitsOf(job, shaping).maxConnections) {
        this.countHeld(job, 'connections');
        continue;
      }
      s.queue.shift();
      job.msg.queued.delete(job);
      s.running++;
      if (s.queue.length === 0) {
        this.rr.splice(i, 1);
        s.inRr = false;
        this.rrNext = i;
      } else {
        this.rrNext = i + 1;
      }
      return job;
    }
    return undefined;
  }

  /** The job's site limits under the shaping config in force. */
  private limitsOf(job: Job, shaping: ShapingConfig): SiteLimits {
    if (job.limitsFrom !== shaping || !job.limits) {
      job.limits = siteLimits(shaping, job.site.names);
      job.limitsFrom = shaping;
    }
    return job.limits;
  }

  private countHeld(job: Job, limit: ShapingLimit): void {
    if (job.heldBy.has(limit)) return;
    job.heldBy.add(limit);
    const site = this.limitsOf(job, this.opts.config().delivery.shaping).label;
    this.opts.metrics?.siteShapingDeferrals.inc({ site, limit });
  }

  private enqueueRr(s: SiteQueue): void {
    if (s.inRr || s.hold || s.queue.length === 0) return;
    s.inRr = true;
    this.rr.push(s);
  }

  /** Holds `s` after a refusal; a rate hold outlasts a connection hold (a freed slot does not end it). */
  private holdSite(s: SiteQueue, limit: ShapingLimit, retryAfterMs: number): void {
    if (s.hold && (s.hold.limit === 'rate' || limit === 'connections')) return;
    this.unhold(s);
    if (s.inRr) {
      this.rr.splice(this.rr.indexOf(s), 1);
      s.inRr = false;
    }
    const delay = Math.min(Math.max(Math.ceil(retryAfterMs), 1), MAX_HOLD_MS);
    const timer = this.clock.setTimeout(() => {
      s.hold = undefined;
      this.enqueueRr(s);
      this.pump();
    }, delay);
    s.hold = { limit, timer };
  }

  private unhold(s: SiteQueue): void {
    if (!s.hold) return;
    this.clock.clearTimeout(s.hold.timer);
    s.hold = undefined;
  }

  private cleanupSite(s: SiteQueue): void {
    if (s.running === 0 && s.queue.length === 0 && this.sites.get(s.site.key) === s) {
      this.unhold(s);
      this.sites.delete(s.site.key);
    }
  }

  /** site_queued and site_in_flight at scrape time, by label (every configured label, 0 included). */
  private collectSiteMetrics(): void {
    const m = this.opts.metrics;
    if (!m) return;
    const shaping = this.opts.config().delivery.shaping;
    const queued = new Map<string, number>([
      ['default', 0],
      ...shaping.sites.map((o) => [o.match[0]!, 0] as const),
    ]);
    const inFlight = new Map(queued);
    for (const s of this.sites.values()) {
      const { label } = siteLimits(shaping, s.site.names);
      queued.set(label, (queued.get(label) ?? 0) + s.queue.length);
      inFlight.set(label, (inFlight.get(label) ?? 0) + s.delivering);
    }
    m.siteQueued.reset();
    m.siteInFlight.reset();
    for (const [site, n] of queued) m.siteQueued.set({ site }, n);
    for (const [site, n] of inFlight) m.siteInFlight.set({ site }, n);
  }

  private activate(id: string): void {
    const entry = this.opts.spool.get(id);
    if (!entry) return;
    const state = entry.state ?? initialState(entry.envelope);
    const msg: ActiveMessage = {
      entry,
      state,
      jobsLeft: 0,
      queued: new Set(),
      abandoned: false,
      dirty: false,
      saving: Promise.resolve(),
    };
    this.active.set(id, msg);
    this.activeIds.add(id);
    const pending = pendingRecipients(entry.envelope, state);
    let groups: DeliveryGroup[];
    try {
      groups = groupRecipients(routeFor(this.opts.config(), entry.envelope.mailFrom), pending);
    } catch (err) {
      const reason = `routing: ${(err as Error).message}`;
      msg.state = recordOutcomes(
        state,
        pending.map((r) => localDeferral(r, '4.3.5', reason)),
      );
      msg.dirty = true;
      groups = [];
    }
    if (groups.length === 0) {
      void this.settle(msg);
      return;
    }
    msg.jobsLeft = groups.length;
    void this.place(msg, groups);
  }

  /** Queues one job per group at its site, once the sites are known (given up if paused meanwhile). */
  private async place(msg: ActiveMessage, groups: DeliveryGroup[]): Promise<void> {
    const sites = await Promise.all(
      groups.map((g) =>
        Promise.resolve()
          .then(() => this.siteOf(g))
          .catch(() => siteWithoutDns(g)),
      ),
    );
    if (this.paused) {
      msg.jobsLeft -= groups.length;
      msg.abandoned = true;
      if (msg.jobsLeft === 0) await this.settle(msg);
      return;
    }
    groups.forEach((group, i) => {
      const site = sites[i]!;
      const job: Job = { msg, group, site, controller: new AbortController(), heldBy: new Set() };
      msg.queued.add(job);
      let s = this.sites.get(site.key);
      if (!s) {
        s = { site, queue: [], running: 0, delivering: 0, inRr: false };
        this.sites.set(site.key, s);
      }
      s.queue.push(job);
      this.enqueueRr(s);
    });
    this.pump();
  }

  // ── one job: one destination group of one message ──────────────────────────────────────────────

  /**
   * Asks the gate for a connection slot at the job's site together with a message of its rate;
   * delivers when admitted. Refused: the job goes back to the head of its site's queue and the site is held.
   * The job counts in its site's `running` from nextJob() on, so jobs asking at once stay within the
   * site's limit on this pod.
   */
  private async startJob(job: Job): Promise<void> {
    this.runningJobs.add(job);
    const s = this.sites.get(job.site.key)!;
    const limits = this.limitsOf(job, this.opts.config().delivery.shaping);
    let slot: { release(): void } | null = null;
    let refused: { limit: ShapingLimit; retryAfterMs: number } | undefined;
    try {
      const admission = await this.gate.admit(job.site.key, limits.maxConnections, limits.messagesPerMinute);
      if ('slot' in admission) slot = admission.slot;
      else
        refused = {
          limit: admission.refused,
          retryAfterMs: admission.refused === 'rate' ? admission.retryAfterMs : this.recheckMs,
        };
    } catch (err) {
      this.log.warn({ site: limits.label, err: String(err) }, 'shaping gate failed; the site waits');
      refused = { limit: 'connections', retryAfterMs: this.recheckMs };
    }
    if (!refused && !this.paused) return this.run(job, s, limits, slot!);
    slot?.release();
    this.runningJobs.delete(job);
    s.running--;
    if (this.paused) {
      // Not started: given up like a queued job, the message tried again after resume().
      job.msg.jobsLeft--;
      job.msg.abandoned = true;
      this.cleanupSite(s);
      if (job.msg.jobsLeft === 0) await this.settle(job.msg);
      return;
    }
    s.queue.unshift(job);
    job.msg.queued.add(job);
    this.countHeld(job, refused!.limit);
    this.holdSite(s, refused!.limit, refused!.retryAfterMs);
    this.pump();
  }

  private async run(job: Job, s: SiteQueue, limits: SiteLimits, slot: { release(): void }): Promise<void> {
    const { msg, group } = job;
    const started = this.clock.now();
    s.delivering++;
    let outcomes: RecipientOutcome[] | undefined;
    try {
      const outgoing = await this.outgoing(msg);
      outcomes = await this.opts.deliver(outgoing, group, job.controller.signal, limits);
    } catch (err) {
      if (err instanceof CorruptEntryError) msg.corrupt = err.reason;
      else if (err instanceof SigningFailed) {
        outcomes = group.recipients.map((r) =>
          localDeferral(r, '4.7.5', `not sent unsigned (dkim.onFailure: defer): ${err.message}`),
        );
      } else {
        this.log.error({ id: msg.entry.id, err: String(err) }, 'delivery attempt failed unexpectedly');
        outcomes = group.recipients.map((r) => localDeferral(r, '4.3.0', `internal error: ${String(err)}`));
      }
    }
    s.delivering--;
    slot.release();
    if (outcomes) {
      msg.state = recordOutcomes(msg.state, outcomes);
      msg.dirty = true;
      this.observe(outcomes, started);
      // Others of this message's groups are still out: record this one's outcome now. The last group's
      // outcome is recorded by settle(), which writes before anything else happens.
      if (msg.jobsLeft > 1) await this.saveOrLog(msg);
    }
    this.runningJobs.delete(job);
    s.running--;
    if (s.hold?.limit === 'connections') {
      // A slot of this site is free here: ask again now rather than at the re-check.
      this.unhold(s);
      this.enqueueRr(s);
    }
    this.cleanupSite(s);
    msg.jobsLeft--;
    if (msg.jobsLeft === 0) await this.settle(msg);
    this.pump();
  }

  /** The message as sent: its body behind its DKIM signature (computed once per message). */
  private async outgoing(msg: ActiveMessage): Promise<OutgoingMessage> {
    const signature = await (msg.signing ??= this.signature(msg));
    const { id, envelope, size } = msg.entry;
    const spool = this.opts.spool;
    return {
      id,
      envelope,
      size: size + Buffer.byteLength(signature),
      openBody: () => (signature ? prepend(signature, () => spool.readBody(id)) : spool.readBody(id)),
    };
  }

  /**
   * The message's DKIM signature, made at its first attempt and kept in its state. When signing fails,
   * the domain's dkim.onFailure decides: defer (SigningFailed: this attempt is deferred for every
   * group, nothing is kept, the next attempt signs again) or send unsigned (kept, so every later attempt
   * sends the same bytes).
   */
  private async signature(msg: ActiveMessage): Promise<string> {
    if (msg.state.dkimSignature !== undefined) return msg.state.dkimSignature;
    const result = await this.opts.sign(msg.entry);
    if (!result) return '';
    if (result.error) {
      const defer = (result.onFailure ?? 'defer') === 'defer';
      this.opts.metrics?.dkimSigningFailures.inc({ action: defer ? 'deferred' : 'sent_unsigned' });
      if (defer) {
        this.log.warn({ id: msg.entry.id, error: result.error }, 'DKIM signing failed; message deferred');
        throw new SigningFailed(result.error);
      }
      this.log.warn({ id: msg.entry.id, error: result.error }, 'sending without a DKIM signature');
    }
    msg.state = { ...msg.state, dkimSignature: result.signature };
    return result.signature;
  }

  private observe(outcomes: RecipientOutcome[], started: number): void {
    const m = this.opts.metrics;
    if (!m) return;
    for (const o of outcomes) m.deliveryAttempts.inc({ result: o.result });
    const result = outcomes.some((o) => o.result === 'deferred')
      ? 'deferred'
      : outcomes.some((o) => o.result === 'bounced')
        ? 'bounced'
        : 'delivered';
    m.deliveryDuration.observe({ result }, Math.max(0, this.clock.now() - started) / 1000);
  }

  /** Writes the message's state; saves of one message never overlap and the latest state wins. */
  private save(msg: ActiveMessage): Promise<void> {
    msg.dirty = false;
    const run = () => this.opts.spool.saveState(msg.entry.id, msg.state);
    msg.saving = msg.saving.then(run, run);
    return msg.saving;
  }

  /** save() for callers that carry on regardless: a lost save only means a recipient is tried again. */
  private saveOrLog(msg: ActiveMessage): Promise<void> {
    return this.save(msg).catch((err: unknown) => {
      this.log.error({ id: msg.entry.id, err: String(err) }, 'could not save delivery state');
    });
  }

  // ── end of an attempt ──────────────────────────────────────────────────────────────────────────

  /** All groups answered: bounce, remove or defer, then let the message go. */
  private async settle(msg: ActiveMessage): Promise<void> {
    const { id } = msg.entry;
    if (msg.corrupt) {
      await this.opts.spool.quarantine(id, msg.corrupt).catch((err: unknown) => {
        this.log.error({ id, err: String(err) }, 'could not set a damaged message aside');
      });
      this.log.error({ id, reason: msg.corrupt }, 'message body is damaged; moved to corrupt/');
      return this.release(msg, 'quarantined');
    }
    if (msg.abandoned) {
      if (msg.dirty) await this.saveOrLog(msg);
      return this.release(msg, 'released');
    }
    const now = this.clock.now();
    const cfg = this.opts.config();
    const decision = finishAttempt(msg.entry.envelope, msg.state, now, cfg.delivery.retry);
    try {
      if (decision.bounce.length || decision.delay.length) {
        await this.save(msg); // outcomes durable before the notices about them
        await this.notify(msg, decision.bounce, decision.allExpired ? 'expired' : 'failed', now);
        await this.notify(msg, decision.delay, 'delay', now);
      }
      if (decision.dropped) {
        this.opts.metrics?.bouncesDropped.inc(decision.dropped);
        this.log.warn(
          { id, recipients: decision.dropped },
          'bounce failed; dropped (a bounce is never bounced)',
        );
      }
      msg.state = decision.state;
      if (decision.finished) {
        await this.removeFinished(id, decision.state);
        const failed = Object.values(decision.state.recipients).some((r) => r.status === 'failed');
        this.opts.metrics?.timeInQueue.observe(
          { result: failed ? 'bounced' : 'delivered' },
          Math.max(0, now - msg.entry.envelope.receivedAt) / 1000,
        );
      } else {
        await this.opts.spool.saveState(id, decision.state);
      }
    } catch (err) {
      // Whatever is on disk is a state this attempt started from or recorded: try again later.
      const at = now + backoffMs(1, cfg.delivery.retry);
      this.log.error(
        { id, err: String(err), retryAt: new Date(at).toISOString() },
        'could not settle attempt',
      );
      this.release(msg, 'deferred', at);
      return;
    }
    this.logSettled(msg, decision.finished);
    this.release(msg, decision.finished ? 'removed' : 'deferred');
  }

  /**
   * Removes a finished message. When its file cannot be removed it stays queued; its final state is
   * saved (best effort) so the retry after the backoff only removes it and sends nothing again.
   */
  private async removeFinished(id: string, state: DeliveryState): Promise<void> {
    try {
      await this.opts.spool.remove(id);
    } catch (err) {
      this.log.error(
        { id, err: String(err) },
        'could not remove a finished message; it stays queued and its removal is retried',
      );
      await this.opts.spool.saveState(id, state).catch((saveErr: unknown) => {
        this.log.error(
          { id, err: String(saveErr) },
          'could not save the final state either: the retry will deliver the message again',
        );
      });
      throw err;
    }
  }

  private async notify(
    msg: ActiveMessage,
    recipients: BounceRequest['recipients'],
    kind: 'failed' | 'expired' | 'delay',
    now: number,
  ): Promise<void> {
    if (recipients.length === 0) return;
    const dsnId = await this.opts.queueDsn({
      kind: kind === 'delay' ? 'delay' : 'failure',
      id: msg.entry.id,
      envelope: msg.entry.envelope,
      recipients,
      hostname: this.opts.config().hostname,
      now,
    });
    this.opts.metrics?.bounces.inc({ kind });
    this.log.info(
      { id: msg.entry.id, dsn: dsnId, kind, recipients: recipients.length },
      'delivery status notification queued',
    );
  }

  private logSettled(msg: ActiveMessage, finished: boolean): void {
    const counts = { delivered: 0, failed: 0, pending: 0 };
    for (const r of Object.values(msg.state.recipients)) counts[r.status]++;
    this.log.info(
      {
        id: msg.entry.id,
        attempts: msg.state.attempts,
        ...counts,
        ...(finished ? {} : { nextAttemptAt: new Date(msg.state.nextAttemptAt).toISOString() }),
        ...(counts.pending || counts.failed ? { lastError: msg.state.lastError } : {}),
      },
      finished ? 'message done' : 'message deferred',
    );
  }

  /** The attempt is over: the message leaves the active set and goes back on the schedule if it stays. */
  private release(msg: ActiveMessage, how: Settlement = 'released', retryAt?: number): void {
    const { id } = msg.entry;
    if (!this.active.delete(id)) return;
    this.activeIds.delete(id);
    const entry = this.opts.spool.get(id);
    if (entry) {
      if (retryAt !== undefined) this.wakeAt(id, retryAt);
      else this.schedule(entry);
    }
    this.emit('settled', id, how);
    if (this.active.size === 0) this.emit('quiet');
  }
}

/** The message could not be signed and its domain defers rather than send it unsigned. */
class SigningFailed extends Error {}

/** A body stream with `head` in front (the DKIM-Signature header fields). */
function prepend(head: string, open: () => Readable): Readable {
  return Readable.from(
    (async function* () {
      yield Buffer.from(head, 'utf8');
      yield* open();
    })(),
  );
}
