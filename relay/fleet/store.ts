/**
 * The fleet's shared store: one connection (@redis/client) to a Redis-protocol server (Redis >= 7 or
 * Valkey) holding the limits, leases and suppression list that the pods of one relay fleet share.
 * Every check-and-update is one server-side script (scripts.ts); reads are single commands.
 *
 * Key layout, all under `keyPrefix` (e.g. "mailfleet:<namespace>/<relay>:", applied by the client):
 *   rate:<kind>:<id>      string   GCRA theoretical arrival time (ms); expires when the bucket is full again
 *   lease:<kind>:<id>     zset     holder id → lease expiry (ms); expires with its longest lease
 *   sup:<address>         hash     reason, until (ms); expires at until
 *   sup-index             zset     address → until, for listing in expiry order; pruned on every write
 * Addresses are stored exactly as given: the caller passes the canonical form (local part as received,
 * since RFC 5321 lets it be case-sensitive; domain as a lower-case A-label).
 *
 * Invariants
 * - No operation throws or waits past its deadline: each one resolves within `timeoutMs` with the
 *   store's answer, or with `undefined`, which means "decide locally". The client's own timeouts stop at
 *   the write, so the deadline is ours (a stalled server keeps written commands unanswered).
 * - A failed or late operation turns the store `degraded`. While degraded no operation is sent (each one
 *   answers `undefined` at once, so callers do not pay the timeout again and nothing piles up on a stalled
 *   connection); a PING every `probeIntervalMs` on a live connection, or the client's reconnect
 *   ('ready'), makes it `connected` again.
 * - The connection is the client's: disableOfflineQueue (commands fail at once while it is down),
 *   reconnectStrategy with capped, jittered backoff that never gives up, and an 'error' listener so a
 *   lost server is a state change, never an unhandled 'error' event that would end the process.
 * - After a server restart the scripts are gone: the client sends EVALSHA, gets NOSCRIPT, sends EVAL.
 *
 * Diagnostics: the state and its transitions (state(), onStateChange listeners; the relay sets
 * mailfleet_relay_fleet_store_up from them), a warn log on each transition with the reason and, while
 * degraded, on each new reason (a repeated one at most once a minute: a wrong password is visible without
 * flooding the log), and the `onOperation` hook (operation, result, seconds) for counters and latency. Logs name the endpoint as
 * host:port only: the URL may carry a password, which is never logged.
 */
import { createClient } from '@redis/client';
import type { Logger } from '../log.js';
import { fleetScripts } from './scripts.js';
import type {
  Admission,
  RateDecision,
  SharedStore,
  StoreState,
  SuppressedEntry,
  Suppression,
  SuppressionPage,
} from './types.js';

export type StoreOperation =
  | 'takeRate'
  | 'acquireLease'
  | 'admit'
  | 'renewLease'
  | 'releaseLease'
  | 'suppress'
  | 'unsuppress'
  | 'isSuppressed'
  | 'listSuppressed'
  | 'probe';

/** ok; timeout (past the deadline); error (refused, connection lost, server error); skipped (degraded). */
export type OperationResult = 'ok' | 'timeout' | 'error' | 'skipped';

export interface FleetStoreOptions {
  /** redis://host:port or rediss://host:port (TLS); credentials may be in the URL or below, not both. */
  url: string;
  username?: string;
  password?: string;
  /** For rediss://: a CA bundle (PEM) to trust instead of the system's, and the name to verify. */
  tls?: { ca?: string; serverName?: string };
  /** Prepended to every key, e.g. "mailfleet:<namespace>/<relay>:". */
  keyPrefix: string;
  /** Deadline of every operation, ms. */
  timeoutMs: number;
  log: Logger;
  /** Clock for operation durations (default Date.now); the scripts use the server's time. */
  now?: () => number;
  /** While degraded with the connection up: how often a PING checks whether the store answers again. */
  probeIntervalMs?: number;
  /** Cap of the reconnect backoff (default 5000 ms). */
  maxReconnectDelayMs?: number;
  /** Shown in CLIENT LIST on the server (e.g. the pod name). */
  clientName?: string;
  onOperation?: (op: StoreOperation, result: OperationResult, seconds: number) => void;
}

const KEY = {
  rate: (key: string) => `rate:${key}`,
  lease: (key: string) => `lease:${key}`,
  suppressed: (address: string) => `sup:${address}`,
  index: 'sup-index',
};

/** Past this many commands waiting, new ones fail at once (a backstop; degraded mode sends nothing). */
const MAX_QUEUED_COMMANDS = 10_000;

function buildClient(opts: FleetStoreOptions, reconnectStrategy: (retries: number) => number) {
  const url = new URL(opts.url);
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:')
    throw new Error(`fleet store url must be redis:// or rediss://, not ${url.protocol}`);
  if ((url.username || url.password) && (opts.username !== undefined || opts.password !== undefined))
    throw new Error('fleet store credentials are given both in the url and as options: give them once');
  if (opts.tls && url.protocol !== 'rediss:') throw new Error('fleet store tls options need a rediss:// url');
  const tls = opts.tls ? { ca: opts.tls.ca, servername: opts.tls.serverName } : {};
  return createClient({
    url: opts.url,
    username: opts.username,
    password: opts.password,
    name: opts.clientName,
    keyPrefix: opts.keyPrefix,
    disableOfflineQueue: true,
    // The client's own per-command timeout (5 s by default) is an AbortSignal.timeout per command whose
    // timer fires, and builds a DOMException, even after the reply came: measurable CPU per message.
    // Every operation has our deadline instead (withDeadline), which also covers a command once written.
    commandOptions: { timeout: 0 },
    commandsQueueMaxLength: MAX_QUEUED_COMMANDS,
    // Redis Enterprise's maintenance push notices: nothing an OSS Redis or Valkey sends.
    maintNotifications: 'disabled',
    scripts: fleetScripts,
    socket: { ...tls, reconnectStrategy } as { reconnectStrategy: typeof reconnectStrategy },
  });
}

type Client = ReturnType<typeof buildClient>;

class DeadlineExceeded extends Error {}

export class FleetStore implements SharedStore {
  private readonly client: Client;
  private current: StoreState = 'degraded';
  private readonly listeners = new Set<(state: StoreState, reason: string) => void>();
  private readonly now: () => number;
  private readonly endpoint: string;
  private readonly probeTimer: NodeJS.Timeout;
  private probing = false;
  private lastReason = '';
  private lastReasonAt = 0;
  private closed = false;
  private connecting: Promise<void>;

  constructor(private readonly opts: FleetStoreOptions) {
    this.now = opts.now ?? Date.now;
    const url = new URL(opts.url);
    this.endpoint = `${url.hostname}:${url.port || 6379}`;
    const cap = opts.maxReconnectDelayMs ?? 5000;
    // 50 ms doubling to the cap, with up to 20% jitter so a fleet does not reconnect in lockstep.
    const backoff = (retries: number) =>
      Math.round(Math.min(cap, 50 * 2 ** Math.min(retries, 20)) * (1 + Math.random() * 0.2));
    this.client = buildClient(opts, backoff);
    this.client.on('error', (err: unknown) => this.degrade(describe(err)));
    this.client.on('ready', () => this.transition('connected', 'connection ready'));
    this.probeTimer = setInterval(() => void this.probe(), opts.probeIntervalMs ?? 1000);
    this.probeTimer.unref();
    // connect() settles when the first connection is ready (the client retries until then) or on close().
    this.connecting = this.client.connect().then(
      () => undefined,
      (err: unknown) => {
        if (!this.closed) this.degrade(describe(err));
      },
    );
    opts.log.info(
      { event: 'fleet_store_connecting', endpoint: this.endpoint },
      'connecting to the fleet store',
    );
  }

  state(): StoreState {
    return this.current;
  }

  onStateChange(listener: (state: StoreState, reason: string) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Resolves true once connected, false if that takes longer than `ms` (the store keeps trying). */
  async waitConnected(ms: number): Promise<boolean> {
    if (this.current === 'connected') return true;
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        off();
        resolve(false);
      }, ms);
      const off = this.onStateChange((s) => {
        if (s !== 'connected') return;
        clearTimeout(timer);
        off();
        resolve(true);
      });
    });
  }

  async takeRate(key: string, perMinute: number, burst = perMinute): Promise<RateDecision | undefined> {
    if (perMinute <= 0) return { allowed: true, retryAfterMs: 0 };
    const reply = await this.run('takeRate', (c) =>
      c.takeRate(KEY.rate(key), 60_000 / perMinute, Math.max(1, Math.floor(burst))),
    );
    return reply && { allowed: Number(reply[0]) === 1, retryAfterMs: Number(reply[1]) };
  }

  async acquireLease(
    key: string,
    limit: number,
    holderId: string,
    ttlMs: number,
  ): Promise<boolean | undefined> {
    const reply = await this.run('acquireLease', (c) =>
      c.acquireLease(KEY.lease(key), limit, holderId, ttlMs),
    );
    return reply === undefined ? undefined : Number(reply) === 1;
  }

  async admit(
    leaseKey: string,
    rateKey: string,
    limit: number,
    holderId: string,
    ttlMs: number,
    perMinute: number,
  ): Promise<Admission | undefined> {
    const interval = perMinute > 0 ? 60_000 / perMinute : 0;
    const reply = await this.run('admit', (c) =>
      c.admit(
        KEY.lease(leaseKey),
        KEY.rate(rateKey),
        limit,
        holderId,
        ttlMs,
        interval,
        Math.max(1, perMinute),
      ),
    );
    if (reply === undefined) return undefined;
    if (Number(reply[0]) === 1) return { admitted: true };
    return {
      admitted: false,
      limit: reply[1] === 'rate' ? 'rate' : 'connections',
      retryAfterMs: Number(reply[2] ?? 0),
    };
  }

  async renewLease(key: string, holderId: string, ttlMs: number): Promise<boolean | undefined> {
    const reply = await this.run('renewLease', (c) => c.renewLease(KEY.lease(key), holderId, ttlMs));
    return reply === undefined ? undefined : Number(reply) === 1;
  }

  /** True when the holder held the lease (false: it had expired already). */
  async releaseLease(key: string, holderId: string): Promise<boolean | undefined> {
    const reply = await this.run('releaseLease', (c) => c.zRem(KEY.lease(key), holderId));
    return reply === undefined ? undefined : Number(reply) === 1;
  }

  async suppress(address: string, reason: string, ttlSeconds: number): Promise<Suppression | undefined> {
    const until = await this.run('suppress', (c) =>
      c.suppress(
        KEY.suppressed(address),
        KEY.index,
        address,
        reason,
        Math.max(1, Math.round(ttlSeconds * 1000)),
      ),
    );
    return until === undefined ? undefined : { reason, until: Math.round(Number(until)) };
  }

  /** True when the address was suppressed. */
  async unsuppress(address: string): Promise<boolean | undefined> {
    const reply = await this.run('unsuppress', (c) =>
      c.unsuppress(KEY.suppressed(address), KEY.index, address),
    );
    return reply === undefined ? undefined : Number(reply) === 1;
  }

  /** The entry, null when the address is not suppressed (or its entry expired: the server checks). */
  async isSuppressed(address: string): Promise<Suppression | null | undefined> {
    const reply = await this.run('isSuppressed', (c) =>
      c.hmGet(KEY.suppressed(address), ['reason', 'until']),
    );
    if (reply === undefined) return undefined;
    const [reason, until] = reply;
    if (reason === null || until === null) return null;
    return { reason: String(reason), until: Math.round(Number(until)) };
  }

  /**
   * A page of suppressed addresses in expiry order (soonest first). An entry present for the whole
   * listing appears at least once; one changed meanwhile may appear twice (see scripts.ts).
   */
  async listSuppressed(cursor?: string, limit = 100): Promise<SuppressionPage | undefined> {
    const [cursorUntil, cursorAddress] = parseCursor(cursor);
    const size = Math.max(1, Math.min(1000, Math.floor(limit)));
    return this.run('listSuppressed', async (c) => {
      const flat = await c.listSuppressed(KEY.index, cursorUntil, cursorAddress, size);
      const page: { address: string; until: number }[] = [];
      for (let i = 0; i + 1 < flat.length; i += 2)
        page.push({ address: flat[i]!, until: Number(flat[i + 1]) });
      // Reasons live in the entries; one pipelined read (an entry gone since is left out).
      const multi = c.multi();
      for (const p of page) multi.hGet(KEY.suppressed(p.address), 'reason');
      const reasons = page.length > 0 ? await multi.execAsPipeline() : [];
      const entries: SuppressedEntry[] = [];
      page.forEach((p, i) => {
        const reason: unknown = reasons[i];
        if (typeof reason === 'string')
          entries.push({ address: p.address, reason, until: Math.round(p.until) });
      });
      const last = page.at(-1);
      return {
        entries,
        ...(page.length === size && last ? { cursor: `${flat[flat.length - 1]}|${last.address}` } : {}),
      };
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.probeTimer);
    // close() waits for replies in flight, destroy() does not: a stalled server must not hold up shutdown.
    await withDeadline(this.client.close(), this.opts.timeoutMs).catch(() => this.client.destroy());
    if (this.client.isOpen) this.client.destroy();
    await this.connecting;
    this.transition('degraded', 'closed');
  }

  /** One operation under the deadline; undefined when the store cannot answer (it never throws). */
  private async run<T>(op: StoreOperation, fn: (c: Client) => Promise<T>): Promise<T | undefined> {
    const started = this.now();
    const done = (result: OperationResult) =>
      this.opts.onOperation?.(op, result, (this.now() - started) / 1000);
    if (this.closed || this.current !== 'connected') {
      done('skipped');
      return undefined;
    }
    try {
      const value = await withDeadline(fn(this.client), this.opts.timeoutMs);
      done('ok');
      return value;
    } catch (err) {
      const timedOut = err instanceof DeadlineExceeded;
      done(timedOut ? 'timeout' : 'error');
      this.degrade(timedOut ? `${op} took longer than ${this.opts.timeoutMs} ms` : `${op}: ${describe(err)}`);
      return undefined;
    }
  }

  private async probe(): Promise<void> {
    if (this.closed || this.current === 'connected' || this.probing || !this.client.isReady) return;
    this.probing = true;
    const started = this.now();
    try {
      await withDeadline(this.client.ping(), this.opts.timeoutMs);
      this.opts.onOperation?.('probe', 'ok', (this.now() - started) / 1000);
      this.transition('connected', 'store answers again');
    } catch (err) {
      this.opts.onOperation?.(
        'probe',
        err instanceof DeadlineExceeded ? 'timeout' : 'error',
        (this.now() - started) / 1000,
      );
    } finally {
      this.probing = false;
    }
  }

  private degrade(reason: string): void {
    if (this.closed) return;
    if (this.current !== 'degraded') return this.transition('degraded', reason);
    // Already degraded (a wrong password, a store that never came up): say why, without flooding.
    const now = this.now();
    if (reason === this.lastReason && now - this.lastReasonAt < 60_000) return;
    this.lastReason = reason;
    this.lastReasonAt = now;
    this.opts.log.warn(
      { event: 'fleet_store_unavailable', endpoint: this.endpoint, reason },
      'fleet store still unavailable: limits are per pod',
    );
  }

  private transition(next: StoreState, reason: string): void {
    if (next === this.current) return;
    this.current = next;
    this.lastReason = reason;
    this.lastReasonAt = this.now();
    const fields = { event: `fleet_store_${next}`, endpoint: this.endpoint, reason };
    if (next === 'connected') this.opts.log.info(fields, 'fleet store connected: limits are fleet-wide');
    else if (!this.closed)
      this.opts.log.warn(fields, 'fleet store degraded: limits are per pod until it answers');
    for (const l of this.listeners) {
      try {
        l(next, reason);
      } catch (err) {
        this.opts.log.error({ err: describe(err) }, 'fleet store state listener failed');
      }
    }
  }
}

/** Settles like `p`, or rejects with DeadlineExceeded after `ms`; a late rejection of `p` is absorbed. */
function withDeadline<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DeadlineExceeded()), ms);
  });
  p.catch(() => undefined);
  return Promise.race([p, deadline]).finally(() => clearTimeout(timer));
}

function parseCursor(cursor: string | undefined): [string, string] {
  if (!cursor) return ['', ''];
  const bar = cursor.indexOf('|');
  const until = cursor.slice(0, bar);
  if (bar <= 0 || !Number.isFinite(Number(until))) return ['', ''];
  return [until, cursor.slice(bar + 1)];
}

/** An error's message only: the client's errors carry no credentials, but option objects might. */
function describe(err: unknown): string {
  if (err instanceof Error) return err.message || err.name;
  return String(err);
}
