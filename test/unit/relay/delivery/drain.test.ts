/**
 * The drain controller against a real spool and queue manager, with the hand-off seam faked: peers in
 * turn, partial acceptance recorded, passes repeated for what nobody took, delivery mode, idempotence.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { RelayConfig } from '../../../../relay/config/schema.js';
import { Drainer } from '../../../../relay/delivery/drain.js';
import { QueueManager } from '../../../../relay/delivery/queue-manager.js';
import { QueueOps } from '../../../../relay/delivery/queue-ops.js';
import { fromReply, localDeferral, type RecipientOutcome } from '../../../../relay/delivery/replies.js';
import { RelayMetrics } from '../../../../relay/metrics.js';
import { Spool } from '../../../../relay/spool/spool.js';
import { FakeClock } from '../../../helpers/fake-clock.js';

const config = {
  hostname: 'relay.test',
  domains: [],
  delivery: {
    route: { mode: 'direct' },
    concurrency: 4,
    shaping: { maxConnections: 2, deliveriesPerConnection: 100, messagesPerMinute: 0, sites: [] },
    retry: { firstRetry: 300, maxBackoff: 4000, maxLifetime: 86_400, delayWarningAfter: 0 },
  },
} as unknown as RelayConfig;

let dir: string;
let clock: FakeClock;
let spool: Spool;
let queue: QueueManager;
let metrics: RelayMetrics;
let deliverReply: (r: string) => RecipientOutcome;
let draining: boolean[];
let drainer: Drainer | undefined;

async function accept(recipients: string[], mailFrom = 'app@example.com'): Promise<string> {
  clock.advance(1);
  const env = {
    mailFrom,
    recipients,
    receivedAt: clock.now(),
    listener: 'relay' as const,
    client: { address: '' },
  };
  return (
    await spool.accept(
      env,
      (async function* () {
        yield 'Subject: x\r\n\r\nbody\r\n';
      })(),
    )
  ).id;
}

async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 100_000; i++) {
    if (cond()) return;
    await new Promise((r) => setImmediate(r));
  }
  throw new Error('condition never held');
}

function makeDrainer(handOff: (id: string, rcpts: string[], peer: string) => RecipientOutcome[]) {
  drainer = new Drainer({
    spool,
    queue,
    metrics,
    clock,
    retryDelayMs: 5000,
    parallel: 2,
    setDraining: (on) => draining.push(on),
    handOff: (entry, rcpts, peer) => Promise.resolve(handOff(entry.id, rcpts, peer)),
  });
  return drainer;
}

beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'drain-'));
  clock = new FakeClock(Date.UTC(2026, 11, 1));
  metrics = new RelayMetrics({ defaultMetrics: false });
  spool = await Spool.open({ dir, now: () => clock.now() });
  draining = [];
  deliverReply = (r) => localDeferral(r, '4.4.1', 'refused');
  queue = new QueueManager({
    spool,
    config: () => config,
    clock,
    deliver: (_msg, group) => Promise.resolve(group.recipients.map((r) => deliverReply(r))),
    sign: () => Promise.resolve(undefined),
    queueDsn: () => Promise.reject(new Error('no bounces expected')),
  });
});
afterEach(async () => {
  await drainer?.stop();
  drainer = undefined;
  await queue.stop();
  await spool.close();
  await fs.rm(dir, { recursive: true, force: true });
});

test('hands every message to the peers in turn and removes it after their 250', async () => {
  const ids = [
    await accept(['a@x.test']),
    await accept(['b@x.test']),
    await accept(['c@x.test', 'd@y.test']),
  ];
  queue.start();
  await until(() => queue.counts().waiting === 3); // all deferred once
  const calls: [string, string[], string][] = [];
  const d = makeDrainer((id, rcpts, peer) => {
    calls.push([id, rcpts, peer]);
    return rcpts.map((r) => fromReply(r, '250 2.0.0 queued as PEER', peer));
  });
  expect(d.start(['p1:587', 'p2:587'])).toMatchObject({ state: 'draining', queued: 3 });
  expect(draining).toEqual([true]);
  await until(() => d.status().state === 'drained');
  expect(d.status()).toEqual({ state: 'drained', queued: 0, handedOff: 3, delivered: 0, failed: 0 });
  expect(calls.map((c) => c[0]).sort()).toEqual([...ids].sort());
  expect(new Set(calls.map((c) => c[2]))).toEqual(new Set(['p1:587', 'p2:587']));
  expect(calls.find((c) => c[0] === ids[2])![1]).toEqual(['c@x.test', 'd@y.test']);
  expect((await metrics.handoffs.get()).values).toEqual([{ labels: { result: 'ok' }, value: 3 }]);
  expect(queue.isPaused).toBe(true);
});

test('what one peer refuses goes to the next; partial acceptance is saved; nothing taken waits for the next pass', async () => {
  const id = await accept(['a@x.test', 'b@x.test']);
  queue.start();
  await until(() => queue.counts().waiting === 1);
  let peerDown = true;
  const calls: [string[], string][] = [];
  const d = makeDrainer((_id, rcpts, peer) => {
    calls.push([rcpts, peer]);
    if (peer === 'p1:587')
      return rcpts.map((r) => (r === 'a@x.test' ? fromReply(r, '250 ok') : fromReply(r, '451 later')));
    if (peerDown) return rcpts.map((r) => localDeferral(r, '4.4.1', 'connect ECONNREFUSED'));
    return rcpts.map((r) => fromReply(r, '250 ok'));
  });
  d.start(['p1:587', 'p2:587']);
  await until(() => d.status().failed === 1);
  expect(calls).toEqual([
    [['a@x.test', 'b@x.test'], 'p1:587'],
    [['b@x.test'], 'p2:587'],
  ]);
  const state = JSON.parse(await fs.readFile(path.join(dir, 'state', id), 'utf8'));
  expect(state.recipients['a@x.test'].status).toBe('delivered');
  expect(state.recipients['b@x.test'].status).toBe('pending');

  peerDown = false;
  clock.advance(5000); // next pass
  await until(() => d.status().state === 'drained');
  expect(calls.slice(2).map((c) => c[0])).toEqual([['b@x.test']]);
  expect(d.status()).toMatchObject({ handedOff: 1, failed: 1, queued: 0 });
});

test('a message handed off whose file cannot be removed stays queued; the next pass removes it without a second hand-off', async () => {
  const id = await accept(['a@x.test']);
  queue.start();
  await until(() => queue.counts().waiting === 1);
  const calls: string[][] = [];
  const d = makeDrainer((_id, rcpts) => {
    calls.push(rcpts);
    return rcpts.map((r) => fromReply(r, '250 ok'));
  });
  const remove = jest
    .spyOn(spool, 'remove')
    .mockRejectedValueOnce(new Error('EPERM: operation not permitted'));
  d.start(['p1:587']);
  await until(() => remove.mock.calls.length === 1);
  await until(() => spool.get(id)?.state?.recipients['a@x.test']?.status === 'delivered');
  expect(d.status()).toMatchObject({ state: 'draining', queued: 1, handedOff: 0 });

  clock.advance(5000); // next pass
  await until(() => d.status().state === 'drained');
  expect(calls).toEqual([['a@x.test']]);
  expect(d.status()).toMatchObject({ handedOff: 1, queued: 0 });
});

test('while a peer has a message the queue tools are refused (active) and it is not attempted', async () => {
  const id = await accept(['a@x.test']);
  queue.start();
  await until(() => queue.counts().waiting === 1);
  let answer!: () => void;
  const peerAnswered = new Promise<void>((resolve) => (answer = resolve));
  let calls = 0;
  drainer = new Drainer({
    spool,
    queue,
    clock,
    setDraining: (on) => draining.push(on),
    handOff: async (_entry, rcpts) => {
      calls++;
      await peerAnswered;
      return rcpts.map((r) => fromReply(r, '250 ok'));
    },
  });
  drainer.start(['p1:587']);
  await until(() => calls === 1);
  const ops = new QueueOps(spool, queue);
  expect(await ops.delete(id)).toBe('active');
  expect(await ops.retry(id)).toBe('active');
  expect(spool.count).toBe(1);

  answer();
  await until(() => drainer!.status().state === 'drained');
  expect(drainer.status()).toMatchObject({ handedOff: 1, delivered: 0, queued: 0 });
  expect(await ops.delete(id)).toBe('not-found');
});

test('without peers it delivers: deferred mail is made due at once; drained when the queue is empty', async () => {
  await accept(['a@x.test']);
  await accept(['b@x.test']);
  queue.start();
  await until(() => queue.counts().waiting === 2);
  deliverReply = (r) => fromReply(r, '250 ok');
  const d = makeDrainer(() => {
    throw new Error('no hand-off without peers');
  });
  d.start([]);
  await until(() => d.status().state === 'drained');
  expect(d.status()).toEqual({ state: 'drained', queued: 0, handedOff: 0, delivered: 2, failed: 0 });
});

test('start is idempotent, and an empty queue is drained at once', async () => {
  queue.start();
  const d = makeDrainer(() => []);
  d.start([]);
  d.start([]);
  await until(() => d.status().state === 'drained');
  expect(draining).toEqual([true]);
});

test('a drain loop that fails says so, counts it, lets the queue deliver, and starts again when asked', async () => {
  await accept(['a@x.test']);
  queue.start();
  await until(() => queue.counts().waiting === 1);
  let broken = true;
  drainer = new Drainer({
    spool,
    queue,
    metrics,
    clock,
    retryDelayMs: 5000,
    parallel: 2,
    setDraining: (on) => draining.push(on),
    handOff: (_entry, rcpts) =>
      broken
        ? Promise.reject(new Error("ENOENT: no such file or directory, open '/run/handoff/password'"))
        : Promise.resolve(rcpts.map((r) => fromReply(r, '250 ok'))),
  });
  drainer.start(['p1:587']);
  await until(() => drainer!.status().state === 'failed');
  expect(drainer.status()).toMatchObject({
    state: 'failed',
    queued: 1,
    error: "ENOENT: no such file or directory, open '/run/handoff/password'",
  });
  expect((await metrics.drainFailures.get()).values).toEqual([{ labels: {}, value: 1 }]);
  expect(queue.isPaused).toBe(false);
  expect(draining).toEqual([true]);

  broken = false;
  expect(drainer.start(['p1:587'])).toMatchObject({ state: 'draining' });
  await until(() => drainer!.status().state === 'drained');
  expect(drainer.status()).toEqual({ state: 'drained', queued: 0, handedOff: 1, delivered: 0, failed: 0 });
});

test('a hand-off that fails ends the pass only after the others in flight ended (none writes after it)', async () => {
  const first = await accept(['a@x.test']);
  const second = await accept(['b@x.test']);
  queue.start();
  await until(() => queue.counts().waiting === 2);
  let answerSecond!: () => void;
  const secondAnswered = new Promise<void>((resolve) => (answerSecond = resolve));
  let calls = 0;
  drainer = new Drainer({
    spool,
    queue,
    metrics,
    clock,
    parallel: 2,
    setDraining: (on) => draining.push(on),
    handOff: async (entry, rcpts) => {
      calls++;
      if (entry.id === first) throw new Error('peer password unreadable');
      await secondAnswered;
      return rcpts.map((r) => fromReply(r, '250 ok'));
    },
  });
  drainer.start(['p1:587']);
  await until(() => calls === 2);
  for (let i = 0; i < 100; i++) await new Promise((r) => setImmediate(r));
  expect(drainer.status().state).toBe('draining'); // the second hand-off is still out
  answerSecond();
  await until(() => drainer!.status().state === 'failed');
  expect(drainer.status()).toMatchObject({ error: 'peer password unreadable', handedOff: 1 });
  expect(spool.get(second)).toBeUndefined(); // its removal happened before the loop reported
  expect(spool.get(first)).toBeDefined();
});
