/**
 * The SMTP client side: nodemailer pooled transports, one per downstream endpoint (address, port, TLS
 * policy, credentials), so connections are reused across messages to the same place and closed when
 * idle. Messages are sent as-is (`raw`) with the spooled envelope, null sender included.
 *
 * TLS policy per target:
 *   implicit       TLS from connect, certificate verified (caFile or system CAs)
 *   starttls       STARTTLS required, certificate verified
 *   opportunistic  STARTTLS whenever offered, certificate not verified, plaintext if the upgrade fails
 *                  (what direct delivery on the Internet does, RFC 7435)
 *   none           never TLS
 *
 * Invariants
 * - A transport is only closed when no send is in flight on it (sweep) or on stop().
 * - A send rejects with nodemailer's error (code, command, response, responseCode, rejectedErrors) and
 *   resolves with its info (accepted, rejected, rejectedErrors, response); replies.ts reads both.
 */
import type { Readable } from 'node:stream';
import nodemailer, { type Transporter } from 'nodemailer';

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
  /** Connections per endpoint (the per-destination limit). */
  maxConnections: number;
}

interface PooledTransport {
  transport: Transporter;
  inFlight: number;
  lastUsed: number;
}

export class TransportPool {
  private readonly transports = new Map<string, PooledTransport>();
  private readonly now: () => number;
  private readonly idleMs: number;
  private sweeper: NodeJS.Timeout | undefined;

  /** `options` is read whenever a new endpoint's transport is made (config reloads apply to those). */
  constructor(
    private readonly options: () => TransportOptions,
    opts: { idleMs?: number; now?: () => number } = {},
  ) {
    this.now = opts.now ?? Date.now;
    this.idleMs = opts.idleMs ?? 30_000;
    this.sweeper = setInterval(() => this.sweep(), Math.max(1000, this.idleMs / 2));
    this.sweeper.unref();
  }

  /** Sends `body` to `target`; resolves with per-recipient results, rejects when the send failed. */
  async send(
    target: SmtpTarget,
    envelope: SmtpEnvelope,
    body: Readable,
    signal?: AbortSignal,
  ): Promise<SendInfo> {
    const entry = this.transportFor(target);
    entry.inFlight++;
    try {
      const info = (await entry.transport.sendMail({
        envelope: {
          from: envelope.from,
          to: envelope.to,
          ...(envelope.size !== undefined ? { size: envelope.size } : {}),
          ...(envelope.eightBit ? { use8BitMime: true } : {}),
        },
        raw: body,
        disableFileAccess: true,
        disableUrlAccess: true,
        ...(signal ? { signal } : {}),
      })) as SendInfo;
      return info;
    } finally {
      entry.inFlight--;
      entry.lastUsed = this.now();
    }
  }

  /** Endpoints with an open transport (for tests and the debug log). */
  get size(): number {
    return this.transports.size;
  }

  /** Closes transports idle for longer than idleMs. */
  sweep(): void {
    const cutoff = this.now() - this.idleMs;
    for (const [key, t] of this.transports) {
      if (t.inFlight === 0 && t.lastUsed <= cutoff) {
        t.transport.close();
        this.transports.delete(key);
      }
    }
  }

  /** Closes every transport (their in-flight sends fail and are retried later). */
  close(): void {
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = undefined;
    for (const t of this.transports.values()) t.transport.close();
    this.transports.clear();
  }

  private transportFor(target: SmtpTarget): PooledTransport {
    const key = targetKey(target);
    let entry = this.transports.get(key);
    if (!entry) {
      entry = {
        transport: nodemailer.createTransport(this.transportOptions(target)),
        inFlight: 0,
        lastUsed: this.now(),
      };
      this.transports.set(key, entry);
    }
    return entry;
  }

  private transportOptions(target: SmtpTarget) {
    const opts = this.options();
    const verify = target.tls === 'implicit' || target.tls === 'starttls';
    const servername = target.servername ?? target.name;
    return {
      pool: true as const,
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
      ...(target.auth ? { auth: { user: target.auth.user, pass: target.auth.pass } } : {}),
      maxConnections: opts.maxConnections,
      maxMessages: 100,
      idleTimeout: this.idleMs,
      connectionTimeout: opts.connectTimeoutMs,
      greetingTimeout: opts.commandTimeoutMs,
      socketTimeout: opts.commandTimeoutMs,
      dnsTimeout: opts.connectTimeoutMs,
      disableFileAccess: true,
      disableUrlAccess: true,
    };
  }
}

/** Transports are shared by endpoint and policy; credentials are part of the key, never of a log. */
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

function isIp(s: string): boolean {
  return /^[\d.]+$/.test(s) || s.includes(':');
}
