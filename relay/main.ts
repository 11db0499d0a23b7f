/**
 * The relay's one wiring point: builds every dependency from the configuration, starts the listeners
 * and the admin port, and returns a handle whose stop() shuts it all down in order.
 *
 *   config ─► runtime (domains, users, TLS)  ─┐
 *   fleet (shared store or per pod: rates, ───┤
 *          suppression, shaping leases)       │
 *   spool (opened, swept) ────────────────────┼─► SMTP listeners ─► sessions ─► spool.accept ─► 250
 *   DNS resolver, AUTH throttle ──────────────┤
 *   per-client connection limits ─────────────┘
 *   admin HTTP: /metrics /healthz /readyz (+ delivery's /drain, /queue; the fleet's /fleet, /suppression)
 *   watcher: config file + referenced files ─► reload() ─► new runtime swapped in (or rejected)
 *
 * Nothing below reads process.env or the command line; the CLI (cli.ts) does, once.
 *
 * Reload: the new config and the files it names are loaded and checked as a whole; only then is the
 * runtime swapped, certificates applied to new handshakes and limits to new commands. Sessions are never
 * dropped. A bad config is logged (event config_rejected), counted (config_reloads_total{result=failure},
 * config_last_reload_successful 0), and the previous one stays in force. Changes that need new sockets
 * (listener addresses, admin port, spool directory) are logged as needing a restart and not applied.
 *
 * Stop: readiness goes false, listeners stop accepting, transactions in flight get `shutdownGraceMs` to
 * finish, spool writes in flight settle, the spool is closed, then the admin port.
 */
import type { AddressInfo } from 'node:net';
import { isDeepStrictEqual } from 'node:util';
import { AdminServer, type Readiness } from './admin/server.js';
import { AuthThrottle } from './auth/throttle.js';
import type { LoadedConfig } from './config/load.js';
import { AuthThrottle as AuthThrottleSchema, type AuthConfig, type ListenerName } from './config/schema.js';
import { ConfigWatcher } from './config/watch.js';
import { MailResolver } from './dns/resolver.js';
import type { Logger } from './log.js';
import { RelayMetrics } from './metrics.js';
import { ClientConnectionLimits } from './policy/client-limits.js';
import { buildRuntime, restartRequired, type Runtime } from './runtime.js';
import {
  applyLimits,
  applyTls,
  connectionCount,
  createListeners,
  startListeners,
  stopListeners,
  type Listener,
} from './smtp/listeners.js';
import { Spool } from './spool/spool.js';
import { startDelivery } from './delivery/service.js';
import { registerFleetRoutes } from './fleet/admin-routes.js';
import { Fleet } from './fleet/open.js';
import { Value } from 'typebox/value';
import { readFile } from 'node:fs/promises';

export interface RelayOptions {
  loaded: LoadedConfig;
  log: Logger;
  metrics?: RelayMetrics;
  /** How long transactions in flight may take to finish after stop() (default 30 s). */
  shutdownGraceMs?: number;
  /** Poll interval for config/credential/certificate changes (default 1000 ms; 0: no watching). */
  watchIntervalMs?: number;
  /** Reads the configuration again (the file, or the embedded default). Needed for reload(). */
  reloadSource?: () => Promise<LoadedConfig>;
}

export interface Relay {
  /** Bound addresses of the SMTP listeners that run. */
  readonly listeners: Partial<Record<ListenerName, AddressInfo>>;
  readonly admin: AddressInfo;
  readonly adminServer: AdminServer;
  readonly spool: Spool;
  readonly metrics: RelayMetrics;
  runtime(): Runtime;
  resolver(): MailResolver;
  /** Re-reads the configuration; true when the new one is in force. */
  reload(): Promise<boolean>;
  /** Draining: no new connections or transactions, readiness false (delivery drains the queue). */
  setDraining(draining: boolean): void;
  stop(): Promise<void>;
}

export async function startRelay(opts: RelayOptions): Promise<Relay> {
  const { log } = opts;
  const metrics = opts.metrics ?? new RelayMetrics();
  let runtime = await buildRuntime(opts.loaded);
  log.level = runtime.config.log.level;
  let adminToken = await readToken(runtime);
  let resolver = new MailResolver({ config: runtime.config.dns, metrics });
  let stopping = false;
  let draining = false;
  const inflight = new Set<Promise<unknown>>();
  // Listeners without AUTH never consult the throttle; this only keeps its settings total.
  const fallbackThrottle = Value.Default(AuthThrottleSchema, {}) as AuthConfig['throttle'];

  const fleet = await Fleet.open(runtime.config, log.child({ component: 'fleet' }), metrics);
  const spool = await Spool.open({
    dir: runtime.config.spool.dir,
    metrics,
    log: log.child({ component: 'spool' }),
    floor: () => runtime.config.spool,
  });
  const listeners: Listener[] = createListeners(runtime, {
    runtime: () => runtime,
    resolver: () => resolver,
    spool,
    metrics,
    log: log.child({ component: 'smtp' }),
    limits: fleet.limits,
    throttle: new AuthThrottle(() => runtime.config.auth?.throttle ?? fallbackThrottle),
    clientLimits: new ClientConnectionLimits(),
    connectionCount: () => connectionCount(listeners),
    stopping: () => stopping || draining,
    inflight,
  });
  if (runtime.tls) metrics.tlsCertificateExpiry.set(runtime.tls.notAfter / 1000);
  metrics.configLastReloadSuccessful.set(1);

  let lastProbe = { at: 0, ok: false };
  const readiness = async (): Promise<Readiness> => {
    const reasons: string[] = [];
    if (stopping) reasons.push('stopping');
    if (draining) reasons.push('draining');
    if (Date.now() - lastProbe.at > 1000) lastProbe = { at: Date.now(), ok: await spool.probeWritable() };
    if (!lastProbe.ok) reasons.push('spool not writable');
    // Below the free-space floor new mail is refused: the Service should send it to other replicas.
    const space = spool.spaceProblem();
    if (space) reasons.push(space);
    metrics.ready.set(reasons.length === 0 ? 1 : 0);
    return { ready: reasons.length === 0, reasons };
  };
  const adminServer = new AdminServer({
    metrics,
    log: log.child({ component: 'admin' }),
    readiness,
    token: () => adminToken,
  });

  let admin: AddressInfo;
  try {
    admin = await adminServer.listen(runtime.config.admin.address, runtime.config.admin.port);
    await startListeners(listeners, runtime.config, log);
  } catch (err) {
    await stopListeners(listeners, 0, log);
    await adminServer.close();
    await spool.close();
    await fleet.close();
    throw err;
  }

  const reload = async (): Promise<boolean> => {
    if (!opts.reloadSource) return false;
    try {
      const loaded = await opts.reloadSource();
      const next = await buildRuntime(loaded, runtime);
      const token = await readToken(next);
      await fleet.apply(next.config);
      const restart = restartRequired(runtime.config, next.config);
      if (restart.length > 0)
        log.warn({ fields: restart }, 'configuration changes that need a restart were not applied');
      if (!isDeepStrictEqual(runtime.config.dns, next.config.dns))
        resolver = new MailResolver({ config: next.config.dns, metrics });
      if (
        next.tls &&
        next.tls.fingerprint256 + next.tls.minVersion !==
          `${runtime.tls?.fingerprint256}${runtime.tls?.minVersion}`
      ) {
        applyTls(listeners, next.tls);
        metrics.tlsCertificateExpiry.set(next.tls.notAfter / 1000);
        log.info(
          { subject: next.tls.subject, notAfter: new Date(next.tls.notAfter).toISOString() },
          'TLS certificate loaded',
        );
      }
      applyLimits(listeners, next.config);
      log.level = next.config.log.level;
      runtime = next;
      adminToken = token;
      metrics.configReloads.inc({ result: 'success' });
      metrics.configLastReloadSuccessful.set(1);
      log.info(
        { event: 'config_reloaded', domains: next.config.domains.length, users: next.users.size },
        'configuration reloaded',
      );
      return true;
    } catch (err) {
      metrics.configReloads.inc({ result: 'failure' });
      metrics.configLastReloadSuccessful.set(0);
      const problems = (err as { problems?: string[] }).problems ?? [String((err as Error).message ?? err)];
      log.error(
        { event: 'config_rejected', problems },
        'new configuration rejected; the previous one stays in force',
      );
      return false;
    }
  };

  const watchInterval = opts.watchIntervalMs ?? 1000;
  const watcher =
    opts.reloadSource && watchInterval > 0
      ? new ConfigWatcher({
          intervalMs: watchInterval,
          files: () => [
            ...(runtime.loaded.file ? [runtime.loaded.file] : []),
            ...runtime.loaded.files.map((f) => f.path),
          ],
          onChange: async () => {
            await reload();
          },
        })
      : undefined;
  await watcher?.start();

  const setDraining = (on: boolean) => {
    draining = on;
    metrics.draining.set(on ? 1 : 0);
    metrics.ready.set(on || stopping ? 0 : 1);
  };
  const delivery = startDelivery({
    spool,
    config: () => runtime.config,
    resolver: () => resolver,
    metrics,
    log: log.child({ component: 'delivery' }),
    admin: adminServer,
    setDraining,
    suppression: fleet.suppressionList,
    gate: fleet.gate,
  });
  registerFleetRoutes(adminServer, {
    fleet: () => fleet.current(),
    report: () => fleet.report(),
    ttl: () => runtime.config.suppression.ttl,
    metrics,
  });

  const bound: Relay['listeners'] = {};
  for (const l of listeners) if (l.address) bound[l.name] = l.address;
  metrics.ready.set(1);
  log.info(
    {
      event: 'ready',
      listeners: Object.fromEntries(
        Object.entries(bound).map(([k, a]) => [k, { address: a.address, port: a.port }]),
      ),
      admin: { address: admin.address, port: admin.port },
      spool: spool.dir,
      config: runtime.loaded.file ?? 'embedded default',
    },
    'relay ready',
  );

  let stopped: Promise<void> | undefined;
  const stop = () =>
    (stopped ??= (async () => {
      stopping = true;
      metrics.ready.set(0);
      watcher?.stop();
      const graceMs = opts.shutdownGraceMs ?? 30_000;
      log.info(
        { event: 'stopping', graceMs, sessions: connectionCount(listeners) },
        'stopping: no new connections; transactions in flight may finish',
      );
      await stopListeners(listeners, graceMs, log);
      await Promise.allSettled([...inflight]);
      await delivery.stop(Math.min(graceMs, 10_000));
      await fleet.close();
      resolver.cancel();
      await spool.close();
      await adminServer.close();
      log.info({ event: 'stopped' }, 'relay stopped');
    })());

  return {
    listeners: bound,
    admin,
    adminServer,
    spool,
    metrics,
    runtime: () => runtime,
    resolver: () => resolver,
    reload,
    setDraining,
    stop,
  };
}

async function readToken(rt: Runtime): Promise<string | undefined> {
  const file = rt.config.admin.tokenFile;
  if (!file) return undefined;
  try {
    const token = (await readFile(file, 'utf8')).trim();
    if (!token) throw new Error('the file is empty');
    return token;
  } catch (err) {
    throw Object.assign(new Error(`admin.tokenFile: ${(err as Error).message}`), {
      problems: [`admin.tokenFile: cannot use ${file}: ${(err as Error).message}`],
    });
  }
}
