/**
 * Hostile streams at the adapter/session seam: the relay's real listener (RelayServer/RelayConnection
 * over smtp-server) and session handlers, fed random and mutated SMTP byte streams through an in-memory
 * socket, with an in-memory spool (always above its free-space floor) and a fixed DNS answer at the
 * seams. Properties, for every stream:
 *   - nothing throws, and the session ends (every wait is bounded);
 *   - every reply is well-formed (test/helpers/smtp-fuzz.ts: checkReplies);
 *   - the spool accepted exactly the messages the client was told "250 … queued as ID" for, no more;
 *   - memory stays bounded: no message kept is over the size limit, and the relay writes a bounded
 *     number of replies per line it reads;
 *   - a stream that opens with a PROXY header (this client is no trusted proxy) ends with the 554 5.7.1
 *     refusal after the greeting, and nothing is queued.
 * Bounded: a fixed number of cases and seed (MAILFLEET_FUZZ_SEED overrides; fast-check prints it with
 * the shrunk counterexample on failure).
 */
import { Duplex } from 'node:stream';
import fc from 'fast-check';
import { validateConfig } from '../../../relay/config/load.js';
import { AuthThrottle } from '../../../relay/auth/throttle.js';
import type { MailResolver, MailHosts } from '../../../relay/dns/resolver.js';
import { silentLogger } from '../../../relay/log.js';
import { RelayMetrics } from '../../../relay/metrics.js';
import { ClientConnectionLimits } from '../../../relay/policy/client-limits.js';
import { RateLimiter } from '../../../relay/policy/rate-limit.js';
import { Replies, formatReply } from '../../../relay/policy/replies.js';
import { buildRuntime, type Runtime } from '../../../relay/runtime.js';
import type { RelayServer } from '../../../relay/smtp/connection.js';
import { createListeners } from '../../../relay/smtp/listeners.js';
import type { SessionDeps } from '../../../relay/smtp/session.js';
import type { Envelope } from '../../../relay/spool/envelope.js';
import { V2_SIGNATURE } from '../../helpers/proxy-header.js';
import { checkReplies, fuzzParams, queuedIds, smtpStream, type SmtpStream } from '../../helpers/smtp-fuzz.js';

jest.setTimeout(60_000);

const MAX_MESSAGE_BYTES = 4096;

/** A socket in memory: what the test pushes is what the server reads; what the server writes is kept. */
class FakeSocket extends Duplex {
  readonly remoteAddress = '127.0.0.1';
  readonly remotePort = 40000;
  readonly localAddress = '127.0.0.1';
  readonly localPort = 25;
  written = '';

  get readyState(): string {
    if (this.destroyed) return 'closed';
    if (this.writableEnded) return this.readableEnded ? 'closed' : 'readOnly';
    return this.readableEnded ? 'writeOnly' : 'open';
  }

  setTimeout(): this {
    return this;
  }
  setKeepAlive(): this {
    return this;
  }
  setNoDelay(): this {
    return this;
  }

  override _read(): void {}

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.written += chunk.toString('latin1');
    cb();
  }

  /** The server closed its side: the client is taken to close too, so the socket goes away. */
  override _final(cb: (err?: Error | null) => void): void {
    cb();
    setImmediate(() => this.destroy());
  }
}

interface Harness {
  server: RelayServer;
  accepted: { id: string; envelope: Envelope; size: number }[];
}

async function harness(): Promise<Harness> {
  const loaded = validateConfig(
    {
      hostname: 'relay.test',
      listeners: { relay: { address: '127.0.0.1', port: 0, allowedNetworks: ['127.0.0.0/8'] } },
      domains: [{ name: 'example.com', allowedUsers: ['*'] }],
      spool: { dir: 'spool' },
      delivery: { route: { mode: 'direct' } },
      limits: { maxMessageBytes: MAX_MESSAGE_BYTES, maxRecipients: 5 },
    },
    { source: 'fuzz', baseDir: '/nonexistent' },
  );
  const rt: Runtime = await buildRuntime(loaded);
  const accepted: Harness['accepted'] = [];
  let n = 0;
  const hosts = (domain: string): MailHosts =>
    domain === 'mx.test' || domain === 'example.com'
      ? { kind: 'mx', hosts: [{ exchange: 'mail.mx.test', priority: 10 }] }
      : { kind: 'nxdomain' };
  const rates = new RateLimiter();
  const deps: SessionDeps = {
    runtime: () => rt,
    resolver: () => ({ mailHosts: async (d: string) => hosts(d) }) as unknown as MailResolver,
    spool: {
      async accept(envelope, body) {
        let size = 0;
        await new Promise((r) => setTimeout(r, 1)); // like the spool, which opens its file first
        for await (const chunk of body) size += chunk.length;
        await new Promise((r) => setTimeout(r, 1)); // the fsync: the client's next bytes (or FIN) come first
        const id = `Q${++n}`;
        accepted.push({ id, envelope, size });
        return { id, size };
      },
      spaceProblem: () => undefined, // the in-memory spool never runs out of space
    },
    metrics: new RelayMetrics({ defaultMetrics: false }),
    log: silentLogger(),
    limits: {
      takeRate: (kind: string, id: string, perMinute: number) =>
        Promise.resolve(rates.take(`${kind}:${id}`, perMinute)),
      suppressed: () => Promise.resolve(null),
    },
    throttle: new AuthThrottle(() => rt.config.auth?.throttle ?? loadedThrottle()),
    clientLimits: new ClientConnectionLimits(),
    connectionCount: () => 1,
    stopping: () => false,
    inflight: new Set(),
  };
  const [listener] = createListeners(rt, deps);
  return { server: listener!.server, accepted };
}

/** The first bytes are a PROXY header's signature (v1 "PROXY ", or v2's 12 bytes). */
function opensWithProxyHeader(s: SmtpStream): boolean {
  const start = Buffer.from(s.chunks.join(''), 'latin1');
  return start.subarray(0, 6).equals(Buffer.from('PROXY ')) || start.subarray(0, 12).equals(V2_SIGNATURE);
}

function loadedThrottle() {
  return { window: 600, delayAfterFailures: 3, maxDelayMs: 8000, lockoutAfterFailures: 10, lockout: 300 };
}

/** Plays one stream; resolves with what the server wrote once it closed (bounded). */
async function play(h: Harness, s: SmtpStream): Promise<string> {
  const socket = new FakeSocket();
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  h.server.connect(socket as never);
  for (const chunk of [...s.chunks, ...(s.fin ? [] : ['\r\nQUIT\r\n'])]) {
    socket.push(Buffer.from(chunk, 'latin1'));
    await new Promise((r) => setImmediate(r));
  }
  socket.push(null); // FIN
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(new Error(`session did not end; server wrote ${JSON.stringify(socket.written.slice(-300))}`)),
      5000,
    );
  });
  try {
    await Promise.race([closed, bound]);
  } finally {
    clearTimeout(timer);
  }
  return socket.written;
}

describe('SMTP session under hostile streams (property-based, bounded)', () => {
  test('no crash, well-formed replies, nothing queued without its 250, bounded output', async () => {
    const h = await harness();
    await fc.assert(
      fc.asyncProperty(smtpStream(), async (s) => {
        const before = h.accepted.length;
        const output = await play(h, s);
        const { replies, problems } = checkReplies(output);
        expect(problems).toEqual([]);
        expect(replies[0]?.code).toBe(220);
        const announced = queuedIds(replies);
        expect(h.accepted.slice(before).map((a) => a.id)).toEqual(announced);
        for (const a of h.accepted.slice(before)) expect(a.size).toBeLessThan(MAX_MESSAGE_BYTES + 2048);
        const linesIn = s.chunks.join('').split('\n').length + 2;
        expect(replies.length).toBeLessThanOrEqual(linesIn + 1);
        if (opensWithProxyHeader(s)) {
          // Refused, nothing queued. Only a v2 signature cut into pieces lets lines through before it is
          // recognised: the empty lines and the NUL line inside it, each a 500 (none is a command).
          expect(output.endsWith(`\r\n${formatReply(Replies.proxyHeaderUntrusted)}\r\n`)).toBe(true);
          expect(replies.slice(1, -1).map((r) => r.code)).toEqual(replies.slice(1, -1).map(() => 500));
          expect(announced).toEqual([]);
        }
      }),
      fuzzParams(300),
    );
  });

  test('the harness sees what it should: a clean transaction is queued and announced once', async () => {
    const h = await harness();
    const output = await play(h, {
      chunks: [
        'EHLO c\r\nMAIL FROM:<app@example.com>\r\nRCPT TO:<r@mx.test>\r\nDATA\r\n',
        'Subject: x\r\n\r\nhi\r\n.\r\n',
      ],
      fin: true,
    });
    const { replies, problems } = checkReplies(output);
    expect(problems).toEqual([]);
    expect(queuedIds(replies)).toEqual(['Q1']);
    expect(h.accepted.map((a) => a.envelope.recipients)).toEqual([['r@mx.test']]);
  });
});
