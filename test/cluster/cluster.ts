/**
 * Starts and stops the e2e control plane: etcd, kube-apiserver (RBAC and Node authorization,
 * service-account tokens signed with a key generated at start, client-certificate auth, an audit log of
 * every write), kube-controller-manager (all default controllers with per-controller service accounts,
 * the in-tree hostPath provisioner for the default StorageClass), kube-scheduler, and kwok acting as
 * the kubelet of a few fake nodes whose pods get loopback IPs (127.<n>.<node>.0/24).
 *
 * Everything lives in one state directory: pki/, etcd/, logs/<component>.log, kubeconfig (admin), and
 * cluster.json (ClusterInfo: ports, pids, paths), which is written as soon as the first process starts so
 * that stopCluster() can always clean up, even after a failed start or from another process.
 *
 * Diagnostics: a failed start throws an error naming the component, the tail of its log, and the logs
 * directory. Binaries come from test/cluster/build.sh (`npm run cluster:build`); a missing build is
 * reported with that command.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  issueCa,
  issueClient,
  issueServing,
  serviceAccountKeys,
  type ClientIdentity,
  type Pem,
} from './pki.js';
import {
  clusterDnsObjects,
  corefile,
  createCgroupRoot,
  createNodeNetwork,
  COREDNS_IMAGE,
  DNS_UPSTREAM_PORT,
  importImages,
  inNode,
  localStorageClass,
  mountsUnder,
  PAUSE_IMAGE,
  planRealNode,
  REAL_NODE_LABEL,
  saveKubeletSysctls,
  stopRealNode,
  waitNodeReady,
  writeNodeFiles,
  type ImageArchive,
  type RealNodeInfo,
  type RealNodeNetwork,
} from './node.js';
import { FatalWaitError, freePort, httpGet, isOurProcess, run, tail, waitFor } from './proc.js';

export const STATE_FILE = 'cluster.json';
/** The real node's processes (node.ts), stopped before its teardown and before the control plane. */
const NODE_PROCESSES = new Set(['containerd', 'kubelet', 'kube-proxy', 'local-provisioner']);
export const STORAGE_CLASS = 'standard';
export const STATE_PREFIX = 'mailfleet-cluster-';
const KWOK_NODE_ANNOTATION = 'kwok.x-k8s.io/node';

export interface ProcessInfo {
  name: string;
  pid: number;
  log: string;
}

export interface NodeInfo {
  name: string;
  /** The node's pod CIDR; kwok gives its pods IPs from it. */
  podCIDR: string;
}

export interface ClusterInfo {
  stateDir: string;
  binDir: string;
  /** Admin kubeconfig (client certificate in system:masters). */
  kubeconfig: string;
  /** https://127.0.0.1:<port> */
  server: string;
  /** The CA that signed the API server's certificate (PEM file). */
  caFile: string;
  logsDir: string;
  /** JSON lines, one per write request (create/update/patch/delete), level Metadata. */
  auditLog: string;
  storageClass: string;
  nodes: NodeInfo[];
  processes: ProcessInfo[];
  /** 'jest': the processes die with ownerPid; 'cli': they outlive the command that started them. */
  owner: 'jest' | 'cli';
  ownerPid: number;
  kubernetesVersion: string;
  /** The Service ClusterIP range. */
  serviceCIDR: string;
  /**
   * The address of this machine that pods can reach: where a test runs the peers the cluster's pods talk
   * to (a smarthost, a DNS upstream). 127.0.0.1 without a real node (kwok pods run nothing).
   */
  hostAddress: string;
  /** The real node, when the cluster has one (StartOptions.realNode). */
  realNode?: RealNodeInfo;
  /** The kube-dns Service's ClusterIP (real-node clusters, where CoreDNS runs). */
  clusterDnsIp?: string;
}

export interface RealNodeOptions {
  /** Images to import into the node's containerd (nothing can be pulled), e.g. scripts/image.sh's archive. */
  images?: ImageArchive[];
  /** Where CoreDNS forwards names outside cluster.local ("ip:port"; default: hostAddress:DNS_UPSTREAM_PORT). */
  dnsUpstream?: string;
}

export interface StartOptions {
  /** Directory for all state; created if missing (default: a new temp directory). */
  stateDir?: string;
  /** How many kwok nodes (default 3). */
  nodes?: number;
  owner?: 'jest' | 'cli';
  /**
   * Where pod IPs come from. 'loopback' (default): 127.<octet>.<node>.0/24, so a test can run a real
   * process bound to a pod's IP and reach it; the price is that the API server refuses loopback addresses
   * in Endpoints and EndpointSlices, so Services get none (the controller manager logs
   * FailedToUpdateEndpointSlices). 'private': 10.<octet>.<node>.0/24, unreachable but valid everywhere.
   */
  podNetwork?: 'loopback' | 'private';
  /** Second octet of the pod IPs, 2-254 (default random, so concurrent clusters rarely share pod IPs). */
  podNetworkOctet?: number;
  /** Progress messages (default: none). */
  log?: (msg: string) => void;
  /** Bound on the whole start (default 180 s). */
  timeoutMs?: number;
  /**
   * The API server's audit policy (YAML); default DEFAULT_AUDIT_POLICY, every write at level Metadata.
   * Benchmarks pass one that also logs a client's reads, to count its requests by verb.
   */
  auditPolicy?: string;
  /**
   * A real node as well (kubelet, containerd, kube-proxy, CoreDNS; see node.ts): the API server then listens
   * on the host side of the node's link instead of loopback, Services get endpoints, and the default
   * StorageClass provisions local volumes on the node. Needs root and `test/cluster/build.sh node`.
   */
  realNode?: RealNodeOptions;
}

/** The repository root: the nearest directory upward from cwd holding test/cluster/build.sh. */
export function repoRoot(from = process.cwd()): string {
  let dir = path.resolve(from);
  for (let i = 0; i < 64; i++) {
    if (fs.existsSync(path.join(dir, 'test/cluster/build.sh'))) return dir;
    const up = path.dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  throw new Error(`mailfleet cluster: no test/cluster/build.sh above ${from}; run from the repository`);
}

/** The bin directory of the current build; throws with the build command when it is missing. */
export function locateBinaries(): string {
  const script = path.join(repoRoot(), 'test/cluster/build.sh');
  const r = spawnSync('bash', [script, '--locate'], { encoding: 'utf8' });
  if (r.status !== 0) {
    throw new Error(
      `mailfleet cluster: control-plane binaries missing.\n${r.stderr || r.error?.message || ''}`.trimEnd(),
    );
  }
  return r.stdout.trim();
}

/** The bin directory of the real node's build (kubelet, kube-proxy, ...), with its images in ../images. */
export function locateNodeBinaries(): string {
  const script = path.join(repoRoot(), 'test/cluster/build.sh');
  const r = spawnSync('bash', [script, 'node', '--locate'], { encoding: 'utf8' });
  if (r.status !== 0) {
    throw new Error(
      `mailfleet cluster: real-node binaries missing.\n${r.stderr || r.error?.message || ''}`.trimEnd(),
    );
  }
  return r.stdout.trim();
}

export function readClusterInfo(stateDir: string): ClusterInfo {
  return JSON.parse(fs.readFileSync(path.join(stateDir, STATE_FILE), 'utf8')) as ClusterInfo;
}

function writeClusterInfo(info: ClusterInfo): void {
  const file = path.join(info.stateDir, STATE_FILE);
  fs.writeFileSync(`${file}.tmp`, JSON.stringify(info, null, 2));
  fs.renameSync(`${file}.tmp`, file);
}

type User = { cert: Pem } | { token: string };

/** A kubeconfig (JSON, which kubectl reads as YAML) for `server`, trusting `caPem`, as `user`. */
export function kubeconfigFor(server: string, caPem: string, user: User, name = 'mailfleet-e2e'): string {
  const b64 = (s: string): string => Buffer.from(s).toString('base64');
  const creds =
    'token' in user
      ? { token: user.token }
      : { 'client-certificate-data': b64(user.cert.cert), 'client-key-data': b64(user.cert.key) };
  return JSON.stringify(
    {
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name, cluster: { server, 'certificate-authority-data': b64(caPem) } }],
      users: [{ name, user: creds }],
      contexts: [{ name, context: { cluster: name, user: name } }],
      'current-context': name,
    },
    null,
    2,
  );
}

interface Pki {
  ca: Pem;
  admin: Pem;
  files: Record<
    | 'caCrt'
    | 'caKey'
    | 'servingCrt'
    | 'servingKey'
    | 'saKey'
    | 'saPub'
    | 'proxyCaCrt'
    | 'proxyCrt'
    | 'proxyKey',
    string
  >;
  kubeconfigs: Record<'kcm' | 'scheduler' | 'kwok', string>;
  /** The real node's credentials (real-node clusters only). */
  node?: {
    kubelet: string;
    kubeProxy: string;
    provisioner: string;
    kubeletServingCrt: string;
    kubeletServingKey: string;
    apiserverKubeletCrt: string;
    apiserverKubeletKey: string;
  };
}

function writePki(stateDir: string, server: string, net?: RealNodeNetwork): Pki {
  const dir = path.join(stateDir, 'pki');
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const put = (name: string, data: string): string => {
    const file = path.join(dir, name);
    fs.writeFileSync(file, data, { mode: 0o600 });
    return file;
  };
  const ca = issueCa('mailfleet-e2e-ca');
  const serving = issueServing(
    ca,
    [
      'localhost',
      'kubernetes',
      'kubernetes.default',
      'kubernetes.default.svc',
      'kubernetes.default.svc.cluster.local',
    ],
    net ? ['127.0.0.1', net.node.hostIp, net.apiServiceIp] : ['127.0.0.1', '10.96.0.1'],
  );
  const sa = serviceAccountKeys();
  // The front proxy (request-header) CA, as kubeadm sets it up: the controller manager and scheduler
  // read it to authenticate delegated requests, and aggregated API servers would need it.
  const proxyCa = issueCa('mailfleet-e2e-front-proxy-ca');
  const proxy = issueClient(proxyCa, { user: 'front-proxy-client', groups: [] });
  const client = (id: ClientIdentity): Pem => issueClient(ca, id);
  const admin = client({ user: 'mailfleet-e2e-admin', groups: ['system:masters'] });
  const files = {
    caCrt: put('ca.crt', ca.cert),
    caKey: put('ca.key', ca.key),
    servingCrt: put('apiserver.crt', serving.cert),
    servingKey: put('apiserver.key', serving.key),
    saKey: put('sa.key', sa.key),
    saPub: put('sa.pub', sa.pub),
    proxyCaCrt: put('front-proxy-ca.crt', proxyCa.cert),
    proxyCrt: put('front-proxy-client.crt', proxy.cert),
    proxyKey: put('front-proxy-client.key', proxy.key),
  };
  const kc = (name: string, id: ClientIdentity): string =>
    put(`${name}.kubeconfig`, kubeconfigFor(server, ca.cert, { cert: client(id) }));
  const kubeconfigs = {
    kcm: kc('kube-controller-manager', { user: 'system:kube-controller-manager', groups: [] }),
    scheduler: kc('kube-scheduler', { user: 'system:kube-scheduler', groups: [] }),
    // kwok plays every node's kubelet and patches status across nodes, so it is an admin (as kwokctl does).
    kwok: kc('kwok', { user: 'kwok-controller', groups: ['system:masters'] }),
  };
  if (!net) return { ca, admin, files, kubeconfigs };
  const n = net.node;
  const kubeletServing = issueServing(ca, [n.name], [n.nodeIp]);
  const apiserverKubelet = client({ user: 'kube-apiserver-kubelet-client', groups: ['system:masters'] });
  return {
    ca,
    admin,
    files,
    kubeconfigs,
    node: {
      // The Node authorizer and NodeRestriction admit exactly this identity for the node.
      kubelet: kc('kubelet', { user: `system:node:${n.name}`, groups: ['system:nodes'] }),
      // Bound to system:node-proxier by the default RBAC policy.
      kubeProxy: kc('kube-proxy', { user: 'system:kube-proxy', groups: [] }),
      // The provisioner is part of the harness, like kwok: an admin.
      provisioner: kc('local-provisioner', { user: 'local-provisioner', groups: ['system:masters'] }),
      kubeletServingCrt: put('kubelet.crt', kubeletServing.cert),
      kubeletServingKey: put('kubelet.key', kubeletServing.key),
      apiserverKubeletCrt: put('apiserver-kubelet-client.crt', apiserverKubelet.cert),
      apiserverKubeletKey: put('apiserver-kubelet-client.key', apiserverKubelet.key),
    },
  };
}

export const DEFAULT_AUDIT_POLICY = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    verbs: [create, update, patch, delete, deletecollection]
  - level: None
`;

class Launcher {
  private readonly exits = new Map<string, string>();
  readonly children: ChildProcess[] = [];

  constructor(private readonly info: ClusterInfo) {}

  /**
   * Starts `program` (from the control plane's bin directory, or `opts.binDir`; an absolute path as is),
   * logging to logs/<name>.log; `opts.node` starts it in that real node's network namespace.
   */
  start(
    name: string,
    program: string,
    args: string[],
    env: NodeJS.ProcessEnv = {},
    opts: { binDir?: string; node?: RealNodeInfo } = {},
  ): void {
    const log = path.join(this.info.logsDir, `${name}.log`);
    const fd = fs.openSync(log, 'a');
    let [cmd, argv] = [
      path.isAbsolute(program) ? program : path.join(opts.binDir ?? this.info.binDir, program),
      args,
    ];
    const bin = cmd;
    if (opts.node) [cmd, argv] = inNode(opts.node, cmd, argv);
    // Under jest, the kernel kills the process when jest exits however it exits (PR_SET_PDEATHSIG).
    const pdeath = this.info.owner === 'jest' && fs.existsSync('/usr/bin/setpriv');
    if (pdeath) [cmd, argv] = ['/usr/bin/setpriv', ['--pdeathsig', 'KILL', '--', cmd, ...argv]];
    const childEnv = { ...process.env, ...env };
    delete childEnv.KUBECONFIG;
    const child = spawn(cmd, argv, {
      stdio: ['ignore', fd, fd],
      env: childEnv,
      detached: this.info.owner === 'cli',
    });
    fs.closeSync(fd);
    child.on('exit', (code, signal) =>
      this.exits.set(name, signal ? `killed by ${signal}` : `exit code ${code}`),
    );
    child.on('error', (e) => this.exits.set(name, `could not start: ${e.message}`));
    if (this.info.owner === 'cli') child.unref();
    this.children.push(child);
    if (child.pid === undefined) throw new Error(`mailfleet cluster: could not start ${name} (${bin})`);
    this.info.processes.push({ name, pid: child.pid, log });
    writeClusterInfo(this.info);
  }

  /** Throws FatalWaitError (with the log's tail) if the named process has exited. */
  check(name: string): void {
    const how = this.exits.get(name);
    if (how === undefined) return;
    const log = path.join(this.info.logsDir, `${name}.log`);
    throw new FatalWaitError(`${name} stopped (${how}); ${log}:\n${tail(log)}`);
  }
}

async function kwokConfig(info: ClusterInfo, file: string): Promise<void> {
  const r = await run(path.join(info.binDir, 'kwok-stages'), [], { timeoutMs: 30_000 });
  if (r.code !== 0) throw new Error(`kwok-stages failed: ${r.stderr}`);
  // Stages only: a KwokConfiguration document here would replace kwok's defaults instead of adding to
  // them; the options are flags.
  fs.writeFileSync(file, r.stdout);
}

function bootstrapObjects(info: ClusterInfo): object[] {
  const nodes = info.nodes.map((n, i) => ({
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name: n.name,
      annotations: { [KWOK_NODE_ANNOTATION]: 'fake', 'node.alpha.kubernetes.io/ttl': '0' },
      labels: {
        'kubernetes.io/hostname': n.name,
        'kubernetes.io/os': 'linux',
        'kubernetes.io/arch': 'amd64',
        'node.kubernetes.io/instance-type': 'kwok',
        'topology.kubernetes.io/zone': `zone-${String.fromCharCode(97 + (i % 26))}`,
        type: 'kwok',
      },
    },
    spec: { podCIDR: n.podCIDR, podCIDRs: [n.podCIDR] },
  }));
  const storageClass = {
    apiVersion: 'storage.k8s.io/v1',
    kind: 'StorageClass',
    metadata: {
      name: STORAGE_CLASS,
      annotations: { 'storageclass.kubernetes.io/is-default-class': 'true' },
    },
    // The controller manager's in-tree hostPath provisioner (--enable-hostpath-provisioner) creates a PV
    // (a directory under /tmp/hostpath_pv) for each claim, and its PV controller binds them.
    provisioner: 'kubernetes.io/host-path',
    reclaimPolicy: 'Delete',
    volumeBindingMode: 'Immediate',
  };
  // With a real node, the default StorageClass is its local provisioner's (pods that store data run there).
  return [info.realNode ? localStorageClass(STORAGE_CLASS) : storageClass, ...nodes];
}

async function kubectlAdmin(info: ClusterInfo, args: string[], input?: string): Promise<string> {
  const env: NodeJS.ProcessEnv = { ...process.env, KUBECACHEDIR: path.join(info.stateDir, 'kube-cache') };
  delete env.KUBECONFIG;
  const r = await run(path.join(info.binDir, 'kubectl'), ['--kubeconfig', info.kubeconfig, ...args], {
    input,
    env,
    timeoutMs: 60_000,
  });
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr.trim()}`);
  return r.stdout;
}

interface Ports {
  etcd: number;
  etcdPeer: number;
  apiserver: number;
  kcm: number;
  scheduler: number;
}

async function startEtcdAndApiserver(
  info: ClusterInfo,
  l: Launcher,
  pki: Pki,
  ports: Ports,
  deadline: number,
  auditPolicyYaml: string,
) {
  const etcdUrl = `http://127.0.0.1:${ports.etcd}`;
  const peerUrl = `http://127.0.0.1:${ports.etcdPeer}`;
  l.start('etcd', 'etcd', [
    '--name=e2e',
    `--data-dir=${path.join(info.stateDir, 'etcd')}`,
    `--listen-client-urls=${etcdUrl}`,
    `--advertise-client-urls=${etcdUrl}`,
    `--listen-peer-urls=${peerUrl}`,
    `--initial-advertise-peer-urls=${peerUrl}`,
    `--initial-cluster=e2e=${peerUrl}`,
    '--initial-cluster-state=new',
    '--unsafe-no-fsync=true', // throwaway test data: durability is not what is tested here
    '--log-level=warn',
  ]);
  await waitFor(
    'etcd /health',
    async () => {
      l.check('etcd');
      const r = await httpGet(`${etcdUrl}/health`);
      return r.status === 200 && r.body.includes('true');
    },
    { timeoutMs: Math.max(1000, deadline - Date.now()) },
  );

  const auditPolicy = path.join(info.stateDir, 'audit-policy.yaml');
  fs.writeFileSync(auditPolicy, auditPolicyYaml);
  const node = info.realNode;
  const addressing = node
    ? [
        // On the host side of the real node's link: its pods reach it through the kubernetes Service,
        // whose endpoint the API server keeps (the default lease reconciler).
        `--bind-address=${node.hostIp}`,
        `--advertise-address=${node.hostIp}`,
        `--kubelet-client-certificate=${pki.node!.apiserverKubeletCrt}`,
        `--kubelet-client-key=${pki.node!.apiserverKubeletKey}`,
        `--kubelet-certificate-authority=${pki.files.caCrt}`,
        '--kubelet-preferred-address-types=InternalIP',
      ]
    : [
        '--bind-address=127.0.0.1',
        '--advertise-address=127.0.0.1',
        // The kubernetes Service's endpoints may not be loopback addresses, so nothing maintains them.
        '--endpoint-reconciler-type=none',
      ];
  l.start('kube-apiserver', 'kube-apiserver', [
    `--etcd-servers=${etcdUrl}`,
    ...addressing,
    `--secure-port=${ports.apiserver}`,
    `--cert-dir=${path.join(info.stateDir, 'apiserver')}`,
    `--tls-cert-file=${pki.files.servingCrt}`,
    `--tls-private-key-file=${pki.files.servingKey}`,
    `--client-ca-file=${pki.files.caCrt}`,
    `--requestheader-client-ca-file=${pki.files.proxyCaCrt}`,
    '--requestheader-allowed-names=front-proxy-client',
    '--requestheader-username-headers=X-Remote-User',
    '--requestheader-group-headers=X-Remote-Group',
    '--requestheader-extra-headers-prefix=X-Remote-Extra-',
    `--proxy-client-cert-file=${pki.files.proxyCrt}`,
    `--proxy-client-key-file=${pki.files.proxyKey}`,
    '--authorization-mode=Node,RBAC',
    '--enable-admission-plugins=NodeRestriction',
    `--service-account-issuer=https://kubernetes.default.svc.cluster.local`,
    `--service-account-key-file=${pki.files.saPub}`,
    `--service-account-signing-key-file=${pki.files.saKey}`,
    `--service-cluster-ip-range=${info.serviceCIDR}`,
    '--allow-privileged=true',
    `--audit-policy-file=${auditPolicy}`,
    `--audit-log-path=${info.auditLog}`,
    '--audit-log-format=json',
    '--audit-log-maxsize=0',
    '--profiling=false',
    '--v=1',
  ]);
  const tls = { ca: pki.ca.cert, cert: pki.admin.cert, key: pki.admin.key };
  await waitFor(
    'kube-apiserver /readyz',
    async () => {
      l.check('kube-apiserver');
      return (await httpGet(`${info.server}/readyz`, tls)).status === 200;
    },
    { timeoutMs: Math.max(1000, deadline - Date.now()) },
  );
}

function startControllers(info: ClusterInfo, l: Launcher, pki: Pki, ports: Ports, kwokYaml: string): void {
  const delegated = (kubeconfig: string): string[] => [
    `--kubeconfig=${kubeconfig}`,
    `--authentication-kubeconfig=${kubeconfig}`,
    `--authorization-kubeconfig=${kubeconfig}`,
  ];
  l.start('kube-controller-manager', 'kube-controller-manager', [
    ...delegated(pki.kubeconfigs.kcm),
    '--bind-address=127.0.0.1',
    `--secure-port=${ports.kcm}`,
    `--cert-dir=${path.join(info.stateDir, 'kube-controller-manager')}`,
    '--leader-elect=false',
    '--controllers=*',
    '--use-service-account-credentials=true',
    `--service-account-private-key-file=${pki.files.saKey}`,
    `--root-ca-file=${pki.files.caCrt}`,
    `--cluster-signing-cert-file=${pki.files.caCrt}`,
    `--cluster-signing-key-file=${pki.files.caKey}`,
    '--enable-hostpath-provisioner=true',
    '--v=1',
  ]);
  l.start('kube-scheduler', 'kube-scheduler', [
    ...delegated(pki.kubeconfigs.scheduler),
    '--bind-address=127.0.0.1',
    `--secure-port=${ports.scheduler}`,
    `--cert-dir=${path.join(info.stateDir, 'kube-scheduler')}`,
    '--leader-elect=false',
    '--v=1',
  ]);
  l.start(
    'kwok',
    'kwok',
    [
      `--kubeconfig=${pki.kubeconfigs.kwok}`,
      `--config=${kwokYaml}`,
      '--manage-all-nodes=false',
      `--manage-nodes-with-annotation-selector=${KWOK_NODE_ANNOTATION}=fake`,
      '--node-ip=127.0.0.1',
      '--node-lease-duration-seconds=40',
    ],
    // kwok also reads ~/.kwok/kwok.yaml when present; keep a developer's file out of the tests.
    { HOME: path.join(info.stateDir, 'kwok-home') },
  );
}

interface NodeList {
  items: { metadata: { name: string }; status?: { conditions?: { type: string; status: string }[] } }[];
}

async function waitSettled(info: ClusterInfo, l: Launcher, ports: Ports, deadline: number): Promise<void> {
  const remaining = (): number => Math.max(1000, deadline - Date.now());
  for (const [name, port] of [
    ['kube-controller-manager', ports.kcm],
    ['kube-scheduler', ports.scheduler],
  ] as const) {
    await waitFor(
      `${name} /healthz`,
      async () => {
        l.check(name);
        return (await httpGet(`https://127.0.0.1:${port}/healthz`, { insecure: true })).status === 200;
      },
      { timeoutMs: remaining() },
    );
  }
  await waitFor(
    `${info.nodes.length} kwok nodes Ready`,
    async () => {
      l.check('kwok');
      const list = JSON.parse(await kubectlAdmin(info, ['get', 'nodes', '-o', 'json'])) as NodeList;
      const ready = list.items.filter((n) =>
        n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
      );
      return ready.length === info.nodes.length;
    },
    { timeoutMs: remaining(), intervalMs: 500 },
  );
  // Pods are refused until their namespace's "default" ServiceAccount exists (the controller manager
  // creates it), so a test that starts right away would flake without this.
  await waitFor(
    'ServiceAccount default/default',
    async () => {
      l.check('kube-controller-manager');
      await kubectlAdmin(info, ['get', 'serviceaccount', 'default', '-n', 'default', '-o', 'name']);
      return true;
    },
    { timeoutMs: remaining(), intervalMs: 500 },
  );
}

function pickPodOctet(opt: number | undefined): number {
  if (opt !== undefined) {
    if (!Number.isInteger(opt) || opt < 2 || opt > 254)
      throw new Error(`podNetworkOctet ${opt}: want 2..254`);
    return opt;
  }
  return 16 + Math.floor(Math.random() * 200);
}

function newStateDir(opts: StartOptions): string {
  return opts.stateDir ? path.resolve(opts.stateDir) : fs.mkdtempSync(path.join(os.tmpdir(), STATE_PREFIX));
}

function newClusterInfo(
  opts: StartOptions,
  stateDir: string,
  binDir: string,
  apiserverPort: number,
  net: RealNodeNetwork | undefined,
): ClusterInfo {
  fs.mkdirSync(path.join(stateDir, 'logs'), { recursive: true });
  fs.mkdirSync(path.join(stateDir, 'kwok-home'), { recursive: true });
  const octet = pickPodOctet(opts.podNetworkOctet);
  const first = opts.podNetwork === 'private' ? 10 : 127;
  const count = opts.nodes ?? 3;
  const version = fs
    .readFileSync(path.join(repoRoot(), 'test/cluster/go.mod'), 'utf8')
    .match(/^\s*k8s\.io\/kubernetes (v\S+)/m);
  return {
    stateDir,
    binDir,
    kubeconfig: path.join(stateDir, 'kubeconfig'),
    server: `https://${net ? net.node.hostIp : '127.0.0.1'}:${apiserverPort}`,
    caFile: path.join(stateDir, 'pki', 'ca.crt'),
    logsDir: path.join(stateDir, 'logs'),
    auditLog: path.join(stateDir, 'logs', 'audit.log'),
    storageClass: STORAGE_CLASS,
    nodes: Array.from({ length: count }, (_, i) => ({
      name: `kwok-node-${i}`,
      podCIDR: `${first}.${octet}.${i}.0/24`,
    })),
    processes: [],
    owner: opts.owner ?? 'jest',
    ownerPid: process.pid,
    kubernetesVersion: version?.[1] ?? 'unknown',
    serviceCIDR: net ? net.serviceCIDR : '10.96.0.0/16',
    hostAddress: net ? net.node.hostIp : '127.0.0.1',
    ...(net ? { realNode: net.node, clusterDnsIp: net.clusterDnsIp } : {}),
  };
}

/** A component could not bind its port: another process took it between freePort() and the bind. */
class PortTaken extends Error {}

/**
 * Starts a control plane and returns its description once it is usable: API server ready, controllers and
 * scheduler healthy, every node Ready, the default ServiceAccount present. On failure everything started
 * is stopped and the error names the component and the logs directory. A port lost to another process
 * before its component bound it (freePort's inherent race) costs a fresh attempt, at most three in all.
 */
export async function startCluster(opts: StartOptions = {}): Promise<ClusterInfo> {
  const deadline = Date.now() + (opts.timeoutMs ?? 180_000);
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(opts, deadline);
    } catch (e) {
      if (!(e instanceof PortTaken) || attempt >= 3) throw e;
      opts.log?.(
        `a port was taken before its component bound it; starting again (${e.message.split('\n')[0]})`,
      );
    }
  }
}

async function startOnce(opts: StartOptions, deadline: number): Promise<ClusterInfo> {
  const say = opts.log ?? ((): void => undefined);
  const binDir = locateBinaries();
  const nodeBinDir = opts.realNode ? locateNodeBinaries() : undefined;
  if (opts.realNode && process.getuid?.() !== 0) throw new Error('mailfleet cluster: a real node needs root');
  const ports: Ports = {
    etcd: await freePort(),
    etcdPeer: await freePort(),
    apiserver: await freePort(),
    kcm: await freePort(),
    scheduler: await freePort(),
  };
  const stateDir = newStateDir(opts);
  const net = opts.realNode ? await planRealNode(stateDir) : undefined;
  const info = newClusterInfo(opts, stateDir, binDir, ports.apiserver, net);
  writeClusterInfo(info);
  const launcher = new Launcher(info);
  try {
    say(`state in ${info.stateDir}`);
    if (net) {
      await createNodeNetwork(net);
      say(`real node network: ${net.node.netns}, host ${net.node.hostIp}, node ${net.node.nodeIp}`);
    }
    const pki = writePki(info.stateDir, info.server, net);
    fs.writeFileSync(info.kubeconfig, kubeconfigFor(info.server, pki.ca.cert, { cert: pki.admin }), {
      mode: 0o600,
    });
    const kwokYaml = path.join(info.stateDir, 'kwok.yaml');
    await kwokConfig(info, kwokYaml);
    await startEtcdAndApiserver(
      info,
      launcher,
      pki,
      ports,
      deadline,
      opts.auditPolicy ?? DEFAULT_AUDIT_POLICY,
    );
    say(`kube-apiserver ready at ${info.server}`);
    await kubectlAdmin(
      info,
      ['apply', '-f', '-'],
      JSON.stringify({ apiVersion: 'v1', kind: 'List', items: bootstrapObjects(info) }),
    );
    startControllers(info, launcher, pki, ports, kwokYaml);
    await waitSettled(info, launcher, ports, deadline);
    if (net && nodeBinDir) {
      await startRealNode(info, launcher, pki, net, nodeBinDir, opts.realNode!, deadline, say);
    }
    say(
      `cluster ready: ${info.nodes.length} kwok nodes${net ? ` and ${net.node.name}` : ''}, kubeconfig ${info.kubeconfig}`,
    );
    return info;
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    if (/bind: address already in use/.test(msg)) {
      await stopCluster(info.stateDir);
      throw new PortTaken(msg, { cause: e });
    }
    await stopCluster(info.stateDir, { keepState: true });
    throw new Error(`mailfleet cluster: start failed: ${msg}\ncluster logs: ${info.logsDir}`, { cause: e });
  }
}

/**
 * The real node (node.ts): containerd with the images imported, the kubelet, kube-proxy and the local
 * provisioner, then the cluster DNS; returns once the node is Ready and CoreDNS answers.
 */
async function startRealNode(
  info: ClusterInfo,
  l: Launcher,
  pki: Pki,
  net: RealNodeNetwork,
  nodeBinDir: string,
  opts: RealNodeOptions,
  deadline: number,
  say: (m: string) => void,
): Promise<void> {
  const node = net.node;
  const remaining = (): number => Math.max(1000, deadline - Date.now());
  const creds = pki.node!;
  const files = writeNodeFiles(net, {
    caFile: pki.files.caCrt,
    kubeletKubeconfig: creds.kubelet,
    kubeletServingCrt: creds.kubeletServingCrt,
    kubeletServingKey: creds.kubeletServingKey,
    kubeProxyKubeconfig: creds.kubeProxy,
  });
  createCgroupRoot(node);
  saveKubeletSysctls(node);
  writeClusterInfo(info);
  l.start('containerd', '/usr/bin/containerd', ['--config', files.containerdConfig], {}, { node });
  await waitFor(
    'containerd to answer',
    async () => {
      l.check('containerd');
      const r = await run('ctr', ['--address', node.containerdSocket, 'version'], { timeoutMs: 10_000 });
      return r.code === 0;
    },
    { timeoutMs: remaining(), intervalMs: 200 },
  );
  const imagesDir = path.join(path.dirname(nodeBinDir), 'images');
  const imported = await importImages(node, [
    { file: path.join(imagesDir, 'pause.tar'), baseName: PAUSE_IMAGE.split(':')[0] },
    { file: path.join(imagesDir, 'coredns.tar'), baseName: COREDNS_IMAGE.split(':')[0] },
    ...(opts.images ?? []),
  ]);
  say(`images imported into ${node.name}: ${imported.join(', ')}`);
  l.start(
    'kubelet',
    'kubelet',
    [
      `--config=${files.kubeletConfig}`,
      `--kubeconfig=${creds.kubelet}`,
      `--root-dir=${files.kubeletRoot}`,
      `--cert-dir=${path.join(node.dir, 'kubelet-pki')}`,
      `--hostname-override=${node.name}`,
      `--node-ip=${node.nodeIp}`,
      `--node-labels=${REAL_NODE_LABEL}=real`,
      '--v=1',
    ],
    {},
    { binDir: nodeBinDir, node },
  );
  l.start(
    'kube-proxy',
    'kube-proxy',
    [`--config=${files.kubeProxyConfig}`, '--v=1'],
    {},
    { binDir: nodeBinDir, node },
  );
  l.start(
    'local-provisioner',
    'local-provisioner',
    [`--kubeconfig=${creds.provisioner}`, `--base-dir=${files.volumesDir}`, '--v=1'],
    {},
    { binDir: nodeBinDir },
  );
  await waitNodeReady(
    async (args) => JSON.parse(await kubectlAdmin(info, args)) as unknown,
    node,
    () => ['containerd', 'kubelet', 'kube-proxy', 'local-provisioner'].forEach((n) => l.check(n)),
    remaining(),
  );
  say(`${node.name} Ready`);
  await kubectlAdmin(
    info,
    ['apply', '-f', '-'],
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'List',
      items: clusterDnsObjects(net, corefile(opts.dnsUpstream ?? `${node.hostIp}:${DNS_UPSTREAM_PORT}`)),
    }),
  );
  await waitFor(
    'CoreDNS Available',
    async () => {
      l.check('kubelet');
      const d = JSON.parse(
        await kubectlAdmin(info, ['get', 'deployment', 'coredns', '-n', 'kube-system', '-o', 'json']),
      ) as { status?: { availableReplicas?: number } };
      return (d.status?.availableReplicas ?? 0) >= 1;
    },
    { timeoutMs: remaining(), intervalMs: 500 },
  );
  say('cluster DNS Available');
}

async function stopProcess(p: ProcessInfo, marker: string): Promise<void> {
  if (!isOurProcess(p.pid, marker)) return;
  try {
    process.kill(p.pid, 'SIGTERM');
  } catch {
    return;
  }
  const gone = await waitFor(`${p.name} (pid ${p.pid}) to exit`, () => !isOurProcess(p.pid, marker), {
    timeoutMs: 10_000,
    intervalMs: 100,
  }).catch(() => false);
  if (gone) return;
  try {
    process.kill(p.pid, 'SIGKILL');
  } catch {
    return;
  }
  await waitFor(`${p.name} (pid ${p.pid}) to die`, () => !isOurProcess(p.pid, marker), {
    timeoutMs: 5_000,
    intervalMs: 100,
  }).catch(() => undefined);
}

interface PvList {
  items: { spec?: { hostPath?: { path?: string } } }[];
}

/** Removes the directories the hostPath provisioner made for this cluster's volumes (best effort). */
async function removeVolumeDirs(info: ClusterInfo): Promise<void> {
  try {
    const list = JSON.parse(
      await kubectlAdmin(info, ['get', 'pv', '-o', 'json', '--request-timeout=5s']),
    ) as PvList;
    for (const pv of list.items) {
      const dir = pv.spec?.hostPath?.path;
      if (dir && /^\/tmp\/hostpath_pv\/[0-9a-f-]+$/.test(dir))
        fs.rmSync(dir, { recursive: true, force: true });
    }
  } catch {
    // The API server may already be gone; the directories are empty and small.
  }
}

export interface StopOptions {
  /** Keep the state directory (default: remove it, except logs when keepLogsIn is given). */
  keepState?: boolean;
  /** Move the logs directory here before removing the state directory. */
  keepLogsIn?: string;
}

/** Stops every process of the cluster in `stateDir` (in reverse start order) and cleans up. Idempotent. */
export async function stopCluster(stateDir: string, opts: StopOptions = {}): Promise<void> {
  let info: ClusterInfo;
  try {
    info = readClusterInfo(stateDir);
  } catch {
    return;
  }
  if (!opts.keepState) await removeVolumeDirs(info);
  const stopping = [...info.processes].reverse();
  if (info.realNode) {
    // The node first (its processes were started last): then what it left behind, while the API server
    // is still up for nothing in particular but a clean order.
    for (const p of stopping.filter((x) => NODE_PROCESSES.has(x.name))) await stopProcess(p, info.stateDir);
    const problems = await stopRealNode(info.realNode, info.stateDir);
    if (problems.length > 0)
      process.stderr.write(`mailfleet cluster: real node teardown: ${problems.join('; ')}\n`);
  }
  for (const p of stopping.filter((x) => !NODE_PROCESSES.has(x.name))) await stopProcess(p, info.stateDir);
  if (opts.keepState) return;
  if (info.realNode && mountsUnder(info.stateDir).length > 0) {
    // Never rm -rf through a mount that could not be removed.
    throw new Error(
      `mailfleet cluster: ${info.stateDir} still has mounts (${mountsUnder(info.stateDir).join(', ')}); left in place`,
    );
  }
  if (opts.keepLogsIn) {
    fs.mkdirSync(path.dirname(opts.keepLogsIn), { recursive: true });
    fs.rmSync(opts.keepLogsIn, { recursive: true, force: true });
    try {
      fs.renameSync(info.logsDir, opts.keepLogsIn);
    } catch {
      fs.cpSync(info.logsDir, opts.keepLogsIn, { recursive: true }); // another file system
    }
  }
  fs.rmSync(info.stateDir, { recursive: true, force: true });
}

/** Which of the cluster's processes are still running. */
export function runningProcesses(info: ClusterInfo): ProcessInfo[] {
  return info.processes.filter((p) => isOurProcess(p.pid, info.stateDir));
}

/**
 * Stops clusters left behind by test runs whose jest process died (its pid is gone), and removes their
 * state. Clusters started by hand (owner 'cli') and clusters of live runs are left alone.
 */
export async function reapStaleClusters(tmp = os.tmpdir()): Promise<string[]> {
  const reaped: string[] = [];
  for (const name of fs.readdirSync(tmp)) {
    if (!name.startsWith(STATE_PREFIX)) continue;
    const dir = path.join(tmp, name);
    let info: ClusterInfo;
    try {
      info = readClusterInfo(dir);
    } catch {
      continue;
    }
    if (info.owner !== 'jest' || isOurProcess(info.ownerPid, '')) continue;
    await stopCluster(dir);
    reaped.push(dir);
  }
  return reaped;
}

/** Removes all but the `keep` most recently modified subdirectories of `dir`. */
export function pruneDirs(dir: string, keep: number): void {
  if (!fs.existsSync(dir)) return;
  const subdirs = fs
    .readdirSync(dir, { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .map((d) => ({ p: path.join(dir, d.name), t: fs.statSync(path.join(dir, d.name)).mtimeMs }))
    .sort((a, b) => b.t - a.t);
  for (const d of subdirs.slice(keep)) fs.rmSync(d.p, { recursive: true, force: true });
}
