#!/usr/bin/env node
/**
 * mailfleet-operator: the entry point. Reads flags (and the in-cluster namespace file) once, builds the
 * logger, starts the manager, and stops it on SIGTERM/SIGINT. Exits 1 when leadership is lost, as
 * controller-runtime does, so the Deployment restarts it as a standby.
 */
import { existsSync, readFileSync } from 'node:fs';
import { startManager } from './manager.js';
import { USAGE, parseFlags } from './flags.js';
import { errorMessage, makeLogger } from './runtime/logger.js';

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
