/**
 * The operator survives the API server going away, on a control plane of this file's own (so the outage
 * touches no other file's tests):
 *
 * - kube-apiserver is stopped while the operator leads, etcd is compacted past everything the operator's
 *   watches have seen (so each watch resumes with 410 Gone and must list again), and the API server is
 *   started again after longer than the renew deadline (10 s), so the operator loses its leadership;
 * - a change made during the outage (a kubectl that retries until the API server answers) and a change
 *   made after it are both rolled out;
 * - the same process leads again (the Lease names it, leader_election_master_status is 1): it never
 *   exited, crashed or needed a restart.
 * Resyncs are off (--sync-period 1h): only watches that recovered can deliver the changes.
 */
import { restartApiserver, startCluster, stopCluster, type ClusterInfo } from '../cluster/cluster.js';
import { Cluster } from '../cluster/kube.js';
import { startDnsServer, type TestDnsServer } from '../helpers/dns.js';
import { installOperator, startOperator, type OperatorNamespace, type OperatorProcess } from './operator.js';

jest.setTimeout(420_000);

let info: ClusterInfo;
let k: Cluster;
let env: OperatorNamespace;
let dns: TestDnsServer;
let op: OperatorProcess | undefined;

beforeAll(async () => {
  info = await startCluster({ owner: 'jest', nodes: 1 });
  k = new Cluster(info);
  env = await installOperator(k, 'outage');
  dns = await startDnsServer({ records: [] });
});

afterAll(async () => {
  await op?.stop();
  await dns?.stop();
  if (info) await stopCluster(info.stateDir);
});

const b64 = (s: string) => Buffer.from(s).toString('base64');

/** A write straight to etcd moves its revision past everything watched; compaction then drops history. */
async function compactEtcd(etcdUrl: string): Promise<void> {
  const put = await fetch(`${etcdUrl}/v3/kv/put`, {
    method: 'POST',
    body: JSON.stringify({ key: b64('/mailfleet-e2e/outage'), value: b64(String(Date.now())) }),
  });
  const rev = ((await put.json()) as { header: { revision: string } }).header.revision;
  const res = await fetch(`${etcdUrl}/v3/kv/compaction`, {
    method: 'POST',
    body: JSON.stringify({ revision: rev, physical: true }),
  });
  if (res.status !== 200) throw new Error(`etcd compaction: HTTP ${res.status} ${await res.text()}`);
}

async function configLimit(): Promise<number | undefined> {
  const cm = await k.get('configmap/mail-config', { namespace: env.ns });
  const yaml = (cm?.data as Record<string, string> | undefined)?.['relay.yaml'] ?? '';
  const m = /^\s*maxRecipients: (\d+)$/m.exec(yaml);
  return m ? Number(m[1]) : undefined;
}

const patchLimit = (n: number) =>
  k.kubectl([
    'patch',
    'smtprelay/mail',
    '-n',
    env.ns,
    '--type=merge',
    '-p',
    JSON.stringify({ spec: { limits: { maxRecipients: n } } }),
  ]);

/** Like a user during an outage: try again until the API server takes the change (bounded). */
async function patchWhenItAnswers(n: number, deadline: number): Promise<number> {
  for (;;) {
    try {
      await patchLimit(n);
      return Date.now();
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

const leading = () => op!.metric('leader_election_master_status', { name: 'mailfleet-operator' });

test('restart kube-apiserver with etcd compacted: changes during and after the outage are reconciled, the same process leads again', async () => {
  op = await startOperator(k, env, { dnsServer: dns.server, syncPeriod: '1h', logLevel: 'info' });
  const identity = await op.waitFor('the operator to lead', () => op!.identity());
  await op.waitFor('leader_election_master_status 1', async () => (await leading()) === 1);
  await k.apply(
    {
      apiVersion: 'mailfleet.dev/v1alpha1',
      kind: 'SmtpRelay',
      metadata: { name: 'mail' },
      spec: { replicas: 1, limits: { maxRecipients: 10 } },
    },
    { namespace: env.ns },
  );
  await op.waitForCondition('smtprelay/mail', 'Ready', { generation: true });
  expect(await configLimit()).toBe(10);

  let during: Promise<number> | undefined;
  await restartApiserver(info.stateDir, {
    during: async (etcdUrl) => {
      await compactEtcd(etcdUrl);
      during = patchWhenItAnswers(11, Date.now() + 120_000);
      // Down for longer than the renew deadline: the operator must give up leading, not exit.
      await new Promise((r) => setTimeout(r, 14_000));
    },
  });
  await during;
  await op.waitFor(
    'the change made during the outage (maxRecipients 11) to be rendered',
    async () => (await configLimit()) === 11,
    { timeoutMs: 120_000 },
  );
  expect(op.logs.some((l) => /lost|stopped until leadership/.test(String(l.msg)))).toBe(true);
  await op.waitFor('the same process to lead again', async () => (await leading()) === 1, {
    timeoutMs: 60_000,
  });
  const lease = await k.get('lease/mailfleet-operator', { namespace: env.ns });
  expect((lease?.spec as { holderIdentity?: string }).holderIdentity).toBe(identity);

  await patchLimit(12);
  await op.waitFor(
    'the change made after the outage (maxRecipients 12) to be rendered',
    async () => (await configLimit()) === 12,
  );
  await op.waitForCondition('smtprelay/mail', 'Ready', { generation: true });
  expect(op.running()).toBe(true);
  // The watches did expire and were listed again: restarts of the informers are counted.
  expect(await op.metricSum('mailfleet_operator_informer_restarts_total')).toBeGreaterThan(0);
});
