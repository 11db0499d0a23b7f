/**
 * Bounces end to end: a message with one recipient refused (550), one that keeps getting 451 until
 * the message expires, and one delivered. The sender gets a delay notice once, then failure DSNs with
 * a null envelope sender, read back with mailparser: the right Action and Status per recipient, the
 * downstream's reply as Diagnostic-Code, the original headers attached. A bounce that fails is dropped,
 * never bounced. Null MX domains bounce with 5.1.10.
 */
import { simpleParser } from 'mailparser';
import nodemailer from 'nodemailer';
import { Readable } from 'node:stream';
import { a, mx, nullMx, startDnsServer, type TestDnsServer } from '../helpers/dns.js';
import { makeTempDir, relayConfig, startRelay, type RelayProcess } from '../helpers/relay.js';
import { startDownstream, type Downstream, type ReceivedMessage } from '../helpers/smtp-downstream.js';
import { Spool } from '../../relay/spool/spool.js';

jest.setTimeout(60_000);

let dns: TestDnsServer;
let downstream: Downstream;

beforeAll(async () => {
  downstream = await startDownstream();
  dns = await startDnsServer({
    records: [
      mx('x.test', 'mx.x.test'),
      mx('example.com', 'mx.x.test'),
      a('mx.x.test', '127.0.0.1'),
      nullMx('nomail.test'),
    ],
  });
});
afterAll(async () => {
  await Promise.all([downstream?.stop(), dns?.stop()]);
});

function config(retry: Record<string, number>) {
  return relayConfig({
    dns: { servers: [dns.server], timeoutMs: 2000, tries: 1 },
    delivery: {
      route: { mode: 'direct' },
      directPort: downstream.port,
      connectTimeoutMs: 1000,
      commandTimeoutMs: 2000,
      retry,
    },
  });
}

async function send(relay: RelayProcess, from: string, to: string[], testId: string): Promise<string> {
  const client = nodemailer.createTransport({ host: '127.0.0.1', port: relay.ports.relay, ignoreTLS: true });
  try {
    const info = await client.sendMail({
      envelope: { from, to },
      raw: `From: <${from}>\r\nTo: ${to.join(', ')}\r\nSubject: report ${testId}\r\nX-Test-Id: ${testId}\r\n\r\nbody\r\n`,
    });
    return /queued as (\S+)/.exec(info.response)![1]!;
  } finally {
    client.close();
  }
}

/** The next messages at the downstream matching `pred` (bounded wait). */
async function next(pred: (m: ReceivedMessage) => boolean, n = 1): Promise<ReceivedMessage[]> {
  for (;;) {
    const found = downstream.messages.filter(pred);
    if (found.length >= n) return found;
    await downstream.waitForMessages(downstream.messages.length + 1, 20_000);
  }
}

interface Report {
  subject: string;
  to: string;
  status: Record<string, Record<string, string>>;
  headers: string;
  text: string;
}

/** Parses a DSN: per-recipient fields of its message/delivery-status part, keyed by Final-Recipient. */
async function report(m: ReceivedMessage): Promise<Report> {
  const mail = await simpleParser(await downstream.raw(m), { keepDeliveryStatus: true });
  const ds = mail.attachments.find((x) => x.contentType === 'message/delivery-status')!.content.toString();
  const status: Record<string, Record<string, string>> = {};
  for (const block of ds.split(/\r?\n\r?\n/).slice(1)) {
    const fields = Object.fromEntries(
      block
        .split(/\r?\n/)
        .filter(Boolean)
        .map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1).trim()]),
    );
    if (fields['Final-Recipient']) status[fields['Final-Recipient'].replace(/^rfc822;\s*/, '')] = fields;
  }
  const headers = mail.attachments.find((x) => x.contentType === 'text/rfc822-headers')!.content.toString();
  return {
    subject: mail.subject ?? '',
    to: mail.to ? [mail.to].flat()[0]!.text : '',
    status,
    headers,
    text: mail.text ?? '',
  };
}

test('refused and expired recipients are reported to the sender with the right status each', async () => {
  await downstream.set({
    rcpt: { 'gone@x.test': '550 5.1.1 <gone@x.test>: no such user', 'slow@x.test': '451 4.2.1 mailbox busy' },
  });
  const relay = await startRelay({
    config: config({ firstRetry: 1, maxBackoff: 1, maxLifetime: 3, delayWarningAfter: 1 }),
  });
  try {
    const testId = `dsn-${process.pid}`;
    const id = await send(relay, 'app@example.com', ['ok@x.test', 'gone@x.test', 'slow@x.test'], testId);
    const [delivered] = await next((m) => m.testId === testId);
    expect(delivered!.to).toEqual(['ok@x.test']);

    const isDsn = (m: ReceivedMessage) => m.from === '' && m.to[0] === 'app@example.com';
    const dsns = await next(isDsn, 3); // failure (gone), delay notice (slow), failure on expiry (slow)
    const reports = await Promise.all(dsns.map(report));
    const failure = reports.find((r) => r.status['gone@x.test'])!;
    expect(failure.subject).toBe('Undelivered Mail Returned to Sender');
    expect(failure.status['gone@x.test']).toMatchObject({
      Action: 'failed',
      Status: '5.1.1',
      'Remote-MTA': 'dns; mx.x.test',
      'Diagnostic-Code': 'smtp; 550 5.1.1 <gone@x.test>: no such user',
    });
    expect(Object.keys(failure.status)).toEqual(['gone@x.test']);
    expect(failure.headers).toContain(`X-Test-Id: ${testId}`);
    expect(failure.headers).toContain(`Subject: report ${testId}`);

    const delay = reports.find((r) => r.status['slow@x.test']?.Action === 'delayed')!;
    expect(delay.subject).toBe('Delayed Mail (still being retried)');
    expect(delay.status['slow@x.test']).toMatchObject({
      Status: '4.2.1',
      'Diagnostic-Code': 'smtp; 451 4.2.1 mailbox busy',
    });
    expect(delay.status['slow@x.test']!['Will-Retry-Until']).toBeDefined();

    const expired = reports.find((r) => r.status['slow@x.test']?.Action === 'failed')!;
    expect(expired.status['slow@x.test']).toMatchObject({
      Status: '5.4.7',
      'Diagnostic-Code': 'smtp; 451 4.2.1 mailbox busy',
    });
    await relay.waitForLog((l) => l.id === id && l.msg === 'message done', 20_000);
    expect(await relay.metric('mailfleet_relay_bounces_total', { kind: 'failed' })).toBe(1);
    expect(await relay.metric('mailfleet_relay_bounces_total', { kind: 'expired' })).toBe(1);
    expect(await relay.metric('mailfleet_relay_bounces_total', { kind: 'delay' })).toBe(1);
    expect(await next(isDsn, 3)).toHaveLength(3);
  } finally {
    await relay.stop();
    await downstream.set({});
  }
});

test('a bounce that cannot be delivered is dropped and counted, never bounced', async () => {
  await downstream.set({
    rcpt: { 'gone@x.test': '550 5.1.1 no such user', 'ghost@example.com': '550 5.1.1 no such sender' },
  });
  const relay = await startRelay({ config: config({ firstRetry: 1, maxBackoff: 1, maxLifetime: 3600 }) });
  try {
    const id = await send(relay, 'ghost@example.com', ['gone@x.test'], `db-${process.pid}`);
    const queued = await relay.waitForLog(
      (l) => l.id === id && l.msg === 'delivery status notification queued',
    );
    await relay.waitForLog(
      (l) => l.msg === 'bounce failed; dropped (a bounce is never bounced)' && l.id === queued.dsn,
    );
    expect(await relay.metric('mailfleet_relay_bounces_dropped_total')).toBe(1);
    expect(await relay.metric('mailfleet_relay_bounces_total', { kind: 'failed' })).toBe(1);
    expect(await relay.metric('mailfleet_relay_spool_messages', { state: 'ready' })).toBe(0);
    expect(await relay.metric('mailfleet_relay_spool_messages', { state: 'deferred' })).toBe(0);
  } finally {
    await relay.stop();
    await downstream.set({});
  }
});

test('mail for a null-MX domain bounces with 5.1.10', async () => {
  // The intake refuses null-MX recipients, so the message is put in the spool directly, as a peer's
  // hand-off or a DNS change after acceptance would leave it.
  const dir = await makeTempDir();
  const spool = await Spool.open({ dir: `${dir}/spool` });
  const testId = `nullmx-${process.pid}`;
  const { id } = await spool.accept(
    {
      mailFrom: 'app@example.com',
      recipients: ['someone@nomail.test'],
      receivedAt: Date.now(),
      listener: 'relay',
      client: { address: '127.0.0.1' },
    },
    Readable.from([`Subject: null mx\r\nX-Test-Id: ${testId}\r\n\r\nbody\r\n`]),
  );
  await spool.close();
  const relay = await startRelay({
    dir,
    config: config({ firstRetry: 1, maxBackoff: 1, maxLifetime: 3600 }),
  });
  try {
    const queued = await relay.waitForLog(
      (l) => l.id === id && l.msg === 'delivery status notification queued',
    );
    await relay.waitForLog((l) => l.id === queued.dsn && l.msg === 'message done');
    const reports = await Promise.all((await next((m) => m.from === '')).map(report));
    const r = reports.find((x) => x.status['someone@nomail.test'])!;
    expect(r.to).toBe('app@example.com');
    expect(r.status['someone@nomail.test']).toMatchObject({ Action: 'failed', Status: '5.1.10' });
    expect(r.status['someone@nomail.test']!['Diagnostic-Code']).toMatch(/^X-mailfleet; .*null MX/);
    expect(r.headers).toContain(`X-Test-Id: ${testId}`);
  } finally {
    await relay.stop();
  }
});
