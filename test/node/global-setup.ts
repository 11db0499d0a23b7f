/**
 * The node project's globalSetup: a control plane with one real node (test/cluster/node.ts) and no kwok
 * nodes, so every pod runs for real, with the mailfleet image that scripts/image.sh builds from the
 * Dockerfile imported into the node's containerd (nothing is pulled). Hands the state directory to the
 * test workers in $MAILFLEET_NODE_CLUSTER_STATE; when that is already set (a cluster from
 * `npm run cluster:up -- --real-node --image FILE`), that cluster is used and left running.
 *
 * Needs root, `bash test/cluster/build.sh node` and the image build's tools (scripts/test.sh runs both).
 */
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';

export type Teardown = () => Promise<void>;

/** The OCI archive of the image, built (or reused from its cache) by scripts/image.sh. */
function imageArchive(root: string): string {
  const file = path.join(os.homedir(), '.cache', 'mailfleet', 'image', 'node-test.oci.tar');
  const r = spawnSync('bash', [path.join(root, 'scripts/image.sh'), '--oci-archive', file], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    timeout: 3_600_000,
  });
  if (r.status !== 0 || !/^oci-archive: /m.test(r.stdout))
    throw new Error(`scripts/image.sh --oci-archive ${file} failed (exit ${r.status}):\n${r.stdout}`);
  return file;
}

export default async function globalSetup(): Promise<void> {
  const root = path.join(__dirname, '..', '..');
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  (require(path.join(root, 'test/helpers/ts-resolution.cjs')) as () => void)();
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const checkMachine = require(path.join(root, 'test/helpers/machine-check.cjs')) as (root: string) => void;
  checkMachine(root);
  const c = await import('../cluster/cluster.js');
  const { NODE_STATE_ENV } = await import('../cluster/kube.js');
  const g = globalThis as { mailfleetNodeTeardown?: Teardown };
  const given = process.env[NODE_STATE_ENV];
  if (given) {
    const info = c.readClusterInfo(given);
    const down = info.processes.length - c.runningProcesses(info).length;
    if (down > 0) throw new Error(`${NODE_STATE_ENV}=${given}: ${down} of its processes are not running`);
    console.log(`\nmailfleet node: using the running cluster in ${given} (left running)`);
    return;
  }
  const started = Date.now();
  const image = imageArchive(root);
  console.log(`\nmailfleet node: image archive ${image} (${Math.round((Date.now() - started) / 1000)} s)`);
  for (const dir of await c.reapStaleClusters())
    console.log(`\nmailfleet node: stopped a cluster left behind in ${dir}`);
  const info = await c.startCluster({
    owner: 'jest',
    nodes: 0,
    realNode: { images: [{ file: image }] },
    timeoutMs: 600_000,
    log: (m) => console.log(`mailfleet node: ${m}`),
  });
  process.env[NODE_STATE_ENV] = info.stateDir;
  console.log(
    `mailfleet node: cluster up in ${Math.round((Date.now() - started) / 1000)} s (${info.stateDir})`,
  );
  g.mailfleetNodeTeardown = async () => {
    const logsRoot = path.join(c.repoRoot(), 'test/cluster/.build/logs');
    const keep = path.join(logsRoot, `node-${path.basename(info.stateDir)}`);
    await c.stopCluster(info.stateDir, { keepLogsIn: keep });
    c.pruneDirs(logsRoot, 5);
    console.log(`mailfleet node: cluster stopped; its logs are in ${keep}`);
  };
}
