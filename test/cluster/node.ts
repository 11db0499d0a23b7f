/**
 * The test cluster's real node: a kubelet that runs containers (containerd and runc from Debian, the CNI
 * bridge, host-local and portmap plugins), kube-proxy in iptables mode, a dynamic provisioner of `local`
 * volumes, and CoreDNS as the cluster DNS, next to (or instead of) the kwok nodes.
 *
 * The node lives in a network namespace of its own that the harness creates, joined to this machine by
 * one veth pair on a /30: the host side (10.<o>.254.1) is where the API server listens and where tests
 * put the peers pods must reach (smarthost, DNS upstream); the node side (10.<o>.254.2) is the node's
 * InternalIP. Pods sit on the node's bridge (10.<o>.0.0/24) and Services get ClusterIPs from
 * 10.<o>.96.0/20; the host routes 10.<o>.0.0/16 into the node, so a test process reaches pods and
 * Services directly. The host never forwards (its ip_forward is left alone), and the node's only route
 * out leads to the host, so no pod traffic can leave the machine. iptables rules (kube-proxy's) and
 * sysctls of the network stack stay inside the node's namespace.
 *
 * The kubelet and containerd share this machine's mount namespace (the kubelet's volume mounts must be
 * visible to runc), so their mounts live under the node's directory and are unmounted on teardown; the
 * kubelet's cgroups live under a cgroup root of their own (/mailfleet-<o>), so two clusters never share
 * one. Teardown (stopRealNode) kills what runs in those cgroups and the containerd shims, unmounts, and
 * removes the namespace, the veth, the cgroups and the directory, and puts back the kernel settings the
 * kubelet changes (vm.overcommit_memory, kernel.panic, kernel.panic_on_oops).
 *
 * Images cannot be pulled here: every image a pod uses is imported into the node's containerd from an
 * OCI archive (the pause and CoreDNS images build.sh makes, and the ones the caller passes).
 *
 * Needs root, iproute2, nsenter (util-linux), iptables, containerd/ctr, runc and the CNI plugins
 * (scripts/test-tools.sh installs them), and the node binaries from `test/cluster/build.sh node`.
 */
import fs from 'node:fs';
import path from 'node:path';
import { isOurProcess, run, waitFor, type RunResult } from './proc.js';

export const REAL_NODE_LABEL = 'mailfleet.dev/test-node';
export const PAUSE_IMAGE = 'mailfleet.test/pause:1';
export const COREDNS_IMAGE = 'mailfleet.test/coredns:1';
/** The StorageClass of the real node's provisioner (the cluster's default when there is a real node). */
export const LOCAL_PROVISIONER = 'mailfleet.dev/local';
const CNI_BIN_DIR = '/usr/lib/cni';
/**
 * CoreDNS forwards names outside cluster.local to this port on the host side of the node's link: a test
 * that needs pods to resolve its names runs its DNS server there (test/helpers/dns.ts, { host, port }).
 */
export const DNS_UPSTREAM_PORT = 5353;
/** Kernel settings the kubelet sets at start (protectKernelDefaults: false); put back on teardown. */
const KUBELET_SYSCTLS = ['vm/overcommit_memory', 'kernel/panic', 'kernel/panic_on_oops'];

export interface RealNodeInfo {
  name: string;
  /** The node's network namespace (/run/netns/<netns>). */
  netns: string;
  /** The host side of the veth pair. */
  hostVeth: string;
  /** Host side of the link: the API server's address, and where pods reach processes on this machine. */
  hostIp: string;
  /** The node's InternalIP (node side of the link). */
  nodeIp: string;
  podCIDR: string;
  /** Everything of the node: containerd's root and state, the kubelet's root, logs, volumes. */
  dir: string;
  containerdSocket: string;
  /** The kubelet's --cgroup-root, under every cgroup v1 hierarchy (and v2, when mounted). */
  cgroupRoot: string;
  /** The kubelet's kernel settings as they were before it started. */
  savedSysctls: Record<string, string>;
}

export interface RealNodeNetwork {
  octet: number;
  serviceCIDR: string;
  /** The kubernetes Service's ClusterIP (first address of the range). */
  apiServiceIp: string;
  /** The kube-dns Service's ClusterIP. */
  clusterDnsIp: string;
  node: RealNodeInfo;
}

/** An image to import into the node's containerd: an OCI (or docker) archive, and the name it should carry. */
export interface ImageArchive {
  file: string;
  /** With archives whose index names only a tag (umoci's), the repository to prefix. */
  baseName?: string;
}

async function sh(cmd: string, args: string[], what = `${cmd} ${args.join(' ')}`): Promise<RunResult> {
  const r = await run(cmd, args, { timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`${what}: exit ${r.code}: ${(r.stderr || r.stdout).trim()}`);
  return r;
}

/** Runs a command inside the node's network namespace. */
export function inNode(node: RealNodeInfo, cmd: string, args: string[]): [string, string[]] {
  return ['nsenter', [`--net=/run/netns/${node.netns}`, '--', cmd, ...args]];
}

/**
 * Picks the second octet of the node's 10.<o>.0.0/16 so that nothing on this machine (another test
 * cluster's node, a developer's network) uses an address or a route in it, and names the node's pieces.
 */
export async function planRealNode(stateDir: string, requested?: number): Promise<RealNodeNetwork> {
  const taken = new Set<number>();
  const addrs = await run('ip', ['-4', '-o', 'addr', 'show'], { timeoutMs: 10_000 });
  const routes = await run('ip', ['-4', 'route', 'show', 'table', 'all'], { timeoutMs: 10_000 });
  for (const m of `${addrs.stdout}\n${routes.stdout}`.matchAll(/\b10\.(\d{1,3})\.\d{1,3}\.\d{1,3}/g))
    taken.add(Number(m[1]));
  const netnsTaken = new Set(fs.existsSync('/run/netns') ? fs.readdirSync('/run/netns') : []);
  const candidates = requested !== undefined ? [requested] : shuffled(range(16, 250));
  const octet = candidates.find((o) => !taken.has(o) && !netnsTaken.has(`mf-${o}-node0`));
  if (octet === undefined) {
    throw new Error(
      requested !== undefined
        ? `real node: 10.${requested}.0.0/16 is in use on this machine; pick another podNetworkOctet`
        : 'real node: every 10.x.0.0/16 from 10.16 to 10.249 is in use on this machine',
    );
  }
  const dir = path.join(stateDir, 'node-0');
  return {
    octet,
    serviceCIDR: `10.${octet}.96.0/20`,
    apiServiceIp: `10.${octet}.96.1`,
    clusterDnsIp: `10.${octet}.96.10`,
    node: {
      name: 'real-node-0',
      netns: `mf-${octet}-node0`,
      hostVeth: `mf${octet}h0`,
      hostIp: `10.${octet}.254.1`,
      nodeIp: `10.${octet}.254.2`,
      podCIDR: `10.${octet}.0.0/24`,
      dir,
      containerdSocket: path.join(dir, 'containerd', 'containerd.sock'),
      cgroupRoot: `mailfleet-${octet}`,
      savedSysctls: {},
    },
  };
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from }, (_, i) => from + i);
}

function shuffled<T>(xs: T[]): T[] {
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

/** The node's network namespace, its veth link to the host, and the routes between them. */
export async function createNodeNetwork(net: RealNodeNetwork): Promise<void> {
  const n = net.node;
  const inNs = (args: string[]): Promise<RunResult> => sh('ip', ['-n', n.netns, ...args]);
  await sh('ip', ['netns', 'add', n.netns]);
  await sh('ip', ['link', 'add', n.hostVeth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', n.netns]);
  await sh('ip', ['addr', 'add', `${n.hostIp}/30`, 'dev', n.hostVeth]);
  await sh('ip', ['link', 'set', n.hostVeth, 'up']);
  await inNs(['link', 'set', 'lo', 'up']);
  await inNs(['addr', 'add', `${n.nodeIp}/30`, 'dev', 'eth0']);
  await inNs(['link', 'set', 'eth0', 'up']);
  // The node's only way out leads to the host, which does not forward: traffic for anything but the
  // host's own addresses ends there.
  await inNs(['route', 'add', 'default', 'via', n.hostIp]);
  // Pods and Services are reached from the host through the node.
  await sh('ip', ['route', 'add', `10.${net.octet}.0.0/16`, 'via', n.nodeIp, 'dev', n.hostVeth]);
  for (const [key, value] of [
    ['net.ipv4.ip_forward', '1'], // the node routes between its bridge and its link (this namespace only)
    ['net.bridge.bridge-nf-call-iptables', '1'], // kube-proxy's rules see pod-to-pod traffic on the bridge
  ] as const) {
    const [cmd, args] = inNode(n, 'sysctl', ['-q', '-w', `${key}=${value}`]);
    await sh(cmd, args);
  }
}

/** Creates the kubelet's cgroup root under every mounted hierarchy (cpuset needs its cpus and mems). */
export function createCgroupRoot(node: RealNodeInfo): void {
  for (const dir of cgroupHierarchies()) {
    const root = path.join(dir, node.cgroupRoot);
    fs.mkdirSync(root, { recursive: true });
    if (path.basename(dir) === 'cpuset') {
      for (const f of ['cpuset.cpus', 'cpuset.mems'])
        fs.writeFileSync(path.join(root, f), fs.readFileSync(path.join(dir, f), 'utf8'));
    }
  }
}

function cgroupHierarchies(): string[] {
  const out: string[] = [];
  for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const f = line.split(' ');
    const sep = f.indexOf('-');
    if (sep < 0) continue;
    const type = f[sep + 1];
    const mountPoint = f[4];
    if (mountPoint && (type === 'cgroup' || type === 'cgroup2')) out.push(mountPoint);
  }
  return out;
}

export function saveKubeletSysctls(node: RealNodeInfo): void {
  for (const key of KUBELET_SYSCTLS) {
    try {
      node.savedSysctls[key] = fs.readFileSync(`/proc/sys/${key}`, 'utf8').trim();
    } catch {
      // not on this kernel: nothing to put back
    }
  }
}

export interface NodeFiles {
  containerdConfig: string;
  kubeletConfig: string;
  kubeProxyConfig: string;
  cniConfigDir: string;
  volumesDir: string;
  kubeletRoot: string;
}

export interface NodeCredentials {
  caFile: string;
  kubeletKubeconfig: string;
  kubeletServingCrt: string;
  kubeletServingKey: string;
  kubeProxyKubeconfig: string;
}

/** Writes containerd's, the CNI's, the kubelet's and kube-proxy's configuration for the node. */
export function writeNodeFiles(net: RealNodeNetwork, creds: NodeCredentials): NodeFiles {
  const n = net.node;
  const d = (...p: string[]): string => {
    const full = path.join(n.dir, ...p);
    fs.mkdirSync(full, { recursive: true });
    return full;
  };
  const containerdRoot = d('containerd', 'root');
  const containerdState = d('containerd', 'state');
  const cniConfigDir = d('cni', 'net.d');
  const kubeletRoot = d('kubelet');
  const volumesDir = d('volumes');
  const containerdConfig = path.join(n.dir, 'containerd', 'config.toml');
  const cri = 'plugins."io.containerd.grpc.v1.cri"';
  fs.writeFileSync(
    containerdConfig,
    [
      'version = 2',
      `root = "${containerdRoot}"`,
      `state = "${containerdState}"`,
      // The kubelet and containerd may not lower oom_score_adj here (not permitted on these machines).
      'oom_score = 0',
      'disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]',
      '[grpc]',
      `  address = "${n.containerdSocket}"`,
      '[ttrpc]',
      `  address = "${n.containerdSocket}.ttrpc"`,
      '[debug]',
      `  address = "${n.containerdSocket}.debug"`,
      '[metrics]',
      '  address = ""',
      `[plugins."io.containerd.internal.v1.opt"]`,
      `  path = "${d('containerd', 'opt')}"`,
      `[${cri}]`,
      `  sandbox_image = "${PAUSE_IMAGE}"`,
      // The kubelet asks for oom_score_adj -998 on every sandbox; runc cannot set it here and fails with
      // "can't get final child's PID from pipe: EOF". Restricting keeps it at what containerd may set.
      '  restrict_oom_score_adj = true',
      // Pod network namespaces under the node's state, not /var/run/netns, so teardown finds them all.
      '  netns_mounts_under_state_dir = true',
      '  disable_apparmor = true',
      '  enable_selinux = false',
      `[${cri}.containerd]`,
      '  snapshotter = "overlayfs"',
      '  default_runtime_name = "runc"',
      '  discard_unpacked_layers = false',
      `[${cri}.containerd.runtimes.runc]`,
      '  runtime_type = "io.containerd.runc.v2"',
      `[${cri}.containerd.runtimes.runc.options]`,
      '  SystemdCgroup = false',
      `[${cri}.cni]`,
      `  bin_dir = "${CNI_BIN_DIR}"`,
      `  conf_dir = "${cniConfigDir}"`,
      '  max_conf_num = 1',
      '',
    ].join('\n'),
  );
  fs.writeFileSync(
    path.join(cniConfigDir, '10-mailfleet.conflist'),
    JSON.stringify(
      {
        cniVersion: '1.0.0',
        name: 'mailfleet-test',
        plugins: [
          {
            type: 'bridge',
            bridge: 'cni0',
            isGateway: true,
            ipMasq: false,
            // A pod reaching itself through a Service it backs.
            hairpinMode: true,
            ipam: {
              type: 'host-local',
              ranges: [[{ subnet: n.podCIDR, gateway: n.podCIDR.replace(/\.0\/24$/, '.1') }]],
              routes: [{ dst: '0.0.0.0/0' }],
              dataDir: d('cni', 'ipam'),
            },
          },
          { type: 'portmap', capabilities: { portMappings: true } },
        ],
      },
      null,
      2,
    ),
  );
  const resolvConf = path.join(n.dir, 'resolv.conf');
  // For pods with dnsPolicy Default (CoreDNS itself): the host side of the link, where a test may run
  // an upstream resolver. ClusterFirst pods get the cluster DNS.
  fs.writeFileSync(resolvConf, `nameserver ${n.hostIp}\n`);
  const kubeletConfig = path.join(n.dir, 'kubelet-config.json');
  fs.writeFileSync(
    kubeletConfig,
    JSON.stringify(
      {
        apiVersion: 'kubelet.config.k8s.io/v1beta1',
        kind: 'KubeletConfiguration',
        address: n.nodeIp,
        port: 10250,
        readOnlyPort: 0,
        healthzBindAddress: '127.0.0.1',
        healthzPort: 10248,
        authentication: {
          anonymous: { enabled: false },
          webhook: { enabled: true },
          x509: { clientCAFile: creds.caFile },
        },
        authorization: { mode: 'Webhook' },
        tlsCertFile: creds.kubeletServingCrt,
        tlsPrivateKeyFile: creds.kubeletServingKey,
        rotateCertificates: false,
        serverTLSBootstrap: false,
        containerRuntimeEndpoint: `unix://${n.containerdSocket}`,
        // cgroups here are v1 (with a unified hierarchy beside them) and there is no systemd.
        cgroupDriver: 'cgroupfs',
        failCgroupV1: false,
        cgroupsPerQOS: true,
        cgroupRoot: `/${n.cgroupRoot}`,
        failSwapOn: false,
        oomScoreAdj: 0,
        clusterDNS: [net.clusterDnsIp],
        clusterDomain: 'cluster.local',
        resolvConf,
        podLogsDir: d('pod-logs'),
        volumePluginDir: d('volume-plugins'),
        // Nothing can be pulled again: never collect an image, and evict only when truly out of room.
        imageGCHighThresholdPercent: 100,
        imageGCLowThresholdPercent: 99,
        evictionHard: {
          'memory.available': '100Mi',
          'nodefs.available': '1%',
          'nodefs.inodesFree': '1%',
          'imagefs.available': '1%',
        },
        serializeImagePulls: false,
        syncFrequency: '10s',
        nodeStatusUpdateFrequency: '10s',
        shutdownGracePeriod: '0s',
        protectKernelDefaults: false,
        maxPods: 60,
      },
      null,
      2,
    ),
  );
  const kubeProxyConfig = path.join(n.dir, 'kube-proxy-config.json');
  fs.writeFileSync(
    kubeProxyConfig,
    JSON.stringify(
      {
        apiVersion: 'kubeproxy.config.k8s.io/v1alpha1',
        kind: 'KubeProxyConfiguration',
        clientConnection: { kubeconfig: creds.kubeProxyKubeconfig },
        mode: 'iptables',
        clusterCIDR: `10.${net.octet}.0.0/18`,
        hostnameOverride: n.name,
        healthzBindAddress: '127.0.0.1:10256',
        metricsBindAddress: '127.0.0.1:10249',
        // Leave the machine's conntrack table size and timeouts alone.
        conntrack: { maxPerCore: 0, min: 0, tcpEstablishedTimeout: '0s', tcpCloseWaitTimeout: '0s' },
        iptables: { syncPeriod: '30s', minSyncPeriod: '1s' },
      },
      null,
      2,
    ),
  );
  return { containerdConfig, kubeletConfig, kubeProxyConfig, cniConfigDir, volumesDir, kubeletRoot };
}

/** Imports OCI/docker archives into the node's containerd (namespace k8s.io, where the kubelet looks). */
export async function importImages(node: RealNodeInfo, images: ImageArchive[]): Promise<string[]> {
  const names: string[] = [];
  for (const img of images) {
    const args = ['--address', node.containerdSocket, '-n', 'k8s.io', 'images', 'import'];
    if (img.baseName) args.push('--base-name', img.baseName);
    args.push(img.file);
    const r = await run('ctr', args, { timeoutMs: 300_000 });
    if (r.code !== 0) throw new Error(`ctr images import ${img.file}: ${(r.stderr || r.stdout).trim()}`);
    for (const m of r.stdout.matchAll(/^unpacking (\S+) /gm)) names.push(m[1]!);
  }
  return names;
}

/** The cluster DNS: CoreDNS as a Deployment in kube-system behind the kube-dns Service, as kubeadm sets it up. */
export function clusterDnsObjects(net: RealNodeNetwork, corefile: string): object[] {
  const labels = { 'k8s-app': 'kube-dns' };
  return [
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'coredns', namespace: 'kube-system' } },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: { name: 'system:coredns' },
      rules: [
        {
          apiGroups: [''],
          resources: ['endpoints', 'services', 'pods', 'namespaces'],
          verbs: ['list', 'watch'],
        },
        { apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: ['list', 'watch'] },
      ],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name: 'system:coredns' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'system:coredns' },
      subjects: [{ kind: 'ServiceAccount', name: 'coredns', namespace: 'kube-system' }],
    },
    {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'coredns', namespace: 'kube-system' },
      data: { Corefile: corefile },
    },
    {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'coredns', namespace: 'kube-system', labels },
      spec: {
        replicas: 1,
        selector: { matchLabels: labels },
        template: {
          metadata: { labels },
          spec: {
            serviceAccountName: 'coredns',
            dnsPolicy: 'Default',
            priorityClassName: 'system-cluster-critical',
            securityContext: { runAsNonRoot: true, runAsUser: 65534, runAsGroup: 65534 },
            containers: [
              {
                name: 'coredns',
                image: COREDNS_IMAGE,
                imagePullPolicy: 'Never',
                args: ['-conf', '/etc/coredns/Corefile'],
                // Port 1053 (the Service maps 53 to it): no privilege needed to bind it.
                ports: [
                  { name: 'dns', containerPort: 1053, protocol: 'UDP' },
                  { name: 'dns-tcp', containerPort: 1053, protocol: 'TCP' },
                ],
                readinessProbe: { httpGet: { path: '/ready', port: 8181 }, periodSeconds: 2 },
                livenessProbe: { httpGet: { path: '/health', port: 8080 }, periodSeconds: 10 },
                securityContext: {
                  allowPrivilegeEscalation: false,
                  readOnlyRootFilesystem: true,
                  capabilities: { drop: ['ALL'] },
                },
                volumeMounts: [{ name: 'config', mountPath: '/etc/coredns', readOnly: true }],
              },
            ],
            volumes: [{ name: 'config', configMap: { name: 'coredns' } }],
          },
        },
      },
    },
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'kube-dns', namespace: 'kube-system', labels },
      spec: {
        clusterIP: net.clusterDnsIp,
        selector: labels,
        ports: [
          { name: 'dns', port: 53, targetPort: 1053, protocol: 'UDP' },
          { name: 'dns-tcp', port: 53, targetPort: 1053, protocol: 'TCP' },
        ],
      },
    },
  ];
}

/** The Corefile: cluster names from the API, everything else from `upstream` ("ip:port"). */
export function corefile(upstream: string): string {
  return [
    '.:1053 {',
    '    errors',
    '    health :8080',
    '    ready :8181',
    '    kubernetes cluster.local in-addr.arpa ip6.arpa {',
    '        pods insecure',
    '        fallthrough in-addr.arpa ip6.arpa',
    '        ttl 5',
    '    }',
    `    forward . ${upstream}`,
    '    cache 5',
    '    loop',
    '    reload 2s',
    '}',
    '',
  ].join('\n');
}

/** The node's StorageClass: local volumes from the harness's provisioner, bound where the pod lands. */
export function localStorageClass(name: string): object {
  return {
    apiVersion: 'storage.k8s.io/v1',
    kind: 'StorageClass',
    metadata: { name, annotations: { 'storageclass.kubernetes.io/is-default-class': 'true' } },
    provisioner: LOCAL_PROVISIONER,
    reclaimPolicy: 'Delete',
    volumeBindingMode: 'WaitForFirstConsumer',
  };
}

// --- teardown ---------------------------------------------------------------------------------------

function processesInCgroups(node: RealNodeInfo): number[] {
  const pids = new Set<number>();
  const walk = (dir: string): void => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) if (e.isDirectory()) walk(path.join(dir, e.name));
    try {
      for (const p of fs.readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n'))
        if (p.trim()) pids.add(Number(p));
    } catch {
      // gone meanwhile
    }
  };
  for (const h of cgroupHierarchies()) walk(path.join(h, node.cgroupRoot));
  return [...pids];
}

function shimPids(marker: string): number[] {
  const out: number[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const cmd = fs.readFileSync(`/proc/${name}/cmdline`, 'utf8');
      if (cmd.includes('containerd-shim') && cmd.includes(marker)) out.push(Number(name));
    } catch {
      // exited
    }
  }
  return out;
}

function killAll(pids: number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** Mount points at or below `dir`, deepest first. */
export function mountsUnder(dir: string): string[] {
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  return fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((m): m is string => !!m)
    .map((m) => m.replace(/\\(\d{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((m) => m === dir || m.startsWith(prefix))
    .sort((a, b) => b.length - a.length);
}

function removeCgroups(node: RealNodeInfo): void {
  const rmTree = (dir: string): void => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) if (e.isDirectory()) rmTree(path.join(dir, e.name));
    try {
      fs.rmdirSync(dir);
    } catch {
      // still has a process (a zombie being reaped): the next teardown gets it
    }
  };
  for (const h of cgroupHierarchies()) rmTree(path.join(h, node.cgroupRoot));
}

/**
 * Removes everything of the node but its processes in cluster.json, which the caller has stopped:
 * whatever still runs in its cgroups (containers), containerd's shims, mounts under its directory, the
 * network namespace and veth, the cgroups, and the kernel settings the kubelet changed. Idempotent and
 * best effort: it goes on past a failing step and reports them all at the end.
 */
export async function stopRealNode(node: RealNodeInfo, marker: string): Promise<string[]> {
  const problems: string[] = [];
  const step = async (what: string, fn: () => unknown): Promise<void> => {
    try {
      await fn();
    } catch (e) {
      problems.push(`${what}: ${e instanceof Error ? e.message : String(e)}`);
    }
  };
  await step('kill containers and shims', async () => {
    for (let round = 0; round < 3; round++) {
      const pids = [...processesInCgroups(node), ...shimPids(marker)];
      if (pids.length === 0) break;
      killAll(pids);
      await waitFor(
        'container processes to exit',
        () => pids.every((p) => !isOurProcess(p, '') && !fs.existsSync(`/proc/${p}/cmdline`)),
        { timeoutMs: 10_000, intervalMs: 100 },
      ).catch(() => undefined);
    }
  });
  await step('unmount', async () => {
    for (const m of mountsUnder(node.dir)) {
      const r = await run('umount', ['--lazy', m], { timeoutMs: 20_000 });
      if (r.code !== 0 && fs.existsSync(m) && mountsUnder(m).includes(m))
        problems.push(`umount ${m}: ${r.stderr.trim()}`);
    }
  });
  await step('network namespace', async () => {
    if (fs.existsSync(`/run/netns/${node.netns}`)) await sh('ip', ['netns', 'delete', node.netns]);
    // Deleting the namespace destroys its end of the pair, and with it (soon) this one.
    const del = await run('ip', ['link', 'delete', node.hostVeth], { timeoutMs: 10_000 });
    if (del.code !== 0 && !/Cannot find device/.test(del.stderr)) throw new Error(del.stderr.trim());
  });
  await step('cgroups', () => removeCgroups(node));
  await step('kernel settings', () => {
    for (const [key, value] of Object.entries(node.savedSysctls)) {
      const file = `/proc/sys/${key}`;
      if (fs.readFileSync(file, 'utf8').trim() !== value) fs.writeFileSync(file, value);
    }
  });
  return problems;
}

/** Waits for the node to be Ready; fails at once when one of its processes has stopped. */
export async function waitNodeReady(
  kubectlJson: (args: string[]) => Promise<unknown>,
  node: RealNodeInfo,
  check: () => void,
  timeoutMs: number,
): Promise<void> {
  await waitFor(
    `node ${node.name} Ready`,
    async () => {
      check();
      const n = (await kubectlJson(['get', 'node', node.name, '-o', 'json'])) as {
        status?: { conditions?: { type: string; status: string; message?: string }[] };
      };
      const ready = n.status?.conditions?.find((c) => c.type === 'Ready');
      if (ready?.status === 'True') return true;
      throw new Error(`Ready=${ready?.status ?? 'unknown'}: ${ready?.message ?? ''}`);
    },
    { timeoutMs, intervalMs: 500 },
  );
}
