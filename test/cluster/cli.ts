/**
 * The control plane by hand: `npm run cluster:up` starts one that outlives the command and prints its
 * KUBECONFIG; `npm run cluster:status` tells whether it runs; `npm run cluster:down` stops it and removes
 * its state. The state directory is $MAILFLEET_CLUSTER_STATE, default <tmp>/mailfleet-dev-cluster.
 *
 * `npm run cluster:up -- --real-node [--image FILE]...` adds the real node (as root; see node.ts) and
 * imports each OCI archive into it (e.g. the one `scripts/image.sh --oci-archive FILE` writes).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { readClusterInfo, runningProcesses, startCluster, stopCluster, STATE_FILE } from './cluster.js';

const stateDir = path.resolve(
  process.env.MAILFLEET_CLUSTER_STATE ?? path.join(os.tmpdir(), 'mailfleet-dev-cluster'),
);

function exists(): boolean {
  return fs.existsSync(path.join(stateDir, STATE_FILE));
}

function describe(): void {
  const info = readClusterInfo(stateDir);
  console.error(`mailfleet cluster: Kubernetes ${info.kubernetesVersion} at ${info.server}`);
  console.error(`  nodes:      ${info.nodes.map((n) => `${n.name} (pods ${n.podCIDR})`).join(', ')}`);
  console.error(`  tools:      export PATH=${info.binDir}:$PATH   (kubectl, helm, kwok, etcd, ...)`);
  console.error(`  logs:       ${info.logsDir}`);
  console.error(`  stop:       npm run cluster:down`);
  console.error(`  kubeconfig: export KUBECONFIG=${info.kubeconfig}`);
  console.log(info.kubeconfig);
}

async function up(): Promise<number> {
  if (exists()) {
    const info = readClusterInfo(stateDir);
    if (runningProcesses(info).length === info.processes.length && info.processes.length > 0) {
      console.error('mailfleet cluster: already running');
      describe();
      return 0;
    }
    console.error(`mailfleet cluster: cleaning up a stopped or partial cluster in ${stateDir}`);
    await stopCluster(stateDir);
  }
  const args = process.argv.slice(3);
  const realNode = args.includes('--real-node');
  const images = args.flatMap((a, i) =>
    a === '--image' && args[i + 1] ? [{ file: path.resolve(args[i + 1]!) }] : [],
  );
  await startCluster({
    stateDir,
    owner: 'cli',
    log: (m) => console.error(`mailfleet cluster: ${m}`),
    ...(realNode ? { realNode: { images }, nodes: 0 } : {}),
  });
  describe();
  return 0;
}

async function down(): Promise<number> {
  if (!exists()) {
    console.error(`mailfleet cluster: nothing to stop in ${stateDir}`);
    return 0;
  }
  await stopCluster(stateDir);
  console.error(`mailfleet cluster: stopped, ${stateDir} removed`);
  return 0;
}

function status(): number {
  if (!exists()) {
    console.error(`mailfleet cluster: not running (no ${stateDir})`);
    return 1;
  }
  const info = readClusterInfo(stateDir);
  const running = new Set(runningProcesses(info).map((p) => p.name));
  for (const p of info.processes)
    console.error(`  ${running.has(p.name) ? 'running' : 'STOPPED'}  ${p.name} (pid ${p.pid}, log ${p.log})`);
  describe();
  return running.size === info.processes.length ? 0 : 1;
}

async function main(cmd: string | undefined): Promise<number> {
  switch (cmd) {
    case 'up':
      return up();
    case 'down':
      return down();
    case 'status':
      return status();
    default:
      console.error('usage: cli.js up|down|status');
      return 2;
  }
}

main(process.argv[2]).then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(1);
  },
);
