/**
 * The relay listener end to end: real clients (nodemailer, swaks, a raw socket) against the relay as a
 * child process, a real DNS server process for recipient domains, and the spool read back after stop.
 */
import nodemailer from 'nodemailer';
import { text } from 'node:stream/consumers';
import { Spool } from '../../relay/spool/spool.js';
import { a, aaaa, mx, nullMx, startDnsServer, txt, type TestDnsServer } from '../helpers/dns.js';
import { relayConfig, startRelay, type RelayProcess } from '../helpers/relay.js';
import { SmtpClient } from '../helpers/smtp-client.js';
import { lastReply, swaks } from '../helpers/swaks.js';

jest.setTimeout(60_000);

let dns: TestDnsServer;
let relay: RelayProcess;

beforeAll(async () => {
  dns = await startDnsServer({
    records: [
      mx('mx.test', 'mail.mx.test'),
      a('mail.mx.test', '127.0.0.1'),
      a('a-only.test', '192.0.2.10'),
      aaaa('aaaa-only.test', '2001:db8::10'),
      nullMx('nullmx.test'),
      txt('txt-only.test', 'v=spf1 -all'),
    ],
    servfail: ['servfail.test'],
    timeout: ['timeout.test'],
  });
  relay = await startRelay({
    config: relayConfig({ dns: { servers: [dns.server], timeoutMs: 2000, tries: 1 } }),
  });
});

// The spool test stops the relay to open its spool; the tests after it get a fresh one on the same dir.
let restart = false;
beforeEach(async () => {
  if (!restart) return;
  restart = false;
  relay = await startRelay({
    dir: relay.dir,
    config: relayConfig({ dns: { servers: [dns.server], timeoutMs: 2000, tries: 1 } }),
  });
});

afterAll(async () => {
  await relay?.stop();
  await dns?.stop();
});

const transport = () =>
  nodemailer.createTransport({ host: '127.0.0.1', port: relay.ports.relay, secure: false, ignoreTLS: true });

const queuedId = (response: string) => /^250 2\.0\.0 Ok: queued as ([0-9A-Z]+)$/.exec(response)?.[1];

describe('relay listener', () => {
  test('greeting and EHLO: the ESMTP extensions, no AUTH, no STARTTLS without TLS', async () => {
    const c = await SmtpClient.connect(relay.ports.relay!);
    expect(c.greeting.raw).toBe('220 relay.test ESMTP mailfleet');
    const ehlo = await c.command('EHLO client.test');
    expect(ehlo.code).toBe(250);
    expect(ehlo.lines.slice(1)).toEqual([
      'PIPELINING',
      '8BITMIME',
      'SMTPUTF8',
      'ENHANCEDSTATUSCODES',
      'SIZE 26214400',
    ]);
    expect((await c.command('AUTH PLAIN')).raw).toBe('500 5.5.2 Error: command not recognized');
    expect((await c.command('STARTTLS')).code).toBe(500);
    expect((await c.command('QUIT')).raw).toBe('221 2.0.0 Bye');
    await c.closed;
  });

  test('nodemailer: 250 2.0.0 queued, and the spool holds envelope, trace and fix-up headers', async () => {
    const info = await transport().sendMail({
      envelope: { from: 'app@example.com', to: ['rcpt@mx.test'] },
      raw: 'From: app@example.com\r\nTo: rcpt@mx.test\r\nSubject: hello\r\n\r\nHello, world.\r\n',
    });
    const id = queuedId(info.response);
    expect(id).toBeDefined();
    const info2 = await transport().sendMail({
      envelope: { from: 'App@Example.com', to: ['x@mx.test', 'y@a-only.test', 'z@aaaa-only.test'] },
      raw: 'Message-ID: <kept@client.test>\r\nDate: Mon, 2 Mar 2026 10:00:00 +0000\r\nSubject: kept\r\n\r\nbody\r\n.leading dot\r\n',
    });
    const id2 = queuedId(info2.response)!;
    await relay.waitForLog((l) => l.msg === 'message queued' && l.id === id2);

    await relay.stop();
    const spool = await Spool.open({ dir: relay.spoolDir });
    restart = true;
    try {
      const entry = spool.get(id!)!;
      expect(entry.envelope).toMatchObject({
        mailFrom: 'app@example.com',
        recipients: ['rcpt@mx.test'],
        listener: 'relay',
        client: { address: '127.0.0.1' },
        bodyType: '7BIT',
      });
      const body = await text(spool.readBody(id!));
      expect(body).toMatch(
        /^Received: from \S+ \(\[127\.0\.0\.1\]\)\r\n\tby relay\.test \(mailfleet\) with ESMTP id \S+\r\n\tfor <rcpt@mx\.test>; \w{3}, \d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d \+0000\r\n/,
      );
      expect(body).toMatch(/\r\nDate: \w{3}, \d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d \+0000\r\n/);
      expect(body).toMatch(/\r\nMessage-ID: <[0-9a-z.]+@relay\.test>\r\n/);
      expect(
        body.endsWith('From: app@example.com\r\nTo: rcpt@mx.test\r\nSubject: hello\r\n\r\nHello, world.\r\n'),
      ).toBe(true);

      const second = await text(spool.readBody(id2));
      expect(spool.get(id2)!.envelope.recipients).toEqual(['x@mx.test', 'y@a-only.test', 'z@aaaa-only.test']);
      expect(second).not.toMatch(/\tfor </); // several recipients: no "for" clause
      expect(second.match(/^Message-ID:/gim)).toHaveLength(1);
      expect(second.match(/^Date:/gim)).toHaveLength(1);
      expect(second.endsWith('Subject: kept\r\n\r\nbody\r\n.leading dot\r\n')).toBe(true);
    } finally {
      await spool.close();
    }
  });

  test.each([
    ['rcpt@mx.test', '250 2.1.5 Accepted'],
    ['rcpt@a-only.test', '250 2.1.5 Accepted'],
    ['rcpt@aaaa-only.test', '250 2.1.5 Accepted'],
    ['rcpt@nullmx.test', '556 5.1.10 Recipient domain does not accept mail (null MX)'],
    ['rcpt@missing.test', '550 5.1.2 Recipient domain does not exist'],
    ['rcpt@txt-only.test', '550 5.1.2 Recipient domain has no MX, A or AAAA record'],
    ['rcpt@servfail.test', '451 4.4.3 Temporary DNS failure checking the recipient domain, try again later'],
    ['rcpt@timeout.test', '451 4.4.3 Temporary DNS failure checking the recipient domain, try again later'],
    ['postmaster', '501 5.1.3 Bad recipient address syntax'],
    ['rcpt@[127.0.0.1]', '501 5.1.3 Bad recipient address syntax'],
  ])('RCPT TO:<%s> → %s', async (rcpt, expected) => {
    const c = await SmtpClient.connect(relay.ports.relay!);
    await c.command('EHLO client.test');
    expect((await c.command('MAIL FROM:<app@example.com>')).code).toBe(250);
    expect((await c.command(`RCPT TO:<${rcpt}>`)).raw).toBe(expected);
    c.close();
  });

  test('DNS answers are cached: a second check of the same domain asks nothing', async () => {
    const before = dns.queries().filter((q) => q.name === 'cached.mx.test').length;
    await dns.setZone({
      records: [
        mx('mx.test', 'mail.mx.test'),
        a('mail.mx.test', '127.0.0.1'),
        mx('cached.mx.test', 'mail.mx.test'),
      ],
    });
    for (let i = 0; i < 3; i++) {
      const c = await SmtpClient.connect(relay.ports.relay!);
      await c.command('EHLO client.test');
      await c.command('MAIL FROM:<app@example.com>');
      expect((await c.command('RCPT TO:<r@cached.mx.test>')).code).toBe(250);
      c.close();
    }
    expect(dns.queries().filter((q) => q.name === 'cached.mx.test').length - before).toBe(1);
    expect(
      await relay.metric('mailfleet_relay_dns_queries_total', { type: 'MX', result: 'cached' }),
    ).toBeGreaterThanOrEqual(2);
  });

  test('PIPELINING: a whole transaction in one write', async () => {
    const c = await SmtpClient.connect(relay.ports.relay!);
    await c.command('EHLO client.test');
    c.write('MAIL FROM:<app@example.com>\r\nRCPT TO:<a@mx.test>\r\nRCPT TO:<b@nullmx.test>\r\nDATA\r\n');
    expect((await c.reply()).code).toBe(250);
    expect((await c.reply()).code).toBe(250);
    expect((await c.reply()).code).toBe(556);
    expect((await c.reply()).code).toBe(354);
    c.write('Subject: pipelined\r\n\r\nhi\r\n.\r\nQUIT\r\n');
    expect((await c.reply()).raw).toMatch(/^250 2\.0\.0 Ok: queued as [0-9A-Z]+$/);
    expect((await c.reply()).code).toBe(221);
  });

  test('SMTPUTF8 and 8BITMIME are carried into the envelope', async () => {
    const c = await SmtpClient.connect(relay.ports.relay!);
    await c.command('EHLO client.test');
    expect((await c.command('MAIL FROM:<jörg@example.com> SMTPUTF8 BODY=8BITMIME')).code).toBe(250);
    expect((await c.command('RCPT TO:<zoë@mx.test>')).code).toBe(250);
    expect((await c.command('DATA')).code).toBe(354);
    const r = await c.command('Subject: caf\u00e9\r\n\r\n\u00fcml\u00e4uts\r\n.');
    expect(r.code).toBe(250);
    const id = r.raw.split(' ').pop();
    const log = await relay.waitForLog((l) => l.msg === 'message queued' && l.id === id);
    expect(log.from).toBe('jörg@example.com');
    expect((await c.command('MAIL FROM:<jörg@example.com>')).raw).toBe(
      '553 5.6.7 Non-ASCII sender address requires SMTPUTF8',
    );
    c.close();
  });

  test('VRFY and EXPN disclose nothing', async () => {
    const c = await SmtpClient.connect(relay.ports.relay!);
    await c.command('EHLO client.test');
    expect((await c.command('VRFY postmaster')).raw).toBe(
      '252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery',
    );
    expect((await c.command('VRFY')).raw).toBe('501 5.5.4 Syntax: VRFY address');
    expect((await c.command('EXPN staff')).raw).toBe('502 5.5.1 EXPN not available');
    c.close();
  });

  test('health, readiness and metrics on the admin port', async () => {
    expect(await relay.admin('/healthz')).toEqual({ status: 200, body: 'ok\n' });
    expect(await relay.admin('/readyz')).toEqual({ status: 200, body: '{"ready":true,"reasons":[]}\n' });
    expect((await relay.admin('/nope')).status).toBe(404);
    expect((await relay.admin('/metrics', { method: 'POST' })).status).toBe(405);
    expect(await relay.metric('mailfleet_relay_ready')).toBe(1);
    expect(
      await relay.metric('mailfleet_relay_messages_received_total', { listener: 'relay' }),
    ).toBeGreaterThanOrEqual(1);
    expect(
      await relay.metric('mailfleet_relay_connections_total', { listener: 'relay', result: 'accepted' }),
    ).toBeGreaterThan(1);
  });
});

describe('swaks against the relay listener', () => {
  test('a message is accepted and queued', async () => {
    const r = await swaks([
      '--server',
      `127.0.0.1:${relay.ports.relay}`,
      '--from',
      'app@example.com',
      '--to',
      'someone@mx.test',
      '--header',
      'Subject: from swaks',
    ]);
    expect(r.code).toBe(0);
    expect(lastReply(r)).toBe('221 2.0.0 Bye');
    expect(r.replies).toContainEqual(expect.stringMatching(/^250 2\.0\.0 Ok: queued as [0-9A-Z]+$/));
  });

  test('an unknown sender domain is refused at MAIL FROM (swaks exit 23)', async () => {
    const r = await swaks([
      '--server',
      `127.0.0.1:${relay.ports.relay}`,
      '--from',
      'app@not-ours.test',
      '--to',
      'someone@mx.test',
    ]);
    expect(r.code).toBe(23);
    expect(r.replies).toContain('550 5.7.1 Sender domain is not a mail domain of this relay');
  });
});
