/**
 * A PROTOTYPE, for measurement only: the relay as N processes sharing one listening socket (node:cluster),
 * each with its own configuration — in practice its own spool directory and admin port — so each worker
 * accepts, spools and delivers independently. It answers the question "what would a process per core
 * buy?" without touching relay/: every worker runs the relay's own CLI unchanged.
 *
 *   node cluster-relay.js RELAY_CLI CONFIG_0 [CONFIG_1 ...]
 *
 * NODE_CLUSTER_SCHED_POLICY=rr (node's default on Linux: the primary accepts and hands each connection
 * to a worker) or none (the workers accept from the shared socket; the kernel picks). SIGTERM/SIGINT to
 * the primary stop every worker gracefully; the primary exits when they have.
 *
 * What a product version would need beyond this (see docs/adr/0020-bench-relay-throughput.md): one
 * spool per worker recovered by that worker, queue tools and drain over all workers, metrics summed
 * across workers, a worker restarted when it dies.
 */
import cluster from 'node:cluster';
import { pathToFileURL } from 'node:url';

if (cluster.isPrimary) {
  const [cli, ...configs] = process.argv.slice(2);
  if (!cli || configs.length === 0) {
    console.error('usage: cluster-relay.js RELAY_CLI CONFIG...');
    process.exit(2);
  }
  const workers = configs.map((config, i) =>
    cluster.fork({
      MAILFLEET_BENCH_CLI: cli,
      MAILFLEET_BENCH_CONFIG: config,
      MAILFLEET_BENCH_WORKER: String(i),
    }),
  );
  let left = workers.length;
  let stopping = false;
  for (const w of workers)
    w.on('exit', (code) => {
      left--;
      if (!stopping) {
        console.error(`cluster-relay: worker ${w.id} exited (${code}) unexpectedly; stopping`);
        stop();
      }
      if (left === 0) process.exit(stopping ? 0 : 1);
    });
  const stop = () => {
    if (stopping) return;
    stopping = true;
    for (const w of workers) w.process.kill('SIGTERM');
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
} else {
  const cli = process.env.MAILFLEET_BENCH_CLI!;
  process.argv = [process.argv[0]!, cli, '--config', process.env.MAILFLEET_BENCH_CONFIG!];
  await import(pathToFileURL(cli).href);
}
