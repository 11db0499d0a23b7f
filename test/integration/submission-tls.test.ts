/**
 * Submission (STARTTLS) and smtps (implicit TLS) with real certificates generated in the test, AUTH
 * against a users file, sender policy per user, the failed-AUTH throttle, and the handoff identity.
 */
import path from 'node:path';
import tls from 'node:tls';
import { text } from 'node:stream/consumers';
import nodemailer from 'nodemailer';
import { Spool } from '../../relay/spool/spool.js';
import { a, mx, startDnsServer, type TestDnsServer } from '../helpers/dns.js';
import { relayConfig, startRelay, writeUsersFile, makeTempDir, type RelayProcess } from '../helpers/relay.js';
import { SmtpClient, authPlain } from '../helpers/smtp-client.js';
import { swaks } from '../helpers/swaks.js';
import { makeCa, makeCert, writeCert, type TestCa } from '../helpers/tls.js';
import fs from 'node:fs/promises';

jest.setTimeout(60_000);

let dns: TestDnsServer;
let relay: RelayProcess;
let ca: TestCa;
let caFile: string;

const USERS = { alice: 'alice-secret', bob: 'bob-secret', 'mailfleet-handoff': 'peer-secret' };

beforeAll(async () => {
  dns = await startDnsServer({ records: [mx('mx.test', 'mail.mx.test'), a('mail.mx.test', '127.0.0.1')] });
  const dir = await makeTempDir();
  ca = makeCa();
  caFile = path.join(dir, 'ca.pem');
  await fs.writeFile(caFile, ca.certPem);
  await writeCert(dir, makeCert(ca));
  await writeUsersFile(path.join(dir, 'users'), USERS);
  relay = await startRelay({
    dir,
    config: relayConfig({
      listeners: {
        submission: { address: '127.0.0.1', port: 0 },
        smtps: { address: '127.0.0.1', port: 0 },
      },
      tls: { certFile: 'cert.pem', keyFile: 'key.pem' },
      auth: {
        usersFile: 'users',
        throttle: { delayAfterFailures: 2, maxDelayMs: 200, lockoutAfterFailures: 5, lockout: 2, window: 60 },
      },
      domains: [
        { name: 'example.com', allowedUsers: ['alice'] },
        { name: 'other.example', allowedUsers: ['*'], allowedSenders: ['noreply@other.example'] },
      ],
      dns: { servers: [dns.server], timeoutMs: 2000, tries: 1 },
    }),
  });
});

afterAll(async () => {
  await relay?.stop();
  await dns?.stop();
});

const tlsOpts = () => ({ ca: ca.certPem, servername: 'localhost' });

async function submissionSession(user?: keyof typeof USERS): Promise<SmtpClient> {
  const c = await SmtpClient.connect(relay.ports.submission!);
  await c.command('EHLO client.test');
  await c.startTls(tlsOpts());
  await c.command('EHLO client.test');
  if (user) expect((await c.command(`AUTH PLAIN ${authPlain(user, USERS[user])}`)).code).toBe(235);
  return c;
}

describe('submission listener', () => {
  test('before STARTTLS: AUTH neither offered nor accepted, MAIL needs AUTH', async () => {
    const c = await SmtpClient.connect(relay.ports.submission!);
    const ehlo = await c.command('EHLO client.test');
    expect(ehlo.lines).toContain('STARTTLS');
    expect(ehlo.lines.some((l) => l.startsWith('AUTH'))).toBe(false);
    expect((await c.command(`AUTH PLAIN ${authPlain('alice', USERS.alice)}`)).raw).toBe(
      '530 5.7.0 Must issue a STARTTLS command first',
    );
    expect((await c.command('MAIL FROM:<alice@example.com>')).raw).toBe('530 5.7.0 Authentication required');
    c.close();
    expect(
      await relay.metric('mailfleet_relay_auth_attempts_total', {
        listener: 'submission',
        result: 'not_allowed',
      }),
    ).toBeGreaterThanOrEqual(1);
  });

  test('after STARTTLS: AUTH offered, TLS >= 1.2 with our certificate, PLAIN and LOGIN work', async () => {
    const c = await SmtpClient.connect(relay.ports.submission!);
    await c.command('EHLO client.test');
    await c.startTls(tlsOpts());
    expect(c.tlsSocket!.getProtocol()).toMatch(/^TLSv1\.[23]$/);
    expect(c.tlsSocket!.getPeerX509Certificate()!.subject).toBe('CN=localhost');
    const ehlo = await c.command('EHLO client.test');
    expect(ehlo.lines).toContain('AUTH PLAIN LOGIN');
    expect(ehlo.lines).not.toContain('STARTTLS');
    expect((await c.command('AUTH LOGIN')).code).toBe(334);
    expect((await c.command(Buffer.from('alice').toString('base64'))).code).toBe(334);
    expect((await c.command(Buffer.from(USERS.alice).toString('base64'))).raw).toBe(
      '235 2.7.0 Authentication successful',
    );
    expect((await c.command('MAIL FROM:<alice@example.com>')).raw).toBe('250 2.1.0 Accepted');
    c.close();
  });

  test('a client limited to TLS 1.1 cannot connect', async () => {
    const c = await SmtpClient.connect(relay.ports.submission!);
    await c.command('EHLO client.test');
    await expect(c.startTls({ ...tlsOpts(), minVersion: 'TLSv1', maxVersion: 'TLSv1.1' })).rejects.toThrow();
    c.close();
  });

  test('nodemailer with STARTTLS and AUTH: queued, with an ESMTPSA trace header', async () => {
    const transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port: relay.ports.submission,
      secure: false,
      requireTLS: true,
      tls: tlsOpts(),
      auth: { user: 'alice', pass: USERS.alice },
    });
    const info = await transport.sendMail({
      from: 'alice@example.com',
      to: 'r@mx.test',
      subject: 's',
      text: 'b',
    });
    expect(info.response).toMatch(/^250 2\.0\.0 Ok: queued as [0-9A-Z]+$/);
    const log = await relay.waitForLog((l) => l.msg === 'message queued' && l.user === 'alice');
    expect(log).toMatchObject({ listener: 'submission', from: 'alice@example.com', recipients: 1 });
    expect((await relay.admin('/metrics')).body).toMatch(
      /mailfleet_relay_tls_sessions_total\{listener="submission",version="TLSv1\.3"\} \d+/,
    );
  });

  test('sender policy per user: 550 5.7.1 for a domain the user may not use, patterns enforced', async () => {
    const bob = await submissionSession('bob');
    expect((await bob.command('MAIL FROM:<bob@example.com>')).raw).toBe(
      '550 5.7.1 Sender address not allowed for this user',
    );
    expect((await bob.command('MAIL FROM:<bob@other.example>')).raw).toBe(
      '550 5.7.1 Sender address not allowed for this user',
    );
    expect((await bob.command('MAIL FROM:<noreply@other.example>')).code).toBe(250);
    bob.close();
    expect(
      await relay.metric('mailfleet_relay_messages_rejected_total', {
        listener: 'submission',
        reason: 'sender_not_allowed',
      }),
    ).toBeGreaterThanOrEqual(2);
  });

  test('handoff identity: the envelope is kept (null sender, any domain), no fix-ups, size still applies', async () => {
    const c = await submissionSession('mailfleet-handoff');
    expect((await c.command('MAIL FROM:<>')).code).toBe(250);
    expect((await c.command('RCPT TO:<someone@no-such-domain.test>')).code).toBe(250);
    expect((await c.command('DATA')).code).toBe(354);
    const r = await c.command('Subject: handed over\r\n\r\nqueued elsewhere first\r\n.');
    expect(r.code).toBe(250);
    const id = r.raw.split(' ').pop()!;
    const log = await relay.waitForLog((l) => l.msg === 'message queued' && l.id === id);
    expect(log).toMatchObject({ from: '', handoff: true, user: 'mailfleet-handoff' });
    c.close();
  });
});

describe('smtps listener (implicit TLS)', () => {
  test('nodemailer secure:true with AUTH PLAIN', async () => {
    const transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port: relay.ports.smtps,
      secure: true,
      tls: tlsOpts(),
      auth: { user: 'alice', pass: USERS.alice, method: 'PLAIN' },
    });
    const info = await transport.sendMail({
      from: 'alice@example.com',
      to: 'r@mx.test',
      subject: 's',
      text: 'b',
    });
    expect(info.response).toMatch(/^250 2\.0\.0 Ok: queued as [0-9A-Z]+$/);
  });

  test('AUTH is offered at once; MAIL without it is refused', async () => {
    const c = await SmtpClient.connect(relay.ports.smtps!, { tls: tlsOpts() });
    const ehlo = await c.command('EHLO client.test');
    expect(ehlo.lines).toContain('AUTH PLAIN LOGIN');
    expect((await c.command('MAIL FROM:<alice@example.com>')).raw).toBe('530 5.7.0 Authentication required');
    c.close();
  });

  test('a plaintext client gets no SMTP session', async () => {
    await expect(SmtpClient.connect(relay.ports.smtps!, { timeoutMs: 500 })).rejects.toThrow(/no SMTP reply/);
  });
});

describe('failed AUTH throttle (per client address)', () => {
  // Runs from 127.0.0.9 so the lockout does not touch the other tests' 127.0.0.1.
  async function attempt(password: string) {
    const c = await SmtpClient.connect(relay.ports.smtps!, { tls: tlsOpts(), localAddress: '127.0.0.9' });
    await c.command('EHLO attacker.test');
    const started = Date.now();
    const r = await c.command(`AUTH PLAIN ${authPlain('alice', password)}`);
    c.close();
    return { r, ms: Date.now() - started };
  }

  test('535 5.7.8, then delayed, then 454 4.7.0 locked out even with the right password', async () => {
    const results = [];
    for (let i = 0; i < 5; i++) results.push(await attempt('wrong'));
    expect(results.map((x) => x.r.raw)).toEqual([
      '535 5.7.8 Authentication credentials invalid',
      '535 5.7.8 Authentication credentials invalid',
      '535 5.7.8 Authentication credentials invalid',
      '535 5.7.8 Authentication credentials invalid',
      '454 4.7.0 Too many failed authentication attempts, try again later',
    ]);
    expect(results[2]!.ms).toBeGreaterThanOrEqual(150); // third failure: delayed (capped at 200 ms)
    expect((await attempt(USERS.alice)).r.raw).toBe(
      '454 4.7.0 Too many failed authentication attempts, try again later',
    );
    await new Promise((r) => setTimeout(r, 2100));
    expect((await attempt(USERS.alice)).r.raw).toBe('235 2.7.0 Authentication successful');
    const metric = (result: string) =>
      relay.metric('mailfleet_relay_auth_attempts_total', { listener: 'smtps', mechanism: 'PLAIN', result });
    expect(await metric('failure')).toBe(2);
    expect(await metric('throttled')).toBe(2);
    expect(await metric('locked_out')).toBe(2);
    // Passwords never reach the log.
    const logText = relay.logs.map((l) => JSON.stringify(l)).join('\n');
    for (const secret of [...Object.values(USERS), 'wrong']) expect(logText).not.toContain(secret);
  });
});

describe('spool contents of authenticated submissions', () => {
  test('envelope carries the AUTH user; Received says ESMTPSA over TLS', async () => {
    const transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port: relay.ports.submission,
      requireTLS: true,
      tls: tlsOpts(),
      auth: { user: 'alice', pass: USERS.alice },
    });
    const info = await transport.sendMail({
      from: 'alice@example.com',
      to: 'x@mx.test',
      subject: 'x',
      text: 'x',
    });
    const id = info.response.split(' ').pop()!;
    await relay.stop();
    const spool = await Spool.open({ dir: relay.spoolDir });
    try {
      expect(spool.get(id)!.envelope).toMatchObject({ authUser: 'alice', listener: 'submission' });
      const body = await text(spool.readBody(id));
      expect(body).toMatch(
        /^Received: from \S+ \(\[127\.0\.0\.1\]\)\r\n\t\(using TLSv1\.3 with cipher \S+\)\r\n\tby relay\.test \(mailfleet\) with ESMTPSA id /,
      );
      const handoff = [...spool.entries()].find((e) => e.envelope.authUser === 'mailfleet-handoff')!;
      const handedOver = await text(spool.readBody(handoff.id));
      expect(handedOver).toMatch(/^Received: /);
      expect(handedOver).not.toMatch(/^(Date|Message-ID):/im);
    } finally {
      await spool.close();
    }
  });
});

describe('swaks: STARTTLS + AUTH, and AUTH without TLS', () => {
  let relay2: RelayProcess;
  beforeAll(async () => {
    relay2 = await startRelay({
      dir: relay.dir,
      config: (await import('yaml')).parse(await fs.readFile(relay.configFile, 'utf8')),
    });
  });
  afterAll(async () => relay2?.stop());
  /** alice's credentials and a message from her; the AUTH mechanism comes before. */
  const asAlice = () => [
    '--auth-user',
    'alice',
    '--auth-password',
    USERS.alice,
    '--from',
    'alice@example.com',
    '--to',
    'x@mx.test',
  ];

  test('swaks --tls --auth LOGIN is queued', async () => {
    const r = await swaks([
      '--server',
      `127.0.0.1:${relay2.ports.submission}`,
      '--tls',
      '--tls-ca-path',
      caFile,
      '--tls-verify',
      '--auth',
      'LOGIN',
      ...asAlice(),
    ]);
    expect(r.code).toBe(0);
    expect(r.replies).toContainEqual(expect.stringMatching(/^250 2\.0\.0 Ok: queued as /));
  });

  test('swaks --auth without --tls fails: AUTH is not offered in the clear (exit 28)', async () => {
    const r = await swaks([
      '--server',
      `127.0.0.1:${relay2.ports.submission}`,
      '--auth',
      'PLAIN',
      ...asAlice(),
    ]);
    expect(r.code).toBe(28);
  });

  test('swaks to smtps (--tlsc)', async () => {
    const r = await swaks([
      '--server',
      `127.0.0.1:${relay2.ports.smtps}`,
      '--tlsc',
      '--tls-ca-path',
      caFile,
      '--auth',
      'PLAIN',
      ...asAlice(),
    ]);
    expect(r.code).toBe(0);
  });
});

test('TLS protocol floor is configurable (tls.minVersion TLSv1.3)', async () => {
  const dir = await makeTempDir();
  await writeCert(dir, makeCert(ca));
  await writeUsersFile(path.join(dir, 'users'), { alice: USERS.alice });
  const strict = await startRelay({
    dir,
    config: relayConfig({
      listeners: { smtps: { address: '127.0.0.1', port: 0 } },
      tls: { certFile: 'cert.pem', keyFile: 'key.pem', minVersion: 'TLSv1.3' },
      auth: { usersFile: 'users' },
    }),
  });
  try {
    await expect(
      SmtpClient.connect(strict.ports.smtps!, { tls: { ...tlsOpts(), maxVersion: 'TLSv1.2' } }),
    ).rejects.toThrow();
    const ok = await SmtpClient.connect(strict.ports.smtps!, { tls: tlsOpts() });
    expect((ok.tlsSocket as tls.TLSSocket).getProtocol()).toBe('TLSv1.3');
    ok.close();
  } finally {
    await strict.stop();
  }
});
