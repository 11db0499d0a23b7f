/**
 * TransportPool against a real SMTP server (smtp-server, in process, on 127.0.0.1): connection reuse,
 * the per-endpoint limit, rotation, stale connections, replies, abort, close, TLS and AUTH. Waits are
 * bounded polls of what the server saw, never sleeps.
 */
import type { Socket } from 'node:net';
import { Readable } from 'node:stream';
import { SMTPServer, type SMTPServerOptions, type SMTPServerSession } from 'smtp-server';
import {
  TransportPool,
  targetKey,
  type SendInfo,
  type SmtpTarget,
  type TransportOptions,
} from '../../../../relay/delivery/transport.js';
import { makeCa, makeCert } from '../../../helpers/tls.js';

/** What a hook tells the server to do with a command: reply with an error, drop the connection, or never answer. */
type Verdict = Error | 'drop' | 'stall' | undefined;

interface Hooks {
  mail?: (s: SMTPServerSession) => Verdict;
  rcpt?: (address: string, s: SMTPServerSession) => Verdict;
  /** After the body was read. */
  data?: (s: SMTPServerSession) => Verdict;
}

interface Downstream {
  port: number;
  hooks: Hooks;
  received: { from: string; to: string[]; body: string; session: string }[];
  /** Sessions opened so far, open now, most open at once, and messages per session. */
  sessions: number;
  open: number;
  maxOpen: number;
  perSession: Map<string, number>;
  auths: string[];
  sockets: Set<Socket>;
  /** Replies held back by 'stall', to release later. */
  stalled: (() => void)[];
  stop(): Promise<void>;
}

const servers: Downstream[] = [];
const pools: TransportPool[] = [];

afterEach(async () => {
  for (const p of pools.splice(0)) p.close();
  await Promise.all(servers.splice(0).map((s) => s.stop()));
});

function reply(text: string): Error {
  const m = /^(\d{3}) (.*)$/.exec(text)!;
  return Object.assign(new Error(m[2]), { responseCode: Number(m[1]) });
}

async function downstream(extra: Partial<SMTPServerOptions> = {}): Promise<Downstream> {
  const d: Downstream = {
    port: 0,
    hooks: {},
    received: [],
    sessions: 0,
    open: 0,
    maxOpen: 0,
    perSession: new Map(),
    auths: [],
    sockets: new Set(),
    stalled: [],
    stop: () => Promise.resolve(),
  };
  const socketOf = (s: SMTPServerSession) =>
    [...d.sockets].find((k) => k.remotePort === s.remotePort && !k.destroyed);
  const apply = (verdict: Verdict, s: SMTPServerSession, cb: (err?: Error | null) => void) => {
    if (verdict === 'drop') socketOf(s)?.destroy();
    else if (verdict === 'stall') d.stalled.push(() => cb());
    else cb(verdict ?? null);
  };
  const server = new SMTPServer({
    logger: false,
    disableReverseLookup: true,
    authOptional: true,
    disabledCommands: extra.secure || extra.key ? [] : ['STARTTLS'],
    onConnect(_s, cb) {
      d.sessions++;
      d.open++;
      d.maxOpen = Math.max(d.maxOpen, d.open);
      cb();
    },
    onClose() {
      d.open--;
    },
    onAuth(auth, _s, cb) {
      d.auths.push(auth.username ?? '');
      if (auth.username === 'relay' && auth.password === 'secret') cb(null, { user: auth.username });
      else cb(reply('535 5.7.8 bad credentials'));
    },
    onMailFrom(_a, s, cb) {
      apply(d.hooks.mail?.(s), s, cb);
    },
    onRcptTo(a, s, cb) {
      apply(d.hooks.rcpt?.(a.address, s), s, cb);
    },
    onData(stream, s, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const verdict = d.hooks.data?.(s);
        if (verdict === undefined) {
          d.received.push({
            from: s.envelope.mailFrom ? s.envelope.mailFrom.address : '',
            to: s.envelope.rcptTo.map((r) => r.address),
            body: Buffer.concat(chunks).toString(),
            session: s.id,
          });
          d.perSession.set(s.id, (d.perSession.get(s.id) ?? 0) + 1);
        }
        apply(verdict, s, cb);
      });
    },
    ...extra,
  });
  server.server.on('connection', (socket: Socket) => {
    d.sockets.add(socket);
    socket.on('close', () => d.sockets.delete(socket));
  });
  server.on('error', () => undefined);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  d.port = (server.server.address() as { port: number }).port;
  d.stop = () => {
    for (const s of d.sockets) s.destroy();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  };
  servers.push(d);
  return d;
}

function pool(opts: Partial<TransportOptions> = {}, extra: { idleMs?: number; now?: () => number } = {}) {
  const p = new TransportPool(
    () => ({
      heloName: 'relay.test',
      connectTimeoutMs: 5000,
      commandTimeoutMs: 5000,
      maxConnections: 2,
      ...opts,
    }),
    extra,
  );
  pools.push(p);
  return p;
}

const target = (d: Downstream, more: Partial<SmtpTarget> = {}): SmtpTarget => ({
  host: '127.0.0.1',
  port: d.port,
  name: 'downstream.test',
  tls: 'none',
  ...more,
});

const message = (n: number | string) => `Subject: m${n}\r\nX-Test: ${n}\r\n\r\nbody ${n}\r\n`;
const body = (n: number | string) => Readable.from([Buffer.from(message(n))]);
const env = (to: string[] = ['a@example.org'], from = 'sender@example.com') => ({ from, to });

/** Polls `cond` until it holds; fails after `ms` (a bound, not an expectation on timing). */
async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** The error a promise rejects with. */
async function failure(p: Promise<unknown>): Promise<Error & Record<string, unknown>> {
  try {
    await p;
  } catch (err) {
    return err as Error & Record<string, unknown>;
  }
  throw new Error('expected a rejection');
}

describe('TransportPool', () => {
  it('reuses one connection for consecutive messages, null sender and body intact', async () => {
    const d = await downstream();
    const t = pool();
    for (let i = 0; i < 3; i++) {
      const info = await t.send(target(d), env(['a@example.org'], i === 1 ? '' : 's@example.com'), body(i));
      expect(info.accepted).toEqual(['a@example.org']);
      expect(info.rejected).toEqual([]);
      expect(info.response).toMatch(/^250 /);
    }
    expect(d.sessions).toBe(1);
    expect(d.received.map((m) => m.from)).toEqual(['s@example.com', '', 's@example.com']);
    expect(d.received[2]!.body).toBe(message(2));
    expect(t.size).toBe(1);
  });

  it('opens at most maxConnections per endpoint and serves the others in order as connections free up', async () => {
    const d = await downstream();
    const t = pool({ maxConnections: 2 });
    d.hooks.data = () => 'stall';
    const sends = [0, 1, 2, 3, 4, 5].map((i) => t.send(target(d), env([`r${i}@example.org`]), body(i)));
    await until(() => d.stalled.length === 2, 'two messages in flight');
    expect(d.open).toBe(2);
    d.hooks.data = undefined;
    d.stalled.splice(0).forEach((go) => go());
    await Promise.all(sends);
    expect(d.sessions).toBe(2);
    expect(d.maxOpen).toBe(2);
    // The four that waited went out in the order they were sent (the stalled two had been accepted last).
    const order = d.received.map((m) => m.to[0]);
    expect(order.filter((r) => !['r0@example.org', 'r1@example.org'].includes(r!))).toEqual([
      'r2@example.org',
      'r3@example.org',
      'r4@example.org',
      'r5@example.org',
    ]);
  });

  it('replaces a connection after 100 messages', async () => {
    const d = await downstream();
    const t = pool({ maxConnections: 1 });
    for (let i = 0; i < 101; i++) await t.send(target(d), env(), body(i));
    expect(d.sessions).toBe(2);
    expect([...d.perSession.values()]).toEqual([100, 1]);
    await until(() => d.open === 1, 'the first connection to be closed');
  });

  it('drops an idle connection the server closed, and sends the next message on a new one', async () => {
    const d = await downstream();
    const t = pool();
    await t.send(target(d), env(), body(1));
    for (const s of d.sockets) s.end();
    await until(() => t.size === 0, 'the pool to notice the close');
    await t.send(target(d), env(), body(2));
    expect(d.sessions).toBe(2);
    expect(d.received).toHaveLength(2);
  });

  it.each([
    ['pipelining', false],
    ['no pipelining', true],
  ])(
    'retries once on a new connection when a reused one turns out dead at MAIL FROM (%s)',
    async (_name, hidePIPELINING) => {
      const d = await downstream({ hidePIPELINING });
      const t = pool();
      await t.send(target(d), env(), body(1));
      // The server drops the session when the next MAIL FROM arrives on it, as one that timed the idle
      // session out at that moment would.
      const first = d.received[0]!.session;
      d.hooks.mail = (s) => (s.id === first ? 'drop' : undefined);
      const info = await t.send(target(d), env(), body(2));
      expect(info.accepted).toEqual(['a@example.org']);
      expect(d.sessions).toBe(2);
      expect(d.received.map((m) => m.body)).toEqual([message(1), message(2)]);
    },
  );

  it('retries when a reused connection answers 421 (the server is closing it)', async () => {
    const d = await downstream();
    const t = pool();
    await t.send(target(d), env(), body(1));
    const first = d.received[0]!.session;
    d.hooks.mail = (s) => (s.id === first ? reply('421 4.4.2 idle timeout') : undefined);
    await t.send(target(d), env(), body(2));
    expect(d.sessions).toBe(2);
    expect(d.received).toHaveLength(2);
  });

  it('does not retry on a new connection that fails, nor after the body went out', async () => {
    const d = await downstream();
    const t = pool();
    d.hooks.mail = () => 'drop';
    const fresh = await failure(t.send(target(d), env(), body(1)));
    expect(fresh).toMatchObject({ code: 'ECONNECTION' });
    expect(d.sessions).toBe(1);

    d.hooks.mail = undefined;
    await t.send(target(d), env(), body(2));
    d.hooks.data = () => 'drop'; // the whole message was sent, then the connection went: it may have arrived
    const sessions = d.sessions;
    const lost = await failure(t.send(target(d), env(), body(3)));
    expect(lost).toMatchObject({ code: 'ECONNECTION' });
    expect(d.sessions).toBe(sessions);
  });

  it('reports accepted and refused recipients of a partly accepted message', async () => {
    const d = await downstream();
    const t = pool();
    d.hooks.rcpt = (a) => (a.startsWith('bad') ? reply('550 5.1.1 no such user') : undefined);
    const info: SendInfo = await t.send(target(d), env(['good@example.org', 'bad@example.org']), body(1));
    expect(info.accepted).toEqual(['good@example.org']);
    expect(info.rejected).toEqual(['bad@example.org']);
    expect(info.rejectedErrors).toEqual([
      expect.objectContaining({
        recipient: 'bad@example.org',
        responseCode: 550,
        response: '550 5.1.1 no such user',
      }),
    ]);
    expect(d.received[0]!.to).toEqual(['good@example.org']);
  });

  it('rejects with every refusal when all recipients are refused, and keeps the connection (RSET)', async () => {
    const d = await downstream();
    const t = pool({ maxConnections: 1 });
    d.hooks.rcpt = (a) => reply(a.startsWith('later') ? '451 4.3.0 try later' : '550 5.1.1 no such user');
    const err = await failure(t.send(target(d), env(['x@example.org', 'later@example.org']), body(1)));
    expect(err).toMatchObject({ code: 'EENVELOPE', command: 'RCPT TO', responseCode: 451 });
    expect(err.rejectedErrors).toEqual([
      expect.objectContaining({ recipient: 'x@example.org', responseCode: 550 }),
      expect.objectContaining({ recipient: 'later@example.org', responseCode: 451 }),
    ]);
    d.hooks.rcpt = undefined;
    await t.send(target(d), env(), body(2));
    expect(d.sessions).toBe(1);
    expect(d.received).toHaveLength(1);
  });

  it('rejects a 5xx to MAIL FROM with its reply, and keeps the connection (RSET)', async () => {
    const d = await downstream();
    const t = pool({ maxConnections: 1 });
    d.hooks.mail = () => reply('550 5.7.1 sender refused');
    const err = await failure(t.send(target(d), env(), body(1)));
    expect(err).toMatchObject({
      code: 'EENVELOPE',
      command: 'MAIL FROM',
      responseCode: 550,
      response: '550 5.7.1 sender refused',
    });
    d.hooks.mail = undefined;
    await t.send(target(d), env(), body(2));
    expect(d.sessions).toBe(1);
  });

  it('rejects a refused message (reply to the data) with its reply', async () => {
    const d = await downstream();
    const t = pool();
    d.hooks.data = () => reply('554 5.6.0 content refused');
    const err = await failure(t.send(target(d), env(), body(1)));
    expect(err).toMatchObject({ code: 'EMESSAGE', command: 'DATA', responseCode: 554 });
  });

  it('rejects with the body stream error itself and does not reuse that connection', async () => {
    const d = await downstream();
    const t = pool();
    class Damaged extends Error {}
    const damaged = new Damaged('body checksum mismatch');
    const broken = new Readable({
      read() {
        this.push(Buffer.from('Subject: x\r\n\r\npartial'));
        this.destroy(damaged);
      },
    });
    const err = await failure(t.send(target(d), env(), broken));
    expect(err).toBe(damaged);
    await t.send(target(d), env(), body(2));
    expect(d.sessions).toBe(2);
    expect(d.received.map((m) => m.body)).toEqual([message(2)]);
  });

  it('an abort fails the send at once and closes its connection; a waiting send aborts too', async () => {
    const d = await downstream();
    const t = pool({ maxConnections: 1 });
    d.hooks.data = () => 'stall';
    const inFlight = new AbortController();
    const stuck = t.send(target(d), env(), body(1), inFlight.signal);
    await until(() => d.stalled.length === 1, 'the message to be in flight');
    const waiting = new AbortController();
    const queued = t.send(target(d), env(), body(2), waiting.signal);
    waiting.abort();
    expect(await failure(queued)).toMatchObject({ name: 'AbortError', code: 'EABORT' });
    inFlight.abort();
    expect(await failure(stuck)).toMatchObject({ name: 'AbortError', code: 'EABORT' });
    await until(() => d.open === 0, 'the server to see the connection closed');
    d.hooks.data = undefined;
    await t.send(target(d), env(), body(3));
    expect(d.received).toHaveLength(1);
  });

  it('close() quits idle connections, fails sends in flight and waiting, and refuses new ones', async () => {
    const d = await downstream();
    const other = await downstream();
    const t = pool({ maxConnections: 1 });
    await t.send(target(other), env(), body(0));
    d.hooks.data = () => 'stall';
    const inFlight = t.send(target(d), env(), body(1));
    await until(() => d.stalled.length === 1, 'the message to be in flight');
    const waiting = t.send(target(d), env(), body(2));
    t.close();
    expect(await failure(inFlight)).toMatchObject({ code: 'ECONNECTION' });
    expect(await failure(waiting)).toMatchObject({ code: 'ECONNECTION' });
    expect(await failure(t.send(target(other), env(), body(3)))).toMatchObject({ code: 'ECONNECTION' });
    await until(() => d.open === 0 && other.open === 0, 'every connection to be closed');
    expect(t.size).toBe(0);
  });

  it('sweep() closes connections idle for idleMs, not those used since', async () => {
    const d = await downstream();
    let now = 1_000_000;
    const t = pool({}, { idleMs: 30_000, now: () => now });
    await t.send(target(d), env(), body(1));
    now += 29_999;
    t.sweep();
    await t.send(target(d), env(), body(2));
    expect(d.sessions).toBe(1);
    now += 30_000;
    t.sweep();
    await until(() => d.open === 0, 'the idle connection to be closed');
    expect(t.size).toBe(0);
  });

  it('keeps endpoints apart by targetKey (port, TLS policy, credentials)', async () => {
    const a = await downstream();
    const b = await downstream();
    const t = pool();
    await t.send(target(a), env(), body(1));
    await t.send(target(b), env(), body(2));
    expect(t.size).toBe(2);
    expect(targetKey(target(a))).not.toBe(targetKey(target(a, { tls: 'opportunistic' })));
    expect(targetKey(target(a))).not.toBe(targetKey(target(a, { auth: { user: 'u', pass: 'p' } })));
  });

  describe('TLS and AUTH', () => {
    const ca = makeCa();
    const cert = makeCert(ca, { names: ['localhost'] });
    const tlsServer = () =>
      downstream({ key: cert.keyPem, cert: cert.certPem, authMethods: ['PLAIN', 'LOGIN'] });

    it('starttls: verifies the certificate against ca and servername, logs in, and reuses the session', async () => {
      const d = await tlsServer();
      const t = pool();
      const tgt = target(d, {
        tls: 'starttls',
        servername: 'localhost',
        ca: ca.certPem,
        auth: { user: 'relay', pass: 'secret' },
      });
      await t.send(tgt, env(), body(1));
      await t.send(tgt, env(), body(2));
      expect(d.auths).toEqual(['relay']);
      expect(d.sessions).toBe(1);
      expect(d.received).toHaveLength(2);
    });

    it('starttls: a certificate not from ca, or not for servername, fails the send; nothing is sent', async () => {
      const d = await tlsServer();
      const t = pool();
      const unknownCa = await failure(
        t.send(target(d, { tls: 'starttls', servername: 'localhost' }), env(), body(1)),
      );
      expect(unknownCa.message).toMatch(/certificate/);
      const wrongName = await failure(
        t.send(target(d, { tls: 'starttls', servername: 'mx.example.org', ca: ca.certPem }), env(), body(2)),
      );
      expect(wrongName.message).toMatch(/mx\.example\.org/);
      expect(d.received).toHaveLength(0);
      expect(d.sessions).toBe(2);
    });

    it('opportunistic: upgrades without verifying; refused credentials fail the send (EAUTH)', async () => {
      const d = await tlsServer();
      const t = pool();
      await t.send(target(d, { tls: 'opportunistic' }), env(), body(1));
      expect(d.received).toHaveLength(1);
      const err = await failure(
        t.send(target(d, { tls: 'opportunistic', auth: { user: 'relay', pass: 'wrong' } }), env(), body(2)),
      );
      expect(err).toMatchObject({ code: 'EAUTH', responseCode: 535 });
    });
  });
});
