/**
 * Bad input over a raw socket: every malformed, oversized, out-of-order or hostile thing a client can
 * send gets a clear SMTP reply with an enhanced status code (or, for protocol violations the session
 * cannot survive, a 421 and a closed connection) — and the relay keeps serving everyone else.
 */
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { a, mx, startDnsServer, type TestDnsServer } from '../helpers/dns.js';
import { makeTempDir, relayConfig, startRelay, writeUsersFile, type RelayProcess } from '../helpers/relay.js';
import { SmtpClient, type Reply } from '../helpers/smtp-client.js';
import { makeCa, makeCert, writeCert } from '../helpers/tls.js';

jest.setTimeout(60_000);

let dns: TestDnsServer;
let relay: RelayProcess;
let caPem: string;
const replies: Reply[] = [];

beforeAll(async () => {
  dns = await startDnsServer({ records: [mx('mx.test', 'mail.mx.test'), a('mail.mx.test', '127.0.0.1')] });
  const dir = await makeTempDir();
  const ca = makeCa();
  caPem = ca.certPem;
  await writeCert(dir, makeCert(ca));
  await writeUsersFile(path.join(dir, 'users'), { alice: 'alice-pw' });
  relay = await startRelay({
    dir,
    config: relayConfig({
      listeners: {
        relay: { address: '127.0.0.1', port: 0, allowedNetworks: ['127.0.0.0/8'] },
        submission: { address: '127.0.0.1', port: 0 },
        smtps: { address: '127.0.0.1', port: 0 },
      },
      tls: { certFile: 'cert.pem', keyFile: 'key.pem' },
      auth: { usersFile: 'users' },
      limits: { maxMessageBytes: 64 * 1024 },
      dns: { servers: [dns.server], timeoutMs: 300, tries: 1 },
    }),
  });
});

afterAll(async () => {
  await relay?.stop();
  await dns?.stop();
});

async function fresh(ehlo = true): Promise<SmtpClient> {
  const c = await SmtpClient.connect(relay.ports.relay!);
  if (ehlo) await c.command('EHLO client.test');
  return c;
}

/** Sends a command and records the reply for the enhanced-code check at the end. */
async function say(c: SmtpClient, line: string): Promise<string> {
  const r = await c.command(line);
  replies.push(r);
  return r.raw;
}

describe('commands', () => {
  test.each([
    ['FOO bar', '500 5.5.2 Error: command not recognized'],
    ['MAIL FROM:<a@example.com', '501 5.1.7 Error: Bad sender address syntax'],
    ['MAIL FROM:a@example.com', '501 5.1.7 Error: Bad sender address syntax'],
    ['MAIL FROM:<a@@example.com>', '501 5.1.7 Error: Bad sender address syntax'],
    ['MAIL FROM:<a@example.com> SIZE=abc', '501 5.5.4 Error: Bad message size syntax'],
    [
      'MAIL FROM:<a@example.com> BODY=BINARYMIME',
      '501 5.5.4 Invalid BODY parameter value. Must be 7BIT or 8BITMIME',
    ],
    ['MAIL FROM:<a\u0001b@example.com>', '501 5.1.7 Error: Bad sender address syntax'],
    ['MAIL FROM:<no-domain>', '501 5.1.7 Error: Bad sender address syntax'],
    ['MAIL FROM:<user@localhost>', '553 5.1.7 Sender address syntax invalid'],
    ['RCPT TO:<r@mx.test>', '503 5.5.1 Error: need MAIL command'],
    ['DATA', '503 5.5.1 Error: need RCPT command'],
    ['EHLO', '501 Error: syntax: EHLO hostname'],
    ['HELO a b', '501 Error: Syntax: HELO hostname'],
    ['STARTTLS now', '501 5.5.4 Error: syntax: STARTTLS'],
    ['AUTH PLAIN', '500 5.5.2 Error: command not recognized'],
    ['WIZ password', '500 5.5.2 Error: command not recognized'],
    ['XCLIENT ADDR=1.2.3.4', '500 5.5.2 Error: command not recognized'],
    ['NOOP', '250 2.0.0 OK'],
    ['RSET', '250 2.0.0 Flushed'],
  ])('%j → %s', async (line, expected) => {
    const c = await fresh();
    expect(await say(c, line)).toBe(expected);
    c.close();
  });

  test('MAIL before EHLO', async () => {
    const c = await fresh(false);
    expect(await say(c, 'MAIL FROM:<a@example.com>')).toBe('503 5.5.1 Error: send HELO/EHLO first');
    c.close();
  });

  test('nested MAIL, bad recipient syntax, DATA after all recipients were refused', async () => {
    const c = await fresh();
    expect(await say(c, 'MAIL FROM:<app@example.com>')).toBe('250 2.1.0 Accepted');
    expect(await say(c, 'MAIL FROM:<app@example.com>')).toBe('503 5.5.1 Error: nested MAIL command');
    expect(await say(c, 'RCPT TO:<>')).toBe('501 5.1.3 Error: Bad recipient address syntax');
    expect(await say(c, 'RCPT TO:<a b@mx.test>')).toBe('501 5.1.3 Error: Bad recipient address syntax');
    expect(await say(c, 'RCPT TO:<x@nowhere.test>')).toBe('550 5.1.2 Recipient domain does not exist');
    expect(await say(c, 'DATA')).toBe('503 5.5.1 Error: need RCPT command');
    c.close();
  });

  test('a command line over the limit ends the session with 421; the relay carries on', async () => {
    const c = await fresh();
    c.write(`NOOP ${'x'.repeat(20_000)}\r\n`);
    const r = await c.reply();
    expect(r.code).toBe(421);
    expect(r.raw).toMatch(/^421 4\.\d\.\d .*too long/i);
    await c.closed;
  });

  test('ten unrecognised commands in a row end the session', async () => {
    const c = await fresh();
    for (let i = 0; i < 9; i++) expect((await c.command(`BOGUS${i}`)).code).toBe(500);
    expect((await c.command('BOGUS9')).raw).toBe('421 4.4.2 Error: too many unrecognized commands');
    await c.closed;
  });

  test('an HTTP request is refused', async () => {
    const c = await fresh(false);
    expect((await c.command('GET / HTTP/1.1')).raw).toBe('421 4.4.2 HTTP requests not allowed');
    await c.closed;
  });

  test('bytes after QUIT are ignored', async () => {
    const c = await fresh();
    c.write('QUIT\r\nMAIL FROM:<app@example.com>\r\nRCPT TO:<r@mx.test>\r\nDATA\r\n');
    expect((await c.reply()).raw).toBe('221 2.0.0 Bye');
    await c.closed;
    await expect(c.reply(300)).rejects.toThrow();
  });

  test('a client that talks before the greeting is not served out of order', async () => {
    const s = net.connect(relay.ports.relay!, '127.0.0.1');
    s.write('EHLO early.test\r\nMAIL FROM:<app@example.com>\r\n');
    const data = await new Promise<string>((resolve) => {
      let got = '';
      s.on('data', (d) => {
        got += d.toString();
        if (got.split('\r\n').length > 3) resolve(got);
      });
      s.on('close', () => resolve(got));
    });
    expect(data.startsWith('220 relay.test ESMTP mailfleet\r\n')).toBe(true);
    s.destroy();
  });
});

describe('DATA', () => {
  async function inData(): Promise<SmtpClient> {
    const c = await fresh();
    await c.command('MAIL FROM:<app@example.com>');
    await c.command('RCPT TO:<r@mx.test>');
    expect((await c.command('DATA')).code).toBe(354);
    return c;
  }

  test('an oversize message: 552 5.3.4, and the session goes on', async () => {
    const c = await inData();
    c.write('Subject: big\r\n\r\n' + `${'z'.repeat(998)}\r\n`.repeat(100));
    expect(await say(c, '.')).toBe('552 5.3.4 Message size exceeds the fixed limit');
    expect(await say(c, 'NOOP')).toBe('250 2.0.0 OK');
    c.close();
  });

  test('a long line without line breaks, binary bytes and NULs are accepted as data', async () => {
    const c = await inData();
    c.write(
      Buffer.concat([
        Buffer.from('Subject: bin\r\n\r\n'),
        Buffer.from([0, 1, 2, 255, 254, 0]),
        Buffer.from('y'.repeat(20_000)),
      ]),
    );
    expect(await say(c, '\r\n.')).toMatch(/^250 2\.0\.0 Ok: queued as /);
    c.close();
  });

  test('a client vanishing mid-DATA leaves nothing behind and bothers no one', async () => {
    const before =
      (await relay.metric('mailfleet_relay_messages_received_total', { listener: 'relay' })) ?? 0;
    const c = await inData();
    c.write('Subject: gone\r\n\r\nhalf a mess');
    await new Promise((r) => setTimeout(r, 50));
    c.close();
    const next = await inData();
    expect(await say(next, 'Subject: after\r\n\r\nfine\r\n.')).toMatch(/^250 /);
    next.close();
    expect(await relay.metric('mailfleet_relay_messages_received_total', { listener: 'relay' })).toBe(
      before + 1,
    );
  });
});

describe('AUTH', () => {
  async function secured(): Promise<SmtpClient> {
    const c = await SmtpClient.connect(relay.ports.smtps!, { tls: { ca: caPem, servername: 'localhost' } });
    await c.command('EHLO client.test');
    return c;
  }

  test.each([
    ['AUTH CRAM-MD5', '504 5.5.4 Error: Unrecognized authentication type'],
    ['AUTH PLAIN !!!notbase64', '501 5.5.4 Error: invalid userdata'],
    [`AUTH PLAIN ${Buffer.from('only-one-part').toString('base64')}`, '501 5.5.4 Error: invalid userdata'],
    [
      `AUTH PLAIN ${Buffer.from('\0alice\0wrong').toString('base64')}`,
      '535 5.7.8 Authentication credentials invalid',
    ],
    [
      `AUTH PLAIN ${Buffer.from('\0nobody\0x').toString('base64')}`,
      '535 5.7.8 Authentication credentials invalid',
    ],
    [`AUTH PLAIN ${Buffer.from('\0ali\u0001ce\0x').toString('base64')}`, '501 5.5.4 Error: invalid userdata'],
  ])('%s → %s', async (line, expected) => {
    const c = await secured();
    expect(await say(c, line)).toBe(expected);
    c.close();
  });

  test('an aborted AUTH LOGIN exchange', async () => {
    const c = await secured();
    expect((await c.command('AUTH LOGIN')).code).toBe(334);
    expect(await say(c, '*')).toBe('501 5.5.4 Authentication aborted');
    c.close();
  });

  test('plaintext on the implicit-TLS port gets no session', async () => {
    const s = net.connect(relay.ports.smtps!, '127.0.0.1');
    s.on('error', () => undefined);
    s.write('EHLO plain.test\r\n');
    await new Promise((resolve) => s.on('close', resolve));
  });
});

describe('afterwards', () => {
  test('every reply above carried an enhanced status code, except EHLO/HELO ones (RFC 2034)', () => {
    const missing = replies.filter((r) => !r.enhanced && !/^501 Error: [Ss]yntax: (EHLO|HELO)/.test(r.raw));
    expect(missing.map((r) => r.raw)).toEqual([]);
  });

  test('the relay is alive, served everyone, and logged no crash', async () => {
    expect((await relay.admin('/healthz')).status).toBe(200);
    const c = await fresh();
    expect(await say(c, 'MAIL FROM:<app@example.com>')).toBe('250 2.1.0 Accepted');
    c.close();
    expect(relay.logs.filter((l) => l.level === 'fatal' || l.level === 'error')).toEqual([]);
    expect(relay.stderr()).toBe('');
    await fs.access(relay.configFile);
  });
});
