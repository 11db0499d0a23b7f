/**
 * The SMTP client side: one message over a pooled connection to a downstream endpoint (address, port,
 * TLS policy, credentials), sent as-is with the spooled envelope, null sender included. The pool
 * (smtp-pool.ts) decides which connection; this module decides how to connect (TLS, AUTH, timeouts)
 * and what a failure means for the connection and the message.
 *
 * Why nodemailer's SMTPConnection and not `createTransport({ pool: true }).sendMail({ raw })` (ADR 0034):
 * sendMail runs every message through Mailer → MailComposer → MimeNode → smtp-pool (a Message-ID and a
 * MIME boundary from crypto.randomBytes, header normalisation, address parsing, an extra pipeline and
 * their garbage), none of which a relay sending spooled bytes needs. Measured: 410–520 µs CPU per
 * message through sendMail, 140–190 µs through SMTPConnection.send (20 connections to smtp-sink, 4 KiB
 * messages); in the relay benchmark, delivered msgs/s over reused connections went 888 → 1362.
 *
 * TLS policy per target:
 *   implicit       TLS from connect, certificate verified (caFile or system CAs)
 *   starttls       STARTTLS required, certificate verified
 *   opportunistic  STARTTLS whenever offered, certificate not verified, plaintext if the upgrade fails
 *                  (what direct delivery on the Internet does, RFC 7435)
 *   none           never TLS
 * Credentials are sent (AUTH) when the server offers AUTH, as nodemailer's pool did.
 *
 * A failed send and its connection:
 * - the server refused the transaction (a reply to MAIL/RCPT/DATA, not 421): RSET, connection reused;
 * - anything else (dropped, timed out, 421, protocol trouble, body stream error, abort): closed;
 * - on a reused connection, a failure that ended the connection (dropped, reset, 421, unexpected reply)
 *   before a byte of the body was read is retried once on a new connection: the server cannot have the
 *   message, and a connection that went stale while idle must not defer mail. Nothing is retried once
 *   the body started to go out (the server may have it).
 *
 * Invariants
 * - A send rejects with nodemailer's error (code, command, response, responseCode, rejectedErrors) and
 *   resolves with its info (accepted, rejected, rejectedErrors, response); replies.ts reads both.
 * - A CorruptEntryError from the body stream rejects the send as that same error object.
 * - The body is destroyed when the send fails before reading it to the end.
 */
import { Readable } from 'node:stream';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import { abortError, connectionClosed, SmtpPool, type Lease } from './smtp-pool.js';

export type TlsMode = 'implicit' | 'starttls' | 'opportunistic' | 'none';

export interface SmtpTarget {
  /** Address or name to connect to. */
  host: string;
  port: number;
  /** Name reported in logs and DSNs (MX host name or smarthost name). */
  name: string;
  tls: TlsMode;
  /** Certificate name to check and send as SNI (defaults to `name`). */
  servername?: string;
  /** PEM CA bundle for verified modes (default: system CAs). */
  ca?: string;
  auth?: { user: string; pass: string };
}

export interface SmtpEnvelope {
  /** '' is the null sender. */
  from: string;
  to: string[];
  size?: number;
  eightBit?: boolean;
}

export interface SendInfo {
  accepted: string[];
  rejected: string[];
  rejectedErrors?: { message: string; recipient?: string; response?: string; responseCode?: number }[];
  response: string;
}

export interface TransportOptions {
  /** EHLO name. */
  heloName: string;
  connectTimeoutMs: number;
  commandTimeoutMs: number;
  /** Connections per endpoint, unless a send names its own. */
  maxConnections: number;
}

/** A send's connection limits: its destination site's (sites.ts). */
export interface ConnectionLimits {
  maxConnections: number;
  /** Messages over one connection before it is QUIT and replaced. */
  maxMessages: number;
}

/** Messages per connection before it is replaced, unless a send names its own (nodemailer's default). */
const MAX_MESSAGES = 100;

export class TransportPool {
  private readonly pool: SmtpPool;
  private readonly now: () => number;
  private readonly idleMs: number;
  private sweeper: NodeJS.Timeout | undefined;

  /** `options` is read for every send (config reloads apply to new connections and limits at once). */
  constructor(
    private readonly options: () => TransportOptions,
    opts: { idleMs?: number; now?: () => number } = {},
  ) {
    this.now = opts.now ?? Date.now;
    this.idleMs = opts.idleMs ?? 30_000;
    this.pool = new SmtpPool({ maxMessages: MAX_MESSAGES, now: this.now });
    this.sweeper = setInterval(() => this.sweep(), Math.max(1000, this.idleMs / 2));
    this.sweeper.unref();
  }

  /** Sends `body` to `target`; resolves with per-recipient results, rejects when the send failed. */
  async send(
    target: SmtpTarget,
    envelope: SmtpEnvelope,
    body: Readable,
    signal?: AbortSignal,
    limits?: ConnectionLimits,
  ): Promise<SendInfo> {
    const opts = this.options();
    const key = targetKey(target);
    const open = () => connect(target, opts);
    // The body's own errors (a damaged spool entry) reach the attempt reading it, or end the send.
    let bodyError: Error | undefined;
    let reading: AttemptBody | undefined;
    body.on('error', (err) => {
      bodyError ??= err;
      reading?.destroy(err);
    });
    for (let retry = false; ; retry = true) {
      let lease: Lease | undefined;
      try {
        lease = await this.pool.acquire(key, {
          limit: limits?.maxConnections ?? opts.maxConnections,
          ...(limits ? { maxMessages: limits.maxMessages } : {}),
          open,
          fresh: retry,
          ...(signal ? { signal } : {}),
        });
        if (bodyError) {
          const unused = lease;
          lease = undefined;
          this.pool.release(unused);
          throw bodyError;
        }
        reading = new AttemptBody(body);
        const info = await transact(lease.conn, envelope, reading, signal);
        this.pool.release(lease);
        return info;
      } catch (e) {
        const err = e as Error & { code?: string; responseCode?: number };
        if (lease) {
          if (refusedByServer(err)) this.pool.recycle(lease);
          else this.pool.discard(lease);
        }
        const stale = lease?.reused && !reading?.started && connectionEnded(err);
        if (stale && !retry && !signal?.aborted && !bodyError) continue;
        if (!body.readableEnded) body.destroy();
        throw err;
      } finally {
        reading = undefined;
      }
    }
  }

  /** Endpoints with open connections or waiting sends (for tests and the debug log). */
  get size(): number {
    return this.pool.size;
  }

  /** Closes (QUIT) connections idle for idleMs or longer. */
  sweep(): void {
    this.pool.closeIdle(this.now() - this.idleMs);
  }

  /** Closes every connection (idle ones with QUIT; in-flight sends fail and are retried later). */
  close(): void {
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = undefined;
    this.pool.close();
  }
}

/** Connections are shared by endpoint and policy; credentials are part of the key, never of a log. */
export function targetKey(t: SmtpTarget): string {
  return [
    t.host,
    t.port,
    t.tls,
    t.servername ?? t.name,
    t.ca ?? '',
    t.auth?.user ?? '',
    t.auth?.pass ?? '',
  ].join('\0');
}

/** SMTPConnection options for a target: its TLS policy, our EHLO name, our timeouts. */
export function connectionOptions(target: SmtpTarget, opts: TransportOptions) {
  const verify = target.tls === 'implicit' || target.tls === 'starttls';
  const servername = target.servername ?? target.name;
  return {
    host: target.host,
    port: target.port,
    name: opts.heloName,
    secure: target.tls === 'implicit',
    requireTLS: target.tls === 'starttls',
    ignoreTLS: target.tls === 'none',
    opportunisticTLS: target.tls === 'opportunistic',
    tls: {
      rejectUnauthorized: verify,
      ...(isIp(servername) ? {} : { servername }),
      ...(target.ca ? { ca: target.ca } : {}),
      minVersion: 'TLSv1.2' as const,
    },
    connectionTimeout: opts.connectTimeoutMs,
    greetingTimeout: opts.commandTimeoutMs,
    socketTimeout: opts.commandTimeoutMs,
    dnsTimeout: opts.connectTimeoutMs,
  };
}

/** A new connection, greeted, secured as the policy says and logged in (when the server offers AUTH). */
function connect(target: SmtpTarget, opts: TransportOptions): Promise<SMTPConnection> {
  const conn = new SMTPConnection(connectionOptions(target, opts));
  conn.on('error', () => undefined); // never unhandled; whoever is using the connection gets it too
  return new Promise((resolve, reject) => {
    let done = false;
    const finish = (err?: Error) => {
      if (done) return;
      done = true;
      conn.removeListener('error', finish);
      conn.removeListener('end', onEnd);
      if (!err) return resolve(conn);
      conn.close();
      reject(err);
    };
    // 'error' comes first with the cause; 'end' alone means closed without one.
    const onEnd = () => finish(connectionClosed());
    conn.on('error', finish);
    conn.once('end', onEnd);
    conn.connect((err) => {
      if (err) return finish(err);
      if (!target.auth || !conn.allowsAuth) return finish();
      conn.login({ user: target.auth.user, pass: target.auth.pass }, (e) => finish(e ?? undefined));
    });
  });
}

/** One transaction on a leased connection. Settles once; an abort closes the connection. */
function transact(
  conn: SMTPConnection,
  envelope: SmtpEnvelope,
  body: Readable,
  signal: AbortSignal | undefined,
): Promise<SendInfo> {
  return new Promise((resolve, reject) => {
    let done = false;
    const finish = (err: Error | null, info?: SendInfo) => {
      if (done) return;
      done = true;
      conn.removeListener('end', onEnd);
      signal?.removeEventListener('abort', onAbort);
      if (err) reject(err);
      else resolve(info!);
    };
    // A connection that ends mid-send normally reports why through the send callback, right after
    // 'end'; a close it does not report (rare) still fails the send.
    const onEnd = () => setImmediate(() => finish(connectionClosed()));
    const onAbort = () => {
      finish(abortError(signal!));
      conn.close();
    };
    conn.once('end', onEnd);
    signal?.addEventListener('abort', onAbort, { once: true });
    if (signal?.aborted) return onAbort();
    conn.send(
      {
        from: envelope.from,
        to: envelope.to,
        ...(envelope.size !== undefined ? { size: envelope.size } : {}),
        ...(envelope.eightBit ? { use8BitMime: true } : {}),
      },
      body,
      (err, info) => finish(err, info),
    );
  });
}

/** The server answered the transaction with a refusal; the session itself is fine (RSET and reuse). */
function refusedByServer(err: { code?: string; responseCode?: number }): boolean {
  return (
    (err.code === 'EENVELOPE' || err.code === 'EMESSAGE') &&
    err.responseCode !== undefined &&
    err.responseCode !== 421
  );
}

/** The connection was gone (closed, reset, 421, out of step), as an idle one the server dropped is. */
function connectionEnded(err: { code?: string; responseCode?: number }): boolean {
  return (
    err.responseCode === 421 ||
    err.code === 'ECONNECTION' ||
    err.code === 'ESOCKET' ||
    err.code === 'EPROTOCOL'
  );
}

/**
 * The body as one send attempt reads it. Nothing is read from the caller's stream until the
 * connection asks for the body (after DATA), so an attempt that fails before that leaves it whole for
 * the next one; a send that fails while reading it destroys it.
 */
class AttemptBody extends Readable {
  started = false;

  constructor(private readonly source: Readable) {
    super();
  }

  override _read(): void {
    if (!this.started) {
      this.started = true;
      this.source.on('data', this.onData);
      this.source.once('end', this.onEnd);
    }
    this.source.resume();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.source.removeListener('data', this.onData);
    this.source.removeListener('end', this.onEnd);
    if (this.started && !this.source.readableEnded) this.source.destroy();
    cb(err);
  }

  private readonly onData = (chunk: Buffer) => {
    if (!this.push(chunk)) this.source.pause();
  };

  private readonly onEnd = () => this.push(null);
}

function isIp(s: string): boolean {
  return /^[\d.]+$/.test(s) || s.includes(':');
}
