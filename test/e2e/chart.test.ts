/**
 * The chart on the real control plane (test/cluster/): `helm template | kubectl apply --dry-run=server`
 * is accepted by the API server (CRDs included), `helm install` creates the operator Deployment whose two
 * pods become Ready under kwok, and the operator itself — run from dist/ with the chart's
 * ServiceAccount token, so the chart's RBAC is what it gets — leads, becomes ready, and serves every
 * operator metric the chart's alerts and dashboards query.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { clusterFromEnv, type Cluster } from '../cluster/kube.js';
import { freePort } from '../cluster/proc.js';
import { relayMetricInfo, seriesNames } from '../../docs/gen/metrics-reference.js';
import {
  CHART_DIR,
  REPO_ROOT,
  exposedSeries,
  missing,
  referencedMetrics,
} from '../unit/chart/observability.js';

jest.setTimeout(300_000);

const OPERATOR_CLI = path.join(REPO_ROOT, 'dist', 'operator', 'cli.js');

let k: Cluster;
let ns: string;
let operator: ChildProcess | undefined;

beforeAll(async () => {
  k = clusterFromEnv();
  ns = await k.createNamespace('chart');
});

afterAll(async () => {
  if (operator && operator.exitCode === null) {
    const exited = new Promise((r) => operator!.once('exit', r));
    operator.kill('SIGTERM');
    await exited;
  }
  if (ns) {
    await k.helm(['uninstall', 'mf', '--namespace', ns], { allowFailure: true });
    await k.deleteNamespace(ns);
  }
});

test('helm template is accepted by the API server (kubectl apply --dry-run=server)', async () => {
  const rendered = await k.helm(['template', 'mf', CHART_DIR, '--namespace', ns, '--include-crds']);
  const r = await k.kubectl(['apply', '--dry-run=server', '-f', '-'], {
    input: rendered.stdout,
    namespace: ns,
  });
  expect(r.stdout).toContain('deployment.apps/mf-mailfleet-operator created (server dry run)');
  expect(r.stdout).toContain('customresourcedefinition.apiextensions.k8s.io/smtprelays.mailfleet.dev');
});

test('helm install: the operator Deployment becomes Available with 2 Ready pods', async () => {
  await k.helm(['install', 'mf', CHART_DIR, '--namespace', ns], { timeoutMs: 120_000 });
  await k.waitForCondition('deployment/mf-mailfleet-operator', 'Available', {
    namespace: ns,
    timeoutMs: 120_000,
  });
  const ready = await k.waitFor(
    'two Ready operator pods',
    async () => {
      const list = await k.kubectlJson<{
        items: Array<{ status?: { conditions?: Array<{ type: string; status: string }> } }>;
      }>(['get', 'pods', '-l', 'app.kubernetes.io/component=operator,app.kubernetes.io/instance=mf'], {
        namespace: ns,
      });
      const n = list.items.filter((p) =>
        p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
      ).length;
      return n === 2 ? n : undefined;
    },
    { timeoutMs: 120_000 },
  );
  expect(ready).toBe(2);
  expect(await k.get('clusterrole/mf-mailfleet-operator')).toBeDefined();
});

test('the operator, with the chart ServiceAccount, leads and serves every operator metric the chart uses', async () => {
  expect(fs.existsSync(OPERATOR_CLI)).toBe(true); // built by the e2e globalSetup
  const kubeconfig = await k.serviceAccountKubeconfig(ns, 'mf-mailfleet-operator');
  const [metricsPort, probePort] = [await freePort(), await freePort()];
  operator = spawn(
    process.execPath,
    [
      OPERATOR_CLI,
      `--kubeconfig=${kubeconfig}`,
      // Only its own namespace: other e2e files run their own operators on their own namespaces.
      `--namespaces=${ns}`,
      '--leader-elect',
      `--leader-election-namespace=${ns}`,
      `--leader-election-id=mailfleet-operator`,
      `--metrics-bind-address=127.0.0.1:${metricsPort}`,
      `--health-probe-bind-address=127.0.0.1:${probePort}`,
      '--log-level=warn',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  operator.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  operator.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const get = async (url: string) => {
    try {
      const res = await fetch(url);
      return { status: res.status, body: await res.text() };
    } catch {
      return { status: 0, body: '' };
    }
  };
  await k.waitFor(
    'operator /readyz',
    async () => (await get(`http://127.0.0.1:${probePort}/readyz`)).status === 200,
    { timeoutMs: 60_000 },
  );
  const page = await k.waitFor(
    'operator leading (leader_election_master_status 1)',
    async () => {
      const m = await get(`http://127.0.0.1:${metricsPort}/metrics`);
      return /^leader_election_master_status\{name="mailfleet-operator"\} 1$/m.test(m.body)
        ? m.body
        : undefined;
    },
    { timeoutMs: 60_000 },
  );
  const declared = exposedSeries(page);
  for (const m of page.matchAll(/^# TYPE (\S+) (\w+)$/gm))
    seriesNames({ name: m[1]!, type: m[2]! }).forEach((n) => declared.add(n));
  const relaySeries = new Set(relayMetricInfo().flatMap(seriesNames));
  const operatorUsages = referencedMetrics().filter((u) => !relaySeries.has(u.name));
  expect(operatorUsages.length).toBeGreaterThan(10);
  expect(missing(operatorUsages, declared)).toEqual([]);
  expect(output).not.toMatch(/forbidden/i);
});
