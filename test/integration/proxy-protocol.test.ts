/**
 * The client's real address behind a load balancer: PROXY protocol v1 and v2 on the relay and smtps
 * listeners of a real relay process, from a trusted proxy address (127.0.0.3) and from an untrusted one
 * (127.0.0.2). Real sockets bound to those loopback addresses send the headers a load balancer sends.
 * allowedNetworks, the per-client connection limit, the AUTH log and the Received header act on the
 * address inside the header; headers from anyone else, and trusted connections without a valid header,
 * are refused.
 */
import net from 'node:net';
import path from 'node:path';
import { text } from 'node:stream/consumers';
import { Spool } from '../../relay/spool/spool.js';
import { a, mx, startDnsServer, type TestDnsServer } from '../helpers/dns.js';
import { proxyV1, proxyV2 } from '../helpers/proxy-header.js';
import { makeTempDir, relayConfig, startRelay, writeUsersFile, type RelayProcess } from '../helpers/relay.js';
import { SmtpClient, authPlain } from '../helpers/smtp-client.js';
import { makeCa, makeCert, writeCert, type TestCa } from '../helpers/tls.js';

jest.setTimeout(60_000);

const PROXY = '127.0.0.3'; // the trusted load balancer
const UNTRUSTED = '127.0.0.2'; // a client inside allowedNetworks, but no proxy
const DENIED = '554 5.7.1 Access denied: this listener accepts only configured networks';
const INVALID = '421 4.7.0 PROXY protocol header missing or invalid';
const UNTRUSTED_HEADER = '554 5.7.1 PROXY protocol header not accepted from this address';
const TOO_MANY = '421 4.7.0 Too many connections from your address, try again later';

let dns: TestDnsServer;
let relay: RelayProcess;
let ca: TestCa;
const queued: { id: string; client: string }[] = [];

beforeAll(async () => {
  dns = await startDnsServer({ records: [mx('mx.test', 'mail.mx.test'), a('mail.mx.test', '127.0.0.1')] });
  const dir = await makeTempDir();
  ca = makeCa();
  await writeCert(dir, makeCert(ca));
  await writeUsersFile(path.join(dir, 'users'), { alice: 'alice-secret' });
  relay = await startRelay({
    dir,
    config: relayConfig({
      listeners: {
        relay: {
          address: '127.0.0.1',
          port: 0,
          // Neither the proxy (127.0.0.3) nor 127.0.0.80, which the proxy will speak for.
          allowedNetworks: [`${UNTRUSTED}/32`, '127.0.0.48/28'],
          proxyProtocol: { trustedProxies: [`${PROXY}/32`] },
        },
        smtps: { address: '127.0.0.1', port: 0, proxyProtocol: { trustedProxies: [`${PROXY}/32`] } },
      },
      tls: { certFile: 'cert.pem', keyFile: 'key.pem' },
      auth: { usersFile: 'users' },
      limits: { maxConnectionsPerClient: 2, exemptNetworks: [] },
      dns: { servers: [dns.server], timeoutMs: 2000, tries: 1 },
    }),
  });
});
afterAll(async () => {
  await relay?.stop();
  await dns?.stop();
});

const viaProxy = (proxyHeader: Buffer, opts: { timeoutMs?: number } = {}) =>
  SmtpClient.connect(relay.ports.relay!, { localAddress: PROXY, proxyHeader, ...opts });

async function sendMessage(c: SmtpClient, client: string): Promise<void> {
  expect((await c.command('EHLO app.test')).code).toBe(250);
  expect((await c.command('MAIL FROM:<app@example.com>')).code).toBe(250);
  expect((await c.command('RCPT TO:<r@mx.test>')).code).toBe(250);
  expect((await c.command('DATA')).code).toBe(354);
  const done = await c.command('Subject: via proxy\r\n\r\nhello\r\n.');
  expect(done.raw).toMatch(/^250 2\.0\.0 Ok: queued as /);
  queued.push({ id: done.raw.split(' ').pop()!, client });
}

describe('from the trusted proxy', () => {
  test.each([
    ['v1', proxyV1('127.0.0.50'), '127.0.0.50'],
    ['v2', proxyV2({ source: '127.0.0.51' }), '127.0.0.51'],
    ['v2 over IPv6 (an IPv4-mapped client)', proxyV2({ source: '::ffff:127.0.0.52' }), '127.0.0.52'],
  ])(
    '%s: the session is the header address, inside allowedNetworks although the proxy is not',
    async (_v, header, client) => {
      const c = await viaProxy(header);
      expect(c.greeting.code).toBe(220);
      const logged = relay.nextLog((l) => l.msg === 'message queued');
      await sendMessage(c, client);
      expect((await logged).client).toBe(client);
      c.close();
    },
  );

  test.each([
    ['v1', proxyV1('127.0.0.80')],
    ['v2', proxyV2({ source: '127.0.0.80' })],
  ])('%s: allowedNetworks refuses the header address, not the proxy', async (_v, header) => {
    const c = await viaProxy(header);
    expect(c.greeting.raw).toBe(DENIED);
    await c.closed;
  });

  test('the per-client connection limit counts the header addresses, not the one proxy', async () => {
    const held = [await viaProxy(proxyV1('127.0.0.60')), await viaProxy(proxyV2({ source: '127.0.0.60' }))];
    for (const c of held) expect(c.greeting.code).toBe(220);
    const third = await viaProxy(proxyV1('127.0.0.60'));
    expect(third.greeting.raw).toBe(TOO_MANY);
    await third.closed;
    const other = await viaProxy(proxyV1('127.0.0.61'));
    expect(other.greeting.code).toBe(220);
    for (const c of [...held, other]) c.close();
  });

  test('a v2 LOCAL header (a health check) is the proxy itself: not in allowedNetworks here', async () => {
    const c = await viaProxy(proxyV2({ command: 'LOCAL' }));
    expect(c.greeting.raw).toBe(DENIED);
    await c.closed;
  });

  test.each([
    ['an invalid v1 header', Buffer.from('PROXY TCP4 300.0.0.1 127.0.0.1 1 25\r\n')],
    [
      'a v2 header of another version',
      Buffer.concat([proxyV2().subarray(0, 12), Buffer.from([0x11, 0x11, 0, 0])]),
    ],
    ['SMTP without a header', Buffer.from('EHLO app.test\r\n')],
  ])('%s: 421 4.7.0 and the connection is closed', async (_what, bytes) => {
    const c = await viaProxy(bytes);
    expect(c.greeting.raw).toBe(INVALID);
    await c.closed;
  });

  test('no header at all (a load balancer not configured to send it): 421 4.7.0 after 5 s', async () => {
    const c = await SmtpClient.connect(relay.ports.relay!, { localAddress: PROXY, timeoutMs: 15_000 });
    expect(c.greeting.raw).toBe(INVALID);
    await c.closed;
    const log = await relay.waitForLog(
      (l) => l.reason === 'proxy_header_invalid' && /within/.test(String(l.detail)),
    );
    expect(log.peer).toBe(PROXY);
  });

  test('smtps: the header comes before the TLS handshake; AUTH is logged with the header address', async () => {
    const c = await SmtpClient.connect(relay.ports.smtps!, {
      localAddress: PROXY,
      proxyHeader: proxyV2({ source: '127.0.0.53' }),
      tls: { ca: ca.certPem },
    });
    expect(c.greeting.code).toBe(220);
    await c.command('EHLO app.test');
    expect((await c.command(`AUTH PLAIN ${authPlain('alice', 'alice-secret')}`)).code).toBe(235);
    const log = await relay.waitForLog((l) => l.msg === 'AUTH ok' && l.listener === 'smtps');
    expect(log.client).toBe('127.0.0.53');
    c.close();
  });
});

/**
 * A raw connection from the trusted proxy: writes `first` (the header and what the proxy forwards with
 * it), then, once the relay's output contains `until`, `rest` and FIN (end(): the socket half-closes),
 * or FIN at once without `until`. Resolves with everything the relay wrote until it closed (bounded).
 */
function halfCloseViaProxy(first: Buffer, until?: string, rest = ''): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port: relay.ports.relay!, host: '127.0.0.1', localAddress: PROXY });
    let got = '';
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`the relay did not close; got ${JSON.stringify(got)}`));
    }, 15_000);
    s.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      if (until !== undefined && got.includes(until) && !s.writableEnded) s.end(rest);
    });
    s.on('error', reject);
    s.on('close', () => {
      clearTimeout(timer);
      resolve(got);
    });
    s.once('connect', () => (until === undefined ? s.end(first) : s.write(first)));
  });
}

describe('from the trusted proxy, with the client half-closing (the header read first, then the session)', () => {
  const codes = (got: string) =>
    got
      .split('\r\n')
      .filter((l) => /^\d{3} /.test(l))
      .map((l) => l.slice(0, 3));

  test('header, pipelined commands and FIN in one write: every reply, in order, then the close', async () => {
    const got = await halfCloseViaProxy(
      Buffer.concat([
        proxyV1('127.0.0.54'),
        Buffer.from(
          'EHLO app.test\r\nMAIL FROM:<app@example.com>\r\nRCPT TO:<r@mx.test>\r\nRSET\r\nNOOP\r\n',
        ),
      ]),
    );
    expect(codes(got)).toEqual(['220', '250', '250', '250', '250', '250']);
  });

  test('".\\r\\n" then FIN: the 250 arrives before the relay closes; queued with the header address', async () => {
    const logged = relay.nextLog((l) => l.msg === 'message queued' && l.client === '127.0.0.55');
    const got = await halfCloseViaProxy(
      Buffer.concat([
        proxyV2({ source: '127.0.0.55' }),
        Buffer.from('EHLO app.test\r\nMAIL FROM:<app@example.com>\r\nRCPT TO:<r@mx.test>\r\nDATA\r\n'),
      ]),
      '\r\n354 ',
      'Subject: via proxy\r\n\r\nthen FIN\r\n.\r\n',
    );
    expect(got).toMatch(/\r\n354 [^\r]*\r\n250 2\.0\.0 Ok: queued as [0-9A-Z]+\r\n$/);
    const id = /queued as ([0-9A-Z]+)\r\n$/.exec(got)![1]!;
    expect((await logged).id).toBe(id);
    queued.push({ id, client: '127.0.0.55' });
  });

  test('a header cut short by the FIN: 421 4.7.0 (the half-open socket can still be answered)', async () => {
    const logged = relay.nextLog((l) => l.reason === 'proxy_header_invalid');
    const got = await halfCloseViaProxy(proxyV1('127.0.0.56').subarray(0, 20));
    expect(got).toBe(`${INVALID}\r\n`);
    expect((await logged).detail).toMatch(/input ended after 20 bytes/);
  });

  test('a FIN before any byte (a TCP health check): closed without a reply, not counted as invalid', async () => {
    expect(await halfCloseViaProxy(Buffer.alloc(0))).toBe('');
  });
});

test('behind the proxy, a MAIL line that is not UTF-8 is refused on its bytes and logged with the header address', async () => {
  const c = await viaProxy(proxyV1('127.0.0.57'));
  await c.command('EHLO app.test');
  const logged = relay.nextLog((l) => l.msg === 'message refused' && l.reason === 'sender_syntax');
  c.write(Buffer.from('MAIL FROM:<j\xF6rg@example.com> SMTPUTF8\r\n', 'latin1'));
  expect((await c.reply()).raw).toBe('501 5.1.7 Sender address is not valid UTF-8');
  expect((await logged).client).toBe('127.0.0.57');
  c.close();
});

describe('from anywhere else', () => {
  test('without a header: an ordinary session with its own address', async () => {
    const c = await SmtpClient.connect(relay.ports.relay!, { localAddress: UNTRUSTED });
    expect(c.greeting.code).toBe(220);
    expect((await c.command('EHLO app.test')).code).toBe(250);
    c.close();
  });

  test.each([
    ['v1', proxyV1('127.0.0.50')],
    ['v2', proxyV2({ source: '127.0.0.50' })],
  ])('a %s header is refused with 554 5.7.1 and the connection closed', async (_v, header) => {
    const c = await SmtpClient.connect(relay.ports.relay!, { localAddress: UNTRUSTED, proxyHeader: header });
    // The relay greets first (it does not wait for a client's first bytes), then refuses the header.
    expect(c.greeting.code).toBe(220);
    expect((await c.reply()).raw).toBe(UNTRUSTED_HEADER);
    await c.closed;
  });

  test('smtps: a header where the TLS handshake should start gets the refusal in plaintext', async () => {
    const c = await SmtpClient.connect(relay.ports.smtps!, {
      localAddress: UNTRUSTED,
      proxyHeader: proxyV1('127.0.0.50'),
    });
    expect(c.greeting.raw).toBe(UNTRUSTED_HEADER);
    await c.closed;
  });

  test('smtps: an ordinary TLS client from there is served', async () => {
    const c = await SmtpClient.connect(relay.ports.smtps!, {
      localAddress: UNTRUSTED,
      tls: { ca: ca.certPem },
    });
    expect(c.greeting.code).toBe(220);
    c.close();
  });
});

test('metrics count the headers and the refusals; the spool and Received headers carry the client address', async () => {
  const m = (name: string, labels: Record<string, string>) => relay.metric(name, labels);
  expect(
    await m('mailfleet_relay_proxy_headers_total', { listener: 'relay', version: '1' }),
  ).toBeGreaterThanOrEqual(4);
  expect(await m('mailfleet_relay_proxy_headers_total', { listener: 'smtps', version: '2' })).toBe(1);
  expect(
    await m('mailfleet_relay_connections_refused_total', {
      listener: 'relay',
      reason: 'proxy_header_invalid',
    }),
  ).toBe(5); // the four above with a header missing, invalid or late, and the one cut short by a FIN
  expect(
    await m('mailfleet_relay_connections_refused_total', {
      listener: 'relay',
      reason: 'proxy_header_untrusted',
    }),
  ).toBe(2);
  expect(
    await m('mailfleet_relay_connections_refused_total', {
      listener: 'smtps',
      reason: 'proxy_header_untrusted',
    }),
  ).toBe(1);
  await relay.stop();
  const spool = await Spool.open({ dir: relay.spoolDir });
  try {
    expect(queued).toHaveLength(4);
    for (const { id, client } of queued) {
      expect(spool.get(id)!.envelope.client.address).toBe(client);
      const body = await text(spool.readBody(id));
      expect(body).toMatch(
        new RegExp(`^Received: from app\\.test \\(\\[${client.replace(/\./g, '\\.')}\\]\\)`),
      );
      expect(body).not.toContain(PROXY);
    }
  } finally {
    await spool.close();
  }
});
