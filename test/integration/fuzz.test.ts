/**
 * Hostile streams against the relay as a real process (bounded run): random and mutated SMTP byte
 * streams (test/helpers/smtp-fuzz.ts) over real TCP connections, each read to its end, from a direct
 * client and through a trusted PROXY-protocol proxy (a v1 or v2 header first, cut anywhere). Properties:
 *   - every session ends (bounded wait), every reply is well-formed;
 *   - the relay queued exactly the messages it answered "250 … queued as ID" for;
 *   - afterwards it is alive and serving, logged no error, and its memory stayed bounded.
 * Fixed count and seed (MAILFLEET_FUZZ_SEED overrides; fast-check prints the counterexample).
 */
import net from 'node:net';
import fc from 'fast-check';
import { a, mx, startDnsServer, type TestDnsServer } from '../helpers/dns.js';
import { proxyV1, proxyV2 } from '../helpers/proxy-header.js';
import { relayConfig, startRelay, type RelayProcess } from '../helpers/relay.js';
import { checkReplies, fuzzParams, queuedIds, smtpStream, type SmtpStream } from '../helpers/smtp-fuzz.js';

jest.setTimeout(120_000);

const PROXY = '127.0.0.3'; // a trusted load balancer

let dns: TestDnsServer;
let relay: RelayProcess;
/** Queue IDs announced with "250 … queued as ID", over both properties. */
const announced: string[] = [];

beforeAll(async () => {
  dns = await startDnsServer({ records: [mx('mx.test', 'mail.mx.test'), a('mail.mx.test', '127.0.0.1')] });
  relay = await startRelay({
    config: relayConfig({
      listeners: {
        relay: {
          address: '127.0.0.1',
          port: 0,
          allowedNetworks: ['127.0.0.0/8'],
          proxyProtocol: { trustedProxies: [`${PROXY}/32`] },
        },
      },
      dns: { servers: [dns.server], timeoutMs: 2000, tries: 1 },
      limits: { maxMessageBytes: 16 * 1024, messagesPerMinutePerClient: 100_000 },
    }),
  });
});

afterAll(async () => {
  await relay?.stop();
  await dns?.stop();
});

/**
 * Writes the stream (then FIN, or QUIT and FIN) and resolves with all the relay wrote before closing.
 * `via` sends it from the trusted proxy's address, its header first (cut in two: its tail is written
 * together with the stream's first chunk).
 */
function play(s: SmtpStream, via?: { header: Buffer; cutAt: number }): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({
      port: relay.ports.relay!,
      host: '127.0.0.1',
      ...(via ? { localAddress: PROXY } : {}),
    });
    const chunks: Buffer[] = s.chunks.map((c) => Buffer.from(c, 'latin1'));
    if (via) {
      // The header's tail goes with the session's first bytes, as a proxy forwards them.
      const at = Math.floor(via.cutAt * via.header.length);
      chunks[0] = Buffer.concat([via.header.subarray(at), chunks[0] ?? Buffer.alloc(0)]);
      if (at > 0) chunks.unshift(via.header.subarray(0, at));
    }
    let got = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`session did not end within 10 s; got ${JSON.stringify(got.slice(-300))}`));
    }, 10_000);
    socket.on('data', (d: Buffer) => (got += d.toString('latin1')));
    socket.on('error', () => undefined); // a reset after the relay's 421 is an ending too
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(got);
    });
    socket.once('connect', () => {
      void (async () => {
        for (const chunk of chunks) {
          if (socket.destroyed) return;
          if (!socket.write(chunk)) await new Promise((r) => socket.once('drain', r));
          await new Promise((r) => setImmediate(r));
        }
        if (!socket.destroyed) socket.end(s.fin ? '' : '\r\nQUIT\r\n');
      })();
    });
  });
}

/** One stream's answer: well-formed, greeted first; its announced queue IDs are kept. */
async function check(output: string): Promise<void> {
  const { replies, problems } = checkReplies(output);
  if (replies.length === 0)
    throw new Error(
      `no reply at all; relay exit ${JSON.stringify(await Promise.race([relay.exited, Promise.resolve('running')]))}, stderr ${relay.stderr().slice(-2000)}, last logs ${JSON.stringify(relay.logs.slice(-3))}`,
    );
  expect(problems).toEqual([]);
  expect(replies[0]?.code).toBe(220);
  announced.push(...queuedIds(replies));
}

test('random and mutated streams from a direct client: well-formed replies', async () => {
  await fc.assert(
    fc.asyncProperty(smtpStream(), async (s) => check(await play(s))),
    fuzzParams(300),
  );
});

test('the same through the trusted proxy: its v1 or v2 header first, then the session', async () => {
  const header = fc.oneof(
    fc.nat({ max: 254 }).map((n) => proxyV1(`127.0.1.${n + 1}`)),
    fc.nat({ max: 254 }).map((n) => proxyV2({ source: `127.0.2.${n + 1}` })),
    fc.constant(proxyV2({ command: 'LOCAL' })), // the proxy's own health check: the session is the proxy's
  );
  await fc.assert(
    fc.asyncProperty(smtpStream(), header, fc.double({ min: 0, max: 1, noNaN: true }), async (s, h, cutAt) =>
      check(await play(s, { header: h, cutAt })),
    ),
    fuzzParams(150),
  );
});

test('nothing queued without its 250, and the relay holds', async () => {
  // Every message the relay queued was announced to its client, and the other way round.
  const queued = () => relay.logs.filter((l) => l.msg === 'message queued').map((l) => String(l.id));
  if (announced.length > 0)
    await relay.waitForLog((l) => l.msg === 'message queued' && l.id === announced.at(-1));
  expect(queued().sort()).toEqual([...announced].sort());
  expect(announced.length).toBeGreaterThan(0); // the run did exercise whole transactions
  expect(relay.logs.some((l) => l.msg === 'message queued' && /^127\.0\.[12]\./.test(String(l.client)))).toBe(
    true,
  ); // and some of them came through the proxy, with the header's address

  expect((await relay.admin('/healthz')).status).toBe(200);
  expect(relay.logs.filter((l) => l.level === 'error' || l.level === 'fatal')).toEqual([]);
  expect(relay.stderr()).toBe('');
  const rss = await relay.metric('process_resident_memory_bytes');
  expect(rss).toBeLessThan(512 * 1024 * 1024);
});
