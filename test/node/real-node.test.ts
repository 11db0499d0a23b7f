/**
 * mailfleet as its users run it: the image built from the Dockerfile (scripts/image.sh), installed with
 * the chart and running as real pods on the test cluster's real node (test/cluster/node.ts), with the
 * examples applied as they are. The test plays the world around the cluster on the host side of the
 * node's link: a DNS server that CoreDNS forwards to (the recipient domain's MX, and the DKIM record once
 * the test publishes what the MailDomain's status asks for) and the MX host itself on port 25, which
 * the example's direct delivery reaches.
 *
 * In order, each step building on the last (one file: one helm release, one relay fleet):
 *  1. helm install: the operator pods run from the image, one holds the Lease, and it reconciles with its
 *     in-cluster configuration (the ServiceAccount token the kubelet mounts) and the chart's RBAC.
 *  2. the examples applied: relay pods Running and Ready from the same image, queue PVCs bound to local
 *     volumes that the kubelet made writable through fsGroup.
 *  3. swaks through the Service (STARTTLS verified against the operator's CA, AUTH with the generated
 *     credentials): delivered DKIM-signed (verified against the published key); `kubectl exec … queue
 *     list` and `kubectl logs` show it as a user sees it.
 *  4. a spec change (a user, a limit) reaches the pods through the kubelet's projected volume and the
 *     relays reload it without a restart; the new user can send.
 *  5. with the MX deferring, mail queued on a pod survives its container being killed and the pod being
 *     deleted: the queue is read back from the PVC and delivered once the MX accepts again; the pods'
 *     /metrics, scraped over the pod network, say the same as the queue tools.
 *  6. kubectl scale --replicas=1 drains pod 1 to pod 0 over the pod network, then pod 1 and its claim
 *     go; kubectl delete drains pod 0 to the MX and everything is collected; no message lost or doubled.
 */
import { spawn } from 'node:child_process';
import { Resolver } from 'node:dns/promises';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { dkimVerify } from 'mailauth';
import { clusterFromEnv, NODE_STATE_ENV, type Cluster, type KubeObject } from '../cluster/kube.js';
import { DNS_UPSTREAM_PORT } from '../cluster/node.js';
import { run } from '../cluster/proc.js';
import { a, mx, startDnsServer, txt, type TestDnsServer, type ZoneRecord } from '../helpers/dns.js';
import { startDownstream, type Downstream, type ReceivedMessage } from '../helpers/smtp-downstream.js';
import { swaks } from '../helpers/swaks.js';
import { CHART_DIR, EXAMPLES_DIR, sumSamples } from '../e2e/operator.js';

jest.setTimeout(600_000);

const RELAY = 'mail';
const OP_NS = 'mailfleet-system';
const RELEASE = 'mf';

let k: Cluster;
let ns: string;
let host: string;
let dns: TestDnsServer;
let mxHost: Downstream;
let caFile: string;
let serviceIp: string;
const zone: ZoneRecord[] = [];
const sent = new Map<string, string>(); // recipient -> queue ID

beforeAll(async () => {
  k = clusterFromEnv(NODE_STATE_ENV);
  host = k.info.hostAddress;
  zone.push(mx('dest.test', 'mx.dest.test'), a('mx.dest.test', host));
  // CoreDNS forwards every name outside cluster.local here (test/cluster/node.ts).
  dns = await startDnsServer({ records: zone }, { host, port: DNS_UPSTREAM_PORT });
  // The example delivers directly: the MX of dest.test, on port 25 of the host side of the link.
  mxHost = await startDownstream({ host, port: 25, name: 'mx.dest.test' });
  ns = await k.createNamespace('apps');
});

afterAll(async () => {
  // Leave the cluster as found (it may be one started by hand and reused).
  if (ns) {
    await k.kubectl(
      ['patch', `smtprelay/${RELAY}`, '-n', ns, '--type=merge', '-p', '{"metadata":{"finalizers":null}}'],
      {
        allowFailure: true,
      },
    );
    await k.deleteNamespace(ns);
  }
  await k?.helm(['uninstall', RELEASE, '--namespace', OP_NS, '--wait'], {
    allowFailure: true,
    timeoutMs: 180_000,
  });
  await Promise.all([dns?.stop(), mxHost?.stop()]);
  if (caFile) fs.rmSync(path.dirname(caFile), { recursive: true, force: true });
});

const kube = (args: string[], namespace = ns) => k.kubectl(args, { namespace });
const get = (resource: string, namespace = ns) => k.get(resource, { namespace });

interface Pod extends KubeObject {
  status?: {
    phase?: string;
    podIP?: string;
    conditions?: { type: string; status: string }[];
    containerStatuses?: {
      name: string;
      image: string;
      ready: boolean;
      restartCount: number;
      containerID?: string;
    }[];
  };
  spec?: { nodeName?: string; containers: { image: string }[] } & Record<string, unknown>;
}

const ready = (p: Pod | undefined) =>
  !!p?.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');

async function pod(name: string, namespace = ns): Promise<Pod | undefined> {
  return (await get(`pod/${name}`, namespace)) as Pod | undefined;
}

async function readyPod(name: string, what = `pod ${name} Ready`, timeoutMs = 180_000): Promise<Pod> {
  return k.waitFor(
    what,
    async () => {
      const p = await pod(name);
      return ready(p) ? p : undefined;
    },
    { timeoutMs },
  );
}

/** `mailfleet-relay ARGS` in the relay container, as a user runs it with kubectl exec. */
async function relayCli(podName: string, args: string[]): Promise<string> {
  const r = await k.kubectl(['exec', '-n', ns, podName, '-c', 'relay', '--', 'mailfleet-relay', ...args]);
  return r.stdout;
}

interface QueueItem {
  id: string;
  state: string;
  recipients: { address: string; status: string }[];
}

async function queue(podName: string): Promise<QueueItem[]> {
  return JSON.parse(await relayCli(podName, ['queue', 'list', '--json'])) as QueueItem[];
}

async function password(user: string): Promise<string> {
  const s = await get(`secret/${RELAY}-credentials`);
  const v = (s?.data as Record<string, string> | undefined)?.[user];
  if (!v) throw new Error(`no password for ${user} in secret/${RELAY}-credentials`);
  return Buffer.from(v, 'base64').toString('utf8');
}

/** swaks to `server` (the Service's ClusterIP or a pod IP, port 587 unless given) with STARTTLS verified against the operator's CA. */
async function submit(server: string, user: string, to: string[], sni = `${RELAY}.${ns}.svc`) {
  const r = await swaks([
    '--server',
    server.includes(':') ? server : `${server}:587`,
    '--tls',
    '--tls-verify',
    '--tls-ca-path',
    caFile,
    '--tls-sni',
    sni,
    '--auth',
    'LOGIN',
    '--auth-user',
    user,
    '--auth-password',
    await password(user),
    '--from',
    `${user}@example.com`,
    '--to',
    to.join(','),
    '--header',
    `X-Test-Id: ${to.join(',')}`,
  ]);
  return r;
}

async function submitQueued(server: string, user: string, to: string, sni?: string): Promise<string> {
  const r = await submit(server, user, [to], sni);
  const id = r.replies.map((l) => /^250 2\.0\.0 Ok: queued as ([0-9A-Z]+)$/.exec(l)?.[1]).find(Boolean);
  if (r.code !== 0 || !id) throw new Error(`swaks to ${server} for ${to}: exit ${r.code}\n${r.output}`);
  sent.set(to, id);
  return id;
}

function arrivedFor(to: string): ReceivedMessage[] {
  return mxHost.messages.filter((m) => m.to.includes(to));
}

async function waitArrived(recipients: string[], timeoutMs = 120_000): Promise<void> {
  await k.waitFor(
    `${recipients.length} message(s) at the MX (${recipients.join(', ')})`,
    () => recipients.every((r) => arrivedFor(r).length > 0),
    { timeoutMs, intervalMs: 500 },
  );
}

async function metricsOf(podName: string): Promise<string> {
  const p = await pod(podName);
  const res = await fetch(`http://${p!.status!.podIP}:9091/metrics`, { signal: AbortSignal.timeout(5000) });
  expect(res.status).toBe(200);
  return res.text();
}

test('1. helm install: the operator runs from the image, one replica leads, and it reconciles with its in-cluster config and the chart RBAC', async () => {
  // The chart's defaults, but for how often MailDomain DNS records are looked up (5 minutes by default).
  await k.helm(
    [
      'install',
      RELEASE,
      CHART_DIR,
      '--namespace',
      OP_NS,
      '--create-namespace',
      '--set',
      'operator.dnsCheckInterval=5s',
      '--wait',
      '--timeout',
      '300s',
    ],
    {
      timeoutMs: 330_000,
    },
  );
  const list = await k.kubectlJson<{ items: Pod[] }>(
    ['get', 'pods', '-l', `app.kubernetes.io/component=operator,app.kubernetes.io/instance=${RELEASE}`],
    { namespace: OP_NS },
  );
  expect(list.items).toHaveLength(2);
  const chartValues = fs.readFileSync(path.join(CHART_DIR, 'Chart.yaml'), 'utf8');
  const appVersion = /^appVersion:\s*['"]?([^'"\s]+)/m.exec(chartValues)![1];
  for (const p of list.items) {
    expect(ready(p)).toBe(true);
    expect(p.spec!.nodeName).toBe(k.info.realNode!.name);
    expect(p.status!.containerStatuses![0]).toMatchObject({
      image: `ghcr.io/mailfleet/mailfleet:${appVersion}`,
      ready: true,
      restartCount: 0,
    });
  }
  const leader = await k.waitFor('one of the operator pods to hold the Lease', async () => {
    const l = await get('lease/mailfleet-operator', OP_NS);
    const holder = (l?.spec as { holderIdentity?: string } | undefined)?.holderIdentity ?? '';
    return list.items.find((p) => holder.startsWith(`${p.metadata.name}_`));
  });
  const logs = await k.kubectl(['logs', '-n', OP_NS, leader.metadata.name]);
  expect(logs.stdout).toContain('"msg":"became leader"');
  // It reads the cluster through the ServiceAccount token mounted into the pod: its writes are the
  // chart's ServiceAccount's in the audit log.
  const sa = `system:serviceaccount:${OP_NS}:${RELEASE}-mailfleet-operator`;
  await k.waitFor(
    `the leader's Lease writes as ${sa}`,
    () => k.auditEvents((e) => e.user.username === sa && e.objectRef?.resource === 'leases').length > 0,
  );
  // And it serves its metrics on the pod network.
  const res = await fetch(`http://${leader.status!.podIP}:8080/metrics`, {
    signal: AbortSignal.timeout(5000),
  });
  expect(sumSamples(await res.text(), 'leader_election_master_status')).toBe(1);
});

test('2. the examples applied as they are: relay pods Running and Ready from the image, queue claims bound to fresh volumes made writable by fsGroup', async () => {
  await kube([
    'apply',
    '-f',
    path.join(EXAMPLES_DIR, 'smtprelay.yaml'),
    '-f',
    path.join(EXAMPLES_DIR, 'maildomain.yaml'),
  ]);
  await k.waitForCondition(`smtprelay/${RELAY}`, 'Ready', { namespace: ns, timeoutMs: 240_000 });
  const pods = [await readyPod(`${RELAY}-0`), await readyPod(`${RELAY}-1`)];
  for (const p of pods) {
    expect(p.spec!.nodeName).toBe(k.info.realNode!.name);
    expect(p.status!.containerStatuses![0]).toMatchObject({ ready: true, restartCount: 0 });
  }
  for (const i of [0, 1]) {
    const pvc = await get(`pvc/queue-${RELAY}-${i}`);
    expect((pvc?.status as { phase?: string }).phase).toBe('Bound');
    const pv = await k.get(`pv/${(pvc!.spec as { volumeName: string }).volumeName}`);
    const dir = (pv!.spec as { local: { path: string } }).local.path;
    // The volume came root-owned (as a fresh disk does); the kubelet gave it to the pods' fsGroup.
    const st = fs.statSync(dir);
    expect({ uid: st.uid, gid: st.gid, setgid: (st.mode & 0o2000) !== 0 }).toEqual({
      uid: 0,
      gid: 65532,
      setgid: true,
    });
    expect(fs.existsSync(path.join(dir, 'lost+found'))).toBe(true);
    expect(fs.existsSync(path.join(dir, 'queue'))).toBe(true);
  }
  await k.waitForCondition('maildomain/example-com', 'Ready', { namespace: ns });
  const svc = await get(`service/${RELAY}`);
  serviceIp = (svc!.spec as { clusterIP: string }).clusterIP;
  const ca = await get(`secret/${RELAY}-ca`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mailfleet-node-ca-'));
  caFile = path.join(dir, 'ca.crt');
  fs.writeFileSync(caFile, Buffer.from((ca!.data as Record<string, string>)['ca.crt']!, 'base64'));
});

test('3. swaks through the Service with STARTTLS and AUTH: delivered DKIM-signed; queue tools and logs show it', async () => {
  // Publish what the MailDomain asks for, so both the operator's DNS check and a DKIM verifier find it.
  const domain = await get('maildomain/example-com');
  const records = (domain!.status as { dnsRecords: { purpose: string; name: string; value: string }[] })
    .dnsRecords;
  // A long DKIM value as 255-byte strings, as DNS carries it.
  for (const r of records) zone.push(txt(r.name, r.value.match(/.{1,255}/g) ?? [r.value]));
  await dns.setZone({ records: zone });
  await k.waitForCondition('maildomain/example-com', 'DNSVerified', { namespace: ns, timeoutMs: 120_000 });

  const id = await submitQueued(serviceIp, 'app', 'first@dest.test');
  await waitArrived(['first@dest.test']);
  const [m] = arrivedFor('first@dest.test');
  const raw = await mxHost.raw(m!);
  const resolver = new Resolver();
  resolver.setServers([`${host}:${DNS_UPSTREAM_PORT}`]);
  const verified = await dkimVerify(raw, {
    resolver: (name: string, rr: string) => resolver.resolve(name, rr) as never,
  });
  expect(verified.results.map((r) => [r.status.result, r.signingDomain, r.selector])).toEqual([
    ['pass', 'example.com', 'mailfleet'],
  ]);
  // Which pod took it: its log says so, and the queue tools work with no flags in its container.
  const logs = await Promise.all([0, 1].map((i) => k.kubectl(['logs', '-n', ns, `${RELAY}-${i}`])));
  const taker = logs.findIndex(
    (l) => l.stdout.includes(`"id":"${id}"`) && l.stdout.includes('"msg":"message done"'),
  );
  expect(taker).toBeGreaterThanOrEqual(0);
  expect(await relayCli(`${RELAY}-${taker}`, ['queue', 'list'])).toBe('Mail queue is empty\n');
});

test('3b. the quickstart way in: kubectl port-forward to the Service, then swaks to localhost', async () => {
  // kubectl port-forward runs through the API server and the kubelet into the pod's network namespace.
  const pf = spawn(k.bin('kubectl'), ['port-forward', '-n', ns, `svc/${RELAY}`, ':587'], {
    env: { ...process.env, KUBECONFIG: k.kubeconfig },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  try {
    const port = await new Promise<number>((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error(`no port-forward within 30 s:\n${out}`)), 30_000);
      const onData = (d: Buffer) => {
        out += d.toString();
        const m = /Forwarding from 127\.0\.0\.1:(\d+) -> 587/.exec(out);
        if (m) {
          clearTimeout(timer);
          resolve(Number(m[1]));
        }
      };
      pf.stdout.on('data', onData);
      pf.stderr.on('data', onData);
      pf.once('exit', (code) => reject(new Error(`kubectl port-forward exited (${code}):\n${out}`)));
    });
    await submitQueued(`127.0.0.1:${port}`, 'app', 'forwarded@dest.test');
    await waitArrived(['forwarded@dest.test']);
  } finally {
    pf.kill('SIGTERM');
  }
});

test('4. a new user and a lower limit reach the pods through the projected volume; the relays reload without a restart', async () => {
  await kube([
    'patch',
    `smtprelay/${RELAY}`,
    '--type=json',
    '-p',
    JSON.stringify([
      { op: 'add', path: '/spec/users/-', value: { name: 'reports' } },
      { op: 'replace', path: '/spec/limits/maxRecipients', value: 2 },
    ]),
  ]);
  await kube([
    'patch',
    'maildomain/example-com',
    '--type=merge',
    '-p',
    '{"spec":{"allowedUsers":["app","alerts","reports"]}}',
  ]);
  for (const i of [0, 1]) {
    await k.waitFor(
      `${RELAY}-${i} to reload the new configuration`,
      async () => {
        const text = await metricsOf(`${RELAY}-${i}`);
        return sumSamples(text, 'mailfleet_relay_config_reloads_total', { result: 'success' }) >= 1;
      },
      { timeoutMs: 180_000 },
    );
  }
  // The kubelet swaps the projected files; nothing restarts.
  for (const i of [0, 1])
    expect((await pod(`${RELAY}-${i}`))!.status!.containerStatuses![0]!.restartCount).toBe(0);
  await k.waitFor(
    'the new user to be accepted',
    async () => (await submit(serviceIp, 'reports', ['r1@dest.test'])).code === 0,
    {
      timeoutMs: 60_000,
    },
  );
  await waitArrived(['r1@dest.test']);
  const tooMany = await submit(serviceIp, 'app', ['x1@dest.test', 'x2@dest.test', 'x3@dest.test']);
  expect(tooMany.replies).toContain('452 4.5.3 Too many recipients');
  // The two recipients within the limit are sent (one message): wait for it before the MX changes.
  await waitArrived(['x1@dest.test', 'x2@dest.test']);
  expect(arrivedFor('x3@dest.test')).toHaveLength(0);
  sent.set('x1@dest.test', 'x').set('x2@dest.test', 'x');
});

test('5. with the MX deferring, queued mail survives a killed container and a deleted pod, and is delivered from the PVC', async () => {
  await mxHost.set({ rcptDefault: '451 4.3.0 try again later' });
  const p1 = await readyPod(`${RELAY}-1`);
  const targets = ['k1@dest.test', 'k2@dest.test', 'k3@dest.test'];
  const sni = `${RELAY}-1.${RELAY}-headless.${ns}.svc`;
  for (const t of targets) await submitQueued(p1.status!.podIP!, 'app', t, sni);
  const ids = targets.map((t) => sent.get(t)!);
  await k.waitFor('the three messages deferred on pod 1', async () => {
    const q = await queue(`${RELAY}-1`);
    return ids.every((id) => q.some((x) => x.id === id && x.state === 'deferred'));
  });
  // As an operator on call reads it: each message with the MX's answer.
  const listing = await relayCli(`${RELAY}-1`, ['queue', 'list']);
  const blocks = listing.split('\n\n');
  for (const [i, id] of ids.entries()) {
    const block =
      blocks.find((b) => b.split('\n').some((l) => l.startsWith(id))) ??
      `(no entry for ${id} in:\n${listing})`;
    expect(block).toContain(targets[i]);
    expect(block).toContain('(451 4.3.0 try again later)');
  }
  // The pod's metrics, scraped over the pod network, agree with the queue tools.
  expect(
    sumSamples(await metricsOf(`${RELAY}-1`), 'mailfleet_relay_spool_messages', { state: 'deferred' }),
  ).toBe(3);

  // The container is killed as the OOM killer would: SIGKILL to its process, from the node.
  const containerId = p1.status!.containerStatuses![0]!.containerID!.replace(/^containerd:\/\//, '');
  const kill = await run('ctr', [
    '--address',
    k.info.realNode!.containerdSocket,
    '-n',
    'k8s.io',
    'tasks',
    'kill',
    '-s',
    'SIGKILL',
    containerId,
  ]);
  expect(kill.code).toBe(0);
  await k.waitFor(
    'the relay container to be restarted and Ready',
    async () => {
      const p = await pod(`${RELAY}-1`);
      return ready(p) && p!.status!.containerStatuses![0]!.restartCount === 1;
    },
    { timeoutMs: 120_000 },
  );
  expect((await queue(`${RELAY}-1`)).map((x) => x.id).sort()).toEqual([...ids].sort());

  // The pod itself goes; the StatefulSet makes a new one on the same claim.
  const uid = p1.metadata.uid;
  await kube(['delete', 'pod', `${RELAY}-1`, '--wait=true', '--timeout=120s']);
  const again = await k.waitFor(
    'a new pod 1, Ready',
    async () => {
      const p = await pod(`${RELAY}-1`);
      return p && p.metadata.uid !== uid && ready(p) ? p : undefined;
    },
    { timeoutMs: 180_000 },
  );
  expect(again.status!.containerStatuses![0]!.restartCount).toBe(0);
  expect((await queue(`${RELAY}-1`)).map((x) => x.id).sort()).toEqual([...ids].sort());

  await mxHost.set({});
  expect(await relayCli(`${RELAY}-1`, ['queue', 'retry', '--all'])).toBe(
    '3 message(s) scheduled for delivery now\n',
  );
  await waitArrived(targets);
  await k.waitFor('pod 1 empty', async () => (await queue(`${RELAY}-1`)).length === 0);
  for (const t of targets) expect(arrivedFor(t)).toHaveLength(1);
});

test('6. scale to 1 drains pod 1 to pod 0 over the pod network; delete drains pod 0 to the MX; nothing is lost or stranded', async () => {
  await mxHost.set({ rcptDefault: '451 4.3.0 try again later' });
  const p1 = await readyPod(`${RELAY}-1`);
  const sni = `${RELAY}-1.${RELAY}-headless.${ns}.svc`;
  const onPod1 = ['s1@dest.test', 's2@dest.test', 's3@dest.test', 's4@dest.test'];
  for (const t of onPod1) await submitQueued(p1.status!.podIP!, 'app', t, sni);
  await k.waitFor(
    'the messages deferred on pod 1',
    async () => (await queue(`${RELAY}-1`)).length === onPod1.length,
  );

  await k.kubectl(['scale', `smtprelay/${RELAY}`, '--replicas=1', '-n', ns]);
  await k.waitFor(
    'pod 1 and its claim gone, the StatefulSet at 1',
    async () => {
      const sts = await get(`statefulset/${RELAY}`);
      return (
        (sts?.spec as { replicas: number }).replicas === 1 &&
        !(await pod(`${RELAY}-1`)) &&
        !(await get(`pvc/queue-${RELAY}-1`))
      );
    },
    { timeoutMs: 300_000 },
  );
  const held = await queue(`${RELAY}-0`);
  const heldRecipients = held.flatMap((x) => x.recipients.map((r) => r.address)).sort();
  expect(heldRecipients).toEqual([...onPod1].sort());
  await k.waitForCondition(`smtprelay/${RELAY}`, 'Ready', { namespace: ns });

  await mxHost.set({});
  await kube(['delete', `smtprelay/${RELAY}`, '--wait=false']);
  await k.waitFor(`smtprelay/${RELAY} gone after its drain`, async () => !(await get(`smtprelay/${RELAY}`)), {
    timeoutMs: 300_000,
  });
  await waitArrived(onPod1);
  // Every message of the whole story arrived exactly once.
  for (const to of sent.keys()) expect(arrivedFor(to)).toHaveLength(1);
  for (const child of [
    `statefulset/${RELAY}`,
    `service/${RELAY}`,
    `configmap/${RELAY}-config`,
    `secret/${RELAY}-runtime`,
  ])
    await k.waitFor(`${child} to be garbage-collected`, async () => !(await get(child)), {
      timeoutMs: 120_000,
    });
  await k.waitFor('the relay pods gone', async () => !(await pod(`${RELAY}-0`)), { timeoutMs: 120_000 });
  // Drained, its queue volume is empty: the operator deletes the claim, and the provisioner the volume.
  await k.waitFor('the queue claim of pod 0 gone', async () => !(await get(`pvc/queue-${RELAY}-0`)), {
    timeoutMs: 60_000,
  });
});
