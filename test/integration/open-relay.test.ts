/**
 * No open relay on any listener: an outsider — no credentials, not in allowedNetworks — tries every
 * listener, in every way a spammer would, and nothing is queued.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { a, mx, startDnsServer, type TestDnsServer } from '../helpers/dns.js';
import { makeTempDir, relayConfig, startRelay, writeUsersFile, type RelayProcess } from '../helpers/relay.js';
import { SmtpClient, authPlain } from '../helpers/smtp-client.js';
import { swaks } from '../helpers/swaks.js';
import { makeCa, makeCert, writeCert } from '../helpers/tls.js';

jest.setTimeout(60_000);

let dns: TestDnsServer;
let relay: RelayProcess;
let caPem: string;
let caFile: string;
const OUTSIDER = '127.0.0.66';
const tlsOpts = () => ({ ca: caPem, servername: 'localhost' });

beforeAll(async () => {
  dns = await startDnsServer({
    records: [mx('victim.test', 'mx.victim.test'), a('mx.victim.test', '127.0.0.1')],
  });
  const dir = await makeTempDir();
  const ca = makeCa();
  caPem = ca.certPem;
  caFile = path.join(dir, 'ca.pem');
  await fs.writeFile(caFile, caPem);
  await writeCert(dir, makeCert(ca));
  await writeUsersFile(path.join(dir, 'users'), { alice: 'alice-secret' });
  relay = await startRelay({
    dir,
    config: relayConfig({
      listeners: {
        submission: { address: '127.0.0.1', port: 0 },
        smtps: { address: '127.0.0.1', port: 0 },
        // Only 127.0.0.1 is "in the cluster"; the outsider connects from another loopback address.
        relay: { address: '127.0.0.1', port: 0, allowedNetworks: ['127.0.0.1/32'] },
      },
      tls: { certFile: 'cert.pem', keyFile: 'key.pem' },
      auth: { usersFile: 'users' },
      domains: [{ name: 'example.com', allowedUsers: ['alice'] }],
      dns: { servers: [dns.server], timeoutMs: 2000, tries: 1 },
    }),
  });
});

afterAll(async () => {
  await relay?.stop();
  await dns?.stop();
});

/** Drives a whole attempt; returns the first refusal (or "queued"). */
async function tryRelay(c: SmtpClient, from: string): Promise<string> {
  for (const cmd of ['EHLO spammer.test', `MAIL FROM:<${from}>`, 'RCPT TO:<victim@victim.test>', 'DATA']) {
    const r = await c.command(cmd);
    if (r.code >= 400) return r.raw;
  }
  const r = await c.command('Subject: spam\r\n\r\nbuy now\r\n.');
  return r.code === 250 ? 'queued' : r.raw;
}

describe('an outsider on every listener', () => {
  test('relay listener, client outside allowedNetworks: 554 5.7.1 at connect, connection closed', async () => {
    const c = await SmtpClient.connect(relay.ports.relay!, { localAddress: OUTSIDER });
    expect(c.greeting.raw).toBe('554 5.7.1 Access denied: this listener accepts only configured networks');
    await c.closed;
  });

  test.each([
    ['submission, in the clear', false],
    ['submission, after STARTTLS', true],
  ])('%s, no AUTH: 530 5.7.0 at MAIL', async (_name, starttls) => {
    const c = await SmtpClient.connect(relay.ports.submission!, { localAddress: OUTSIDER });
    if (starttls) {
      await c.command('EHLO spammer.test');
      await c.startTls(tlsOpts());
    }
    expect(await tryRelay(c, 'alice@example.com')).toBe('530 5.7.0 Authentication required');
    expect((await c.command('RCPT TO:<victim@victim.test>')).raw).toBe('503 5.5.1 Error: need MAIL command');
    expect((await c.command('DATA')).raw).toBe('503 5.5.1 Error: need RCPT command');
    c.close();
  });

  test('smtps, no AUTH: 530 5.7.0 at MAIL', async () => {
    const c = await SmtpClient.connect(relay.ports.smtps!, { tls: tlsOpts(), localAddress: OUTSIDER });
    expect(await tryRelay(c, 'anyone@victim.test')).toBe('530 5.7.0 Authentication required');
    c.close();
  });

  test('wrong credentials do not open anything', async () => {
    const c = await SmtpClient.connect(relay.ports.smtps!, { tls: tlsOpts(), localAddress: OUTSIDER });
    await c.command('EHLO spammer.test');
    expect((await c.command(`AUTH PLAIN ${authPlain('alice', 'guess')}`)).code).toBe(535);
    expect((await c.command('MAIL FROM:<alice@example.com>')).raw).toBe('530 5.7.0 Authentication required');
    c.close();
  });

  test('an authenticated user cannot relay for a foreign sender domain', async () => {
    const c = await SmtpClient.connect(relay.ports.smtps!, { tls: tlsOpts() });
    await c.command('EHLO client.test');
    expect((await c.command(`AUTH PLAIN ${authPlain('alice', 'alice-secret')}`)).code).toBe(235);
    expect(await tryRelay(c, 'ceo@victim.test')).toBe(
      '550 5.7.1 Sender domain is not a mail domain of this relay',
    );
    expect(await tryRelay(c, '')).toBe('550 5.7.1 Null sender not allowed here');
    c.close();
  });

  test('an allowed in-cluster client cannot relay for a foreign sender domain either', async () => {
    const c = await SmtpClient.connect(relay.ports.relay!);
    expect(await tryRelay(c, 'ceo@victim.test')).toBe(
      '550 5.7.1 Sender domain is not a mail domain of this relay',
    );
    c.close();
  });
});

describe('swaks as the outsider', () => {
  test.each([
    ['relay', ['--local-interface', OUTSIDER]],
    ['submission', ['--local-interface', OUTSIDER]],
    ['submission', ['--local-interface', OUTSIDER, '--tls', '--tls-ca-path', '<ca>']],
    ['smtps', ['--local-interface', OUTSIDER, '--tlsc', '--tls-ca-path', '<ca>']],
  ] as const)('%s %j: refused', async (listener, extra) => {
    const r = await swaks([
      '--server',
      `127.0.0.1:${relay.ports[listener]}`,
      '--from',
      'spammer@victim.test',
      '--to',
      'victim@victim.test',
      ...extra.map((x) => (x === '<ca>' ? caFile : x)),
    ]);
    expect(r.code).not.toBe(0);
    expect(r.replies.some((x) => /^(554|530) 5\.7\.[01] /.test(x))).toBe(true);
    expect(r.replies.some((x) => x.startsWith('250 2.0.0 Ok: queued'))).toBe(false);
  });
});

test('after all of it, nothing was queued', async () => {
  expect(
    await relay.metric('mailfleet_relay_messages_received_total', { listener: 'relay' }),
  ).toBeUndefined();
  expect(
    await relay.metric('mailfleet_relay_messages_received_total', { listener: 'submission' }),
  ).toBeUndefined();
  expect(
    await relay.metric('mailfleet_relay_messages_received_total', { listener: 'smtps' }),
  ).toBeUndefined();
  expect(
    await relay.metric('mailfleet_relay_connections_total', { listener: 'relay', result: 'refused' }),
  ).toBeGreaterThanOrEqual(1);
});
