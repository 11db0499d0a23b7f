/**
 * PROTOTYPES, for measurement only — the relay's own CLI, unchanged, started in two ways it does not
 * offer, to learn what a design change would buy before anyone makes it in relay/:
 *
 *   node prototype-relay.js RELAY_CLI CONFIG_0 [CONFIG_1 ...]
 *
 * - one config: a single relay process, as `node RELAY_CLI --config CONFIG_0`;
 * - several configs: a process per config sharing one listening socket (node:cluster), each with its own
 *   spool directory and admin port, so each accepts, spools and delivers on its own ("a process per
 *   core, a spool per worker"). NODE_CLUSTER_SCHED_POLICY=rr (node's default on Linux: the primary
 *   accepts and hands each connection to a worker) or none (the workers accept from the shared socket).
 *
 * SIGTERM/SIGINT to the primary stop every worker gracefully; the primary exits when they have.
 * What a product version of the process-per-core design needs beyond this is listed in
 * docs/adr/0041-bench-relay-throughput.md.
 */
import cluster from 'node:cluster';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

async function runRelay(cli: string, config: string): Promise<void> {
  process.argv = [process.argv[0]!, cli, '--config', config];
  await import(pathToFileURL(cli).href);
}

function primary(cli: string, configs: string[]): void {
  const workers = configs.map((config, i) =>
    cluster.fork({
      MAILFLEET_PROTO_CLI: cli,
      MAILFLEET_PROTO_CONFIG: config,
      MAILFLEET_PROTO_WORKER: String(i),
    }),
  );
  let left = workers.length;
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    for (const w of workers) w.process.kill('SIGTERM');
  };
  for (const w of workers)
    w.on('exit', (code) => {
      left--;
      if (!stopping) {
        console.error(`prototype-relay: worker ${w.id} exited (${code}) unexpectedly; stopping`);
        stop();
      }
      if (left === 0) process.exit(stopping ? 0 : 1);
    });
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

if (cluster.isPrimary) {
  const [cli, ...configs] = process.argv.slice(2);
  if (!cli || configs.length === 0) {
    console.error('usage: prototype-relay.js RELAY_CLI CONFIG...');
    process.exit(2);
  }
  if (configs.length === 1) await runRelay(path.resolve(cli), path.resolve(configs[0]!));
  else primary(path.resolve(cli), configs);
} else {
  await runRelay(process.env.MAILFLEET_PROTO_CLI!, process.env.MAILFLEET_PROTO_CONFIG!);
}
