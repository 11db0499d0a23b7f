/**
 * Hostile streams against the relay as a real process (bounded run): random and mutated SMTP byte
 * streams (test/helpers/smtp-fuzz.ts) over real TCP connections, each read to its end. Properties:
 *   - every session ends (bounded wait), every reply is well-formed;
 *   - the relay queued exactly the messages it answered "250 … queued as ID" for;
 *   - afterwards it is alive and serving, logged no error, and its memory stayed bounded.
 * Fixed count and seed (MAILFLEET_FUZZ_SEED overrides; fast-check prints the counterexample).
 */
import net from 'node:net';
import fc from 'fast-check';
import { a, mx, startDnsServer, type TestDnsServer } from '../helpers/dns.js';
import { relayConfig, startRelay, type RelayProcess } from '../helpers/relay.js';
import { checkReplies, fuzzParams, queuedIds, smtpStream, type SmtpStream } from '../helpers/smtp-fuzz.js';

jest.setTimeout(120_000);

let dns: TestDnsServer;
let relay: RelayProcess;

beforeAll(async () => {
  dns = await startDnsServer({ records: [mx('mx.test', 'mail.mx.test'), a('mail.mx.test', '127.0.0.1')] });
  relay = await startRelay({
    config: relayConfig({
      dns: { servers: [dns.server], timeoutMs: 300, tries: 1 },
      limits: { maxMessageBytes: 16 * 1024, messagesPerMinutePerClient: 100_000 },
    }),
  });
});

afterAll(async () => {
  await relay?.stop();
  await dns?.stop();
});

/** Writes the stream (then FIN, or QUIT and FIN) and resolves with all the relay wrote before closing. */
function play(s: SmtpStream): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(relay.ports.relay!, '127.0.0.1');
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
        for (const chunk of s.chunks) {
          if (socket.destroyed) return;
          if (!socket.write(Buffer.from(chunk, 'latin1'))) await new Promise((r) => socket.once('drain', r));
          await new Promise((r) => setImmediate(r));
        }
        if (!socket.destroyed) socket.end(s.fin ? '' : '\r\nQUIT\r\n');
      })();
    });
  });
}

test('random and mutated streams: well-formed replies, nothing queued without its 250, the relay holds', async () => {
  const announced: string[] = [];
  await fc.assert(
    fc.asyncProperty(smtpStream(), async (s) => {
      const output = await play(s);
      const { replies, problems } = checkReplies(output);
      if (replies.length === 0)
        throw new Error(
          `no reply at all; relay exit ${JSON.stringify(await Promise.race([relay.exited, Promise.resolve('running')]))}, stderr ${relay.stderr().slice(-2000)}, last logs ${JSON.stringify(relay.logs.slice(-3))}`,
        );
      expect(problems).toEqual([]);
      expect(replies[0]?.code).toBe(220);
      announced.push(...queuedIds(replies));
    }),
    fuzzParams(300),
  );
  // Every message the relay queued was announced to its client, and the other way round.
  const queued = () => relay.logs.filter((l) => l.msg === 'message queued').map((l) => String(l.id));
  if (announced.length > 0)
    await relay.waitForLog((l) => l.msg === 'message queued' && l.id === announced.at(-1));
  expect(queued().sort()).toEqual([...announced].sort());
  expect(announced.length).toBeGreaterThan(0); // the run did exercise whole transactions

  expect((await relay.admin('/healthz')).status).toBe(200);
  expect(relay.logs.filter((l) => l.level === 'error' || l.level === 'fatal')).toEqual([]);
  expect(relay.stderr()).toBe('');
  const rss = await relay.metric('process_resident_memory_bytes');
  expect(rss).toBeLessThan(512 * 1024 * 1024);
});
