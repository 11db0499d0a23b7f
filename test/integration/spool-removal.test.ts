/**
 * A delivered message whose file cannot be removed (here: chattr +i, which even root cannot unlink; on
 * a real volume: a read-only remount, a failing disk) is not forgotten by the running relay: it stays
 * in the queue listing and the spool metrics, and its removal is retried after the backoff without
 * sending it again. The queue tool's delete says why it failed instead of claiming success.
 */
import path from 'node:path';
import fs from 'node:fs/promises';
import nodemailer from 'nodemailer';
import { setImmutable } from '../helpers/fs-faults.js';
import { a, mx, startDnsServer, type TestDnsServer } from '../helpers/dns.js';
import { metricValue, relayConfig, startRelay, type RelayProcess } from '../helpers/relay.js';
import { startDownstream, type Downstream } from '../helpers/smtp-downstream.js';

jest.setTimeout(60_000);

let dns: TestDnsServer;
let downstream: Downstream;
let relay: RelayProcess;

beforeAll(async () => {
  dns = await startDnsServer({ records: [mx('x.test', 'mail.x.test'), a('mail.x.test', '127.0.0.1')] });
  downstream = await startDownstream({ rules: { data: '451 4.3.0 try again later' } });
  relay = await startRelay({
    config: relayConfig({
      dns: { servers: [dns.server], timeoutMs: 2000, tries: 1 },
      delivery: {
        route: { mode: 'smarthost', smarthost: { host: '127.0.0.1', port: downstream.port, tls: 'none' } },
        retry: { firstRetry: 1, maxBackoff: 1, maxLifetime: 3600 },
      },
    }),
  });
});

afterAll(async () => {
  await relay?.stop();
  await Promise.all([downstream?.stop(), dns?.stop()]);
});

let seq = 0;
async function send(): Promise<{ id: string; testId: string }> {
  const testId = `rm${++seq}-${process.pid}`;
  const client = nodemailer.createTransport({ host: '127.0.0.1', port: relay.ports.relay, ignoreTLS: true });
  try {
    const info = await client.sendMail({
      envelope: { from: 'app@example.com', to: ['rcpt@x.test'] },
      raw: `From: <app@example.com>\r\nTo: <rcpt@x.test>\r\nSubject: ${testId}\r\nX-Test-Id: ${testId}\r\n\r\nbody\r\n`,
    });
    return { id: /queued as (\S+)/.exec(info.response)![1]!, testId };
  } finally {
    client.close();
  }
}

const queued = async () =>
  (JSON.parse((await relay.admin('/queue')).body) as { messages: { id: string }[] }).messages.map(
    (m) => m.id,
  );
/** Queued messages in any state, from one scrape: while the removal is retried every second the message
 *  moves between ready, active and deferred, so three scrapes could each miss it. */
const spoolMessages = async () => {
  const scrape = (await relay.admin('/metrics')).body;
  let n = 0;
  for (const state of ['ready', 'deferred', 'active'])
    n += metricValue(scrape, 'mailfleet_relay_spool_messages', { state }) ?? 0;
  return n;
};

test('a delivered message whose file cannot be removed stays queued and is removed later, sent once', async () => {
  const { id, testId } = await send();
  await relay.waitForLog((l) => l.id === id && l.msg === 'message deferred');
  const file = path.join(relay.spoolDir, 'queue', id);
  await setImmutable(file, true);
  try {
    const failed = relay.nextLog(
      (l) => l.id === id && /could not remove a finished message/.test(l.msg ?? ''),
    );
    await downstream.set({});
    await failed;
    const delivered = (await downstream.waitForMessages(1)).filter((m) => m.testId === testId);
    expect(delivered).toHaveLength(1);
    // the file is still there, and the running relay still knows it
    await fs.access(file);
    expect(await queued()).toEqual([id]);
    expect(await spoolMessages()).toBe(1);
  } finally {
    await setImmutable(file, false);
  }
  await relay.waitForLog((l) => l.id === id && l.msg === 'message done', 20_000);
  await expect(fs.access(file)).rejects.toThrow(/ENOENT/);
  expect(await queued()).toEqual([]);
  expect(await spoolMessages()).toBe(0);
  // the retry only removed the file: one delivery in all
  expect(await relay.metric('mailfleet_relay_delivery_attempts_total', { result: 'delivered' })).toBe(1);
});

test('queue delete of a file that cannot be removed answers 500 with the reason and keeps it', async () => {
  await downstream.set({ data: '451 4.3.0 try again later' });
  const { id } = await send();
  await relay.waitForLog((l) => l.id === id && l.msg === 'message deferred');
  const file = path.join(relay.spoolDir, 'queue', id);
  const del = () =>
    relay.admin('/queue/delete', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ id }),
    });
  await setImmutable(file, true);
  try {
    // the message may be in an attempt (retried every second): 409 then, so ask again
    let r = await del();
    for (let i = 0; r.status === 409 && i < 50; i++) r = await del();
    expect(r.status).toBe(500);
    expect(JSON.parse(r.body).error).toMatch(
      new RegExp(`could not remove ${id}: .*EPERM.*it stays in the queue`),
    );
    expect(await queued()).toContain(id);
  } finally {
    await setImmutable(file, false);
  }
  let r = await del();
  for (let i = 0; r.status === 409 && i < 50; i++) r = await del();
  expect(r.status).toBe(200);
  expect(await queued()).not.toContain(id);
});
