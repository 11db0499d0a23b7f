/**
 * What the operator's e2e files share: a namespace with the operator's RBAC installed from the Helm chart
 * (rendered with helm, applied with the built kubectl, the Deployment left out: kwok runs no containers),
 * and the operator itself run from dist/ as a local process that authenticates with a token of the
 * chart's ServiceAccount, so the chart's ClusterRole is exactly what it can do.
 *
 *   const env = await installOperator(k, 'lifecycle');        // namespace, CRDs, chart RBAC, SA kubeconfig
 *   const op = await startOperator(k, env, { dnsServer: dns.server, syncPeriod: '10s' });
 *   await op.waitForCondition('smtprelay/mail', 'Ready', { generation: true });
 *   op.writes(sinceMs)                                        // its writes in the audit log, Leases aside
 *   await op.kill();  await env.cleanup();
 *
 * Each operator watches only its file's namespace (--namespaces), so files never reconcile each other's
 * objects; it connects for drains only inside 127.0.0.0/8 (--drain-networks) and looks DNS up only at
 * the test's own DNS server (--dns-server). Every wait is bounded, checks first that the operator is still
 * running (a crash fails at once), and on failure ends with the tail of the operator's log.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import YAML from 'yaml';
import type { AuditEvent, Cluster, Condition, KubeObject } from '../cluster/kube.js';
import { FatalWaitError, type WaitOptions } from '../cluster/proc.js';
import { metricValue } from '../helpers/relay.js';

export const REPO_ROOT = path.resolve(__dirname, '..', '..');
export const OPERATOR_CLI = path.join(REPO_ROOT, 'dist', 'operator', 'cli.js');
export const CHART_DIR = path.join(REPO_ROOT, 'charts', 'mailfleet');
export const CRDS_DIR = path.join(REPO_ROOT, 'crds');
export const EXAMPLES_DIR = path.join(REPO_ROOT, 'examples');

export interface OperatorNamespace {
  /** The namespace of the file: the operator's Lease and every test object live here. */
  ns: string;
  /** The Helm release name the RBAC was rendered with (the namespace's name). */
  release: string;
  serviceAccount: string;
  /** The operator's user name, as the API server's audit log records it. */
  user: string;
  /** A kubeconfig with a token of the ServiceAccount (and nothing else). */
  kubeconfig: string;
  /**
   * Deletes the namespace and the release's cluster-scoped RBAC. SmtpRelays left in it lose their drain
   * finalizer first (the operator may be stopped by then), so the namespace does not hang in Terminating.
   */
  cleanup(): Promise<void>;
}

interface Doc {
  kind?: string;
  metadata?: { name?: string };
}

/**
 * Creates a namespace `<prefix>-<random>`, applies crds/ (idempotent; files share the CRDs) and waits
 * until they are served, renders the chart with the namespace as release name (so the ClusterRole of
 * each file has its own name) and applies everything but the Deployment, and waits until RBAC lets the
 * ServiceAccount list SmtpRelays everywhere.
 */
export async function installOperator(k: Cluster, prefix: string): Promise<OperatorNamespace> {
  const ns = await k.createNamespace(prefix);
  await k.kubectl(['apply', '-f', CRDS_DIR]);
  await k.kubectl([
    'wait',
    '--for=condition=Established',
    '--timeout=60s',
    'crd/smtprelays.mailfleet.dev',
    'crd/maildomains.mailfleet.dev',
  ]);
  const release = ns;
  const rendered = await k.helm(['template', release, CHART_DIR, '--namespace', ns]);
  const docs = YAML.parseAllDocuments(rendered.stdout)
    .map((d) => d.toJS() as Doc | null)
    .filter((d): d is Doc => !!d?.kind);
  const kept = docs.filter((d) => d.kind !== 'Deployment');
  const sa = kept.find((d) => d.kind === 'ServiceAccount')?.metadata?.name;
  const clusterScoped = kept
    .filter((d) => d.kind === 'ClusterRole' || d.kind === 'ClusterRoleBinding')
    .map((d) => `${d.kind!.toLowerCase()}/${d.metadata?.name}`);
  if (!sa) throw new Error(`helm template rendered no ServiceAccount:\n${rendered.stdout}`);
  await k.apply(kept, { namespace: ns });
  const user = `system:serviceaccount:${ns}:${sa}`;
  await k.waitFor(`RBAC to let ${user} list SmtpRelays`, async () => {
    const r = await k.kubectl(['auth', 'can-i', 'list', 'smtprelays.mailfleet.dev', '-A', '--as', user], {
      allowFailure: true,
    });
    return r.stdout.trim() === 'yes';
  });
  const kubeconfig = await k.serviceAccountKubeconfig(ns, sa, { durationSeconds: 7200 });
  return {
    ns,
    release,
    serviceAccount: sa,
    user,
    kubeconfig,
    cleanup: async () => {
      const left = await k.kubectl(['get', 'smtprelays', '-n', ns, '-o', 'name'], { allowFailure: true });
      for (const relay of left.stdout.split('\n').filter(Boolean)) {
        await k.kubectl(
          ['patch', relay, '-n', ns, '--type=merge', '-p', '{"metadata":{"finalizers":null}}'],
          { allowFailure: true },
        );
      }
      await k.deleteNamespace(ns);
      if (clusterScoped.length)
        await k.kubectl(['delete', '--ignore-not-found', '--wait=false', ...clusterScoped]);
    },
  };
}

export type LogLine = Record<string, unknown> & { msg?: string; level?: number };

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface OperatorOptions {
  /** "127.0.0.1:PORT" of the test's DNS server, for MailDomain DNS checks (never the system resolver). */
  dnsServer: string;
  /** --sync-period (default 10s: a minute holds several resyncs). */
  syncPeriod?: string;
  /** --leader-elect (default true, with the Lease in the file's namespace). */
  leaderElect?: boolean;
  /** --drain-peer-address (default dns). */
  drainPeerAddress?: 'dns' | 'ip';
  /** --dns-check-interval (default 5s). */
  dnsCheckInterval?: string;
  /** --log-level (default debug: the log says what each write was). */
  logLevel?: string;
  /** Extra flags. */
  args?: string[];
  /** How this process is called in failure messages (default "operator"). */
  name?: string;
}

export interface WaitForConditionOptions extends WaitOptions {
  status?: string;
  /** The condition's observedGeneration must equal metadata.generation. */
  generation?: boolean;
  /** Also require reason. */
  reason?: string;
  /** Also require this of the object (e.g. a status field). */
  match?: (obj: KubeObject) => boolean;
  /** Says what `match` checks, for the failure message. */
  matchWhat?: string;
}

export interface OperatorProcess {
  name: string;
  pid: number;
  metricsPort: number;
  probePort: number;
  /** JSON log lines so far. */
  readonly logs: LogLine[];
  /** The last lines of its output (for failure messages). */
  tail(lines?: number): string;
  running(): boolean;
  /** GET on its metrics or probe server: status and body (status 0 when it cannot connect). */
  http(which: 'metrics' | 'probe', pathname: string): Promise<{ status: number; body: string }>;
  metric(name: string, labels?: Record<string, string>): Promise<number | undefined>;
  /** The sum of every sample of `name` whose labels include `labels` (0 when none). */
  metricSum(name: string, labels?: Record<string, string>): Promise<number>;
  /** Its identity in the Lease, once it has led (from its "became leader" log line). */
  identity(): string | undefined;
  /**
   * Polls like Cluster.waitFor, but fails at once if the operator has exited, and the timeout error
   * ends with the tail of its log.
   */
  waitFor<T>(
    what: string,
    check: () => Promise<T | undefined | null | false> | T | undefined | null | false,
    opts?: WaitOptions,
  ): Promise<T>;
  /** Waits until `resource` in the file's namespace has the condition; returns the object. */
  waitForCondition(resource: string, type: string, opts?: WaitForConditionOptions): Promise<KubeObject>;
  /** Its writes (by its user) in the audit log since `sinceMs`, Lease renewals excluded. */
  writes(sinceMs: number): AuditEvent[];
  stop(): Promise<Exit>;
  kill(): Promise<Exit>;
  exited: Promise<Exit>;
}

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) if (child.pid) child.kill('SIGKILL');
});

/** The condition of `type` on an object, if any. */
export function conditionOf(obj: KubeObject | undefined, type: string): Condition | undefined {
  return obj?.status?.conditions?.find((c) => c.type === type);
}

export async function startOperator(
  k: Cluster,
  env: OperatorNamespace,
  opts: OperatorOptions,
): Promise<OperatorProcess> {
  if (!fs.existsSync(OPERATOR_CLI))
    throw new Error(`${OPERATOR_CLI} is missing (the e2e globalSetup builds it)`);
  const name = opts.name ?? 'operator';
  const args = [
    OPERATOR_CLI,
    `--kubeconfig=${env.kubeconfig}`,
    `--namespaces=${env.ns}`,
    `--leader-elect=${opts.leaderElect ?? true}`,
    `--leader-election-namespace=${env.ns}`,
    '--metrics-bind-address=127.0.0.1:0',
    '--health-probe-bind-address=127.0.0.1:0',
    '--drain-networks=127.0.0.0/8',
    '--drain-poll-interval=1s',
    `--drain-peer-address=${opts.drainPeerAddress ?? 'dns'}`,
    `--dns-server=${opts.dnsServer}`,
    `--dns-check-interval=${opts.dnsCheckInterval ?? '5s'}`,
    `--sync-period=${opts.syncPeriod ?? '10s'}`,
    `--log-level=${opts.logLevel ?? 'debug'}`,
    ...(opts.args ?? []),
  ];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  const logs: LogLine[] = [];
  const raw: string[] = [];
  const watchers = new Set<(l: LogLine) => void>();
  const onLine = (line: string) => {
    raw.push(line);
    if (raw.length > 5000) raw.splice(0, 1000);
    let parsed: LogLine;
    try {
      parsed = JSON.parse(line) as LogLine;
    } catch {
      parsed = { msg: line };
    }
    logs.push(parsed);
    for (const w of watchers) w(parsed);
  };
  readline.createInterface({ input: child.stdout }).on('line', onLine);
  readline.createInterface({ input: child.stderr }).on('line', onLine);
  let exit: Exit | undefined;
  const exited = new Promise<Exit>((resolve) =>
    child.once('exit', (code, signal) => {
      running.delete(child);
      exit = { code, signal };
      resolve(exit);
    }),
  );
  const tail = (lines = 40) => raw.slice(-lines).join('\n');
  const describe = () => `${name} (pid ${child.pid}) output, last lines:\n${tail()}`;

  const starting = await new Promise<LogLine>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${name}: no "operator starting" in 60 s\n${describe()}`)),
      60_000,
    );
    const w = (l: LogLine) => {
      if (l.msg !== 'operator starting') return;
      clearTimeout(timer);
      watchers.delete(w);
      resolve(l);
    };
    watchers.add(w);
    void exited.then((e) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited (${e.signal ?? e.code}) before starting\n${describe()}`));
    });
  });
  const metricsPort = Number(starting.metricsPort);
  const probePort = Number(starting.probePort);

  const http = async (which: 'metrics' | 'probe', pathname: string) => {
    const port = which === 'metrics' ? metricsPort : probePort;
    try {
      const res = await fetch(`http://127.0.0.1:${port}${pathname}`, { signal: AbortSignal.timeout(5000) });
      return { status: res.status, body: await res.text() };
    } catch {
      return { status: 0, body: '' };
    }
  };
  const check = () => {
    if (exit)
      throw new FatalWaitError(`${name} exited (${exit.signal ?? `code ${exit.code}`})\n${describe()}`);
  };
  const opWaitFor: OperatorProcess['waitFor'] = async (what, fn, wopts) => {
    try {
      return await k.waitFor(
        what,
        async () => {
          check();
          return fn();
        },
        wopts,
      );
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      throw new Error(msg.includes(describe()) ? msg : `${msg}\n${describe()}`, { cause: e });
    }
  };
  const signal = async (sig: NodeJS.Signals, boundMs: number): Promise<Exit> => {
    if (exit) return exit;
    child.kill(sig);
    const timer = setTimeout(() => child.kill('SIGKILL'), boundMs);
    const e = await exited;
    clearTimeout(timer);
    return e;
  };

  const op: OperatorProcess = {
    name,
    pid: child.pid!,
    metricsPort,
    probePort,
    logs,
    tail,
    running: () => !exit,
    http,
    metric: async (metric, labels = {}) =>
      metricValue((await http('metrics', '/metrics')).body, metric, labels),
    metricSum: async (metric, labels = {}) =>
      sumSamples((await http('metrics', '/metrics')).body, metric, labels),
    identity: () => {
      const led = logs.find((l) => l.msg === 'became leader');
      return typeof led?.identity === 'string' ? led.identity : undefined;
    },
    waitFor: opWaitFor,
    waitForCondition: (resource, type, wopts = {}) => {
      const want = wopts.status ?? 'True';
      const what =
        `${resource} ${type}=${want}${wopts.reason ? ` (${wopts.reason})` : ''}` +
        `${wopts.generation ? ' at the current generation' : ''}${wopts.matchWhat ? ` with ${wopts.matchWhat}` : ''} in ${env.ns}`;
      let last: KubeObject | undefined;
      return opWaitFor(
        what,
        async () => {
          const obj = await k.get(resource, { namespace: env.ns });
          last = obj;
          const c = conditionOf(obj, type);
          if (!obj || !c || c.status !== want) return undefined;
          if (wopts.reason && c.reason !== wopts.reason) return undefined;
          if (wopts.generation && c.observedGeneration !== obj.metadata.generation) return undefined;
          if (wopts.match && !wopts.match(obj)) return undefined;
          return obj;
        },
        wopts,
      ).catch((e: Error) => {
        const seen = last ? `\nlast seen status: ${JSON.stringify(last.status ?? {}, null, 1)}` : '';
        throw new Error(`${e.message}${seen}`, { cause: e });
      });
    },
    writes: (sinceMs) =>
      k.auditEvents(
        (e) =>
          e.user.username === env.user &&
          e.objectRef?.resource !== 'leases' &&
          Date.parse(e.requestReceivedTimestamp) >= sinceMs,
      ),
    stop: () => signal('SIGTERM', 30_000),
    kill: () => signal('SIGKILL', 5_000),
    exited,
  };
  await op.waitFor('operator /readyz', async () => (await http('probe', '/readyz')).status === 200, {
    timeoutMs: 60_000,
  });
  return op;
}

/** Sums the samples of one metric (Prometheus text format) whose labels include `labels`. */
export function sumSamples(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries(
      [...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]),
    );
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) sum += Number(m[3]);
  }
  return sum;
}

/** Summarizes audit events as "verb resource/name[/subresource]" lines, for assertion messages. */
export function describeWrites(events: readonly AuditEvent[]): string[] {
  return events.map((e) => {
    const r = e.objectRef ?? {};
    return `${e.verb} ${r.resource ?? '?'}${r.subresource ? `/${r.subresource}` : ''} ${r.namespace ?? ''}/${r.name ?? ''} (${e.responseStatus?.code ?? '?'})`;
  });
}
