/**
 * The queue manager against a real spool in a temporary directory, with the network seam (deliver) and
 * the clock faked: scheduling, fairness, state on disk, bounces, DKIM once, damaged bodies, pause.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { text } from 'node:stream/consumers';
import { simpleParser } from 'mailparser';
import type { RelayConfig } from '../../../../relay/config/schema.js';
import type { OutgoingMessage } from '../../../../relay/delivery/attempt.js';
import { queueDsn } from '../../../../relay/delivery/bounce.js';
import {
  QueueManager,
  type QueueManagerOptions,
  type Settlement,
} from '../../../../relay/delivery/queue-manager.js';
import { fromReply, localDeferral, type RecipientOutcome } from '../../../../relay/delivery/replies.js';
import type { DeliveryGroup } from '../../../../relay/delivery/router.js';
import {
  localShapingGate,
  siteOf,
  type ShapingGate,
  type SiteLimits,
} from '../../../../relay/delivery/sites.js';
import { RelayMetrics } from '../../../../relay/metrics.js';
import type { Envelope } from '../../../../relay/spool/envelope.js';
import { Spool } from '../../../../relay/spool/spool.js';
import { FakeClock } from '../../../helpers/fake-clock.js';

const retry = { firstRetry: 300, maxBackoff: 4000, maxLifetime: 86_400, delayWarningAfter: 0 };
function makeConfig(over: Partial<RelayConfig['delivery']> = {}): RelayConfig {
  return {
    hostname: 'relay.test',
    domains: [{ name: 'example.com', allowedUsers: [], allowedSenders: [] }],
    delivery: {
      route: { mode: 'direct' },
      concurrency: 10,
      shaping: { maxConnections: 5, deliveriesPerConnection: 100, messagesPerMinute: 0, sites: [] },
      directPort: 25,
      connectTimeoutMs: 1000,
      commandTimeoutMs: 1000,
      retry,
      ...over,
    },
  } as unknown as RelayConfig;
}

type Reply = (
  rcpt: string,
  msg: OutgoingMessage,
  group: DeliveryGroup,
) => RecipientOutcome | Promise<RecipientOutcome>;

interface Sent {
  id: string;
  from: string;
  to: string[];
  body: string;
  limits: SiteLimits;
}

let dir: string;
let clock: FakeClock;
let spool: Spool;
let qm: QueueManager | undefined;
let sent: Sent[];
let reply: Reply;
let cfg: RelayConfig;
let metrics: RelayMetrics;
let signCalls: number;
let signature: string | undefined;

const envelope = (over: Partial<Envelope> = {}): Envelope => ({
  mailFrom: 'app@example.com',
  recipients: ['a@x.test'],
  receivedAt: clock.now(),
  listener: 'relay',
  client: { address: '127.0.0.1' },
  ...over,
});

async function accept(over: Partial<Envelope> = {}, body = 'Subject: hi\r\n\r\nhello\r\n'): Promise<string> {
  clock.advance(1); // IDs sort by acceptance time
  return (
    await spool.accept(
      envelope(over),
      (async function* () {
        yield body;
      })(),
    )
  ).id;
}

function startManager(over: Partial<QueueManagerOptions> = {}): QueueManager {
  qm = new QueueManager({
    spool,
    config: () => cfg,
    clock,
    metrics,
    deliver: async (msg, group, _signal, limits) => {
      const body = await text(msg.openBody());
      sent.push({ id: msg.id, from: msg.envelope.mailFrom, to: group.recipients, body, limits });
      return Promise.all(group.recipients.map((r) => Promise.resolve(reply(r, msg, group))));
    },
    sign: () => {
      if (signature === undefined) return Promise.resolve(undefined);
      signCalls++;
      return Promise.resolve({ signature });
    },
    queueDsn: (req) => queueDsn(spool, req),
    ...over,
  });
  qm.start();
  return qm;
}

/** Resolves with the next `n` settlements. */
function settlements(n: number): Promise<[string, Settlement][]> {
  const got: [string, Settlement][] = [];
  return new Promise((resolve) => {
    const on = (id: string, how: Settlement) => {
      got.push([id, how]);
      if (got.length === n) {
        qm!.off('settled', on);
        resolve(got);
      }
    };
    qm!.on('settled', on);
  });
}

/** Polls `cond` until it holds (bounded: fails the test instead of hanging). */
async function until(cond: () => boolean | Promise<boolean>): Promise<void> {
  for (let i = 0; i < 100_000; i++) {
    if (await cond()) return;
    await new Promise((r) => setImmediate(r));
  }
  throw new Error('condition never held');
}

const ok: Reply = (r) => fromReply(r, '250 2.0.0 ok', 'mx.test');

beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'qm-'));
  clock = new FakeClock(Date.UTC(2026, 11, 1));
  metrics = new RelayMetrics({ defaultMetrics: false });
  spool = await Spool.open({ dir, now: () => clock.now() });
  sent = [];
  reply = ok;
  cfg = makeConfig();
  signCalls = 0;
  signature = undefined;
});
afterEach(async () => {
  await qm?.stop();
  qm = undefined;
  await spool.close();
  await fs.rm(dir, { recursive: true, force: true });
});

test('recovers the queue at start and removes delivered messages', async () => {
  const a = await accept({ recipients: ['a@x.test', 'b@y.test'] });
  const b = await accept();
  startManager();
  expect((await settlements(2)).sort()).toEqual(
    [
      [a, 'removed'],
      [b, 'removed'],
    ].sort(),
  );
  expect(spool.count).toBe(0);
  expect(sent.map((s) => [s.id, s.to])).toEqual(
    expect.arrayContaining([
      [a, ['a@x.test']],
      [a, ['b@y.test']],
      [b, ['a@x.test']],
    ]),
  );
  expect(sent[0]!.body).toBe('Subject: hi\r\n\r\nhello\r\n');
  expect(await metrics.deliveryAttempts.get()).toMatchObject({
    values: [{ labels: { result: 'delivered' }, value: 3 }],
  });
});

test('mail accepted while running starts at once', async () => {
  startManager();
  const done = settlements(1);
  const id = await accept();
  expect(await done).toEqual([[id, 'removed']]);
});

test('a deferred message waits for nextAttemptAt (persisted), then is delivered', async () => {
  reply = (r) => localDeferral(r, '4.4.1', 'connection refused', 'mx.test');
  const id = await accept();
  startManager();
  expect(await settlements(1)).toEqual([[id, 'deferred']]);
  const state = JSON.parse(await fs.readFile(path.join(dir, 'state', id), 'utf8'));
  expect(state).toMatchObject({ attempts: 1, nextAttemptAt: clock.now() + 300_000 });
  expect(state.recipients['a@x.test']).toMatchObject({ status: 'pending', statusCode: '4.4.1' });

  reply = ok;
  clock.advance(299_999);
  expect(sent).toHaveLength(1);
  const done = settlements(1);
  clock.advance(1);
  expect(await done).toEqual([[id, 'removed']]);
  expect(sent).toHaveLength(2);
});

test('after a restart a deferred message keeps its schedule (not retried early)', async () => {
  reply = (r) => localDeferral(r, '4.4.1', 'refused');
  const id = await accept();
  startManager();
  await settlements(1);
  await qm!.stop();
  await spool.close();

  spool = await Spool.open({ dir, now: () => clock.now() });
  reply = ok;
  startManager();
  expect(qm!.counts()).toMatchObject({ waiting: 1, ready: 0, active: 0 });
  const done = settlements(1);
  clock.advance(300_000);
  expect(await done).toEqual([[id, 'removed']]);
});

test('a slow destination uses at most shaping.maxConnections slots and never starves others', async () => {
  cfg = makeConfig({
    concurrency: 3,
    shaping: { maxConnections: 2, deliveriesPerConnection: 100, messagesPerMinute: 0, sites: [] },
  });
  const release: (() => void)[] = [];
  let slowInFlight = 0;
  let slowMax = 0;
  reply = (r) => {
    if (!r.endsWith('@slow.test')) return fromReply(r, '250 ok');
    slowMax = Math.max(slowMax, ++slowInFlight);
    return new Promise((resolve) =>
      release.push(() => {
        slowInFlight--;
        resolve(fromReply(r, '250 ok'));
      }),
    );
  };
  for (let i = 0; i < 5; i++) await accept({ recipients: [`s${i}@slow.test`] });
  const fast: string[] = [];
  for (let i = 0; i < 10; i++) fast.push(await accept({ recipients: [`f${i}@fast.test`] }));
  startManager();
  // every fast message is delivered while the slow destination holds its two slots
  const fastDone = await settlements(10);
  expect(fastDone.map(([id]) => id).sort()).toEqual(fast.sort());
  expect(release).toHaveLength(2);

  let finished = false;
  void settlements(5).then(() => (finished = true));
  for (let i = 0; i < 100_000 && !finished; i++) {
    release.shift()?.();
    await new Promise((r) => setImmediate(r));
  }
  expect(finished).toBe(true);
  expect(slowMax).toBe(2);
  expect(spool.count).toBe(0);
});

test('a 5xx bounces those recipients: a DSN to the sender from <>, the rest delivered', async () => {
  reply = (r) =>
    r.startsWith('bad') ? fromReply(r, '550 5.1.1 no such user', 'mx.x.test') : ok(r, undefined!, undefined!);
  const id = await accept({ recipients: ['good@x.test', 'bad@x.test'] });
  startManager();
  // the original is removed, then the DSN (accepted into the spool) is delivered
  const done = await settlements(2);
  expect(done).toContainEqual([id, 'removed']);
  const dsn = sent.find((s) => s.from === '')!;
  expect(dsn.to).toEqual(['app@example.com']);
  const mail = await simpleParser(dsn.body, { keepDeliveryStatus: true });
  const status = mail.attachments
    .find((a) => a.contentType === 'message/delivery-status')!
    .content.toString();
  expect(status).toContain('Final-Recipient: rfc822; bad@x.test\r\nAction: failed\r\nStatus: 5.1.1');
  expect(status).not.toContain('good@x.test');
  expect(mail.attachments.find((a) => a.contentType === 'text/rfc822-headers')!.content.toString()).toBe(
    'Subject: hi\r\n',
  );
  expect((await metrics.bounces.get()).values).toEqual([{ labels: { kind: 'failed' }, value: 1 }]);
});

test('a bounce that fails is dropped, never bounced', async () => {
  reply = (r) => fromReply(r, '550 5.1.1 gone');
  const id = await accept({ mailFrom: '' });
  startManager();
  expect(await settlements(1)).toEqual([[id, 'removed']]);
  expect(spool.count).toBe(0);
  expect(sent).toHaveLength(1);
  expect((await metrics.bouncesDropped.get()).values[0]!.value).toBe(1);
});

test('expiry bounces the pending recipients with 5.4.7', async () => {
  cfg = makeConfig({ retry: { ...retry, maxLifetime: 600 } });
  reply = (r) =>
    r === 'a@x.test' ? fromReply(r, '451 4.7.1 greylisted', 'mx.test') : ok(r, undefined!, undefined!);
  const id = await accept();
  startManager();
  await settlements(1); // deferred at t+0, next at t+300
  const second = settlements(1);
  clock.advance(300_000);
  await second; // deferred again, next at expiry (t+600)
  const third = settlements(2);
  clock.advance(300_000);
  const done = await third;
  expect(done).toContainEqual([id, 'removed']);
  const dsn = await simpleParser(sent.find((s) => s.from === '')!.body, { keepDeliveryStatus: true });
  const status = dsn.attachments[0]!.content.toString();
  expect(status).toContain('Status: 5.4.7');
  expect(status).toContain('Diagnostic-Code: smtp; 451 4.7.1 greylisted');
  expect((await metrics.bounces.get()).values).toEqual([{ labels: { kind: 'expired' }, value: 1 }]);
});

test('DKIM: signed once, the same signature on every attempt and destination', async () => {
  signature = 'DKIM-Signature: v=1; d=example.com; s=sel; b=abc\r\n';
  let attempts = 0;
  reply = (r) => (attempts++ < 2 ? localDeferral(r, '4.4.1', 'refused') : fromReply(r, '250 ok'));
  const id = await accept({ recipients: ['a@x.test', 'b@y.test'] });
  startManager();
  await settlements(1);
  const state = JSON.parse(await fs.readFile(path.join(dir, 'state', id), 'utf8'));
  expect(state.dkimSignature).toBe(signature);
  const done = settlements(1);
  clock.advance(300_000);
  await done;
  expect(signCalls).toBe(1);
  expect(sent).toHaveLength(4);
  for (const s of sent) expect(s.body).toBe(signature + 'Subject: hi\r\n\r\nhello\r\n');
});

test('a message whose body is damaged on disk is set aside in corrupt/', async () => {
  const id = await accept({}, 'Subject: x\r\n\r\n' + 'y'.repeat(1000));
  // found after a restart (a just-accepted body is sent from memory at its first attempt); the stop
  // moved it from the journal to queue/, where it is damaged
  await spool.close();
  const file = path.join(dir, 'queue', id);
  const bytes = await fs.readFile(file);
  bytes[bytes.length - 100] = bytes[bytes.length - 100]! ^ 0xff;
  await fs.writeFile(file, bytes);
  spool = await Spool.open({ dir, now: () => clock.now() });
  startManager();
  // deliver() consumes the body: the checksum error surfaces there
  expect(await settlements(1)).toEqual([[id, 'quarantined']]);
  expect(spool.get(id)).toBeUndefined();
  expect(await fs.readdir(path.join(dir, 'corrupt'))).toEqual(expect.arrayContaining([id, `${id}.reason`]));
});

test('multi-destination messages record each group at once; a restart retries only what is pending', async () => {
  const release: (() => void)[] = [];
  reply = (r) =>
    r.endsWith('@slow.test')
      ? new Promise((resolve) => release.push(() => resolve(localDeferral(r, '4.4.1', 'x'))))
      : fromReply(r, '250 ok');
  const id = await accept({ recipients: ['a@fast.test', 'b@slow.test'] });
  startManager();
  // wait until the fast group is recorded on disk while the slow one is still out
  const stateFile = path.join(dir, 'state', id);
  await until(async () => release.length === 1 && (await fs.stat(stateFile).catch(() => null)) !== null);
  const state = JSON.parse(await fs.readFile(path.join(dir, 'state', id), 'utf8'));
  expect(state.recipients['a@fast.test'].status).toBe('delivered');
  expect(state.recipients['b@slow.test'].status).toBe('pending');
  const stopped = qm!.stop();
  release.shift()!();
  await stopped;
  await spool.close();

  spool = await Spool.open({ dir, now: () => clock.now() });
  sent = [];
  reply = ok;
  startManager();
  const done = settlements(1);
  clock.advance(300_000); // the interrupted group was deferred
  await done;
  expect(sent.map((s) => s.to)).toEqual([['b@slow.test']]);
});

test('pause lets running sends finish, gives up queued jobs, and resume picks them up again', async () => {
  cfg = makeConfig({ concurrency: 1 });
  const release: (() => void)[] = [];
  reply = (r) => new Promise((resolve) => release.push(() => resolve(fromReply(r, '250 ok'))));
  const a = await accept();
  const b = await accept();
  startManager();
  await until(() => release.length > 0);
  const paused = qm!.pause();
  release.shift()!();
  await paused;
  expect(spool.get(a)).toBeUndefined();
  expect(spool.get(b)).toBeDefined();
  expect(qm!.counts()).toMatchObject({ active: 0, running: 0 });
  const done = settlements(1);
  qm!.resume();
  await until(() => release.length > 0);
  release.shift()!();
  expect(await done).toEqual([[b, 'removed']]);
});

test('retryNow makes a deferred message due at once and persists it', async () => {
  reply = (r) => localDeferral(r, '4.4.1', 'refused');
  const id = await accept();
  startManager();
  await settlements(1);
  reply = ok;
  const done = settlements(1);
  expect(await qm!.retryNow(id)).toBe('scheduled');
  expect(await done).toEqual([[id, 'removed']]);
  expect(await qm!.retryNow('NOSUCHID0000000000')).toBe('not-found');
});

test('a message being deleted is never attempted meanwhile; when its file cannot go it stays on its schedule', async () => {
  reply = (r) => localDeferral(r, '4.4.1', 'refused');
  const id = await accept();
  startManager();
  await settlements(1); // deferred: next attempt 300 s later
  reply = ok;
  let failRemoval!: (err: Error) => void;
  jest
    .spyOn(spool, 'remove')
    .mockImplementationOnce(() => new Promise((_resolve, reject) => (failRemoval = reject)));
  const deleting = qm!.delete(id);
  expect(await qm!.retryNow(id)).toBe('active'); // a second tool while the removal is under way
  clock.advance(300_000); // its next attempt falls due during the removal
  expect(qm!.isActive(id)).toBe(false);
  expect(sent).toHaveLength(1);

  const done = settlements(1);
  failRemoval(new Error('EPERM: operation not permitted'));
  await expect(deleting).rejects.toThrow('EPERM');
  expect(await done).toEqual([[id, 'removed']]); // back on its schedule, which said "due"
  expect(sent).toHaveLength(2);
  expect(await qm!.delete(id)).toBe('not-found');
});

describe('shaping per destination site', () => {
  const shaping = (over: Partial<RelayConfig['delivery']['shaping']> = {}) =>
    makeConfig({
      shaping: { maxConnections: 5, deliveriesPerConnection: 100, messagesPerMinute: 0, sites: [], ...over },
    });
  /** one.test and two.test are hosted on the same two MX hosts; other domains are their own mail host. */
  const resolver = {
    mailHosts: (domain: string) =>
      Promise.resolve(
        domain === 'one.test' || domain === 'two.test'
          ? {
              kind: 'mx' as const,
              hosts: [
                { exchange: domain === 'one.test' ? 'mx1.shared.test' : 'mx2.shared.test', priority: 10 },
                { exchange: domain === 'one.test' ? 'mx2.shared.test' : 'mx1.shared.test', priority: 10 },
              ],
            }
          : { kind: 'implicit' as const, hosts: [{ exchange: domain, priority: 0 }] },
      ),
  };
  const bySite = async (g: RelayMetrics['siteQueued']): Promise<Record<string, number>> =>
    Object.fromEntries((await g.get()).values.map((v) => [String(v.labels.site), v.value]));
  const deferrals = async () => {
    const out: Record<string, number> = {};
    for (const v of (await metrics.siteShapingDeferrals.get()).values)
      out[`${v.labels.site} ${v.labels.limit}`] = v.value;
    return out;
  };
  /** A gate that answers only when told to, over this pod's own counts. */
  function slowGate() {
    const local = localShapingGate(() => clock.now());
    const answers: (() => void)[] = [];
    const gate: ShapingGate = {
      admit: (site, limit, perMinute) =>
        new Promise((resolve) => answers.push(() => resolve(local.admit(site, limit, perMinute)))),
    };
    return { gate, local, answers };
  }

  test('domains sharing MX hosts are one site: its maxConnections holds across them, other sites flow', async () => {
    cfg = shaping({ maxConnections: 2, sites: [{ match: ['*.shared.test'], deliveriesPerConnection: 7 }] });
    const release: (() => void)[] = [];
    let inFlight = 0;
    let peak = 0;
    reply = (r) => {
      if (!/@(one|two)\.test$/.test(r)) return fromReply(r, '250 ok');
      peak = Math.max(peak, ++inFlight);
      return new Promise((resolve) =>
        release.push(() => {
          inFlight--;
          resolve(fromReply(r, '250 ok'));
        }),
      );
    };
    for (let i = 0; i < 3; i++) {
      await accept({ recipients: [`a${i}@one.test`] });
      await accept({ recipients: [`b${i}@two.test`] });
    }
    const other: string[] = [];
    for (let i = 0; i < 3; i++) other.push(await accept({ recipients: [`c${i}@other.test`] }));
    startManager({ siteOf: (g) => siteOf(resolver, g) });

    const otherDone = await settlements(3);
    expect(otherDone.map(([id]) => id).sort()).toEqual(other.sort());
    await until(() => release.length === 2);
    expect(await bySite(metrics.siteInFlight)).toEqual({ '*.shared.test': 2, default: 0 });
    expect(await bySite(metrics.siteQueued)).toEqual({ '*.shared.test': 4, default: 0 });

    let finished = false;
    void settlements(6).then(() => (finished = true));
    for (let i = 0; i < 100_000 && !finished; i++) {
      release.shift()?.();
      await new Promise((r) => setImmediate(r));
    }
    expect(finished).toBe(true);
    expect(peak).toBe(2);
    // other.test's third message waited too (a site of its own, with the default limit)
    expect(Object.keys(await deferrals()).sort()).toEqual([
      '*.shared.test connections',
      'default connections',
    ]);
    expect(sent.find((s) => s.to[0] === 'a0@one.test')!.limits).toEqual({
      maxConnections: 2,
      deliveriesPerConnection: 7,
      messagesPerMinute: 0,
      label: '*.shared.test',
    });
  });

  test('over messagesPerMinute a message waits (nothing written, no attempt) until the rate allows', async () => {
    cfg = shaping({ messagesPerMinute: 2 });
    const first = [await accept(), await accept()];
    const third = await accept();
    startManager();
    expect((await settlements(2)).map(([id]) => id).sort()).toEqual(first.sort());
    await until(async () => (await deferrals())['default rate'] === 1);
    expect(sent).toHaveLength(2);
    expect(qm!.isActive(third)).toBe(true);
    expect(spool.get(third)!.state).toBeUndefined();
    expect(await bySite(metrics.siteQueued)).toEqual({ default: 1 });

    reply = (r) => localDeferral(r, '4.4.1', 'refused', 'mx.test');
    const done = settlements(1);
    clock.advance(29_999); // 2 per minute: the next message 30 s after the burst
    expect(sent).toHaveLength(2);
    clock.advance(1);
    expect(await done).toEqual([[third, 'deferred']]);
    // the wait was not an attempt: this deferral is its first
    expect(spool.get(third)!.state).toMatchObject({ attempts: 1, nextAttemptAt: clock.now() + 300_000 });
  });

  test('a site the gate finds full (fleet-wide) waits for the re-check; other sites flow meanwhile', async () => {
    let full = true;
    let busyAsks = 0;
    const local = localShapingGate(() => clock.now());
    const gate: ShapingGate = {
      async admit(site, limit, perMinute) {
        await new Promise((r) => setImmediate(r)); // a round trip to the store
        if (site !== 'domain:busy.test') return local.admit(site, limit, perMinute);
        busyAsks++;
        return full ? { refused: 'connections', retryAfterMs: 0 } : local.admit(site, limit, perMinute);
      },
    };
    const busy = [
      await accept({ recipients: ['a@busy.test'] }),
      await accept({ recipients: ['b@busy.test'] }),
    ];
    const free = await accept({ recipients: ['c@free.test'] });
    startManager({ gate, shapingRecheckMs: 500 });
    expect(await settlements(1)).toEqual([[free, 'removed']]);
    await until(async () => (await deferrals())['default connections'] === 2);
    expect(qm!.counts()).toMatchObject({ active: 2, running: 0 });
    const asked = busyAsks;
    clock.advance(499);
    expect(busyAsks).toBe(asked); // held: not asked again before the re-check

    full = false;
    const done = settlements(2);
    clock.advance(1);
    expect((await done).map(([id]) => id).sort()).toEqual(busy.sort());
    expect((await metrics.deliveryAttempts.get()).values).toEqual([
      { labels: { result: 'delivered' }, value: 3 },
    ]);
  });

  test('jobs asking a slow gate at once stay within the site maxConnections on this pod', async () => {
    cfg = shaping({ maxConnections: 2 });
    const { gate, answers } = slowGate();
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push(await accept({ recipients: [`r${i}@x.test`] }));
    startManager({ gate });
    await until(() => answers.length === 2);
    expect(qm!.counts()).toMatchObject({ active: 5, running: 2 });
    expect(await bySite(metrics.siteQueued)).toEqual({ default: 3 });

    let finished = false;
    void settlements(5).then(() => (finished = true));
    for (let i = 0; i < 100_000 && !finished; i++) {
      expect(qm!.counts().running).toBeLessThanOrEqual(2);
      answers.shift()?.();
      await new Promise((r) => setImmediate(r));
    }
    expect(finished).toBe(true);
    expect(sent.map((s) => s.id).sort()).toEqual(ids.sort());
  });

  test('pause() settles messages waiting for shaping at once; they are delivered after resume', async () => {
    cfg = shaping({ messagesPerMinute: 1 });
    const first = await accept();
    const second = await accept();
    startManager();
    expect(await settlements(1)).toEqual([[first, 'removed']]);
    await until(async () => (await deferrals())['default rate'] === 1);
    await qm!.pause();
    expect(qm!.counts()).toMatchObject({ active: 0, running: 0 });
    expect(spool.get(second)!.state).toBeUndefined();
    expect(await bySite(metrics.siteQueued)).toEqual({ default: 0 });

    const done = settlements(1);
    qm!.resume();
    clock.advance(60_000);
    expect(await done).toEqual([[second, 'removed']]);
    expect(sent.map((s) => s.id)).toEqual([first, second]);
  });

  test('pause() while the gate is still answering gives the job up and returns its slot', async () => {
    cfg = shaping({ maxConnections: 1 });
    const { gate, local, answers } = slowGate();
    const id = await accept();
    startManager({ gate });
    await until(() => answers.length === 1);
    const paused = qm!.pause();
    answers.shift()!();
    await paused;
    expect(qm!.counts()).toMatchObject({ active: 0, running: 0 });
    expect(sent).toEqual([]);
    expect(spool.get(id)!.state).toBeUndefined();
    expect(await local.admit('domain:x.test', 1, 0)).toHaveProperty('slot');
  });
});
