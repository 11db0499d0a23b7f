/**
 * "Scales and drains without stranding queued messages", end to end: a 2-replica SmtpRelay whose pods are
 * real relay processes on the pods' loopback IPs (test/e2e/pod-relay.ts), running the config and files
 * the operator rendered, delivering to a smarthost (a test SMTP server) that defers everything.
 *
 * - Messages queued on pod 1; `kubectl scale smtprelay/mail --replicas=1`: the operator asks pod 1 to
 *   drain with pod 0 as peer and keeps the StatefulSet at 2 while it drains — status says Draining —
 *   (pod 0's relay is started only then, so the drain is seen waiting on its peer); once pod 1 reports
 *   drained and empty, the StatefulSet shrinks, pod 1 and its queue volume go, and every message is in
 *   pod 0's queue, each exactly once, with its envelope.
 * - Deleting the SmtpRelay: the finalizer holds it while pod 0 drains without peers (delivers what it
 *   holds to the smarthost, now accepting slowly), then releases it; every message arrives downstream,
 *   DKIM-signed with the key the operator generated, and the children are garbage-collected.
 */
import nodemailer from 'nodemailer';
import { clusterFromEnv, type Cluster } from '../cluster/kube.js';
import { a, mx, startDnsServer, type TestDnsServer } from '../helpers/dns.js';
import { startDownstream, type Downstream } from '../helpers/smtp-downstream.js';
import {
  conditionOf,
  installOperator,
  startOperator,
  type OperatorNamespace,
  type OperatorProcess,
} from './operator.js';
import { startPodRelay, type PodRelay } from './pod-relay.js';

jest.setTimeout(240_000);

const RELAY = 'mail';
const N = 20;
const PORTS = { submission: 10587, relay: 12525, admin: 19091 };

let k: Cluster;
let env: OperatorNamespace;
let dns: TestDnsServer;
let downstream: Downstream;
let op: OperatorProcess;
let ns: string;
const relays: PodRelay[] = [];
let pod0: PodRelay;
let pod1: PodRelay;
const recipients = Array.from({ length: N }, (_, i) => `rcpt-${i}@dest.test`);

beforeAll(async () => {
  k = clusterFromEnv();
  env = await installOperator(k, 'drain');
  ns = env.ns;
  dns = await startDnsServer({ records: [mx('dest.test', 'mx.dest.test'), a('mx.dest.test', '127.0.0.1')] });
  // The smarthost defers every recipient until told otherwise: mail stays queued where it is.
  downstream = await startDownstream({ rules: { rcptDefault: '451 4.3.0 try again later' } });
  op = await startOperator(k, env, { dnsServer: dns.server, drainPeerAddress: 'ip', syncPeriod: '30s' });
});

afterAll(async () => {
  for (const r of relays) await r.stop();
  await op?.stop();
  await Promise.all([dns?.stop(), downstream?.stop()]);
  await env?.cleanup();
});

const get = (resource: string) => k.get(resource, { namespace: ns });

/** Runs `step`; on failure adds what the relays and the SmtpRelay status say. */
async function explained<T>(step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (e) {
    const parts = [e instanceof Error ? e.message : String(e)];
    for (const r of relays) parts.push(await r.describe());
    const status = await get(`smtprelay/${RELAY}`).then(
      (o) => JSON.stringify(o?.status ?? 'gone', null, 1),
      (err: Error) => err.message,
    );
    parts.push(`smtprelay/${RELAY} status: ${status}`);
    throw new Error(parts.join('\n\n'), { cause: e });
  }
}

async function send(relay: PodRelay, to: string): Promise<void> {
  const client = nodemailer.createTransport({
    host: relay.ip,
    port: relay.relay.ports.relay,
    ignoreTLS: true,
  });
  try {
    await client.sendMail({
      envelope: { from: 'app@example.com', to: [to] },
      raw: `From: <app@example.com>\r\nTo: <${to}>\r\nSubject: for ${to}\r\nX-Test-Id: ${to}\r\n\r\nqueued on ${relay.pod}\r\n`,
    });
  } finally {
    client.close();
  }
}

test('a 2-replica SmtpRelay with a deferring smarthost is Ready, and its pods run real relays with the rendered config', async () => {
  await k.apply(
    [
      {
        apiVersion: 'mailfleet.dev/v1alpha1',
        kind: 'SmtpRelay',
        metadata: { name: RELAY },
        spec: {
          replicas: 2,
          listeners: {
            submission: { enabled: true, port: PORTS.submission },
            relay: { enabled: true, port: PORTS.relay, allowedNetworks: ['127.0.0.0/8'] },
          },
          monitoring: { metricsPort: PORTS.admin },
          delivery: {
            route: {
              mode: 'smarthost',
              smarthost: { host: '127.0.0.1', port: downstream.port, tls: 'none' },
            },
          },
          queue: { retry: { firstRetrySeconds: 3600, maxBackoffSeconds: 3600 } },
        },
      },
      {
        apiVersion: 'mailfleet.dev/v1alpha1',
        kind: 'MailDomain',
        metadata: { name: 'example-com' },
        spec: { domain: 'example.com', relayRef: { name: RELAY } },
      },
    ],
    { namespace: ns },
  );
  await op.waitForCondition(`smtprelay/${RELAY}`, 'Ready', { generation: true, timeoutMs: 120_000 });
  await op.waitForCondition('maildomain/example-com', 'Ready', { generation: true });
  // Only pod 1 runs for now; pod 0's relay starts once pod 1 is seen draining towards it.
  pod1 = await startPodRelay(k, ns, RELAY, `${RELAY}-1`, { dnsServer: dns.server });
  relays.push(pod1);
  expect(pod1.relay.ports).toMatchObject({
    submission: PORTS.submission,
    relay: PORTS.relay,
    admin: PORTS.admin,
  });
  expect(await pod1.drain()).toMatchObject({ state: 'idle', queued: 0 });
});

test('scale 2 -> 1: pod 1 drains into pod 0 before the StatefulSet shrinks; no message is stranded, lost or doubled', async () => {
  for (const to of recipients) await send(pod1, to);
  const queued = await op.waitFor(`${N} deferred messages on ${pod1.pod}`, async () => {
    const q = await pod1.queue();
    return q.length === N && q.every((m) => m.state === 'deferred') ? q : undefined;
  });
  expect(queued.flatMap((m) => m.recipients.map((r) => r.address)).sort()).toEqual([...recipients].sort());
  expect(downstream.messages).toEqual([]);

  await k.kubectl(['scale', `smtprelay/${RELAY}`, '-n', ns, '--replicas=1']);
  // Pod 1 was told to drain with pod 0 as its peer; pod 0 does not answer yet, so the drain waits.
  const draining = await op.waitForCondition(`smtprelay/${RELAY}`, 'Draining', {
    reason: 'ScaleDown',
    generation: true,
  });
  expect(draining.status?.drainingPods).toEqual([`${RELAY}-1`]);
  expect(conditionOf(draining, 'Ready')).toMatchObject({ status: 'False', reason: 'Draining' });
  const report = await op.waitFor('pod 1 to report draining', async () => {
    const d = await pod1.drain();
    return d.state === 'draining' ? d : undefined;
  });
  expect(report.queued).toBe(N);
  expect((await get(`statefulset/${RELAY}`))?.spec?.replicas).toBe(2);
  expect(await get(`pod/${RELAY}-1`)).toBeDefined();
  expect(
    ((await get(`pod/${RELAY}-1`))?.metadata.annotations as Record<string, string> | undefined)?.[
      'mailfleet.dev/drain-started'
    ],
  ).toMatch(/^\d{4}-/);
  expect((await pod1.admin('/readyz')).status).toBe(503);
  await expect(send(pod1, 'late@dest.test')).rejects.toThrow();

  pod0 = await startPodRelay(k, ns, RELAY, `${RELAY}-0`, { dnsServer: dns.server });
  relays.push(pod0);
  await explained(() =>
    op.waitFor(
      'the StatefulSet to shrink to 1',
      async () => (await get(`statefulset/${RELAY}`))?.spec?.replicas === 1,
      { timeoutMs: 90_000 },
    ),
  );
  // Shrunk only after pod 1 reported drained and empty.
  expect(await pod1.drain()).toEqual({
    state: 'drained',
    queued: 0,
    handedOff: N,
    delivered: 0,
    failed: expect.any(Number),
  });
  expect(await pod1.queue()).toEqual([]);
  await k.waitForGone(`pod/${RELAY}-1`, { namespace: ns });
  // The drained queue volume goes with it (whenScaled: Delete); pod 0's stays.
  await k.waitForGone(`pvc/queue-${RELAY}-1`, { namespace: ns });
  expect(await get(`pvc/queue-${RELAY}-0`)).toBeDefined();

  const held = await pod0.queue();
  expect(held.flatMap((m) => m.recipients.map((r) => r.address)).sort()).toEqual([...recipients].sort());
  expect(held.every((m) => m.sender === 'app@example.com')).toBe(true);
  expect(await pod0.metric('mailfleet_relay_messages_received_total', { listener: 'submission' })).toBe(N);
  expect(downstream.messages).toEqual([]);

  const ready = await op.waitForCondition(`smtprelay/${RELAY}`, 'Ready', {
    generation: true,
    match: (r) => r.status?.readyReplicas === 1 && r.status?.replicas === 1,
    matchWhat: '1 replica',
  });
  expect(conditionOf(ready, 'Draining')).toMatchObject({ status: 'False' });
  expect(ready.status?.drainingPods).toBeUndefined();
});

test('deleting the SmtpRelay drains pod 0 (delivering its queue) before the finalizer lets it go', async () => {
  // The smarthost now accepts, slowly (8 s per message, all in parallel), so the drain is seen in progress.
  await downstream.set({ dataDelayMs: 8000 });
  await k.kubectl(['delete', `smtprelay/${RELAY}`, '-n', ns, '--wait=false']);
  const deleting = await op.waitForCondition(`smtprelay/${RELAY}`, 'Draining', { reason: 'Deletion' });
  expect(deleting.metadata.deletionTimestamp).toBeDefined();
  expect(deleting.metadata.finalizers).toContain('mailfleet.dev/drain');
  expect(conditionOf(deleting, 'Ready')).toMatchObject({ status: 'False', reason: 'Deleting' });

  await op.waitFor(
    `smtprelay/${RELAY} to be gone`,
    async () => (await get(`smtprelay/${RELAY}`)) === undefined,
    {
      timeoutMs: 120_000,
    },
  );
  expect(await pod0.drain()).toEqual({ state: 'drained', queued: 0, handedOff: 0, delivered: N, failed: 0 });
  // Everything arrived once, with its original envelope, signed by the relay with the operator's DKIM key.
  const got = await downstream.waitForMessages(N, 30_000);
  expect(downstream.messages).toHaveLength(N);
  expect(
    got
      .map((m) => m.to)
      .flat()
      .sort(),
  ).toEqual([...recipients].sort());
  expect(got.every((m) => m.from === 'app@example.com')).toBe(true);
  const raw = (await downstream.raw(got[0]!)).toString();
  expect(raw).toMatch(/^DKIM-Signature: .*d=example\.com;/m);
  expect(raw).toMatch(/s=mailfleet;/);

  for (const child of [
    `statefulset/${RELAY}`,
    `configmap/${RELAY}-config`,
    `secret/${RELAY}-runtime`,
    `service/${RELAY}`,
  ])
    await op.waitFor(`${child} to be garbage-collected`, async () => (await get(child)) === undefined);
  const events = await k.kubectlJson<{ items: Array<{ reason: string; message: string }> }>([
    'get',
    'events',
    '-n',
    ns,
    '--field-selector',
    `involvedObject.kind=SmtpRelay,involvedObject.name=${RELAY}`,
  ]);
  expect(events.items.map((e) => `${e.reason}: ${e.message}`)).toEqual(
    expect.arrayContaining([
      `DrainStarted: draining pod ${RELAY}-1 (handing mail to 1 peer(s))`,
      `DrainStarted: draining pod ${RELAY}-0 (delivering its queue)`,
      'Deleted: all pods drained; deleting them and their queue volumes',
    ]),
  );
});
