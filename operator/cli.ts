#!/usr/bin/env node
/**
 * mailfleet-operator: the entry point. Reads flags (and the in-cluster namespace file) once, builds the
 * logger, starts the manager, and stops it on SIGTERM/SIGINT. Losing leadership (an API server that is
 * gone longer than the renew deadline) does not end the process: it stops reconciling and campaigns again.
 */
import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { startManager } from './manager.js';
import { USAGE, parseFlags } from './flags.js';
import { errorMessage, makeLogger } from './runtime/logger.js';

// Key generation (node:crypto's async generateKeyPair, one per core at once: shared/keygen.ts) and scrypt
// run on libuv's thread pool, off the event loop; 4 threads by default. One more than the cores keeps every
// core generating in a burst of new domains while a thread stays free. Read when the pool first starts,
// which is after this line.
process.env.UV_THREADPOOL_SIZE ??= String(Math.max(4, availableParallelism() + 1));

const NS_FILE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace';

async function main(): Promise<number> {
  const podNamespace = existsSync(NS_FILE) ? readFileSync(NS_FILE, 'utf8').trim() : undefined;
  let cfg;
  try {
    cfg = parseFlags(process.argv.slice(2), podNamespace);
  } catch (e) {
    process.stderr.write(`mailfleet-operator: ${errorMessage(e)}\n\n${USAGE}`);
    return 2;
  }
  if (cfg === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  const log = makeLogger(cfg.logLevel);
  const running = await startManager(cfg, { log });
  const signalled = new Promise<number>((resolve) => {
    const onSignal = (sig: string) => {
      log.info({ signal: sig }, 'stopping');
      void running.stop().then(() => resolve(0));
    };
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
  });
  return Promise.race([running.done, signalled]);
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`mailfleet-operator: ${errorMessage(e)}\n`);
    process.exit(1);
  },
);
