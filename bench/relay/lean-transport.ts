/**
 * A PROTOTYPE, for measurement only: the relay's TransportPool.send() reimplemented on nodemailer's
 * SMTPConnection (the SMTP client under its pooled transport), without the Mailer → MailComposer →
 * MimeNode → smtp-pool path that `sendMail({ raw })` takes. Measured on its own (20 connections to
 * smtp-sink, 4 KiB messages, shared machine): 410–520 µs CPU per message through sendMail, 140–190 µs
 * through SMTPConnection.send — a Message-ID and a MIME boundary from crypto.randomBytes, header
 * normalisation, address parsing, a stream.pipeline whose AbortController throws a DOMException at the
 * end, and their garbage, per message, none of which a relay sending spooled bytes needs.
 *
 * installLeanTransport(TransportPool) patches the class's prototype; bench/relay/prototype-relay.ts
 * calls it before the relay's CLI starts, so the relay under test runs unchanged otherwise. What the
 * real transport does that this does not: STARTTLS/implicit TLS and AUTH options are passed through but
 * untested here; a reused connection the server had closed is not retried on a fresh one (nodemailer's
 * pool does that); idle connections are not swept.
 */
import type { Readable } from 'node:stream';
import SMTPConnection from 'nodemailer/lib/smtp-connection/index.js';

interface Target {
  host: string;
  port: number;
  name: string;
  tls: 'implicit' | 'starttls' | 'opportunistic' | 'none';
  servername?: string;
  ca?: string;
  auth?: { user: string; pass: string };
}
interface Envelope {
  from: string;
  to: string[];
  size?: number;
  eightBit?: boolean;
}
interface Options {
  heloName: string;
  connectTimeoutMs: number;
  commandTimeoutMs: number;
  maxConnections: number;
}

interface Endpoint {
  idle: SMTPConnection[];
  open: number;
  waiters: ((c: SMTPConnection | Error) => void)[];
}

const endpoints = new WeakMap<object, Map<string, Endpoint>>();

function key(t: Target): string {
  return [t.host, t.port, t.tls, t.servername ?? t.name, t.auth?.user ?? ''].join('\0');
}

function connect(t: Target, o: Options): Promise<SMTPConnection> {
  const c = new SMTPConnection({
    host: t.host,
    port: t.port,
    name: o.heloName,
    secure: t.tls === 'implicit',
    requireTLS: t.tls === 'starttls',
    ignoreTLS: t.tls === 'none',
    opportunisticTLS: t.tls === 'opportunistic',
    tls: { rejectUnauthorized: t.tls === 'implicit' || t.tls === 'starttls', ...(t.ca ? { ca: t.ca } : {}) },
    connectionTimeout: o.connectTimeoutMs,
    greetingTimeout: o.commandTimeoutMs,
    socketTimeout: o.commandTimeoutMs,
  });
  c.on('error', () => undefined); // reported through the send callback
  return new Promise((resolve, reject) =>
    c.connect((err) => {
      if (err) return reject(err);
      if (!t.auth) return resolve(c);
      c.login({ user: t.auth.user, pass: t.auth.pass }, (e) => (e ? reject(e) : resolve(c)));
    }),
  );
}

export function installLeanTransport(TransportPool: { prototype: object }): void {
  const proto = TransportPool.prototype as {
    send: (t: Target, e: Envelope, body: Readable, signal?: AbortSignal) => Promise<unknown>;
    close: () => void;
    options: () => Options;
  };
  const originalClose = proto.close;
  proto.close = function (this: typeof proto) {
    for (const ep of endpoints.get(this)?.values() ?? []) for (const c of ep.idle) c.quit();
    endpoints.delete(this);
    originalClose.call(this);
  };
  proto.send = async function (this: typeof proto, target, envelope, body, signal) {
    let map = endpoints.get(this);
    if (!map) endpoints.set(this, (map = new Map()));
    const k = key(target);
    let ep = map.get(k);
    if (!ep) map.set(k, (ep = { idle: [], open: 0, waiters: [] }));
    const opts = this.options();
    const acquire = async (): Promise<SMTPConnection> => {
      const idle = ep.idle.pop();
      if (idle) return idle;
      if (ep.open < opts.maxConnections) {
        ep.open++;
        try {
          return await connect(target, opts);
        } catch (err) {
          ep.open--;
          throw err;
        }
      }
      const got = await new Promise<SMTPConnection | Error>((resolve) => ep.waiters.push(resolve));
      if (got instanceof Error) throw got;
      return got;
    };
    const release = (c: SMTPConnection, broken: boolean) => {
      if (broken) {
        ep.open--;
        c.close();
        const w = ep.waiters.shift();
        if (w) void acquire().then(w, w);
        return;
      }
      const w = ep.waiters.shift();
      if (w) w(c);
      else ep.idle.push(c);
    };
    const c = await acquire();
    const onAbort = () => c.close();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const info = await new Promise((resolve, reject) =>
        c.send(
          {
            from: envelope.from,
            to: envelope.to,
            ...(envelope.size !== undefined ? { size: envelope.size } : {}),
            ...(envelope.eightBit ? { use8BitMime: true } : {}),
          },
          body,
          (err, i) => (err ? reject(err) : resolve(i)),
        ),
      );
      release(c, false);
      return info;
    } catch (err) {
      release(c, true);
      throw err;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  };
}
