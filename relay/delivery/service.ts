/**
 * The delivery half of the relay, built in one place for relay/main.ts: queue manager, transports,
 * DKIM, bounces, drain and the queue API on the admin port.
 *
 *   spool ─► QueueManager ─► deliverGroup (router → MX plan | smarthost → TransportPool) ─► outcomes
 *                  │                                                         │
 *                  └─ bounces/delay notices (queueDsn → spool)               └─ DKIM once (signMessage)
 *   Drainer ─► hand-off (TransportPool to peers) │ admin routes: /drain, /queue…
 *
 * Shaping per destination site (sites.ts): the queue manager finds a group's site with the resolver and
 * asks a gate; the gate here is this pod's own (localShapingGate), the fleet-wide one plugs in there.
 *
 * Everything reads the configuration in force through `config()`, so a reload applies to the next
 * attempt (routes, keys, limits, retry schedule). stop() ends the drain loop, lets deliveries in flight
 * finish for up to `graceMs` (then aborts them: their recipients stay pending), and closes connections.
 */
import os from 'node:os';
import type { RelayConfig } from '../config/schema.js';
import type { RelayMetrics } from '../metrics.js';
import type { Spool, SpoolEntry } from '../spool/spool.js';
import { registerDeliveryRoutes, type RouteRegistrar } from './admin-routes.js';
import { deliverGroup } from './attempt.js';
import { queueDsn } from './bounce.js';
import { signMessage } from './dkim.js';
import { Drainer } from './drain.js';
import { handOff, parsePeer, peerTarget } from './handoff.js';
import type { MailHostsLookup } from './mx.js';
import { QueueManager, type Log } from './queue-manager.js';
import { QueueOps } from './queue-ops.js';
import { domainOf } from './router.js';
import { noSuppression, withSuppression, type SuppressionList } from './suppression.js';
import { localShapingGate, siteOf, type ShapingGate } from './sites.js';
import { TransportPool, type TransportOptions } from './transport.js';

export interface DeliveryDeps {
  spool: Spool;
  config: () => RelayConfig;
  resolver: () => MailHostsLookup;
  metrics?: RelayMetrics;
  log: Log;
  admin: RouteRegistrar;
  /** Stops (true) or resumes accepting mail; readiness follows. */
  setDraining: (on: boolean) => void;
  /** The suppression list (the fleet's, or this pod's); absent: none (tests of delivery alone). */
  suppression?: SuppressionList;
  /** Shaping beyond this pod (the fleet's leases and rates); absent: this pod's own counts. */
  gate?: ShapingGate;
}

export interface Delivery {
  readonly queue: QueueManager;
  readonly drainer: Drainer;
  readonly ops: QueueOps;
  stop(graceMs?: number): Promise<void>;
}

export function startDelivery(deps: DeliveryDeps): Delivery {
  const { spool, config, log } = deps;
  const transportOptions = (): TransportOptions => {
    const d = config().delivery;
    return {
      heloName: d.heloName ?? (config().hostname || os.hostname()),
      connectTimeoutMs: d.connectTimeoutMs,
      commandTimeoutMs: d.commandTimeoutMs,
      maxConnections: d.shaping.maxConnections,
    };
  };
  const transport = new TransportPool(transportOptions);
  const peerTransport = new TransportPool(transportOptions);

  const queue = new QueueManager({
    spool,
    config,
    metrics: deps.metrics,
    log,
    deliver: withSuppression(
      (msg, group, signal, site) =>
        deliverGroup(
          { resolver: deps.resolver(), transport, directPort: () => config().delivery.directPort },
          msg,
          group,
          signal,
          { maxConnections: site.maxConnections, maxMessages: site.deliveriesPerConnection },
        ),
      { list: deps.suppression ?? noSuppression, config: () => config().suppression, metrics: deps.metrics },
    ),
    siteOf: (group) => siteOf(deps.resolver(), group),
    gate: deps.gate ?? localShapingGate(),
    sign: (entry) => sign(entry),
    queueDsn: (req) => queueDsn(spool, req),
  });

  const sign = (entry: SpoolEntry) => {
    const domain = domainOf(entry.envelope.mailFrom);
    const dkim = domain ? config().domains.find((d) => d.name.toLowerCase() === domain)?.dkim : undefined;
    if (!dkim) return Promise.resolve(undefined);
    return signMessage(domain, dkim, spool.readBody(entry.id), Date.now());
  };

  const drainer = new Drainer({
    spool,
    queue,
    metrics: deps.metrics,
    log,
    setDraining: deps.setDraining,
    handOff: async (entry, recipients, peer) => {
      const handoff = config().handoff;
      if (!handoff) throw new Error('handoff is not configured');
      return handOff(peerTransport, await peerTarget(parsePeer(peer), handoff), spool, entry, recipients);
    },
  });
  const ops = new QueueOps(spool, queue);
  registerDeliveryRoutes(deps.admin, {
    drainer,
    ops,
    handoffProblem: () =>
      config().handoff
        ? undefined
        : 'hand-off needs the handoff section (username, passwordFile) in the relay config',
  });

  queue.start();

  return {
    queue,
    drainer,
    ops,
    async stop(graceMs = 10_000) {
      await drainer.stop();
      await queue.pause({ abortAfterMs: graceMs });
      await queue.stop();
      transport.close();
      peerTransport.close();
    },
  };
}
