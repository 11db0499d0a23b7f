/**
 * The fleet acts as one: three relay processes sharing one real redis-server, delivering to one
 * downstream test server that counts what it receives.
 *
 * - a sender-domain and a client-address rate hold fleet-wide: what the downstream receives stays within
 *   5% of the rate (three pods counting alone would let up to three bursts through); the per-user rate
 *   is the same store call with kind "user" (limits.test.ts has it through one relay);
 * - a site's maxConnections holds fleet-wide (peak of messages in flight at the downstream);
 * - a recipient that bounced 5.1.1 through one pod is refused by the others, listed and removed with
 *   the suppression tool;
 * - the store killed in the middle of a load: every message answered 250 arrives, the pods say
 *   degraded, and they share again by themselves once it is back.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { a, mx, startDnsServer, type TestDnsServer } from '../helpers/dns.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { RELAY_CLI, relayConfig, startRelay, type RelayProcess } from '../helpers/relay.js';
import { SmtpClient } from '../helpers/smtp-client.js';
import { startDownstream, type Downstream } from '../helpers/smtp-downstream.js';

jest.setTimeout(120_000);
const run = promisify(execFile);

let redis: TestRedis;
let dns: TestDnsServer;
let downstream: Downstream;
let relays: RelayProcess[] = [];

beforeAll(async () => {
  [redis, dns, downstream] = await Promise.all([
    startRedis(),
    startDnsServer({ records: [mx('x.test', 'mx.x.test'), a('mx.x.test', '127.0.0.1')] }),
    startDownstream({ rules: { rcpt: { 'gone@x.test': '550 5.1.1 <gone@x.test>: no such user' } } }),
  ]);
});

afterAll(async () => {
  await Promise.all(relays.map((r) => r.stop()));
  await Promise.all([redis?.stop(), dns?.stop(), downstream?.stop()]);
});

afterEach(async () => {
  await Promise.all(relays.map((r) => r.stop()));
  relays = [];
});

/** Three relays of one fleet: one store, one key prefix, mail to the downstream as their smarthost. */
async function startFleet(over: { limits?: object; shaping?: object; store?: object; to?: Downstream } = {}) {
  const prefix = `mailfleet:test/${Math.random().toString(36).slice(2)}:`;
  relays = await Promise.all(
    [0, 1, 2].map(() =>
      startRelay({
        config: relayConfig({
          dns: { servers: [dns.server], timeoutMs: 2000, tries: 1 },
          domains: [{ name: 'example.com', allowedUsers: ['*'] }],
          limits: { exemptNetworks: [], ...over.limits },
          delivery: {
            route: {
              mode: 'smarthost',
              smarthost: { host: '127.0.0.1', port: (over.to ?? downstream).port, tls: 'none' },
            },
            connectTimeoutMs: 2000,
            commandTimeoutMs: 10_000,
            retry: { firstRetry: 1, maxBackoff: 1, maxLifetime: 3600 },
            ...(over.shaping ? { shaping: over.shaping } : {}),
          },
          fleetStore: { url: redis.url, keyPrefix: prefix, timeoutMs: 200, ...over.store },
        }),
      }),
    ),
  );
  for (const r of relays) await until(`${r.pid} shares`, async () => (await fleetState(r)) === 'shared');
}

async function fleetState(r: RelayProcess): Promise<string> {
  return (JSON.parse((await r.admin('/fleet')).body) as { state: string }).state;
}

async function until(what: string, check: () => Promise<boolean>, tries = 400): Promise<void> {
  for (let i = 0; i < tries; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`never: ${what}`);
}

/** One transaction; the reply to MAIL, RCPT or the final dot that decided it. */
async function transaction(c: SmtpClient, from: string, to: string, tag: string) {
  const mail = await c.command(`MAIL FROM:<${from}>`);
  if (mail.code !== 250) return mail;
  const rcpt = await c.command(`RCPT TO:<${to}>`);
  if (rcpt.code !== 250) {
    await c.command('RSET');
    return rcpt;
  }
  await c.command('DATA');
  return c.command(`Subject: ${tag}\r\nX-Test-Id: ${tag}\r\n\r\nhello\r\n.`);
}

/** `sessions` connections per relay, each sending `each` messages back to back: the 250s' tags. */
async function load(opts: {
  sessions: number;
  each: number;
  tag: string;
  during?: (sent: number) => Promise<void>;
}) {
  const accepted: string[] = [];
  let sent = 0;
  await Promise.all(
    relays.flatMap((r, ri) =>
      Array.from({ length: opts.sessions }, async (_, si) => {
        const c = await SmtpClient.connect(r.ports.relay!);
        await c.command('EHLO load.test');
        for (let m = 0; m < opts.each; m++) {
          const tag = `${opts.tag}-${ri}-${si}-${m}`;
          const reply = await transaction(c, 'app@example.com', `to${m}@x.test`, tag);
          if (reply.code === 250) accepted.push(tag);
          await opts.during?.(++sent);
        }
        await c.command('QUIT');
      }),
    ),
  );
  return accepted;
}

test.each([
  ['sender-domain', 'messagesPerMinutePerSenderDomain'],
  ['client-address', 'messagesPerMinutePerClient'],
])('a %s rate holds fleet-wide: the downstream receives it within 5%%', async (_what, limit) => {
  const perMinute = 60; // a burst of 60, then one a second
  await startFleet({ limits: { [limit]: perMinute } });
  const before = downstream.messages.length;
  const started = Date.now();
  const accepted = await load({ sessions: 2, each: 40, tag: `rate-${limit}` }); // 240 tries: 4× the burst
  const seconds = (Date.now() - started) / 1000;
  // What the rate allows over the time the load took: its burst plus what refilled meanwhile.
  const allowed = perMinute + (perMinute / 60) * seconds;
  expect(accepted.length).toBeGreaterThanOrEqual(perMinute);
  expect(accepted.length).toBeLessThanOrEqual(Math.floor(allowed * 1.05));
  const received = await downstream.waitForMessages(before + accepted.length, 60_000);
  expect(
    received
      .slice(before)
      .map((m) => m.testId)
      .sort(),
  ).toEqual([...accepted].sort());
});

test("a site's maxConnections holds fleet-wide", async () => {
  const slow = await startDownstream({ rules: { dataDelayMs: 200 } }); // deliveries overlap when let
  try {
    await startFleet({ shaping: { maxConnections: 2 }, to: slow });
    const accepted = await load({ sessions: 1, each: 6, tag: 'shape' });
    expect(accepted).toHaveLength(18);
    await slow.waitForMessages(18, 60_000);
    // Each pod counting alone: 3 pods × 2 could have had 6 in flight at once.
    expect(slow.peakTransactions).toBe(2);
  } finally {
    await Promise.all(relays.map((r) => r.stop()));
    relays = [];
    await slow.stop();
  }
});

test('a recipient that bounced 5.1.1 on one pod is refused by every pod, until removed', async () => {
  await startFleet();
  const c0 = await SmtpClient.connect(relays[0]!.ports.relay!);
  await c0.command('EHLO a.test');
  expect((await transaction(c0, 'app@example.com', 'gone@x.test', 'gone')).code).toBe(250);
  await until(
    'the bounce put gone@x.test on the list',
    async () =>
      (await relays[0]!.metric('mailfleet_relay_suppressions_added_total', { source: 'bounce' })) === 1,
  );
  for (const r of relays.slice(1)) {
    const c = await SmtpClient.connect(r.ports.relay!);
    await c.command('EHLO b.test');
    await c.command('MAIL FROM:<app@example.com>');
    const rcpt = await c.command('RCPT TO:<gone@x.test>');
    expect(rcpt).toMatchObject({ code: 550, enhanced: '5.1.1' });
    expect(rcpt.raw).toMatch(/suppressed/);
    expect((await c.command('RCPT TO:<other@x.test>')).code).toBe(250);
    c.close();
  }
  const cli = (i: number, ...args: string[]) =>
    run(process.execPath, [
      RELAY_CLI,
      'suppression',
      ...args,
      '--admin',
      `http://127.0.0.1:${relays[i]!.ports.admin}`,
    ]);
  const listed = JSON.parse((await cli(2, 'list', '--json')).stdout) as { address: string; reason: string }[];
  expect(listed).toEqual([
    expect.objectContaining({ address: 'gone@x.test', reason: expect.stringMatching(/5\.1\.1/) }),
  ]);
  expect((await cli(1, 'remove', 'gone@x.test')).stdout).toMatch(/removed/);
  const c2 = await SmtpClient.connect(relays[2]!.ports.relay!);
  await c2.command('EHLO c.test');
  await c2.command('MAIL FROM:<app@example.com>');
  expect((await c2.command('RCPT TO:<gone@x.test>')).code).toBe(250);
  c2.close();
  c0.close();

  // The export seeds the list again, reason and all.
  const file = path.join(relays[0]!.dir, 'suppressed.json');
  await fs.writeFile(file, JSON.stringify(listed));
  expect((await cli(0, 'add', '--from', file)).stdout).toMatch(/^1 address\(es\) suppressed$/m);
  expect(JSON.parse((await cli(1, 'list', '--json')).stdout)).toEqual([
    expect.objectContaining({ address: 'gone@x.test', reason: listed[0]!.reason }),
  ]);
});

test('the store killed mid-load: nothing answered 250 is lost, pods say degraded, then share again', async () => {
  await startFleet();
  const before = downstream.messages.length;
  let killed = false;
  const accepted = await load({
    sessions: 2,
    each: 30,
    tag: 'kill',
    during: async (sent) => {
      if (sent !== 60 || killed) return;
      killed = true;
      await redis.kill('SIGKILL');
    },
  });
  expect(killed).toBe(true);
  expect(accepted).toHaveLength(180); // no limit refuses these; the store's absence refuses nothing
  for (const r of relays) expect(await fleetState(r)).toBe('degraded');
  const received = await downstream.waitForMessages(before + accepted.length, 60_000);
  expect(new Set(received.slice(before).map((m) => m.testId))).toEqual(new Set(accepted));

  await redis.restart();
  for (const r of relays)
    await until(`${r.pid} shares again`, async () => (await fleetState(r)) === 'shared');
});
