/**
 * What e2e tests use to drive the control plane started by the e2e project's globalSetup: the built
 * kubectl and helm (never whatever is on PATH), kubeconfigs for ServiceAccounts (TokenRequest), unique
 * namespaces, bounded polling for conditions, and the API server's audit log of writes.
 *
 *   const k = clusterFromEnv();                 // the cluster globalSetup started (or reused)
 *   const ns = await k.createNamespace('relay');
 *   await k.apply(manifestYamlOrObjects, { namespace: ns });
 *   const pod = await k.waitForCondition('pod/web-0', 'Ready', { namespace: ns });
 *
 * Every failure message ends with the cluster's logs directory.
 */
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { kubeconfigFor, readClusterInfo, type ClusterInfo } from './cluster.js';
import { run, waitFor, type RunResult, type WaitOptions } from './proc.js';

/** The environment variable globalSetup sets to the state directory of the running cluster. */
export const STATE_ENV = 'MAILFLEET_CLUSTER_STATE';
/** The same for the node project's cluster, the one with a real node (test/node/). */
export const NODE_STATE_ENV = 'MAILFLEET_NODE_CLUSTER_STATE';

export interface KubectlOptions {
  /** Written to the command's stdin (for `-f -`). */
  input?: string;
  /** Use this kubeconfig instead of the admin one (e.g. from serviceAccountKubeconfig). */
  kubeconfig?: string;
  /** Adds `-n <namespace>`. */
  namespace?: string;
  /** Resolve with a non-zero exit instead of throwing (default: throw). */
  allowFailure?: boolean;
  timeoutMs?: number;
}

export interface Condition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
  observedGeneration?: number;
}

/** A Kubernetes object as kubectl prints it with -o json (only the parts the helpers read are typed). */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    uid?: string;
    generation?: number;
    ownerReferences?: { kind: string; name: string; uid: string; controller?: boolean }[];
    [k: string]: unknown;
  };
  spec?: Record<string, unknown>;
  status?: { conditions?: Condition[]; [k: string]: unknown };
  [k: string]: unknown;
}

/** One line of the audit log (level Metadata, writes only). */
export interface AuditEvent {
  verb: string;
  user: { username: string; groups?: string[] };
  objectRef?: {
    resource?: string;
    namespace?: string;
    name?: string;
    apiGroup?: string;
    subresource?: string;
  };
  responseStatus?: { code?: number };
  requestReceivedTimestamp: string;
  stage: string;
}

export class Cluster {
  constructor(readonly info: ClusterInfo) {}

  /** Path of the admin kubeconfig (system:masters). */
  get kubeconfig(): string {
    return this.info.kubeconfig;
  }

  /** Absolute path of one of the built programs (kubectl, helm, kwok, etcd, kube-apiserver, ...). */
  bin(program: string): string {
    return path.join(this.info.binDir, program);
  }

  private env(kubeconfig: string): NodeJS.ProcessEnv {
    const state = this.info.stateDir;
    return {
      ...process.env,
      KUBECONFIG: kubeconfig,
      KUBECACHEDIR: path.join(state, 'kube-cache'),
      HELM_CACHE_HOME: path.join(state, 'helm', 'cache'),
      HELM_CONFIG_HOME: path.join(state, 'helm', 'config'),
      HELM_DATA_HOME: path.join(state, 'helm', 'data'),
    };
  }

  private async tool(program: string, args: string[], opts: KubectlOptions): Promise<RunResult> {
    const kubeconfig = opts.kubeconfig ?? this.info.kubeconfig;
    const full = [...(program === 'kubectl' ? ['--kubeconfig', kubeconfig] : []), ...args];
    if (opts.namespace) full.push('-n', opts.namespace);
    const r = await run(this.bin(program), full, {
      input: opts.input,
      env: this.env(kubeconfig),
      timeoutMs: opts.timeoutMs ?? 60_000,
    });
    if (r.code !== 0 && !opts.allowFailure) {
      throw new Error(
        `${program} ${args.join(' ')} failed (exit ${r.code}): ${r.stderr.trim() || r.stdout.trim()}\n` +
          `cluster logs: ${this.info.logsDir}`,
      );
    }
    return r;
  }

  /** Runs the built kubectl against this cluster (admin unless opts.kubeconfig). */
  kubectl(args: string[], opts: KubectlOptions = {}): Promise<RunResult> {
    return this.tool('kubectl', args, opts);
  }

  /** kubectl with `-o json`, parsed. */
  async kubectlJson<T = KubeObject>(args: string[], opts: KubectlOptions = {}): Promise<T> {
    const r = await this.kubectl([...args, '-o', 'json'], opts);
    return JSON.parse(r.stdout) as T;
  }

  /** The object, or undefined when it does not exist. */
  async get(resource: string, opts: KubectlOptions = {}): Promise<KubeObject | undefined> {
    const r = await this.kubectl(['get', resource, '-o', 'json', '--ignore-not-found'], {
      ...opts,
      allowFailure: false,
    });
    return r.stdout.trim() ? (JSON.parse(r.stdout) as KubeObject) : undefined;
  }

  /** `kubectl apply -f -` of YAML text or objects (server-side validation; returns kubectl's output). */
  async apply(manifest: string | object | object[], opts: KubectlOptions = {}): Promise<RunResult> {
    const input =
      typeof manifest === 'string'
        ? manifest
        : JSON.stringify(
            Array.isArray(manifest) ? { apiVersion: 'v1', kind: 'List', items: manifest } : manifest,
          );
    return this.kubectl(['apply', '-f', '-'], { ...opts, input });
  }

  /** Runs the built helm with KUBECONFIG set to this cluster's admin kubeconfig and a private helm home. */
  helm(args: string[], opts: KubectlOptions = {}): Promise<RunResult> {
    return this.tool('helm', args, opts);
  }

  /**
   * Creates a namespace named `<prefix>-<random>` and returns its name once its "default" ServiceAccount
   * exists (the controller manager adds it; until then the API server refuses pods there).
   */
  async createNamespace(prefix = 'e2e'): Promise<string> {
    const name = `${prefix}-${randomBytes(3).toString('hex')}`;
    await this.kubectl(['create', 'namespace', name]);
    await this.waitFor(`ServiceAccount ${name}/default`, async () =>
      this.get('serviceaccount/default', { namespace: name }),
    );
    return name;
  }

  /** Deletes a namespace without waiting for its finalization. */
  async deleteNamespace(name: string): Promise<void> {
    await this.kubectl(['delete', 'namespace', name, '--wait=false', '--ignore-not-found']);
  }

  /**
   * Writes a kubeconfig that authenticates as ServiceAccount `namespace/name` with a bound token from the
   * TokenRequest API (`kubectl create token`), and returns its path. Only the token: no admin certificate
   * rides along, so RBAC decides exactly as it would for the pod.
   */
  async serviceAccountKubeconfig(
    namespace: string,
    name: string,
    opts: { durationSeconds?: number; file?: string } = {},
  ): Promise<string> {
    const r = await this.kubectl([
      'create',
      'token',
      name,
      '-n',
      namespace,
      `--duration=${opts.durationSeconds ?? 3600}s`,
    ]);
    const file = opts.file ?? path.join(this.info.stateDir, 'kubeconfigs', `${namespace}.${name}.kubeconfig`);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    const ca = fs.readFileSync(this.info.caFile, 'utf8');
    fs.writeFileSync(
      file,
      kubeconfigFor(this.info.server, ca, { token: r.stdout.trim() }, `${namespace}-${name}`),
      {
        mode: 0o600,
      },
    );
    return file;
  }

  /** Polls (bounded) until `check` returns a value; see proc.waitFor. The error names the logs directory. */
  async waitFor<T>(
    what: string,
    check: () => Promise<T | undefined | null | false> | T | undefined | null | false,
    opts: WaitOptions = {},
  ): Promise<T> {
    try {
      return await waitFor(what, check, opts);
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      throw new Error(`${msg}\ncluster logs: ${this.info.logsDir}`, { cause: e });
    }
  }

  /**
   * Waits until `resource` (e.g. 'pod/web-0', 'smtprelay/a') has condition `type` with `status`
   * (default 'True'), and returns the object. With `generation: true`, the condition's
   * observedGeneration must also equal metadata.generation.
   */
  waitForCondition(
    resource: string,
    type: string,
    opts: KubectlOptions & WaitOptions & { status?: string; generation?: boolean } = {},
  ): Promise<KubeObject> {
    const want = opts.status ?? 'True';
    return this.waitFor(
      `${resource} condition ${type}=${want}${opts.namespace ? ` in ${opts.namespace}` : ''}`,
      async () => {
        const obj = await this.get(resource, opts);
        const c = obj?.status?.conditions?.find((x) => x.type === type);
        if (!obj || !c || c.status !== want) return undefined;
        if (opts.generation && c.observedGeneration !== obj.metadata.generation) return undefined;
        return obj;
      },
      opts,
    );
  }

  /** Waits until `resource` no longer exists. */
  async waitForGone(resource: string, opts: KubectlOptions & WaitOptions = {}): Promise<void> {
    await this.waitFor(
      `${resource} to be gone`,
      async () => (await this.get(resource, opts)) === undefined,
      opts,
    );
  }

  /** The audit log's events (writes only), optionally filtered. */
  auditEvents(filter: (e: AuditEvent) => boolean = () => true): AuditEvent[] {
    const text = fs.existsSync(this.info.auditLog) ? fs.readFileSync(this.info.auditLog, 'utf8') : '';
    return text
      .split('\n')
      .filter((l) => l.trim())
      .map((l) => JSON.parse(l) as AuditEvent)
      .filter(filter);
  }
}

/** The cluster the e2e project's globalSetup started (its state directory is in $MAILFLEET_CLUSTER_STATE). */
export function clusterFromEnv(env: typeof STATE_ENV | typeof NODE_STATE_ENV = STATE_ENV): Cluster {
  const dir = process.env[env];
  if (!dir) {
    const project = env === STATE_ENV ? 'e2e' : 'node';
    throw new Error(
      `${env} is not set: these tests run in jest's ${project} project, whose globalSetup starts the cluster ` +
        `(npm run test:${project})`,
    );
  }
  return new Cluster(readClusterInfo(dir));
}
