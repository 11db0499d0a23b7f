/**
 * Shaping per destination site, through the relay process: two recipient domains hosted on the same MX
 * hosts (test DNS server) are one site, limited together, and the site's deliveriesPerConnection ends
 * connections at the downstream test server.
 *
 * Both MX hosts are names for one downstream (127.0.0.6): the relay keeps separate connections per MX
 * host name, so without the site limit the two domains could have up to four messages in flight there.
 */
import nodemailer from 'nodemailer';
import { a, mx, startDnsServer, type TestDnsServer } from '../helpers/dns.js';
import { relayConfig, startRelay, type RelayProcess } from '../helpers/relay.js';
import { startDownstream, type Downstream } from '../helpers/smtp-downstream.js';

jest.setTimeout(60_000);

async function send(relay: RelayProcess, to: string, testId: string): Promise<void> {
  const client = nodemailer.createTransport({ host: '127.0.0.1', port: relay.ports.relay, ignoreTLS: true });
  try {
    const raw = `From: <app@example.com>\r\nTo: ${to}\r\nSubject: ${testId}\r\nX-Test-Id: ${testId}\r\n\r\nhi\r\n`;
    await client.sendMail({ envelope: { from: 'app@example.com', to: [to] }, raw });
  } finally {
    client.close();
  }
}

describe('shaping per destination site', () => {
  let dns: TestDnsServer;
  let relay: RelayProcess;
  let downstream: Downstream;

  beforeAll(async () => {
    // a slow server, so deliveries overlap whenever the relay lets them
    downstream = await startDownstream({
      host: '127.0.0.6',
      name: 'mx.shared.test',
      rules: { dataDelayMs: 300 },
    });
    dns = await startDnsServer({
      records: [
        mx('one.test', 'mx-a.shared.test', 10),
        mx('one.test', 'mx-b.shared.test', 10),
        mx('two.test', 'mx-b.shared.test', 10),
        mx('two.test', 'mx-a.shared.test', 10),
        a('mx-a.shared.test', '127.0.0.6'),
        a('mx-b.shared.test', '127.0.0.6'),
      ],
    });
    relay = await startRelay({
      config: relayConfig({
        dns: { servers: [dns.server], timeoutMs: 2000, tries: 1 },
        delivery: {
          route: { mode: 'direct' },
          directPort: downstream.port,
          shaping: { sites: [{ match: ['*.shared.test'], maxConnections: 2, deliveriesPerConnection: 3 }] },
          connectTimeoutMs: 2000,
          commandTimeoutMs: 5000,
        },
      }),
    });
  });

  afterAll(async () => {
    await relay?.stop();
    await Promise.all([downstream?.stop(), dns?.stop()]);
  });

  test('two domains with the same MX hosts share the site limit; each connection carries at most 3', async () => {
    const ids = Array.from({ length: 12 }, (_, i) => `shaped-${i}-${process.pid}`);
    await Promise.all(ids.map((id, i) => send(relay, `r${i}@${i % 2 ? 'one' : 'two'}.test`, id)));
    const got = await downstream.waitForMessages(12, 30_000);
    expect(got.map((m) => m.testId).sort()).toEqual([...ids].sort());

    expect(downstream.peakTransactions).toBe(2);
    expect(
      await relay.metric('mailfleet_relay_site_shaping_deferrals_total', {
        site: '*.shared.test',
        limit: 'connections',
      }),
    ).toBeGreaterThan(0);

    const perConnection = new Map<string, number>();
    for (const m of got) perConnection.set(m.session, (perConnection.get(m.session) ?? 0) + 1);
    const counts = [...perConnection.values()];
    expect(Math.max(...counts)).toBeLessThanOrEqual(3);
    expect(Math.max(...counts)).toBeGreaterThan(1); // connections are reused, up to the limit
  });
});
