/**
 * A real relay process standing in for a relay pod: kwok runs no containers, but pod IPs are loopback
 * addresses, so `mailfleet-relay` (dist/relay/cli.js) can listen on a pod's IP and the operator reaches it
 * there exactly as it would reach the pod (podIP:adminPort).
 *
 * The relay runs what the operator rendered for that pod: the config from the `<relay>-config` ConfigMap
 * and every file from the `<relay>-runtime` Secret (users and their hashes, TLS certificate and CA,
 * handoff password, admin token, DKIM keys), materialised in a temp directory. Only what the pod's
 * environment would provide is changed: the /etc/mailfleet paths point into that directory, the spool is
 * its own directory (the pod's queue volume), listeners and the admin server bind the pod's IP instead of
 * 0.0.0.0, and DNS goes to the test's DNS server (there is no cluster DNS).
 *
 *   const r1 = await startPodRelay(k, ns, 'mail', 'mail-1', { dnsServer: dns.server });
 *   await r1.drain()      GET /drain on podIP:adminPort     await r1.queue()   GET /queue (admin token)
 *   await r1.metric(name, labels)                            one sample of its /metrics
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import YAML from 'yaml';
import type { Cluster } from '../cluster/kube.js';
import type { RelayConfig } from '../../relay/config/schema.js';
import { makeTempDir, metricValue, startRelay, type RelayProcess } from '../helpers/relay.js';

const POD_CONFIG_DIR = '/etc/mailfleet/';

export interface DrainReport {
  state: 'idle' | 'draining' | 'drained';
  queued: number;
  handedOff: number;
  delivered: number;
  failed: number;
}

export interface QueuedMessage {
  id: string;
  sender: string;
  state: string;
  recipients: Array<{ address: string }>;
}

export interface PodRelay {
  pod: string;
  ip: string;
  relay: RelayProcess;
  /** GET on the pod's admin server with the admin token. */
  admin(pathname: string, init?: RequestInit): Promise<{ status: number; body: string }>;
  drain(): Promise<DrainReport>;
  queue(): Promise<QueuedMessage[]>;
  /** One sample of its /metrics, undefined when absent. */
  metric(name: string, labels?: Record<string, string>): Promise<number | undefined>;
  /** Its drain report and last log lines, for failure messages. */
  describe(lines?: number): Promise<string>;
  stop(): Promise<void>;
}

/** Every string under `v` that is a path in the pod's config directory, moved to `dir`. */
function movePaths(v: unknown, dir: string): unknown {
  if (typeof v === 'string' && v.startsWith(POD_CONFIG_DIR))
    return path.join(dir, v.slice(POD_CONFIG_DIR.length));
  if (Array.isArray(v)) return v.map((x) => movePaths(x, dir));
  if (v && typeof v === 'object')
    return Object.fromEntries(Object.entries(v).map(([key, x]) => [key, movePaths(x, dir)]));
  return v;
}

export async function startPodRelay(
  k: Cluster,
  namespace: string,
  relayName: string,
  podName: string,
  opts: { dnsServer: string },
): Promise<PodRelay> {
  const pod = await k.get(`pod/${podName}`, { namespace });
  const ip = pod?.status?.podIP as string | undefined;
  if (!ip) throw new Error(`pod ${namespace}/${podName} has no IP`);
  const cm = await k.get(`configmap/${relayName}-config`, { namespace });
  const runtime = await k.get(`secret/${relayName}-runtime`, { namespace });
  const yaml = (cm?.data as Record<string, string> | undefined)?.['relay.yaml'];
  const files = runtime?.data as Record<string, string> | undefined;
  if (!yaml || !files)
    throw new Error(`${relayName}-config or ${relayName}-runtime is missing in ${namespace}`);

  const dir = await makeTempDir(`mailfleet-e2e-${podName}-`);
  const etc = path.join(dir, 'etc');
  await fs.mkdir(etc, { mode: 0o700 });
  for (const [key, b64] of Object.entries(files))
    await fs.writeFile(path.join(etc, key), Buffer.from(b64, 'base64'), { mode: 0o600 });
  const config = movePaths(YAML.parse(yaml), etc) as RelayConfig;
  for (const l of Object.values(config.listeners)) if (l) l.address = ip;
  if (config.admin) config.admin.address = ip;
  config.spool = { ...config.spool, dir: path.join(dir, 'spool') };
  config.dns = { ...config.dns, servers: [opts.dnsServer], timeoutMs: 1000, tries: 2 };

  const relay = await startRelay({ config, dir, readyTimeoutMs: 60_000 });
  const token = Buffer.from(files['admin-token']!, 'base64').toString('utf8').trim();
  const admin = async (pathname: string, init: RequestInit = {}) => {
    const res = await fetch(`http://${ip}:${relay.ports.admin}${pathname}`, {
      ...init,
      headers: { authorization: `Bearer ${token}`, ...(init.headers as Record<string, string>) },
      signal: AbortSignal.timeout(10_000),
    });
    return { status: res.status, body: await res.text() };
  };
  const json = async <T>(pathname: string): Promise<T> => {
    const r = await admin(pathname);
    if (r.status !== 200)
      throw new Error(`GET ${pathname} on ${podName} (${ip}): HTTP ${r.status} ${r.body}`);
    return JSON.parse(r.body) as T;
  };
  return {
    pod: podName,
    ip,
    relay,
    admin,
    drain: () => json<DrainReport>('/drain'),
    queue: async () => (await json<{ messages: QueuedMessage[] }>('/queue')).messages,
    metric: async (name, labels) => metricValue((await admin('/metrics')).body, name, labels),
    describe: async (lines = 30) => {
      const report = await admin('/drain').then(
        (r) => r.body,
        (e: Error) => e.message,
      );
      const log = relay.logs.slice(-lines).map((l) => JSON.stringify(l));
      return `relay of ${podName} (${ip}): GET /drain ${report}\nlast log lines:\n${log.join('\n')}\n${relay.stderr()}`;
    },
    stop: async () => {
      await relay.stop();
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}
