/**
 * Delivery from the spool to real downstream servers (separate processes): direct MX delivery with MX
 * data from the test DNS server (several preferences, one dead host, an implicit MX), per-recipient
 * results, 4xx/5xx/drop/stall, a downstream that comes back, connection reuse, the EHLO name; and a
 * smarthost route to Postfix's smtp-sink.
 *
 * MX hosts get their own loopback addresses (127.0.0.2, .3, …) on one port, delivery.directPort.
 */
import fs from 'node:fs/promises';
import nodemailer from 'nodemailer';
import { simpleParser } from 'mailparser';
import { a, mx, startDnsServer, type TestDnsServer } from '../helpers/dns.js';
import { relayConfig, startRelay, type RelayProcess } from '../helpers/relay.js';
import {
  freePort,
  startDownstream,
  startSmtpSink,
  type Downstream,
  type ReceivedMessage,
} from '../helpers/smtp-downstream.js';

jest.setTimeout(60_000);

let seq = 0;
/** Sends through the relay listener; resolves with the queue ID once the relay said 250. */
async function send(
  relay: RelayProcess,
  opts: { from?: string; to: string[]; testId?: string; body?: string },
): Promise<{ id: string; testId: string }> {
  const testId = opts.testId ?? `t${++seq}-${process.pid}`;
  const from = opts.from ?? 'app@example.com';
  const client = nodemailer.createTransport({ host: '127.0.0.1', port: relay.ports.relay, ignoreTLS: true });
  try {
    const raw =
      `From: <${from}>\r\nTo: ${opts.to.join(', ')}\r\nSubject: test ${testId}\r\n` +
      `X-Test-Id: ${testId}\r\n\r\n${opts.body ?? 'hello\r\n'}`;
    const info = await client.sendMail({ envelope: { from, to: opts.to }, raw });
    const id = /queued as (\S+)/.exec(info.response)?.[1];
    if (!id) throw new Error(`no queue ID in ${info.response}`);
    return { id, testId };
  } finally {
    client.close();
  }
}

const byTestId = (d: Downstream, testId: string) => d.messages.filter((m) => m.testId === testId);

/** Resolves with the first message at `d` that matches (event-driven, bounded). */
async function arrived(
  d: Downstream,
  what: string,
  match: (m: ReceivedMessage) => boolean,
  timeoutMs = 20_000,
): Promise<ReceivedMessage> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const m = d.messages.find(match);
    if (m) return m;
    if (Date.now() > deadline) throw new Error(`no ${what} at the downstream`);
    await d.waitForMessages(d.messages.length + 1, Math.max(1, deadline - Date.now())).catch(() => undefined);
  }
}

/** Resolves once `d` received a message with this test ID. */
const received = (d: Downstream, testId: string, timeoutMs?: number) =>
  arrived(d, `message ${testId}`, (m) => m.testId === testId, timeoutMs);

function settled(relay: RelayProcess, id: string, msg: 'message done' | 'message deferred') {
  return relay.waitForLog((l) => l.msg === msg && l.id === id, 20_000);
}

describe('direct MX delivery', () => {
  let dns: TestDnsServer;
  let relay: RelayProcess;
  let mx1: Downstream; // 127.0.0.2, preference 10
  let mx2: Downstream; // 127.0.0.4, preference 20
  let port: number;

  beforeAll(async () => {
    mx1 = await startDownstream({ host: '127.0.0.2', name: 'mx1.x.test' });
    port = mx1.port;
    mx2 = await startDownstream({ host: '127.0.0.4', port, name: 'mx2.x.test' });
    dns = await startDnsServer({
      records: [
        mx('x.test', 'dead.x.test', 5), // nothing listens on 127.0.0.3
        mx('x.test', 'mx1.x.test', 10),
        mx('x.test', 'mx2.x.test', 20),
        a('dead.x.test', '127.0.0.3'),
        a('mx1.x.test', '127.0.0.2'),
        a('mx2.x.test', '127.0.0.4'),
        a('y.test', '127.0.0.2'), // no MX: the implicit MX is the domain itself
        a('later.test', '127.0.0.5'), // its server starts later in the test
        mx('example.com', 'mx1.x.test'), // bounces go back here
      ],
    });
    relay = await startRelay({
      config: relayConfig({
        dns: { servers: [dns.server], timeoutMs: 2000, tries: 1 },
        delivery: {
          route: { mode: 'direct' },
          directPort: port,
          heloName: 'out.relay.test',
          shaping: { maxConnections: 2, deliveriesPerConnection: 100, messagesPerMinute: 0, sites: [] },
          connectTimeoutMs: 1000,
          commandTimeoutMs: 1500,
          retry: { firstRetry: 1, maxBackoff: 1, maxLifetime: 3600 },
        },
      }),
    });
  });

  afterAll(async () => {
    await relay?.stop();
    await Promise.all([mx1?.stop(), mx2?.stop(), dns?.stop()]);
  });

  test('goes to the most preferred MX that answers, with the original envelope and body, EHLO heloName', async () => {
    const { id, testId } = await send(relay, {
      to: ['a@x.test', 'b@x.test'],
      body: 'line 1\r\n.dot line\r\n',
    });
    const m = await received(mx1, testId);
    expect(m).toMatchObject({
      from: 'app@example.com',
      to: ['a@x.test', 'b@x.test'],
      ehlo: 'out.relay.test',
    });
    const raw = (await mx1.raw(m)).toString();
    expect(raw).toMatch(/^Received: from /);
    expect(raw.endsWith('\r\n\r\nline 1\r\n.dot line\r\n')).toBe(true);
    await settled(relay, id, 'message done');
    expect(byTestId(mx2, testId)).toEqual([]);
  });

  test('a domain without MX records is delivered to its address (implicit MX)', async () => {
    const { testId } = await send(relay, { to: ['c@y.test'] });
    expect((await received(mx1, testId)).to).toEqual(['c@y.test']);
  });

  test('an MX host that refuses the session (421 greeting) is skipped for the next one', async () => {
    await mx1.set({ connect: '421 4.3.2 too busy' }, { dropConnections: true });
    try {
      const { testId } = await send(relay, { to: ['d@x.test'] });
      expect((await received(mx2, testId)).to).toEqual(['d@x.test']);
    } finally {
      await mx1.set({});
    }
  });

  test('per-recipient results: one delivered, one bounced (DSN to the sender), one deferred then delivered', async () => {
    await mx1.set({
      rcpt: { 'gone@x.test': '550 5.1.1 no such user', 'later@x.test': '451 4.2.1 mailbox busy' },
    });
    const { id, testId } = await send(relay, { to: ['ok@x.test', 'gone@x.test', 'later@x.test'] });
    const first = await received(mx1, testId);
    expect(first.to).toEqual(['ok@x.test']);
    const deferred = await settled(relay, id, 'message deferred');
    expect(deferred).toMatchObject({ delivered: 1, failed: 1, pending: 1 });

    // the bounce for gone@x.test, sent with a null sender to app@example.com (MX mx1); it is a
    // message of its own, queued when the attempt ended, so it may arrive after the deferral is logged
    const dsn = await arrived(
      mx1,
      'bounce to app@example.com',
      (m) => m.from === '' && m.to[0] === 'app@example.com' && m.n > first.n,
    );
    const parsed = await simpleParser(await mx1.raw(dsn), { keepDeliveryStatus: true });
    const status = parsed.attachments
      .find((x) => x.contentType === 'message/delivery-status')!
      .content.toString();
    expect(status).toContain('Final-Recipient: rfc822; gone@x.test\r\nAction: failed\r\nStatus: 5.1.1');
    expect(status).toContain('Remote-MTA: dns; mx1.x.test');
    expect(status).toContain('Diagnostic-Code: smtp; 550 5.1.1 no such user');
    expect(status).not.toContain('later@x.test');

    await mx1.set({});
    await settled(relay, id, 'message done');
    await arrived(mx1, 'retry for later@x.test', (m) => m.testId === testId && m.to.includes('later@x.test'));
    const later = byTestId(mx1, testId).filter((m) => m.to.includes('later@x.test'));
    expect(later.map((m) => m.to)).toEqual([['later@x.test']]);
  });

  test('4xx at DATA, a dropped connection and a stalled server all defer; the message goes once they recover', async () => {
    for (const data of ['452 4.3.1 out of space', 'drop', 'stall']) {
      await mx1.set({ data });
      try {
        const { id, testId } = await send(relay, { to: ['e@x.test'] });
        const line = await settled(relay, id, 'message deferred');
        expect(line.pending).toBe(1);
        await mx1.set({});
        await settled(relay, id, 'message done');
        await received(mx1, testId);
        // the dropped or stalled copy was not accepted downstream; the retry went to the same MX
        expect(byTestId(mx1, testId)).toHaveLength(1);
        expect(byTestId(mx2, testId)).toEqual([]);
      } finally {
        await mx1.set({});
      }
    }
    expect(
      await relay.metric('mailfleet_relay_delivery_attempts_total', { result: 'deferred' }),
    ).toBeGreaterThan(0);
  });

  test('a downstream that is down is retried and gets the message when it comes back', async () => {
    const { id, testId } = await send(relay, { to: ['f@later.test'] });
    await settled(relay, id, 'message deferred');
    const q = JSON.parse((await relay.admin('/queue')).body) as { messages: { id: string; state: string }[] };
    expect(q.messages.find((m) => m.id === id)?.state).toMatch(/deferred|ready|active/);
    const later = await startDownstream({ host: '127.0.0.5', port });
    try {
      expect((await received(later, testId)).to).toEqual(['f@later.test']);
      await settled(relay, id, 'message done');
    } finally {
      await later.stop();
    }
  });

  test('connections to one destination are reused (per-destination limit 2)', async () => {
    const before = mx1.connects;
    const sent = await Promise.all(Array.from({ length: 6 }, () => send(relay, { to: ['g@x.test'] })));
    for (const s of sent) await received(mx1, s.testId);
    expect(mx1.connects - before).toBeLessThanOrEqual(2);
  });
});

describe('smarthost delivery to smtp-sink', () => {
  test('every message goes to the smarthost with its envelope, whatever the recipient domain', async () => {
    const sink = await startSmtpSink();
    const dns = await startDnsServer({
      records: [mx('x.test', 'mail.x.test'), a('mail.x.test', '127.0.0.9')],
    });
    const relay = await startRelay({
      config: relayConfig({
        dns: { servers: [dns.server], timeoutMs: 2000, tries: 1 },
        delivery: {
          route: { mode: 'smarthost', smarthost: { host: '127.0.0.1', port: sink.port, tls: 'none' } },
        },
      }),
    });
    try {
      const { id, testId } = await send(relay, { to: ['a@x.test', 'b@x.test'] });
      await settled(relay, id, 'message done');
      const [file] = await sink.waitForFiles(1);
      const dumped = await fs.readFile(file!, 'utf8');
      expect(dumped).toContain('X-Mail-Args: <app@example.com>');
      expect(dumped).toContain('X-Rcpt-Args: <a@x.test>');
      expect(dumped).toContain('X-Rcpt-Args: <b@x.test>');
      expect(dumped).toContain('X-Helo-Args: relay.test'); // EHLO defaults to the relay's hostname
      expect(dumped).toContain(`X-Test-Id: ${testId}`);
      expect(await relay.metric('mailfleet_relay_delivery_attempts_total', { result: 'delivered' })).toBe(2);
      expect(await freePort()).toBeGreaterThan(0);
    } finally {
      await relay.stop();
      await Promise.all([sink.stop(), dns.stop()]);
    }
  });
});
