/**
 * Limits, enforced against a running relay: message size (while streaming, with bounded memory),
 * recipients per message, messages per minute per client and per user, concurrent connections, and
 * connections per client address (count and rate, with exempt networks).
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import nodemailer from 'nodemailer';
import { Spool } from '../../relay/spool/spool.js';
import { a, mx, startDnsServer, type TestDnsServer } from '../helpers/dns.js';
import { makeTempDir, relayConfig, startRelay, writeUsersFile, type RelayProcess } from '../helpers/relay.js';
import { SmtpClient, authPlain } from '../helpers/smtp-client.js';
import { makeCa, makeCert, writeCert } from '../helpers/tls.js';
import { waitFor } from '../cluster/proc.js';

jest.setTimeout(120_000);

let dns: TestDnsServer;
beforeAll(async () => {
  dns = await startDnsServer({ records: [mx('mx.test', 'mail.mx.test'), a('mail.mx.test', '127.0.0.1')] });
});
afterAll(async () => dns?.stop());

const dnsConfig = () => ({ servers: [dns.server], timeoutMs: 2000, tries: 1 });

async function transaction(c: SmtpClient, from = 'app@example.com') {
  await c.command('EHLO client.test');
  return c.command(`MAIL FROM:<${from}>`);
}

describe('message size', () => {
  let relay: RelayProcess;
  beforeAll(async () => {
    relay = await startRelay({
      config: relayConfig({ limits: { maxMessageBytes: 1024 * 1024 }, dns: dnsConfig() }),
    });
  });
  afterAll(async () => relay?.stop());

  test('SIZE is advertised, and a declared size over it is refused at MAIL FROM (552 5.3.4)', async () => {
    const c = await SmtpClient.connect(relay.ports.relay!);
    expect((await c.command('EHLO client.test')).lines).toContain('SIZE 1048576');
    expect((await c.command('MAIL FROM:<app@example.com> SIZE=2000000')).raw).toMatch(/^552 5\.3\.4 /);
    expect((await c.command('MAIL FROM:<app@example.com> SIZE=1000')).code).toBe(250);
    c.close();
  });

  test('nodemailer: an oversize message is refused with 552 5.3.4 after its end, and nothing is queued', async () => {
    const transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port: relay.ports.relay,
      ignoreTLS: true,
    });
    await expect(
      transport.sendMail({
        from: 'app@example.com',
        to: 'r@mx.test',
        subject: 'big',
        text: 'x'.repeat(2 * 1024 * 1024),
      }),
    ).rejects.toMatchObject({
      responseCode: 552,
      response: '552 5.3.4 Message size exceeds the fixed limit',
    });
    // The session goes on: the next message on another connection is fine.
    const ok = await transport.sendMail({
      from: 'app@example.com',
      to: 'r@mx.test',
      subject: 'small',
      text: 'x',
    });
    expect(ok.response).toMatch(/^250 2\.0\.0 /);
    expect(
      await relay.metric('mailfleet_relay_messages_rejected_total', { listener: 'relay', reason: 'size' }),
    ).toBe(1);
  });

  // 256 MiB streamed into a 1 MiB limit. The process's RSS grows by what V8 and the socket buffers settle
  // at (measured: ~75 MiB, flat from the first 64 MiB on), not by the message: buffering would show
  // at least 256 MiB.
  test('memory stays bounded while 256 MiB of oversize DATA streams in', async () => {
    const rss = async () => (await relay.metric('process_resident_memory_bytes'))!;
    const before = await rss();
    const c = await SmtpClient.connect(relay.ports.relay!);
    await transaction(c);
    await c.command('RCPT TO:<r@mx.test>');
    expect((await c.command('DATA')).code).toBe(354);
    const line = Buffer.from('y'.repeat(998) + '\r\n');
    const block = Buffer.concat(Array.from({ length: 1024 }, () => line)); // 1 MiB
    let peak = before;
    for (let i = 0; i < 256; i++) {
      if (!c.write(block)) await c.drained();
      if (i % 16 === 0) peak = Math.max(peak, await rss());
    }
    const r = await c.command('.', 60_000);
    expect(r.raw).toBe('552 5.3.4 Message size exceeds the fixed limit');
    peak = Math.max(peak, await rss());
    expect(peak - before).toBeLessThan(128 * 1024 * 1024);
    expect((await c.command('NOOP')).code).toBe(250);
    c.close();
  });

  test('a huge header section is refused (552 5.3.4) without buffering it all', async () => {
    const c = await SmtpClient.connect(relay.ports.relay!);
    await transaction(c);
    await c.command('RCPT TO:<r@mx.test>');
    await c.command('DATA');
    const header = Buffer.from(`X-Filler: ${'h'.repeat(990)}\r\n`);
    for (let i = 0; i < 300; i++) c.write(header); // ~300 KiB of header fields, no body
    const r = await c.command('\r\nbody\r\n.');
    expect(r.raw).toBe('552 5.3.4 Message header section exceeds the fixed limit');
    c.close();
  });

  test('no partial file is left in the spool by refused messages', async () => {
    const received =
      (await relay.metric('mailfleet_relay_messages_received_total', { listener: 'relay' })) ?? 0;
    await relay.stop();
    const spool = await Spool.open({ dir: relay.spoolDir });
    try {
      expect(spool.count).toBe(received);
      expect(await fs.readdir(path.join(relay.spoolDir, 'tmp'))).toEqual([]);
    } finally {
      await spool.close();
    }
  });
});

describe('recipients and rates', () => {
  let relay: RelayProcess;
  let caPem: string;
  beforeAll(async () => {
    const dir = await makeTempDir();
    const ca = makeCa();
    caPem = ca.certPem;
    await writeCert(dir, makeCert(ca));
    await writeUsersFile(path.join(dir, 'users'), { alice: 'a-pw', bob: 'b-pw' });
    relay = await startRelay({
      dir,
      config: relayConfig({
        listeners: {
          relay: { address: '127.0.0.1', port: 0, allowedNetworks: ['127.0.0.0/8'] },
          smtps: { address: '127.0.0.1', port: 0 },
        },
        tls: { certFile: 'cert.pem', keyFile: 'key.pem' },
        auth: { usersFile: 'users' },
        limits: {
          maxRecipients: 3,
          messagesPerMinutePerClient: 3,
          messagesPerMinutePerUser: 2,
          maxConnections: 6,
          exemptNetworks: [], // the tests' clients are on loopback, exempt by default
        },
        dns: dnsConfig(),
      }),
    });
  });
  afterAll(async () => relay?.stop());

  test('at most maxRecipients distinct recipients: 452 4.5.3 past it', async () => {
    const c = await SmtpClient.connect(relay.ports.relay!, { localAddress: '127.0.0.11' });
    await transaction(c);
    // A repeat (the domain in another case) does not count; another local part does, whatever its case.
    for (const r of ['a@mx.test', 'b@mx.test', 'c@mx.test', 'a@MX.test'])
      expect((await c.command(`RCPT TO:<${r}>`)).code).toBe(250);
    expect((await c.command('RCPT TO:<d@mx.test>')).raw).toBe('452 4.5.3 Too many recipients');
    expect((await c.command('RCPT TO:<A@mx.test>')).raw).toBe('452 4.5.3 Too many recipients');
    expect((await c.command('DATA')).code).toBe(354);
    const done = await c.command('Subject: three\r\n\r\nx\r\n.');
    expect(done.code).toBe(250);
    const log = await relay.waitForLog((l) => l.msg === 'message queued' && done.raw.endsWith(String(l.id)));
    expect(log.recipients).toBe(3);
    c.close();
  });

  test('messages per minute per client address: 450 4.7.1 past it, other clients unaffected', async () => {
    const from = '127.0.0.12';
    const c = await SmtpClient.connect(relay.ports.relay!, { localAddress: from });
    await c.command('EHLO client.test');
    for (let i = 0; i < 3; i++) {
      expect((await c.command('MAIL FROM:<app@example.com>')).code).toBe(250);
      await c.command('RSET');
    }
    expect((await c.command('MAIL FROM:<app@example.com>')).raw).toBe(
      '450 4.7.1 Message rate limit exceeded, try again later',
    );
    c.close();
    const other = await SmtpClient.connect(relay.ports.relay!, { localAddress: '127.0.0.13' });
    expect((await transaction(other)).code).toBe(250);
    other.close();
  });

  test('messages per minute per user, whatever the client address', async () => {
    const session = async (local: string, user: string, pw: string) => {
      const c = await SmtpClient.connect(relay.ports.smtps!, { tls: { ca: caPem }, localAddress: local });
      await c.command('EHLO client.test');
      expect((await c.command(`AUTH PLAIN ${authPlain(user, pw)}`)).code).toBe(235);
      return c;
    };
    const replies = [];
    for (const local of ['127.0.0.21', '127.0.0.22', '127.0.0.23']) {
      const c = await session(local, 'alice', 'a-pw');
      replies.push((await c.command('MAIL FROM:<alice@example.com>')).raw);
      c.close();
    }
    expect(replies).toEqual([
      '250 2.1.0 Accepted',
      '250 2.1.0 Accepted',
      '450 4.7.1 Message rate limit exceeded, try again later',
    ]);
    const bob = await session('127.0.0.24', 'bob', 'b-pw');
    expect((await bob.command('MAIL FROM:<bob@example.com>')).code).toBe(250);
    bob.close();
    expect(
      await relay.metric('mailfleet_relay_messages_rejected_total', {
        listener: 'smtps',
        reason: 'rate_limited',
      }),
    ).toBe(1);
  });

  test('maxConnections across listeners: 421 4.3.2 at connect past it', async () => {
    const open: SmtpClient[] = [];
    for (let i = 0; i < 6; i++)
      open.push(await SmtpClient.connect(relay.ports.relay!, { localAddress: '127.0.0.31' }));
    const refused = await SmtpClient.connect(relay.ports.relay!, { localAddress: '127.0.0.31' });
    expect(refused.greeting.raw).toBe('421 4.3.2 Too many connections, try again later');
    await refused.closed;
    const last = open.pop()!;
    last.close();
    await last.closed;
    // Wait (bounded) until the relay has let go of it: its session count is back to five.
    for (let i = 0; ; i++) {
      const inFlight = await relay.metric('mailfleet_relay_sessions_in_flight', { listener: 'relay' });
      if (inFlight !== undefined && inFlight <= 5) break;
      if (i > 200) throw new Error(`the relay still counts ${inFlight} sessions`);
      await new Promise((r) => setTimeout(r, 25));
    }
    const again = await SmtpClient.connect(relay.ports.relay!, { localAddress: '127.0.0.31' });
    expect(again.greeting.code).toBe(220);
    for (const c of [...open, again]) c.close();
  });
});

describe('connections per client address', () => {
  let relay: RelayProcess;
  beforeAll(async () => {
    relay = await startRelay({
      config: relayConfig({
        limits: {
          maxConnectionsPerClient: 3,
          connectionsPerMinutePerClient: 5,
          exemptNetworks: ['127.0.0.45/32'],
        },
        dns: dnsConfig(),
      }),
    });
  });
  afterAll(async () => relay?.stop());

  const TOO_MANY = '421 4.7.0 Too many connections from your address, try again later';
  const inFlight = async () =>
    (await relay.metric('mailfleet_relay_sessions_in_flight', { listener: 'relay' })) ?? 0;
  const refused = async (reason: string) =>
    (await relay.metric('mailfleet_relay_connections_refused_total', { listener: 'relay', reason })) ?? 0;
  const send = (localAddress: string) =>
    nodemailer
      .createTransport({ host: '127.0.0.1', port: relay.ports.relay, ignoreTLS: true, localAddress })
      .sendMail({ from: 'app@example.com', to: 'r@mx.test', subject: 'hello', text: 'x' });

  test('an address holding maxConnectionsPerClient is refused its next connection; another client gets in', async () => {
    const held = [];
    for (let i = 0; i < 3; i++)
      held.push(await SmtpClient.connect(relay.ports.relay!, { localAddress: '127.0.0.41' }));
    for (const c of held) expect(c.greeting.code).toBe(220);
    const next = await SmtpClient.connect(relay.ports.relay!, { localAddress: '127.0.0.41' });
    expect(next.greeting.raw).toBe(TOO_MANY);
    await next.closed;
    // A real client from that address meets the same reply; one from another address sends its mail.
    await expect(send('127.0.0.41')).rejects.toMatchObject({ responseCode: 421, response: TOO_MANY });
    expect((await send('127.0.0.42')).response).toMatch(/^250 2\.0\.0 Ok: queued as /);
    expect(await refused('client_connections')).toBe(2);
    // Closing one of the three frees its place.
    held.pop()!.close();
    await waitFor('the closed session to end', async () => (await inFlight()) === 2, { timeoutMs: 10_000 });
    const again = await SmtpClient.connect(relay.ports.relay!, { localAddress: '127.0.0.41' });
    expect(again.greeting.code).toBe(220);
    for (const c of [...held, again]) c.close();
    await waitFor('the sessions to end', async () => (await inFlight()) === 0, { timeoutMs: 10_000 });
  });

  test('connectionsPerMinutePerClient: past the burst, 421 4.7.0 at connect; other addresses unaffected', async () => {
    for (let i = 0; i < 5; i++) {
      const c = await SmtpClient.connect(relay.ports.relay!, { localAddress: '127.0.0.43' });
      expect(c.greeting.code).toBe(220);
      await c.command('QUIT');
      c.close();
    }
    const sixth = await SmtpClient.connect(relay.ports.relay!, { localAddress: '127.0.0.43' });
    expect(sixth.greeting.raw).toBe(
      '421 4.7.0 Connection rate limit exceeded for your address, try again later',
    );
    await sixth.closed;
    expect(await refused('client_connection_rate')).toBe(1);
    const other = await SmtpClient.connect(relay.ports.relay!, { localAddress: '127.0.0.44' });
    expect(other.greeting.code).toBe(220);
    other.close();
  });

  test('an exempt network is neither limited in connections nor in their rate', async () => {
    const open = [];
    for (let i = 0; i < 8; i++) {
      const c = await SmtpClient.connect(relay.ports.relay!, { localAddress: '127.0.0.45' });
      expect(c.greeting.code).toBe(220);
      open.push(c);
    }
    for (const c of open) c.close();
  });
});
