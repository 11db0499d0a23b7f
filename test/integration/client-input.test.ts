/**
 * What the relay does with what a client sends, seen from both ends: real clients (nodemailer, a raw
 * socket) in front of the relay as a process, and behind it as smarthosts the test downstream server
 * (it keeps each message's raw bytes) and, for mail from sink.example, Postfix's smtp-sink (it keeps
 * every RCPT as given, where an smtp-server downstream would merge DUP@ and dup@ itself). The test DNS
 * server answers for the recipient domains.
 *
 *   - recipients that differ only in the case of the local part are two recipients downstream
 *   - bare CR and NUL are refused in the header section and the body alike; bare LF arrives as CRLF
 *     without creating a line the relay did not see
 *   - the eight end-of-data variants of SMTP smuggling are content: no smuggled transaction is run
 *   - the parameters the relay advertises keep working with a real client
 */
import fs from 'node:fs/promises';
import nodemailer from 'nodemailer';
import { Replies, formatReply } from '../../relay/policy/replies.js';
import { a, mx, startDnsServer, type TestDnsServer } from '../helpers/dns.js';
import { relayConfig, startRelay, type RelayProcess } from '../helpers/relay.js';
import { SmtpClient } from '../helpers/smtp-client.js';
import {
  startDownstream,
  startSmtpSink,
  type Downstream,
  type SmtpSink,
} from '../helpers/smtp-downstream.js';

jest.setTimeout(60_000);

let dns: TestDnsServer;
let sink: SmtpSink;
let smarthost: Downstream;
let relay: RelayProcess;

beforeAll(async () => {
  dns = await startDnsServer({ records: [mx('mx.test', 'mail.mx.test'), a('mail.mx.test', '127.0.0.1')] });
  sink = await startSmtpSink();
  smarthost = await startDownstream();
  const via = (port: number) => ({ mode: 'smarthost', smarthost: { host: '127.0.0.1', port, tls: 'none' } });
  relay = await startRelay({
    config: relayConfig({
      domains: [
        { name: 'example.com', allowedUsers: ['*'] },
        { name: 'sink.example', allowedUsers: ['*'], route: via(sink.port) },
      ],
      dns: { servers: [dns.server], timeoutMs: 2000, tries: 1 },
      delivery: { route: via(smarthost.port) },
    }),
  });
});

afterAll(async () => {
  await relay?.stop();
  await sink?.stop();
  await smarthost?.stop();
  await dns?.stop();
});

/** Raw bytes (latin1) and envelope of the message whose Subject is `subject` at the smarthost. */
async function downstream(subject: string, timeoutMs = 20_000): Promise<{ raw: string; to: string[] }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const m of smarthost.messages) {
      const raw = (await smarthost.raw(m)).toString('latin1');
      if (raw.includes(`\r\nSubject: ${subject}\r\n`)) return { raw, to: m.to };
    }
    if (Date.now() > deadline) throw new Error(`no message "${subject}" at the smarthost`);
    await smarthost
      .waitForMessages(smarthost.messages.length + 1, Math.max(1, deadline - Date.now()))
      .catch(() => undefined);
  }
}

/** The RCPT arguments smtp-sink recorded for the message whose Subject is `subject` (its dump has LF ends). */
async function sinkRecipients(subject: string): Promise<string[]> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    for (const f of await sink.files()) {
      const dump = await fs.readFile(f, 'utf8').catch(() => '');
      if (dump.includes(`\nSubject: ${subject}\n`))
        return [...dump.matchAll(/^X-Rcpt-Args: <([^>]*)>/gm)].map((m) => m[1]!);
    }
    if (Date.now() > deadline) throw new Error(`no message "${subject}" at smtp-sink`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function inData(): Promise<SmtpClient> {
  const c = await SmtpClient.connect(relay.ports.relay!);
  await c.command('EHLO client.test');
  expect((await c.command('MAIL FROM:<app@example.com>')).code).toBe(250);
  expect((await c.command('RCPT TO:<r@mx.test>')).code).toBe(250);
  expect((await c.command('DATA')).code).toBe(354);
  return c;
}

describe('recipients: only the domain is case-insensitive (RFC 5321 §2.4)', () => {
  test('nodemailer to DUP@, dup@ and dup@MX.TEST: two recipients arrive downstream', async () => {
    const transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port: relay.ports.relay,
      ignoreTLS: true,
    });
    const info = await transport.sendMail({
      envelope: { from: 'app@sink.example', to: ['DUP@mx.test', 'dup@mx.test', 'dup@MX.TEST'] },
      raw: 'Subject: dedupe\r\n\r\nthree RCPTs, two mailboxes\r\n',
    });
    transport.close();
    // nodemailer itself merges the two spellings of the domain; the local parts it keeps apart.
    expect(info.accepted).toEqual(['DUP@mx.test', 'dup@mx.test']);
    expect((await sinkRecipients('dedupe')).sort()).toEqual(['DUP@mx.test', 'dup@mx.test']);
  });

  test('a raw client repeating a recipient with the domain in another case: one recipient', async () => {
    const c = await SmtpClient.connect(relay.ports.relay!);
    await c.command('EHLO client.test');
    expect((await c.command('MAIL FROM:<app@sink.example>')).code).toBe(250);
    for (const rcpt of ['DUP@mx.test', 'dup@mx.test', 'dup@MX.TEST', 'DUP@Mx.Test'])
      expect((await c.command(`RCPT TO:<${rcpt}>`)).raw).toBe('250 2.1.5 Accepted');
    expect((await c.command('DATA')).code).toBe(354);
    expect((await c.command('Subject: dedupe-raw\r\n\r\nfour RCPTs, two mailboxes\r\n.')).code).toBe(250);
    c.close();
    expect((await sinkRecipients('dedupe-raw')).sort()).toEqual(['DUP@mx.test', 'dup@mx.test']);
  });
});

describe('bare CR and NUL: one rule for the header section and the body', () => {
  test.each([
    ['a bare CR in a header', 'X-A: a\rX-B: b\r\nSubject: cr-header\r\n\r\nbody\r\n', 'bareCr'],
    ['a bare CR in the body', 'Subject: cr-body\r\n\r\nline\rX-B: b\r\n', 'bareCr'],
    ['a NUL in a header', 'X-A: a\0b\r\nSubject: nul-header\r\n\r\nbody\r\n', 'nulByte'],
    ['a NUL in the body', 'Subject: nul-body\r\n\r\nbo\0dy\r\n', 'nulByte'],
  ] as const)(
    '%s: 554 5.6.0 after the final dot, nothing queued, the session goes on',
    async (_what, msg, reply) => {
      const c = await inData();
      c.write(msg);
      expect((await c.command('.')).raw).toBe(formatReply(Replies[reply]));
      expect((await c.command('NOOP')).raw).toBe('250 2.0.0 OK');
      c.close();
      await relay.waitForLog((l) => l.msg === 'message refused' && l.reason === 'bad_content');
    },
  );

  test('a bare LF arrives as CRLF: the header fields downstream are the ones the relay saw', async () => {
    const c = await inData();
    c.write('Subject: bare-lf\nX-A: a\nX-B: b\r\n\r\nunix\nline\r\n');
    expect((await c.command('.')).code).toBe(250);
    c.close();
    const { raw: dump } = await downstream('bare-lf');
    expect(dump).toContain('\r\nSubject: bare-lf\r\nX-A: a\r\nX-B: b\r\n\r\nunix\r\nline\r\n');
    expect(dump).not.toMatch(/\r(?!\n)|(?<!\r)\n/); // nothing but CRLF line ends
  });

  test('no message with a bare CR or NUL ever reached the smarthost', async () => {
    for (const m of smarthost.messages)
      expect((await smarthost.raw(m)).toString('latin1')).not.toMatch(/Subject: (cr|nul)-/);
  });
});

describe('SMTP smuggling: only <CRLF>.<CRLF> ends DATA', () => {
  const variants: [string, string, 'queued' | 'bareCr' | 'nulByte'][] = [
    ['<LF>.<LF>', '\n.\n', 'queued'],
    ['<LF>.<CRLF>', '\n.\r\n', 'queued'],
    ['<CRLF>.<LF>', '\r\n.\n', 'queued'],
    ['<CR>.<CR>', '\r.\r', 'bareCr'],
    ['<CR>.<CRLF>', '\r.\r\n', 'bareCr'],
    ['<CRLF>.<CR>', '\r\n.\r', 'bareCr'],
    ['<LF>.<CR>', '\n.\r', 'bareCr'],
    ['<CRLF><NUL>.<CRLF>', '\r\n\0.\r\n', 'nulByte'],
  ];

  test.each(variants)(
    '%s: one reply for one message, no smuggled transaction',
    async (name, end, expected) => {
      const subject = `smuggle ${name}`;
      const c = await inData();
      c.write(
        `Subject: ${subject}\r\n\r\nfirst${end}` +
          'MAIL FROM:<smuggled@example.com>\r\nRCPT TO:<victim@mx.test>\r\nDATA\r\n' +
          'Subject: smuggled\r\n\r\nsmuggled\r\n',
      );
      const reply = await c.command('.');
      // The reply after it is NOOP's: nothing pipelined inside the message was run as a command.
      expect((await c.command('NOOP')).raw).toBe('250 2.0.0 OK');
      c.close();
      if (expected !== 'queued') {
        expect(reply.raw).toBe(formatReply(Replies[expected]));
        return;
      }
      expect(reply.raw).toMatch(/^250 2\.0\.0 Ok: queued as /);
      const { raw: dump, to } = await downstream(subject);
      expect(to).toEqual(['r@mx.test']);
      expect(smarthost.messages.filter((m) => m.from === 'smuggled@example.com')).toEqual([]);
      expect(dump).toContain('MAIL FROM:<smuggled@example.com>\r\n'); // as content
    },
  );

  test('the smuggled sender never started a transaction', () => {
    expect(relay.logs.filter((l) => l.from === 'smuggled@example.com')).toEqual([]);
  });
});

describe('what the relay advertises keeps working', () => {
  test('nodemailer with SMTPUTF8 and 8BITMIME; SIZE declared by a raw client', async () => {
    const transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port: relay.ports.relay,
      ignoreTLS: true,
    });
    const info = await transport.sendMail({
      envelope: { from: 'jörg@example.com', to: ['zoë@mx.test'] },
      raw: Buffer.from('Subject: utf8\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nGrüße\r\n'),
    });
    transport.close();
    expect(info.response).toMatch(/^250 2\.0\.0 Ok: queued as /);
    expect((await downstream('utf8')).to).toEqual(['zoë@mx.test']);

    const c = await SmtpClient.connect(relay.ports.relay!);
    await c.command('EHLO client.test');
    expect((await c.command('MAIL FROM:<app@example.com> SIZE=40 BODY=8BITMIME SMTPUTF8')).raw).toBe(
      '250 2.1.0 Accepted',
    );
    expect((await c.command('RCPT TO:<r@mx.test>')).code).toBe(250);
    expect((await c.command('DATA')).code).toBe(354);
    expect((await c.command('Subject: sized\r\n\r\n\u00e9\r\n.')).code).toBe(250);
    c.close();
    await downstream('sized');
  });
});
