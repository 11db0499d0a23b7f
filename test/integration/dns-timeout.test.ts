/**
 * dns.timeoutMs is what a query waits, however fast the resolver answered before. c-ares adapts its
 * timeout to a server's recent latency (five times the average, at least 250 ms) once it has answered a
 * few queries; a relay sharing one channel then gave up early on the first slow answer (a cache miss at
 * the recursive resolver, a loaded machine) and answered RCPT with 451 4.4.3.
 */
import { a, mx, startDnsServer, type TestDnsServer } from '../helpers/dns.js';
import { relayConfig, startRelay, type RelayProcess } from '../helpers/relay.js';
import { SmtpClient } from '../helpers/smtp-client.js';

jest.setTimeout(60_000);

const FAST = Array.from({ length: 40 }, (_, i) => `fast${i}.test`);
let dns: TestDnsServer;
let relay: RelayProcess;

beforeAll(async () => {
  dns = await startDnsServer({
    records: [
      ...FAST.map((d) => mx(d, `mail.${d}`)),
      mx('slow.test', 'mail.slow.test'),
      a('mail.slow.test', '127.0.0.1'),
    ],
    delayMs: { 'slow.test': 1500 },
  });
  relay = await startRelay({
    config: relayConfig({ dns: { servers: [dns.server], timeoutMs: 6000, tries: 1 } }),
  });
});

afterAll(async () => {
  await relay?.stop();
  await dns?.stop();
});

test('after many fast answers, a slow one within dns.timeoutMs is waited for (250, not 451 4.4.3)', async () => {
  const c = await SmtpClient.connect(relay.ports.relay!);
  try {
    await c.command('EHLO client.test');
    expect((await c.command('MAIL FROM:<app@example.com>')).code).toBe(250);
    for (const d of FAST) expect((await c.command(`RCPT TO:<r@${d}>`)).raw).toBe('250 2.1.5 Accepted');
    expect((await c.command('RCPT TO:<r@slow.test>', 10_000)).raw).toBe('250 2.1.5 Accepted');
  } finally {
    c.close();
  }
  expect(dns.queries().filter((q) => q.name === 'slow.test' && q.type === 'MX').length).toBe(1);
});
