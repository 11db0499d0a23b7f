/**
 * Bad input over a raw socket: every malformed, oversized, out-of-order or hostile thing a client can
 * send gets a clear SMTP reply with an enhanced status code (or, for protocol violations the session
 * cannot survive, a 421 and a closed connection) — and the relay keeps serving everyone else.
 */
import fs from 'node:fs/promises';
import net from 'node:net';
import tls from 'node:tls';
import path from 'node:path';
import { a, mx, startDnsServer, type TestDnsServer } from '../helpers/dns.js';
import { makeTempDir, relayConfig, startRelay, writeUsersFile, type RelayProcess } from '../helpers/relay.js';
import { SmtpClient, type Reply } from '../helpers/smtp-client.js';
import { makeCa, makeCert, writeCert } from '../helpers/tls.js';
import { Replies, formatReply } from '../../relay/policy/replies.js';
import { LIBRARY_REPLIES } from '../../relay/policy/replies-reference.js';

/** The catalogue's wire text, and smtp-server's as docs/relay-smtp.md lists it (pinned here). */
const R = (name: keyof typeof Replies) => formatReply(Replies[name]);
const L = (name: keyof typeof LIBRARY_REPLIES) => LIBRARY_REPLIES[name].wire;

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
      dns: { servers: [dns.server], timeoutMs: 2000, tries: 1 },
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
    ['FOO bar', L('notRecognized')],
    // A malformed sender gets one reply, whichever layer (smtp-server's parse, the relay's) noticed.
    ['MAIL FROM:<a@example.com', R('senderSyntax')],
    ['MAIL FROM:a@example.com', R('senderSyntax')],
    ['MAIL FROM:<a@@example.com>', R('senderSyntax')],
    ['MAIL FROM:<a@example.com> SIZE=abc', L('sizeSyntax')],
    ['MAIL FROM:<a@example.com> SIZE=99999999', L('sizeTooBig').replace('<limit>', String(64 * 1024))],
    ['MAIL FROM:<a@example.com> BODY=BINARYMIME', L('bodyValue')],
    ['MAIL FROM:<a@example.com> SMTPUTF8=yes', L('smtputf8Value')],
    ['MAIL FROM:<a@example.com> SIZE=1 SIZE=2', L('duplicateParameter').replace('<NAME>', 'SIZE')],
    ['MAIL FROM:<a\u0001b@example.com>', R('senderSyntax')],
    ['MAIL FROM:<no-domain>', R('senderSyntax')],
    ['MAIL FROM:<user@localhost>', R('senderSyntax')],
    ['RCPT TO:<r@mx.test>', R('needMail')],
    ['DATA', R('needRcpt')],
    ['EHLO', '501 Error: syntax: EHLO hostname'],
    ['HELO a b', '501 Error: Syntax: HELO hostname'],
    ['STARTTLS now', '501 5.5.4 Error: syntax: STARTTLS'],
    ['AUTH PLAIN', L('notRecognized')],
    ['WIZ password', L('notRecognized')],
    ['XCLIENT ADDR=1.2.3.4', L('notRecognized')],
    ['VRFY', R('vrfySyntax')],
    ['NOOP', L('noop')],
    ['RSET', L('rset')],
  ])('%j → %s', async (line, expected) => {
    const c = await fresh();
    expect(await say(c, line)).toBe(expected);
    c.close();
  });

  test('MAIL before EHLO', async () => {
    const c = await fresh(false);
    expect(await say(c, 'MAIL FROM:<a@example.com>')).toBe(L('sendHeloFirst'));
    c.close();
  });

  test('nested MAIL, bad recipient syntax, DATA after all recipients were refused', async () => {
    const c = await fresh();
    expect(await say(c, 'MAIL FROM:<app@example.com>')).toBe(L('mailAccepted'));
    expect(await say(c, 'MAIL FROM:<app@example.com>')).toBe(L('nestedMail'));
    expect(await say(c, 'RCPT TO:<>')).toBe(R('recipientSyntax'));
    expect(await say(c, 'RCPT TO:<a b@mx.test>')).toBe(R('recipientSyntax'));
    expect(await say(c, 'RCPT TO:<postmaster>')).toBe(R('recipientSyntax'));
    expect(await say(c, 'RCPT TO:<x@nowhere.test>')).toBe(R('recipientNxDomain'));
    expect(await say(c, 'DATA')).toBe(R('needRcpt'));
    c.close();
  });

  test('a command line over the limit ends the session with 421; the relay carries on', async () => {
    const c = await fresh();
    c.write(`NOOP ${'x'.repeat(20_000)}\r\n`);
    expect((await c.reply()).raw).toBe(L('lineTooLong'));
    await c.closed;
  });

  test('ten unrecognised commands in a row end the session', async () => {
    const c = await fresh();
    for (let i = 0; i < 9; i++) expect((await c.command(`BOGUS${i}`)).code).toBe(500);
    expect((await c.command('BOGUS9')).raw).toBe(L('tooManyUnrecognized'));
    await c.closed;
  });

  test('an HTTP request is refused', async () => {
    const c = await fresh(false);
    expect((await c.command('GET / HTTP/1.1')).raw).toBe(L('httpRequest'));
    await c.closed;
  });

  test('bytes after QUIT are ignored', async () => {
    const c = await fresh();
    c.write('QUIT\r\nMAIL FROM:<app@example.com>\r\nRCPT TO:<r@mx.test>\r\nDATA\r\n');
    expect((await c.reply()).raw).toBe(L('quit'));
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
    expect(await say(c, '.')).toBe(R('messageTooBig'));
    expect(await say(c, 'NOOP')).toBe(L('noop'));
    c.close();
  });

  test('a long line without line breaks and 8-bit bytes are accepted as data', async () => {
    const c = await inData();
    c.write(
      Buffer.concat([
        Buffer.from('Subject: bin\r\n\r\n'),
        Buffer.from([1, 2, 255, 254, 0x80]),
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

describe('addresses that are not UTF-8 (SMTPUTF8 or not) are refused, never rewritten', () => {
  // "jörg" in Latin-1: 0xF6 is not UTF-8. Decoded as UTF-8 it would become "j\uFFFDrg".
  const latin1 = (text: string) => Buffer.from(text, 'latin1');

  test.each([
    [
      'RCPT with SMTPUTF8',
      'MAIL FROM:<app@example.com> SMTPUTF8',
      'RCPT TO:<j\xF6rg@mx.test>',
      'recipientNotUtf8',
    ],
    ['RCPT without SMTPUTF8', 'MAIL FROM:<app@example.com>', 'RCPT TO:<j\xF6rg@mx.test>', 'recipientNotUtf8'],
    [
      'a RCPT parameter',
      'MAIL FROM:<app@example.com> SMTPUTF8',
      'RCPT TO:<r@mx.test> X=\xF6',
      'rcptParameterNotUtf8',
    ],
    [
      'a truncated sequence',
      'MAIL FROM:<app@example.com> SMTPUTF8',
      'RCPT TO:<j\xC3@mx.test>',
      'recipientNotUtf8',
    ],
  ] as const)('%s', async (_what, mail, rcpt, reply) => {
    const c = await fresh();
    expect(await say(c, mail)).toBe(L('mailAccepted'));
    c.write(Buffer.concat([latin1(rcpt), latin1('\r\n')]));
    const r = await c.reply();
    replies.push(r);
    expect(r.raw).toBe(R(reply));
    // The same address in UTF-8 gets what it always got: accepted with SMTPUTF8, 553 5.6.7 without.
    expect(await say(c, 'RCPT TO:<jörg@mx.test>')).toBe(
      mail.endsWith('SMTPUTF8') ? L('rcptAccepted') : R('recipientNeedsSmtputf8'),
    );
    c.close();
  });

  test.each([
    ['MAIL FROM:<j\xF6rg@example.com> SMTPUTF8', 'senderNotUtf8'],
    ['MAIL FROM:<app@example.com> SMTPUTF8 X=\xF6', 'mailParameterNotUtf8'],
    ['MAIL FROM:j\xF6rg@example.com', 'senderNotUtf8'],
  ] as const)('%j', async (line, reply) => {
    const c = await fresh();
    c.write(Buffer.concat([latin1(line), latin1('\r\n')]));
    const r = await c.reply();
    replies.push(r);
    expect(r.raw).toBe(R(reply));
    expect(await say(c, 'MAIL FROM:<jörg@example.com> SMTPUTF8')).toBe(L('mailAccepted'));
    c.close();
  });

  test('counted as refused sender and recipient syntax', async () => {
    expect(
      await relay.metric('mailfleet_relay_recipients_rejected_total', {
        listener: 'relay',
        reason: 'syntax',
      }),
    ).toBeGreaterThanOrEqual(4);
    const log = await relay.waitForLog((l) => l.msg === 'recipient refused' && l.detail === 'not UTF-8');
    expect(log.reason).toBe('syntax');
  });
});

describe('MAIL and RCPT parameters: what is not supported is refused', () => {
  test.each([
    ['MAIL FROM:<app@example.com> FOO=bar', 'mailParameterNotSupported', 'FOO'],
    ['MAIL FROM:<app@example.com> RET=HDRS', 'mailParameterNotSupported', 'RET'],
    ['MAIL FROM:<app@example.com> ENVID=QQ314159', 'mailParameterNotSupported', 'ENVID'],
    ['MAIL FROM:<app@example.com> AUTH=<>', 'mailParameterNotSupported', 'AUTH'],
  ] as const)('%j → 555 5.5.4 naming it', async (line, reply, name) => {
    const c = await fresh();
    expect(await say(c, line)).toBe(`${R(reply)}: ${name}`);
    expect(await say(c, 'MAIL FROM:<app@example.com> SIZE=100 BODY=8BITMIME SMTPUTF8')).toBe(
      L('mailAccepted'),
    );
    c.close();
  });

  test.each([
    ['RCPT TO:<r@mx.test> NOTIFY=SUCCESS,FAILURE', 'NOTIFY'],
    ['RCPT TO:<r@mx.test> ORCPT=rfc822;r@mx.test', 'ORCPT'],
    ['RCPT TO:<r@mx.test> FOO', 'FOO'],
  ])('%j → 555 5.5.4 naming it', async (line, name) => {
    const c = await fresh();
    expect(await say(c, 'MAIL FROM:<app@example.com>')).toBe(L('mailAccepted'));
    expect(await say(c, line)).toBe(`${R('rcptParameterNotSupported')}: ${name}`);
    expect(await say(c, 'RCPT TO:<r@mx.test>')).toBe(L('rcptAccepted'));
    c.close();
  });

  test('EHLO does not offer DSN; AUTH=<> is taken where AUTH is offered', async () => {
    const c = await SmtpClient.connect(relay.ports.smtps!, { tls: { ca: caPem, servername: 'localhost' } });
    const ehlo = await c.command('EHLO client.test');
    expect(ehlo.lines).not.toContain('DSN');
    expect(ehlo.lines).toContain('AUTH PLAIN LOGIN');
    expect((await c.command(`AUTH PLAIN ${Buffer.from('\0alice\0alice-pw').toString('base64')}`)).code).toBe(
      235,
    );
    expect(await say(c, 'MAIL FROM:<app@example.com> REQUIRETLS')).toBe(
      `${R('mailParameterNotSupported')}: REQUIRETLS`,
    );
    expect(await say(c, 'MAIL FROM:<app@example.com> AUTH=<> SIZE=10')).toBe(L('mailAccepted'));
    c.close();
  });

  test('REQUIRETLS without TLS: smtp-server refuses it before the relay sees it', async () => {
    const c = await fresh();
    expect(await say(c, 'MAIL FROM:<app@example.com> REQUIRETLS')).toBe(L('requireTlsPlain'));
    c.close();
  });

  test('a SMTPUTF8 from a refused MAIL does not carry over into the next one', async () => {
    const c = await fresh();
    expect(await say(c, 'MAIL FROM:<app@example.com> SMTPUTF8 FOO=1')).toMatch(/^555 /);
    expect(await say(c, 'MAIL FROM:<jörg@example.com>')).toBe(R('senderNeedsSmtputf8'));
    c.close();
  });
});

describe('a client that half-closes after its last line still gets its replies', () => {
  /** Runs `lines` over a raw socket, then FIN; resolves with everything the relay wrote until it closed. */
  function halfClose(first: string, rest: string, port = relay.ports.relay!): Promise<string> {
    return new Promise((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1');
      let got = '';
      s.on('data', (d: Buffer) => {
        got += d.toString('latin1');
        // Everything up to and including 354 first, then the rest and FIN (end(): the socket half-closes).
        if (got.includes('\r\n354 ') && !s.writableEnded) s.end(rest);
      });
      s.on('error', reject);
      s.on('close', () => resolve(got));
      const timer = setTimeout(() => {
        s.destroy();
        reject(new Error(`the relay did not close; got ${JSON.stringify(got)}`));
      }, 15_000);
      s.on('close', () => clearTimeout(timer));
      s.write(first);
    });
  }

  test('".\\r\\n" then FIN: the 250 arrives before the relay closes, the message is queued once', async () => {
    const got = await halfClose(
      'EHLO client.test\r\nMAIL FROM:<app@example.com>\r\nRCPT TO:<r@mx.test>\r\nDATA\r\n',
      'Subject: half-close\r\n\r\nthen FIN\r\n.\r\n',
    );
    expect(got).toMatch(/\r\n354 [^\r]*\r\n250 2\.0\.0 Ok: queued as [0-9A-Z]+\r\n$/);
    const id = /queued as ([0-9A-Z]+)\r\n$/.exec(got)![1];
    const queued = await relay.waitForLog((l) => l.msg === 'message queued' && l.id === id);
    expect(queued.recipients).toBe(1);
  });

  test('pipelined commands then FIN: every reply, in order, then the close', async () => {
    const s = net.connect(relay.ports.relay!, '127.0.0.1');
    let got = '';
    s.on('data', (d: Buffer) => (got += d.toString('latin1')));
    s.end('EHLO client.test\r\nMAIL FROM:<app@example.com>\r\nRCPT TO:<r@mx.test>\r\nRSET\r\nNOOP\r\n');
    await new Promise((resolve) => s.on('close', resolve));
    const codes = got
      .split('\r\n')
      .filter((l) => /^\d{3} /.test(l))
      .map((l) => l.slice(0, 3));
    expect(codes).toEqual(['220', '250', '250', '250', '250', '250']);
  });

  test('FIN in the middle of DATA: closed at once, nothing queued', async () => {
    const before =
      (await relay.metric('mailfleet_relay_messages_received_total', { listener: 'relay' })) ?? 0;
    const got = await halfClose(
      'EHLO client.test\r\nMAIL FROM:<app@example.com>\r\nRCPT TO:<r@mx.test>\r\nDATA\r\n',
      'Subject: cut\r\n\r\nno end of data',
    );
    expect(got).toMatch(/\r\n354 [^\r]*\r\n$/);
    await relay.waitForLog((l) => l.msg === 'client left during DATA; nothing queued');
    expect(await relay.metric('mailfleet_relay_messages_received_total', { listener: 'relay' })).toBe(before);
  });

  test('over implicit TLS: the 250 arrives before the relay closes', async () => {
    const s = tls.connect({
      port: relay.ports.smtps!,
      host: '127.0.0.1',
      servername: 'localhost',
      ca: caPem,
    });
    let got = '';
    const closed = new Promise((resolve) => s.on('close', resolve));
    s.on('error', () => undefined);
    s.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      if (got.includes('\r\n354 ') && !s.writableEnded) s.end('Subject: tls half-close\r\n\r\nbye\r\n.\r\n');
    });
    await new Promise((resolve) => s.once('secureConnect', resolve));
    const auth = Buffer.from('\0alice\0alice-pw').toString('base64');
    s.write(
      `EHLO client.test\r\nAUTH PLAIN ${auth}\r\nMAIL FROM:<app@example.com>\r\nRCPT TO:<r@mx.test>\r\nDATA\r\n`,
    );
    await closed;
    expect(got).toMatch(/\r\n250 2\.0\.0 Ok: queued as [0-9A-Z]+\r\n$/);
  });
});

describe('AUTH', () => {
  async function secured(): Promise<SmtpClient> {
    const c = await SmtpClient.connect(relay.ports.smtps!, { tls: { ca: caPem, servername: 'localhost' } });
    await c.command('EHLO client.test');
    return c;
  }

  test.each([
    ['AUTH CRAM-MD5', L('unknownAuthMechanism')],
    ['AUTH PLAIN !!!notbase64', '501 5.5.4 Error: invalid userdata'],
    [`AUTH PLAIN ${Buffer.from('only-one-part').toString('base64')}`, '501 5.5.4 Error: invalid userdata'],
    [`AUTH PLAIN ${Buffer.from('\0alice\0wrong').toString('base64')}`, R('authFailed')],
    [`AUTH PLAIN ${Buffer.from('\0nobody\0x').toString('base64')}`, R('authFailed')],
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
