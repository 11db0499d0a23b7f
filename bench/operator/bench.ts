/**
 * The operator at scale, against the real control plane (test/cluster/: etcd, kube-apiserver with RBAC,
 * controller manager, scheduler, kwok nodes). One scenario:
 *
 *   fresh cluster (audit policy: every request of the operator's ServiceAccount, at Metadata)
 *   → helm install of the chart with operator.replicas=0 (CRDs, ServiceAccount, ClusterRole, binding)
 *   → the operator from this repository as a local process with that ServiceAccount's token (so the
 *     chart's RBAC is what it gets), leader election on, as the chart runs it; it leads and is ready
 *   → `kubectl create` of R SmtpRelays (1 replica each) and D MailDomains spread over them
 *   → poll until every object is Ready=True with status.observedGeneration == metadata.generation
 *   → S more minutes of steady state → operator stopped → cluster stopped.
 *
 * Figures: time to all Ready; the operator's API requests by verb (from the audit log, one per audit
 * ID) during convergence and during the steady window, writes by resource; operator CPU seconds and
 * peak RSS (/proc) in each window; its own reconcile counters.
 */
import fs from 'node:fs';
import path from 'node:path';
import {
  startCluster,
  stopCluster,
  DEFAULT_AUDIT_POLICY,
  type ClusterInfo,
} from '../../test/cluster/cluster.js';
import { Cluster, type AuditEvent } from '../../test/cluster/kube.js';
import { startDns } from '../lib/dns.js';
import { freePort, onExitCleanup, startLogged, sleep, waitFor, type Started } from '../lib/proc.js';
import { TreeSampler, type TreeUsage } from '../lib/procstat.js';
import { measureFloor, type FloorResult, type KeyKind } from './floor.js';

export const OPERATOR_NAMESPACE = 'mailfleet-system';
export const RELEASE = 'mf';
export const OPERATOR_SA = `${RELEASE}-mailfleet-operator`;
export const OPERATOR_USER = `system:serviceaccount:${OPERATOR_NAMESPACE}:${OPERATOR_SA}`;
export const WORK_NAMESPACE = 'bench';

export interface Scenario {
  relays: number;
  domains: number;
  /** spec.dkim.algorithm of the MailDomains (the CRD's default: rsa-sha256). */
  dkimAlgorithm?: 'rsa-sha256' | 'ed25519-sha256';
  /** Steady-state window after convergence, ms. */
  steadyMs: number;
}

export interface OperatorBenchOptions {
  repoRoot: string;
  workDir: string;
  operatorCli: string;
  /** Extra node arguments for the operator process (e.g. --cpu-prof). */
  nodeArgs?: string[];
  /** Measure the crypto floor of each scenario before its cluster starts (default true). */
  floor?: boolean;
  scenarios: Scenario[];
  /** Bound on convergence (default 30 min). */
  convergeTimeoutMs?: number;
  keepLogs?: boolean;
  log?: (line: string) => void;
}

export interface RequestCounts {
  total: number;
  byVerb: Record<string, number>;
  /** Writes (create, update, patch, delete) by "resource[/subresource]". */
  writesByResource: Record<string, number>;
  writes: number;
  /** Writes that are not Lease renewals (leader election writes every retry period by design). */
  writesExceptLeases: number;
}

export interface ScenarioResult {
  scenario: Scenario;
  ok: boolean;
  error?: string;
  /** Seconds from the first create to every object Ready with current observedGeneration. */
  convergeSeconds: number;
  createSeconds: number;
  startup?: RequestCounts;
  convergence?: RequestCounts;
  steady?: RequestCounts;
  steadySeconds: number;
  usageConvergence?: TreeUsage;
  usageSteady?: TreeUsage;
  reconciles?: Record<string, number>;
  floor?: FloorResult;
  kubernetesVersion?: string;
  logsDir?: string;
}

const WRITE_VERBS = new Set(['create', 'update', 'patch', 'delete', 'deletecollection']);

function auditPolicy(): string {
  // The operator's every request first; then the harness's default (writes of everyone).
  return DEFAULT_AUDIT_POLICY.replace(
    'rules:\n',
    `rules:\n  - level: Metadata\n    users: ["${OPERATOR_USER}"]\n`,
  );
}

function relayObject(i: number) {
  return {
    apiVersion: 'mailfleet.dev/v1alpha1',
    kind: 'SmtpRelay',
    metadata: { name: `relay-${i}`, namespace: WORK_NAMESPACE },
    spec: {
      replicas: 1,
      listeners: { relay: { enabled: true, port: 2525, allowedNetworks: ['10.0.0.0/8'] } },
      queue: { storage: { size: '1Gi' } },
      delivery: { route: { mode: 'direct' } },
    },
  };
}

function domainObject(i: number, relays: number, algorithm?: string) {
  return {
    apiVersion: 'mailfleet.dev/v1alpha1',
    kind: 'MailDomain',
    metadata: { name: `domain-${i}`, namespace: WORK_NAMESPACE },
    spec: {
      domain: `d${i}.bench.example`,
      relayRef: { name: `relay-${i % relays}` },
      ...(algorithm ? { dkim: { algorithm } } : {}),
    },
  };
}

/** The keys a scenario makes the operator generate: a CA and a server key per relay, a DKIM key per domain. */
export function scenarioKeys(s: Scenario): Partial<Record<KeyKind, number>> {
  const ed = s.dkimAlgorithm === 'ed25519-sha256';
  return ed ? { 'rsa-2048': 2 * s.relays, ed25519: s.domains } : { 'rsa-2048': 2 * s.relays + s.domains };
}

interface Conditioned {
  metadata: { name: string; generation?: number };
  status?: { observedGeneration?: number; conditions?: { type: string; status: string }[] };
}

function isReady(o: Conditioned): boolean {
  const ready = o.status?.conditions?.find((c) => c.type === 'Ready');
  return ready?.status === 'True' && (o.status?.observedGeneration ?? -1) === (o.metadata.generation ?? 0);
}

function countRequests(events: AuditEvent[], from: number, to: number): RequestCounts {
  const seen = new Set<string>();
  const out: RequestCounts = { total: 0, byVerb: {}, writesByResource: {}, writes: 0, writesExceptLeases: 0 };
  for (const e of events as (AuditEvent & { auditID: string })[]) {
    if (seen.has(e.auditID)) continue; // a watch has ResponseStarted and ResponseComplete
    const t = Date.parse(e.requestReceivedTimestamp);
    if (t < from || t >= to) continue;
    seen.add(e.auditID);
    out.total++;
    out.byVerb[e.verb] = (out.byVerb[e.verb] ?? 0) + 1;
    if (WRITE_VERBS.has(e.verb)) {
      const r = `${e.objectRef?.resource ?? '?'}${e.objectRef?.subresource ? `/${e.objectRef.subresource}` : ''}`;
      out.writesByResource[r] = (out.writesByResource[r] ?? 0) + 1;
      out.writes++;
      if (e.objectRef?.resource !== 'leases') out.writesExceptLeases++;
    }
  }
  return out;
}

async function metricsText(port: number): Promise<string> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/metrics`);
    return await res.text();
  } catch {
    return '';
  }
}

function reconcileCounts(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^controller_runtime_reconcile_total\{([^}]*)\} (\S+)$/gm)) {
    const labels = Object.fromEntries([...m[1]!.matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    const key = `${labels.controller}:${labels.result}`;
    out[key] = (out[key] ?? 0) + Number(m[2]);
  }
  return out;
}

async function startOperator(
  k: Cluster,
  opts: OperatorBenchOptions,
  dir: string,
  dns: string,
): Promise<{ proc: Started; metricsPort: number }> {
  const kubeconfig = await k.serviceAccountKubeconfig(OPERATOR_NAMESPACE, OPERATOR_SA, {
    durationSeconds: 7200,
  });
  const [metricsPort, probePort] = [await freePort(), await freePort()];
  const proc = startLogged(
    'operator',
    process.execPath,
    [
      ...(opts.nodeArgs ?? []),
      opts.operatorCli,
      `--kubeconfig=${kubeconfig}`,
      '--leader-elect',
      `--leader-election-namespace=${OPERATOR_NAMESPACE}`,
      `--metrics-bind-address=127.0.0.1:${metricsPort}`,
      `--health-probe-bind-address=127.0.0.1:${probePort}`,
      `--dns-server=${dns}`,
      '--log-level=info',
    ],
    path.join(dir, 'operator.log'),
  );
  await waitFor(
    'the operator to lead and be ready',
    async () => {
      if (proc.child.exitCode !== null)
        throw new Error(`operator exited (${proc.child.exitCode}); see ${proc.log}`);
      const ready = await fetch(`http://127.0.0.1:${probePort}/readyz`).then(
        (r) => r.status === 200,
        () => false,
      );
      return ready && /^leader_election_master_status\{[^}]*\} 1$/m.test(await metricsText(metricsPort));
    },
    120_000,
    500,
  );
  return { proc, metricsPort };
}

async function readyCounts(k: Cluster): Promise<{ relays: number; domains: number }> {
  const list = await k.kubectlJson<{ items: (Conditioned & { kind: string })[] }>(
    ['get', 'smtprelays.mailfleet.dev,maildomains.mailfleet.dev'],
    { namespace: WORK_NAMESPACE, timeoutMs: 120_000 },
  );
  let relays = 0;
  let domains = 0;
  for (const o of list.items) {
    if (!isReady(o)) continue;
    if (o.kind === 'SmtpRelay') relays++;
    else domains++;
  }
  return { relays, domains };
}

async function runScenario(opts: OperatorBenchOptions, s: Scenario, index: number): Promise<ScenarioResult> {
  const say = opts.log ?? (() => undefined);
  const dir = path.join(opts.workDir, `scenario-${index}-${s.relays}r-${s.domains}d`);
  fs.mkdirSync(dir, { recursive: true });
  const result: ScenarioResult = {
    scenario: s,
    ok: false,
    convergeSeconds: NaN,
    createSeconds: NaN,
    steadySeconds: 0,
  };
  let info: ClusterInfo | undefined;
  let operator: Started | undefined;
  let forgetCluster: (() => void) | undefined;
  if (opts.floor !== false) {
    say(`scenario ${s.relays} relays, ${s.domains} domains: measuring the crypto floor`);
    result.floor = await measureFloor(scenarioKeys(s));
    say(
      `  floor: ${result.floor.seconds.toFixed(1)} s for ${JSON.stringify(result.floor.keys)} on ${result.floor.cores} cores`,
    );
  }
  const dns = await startDns(opts.repoRoot, dir);
  try {
    say(`scenario ${s.relays} relays, ${s.domains} domains: starting the control plane`);
    info = await startCluster({
      owner: 'cli',
      auditPolicy: auditPolicy(),
      log: (m) => say(`  cluster: ${m}`),
    });
    // A 'cli' cluster outlives its starter: an interrupted bench (Ctrl-C, SIGTERM) must not leave it running.
    const processes = info.processes;
    forgetCluster = onExitCleanup(() => {
      for (const p of processes)
        try {
          process.kill(p.pid, 'SIGKILL');
        } catch {
          // already gone
        }
    });
    result.kubernetesVersion = info.kubernetesVersion;
    result.logsDir = info.logsDir;
    const k = new Cluster(info);
    await k.helm(
      [
        'install',
        RELEASE,
        path.join(opts.repoRoot, 'charts/mailfleet'),
        '--namespace',
        OPERATOR_NAMESPACE,
        '--create-namespace',
        '--set',
        'operator.replicas=0',
      ],
      { timeoutMs: 180_000 },
    );
    await k.kubectl(['create', 'namespace', WORK_NAMESPACE]);
    await k.waitFor(
      'ServiceAccount bench/default',
      () => k.get('serviceaccount/default', { namespace: WORK_NAMESPACE }),
      {
        timeoutMs: 60_000,
      },
    );
    const opStart = Date.now();
    const started = await startOperator(k, opts, dir, dns.server);
    const since = (t: number) => `${((t - opStart) / 1000).toFixed(1)} s after the operator started`;
    operator = started.proc;
    say(`  operator leading after ${((Date.now() - opStart) / 1000).toFixed(1)} s`);
    await sleep(5000); // let its informers settle before the load
    const sampler = new TreeSampler(operator.pid, 500);
    const t0 = Date.now();
    const items = [
      ...Array.from({ length: s.relays }, (_, i) => relayObject(i)),
      ...Array.from({ length: s.domains }, (_, i) => domainObject(i, s.relays, s.dkimAlgorithm)),
    ];
    await k.kubectl(['create', '-f', '-'], {
      input: JSON.stringify({ apiVersion: 'v1', kind: 'List', items }),
      timeoutMs: 600_000,
    });
    result.createSeconds = (Date.now() - t0) / 1000;
    say(`  create began ${since(t0)}`);
    say(`  created ${items.length} objects in ${result.createSeconds.toFixed(1)} s`);
    const deadline = t0 + (opts.convergeTimeoutMs ?? 30 * 60_000);
    let last = { relays: 0, domains: 0 };
    let lastSaid = 0;
    for (;;) {
      last = await readyCounts(k);
      if (last.relays === s.relays && last.domains === s.domains) break;
      if (Date.now() > deadline)
        throw new Error(
          `not converged after ${(deadline - t0) / 1000} s: ${last.relays} relays, ${last.domains} domains Ready`,
        );
      if (Date.now() - lastSaid > 30_000) {
        say(
          `  ${((Date.now() - t0) / 1000).toFixed(0)} s: ${last.relays}/${s.relays} relays, ${last.domains}/${s.domains} domains Ready`,
        );
        lastSaid = Date.now();
      }
      await sleep(2000);
    }
    const tReady = Date.now();
    result.convergeSeconds = (tReady - t0) / 1000;
    result.usageConvergence = sampler.stop();
    say(
      `  all Ready after ${result.convergeSeconds.toFixed(1)} s (${since(tReady)}); steady state for ${s.steadyMs / 1000} s`,
    );
    const steadySampler = new TreeSampler(operator.pid, 1000);
    await sleep(s.steadyMs);
    const tEnd = Date.now();
    say(`  steady window ended ${since(tEnd)}`);
    result.steadySeconds = (tEnd - tReady) / 1000;
    result.usageSteady = steadySampler.stop();
    result.reconciles = reconcileCounts(await metricsText(started.metricsPort));
    const events = k.auditEvents((e) => e.user.username === OPERATOR_USER);
    result.startup = countRequests(events, opStart, t0);
    result.convergence = countRequests(events, t0, tReady);
    result.steady = countRequests(events, tReady, tEnd);
    result.ok = true;
  } catch (err) {
    result.error = err instanceof Error ? err.message : String(err);
    say(`  FAILED: ${result.error}`);
  } finally {
    await operator?.stop(15_000);
    await dns.stop();
    if (info) {
      const keep = opts.keepLogs || !result.ok ? path.join(dir, 'cluster-logs') : undefined;
      await stopCluster(info.stateDir, keep ? { keepLogsIn: keep } : {});
      forgetCluster?.();
      if (keep) say(`  cluster logs kept in ${keep}`);
    }
  }
  return result;
}

export async function runOperatorBench(opts: OperatorBenchOptions): Promise<ScenarioResult[]> {
  const out: ScenarioResult[] = [];
  for (const [i, s] of opts.scenarios.entries()) out.push(await runScenario(opts, s, i));
  return out;
}
