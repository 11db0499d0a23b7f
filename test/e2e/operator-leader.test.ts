/**
 * Leader election between real operator processes (the chart's ServiceAccount, its leader-election Role,
 * a Lease in the file's namespace with 15 s / 10 s / 2 s timings):
 *
 * - of two operators one leads (the Lease names it, leader_election_master_status is 1) and only it
 *   reconciles; the other stands by (status 0, no reconcile);
 * - SIGKILL the leader: it cannot release the Lease, and the standby takes over within 20 s (the Lease
 *   names it, its metric says 1) and reconciles a change made after the kill;
 * - SIGTERM a leader: it releases the Lease, so a standby takes over well before the lease would expire.
 */
import { clusterFromEnv, type Cluster } from '../cluster/kube.js';
import { startDnsServer, type TestDnsServer } from '../helpers/dns.js';
import { installOperator, startOperator, type OperatorNamespace, type OperatorProcess } from './operator.js';

jest.setTimeout(180_000);

const LEASE = 'lease/mailfleet-operator';
const LEADING = 'leader_election_master_status';

let k: Cluster;
let env: OperatorNamespace;
let dns: TestDnsServer;
const operators: OperatorProcess[] = [];

beforeAll(async () => {
  k = clusterFromEnv();
  env = await installOperator(k, 'leader');
  dns = await startDnsServer({ records: [] });
});

afterAll(async () => {
  for (const op of operators) await op.stop();
  await dns?.stop();
  await env?.cleanup();
});

async function start(name: string): Promise<OperatorProcess> {
  const op = await startOperator(k, env, {
    dnsServer: dns.server,
    name,
    syncPeriod: '30s',
    logLevel: 'info',
  });
  operators.push(op);
  return op;
}

async function holder(): Promise<string | undefined> {
  const lease = await k.get(LEASE, { namespace: env.ns });
  return (lease?.spec as { holderIdentity?: string } | undefined)?.holderIdentity;
}

const leadingMetric = (op: OperatorProcess) => op.metric(LEADING, { name: 'mailfleet-operator' });

/** Waits until `op` holds the Lease and says so on /metrics; returns the time it took from `since`. */
async function leads(op: OperatorProcess, since: number, timeoutMs: number): Promise<number> {
  await op.waitFor(
    `${op.name} to hold the Lease and report ${LEADING} 1`,
    async () => {
      const id = op.identity();
      return id !== undefined && (await holder()) === id && (await leadingMetric(op)) === 1;
    },
    { timeoutMs, intervalMs: 200 },
  );
  return Date.now() - since;
}

const reconciles = (op: OperatorProcess) => op.metricSum('controller_runtime_reconcile_total');

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

async function configLimit(): Promise<number | undefined> {
  const cm = await k.get('configmap/mail-config', { namespace: env.ns });
  const yaml = (cm?.data as Record<string, string> | undefined)?.['relay.yaml'] ?? '';
  const m = /^\s*maxRecipients: (\d+)$/m.exec(yaml);
  return m ? Number(m[1]) : undefined;
}

test('two operators: one leads and reconciles, the other stands by; SIGKILL the leader and the other takes over within 20 s', async () => {
  const [a, b] = [await start('operator-a'), await start('operator-b')];
  const first = await a.waitFor('one of the two to lead', () =>
    [a, b].find((op) => op.identity() !== undefined),
  );
  const standby = first === a ? b : a;
  await leads(first, Date.now(), 30_000);
  const lease = await k.get(LEASE, { namespace: env.ns });
  expect(lease?.spec).toMatchObject({ holderIdentity: first.identity(), leaseDurationSeconds: 15 });
  expect(await leadingMetric(standby)).toBe(0);

  await k.apply(
    {
      apiVersion: 'mailfleet.dev/v1alpha1',
      kind: 'SmtpRelay',
      metadata: { name: 'mail' },
      spec: { replicas: 1, limits: { maxRecipients: 10 } },
    },
    { namespace: env.ns },
  );
  await first.waitForCondition('smtprelay/mail', 'Ready', { generation: true });
  expect(await reconciles(first)).toBeGreaterThan(0);
  // The standby has warm caches (it is ready) but reconciles nothing.
  expect((await standby.http('probe', '/readyz')).status).toBe(200);
  expect(await reconciles(standby)).toBe(0);

  const killed = Date.now();
  await first.kill();
  // The bound is the requirement: the Lease (15 s) expires and the standby (retrying every 2 s) takes it.
  const took = await leads(standby, killed, 20_000);
  expect(took).toBeLessThanOrEqual(20_000);
  expect(standby.logs.some((l) => l.msg === 'became leader')).toBe(true);

  // Reconciles resume under the new leader: a change made now reaches the children.
  await patchLimit(11);
  await standby.waitFor(
    'the new leader to render maxRecipients 11',
    async () => (await configLimit()) === 11,
  );
  await standby.waitForCondition('smtprelay/mail', 'Ready', { generation: true });
  expect(await reconciles(standby)).toBeGreaterThan(0);
});

test('a leader stopped with SIGTERM releases the Lease: a standby takes over at once, not after the lease expires', async () => {
  const leader = operators.find((op) => op.running() && op.identity() !== undefined)!;
  const standby = await start('operator-c');
  expect(await leadingMetric(standby)).toBe(0);

  const stopped = Date.now();
  const exit = await leader.stop();
  expect(exit).toEqual({ code: 0, signal: null });
  // Well under the 15 s lease duration: only a released Lease is taken this fast.
  const took = await leads(standby, stopped, 10_000);
  expect(took).toBeLessThan(10_000);
  await patchLimit(12);
  await standby.waitFor('operator-c to render maxRecipients 12', async () => (await configLimit()) === 12);
});
