/**
 * DKIM: each domain signs with its own key and selector (rsa-sha256, ed25519-sha256); the signatures
 * are verified by an independent implementation (mailauth's verifier) against the public keys the test
 * DNS server publishes as TXT records. A message deferred at its first attempt carries the same
 * signature (kept in its delivery state) when it is finally delivered; a large message is signed too.
 */
import { generateKeyPairSync } from 'node:crypto';
import { promises as dnsPromises } from 'node:dns';
import fs from 'node:fs/promises';
import path from 'node:path';
import { dkimVerify } from 'mailauth';
import nodemailer from 'nodemailer';
import { a, mx, startDnsServer, txt, type TestDnsServer } from '../helpers/dns.js';
import { makeTempDir, relayConfig, startRelay, type RelayProcess } from '../helpers/relay.js';
import { startDownstream, type Downstream, type ReceivedMessage } from '../helpers/smtp-downstream.js';

jest.setTimeout(60_000);

let dns: TestDnsServer;
let relay: RelayProcess;
let downstream: Downstream;
let resolver: dnsPromises.Resolver;

/** TXT strings are at most 255 bytes: long records are split into several strings. */
const chunks = (s: string) => s.match(/.{1,250}/g)!;

beforeAll(async () => {
  const dir = await makeTempDir();
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const ed = generateKeyPairSync('ed25519');
  await fs.writeFile(path.join(dir, 'rsa.key'), rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }));
  await fs.writeFile(path.join(dir, 'ed.key'), ed.privateKey.export({ type: 'pkcs8', format: 'pem' }));
  const rsaPublic = rsa.publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
  // RFC 8463: an ed25519 p= is the raw 32-byte key (the last bytes of its SPKI form)
  const edPublic = ed.publicKey.export({ type: 'spki', format: 'der' }).subarray(-32).toString('base64');
  dns = await startDnsServer({
    records: [
      mx('x.test', 'mail.x.test'),
      a('mail.x.test', '127.0.0.1'),
      txt('mf2026._domainkey.example.com', chunks(`v=DKIM1; k=rsa; p=${rsaPublic}`)),
      txt('edsel._domainkey.ed.example', `v=DKIM1; k=ed25519; p=${edPublic}`),
    ],
  });
  resolver = new dnsPromises.Resolver();
  resolver.setServers([dns.server]);
  downstream = await startDownstream();
  relay = await startRelay({
    dir,
    config: relayConfig({
      dns: { servers: [dns.server], timeoutMs: 2000, tries: 1 },
      domains: [
        { name: 'example.com', allowedUsers: ['*'], dkim: { selector: 'mf2026', keyFile: 'rsa.key' } },
        {
          name: 'ed.example',
          allowedUsers: ['*'],
          dkim: { selector: 'edsel', algorithm: 'ed25519-sha256', keyFile: 'ed.key' },
        },
        { name: 'plain.example', allowedUsers: ['*'] },
      ],
      delivery: {
        route: { mode: 'smarthost', smarthost: { host: '127.0.0.1', port: downstream.port, tls: 'none' } },
        retry: { firstRetry: 1, maxBackoff: 1, maxLifetime: 3600 },
      },
    }),
  });
});

afterAll(async () => {
  await relay?.stop();
  await Promise.all([downstream?.stop(), dns?.stop()]);
});

let seq = 0;
async function send(
  from: string,
  body = 'Hello,\r\n\r\nsigned mail.\r\n',
): Promise<{ id: string; testId: string }> {
  const testId = `k${++seq}-${process.pid}`;
  const client = nodemailer.createTransport({ host: '127.0.0.1', port: relay.ports.relay, ignoreTLS: true });
  try {
    const info = await client.sendMail({
      envelope: { from, to: ['rcpt@x.test'] },
      raw:
        `From: Sender <${from}>\r\nTo: <rcpt@x.test>\r\nSubject: dkim ${testId}\r\n` +
        `Date: Tue, 24 Nov 2026 10:00:00 +0000\r\nMessage-ID: <${testId}@test>\r\nX-Test-Id: ${testId}\r\n\r\n${body}`,
    });
    return { id: /queued as (\S+)/.exec(info.response)![1]!, testId };
  } finally {
    client.close();
  }
}

async function arrived(testId: string): Promise<ReceivedMessage> {
  for (;;) {
    const m = downstream.messages.find((x) => x.testId === testId);
    if (m) return m;
    await downstream.waitForMessages(downstream.messages.length + 1, 20_000);
  }
}

async function verify(raw: Buffer) {
  const result = await dkimVerify(raw, {
    resolver: (name: string, rr: string) => resolver.resolve(name, rr) as never,
  });
  return result.results.map((r) => ({
    result: r.status.result,
    domain: r.signingDomain,
    selector: r.selector,
    algo: r.algo,
  }));
}

test('rsa-sha256 signature of example.com verifies against its published key', async () => {
  const { testId } = await send('app@example.com');
  const raw = await downstream.raw(await arrived(testId));
  expect(raw.toString().startsWith('DKIM-Signature: ')).toBe(true);
  expect(await verify(raw)).toEqual([
    { result: 'pass', domain: 'example.com', selector: 'mf2026', algo: 'rsa-sha256' },
  ]);
});

test('ed25519-sha256 signature of ed.example verifies against its published key', async () => {
  const { testId } = await send('app@ed.example');
  const raw = await downstream.raw(await arrived(testId));
  expect(await verify(raw)).toEqual([
    { result: 'pass', domain: 'ed.example', selector: 'edsel', algo: 'ed25519-sha256' },
  ]);
});

test('a domain without a key sends unsigned', async () => {
  const { testId } = await send('app@plain.example');
  const raw = await downstream.raw(await arrived(testId));
  expect(raw.toString()).not.toContain('DKIM-Signature');
});

test('signed once: a deferred message goes out later with the signature from its first attempt', async () => {
  await downstream.set({ data: '451 4.3.0 try again later' });
  let signature: string;
  let id: string;
  let testId: string;
  try {
    ({ id, testId } = await send('app@example.com'));
    await relay.waitForLog((l) => l.id === id && l.msg === 'message deferred');
    const state = JSON.parse(await fs.readFile(path.join(relay.spoolDir, 'state', id), 'utf8')) as {
      dkimSignature: string;
    };
    signature = state.dkimSignature;
    expect(signature).toMatch(/^DKIM-Signature: .*\r\n$/s);
  } finally {
    await downstream.set({});
  }
  await relay.waitForLog((l) => l.id === id && l.msg === 'message done');
  const raw = await downstream.raw(await arrived(testId));
  expect(raw.subarray(0, signature.length).toString()).toBe(signature);
  expect((await verify(raw))[0]!.result).toBe('pass');
});

test('a large message (8 MiB) is signed and verifies', async () => {
  const line = 'x'.repeat(998) + '\r\n';
  const { testId } = await send('app@example.com', line.repeat((8 * 1024 * 1024) / line.length));
  const raw = await downstream.raw(await arrived(testId));
  expect(raw.length).toBeGreaterThan(8_000_000);
  expect((await verify(raw))[0]!.result).toBe('pass');
});
