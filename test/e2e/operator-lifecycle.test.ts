/**
 * The operator's life cycle of a relay fleet on the real control plane, with one operator process for the
 * file (the chart's ServiceAccount and RBAC, leader election on, a 10 s resync):
 *
 * - `kubectl apply` of examples/smtprelay.yaml and examples/maildomain.yaml gives a StatefulSet, headless
 *   and client Services, the config ConfigMap, Secrets and a PDB, each with a controller owner reference;
 *   the SmtpRelay and the MailDomain become Ready at their current generation; the MailDomain lists its
 *   DNS records and finds them once the test's DNS server publishes them;
 * - `kubectl get` shows the printer columns; `kubectl scale` goes through the scale subresource;
 * - a spec change reaches the children (a limit in the rendered config without touching the pod template,
 *   replicas, a new MailDomain in the config); a deleted child comes back;
 * - a scale-down the operator cannot drain (no relay answers on the pod IPs) keeps the pods and says so,
 *   until the skip-drain annotation lets it shrink;
 * - steady state: a minute of resyncs without one write;
 * - deleting the SmtpRelay waits on its finalizer, then the garbage collector removes every child.
 */
import path from 'node:path';
import YAML from 'yaml';
import { clusterFromEnv, type Cluster, type KubeObject } from '../cluster/kube.js';
import type { RelayConfig } from '../../relay/config/schema.js';
import { startDnsServer, txt, type TestDnsServer, type ZoneRecord } from '../helpers/dns.js';
import {
  conditionOf,
  describeWrites,
  EXAMPLES_DIR,
  installOperator,
  startOperator,
  type OperatorNamespace,
  type OperatorProcess,
} from './operator.js';

jest.setTimeout(240_000);

let k: Cluster;
let env: OperatorNamespace;
let dns: TestDnsServer;
let op: OperatorProcess;
let ns: string;
let fileStart: number;

const RELAY = 'mail';
const OWNED_BY_RELAY = [
  `statefulset/${RELAY}`,
  `service/${RELAY}`,
  `service/${RELAY}-headless`,
  `configmap/${RELAY}-config`,
  `secret/${RELAY}-runtime`,
  `secret/${RELAY}-credentials`,
  `secret/${RELAY}-internal`,
  `secret/${RELAY}-ca`,
  `secret/${RELAY}-tls`,
  `poddisruptionbudget/${RELAY}`,
];

beforeAll(async () => {
  k = clusterFromEnv();
  fileStart = Date.now();
  env = await installOperator(k, 'lifecycle');
  ns = env.ns;
  dns = await startDnsServer({ records: [] });
  op = await startOperator(k, env, { dnsServer: dns.server, syncPeriod: '10s', dnsCheckInterval: '3s' });
});

afterAll(async () => {
  await op?.stop();
  await dns?.stop();
  await env?.cleanup();
});

const get = (resource: string) => k.get(resource, { namespace: ns });

async function mustGet(resource: string): Promise<KubeObject> {
  const obj = await get(resource);
  if (!obj) throw new Error(`${resource} does not exist in ${ns}`);
  return obj;
}

/** The relay config the operator rendered into the ConfigMap. */
function relayConfig(cm: KubeObject): RelayConfig {
  return YAML.parse((cm.data as Record<string, string>)['relay.yaml']!) as RelayConfig;
}

function expectControlledBy(obj: KubeObject, owner: KubeObject): void {
  const refs = obj.metadata.ownerReferences ?? [];
  const ctl = refs.filter((r) => r.controller);
  expect({ object: `${obj.kind}/${obj.metadata.name}`, controllers: ctl }).toEqual({
    object: `${obj.kind}/${obj.metadata.name}`,
    controllers: [
      expect.objectContaining({ kind: owner.kind, name: owner.metadata.name, uid: owner.metadata.uid }),
    ],
  });
}

const patch = (resource: string, body: object) =>
  k.kubectl(['patch', resource, '-n', ns, '--type=merge', '-p', JSON.stringify(body)]);

test('kubectl apply of the examples: every child exists, owned by its SmtpRelay, and the SmtpRelay becomes Ready', async () => {
  await k.kubectl([
    'apply',
    '-n',
    ns,
    '-f',
    path.join(EXAMPLES_DIR, 'smtprelay.yaml'),
    '-f',
    path.join(EXAMPLES_DIR, 'maildomain.yaml'),
  ]);
  const relay = await op.waitForCondition(`smtprelay/${RELAY}`, 'Ready', {
    generation: true,
    timeoutMs: 120_000,
  });
  expect(relay.metadata.finalizers).toContain('mailfleet.dev/drain');
  expect(relay.status).toMatchObject({
    observedGeneration: relay.metadata.generation,
    replicas: 2,
    readyReplicas: 2,
    credentialsSecret: `${RELAY}-credentials`,
    caSecret: `${RELAY}-tls`,
    domains: ['example.com'],
    selector: `app.kubernetes.io/name=mailfleet-relay,app.kubernetes.io/instance=${RELAY}`,
    endpoints: {
      host: `${RELAY}.${ns}.svc`,
      ports: [
        { name: 'submission', port: 587 },
        { name: 'relay', port: 2525 },
      ],
    },
  });
  for (const type of ['Degraded', 'Progressing', 'Draining'])
    expect(conditionOf(relay, type)).toMatchObject({
      status: 'False',
      observedGeneration: relay.metadata.generation,
    });
  expect(conditionOf(relay, 'TLSReady')).toMatchObject({ status: 'True', reason: 'CertificateReady' });
  // The example has no fleetStore: each pod counts alone, and status says so.
  expect(conditionOf(relay, 'FleetStore')).toMatchObject({ status: 'False', reason: 'PerPod' });

  for (const child of OWNED_BY_RELAY) expectControlledBy(await mustGet(child), relay);

  const sts = await mustGet(`statefulset/${RELAY}`);
  expect(sts.spec).toMatchObject({ replicas: 2, serviceName: `${RELAY}-headless` });
  expect((await mustGet(`service/${RELAY}-headless`)).spec).toMatchObject({ clusterIP: 'None' });
  const config = relayConfig(await mustGet(`configmap/${RELAY}-config`));
  expect(config.limits).toMatchObject({ maxMessageBytes: 10485760, maxRecipients: 50 });
  expect(config.domains).toEqual([
    expect.objectContaining({ name: 'example.com', allowedUsers: ['app', 'alerts'] }),
  ]);
  const creds = (await mustGet(`secret/${RELAY}-credentials`)).data as Record<string, string>;
  expect(Object.keys(creds).sort()).toEqual(['alerts', 'app']);
  for (const pw of Object.values(creds)) expect(Buffer.from(pw, 'base64').length).toBeGreaterThanOrEqual(16);
  const runtime = (await mustGet(`secret/${RELAY}-runtime`)).data as Record<string, string>;
  expect(Object.keys(runtime)).toEqual(
    expect.arrayContaining(['users', 'tls.crt', 'tls.key', 'ca.crt', 'admin-token', 'dkim-example.com.key']),
  );

  for (const pod of [`${RELAY}-0`, `${RELAY}-1`]) {
    const p = await op.waitForCondition(`pod/${pod}`, 'Ready');
    expect((p.status?.podIP as string).startsWith('127.')).toBe(true);
  }
  for (const pvc of [`queue-${RELAY}-0`, `queue-${RELAY}-1`]) {
    const claim = await op.waitFor(`pvc/${pvc} Bound`, async () => {
      const c = await get(`pvc/${pvc}`);
      return c?.status?.phase === 'Bound' ? c : undefined;
    });
    expect((claim.status as { capacity?: { storage?: string } }).capacity?.storage).toBe('2Gi');
  }
});

test('the MailDomain becomes Ready, lists its DNS records, and finds them once they are published', async () => {
  const domain = await op.waitForCondition('maildomain/example-com', 'Ready', { generation: true });
  expect(domain.status).toMatchObject({ relay: RELAY, dkimSecret: 'example-com-dkim' });
  expectControlledBy(await mustGet('secret/example-com-dkim'), domain);
  const records = domain.status?.dnsRecords as Array<{ purpose: string; name: string; value: string }>;
  expect(records.map((r) => [r.purpose, r.name])).toEqual([
    ['DKIM', 'mailfleet._domainkey.example.com'],
    ['SPF', 'example.com'],
    ['DMARC', '_dmarc.example.com'],
  ]);
  expect(records[0]!.value).toMatch(/^v=DKIM1; k=rsa; p=[A-Za-z0-9+/=]{300,}$/);
  expect(records[1]!.value).toBe('v=spf1 mx ~all');
  expect(records[2]!.value).toBe('v=DMARC1; p=none');
  const missing = await op.waitForCondition('maildomain/example-com', 'DNSVerified', { status: 'False' });
  expect(conditionOf(missing, 'DNSVerified')).toMatchObject({
    reason: 'RecordsMissing',
    message: expect.stringContaining('publish DKIM TXT at mailfleet._domainkey.example.com'),
  });

  // Publish them (a long DKIM value as 255-byte strings, as DNS carries it).
  const published: ZoneRecord[] = records.map((r) => txt(r.name, r.value.match(/.{1,255}/g) ?? [r.value]));
  await dns.setZone({ records: published });
  const verified = await op.waitForCondition('maildomain/example-com', 'DNSVerified', {
    reason: 'RecordsFound',
    timeoutMs: 60_000,
  });
  expect((verified.status?.dnsRecords as Array<{ found: boolean }>).every((r) => r.found)).toBe(true);
});

test('kubectl get shows the printer columns; short names and the mailfleet category work', async () => {
  const relays = await k.kubectl(['get', 'smtprelays', '-n', ns]);
  const [header, row] = relays.stdout.trim().split('\n');
  expect(header!.split(/\s+/)).toEqual(['NAME', 'REPLICAS', 'READY', 'STATUS', 'REASON', 'FLEET', 'AGE']);
  expect(row!.split(/\s+/).slice(0, 6)).toEqual([RELAY, '2', '2', 'True', 'Ready', 'PerPod']);
  const wide = await k.kubectl(['get', 'smtpr', RELAY, '-n', ns, '-o', 'wide']);
  expect(wide.stdout).toContain('ENDPOINT');
  expect(wide.stdout).toContain(`${RELAY}.${ns}.svc`);
  const domains = await k.kubectl(['get', 'maild', '-n', ns]);
  expect(domains.stdout.split('\n')[0]!.split(/\s+/)).toEqual(
    expect.arrayContaining(['NAME', 'DOMAIN', 'RELAY', 'STATUS']),
  );
  expect(domains.stdout).toMatch(/example-com\s+example\.com\s+mail\s+True/);
  const all = await k.kubectl(['get', 'mailfleet', '-n', ns, '-o', 'name']);
  expect(all.stdout.trim().split('\n').sort()).toEqual([
    'maildomain.mailfleet.dev/example-com',
    `smtprelay.mailfleet.dev/${RELAY}`,
  ]);
});

test('a limit changed in the spec reaches the rendered config without touching the pod template', async () => {
  const sts = await mustGet(`statefulset/${RELAY}`);
  await patch(`smtprelay/${RELAY}`, { spec: { limits: { maxMessageBytes: 2097152, maxRecipients: 7 } } });
  await op.waitFor('the relay config to carry the new limits', async () => {
    const limits = relayConfig(await mustGet(`configmap/${RELAY}-config`)).limits;
    return limits.maxMessageBytes === 2097152 && limits.maxRecipients === 7;
  });
  await op.waitForCondition(`smtprelay/${RELAY}`, 'Ready', { generation: true });
  const after = await mustGet(`statefulset/${RELAY}`);
  // Reload, not restart: the StatefulSet (and so its pods) did not change.
  expect(after.metadata.generation).toBe(sts.metadata.generation);
  expect(after.spec?.template).toEqual(sts.spec?.template);
});

test('a new MailDomain appears in its relay config, status and runtime Secret', async () => {
  await k.apply(
    {
      apiVersion: 'mailfleet.dev/v1alpha1',
      kind: 'MailDomain',
      metadata: { name: 'example-org' },
      spec: { domain: 'Example.ORG', relayRef: { name: RELAY }, allowedSenders: ['noreply@example.org'] },
    },
    { namespace: ns },
  );
  await op.waitForCondition('maildomain/example-org', 'Ready', { generation: true });
  const config = relayConfig(await mustGet(`configmap/${RELAY}-config`));
  expect(config.domains.map((d) => d.name)).toEqual(['example.com', 'example.org']);
  expect(config.domains[1]).toMatchObject({
    allowedUsers: ['*'],
    allowedSenders: ['noreply@example.org'],
    dkim: { selector: 'mailfleet', keyFile: '/etc/mailfleet/dkim-example.org.key' },
  });
  const runtime = (await mustGet(`secret/${RELAY}-runtime`)).data as Record<string, string>;
  expect(runtime['dkim-example.org.key']).toBeDefined();
  const relay = await mustGet(`smtprelay/${RELAY}`);
  expect(relay.status?.domains).toEqual(['example.com', 'example.org']);
});

test('kubectl scale goes through the scale subresource; a scale-down that cannot drain keeps the pods until skip-drain', async () => {
  const before = Date.now();
  await k.kubectl(['scale', `smtprelay/${RELAY}`, '-n', ns, '--replicas=3']);
  const scaleWrite = k.auditEvents(
    (e) =>
      e.objectRef?.resource === 'smtprelays' &&
      e.objectRef.subresource === 'scale' &&
      e.objectRef.namespace === ns &&
      Date.parse(e.requestReceivedTimestamp) >= before - 1000,
  );
  expect(describeWrites(scaleWrite)).toEqual([
    expect.stringMatching(/^patch smtprelays\/scale .*\/mail \(200\)$/),
  ]);
  expect((await mustGet(`smtprelay/${RELAY}`)).spec?.replicas).toBe(3);
  const ready = await op.waitForCondition(`smtprelay/${RELAY}`, 'Ready', {
    generation: true,
    match: (r) => r.status?.readyReplicas === 3,
    matchWhat: 'readyReplicas 3',
  });
  expect((await mustGet(`statefulset/${RELAY}`)).spec?.replicas).toBe(3);
  const scale = await k.kubectlJson<{
    spec: { replicas: number };
    status: { replicas: number; selector: string };
  }>(['get', `smtprelay/${RELAY}`, '-n', ns, '--subresource=scale']);
  expect(scale).toMatchObject({
    spec: { replicas: 3 },
    status: { replicas: 3, selector: ready.status?.selector },
  });

  // Down to 2: pod 2 must be drained first, and nothing answers on its IP, so it is kept.
  await k.kubectl(['scale', `smtprelay/${RELAY}`, '-n', ns, '--replicas=2']);
  const stuck = await op.waitForCondition(`smtprelay/${RELAY}`, 'Degraded', {
    reason: 'DrainFailed',
    generation: true,
  });
  expect(conditionOf(stuck, 'Degraded')?.message).toMatch(new RegExp(`pod ${RELAY}-2 .*failed`));
  expect(conditionOf(stuck, 'Ready')).toMatchObject({ status: 'False', reason: 'Draining' });
  expect(conditionOf(stuck, 'Draining')).toMatchObject({ status: 'True', reason: 'ScaleDown' });
  expect(stuck.status?.drainingPods).toEqual([`${RELAY}-2`]);
  expect((await mustGet(`statefulset/${RELAY}`)).spec?.replicas).toBe(3);
  expect(await get(`pod/${RELAY}-2`)).toBeDefined();

  await k.kubectl(['annotate', `smtprelay/${RELAY}`, '-n', ns, 'mailfleet.dev/skip-drain=true']);
  await op.waitFor('the StatefulSet to shrink to 2', async () => {
    const sts = await get(`statefulset/${RELAY}`);
    return sts?.spec?.replicas === 2;
  });
  await k.waitForGone(`pod/${RELAY}-2`, { namespace: ns });
  await k.kubectl(['annotate', `smtprelay/${RELAY}`, '-n', ns, 'mailfleet.dev/skip-drain-']);
  const back = await op.waitForCondition(`smtprelay/${RELAY}`, 'Ready', { generation: true });
  expect(conditionOf(back, 'Degraded')).toMatchObject({ status: 'False' });
  expect(back.status?.drainingPods).toBeUndefined();
});

test('a deleted child comes back: ConfigMap, Services, runtime Secret, PDB, StatefulSet', async () => {
  const relay = await mustGet(`smtprelay/${RELAY}`);
  for (const child of [
    `configmap/${RELAY}-config`,
    `service/${RELAY}`,
    `service/${RELAY}-headless`,
    `secret/${RELAY}-runtime`,
    `poddisruptionbudget/${RELAY}`,
    `statefulset/${RELAY}`,
  ]) {
    const old = await mustGet(child);
    await k.kubectl(['delete', child, '-n', ns, '--wait=true', '--timeout=60s']);
    const again = await op.waitFor(`${child} to be recreated`, async () => {
      const o = await get(child);
      return o && o.metadata.uid !== old.metadata.uid ? o : undefined;
    });
    expectControlledBy(again, relay);
  }
  const config = relayConfig(await mustGet(`configmap/${RELAY}-config`));
  expect(config.limits.maxRecipients).toBe(7);
  const ready = await op.waitForCondition(`smtprelay/${RELAY}`, 'Ready', {
    generation: true,
    match: (r) => r.status?.readyReplicas === 2,
    matchWhat: 'readyReplicas 2',
    timeoutMs: 120_000,
  });
  expect(ready.status?.replicas).toBe(2);
});

test('steady state: no writes by the operator during a minute of resyncs', async () => {
  for (const r of [`smtprelay/${RELAY}`, 'maildomain/example-com', 'maildomain/example-org'])
    await op.waitForCondition(r, 'Ready', { generation: true });
  // Converged: the operator's last write is 15 s old (bounded: it must get there within 2 minutes).
  await op
    .waitFor('no operator write for 15 s', () => op.writes(Date.now() - 15_000).length === 0, {
      timeoutMs: 120_000,
      intervalMs: 1000,
    })
    .catch((e: Error) => {
      const recent = describeWrites(op.writes(Date.now() - 30_000));
      throw new Error(`${e.message}\noperator writes of the last 30 s:\n${recent.join('\n')}`, { cause: e });
    });
  const reconciles = async () => ({
    relay: await op.metricSum('controller_runtime_reconcile_total', { controller: 'smtprelay' }),
    domain: await op.metricSum('controller_runtime_reconcile_total', { controller: 'maildomain' }),
  });
  // The audit filter does see this operator's writes (everything it created so far).
  expect(describeWrites(op.writes(fileStart))).toEqual(
    expect.arrayContaining([
      expect.stringMatching(new RegExp(`^patch statefulsets ${ns}/${RELAY} \\(20[01]\\)$`)),
    ]),
  );
  const start = Date.now();
  const before = await reconciles();
  // The window itself is the requirement (a minute at --sync-period=10s); fail as soon as a write shows.
  while (Date.now() - start < 60_000) {
    const writes = op.writes(start);
    expect(describeWrites(writes)).toEqual([]);
    expect(op.running()).toBe(true);
    await new Promise((r) => setTimeout(r, 2000));
  }
  expect(describeWrites(op.writes(start))).toEqual([]);
  const after = await reconciles();
  // Several resyncs really happened: 1 relay and 2 domains, re-queued every 10 s (at least 4 rounds).
  expect(after.relay - before.relay).toBeGreaterThanOrEqual(4);
  expect(after.domain - before.domain).toBeGreaterThanOrEqual(8);
});

test('deleting the SmtpRelay waits on its finalizer, then its children are garbage-collected', async () => {
  const relay = await mustGet(`smtprelay/${RELAY}`);
  await k.kubectl(['delete', `smtprelay/${RELAY}`, '-n', ns, '--wait=false']);
  // Nothing answers on the pod IPs, so the drain cannot happen: the finalizer holds the object.
  const held = await op.waitForCondition(`smtprelay/${RELAY}`, 'Ready', {
    status: 'False',
    reason: 'Deleting',
  });
  expect(held.metadata.uid).toBe(relay.metadata.uid);
  expect(held.metadata.deletionTimestamp).toBeDefined();
  expect(held.metadata.finalizers).toContain('mailfleet.dev/drain');
  const degraded = await op.waitForCondition(`smtprelay/${RELAY}`, 'Degraded', { reason: 'DrainFailed' });
  expect(conditionOf(degraded, 'Degraded')?.message).toContain(
    'to delete without draining, annotate the SmtpRelay mailfleet.dev/skip-drain=true',
  );
  for (const child of OWNED_BY_RELAY) expect(await get(child)).toBeDefined();

  await k.kubectl(['annotate', `smtprelay/${RELAY}`, '-n', ns, 'mailfleet.dev/skip-drain=true']);
  await op.waitFor(
    `smtprelay/${RELAY} to be gone`,
    async () => (await get(`smtprelay/${RELAY}`)) === undefined,
  );
  for (const child of [...OWNED_BY_RELAY, `pod/${RELAY}-0`, `pod/${RELAY}-1`])
    await op.waitFor(`${child} to be garbage-collected`, async () => (await get(child)) === undefined);
  // Queue volumes outlive a deletion that skipped the drain (whenDeleted: Retain).
  expect(await get(`pvc/queue-${RELAY}-0`)).toBeDefined();
  // MailDomains are not owned by the relay: they stay and say what is wrong.
  const orphan = await op.waitForCondition('maildomain/example-com', 'Ready', {
    status: 'False',
    reason: 'RelayNotFound',
  });
  expect(conditionOf(orphan, 'Ready')?.message).toBe(
    `SmtpRelay ${RELAY} does not exist in namespace ${ns}; create it or fix spec.relayRef.name`,
  );
  expect(op.running()).toBe(true);
});
