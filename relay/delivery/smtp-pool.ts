/**
 * Pooled SMTP client connections (nodemailer's SMTPConnection), per endpoint: who gets which
 * connection, when one is opened, handed on, reset, rotated or closed. What to connect to and how (TLS,
 * AUTH, timeouts) is the caller's `open` function (transport.ts); what a send means is the caller's too.
 *
 * Per endpoint key:
 * - at most `limit` connections (opening, busy or idle); callers beyond that wait, first come first
 *   served, and are handed the next connection released or the next free slot;
 * - an idle connection is reused (most recently used first); after `maxMessages` leases (its latest
 *   acquire's, else the pool's) it is QUIT when released and its slot goes to a new one;
 * - a connection that ends for any reason (error, server closed it, timeout, QUIT) leaves the pool at
 *   once ('end'), so it is never handed out again; the connection's 'error' event is always listened to
 *   (the send or connect that was running gets the same error through its own callback).
 *
 * Invariants
 * - `open` of an endpoint counts every connection of it that is opening, leased or idle, never one
 *   that has ended or been retired; an endpoint without connections and waiters is forgotten.
 * - A lease ends exactly once: release(), recycle() or discard(); after its connection has ended, each
 *   of those is a no-op.
 * - After close(), every connection is closed (idle ones with QUIT), every waiter is rejected, and
 *   acquire() rejects.
 */
import type SMTPConnection from 'nodemailer/lib/smtp-connection';

/** A connection handed to one caller for one message. */
export interface Lease {
  readonly conn: SMTPConnection;
  /** The connection carried a message before this one (it may have gone stale while idle). */
  readonly reused: boolean;
}

export interface AcquireOptions {
  /** Connections allowed to this endpoint (read on every acquire, so reloads apply). */
  limit: number;
  /** Opens, greets, secures and authenticates a new connection. */
  open: () => Promise<SMTPConnection>;
  /** Never an idle connection: a new one (a retry after a stale connection). Served before other waiters. */
  fresh?: boolean;
  /** Messages per connection (the destination site's deliveriesPerConnection; default: the pool's). */
  maxMessages?: number;
  signal?: AbortSignal;
}

interface Pooled extends Lease {
  endpoint: Endpoint;
  reused: boolean;
  /** Leases so far, this one included. */
  messages: number;
  /** Set by each lease: QUIT on release once `messages` reaches it. */
  maxMessages: number;
  idleSince: number;
  /** Ended or retired: no longer counted in `open`, never handed out. */
  gone: boolean;
}

interface Waiter {
  opts: AcquireOptions;
  /** Resolved or rejected (served, aborted, or failed by close()). */
  settled: boolean;
  resolve: (lease: Lease) => void;
  reject: (err: Error) => void;
}

interface Endpoint {
  key: string;
  limit: number;
  open: number;
  idle: Pooled[];
  waiters: Waiter[];
}

export class SmtpPool {
  private readonly endpoints = new Map<string, Endpoint>();
  private closed = false;

  constructor(private readonly opts: { maxMessages: number; now: () => number }) {}

  /** A connection to the endpoint `key`, leased to the caller until release/recycle/discard. */
  acquire(key: string, opts: AcquireOptions): Promise<Lease> {
    if (this.closed) return Promise.reject(poolClosed());
    if (opts.signal?.aborted) return Promise.reject(abortError(opts.signal));
    let ep = this.endpoints.get(key);
    if (!ep) this.endpoints.set(key, (ep = { key, limit: opts.limit, open: 0, idle: [], waiters: [] }));
    ep.limit = opts.limit;
    const endpoint = ep;
    return new Promise<Lease>((resolve, reject) => {
      const signal = opts.signal;
      const onAbort = () => {
        // Waiting: leave the queue. Opening: the connection goes to the pool when it is up.
        const i = endpoint.waiters.indexOf(waiter);
        if (i >= 0) endpoint.waiters.splice(i, 1);
        waiter.reject(abortError(signal!));
        this.forgetIfEmpty(endpoint);
      };
      const waiter: Waiter = {
        opts,
        settled: false,
        resolve: (lease) => settle(() => resolve(lease)),
        reject: (err) => settle(() => reject(err)),
      };
      const settle = (f: () => void) => {
        if (waiter.settled) return;
        waiter.settled = true;
        this.opening.delete(waiter);
        signal?.removeEventListener('abort', onAbort);
        f();
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      if (opts.fresh) endpoint.waiters.unshift(waiter);
      else endpoint.waiters.push(waiter);
      this.pump(endpoint);
    });
  }

  /** Back to the pool after a finished transaction; QUIT instead once it has carried maxMessages. */
  release(lease: Lease): void {
    const p = lease as Pooled;
    if (p.gone) return;
    if (p.messages >= p.maxMessages || this.closed) {
      this.retire(p);
      p.conn.quit();
      return;
    }
    p.idleSince = this.opts.now();
    p.endpoint.idle.push(p);
    this.pump(p.endpoint);
  }

  /** RSET (the server refused the transaction, the session is fine), then release; closed if RSET fails. */
  recycle(lease: Lease): void {
    const p = lease as Pooled;
    if (p.gone) return;
    if (p.conn.destroyed) return this.discard(p);
    p.conn.reset((err) => (err ? this.discard(p) : this.release(p)));
  }

  /** Closes a connection that must not be used again (its slot is free at once). */
  discard(lease: Lease): void {
    const p = lease as Pooled;
    if (p.gone) return;
    this.retire(p);
    p.conn.close();
  }

  /** Endpoints with connections or waiters. */
  get size(): number {
    return this.endpoints.size;
  }

  /** Closes (QUIT) connections idle since `cutoff` or earlier. */
  closeIdle(cutoff: number): void {
    for (const ep of [...this.endpoints.values()]) {
      for (const p of ep.idle.filter((c) => c.idleSince <= cutoff)) {
        this.retire(p);
        p.conn.quit();
      }
    }
  }

  /** Fails the waiters, QUITs idle connections and closes the others (their sends fail). */
  close(): void {
    this.closed = true;
    const all = [...this.endpoints.values()];
    for (const ep of all) for (const w of ep.waiters.splice(0)) w.reject(poolClosed());
    for (const w of [...this.opening]) w.reject(poolClosed());
    for (const ep of all)
      for (const p of [...ep.idle]) {
        this.retire(p);
        p.conn.quit();
      }
    for (const p of [...this.busy]) p.conn.close();
    this.endpoints.clear();
  }

  /** Leased connections (close() closes them; 'end' does the bookkeeping). */
  private readonly busy = new Set<Pooled>();
  /** Waiters whose connection is being opened. */
  private readonly opening = new Set<Waiter>();

  /** Serves waiters in order while there is an idle connection or a free slot. */
  private pump(ep: Endpoint): void {
    while (ep.waiters.length > 0 && !this.closed) {
      const w = ep.waiters[0]!;
      if (ep.idle.length > 0 && !w.opts.fresh) {
        ep.waiters.shift();
        const p = ep.idle.pop()!;
        this.lease(p, w);
      } else if (ep.open < ep.limit) {
        ep.waiters.shift();
        this.openFor(ep, w);
      } else if (ep.idle.length > 0) {
        // A fresh connection wanted and no free slot: an idle one makes room.
        const p = ep.idle.shift()!;
        this.retire(p);
        p.conn.quit();
      } else return;
    }
    this.forgetIfEmpty(ep);
  }

  private lease(p: Pooled, w: Waiter): void {
    this.busy.add(p);
    p.reused = p.messages > 0;
    p.messages++;
    p.maxMessages = w.opts.maxMessages ?? this.opts.maxMessages;
    w.resolve(p);
  }

  private openFor(ep: Endpoint, w: Waiter): void {
    ep.open++;
    this.opening.add(w);
    w.opts.open().then(
      (conn) => {
        const p: Pooled = {
          conn,
          endpoint: ep,
          reused: false,
          messages: 0,
          maxMessages: this.opts.maxMessages,
          idleSince: 0,
          gone: false,
        };
        conn.on('error', ignore); // the send or RSET running gets the same error in its callback
        conn.once('end', () => this.ended(p));
        if (conn.destroyed) {
          this.ended(p);
          w.reject(connectionClosed());
        } else if (w.settled)
          this.release(p); // aborted or closed meanwhile: the pool keeps it (or QUITs it)
        else this.lease(p, w);
      },
      (err: Error) => {
        ep.open--;
        w.reject(err);
        this.pump(ep);
      },
    );
  }

  /** The connection ended (any cause): out of the pool, its slot free for the next waiter. */
  private ended(p: Pooled): void {
    if (p.gone) return;
    this.retire(p);
    this.pump(p.endpoint);
  }

  private retire(p: Pooled): void {
    if (p.gone) return;
    p.gone = true;
    this.busy.delete(p);
    const ep = p.endpoint;
    ep.open--;
    const i = ep.idle.indexOf(p);
    if (i >= 0) ep.idle.splice(i, 1);
    this.forgetIfEmpty(ep);
  }

  private forgetIfEmpty(ep: Endpoint): void {
    if (ep.open === 0 && ep.waiters.length === 0 && this.endpoints.get(ep.key) === ep)
      this.endpoints.delete(ep.key);
  }
}

function ignore(): void {}

/** An error shaped like nodemailer's (replies.ts reads code and command). */
export function smtpError(message: string, code: string, command = 'CONN'): Error {
  return Object.assign(new Error(message), { code, command });
}

export function connectionClosed(): Error {
  return smtpError('Connection closed unexpectedly', 'ECONNECTION');
}

function poolClosed(): Error {
  return smtpError('Transport pool closed', 'ECONNECTION', 'API');
}

/** Like nodemailer's abort error (name AbortError, code EABORT). */
export function abortError(signal: AbortSignal): Error {
  return Object.assign(new Error('Message sending aborted', { cause: signal.reason }), {
    name: 'AbortError',
    code: 'EABORT',
  });
}
