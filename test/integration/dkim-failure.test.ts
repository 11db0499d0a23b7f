/**
 * A DKIM key that does not work (here: a file that is not a private key), per domain's choice:
 * - defer.example (dkim.onFailure defer, the default): the message is held, not sent unsigned; the
 *   failure is counted; once the key file holds a real key, the retry sends it signed, and the
 *   signature verifies against the published key;
 * - unsigned.example (send-unsigned): the message leaves without a signature, and that is counted.
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
let dir: string;
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const NOT_A_KEY = '-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n';

beforeAll(async () => {
  dir = await makeTempDir();
  await fs.writeFile(path.join(dir, 'defer.key'), NOT_A_KEY);
  await fs.writeFile(path.join(dir, 'unsigned.key'), NOT_A_KEY);
  const publicKey = rsa.publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
  dns = await startDnsServer({
    records: [
      mx('x.test', 'mail.x.test'),
      a('mail.x.test', '127.0.0.1'),
      // TXT strings are at most 255 bytes: the record is split into several
      txt('sel._domainkey.defer.example', `v=DKIM1; k=rsa; p=${publicKey}`.match(/.{1,250}/g)!),
    ],
  });
  downstream = await startDownstream();
  relay = await startRelay({
    dir,
    config: relayConfig({
      dns: { servers: [dns.server], timeoutMs: 2000, tries: 1 },
      domains: [
        { name: 'defer.example', allowedUsers: ['*'], dkim: { selector: 'sel', keyFile: 'defer.key' } },
        {
          name: 'unsigned.example',
          allowedUsers: ['*'],
          dkim: { selector: 'sel', keyFile: 'unsigned.key', onFailure: 'send-unsigned' },
        },
      ],
      delivery: {
        route: { mode: 'smarthost', smarthost: { host: '127.0.0.1', port: downstream.port, tls: 'none' } },
        retry: { firstRetry: 3600, maxBackoff: 3600, maxLifetime: 86400 },
      },
    }),
  });
});

afterAll(async () => {
  await relay?.stop();
  await Promise.all([downstream?.stop(), dns?.stop()]);
});

let seq = 0;
async function send(from: string): Promise<{ id: string; testId: string }> {
  const testId = `dk${++seq}-${process.pid}`;
  const client = nodemailer.createTransport({ host: '127.0.0.1', port: relay.ports.relay, ignoreTLS: true });
  try {
    const info = await client.sendMail({
      envelope: { from, to: ['rcpt@x.test'] },
      raw:
        `From: <${from}>\r\nTo: <rcpt@x.test>\r\nSubject: ${testId}\r\nDate: Tue, 01 Dec 2026 10:00:00 +0000\r\n` +
        `Message-ID: <${testId}@test>\r\nX-Test-Id: ${testId}\r\n\r\nhello\r\n`,
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

test('defer (the default): not sent unsigned; held, counted, and sent signed once the key is fixed', async () => {
  const { id, testId } = await send('app@defer.example');
  const deferred = await relay.waitForLog((l) => l.id === id && l.msg === 'message deferred');
  expect(String(deferred.lastError)).toMatch(
    /^not sent unsigned \(dkim\.onFailure: defer\): DKIM signing failed/,
  );
  expect(await relay.metric('mailfleet_relay_dkim_signing_failures_total', { action: 'deferred' })).toBe(1);
  expect(
    await relay.metric('mailfleet_relay_delivery_attempts_total', { result: 'delivered' }),
  ).toBeUndefined();
  const state = JSON.parse(await fs.readFile(path.join(relay.spoolDir, 'state', id), 'utf8')) as {
    dkimSignature?: string;
    recipients: Record<string, { statusCode: string }>;
  };
  expect(state.dkimSignature).toBeUndefined(); // nothing kept: the next attempt signs again
  expect(state.recipients['rcpt@x.test']!.statusCode).toBe('4.7.5');

  await fs.writeFile(path.join(dir, 'defer.key'), rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }));
  const retry = await relay.admin('/queue/retry', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ id }),
  });
  expect(retry.status).toBe(200);
  await relay.waitForLog((l) => l.id === id && l.msg === 'message done');
  const raw = await downstream.raw(await arrived(testId));
  expect(raw.toString().startsWith('DKIM-Signature: ')).toBe(true);
  const resolver = new dnsPromises.Resolver();
  resolver.setServers([dns.server]);
  const verified = await dkimVerify(raw, {
    resolver: (name: string, rr: string) => resolver.resolve(name, rr) as never,
  });
  expect(verified.results.map((r) => [r.status.result, r.signingDomain])).toEqual([
    ['pass', 'defer.example'],
  ]);
});

test('send-unsigned: the message leaves without a signature, and that is counted', async () => {
  const { id, testId } = await send('app@unsigned.example');
  await relay.waitForLog((l) => l.id === id && l.msg === 'message done');
  const raw = await downstream.raw(await arrived(testId));
  expect(raw.toString()).not.toContain('DKIM-Signature');
  expect(await relay.metric('mailfleet_relay_dkim_signing_failures_total', { action: 'sent_unsigned' })).toBe(
    1,
  );
  expect(relay.logs.some((l) => l.id === id && l.msg === 'sending without a DKIM signature')).toBe(true);
});
