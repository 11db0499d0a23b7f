/**
 * The e2e project's globalSetup: starts one control plane for all e2e test files (test/cluster/) and
 * hands its state directory to the test workers in $MAILFLEET_CLUSTER_STATE. When that variable is
 * already set (a cluster from `npm run cluster:up`, say), that cluster is used and left running.
 * Clusters left behind by earlier runs whose jest died are stopped first. globalTeardown calls the
 * stop function this leaves on globalThis.
 *
 * It also compiles the operator and the relay into dist/ (tsconfig.build.json's options, failing on any
 * type error in them): the e2e tests run `node dist/operator/cli.js` and `node dist/relay/cli.js` as
 * real processes, and must not run a dist/ older than the sources.
 */
import path from 'node:path';

export type Teardown = () => Promise<void>;

/** Compiles operator/cli.ts and relay/cli.ts (and everything they import) into dist/. */
function buildDist(root: string): void {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const build = require(path.join(root, 'test/helpers/build-dist.cjs')) as (
    root: string,
    entries: string[],
    label: string,
  ) => number;
  const ms = build(root, ['operator/cli.ts', 'relay/cli.ts'], 'mailfleet e2e');
  console.log(`\nmailfleet e2e: operator and relay built into dist/ in ${ms} ms`);
}

export default async function globalSetup(): Promise<void> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  (require(path.join(__dirname, '../helpers/ts-resolution.cjs')) as () => void)();
  const c = await import('../cluster/cluster.js');
  const { STATE_ENV } = await import('../cluster/kube.js');
  const g = globalThis as { mailfleetTeardown?: Teardown };
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const checkMachine = require(path.join(c.repoRoot(), 'test/helpers/machine-check.cjs')) as (
    root: string,
  ) => void;
  checkMachine(c.repoRoot());
  buildDist(c.repoRoot());
  const given = process.env[STATE_ENV];
  if (given) {
    const info = c.readClusterInfo(given);
    const down = info.processes.length - c.runningProcesses(info).length;
    if (down > 0) throw new Error(`${STATE_ENV}=${given}: ${down} of its processes are not running`);
    console.log(`\nmailfleet e2e: using the running cluster in ${given} (left running)`);
    return;
  }
  for (const dir of await c.reapStaleClusters())
    console.log(`\nmailfleet e2e: stopped a cluster left behind in ${dir}`);
  const started = Date.now();
  const info = await c.startCluster({ owner: 'jest' });
  process.env[STATE_ENV] = info.stateDir;
  console.log(
    `\nmailfleet e2e: cluster up in ${Math.round((Date.now() - started) / 1000)} s (${info.stateDir})`,
  );
  g.mailfleetTeardown = async () => {
    // Keep the last few runs' logs (component logs and the audit log) where a developer can find them.
    const logsRoot = path.join(c.repoRoot(), 'test/cluster/.build/logs');
    const keep = path.join(logsRoot, path.basename(info.stateDir));
    await c.stopCluster(info.stateDir, { keepLogsIn: keep });
    c.pruneDirs(logsRoot, 5);
    console.log(`mailfleet e2e: cluster stopped; its logs are in ${keep}`);
  };
}
