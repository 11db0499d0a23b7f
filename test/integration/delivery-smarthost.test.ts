/**
 * Smarthost routes with real TLS and AUTH: STARTTLS required with the certificate verified against
 * caFile and credentials read from files (re-read at each attempt), implicit TLS and opportunistic
 * TLS as per-domain routes chosen by the sender's domain. Refused credentials and an untrusted
 * certificate defer; they never bounce.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import nodemailer from 'nodemailer';
import { a, mx, startDnsServer, type TestDnsServer } from '../helpers/dns.js';
import { makeTempDir, relayConfig, startRelay, type RelayProcess } from '../helpers/relay.js';
import { startDownstream, type Downstream, type ReceivedMessage } from '../helpers/smtp-downstream.js';
import { makeCa, makeCert } from '../helpers/tls.js';

jest.setTimeout(60_000);

let dns: TestDnsServer;
let relay: RelayProcess;
let starttls: Downstream; // STARTTLS + AUTH, certificate from our CA
let implicit: Downstream; // implicit TLS, certificate from our CA
let untrusted: Downstream; // STARTTLS, certificate from a CA the relay does not know
let dir: string;

let seq = 0;
async function send(from: string, to = 'rcpt@x.test'): Promise<{ id: string; testId: string }> {
  const testId = `s${++seq}-${process.pid}`;
  const client = nodemailer.createTransport({ host: '127.0.0.1', port: relay.ports.relay, ignoreTLS: true });
  try {
    const info = await client.sendMail({
      envelope: { from, to: [to] },
      raw: `From: <${from}>\r\nTo: <${to}>\r\nSubject: ${testId}\r\nX-Test-Id: ${testId}\r\n\r\nhi\r\n`,
    });
    return { id: /queued as (\S+)/.exec(info.response)![1]!, testId };
  } finally {
    client.close();
  }
}

async function arrived(d: Downstream, testId: string): Promise<ReceivedMessage> {
  for (let i = 0; i < 1000; i++) {
    const m = d.messages.find((x) => x.testId === testId);
    if (m) return m;
    await d.waitForMessages(d.messages.length + 1, 20_000);
  }
  throw new Error(`${testId} never arrived`);
}

const logFor = (id: string, msg: string) => relay.waitForLog((l) => l.id === id && l.msg === msg, 20_000);

beforeAll(async () => {
  dir = await makeTempDir();
  const ca = makeCa();
  const server = makeCert(ca, { names: ['localhost', '127.0.0.1'] });
  const stranger = makeCert(makeCa('some other CA'), { names: ['localhost', '127.0.0.1'] });
  starttls = await startDownstream({
    tls: { key: server.keyPem, cert: server.certPem },
    auth: { user: 'relay-account', pass: 'smarthost-secret' },
  });
  implicit = await startDownstream({ secure: true, tls: { key: server.keyPem, cert: server.certPem } });
  untrusted = await startDownstream({ tls: { key: stranger.keyPem, cert: stranger.certPem } });
  await fs.writeFile(path.join(dir, 'ca.pem'), ca.certPem);
  await fs.writeFile(path.join(dir, 'smarthost-user'), 'relay-account\n');
  await fs.writeFile(path.join(dir, 'smarthost-pass'), 'smarthost-secret\n');
  dns = await startDnsServer({ records: [mx('x.test', 'mail.x.test'), a('mail.x.test', '127.0.0.1')] });
  const smarthost = (port: number, tls: string, extra: Record<string, unknown> = {}) => ({
    mode: 'smarthost',
    smarthost: { host: 'localhost', port, tls, ...extra },
  });
  relay = await startRelay({
    dir,
    config: relayConfig({
      dns: { servers: [dns.server], timeoutMs: 2000, tries: 1 },
      domains: [
        { name: 'example.com', allowedUsers: ['*'] },
        {
          name: 'implicit.example',
          allowedUsers: ['*'],
          route: smarthost(implicit.port, 'implicit', { caFile: 'ca.pem' }),
        },
        {
          name: 'opportunistic.example',
          allowedUsers: ['*'],
          route: smarthost(untrusted.port, 'opportunistic'),
        },
        {
          name: 'strict.example',
          allowedUsers: ['*'],
          route: smarthost(untrusted.port, 'starttls', { caFile: 'ca.pem' }),
        },
      ],
      delivery: {
        route: smarthost(starttls.port, 'starttls', {
          caFile: 'ca.pem',
          auth: { usernameFile: 'smarthost-user', passwordFile: 'smarthost-pass' },
        }),
        connectTimeoutMs: 2000,
        commandTimeoutMs: 3000,
        retry: { firstRetry: 1, maxBackoff: 1, maxLifetime: 3600 },
      },
    }),
  });
});

afterAll(async () => {
  await relay?.stop();
  await Promise.all([starttls?.stop(), implicit?.stop(), untrusted?.stop(), dns?.stop()]);
});

test('STARTTLS required, certificate verified with caFile, AUTH with the credentials from files', async () => {
  const { id, testId } = await send('app@example.com');
  const m = await arrived(starttls, testId);
  expect(m).toMatchObject({
    secure: true,
    user: 'relay-account',
    from: 'app@example.com',
    to: ['rcpt@x.test'],
  });
  await logFor(id, 'message done');
});

test('refused credentials defer (never bounce); fixed credentials are used at the next attempt', async () => {
  await fs.writeFile(path.join(dir, 'smarthost-pass'), 'wrong\n');
  await starttls.set({}, { dropConnections: true }); // no pooled, already authenticated connection
  try {
    const { id, testId } = await send('app@example.com');
    const deferred = await logFor(id, 'message deferred');
    expect(String(deferred.lastError)).toContain('535 5.7.8');
    await fs.writeFile(path.join(dir, 'smarthost-pass'), 'smarthost-secret\n');
    expect((await arrived(starttls, testId)).user).toBe('relay-account');
    await logFor(id, 'message done');
    expect(starttls.auths.some((x) => !x.ok)).toBe(true);
    expect(await relay.metric('mailfleet_relay_bounces_total', { kind: 'failed' })).toBeUndefined();
  } finally {
    await fs.writeFile(path.join(dir, 'smarthost-pass'), 'smarthost-secret\n');
  }
});

test('the sender domain route wins: implicit TLS for implicit.example', async () => {
  const { testId } = await send('app@implicit.example');
  expect((await arrived(implicit, testId)).secure).toBe(true);
});

test('opportunistic TLS encrypts without verifying; starttls refuses a certificate it cannot verify', async () => {
  const opp = await send('app@opportunistic.example');
  expect((await arrived(untrusted, opp.testId)).secure).toBe(true);

  const strict = await send('app@strict.example');
  const deferred = await logFor(strict.id, 'message deferred');
  expect(String(deferred.lastError)).toMatch(/certificate|self.signed|verify/i);
  expect(untrusted.messages.find((m) => m.testId === strict.testId)).toBeUndefined();
});
