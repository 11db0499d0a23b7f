/**
 * Smoke test of the e2e harness itself (test/cluster/): the control plane the operator's e2e suite runs
 * on must really enforce RBAC, run StatefulSets with volume claims to Ready pods, garbage-collect
 * dependents, serve helm and the built kubectl, and record writes in its audit log.
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { clusterFromEnv, type Cluster, type KubeObject } from '../cluster/kube.js';
import { waitFor } from '../cluster/proc.js';

let k: Cluster;
const namespaces: string[] = [];

async function namespace(prefix: string): Promise<string> {
  const ns = await k.createNamespace(prefix);
  namespaces.push(ns);
  return ns;
}

beforeAll(() => {
  k = clusterFromEnv();
});

afterAll(async () => {
  for (const ns of namespaces) await k.deleteNamespace(ns);
});

test('kubectl and the API server are the pinned build, not whatever is on PATH', async () => {
  const v = await k.kubectlJson<{
    clientVersion: { gitVersion: string };
    serverVersion: { gitVersion: string };
  }>(['version']);
  expect(v.clientVersion.gitVersion).toBe(k.info.kubernetesVersion);
  expect(v.serverVersion.gitVersion).toBe(k.info.kubernetesVersion);
  expect(fs.realpathSync(k.bin('kubectl')).startsWith(k.info.binDir)).toBe(true);
});

test('RBAC is enforced: a ServiceAccount is refused until a RoleBinding allows it', async () => {
  const ns = await namespace('rbac');
  await k.kubectl(['create', 'serviceaccount', 'bot', '-n', ns]);
  const kubeconfig = await k.serviceAccountKubeconfig(ns, 'bot');

  const who = await k.kubectlJson<{ status: { userInfo: { username: string } } }>(['auth', 'whoami'], {
    kubeconfig,
  });
  expect(who.status.userInfo.username).toBe(`system:serviceaccount:${ns}:bot`);

  const refused = await k.kubectl(['get', 'pods', '-n', ns], { kubeconfig, allowFailure: true });
  expect(refused.code).not.toBe(0);
  expect(refused.stderr).toMatch(/forbidden/i);
  expect(refused.stderr).toContain(`system:serviceaccount:${ns}:bot`);

  await k.kubectl(['create', 'role', 'pod-reader', '--verb=get,list', '--resource=pods', '-n', ns]);
  await k.kubectl([
    'create',
    'rolebinding',
    'bot-reads',
    '--role=pod-reader',
    `--serviceaccount=${ns}:bot`,
    '-n',
    ns,
  ]);
  await k.waitFor('the RoleBinding to take effect', async () => {
    const r = await k.kubectl(['get', 'pods', '-n', ns], { kubeconfig, allowFailure: true });
    return r.code === 0;
  });
  const stillRefused = await k.kubectl(['get', 'secrets', '-n', ns], { kubeconfig, allowFailure: true });
  expect(stillRefused.stderr).toMatch(/forbidden/i);
});

function statefulSet(ns: string): object[] {
  const labels = { app: 'web' };
  return [
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'web', namespace: ns },
      spec: { clusterIP: 'None', selector: labels, ports: [{ name: 'smtp', port: 2525 }] },
    },
    {
      apiVersion: 'apps/v1',
      kind: 'StatefulSet',
      metadata: { name: 'web', namespace: ns },
      spec: {
        serviceName: 'web',
        replicas: 2,
        selector: { matchLabels: labels },
        template: {
          metadata: { labels },
          spec: {
            containers: [
              { name: 'relay', image: 'example.invalid/relay:1', ports: [{ containerPort: 2525 }] },
            ],
          },
        },
        volumeClaimTemplates: [
          {
            metadata: { name: 'queue' },
            spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Mi' } } },
          },
        ],
      },
    },
  ];
}

/** Proves a pod IP is usable by a real process: listen on it and connect to it. */
async function listenAndConnect(ip: string): Promise<void> {
  const server = net.createServer((s) => s.end('220 hello\r\n'));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, ip, resolve);
  });
  try {
    const port = (server.address() as net.AddressInfo).port;
    const greeting = await new Promise<string>((resolve, reject) => {
      const c = net.connect(port, ip);
      let data = '';
      c.on('data', (b) => (data += b.toString()));
      c.on('end', () => resolve(data));
      c.on('error', reject);
    });
    expect(greeting).toBe('220 hello\r\n');
  } finally {
    await new Promise((r) => server.close(r));
  }
}

test('a StatefulSet with a volumeClaimTemplate gets Ready pods on loopback IPs and Bound PVCs; deleting it removes the pods', async () => {
  const ns = await namespace('sts');
  await k.apply(statefulSet(ns));
  const pods: KubeObject[] = [];
  for (const name of ['web-0', 'web-1'])
    pods.push(await k.waitForCondition(`pod/${name}`, 'Ready', { namespace: ns }));
  for (const name of ['queue-web-0', 'queue-web-1']) {
    await k.waitFor(
      `pvc/${name} Bound`,
      async () => (await k.get(`pvc/${name}`, { namespace: ns }))?.status?.phase === 'Bound',
    );
  }
  const sts = await k.waitFor('statefulset/web readyReplicas=2', async () => {
    const s = await k.get('statefulset/web', { namespace: ns });
    return s?.status?.readyReplicas === 2 ? s : undefined;
  });
  expect(sts.status?.replicas).toBe(2);

  for (const pod of pods) {
    const ip = pod.status?.podIP as string;
    const nodeName = (pod.spec as { nodeName: string }).nodeName;
    const node = k.info.nodes.find((n) => n.name === nodeName);
    expect(node).toBeDefined();
    expect(ip.startsWith(node!.podCIDR.replace(/\.0\/24$/, '.'))).toBe(true);
    expect(ip.startsWith('127.')).toBe(true);
    await listenAndConnect(ip);
  }

  await k.kubectl(['delete', 'statefulset', 'web', '-n', ns, '--wait=false']);
  for (const name of ['web-0', 'web-1']) await k.waitForGone(`pod/${name}`, { namespace: ns });
  // StatefulSet claims outlive their pods by default (persistentVolumeClaimRetentionPolicy Retain).
  expect((await k.get('pvc/queue-web-0', { namespace: ns }))?.status?.phase).toBe('Bound');
});

test('the garbage collector deletes the dependents of a deleted owner', async () => {
  const ns = await namespace('gc');
  await k.kubectl(['create', 'configmap', 'owner', '-n', ns]);
  const owner = (await k.get('configmap/owner', { namespace: ns }))!;
  await k.apply({
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: {
      name: 'dependent',
      namespace: ns,
      ownerReferences: [{ apiVersion: 'v1', kind: 'ConfigMap', name: 'owner', uid: owner.metadata.uid }],
    },
  });
  await k.kubectl(['delete', 'configmap', 'owner', '-n', ns]);
  await k.waitForGone('configmap/dependent', { namespace: ns });
});

test('helm renders and lints a chart, and the API server accepts the rendered objects in a server-side dry run', async () => {
  const ns = await namespace('helm');
  const version = await k.helm(['version', '--short']);
  expect(version.stdout).toMatch(/^v4\./);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mailfleet-helm-'));
  try {
    await k.helm(['create', path.join(dir, 'demo')]);
    await k.helm(['lint', path.join(dir, 'demo')]);
    const rendered = await k.helm(['template', 'demo', path.join(dir, 'demo'), '--namespace', ns]);
    expect(rendered.stdout).toContain('kind: Deployment');
    const applied = await k.kubectl(['apply', '--dry-run=server', '-n', ns, '-f', '-'], {
      input: rendered.stdout,
    });
    expect(applied.stdout).toMatch(/deployment\.apps\/demo created \(server dry run\)/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('the audit log records each write with its user', async () => {
  const ns = await namespace('audit');
  await k.kubectl(['create', 'configmap', 'audited', '-n', ns]);
  const events = await k.waitFor('the audit event of the ConfigMap create', () => {
    const found = k.auditEvents(
      (e) =>
        e.verb === 'create' &&
        e.objectRef?.resource === 'configmaps' &&
        e.objectRef.namespace === ns &&
        e.user.username === 'mailfleet-e2e-admin',
    );
    return found.length > 0 ? found : undefined;
  });
  expect(events.map((e) => e.objectRef?.name)).toEqual(['audited']);
  expect(events[0]!.responseStatus?.code).toBe(201);
});

test('waitFor gives up at its bound with what it waited for and the last error', async () => {
  await expect(
    waitFor(
      'something that never happens',
      () => {
        throw new Error('still not');
      },
      { timeoutMs: 300, intervalMs: 50 },
    ),
  ).rejects.toThrow(/waiting for something that never happens; last error: still not/);
});
