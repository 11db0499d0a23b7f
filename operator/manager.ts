/**
 * The one wiring point: builds every dependency from a config, starts informers, the HTTP endpoints, leader
 * election and (once leading) the controllers, and returns stop(). Nothing below reads the environment:
 * the entry point (cli.ts) parses flags once and passes them here. Each controller declares what its
 * watches enqueue (watchForRelays, watchForDomains); the manager hands them the informers, and every
 * object is also re-queued every --sync-period (resync).
 */
import { randomUUID } from 'node:crypto';
import { availableParallelism, hostname } from 'node:os';
import type { Server } from 'node:http';
import { KubeConfig } from '@kubernetes/client-node';
import { parseNetworks } from '../relay/policy/network.js';
import type { MailDomain } from './api/maildomain.js';
import type { SmtpRelay } from './api/smtprelay.js';
import { MailDomainReconciler, watchForDomains } from './maildomain/controller.js';
import type { DnsChecker } from './maildomain/dns-checker.js';
import { ResolverTxtLookup, type TxtLookup } from './maildomain/dns.js';
import { realClock, type Clock } from './runtime/clock.js';
import { Controller } from './runtime/controller.js';
import { ApiEventRecorder } from './runtime/events.js';
import { serveMetrics, serveProbes } from './runtime/http.js';
import { ManagedInformer, type Store } from './runtime/informer.js';
import { RestKubeApi, keyOf, type KubeApi, type KubeObject } from './runtime/kube.js';
import { DEFAULT_LEASE_TIMINGS, LeaderElector } from './runtime/leader.js';
import { errorMessage, type Logger } from './runtime/logger.js';
import { OperatorMetrics } from './runtime/metrics.js';
import { Kinds, type ResourceType } from './runtime/resources.js';
import {
  emptyStore,
  RecentWrites,
  ReferenceIndex,
  type Features,
  type OperatorContext,
  type Stores,
} from './shared/context.js';
import { LABELS, MANAGED_SELECTOR, RELAY_APP } from './shared/labels.js';
import type { Enqueue } from './shared/watch.js';
import { SmtpRelayReconciler, watchForRelays, watchOwnedBy } from './smtprelay/controller.js';
import { HttpDrainClient, type DrainClient } from './smtprelay/drain-client.js';
import { HttpFleetClient, type FleetClient } from './smtprelay/fleet-client.js';

export interface ManagerConfig {
  /** Path of a kubeconfig; undefined: in-cluster config, else $KUBECONFIG / ~/.kube/config. */
  kubeconfig?: string;
  /** Namespaces to watch; undefined: all. */
  namespaces?: string[];
  metricsBindAddress: string;
  healthProbeBindAddress: string;
  leaderElect: boolean;
  leaderElectionNamespace?: string;
  leaderElectionId: string;
  relayImage: string;
  dnsServers: string[];
  dnsCheckIntervalMs: number;
  syncPeriodMs: number;
  drainPollMs: number;
  /** CIDRs of pod IPs the operator may connect to for drains; undefined: any. */
  drainNetworks?: string[];
  /** How draining pods address their peers: the headless Service name (dns) or the pod IP (ip). */
  drainPeerAddress: 'dns' | 'ip';
  featureCheckIntervalMs: number;
  workers: number;
}

export interface ManagerDeps {
  log: Logger;
  clock?: Clock;
  drain?: DrainClient;
  fleet?: FleetClient;
  dns?: TxtLookup;
  kubeConfig?: KubeConfig;
}

export interface RunningManager {
  metricsPort?: number;
  probePort?: number;
  /** Resolves with an exit code if the manager stops by itself (it does not on lost leadership: it campaigns again). */
  done: Promise<number>;
  stop(): Promise<void>;
}

/**
 * A relay renders its config once a burst of domain (or DKIM Secret) changes has been quiet this long, and
 * at the latest this long after the first change of the burst.
 */
const COALESCE_QUIET_MS = 2000;
const COALESCE_MAX_MS = 20_000;

const DOMAIN_WORKERS_PER_CORE = 4;

export function loadKubeConfig(path: string | undefined): KubeConfig {
  const kc = new KubeConfig();
  if (path) kc.loadFromFile(path);
  else kc.loadFromDefault();
  return kc;
}

const OWNED: Array<[keyof Stores, ResourceType, string | undefined]> = [
  ['configMaps', Kinds.ConfigMap, MANAGED_SELECTOR],
  ['services', Kinds.Service, MANAGED_SELECTOR],
  ['statefulSets', Kinds.StatefulSet, MANAGED_SELECTOR],
  ['pdbs', Kinds.PodDisruptionBudget, MANAGED_SELECTOR],
  ['secrets', Kinds.Secret, undefined],
];

class Manager {
  readonly metrics = new OperatorMetrics();
  readonly api: KubeApi;
  readonly informers: Array<Pick<ManagedInformer, 'start' | 'stop' | 'waitForSync' | 'synced'>> = [];
  readonly stores: Stores;
  readonly features: Features = { serviceMonitors: false, certManager: false };
  readonly ctx: OperatorContext;
  readonly relayController: Controller;
  readonly domainController: Controller;
  private readonly optional = new Map<string, ManagedInformer>();
  /** How watches poke the SmtpRelay controller; handed to the optional informers too. */
  private readonly relayEnqueue: Enqueue;
  private timers: unknown[] = [];
  private leading = false;
  private readonly dnsChecker: DnsChecker;
  private leader?: LeaderElector;
  private servers: Server[] = [];
  private stopped = false;
  private resolveDone: (code: number) => void = () => {};
  readonly done = new Promise<number>((r) => (this.resolveDone = r));

  constructor(
    private readonly cfg: ManagerConfig,
    private readonly kc: KubeConfig,
    private readonly log: Logger,
    private readonly clock: Clock,
    drain: DrainClient,
    fleet: FleetClient,
    dns: TxtLookup,
  ) {
    this.api = new RestKubeApi(kc, (method, code) => this.metrics.restRequests.inc({ method, code }));
    const mk = <T = KubeObject>(t: ResourceType, selector?: string) => {
      const inf = new ManagedInformer<T>(
        kc,
        this.api,
        t,
        cfg.namespaces,
        log,
        clock,
        () => this.metrics.informerRestarts.inc({ kind: t.kind }),
        selector,
      );
      this.informers.push(inf);
      return inf;
    };
    const relays = mk<SmtpRelay>(Kinds.SmtpRelay);
    const domains = mk<MailDomain>(Kinds.MailDomain);
    const pods = mk(Kinds.Pod, `${LABELS.name}=${RELAY_APP}`);
    const owned = Object.fromEntries(OWNED.map(([k, t, sel]) => [k, mk(t, sel)])) as Record<
      string,
      ManagedInformer
    >;
    this.stores = {
      relays,
      domains,
      pods,
      configMaps: owned.configMaps!,
      services: owned.services!,
      statefulSets: owned.statefulSets!,
      pdbs: owned.pdbs!,
      secrets: owned.secrets!,
      serviceMonitors: emptyStore,
      certificates: emptyStore,
    };
    this.ctx = {
      api: this.api,
      recent: new RecentWrites(clock),
      stores: this.stores,
      features: this.features,
      events: new ApiEventRecorder(this.api, clock, log),
      clock,
      log,
      refs: new ReferenceIndex(),
    };
    const relayRec = new SmtpRelayReconciler(this.ctx, {
      image: cfg.relayImage,
      drain,
      fleet,
      drainPollMs: cfg.drainPollMs,
      drainNetworks: cfg.drainNetworks ? parseNetworks(cfg.drainNetworks).networks : undefined,
      peerAddress: cfg.drainPeerAddress,
    });
    const domainRec = new MailDomainReconciler(this.ctx, {
      dns,
      dnsCheckIntervalMs: cfg.dnsCheckIntervalMs,
      onDnsChange: (key) => this.domainController.enqueue(key),
    });
    this.dnsChecker = domainRec.dnsChecker;
    this.relayController = new Controller(
      'smtprelay',
      (k) => relayRec.reconcile(k),
      clock,
      this.metrics,
      log,
      cfg.workers,
    );
    this.domainController = new Controller(
      'maildomain',
      (k) => domainRec.reconcile(k),
      clock,
      this.metrics,
      log,
      // A new domain's reconcile waits for its key (one generation per core at once, shared/keygen.ts)
      // and then for API round trips: four workers per core keep every core generating in a burst.
      Math.max(cfg.workers, DOMAIN_WORKERS_PER_CORE * availableParallelism()),
    );
    this.relayEnqueue = {
      now: (key) => this.relayController.enqueue(key),
      coalesced: (key) => this.relayController.queue.addCoalesced(key, COALESCE_QUIET_MS, COALESCE_MAX_MS),
    };
    const informers = {
      relays,
      domains,
      pods,
      secrets: owned.secrets!,
      owned: OWNED.filter(([k]) => k !== 'secrets').map(([k]) => owned[k]!),
    };
    watchForRelays(informers, this.relayEnqueue, this.ctx.refs);
    watchForDomains(informers, { now: (key) => this.domainController.enqueue(key) }, this.ctx.refs);
  }

  private enqueueAll() {
    for (const r of this.stores.relays.list()) this.relayController.enqueue(keyOf(r));
    for (const d of this.stores.domains.list()) this.domainController.enqueue(keyOf(d));
  }

  async start(): Promise<{ metricsPort?: number; probePort?: number }> {
    const m = await serveMetrics(this.cfg.metricsBindAddress, this.metrics.registry);
    const synced = () =>
      this.informers.every((i) => i.synced) ? undefined : 'informers: caches not yet synced';
    const p = await serveProbes(this.cfg.healthProbeBindAddress, {
      healthz: [() => undefined],
      readyz: [synced],
    });
    this.servers = [m?.server, p?.server].filter((s): s is Server => !!s);
    this.log.info(
      { metricsPort: m?.port, probePort: p?.port, namespaces: this.cfg.namespaces ?? 'all' },
      'operator starting',
    );
    await Promise.all(this.informers.map((i) => i.start()));
    await Promise.all(this.informers.map((i) => i.waitForSync()));
    if (this.stopped) return { metricsPort: m?.port, probePort: p?.port };
    if (!this.cfg.leaderElect) {
      this.metrics.leader.set({ name: this.cfg.leaderElectionId }, 1);
      this.startControllers();
    } else {
      this.leader = new LeaderElector(
        this.api,
        {
          namespace: this.cfg.leaderElectionNamespace ?? 'default',
          name: this.cfg.leaderElectionId,
          identity: `${hostname()}_${randomUUID()}`,
          ...DEFAULT_LEASE_TIMINGS,
        },
        this.clock,
        this.log,
        {
          onStartedLeading: () => this.startControllers(),
          onStoppedLeading: () => void this.stopControllers(),
          onStatus: (leading) =>
            this.metrics.leader.set({ name: this.cfg.leaderElectionId }, leading ? 1 : 0),
        },
      );
      this.metrics.leader.set({ name: this.cfg.leaderElectionId }, 0);
      this.leader.start();
    }
    return { metricsPort: m?.port, probePort: p?.port };
  }

  /** Leadership lost: stop acting until it is won back (informers keep the caches warm meanwhile). */
  private async stopControllers() {
    this.leading = false;
    for (const t of this.timers) this.clock.clearTimeout(t);
    this.timers = [];
    await Promise.all([this.relayController.stop(), this.domainController.stop()]);
    this.log.info('controllers stopped until leadership is won back');
  }

  private startControllers() {
    if (this.stopped) return;
    this.leading = true;
    this.relayController.start();
    this.domainController.start();
    this.enqueueAll();
    const every = (ms: number, fn: () => void) => {
      const tick = () => {
        if (this.stopped || !this.leading) return;
        fn();
        this.timers.push(this.clock.setTimeout(tick, ms));
      };
      this.timers.push(this.clock.setTimeout(tick, ms));
    };
    every(this.cfg.syncPeriodMs, () => this.enqueueAll());
    void this.discover();
    every(this.cfg.featureCheckIntervalMs, () => void this.discover());
  }

  /** Discovers optional APIs (Prometheus Operator, cert-manager) and starts or stops their informers. */
  private async discover() {
    const checks: Array<[keyof Features, 'serviceMonitors' | 'certificates', ResourceType]> = [
      ['serviceMonitors', 'serviceMonitors', Kinds.ServiceMonitor],
      ['certManager', 'certificates', Kinds.Certificate],
    ];
    for (const [feature, storeName, t] of checks) {
      try {
        const served = (await this.api.discover(`${t.group}/${t.version}`))?.includes(t.plural) ?? false;
        if (served === this.features[feature]) continue;
        await this.toggle(feature, storeName, t, served);
      } catch (e) {
        this.log.warn({ err: errorMessage(e), api: `${t.group}/${t.version}` }, 'API discovery failed');
      }
    }
  }

  private async toggle(
    feature: keyof Features,
    storeName: 'serviceMonitors' | 'certificates',
    t: ResourceType,
    on: boolean,
  ) {
    this.log.info({ kind: t.kind, served: on }, on ? 'optional API found' : 'optional API gone');
    const old = this.optional.get(storeName);
    if (old) await old.stop();
    this.optional.delete(storeName);
    let store: Store = emptyStore;
    if (on) {
      const inf = new ManagedInformer(
        this.kc,
        this.api,
        t,
        this.cfg.namespaces,
        this.log,
        this.clock,
        () => this.metrics.informerRestarts.inc({ kind: t.kind }),
        MANAGED_SELECTOR,
      );
      watchOwnedBy(inf, this.relayEnqueue);
      await inf.start();
      await inf.waitForSync();
      this.optional.set(storeName, inf);
      store = inf;
    }
    this.stores[storeName] = store;
    this.features[feature] = on;
    for (const r of this.stores.relays.list()) this.relayController.enqueue(keyOf(r));
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const t of this.timers) this.clock.clearTimeout(t);
    this.dnsChecker.stop();
    await Promise.all([this.relayController.stop(), this.domainController.stop()]);
    await this.leader?.stop();
    await Promise.all([...this.informers, ...this.optional.values()].map((i) => i.stop()));
    await Promise.all(this.servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    this.log.info('operator stopped');
  }
}

export async function startManager(cfg: ManagerConfig, deps: ManagerDeps): Promise<RunningManager> {
  const kc = deps.kubeConfig ?? loadKubeConfig(cfg.kubeconfig);
  const m = new Manager(
    cfg,
    kc,
    deps.log,
    deps.clock ?? realClock,
    deps.drain ?? new HttpDrainClient(),
    deps.fleet ?? new HttpFleetClient(),
    deps.dns ?? new ResolverTxtLookup(cfg.dnsServers),
  );
  const ports = await m.start();
  return { ...ports, done: m.done, stop: () => m.stop() };
}
