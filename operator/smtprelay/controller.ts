/**
 * The SmtpRelay controller: its RBAC, its watches and its reconcile, which gathers (caches, Secrets, drain
 * status of pods), evaluates (pure render, scale plan, status) and writes only what changed. Each concern
 * is a module of its own: the secret material and TLS (material.ts), the children (children.ts), draining
 * and the finalizer (drain.ts), status (status.ts, written by shared/status.ts). Level-triggered: it
 * recomputes everything from the current state on every call.
 *
 * Bad input (a missing Secret, a reserved user name, TLS that cannot be had) never throws: it becomes
 * Ready=False / Degraded=True with a message saying what to fix, and the Secret watch (through the
 * ReferenceIndex) brings the relay back when the Secret appears. Errors from the API do throw, and the
 * work queue retries them with backoff.
 */
import type { SmtpRelay, SmtpRelayStatus } from '../api/smtprelay.js';
import { withRelayDefaults } from '../api/defaults.js';
import { findCondition, rfc3339 } from '../runtime/conditions.js';
import type { ReconcileResult } from '../runtime/controller.js';
import { keyOf } from '../runtime/kube.js';
import type { PolicyRule } from '../runtime/rbac.js';
import { bindDomains, domainsOf } from '../shared/binding.js';
import { SecretReader, type OperatorContext, type ReferenceIndex } from '../shared/context.js';
import { ensureGenerated } from '../shared/generated.js';
import { LABELS } from '../shared/labels.js';
import { reportFailure, StatusHold, writeStatus } from '../shared/status.js';
import {
  DomainFactsTracker,
  ownerKey,
  type Enqueue,
  type Informers,
  type Watchable,
} from '../shared/watch.js';
import { RelayChildren } from './children.js';
import { RelayDrains, type DrainOptions } from './drain.js';
import { FLEET_POLL_MS, RelayFleet } from './fleet.js';
import type { FleetClient } from './fleet-client.js';
import { gatherMaterial } from './material.js';
import { SKIP_DRAIN_ANNOTATION, DRAIN_FINALIZER, names } from './names.js';
import type { ScalePlan } from './scale.js';
import {
  computeStatus,
  fleetStoreCondition,
  fleetStoreEvent,
  RELAY_TRANSITIONS,
  statusTls,
  stsView,
  type Problem,
} from './status.js';

const crud = ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'];

/** RBAC this controller needs (merged into the chart's ClusterRole by operator/gen). */
export const RBAC: PolicyRule[] = [
  {
    apiGroups: ['mailfleet.dev'],
    resources: ['smtprelays'],
    verbs: ['get', 'list', 'watch', 'update', 'patch'],
  },
  { apiGroups: ['mailfleet.dev'], resources: ['smtprelays/status'], verbs: ['get', 'update', 'patch'] },
  { apiGroups: ['mailfleet.dev'], resources: ['smtprelays/finalizers'], verbs: ['update'] },
  { apiGroups: ['mailfleet.dev'], resources: ['maildomains'], verbs: ['get', 'list', 'watch'] },
  { apiGroups: [''], resources: ['secrets', 'configmaps', 'services'], verbs: crud },
  { apiGroups: [''], resources: ['pods'], verbs: ['get', 'list', 'watch', 'patch', 'delete'] },
  { apiGroups: ['apps'], resources: ['statefulsets'], verbs: crud },
  // The queue claims of a relay whose deletion drain finished (they are empty then).
  { apiGroups: [''], resources: ['persistentvolumeclaims'], verbs: ['delete'] },
  { apiGroups: ['policy'], resources: ['poddisruptionbudgets'], verbs: crud },
  { apiGroups: ['monitoring.coreos.com'], resources: ['servicemonitors'], verbs: crud },
  { apiGroups: ['cert-manager.io'], resources: ['certificates'], verbs: crud },
];

/**
 * What re-queues an SmtpRelay (beside the resync): its own changes; its children (a deleted or edited
 * child is repaired) and its pods (drain, readiness); the MailDomains bound to it and the Secrets it reads
 * (users' passwords, DKIM keys), coalesced, so a burst of new domains renders its config once. A domain's
 * status update, which the relay does not read, re-queues nothing.
 */
export function watchForRelays(inf: Informers, relay: Enqueue, refs: ReferenceIndex): void {
  inf.relays.on((_t, o) => relay.now(keyOf(o)));
  const facts = new DomainFactsTracker();
  inf.domains.on((type, o) => {
    const { now, before, changed } = facts.observe(type, o);
    if (!changed) return;
    // The relay it names now, and the one it named before (which must drop it).
    for (const r of new Set([now?.relay, before?.relay]))
      if (r !== undefined) relay.coalesced(`${o.metadata?.namespace ?? ''}/${r}`);
  });
  inf.pods.on((_t, o) => {
    const inst = o.metadata?.labels?.[LABELS.instance];
    if (inst) relay.now(`${o.metadata?.namespace}/${inst}`);
  });
  for (const owned of [...inf.owned, inf.secrets]) watchOwnedBy(owned, relay);
  inf.secrets.on((_t, o) => {
    for (const owner of refs.owners(keyOf(o)))
      if (owner.startsWith('SmtpRelay:')) relay.coalesced(owner.slice('SmtpRelay:'.length));
  });
}

/** Children of a kind the operator owns, optional ones too (ServiceMonitor, Certificate, once served). */
export function watchOwnedBy(inf: Watchable, relay: Enqueue): void {
  inf.on((_t, o) => {
    const key = ownerKey(o, 'SmtpRelay');
    if (key) relay.now(key);
  });
}

export interface RelayControllerOptions extends DrainOptions {
  /** Relay image used when spec.image is empty. */
  image: string;
  /** How often to poll a drain in progress. */
  drainPollMs: number;
  /** Asks pods about the fleet store (GET /fleet), only for relays with spec.fleetStore. */
  fleet: FleetClient;
}

const DRAIN_POLL_FALLBACK_MS = 5000;
const MAX_RESYNC_MS = 12 * 3600 * 1000;

export class SmtpRelayReconciler {
  private readonly children: RelayChildren;
  private readonly drains: RelayDrains;
  private readonly fleet: RelayFleet;
  private readonly hold = new StatusHold();

  constructor(
    private readonly ctx: OperatorContext,
    private readonly opts: RelayControllerOptions,
  ) {
    this.children = new RelayChildren(ctx, opts.image);
    this.drains = new RelayDrains(ctx, opts);
    this.fleet = new RelayFleet(opts.fleet, opts.drainNetworks);
  }

  async reconcile(key: string): Promise<ReconcileResult | void> {
    const [namespace, name] = key.split('/') as [string, string];
    const cached = this.ctx.stores.relays.get(namespace, name);
    const raw = this.ctx.recent.resolve('SmtpRelay', cached, namespace, name);
    if (!raw) {
      this.ctx.refs.delete(`SmtpRelay:${key}`);
      this.hold.forget(key);
      return;
    }
    const relay = withRelayDefaults(raw);
    try {
      if (relay.metadata.deletionTimestamp) return await this.finalize(relay);
      await this.drains.ensureFinalizer(relay);
      return await this.sync(relay);
    } catch (e) {
      await reportFailure(this.ctx, relay, e);
      throw e;
    }
  }

  private async sync(relay: SmtpRelay): Promise<ReconcileResult> {
    const { ctx } = this;
    const { namespace, name } = relay.metadata;
    const now = ctx.clock.now();
    const reader = new SecretReader(ctx.stores.secrets, namespace, ctx.recent);
    const binding = bindDomains(namespace, name, domainsOf(ctx.stores.domains, namespace, name));
    const m = await gatherMaterial(relay, reader, binding.bound, {
      certManager: ctx.features.certManager,
      nowMs: now,
      generate: (g) => ensureGenerated(ctx, reader, g),
    });
    ctx.refs.set(`SmtpRelay:${namespace}/${name}`, reader.read);

    const sts = ctx.stores.statefulSets.get(namespace, names(name).statefulSet);
    const degraded: Problem[] = [];
    const storage = this.children.storage(relay, sts, degraded);
    const pods = this.drains.pods(relay);
    let plan: ScalePlan | undefined;
    if (m.blocking.length === 0) {
      plan = await this.drains.plan(relay, sts, pods, m.adminToken, false);
      await this.children.apply(relay, m, plan.statefulSetReplicas, storage);
      await this.drains.act(relay, plan, pods, m.adminToken, now);
      degraded.push(...plan.problems);
    } else await this.children.applyBlocked(relay);
    // Pods that run keep reporting while the spec is blocked; their config is the last one rolled out.
    const fleetAnswers = await this.fleet.ask(relay, pods, m.adminToken);
    const status = computeStatus(
      {
        relay,
        nowIso: rfc3339(now),
        blocking: m.blocking,
        degraded,
        tls: m.tlsStatus,
        statefulSet: sts ? stsView(sts) : undefined,
        draining: plan?.draining ?? [],
        deleting: false,
        domains: m.domains.map((b) => b.domain.spec.domain.toLowerCase()),
        caSecret: m.caSecret,
        fleetStore: fleetStoreCondition(relay, fleetAnswers),
      },
      relay.status,
    );
    // A new relay's first rollout: its StatefulSet's progress re-queues it; the hold bounds the wait.
    const wait = this.hold.wait(`${namespace}/${name}`, firstRollout(relay, status), now);
    if (wait > 0) return { requeueAfterMs: wait };
    if (await writeStatus(ctx, relay, status, RELAY_TRANSITIONS)) {
      const type = 'FleetStore';
      const ev = fleetStoreEvent(
        findCondition(relay.status?.conditions, type),
        findCondition(status.conditions, type),
      );
      if (ev) ctx.events.record(relay, ev.type, ev.reason, ev.message);
    }
    return withFleetPoll(relay, this.next(plan, m.blocking, m.renewAt, now));
  }

  /** Deletion: drain every pod (no peers: they deliver what they hold), then release the finalizer. */
  private async finalize(relay: SmtpRelay): Promise<ReconcileResult | void> {
    const { ctx } = this;
    const { namespace, name } = relay.metadata;
    if (!relay.metadata.finalizers?.includes(DRAIN_FINALIZER)) return;
    const skip = relay.metadata.annotations?.[SKIP_DRAIN_ANNOTATION] === 'true';
    const sts = ctx.stores.statefulSets.get(namespace, names(name).statefulSet);
    const pods = this.drains.pods(relay);
    const token =
      (new SecretReader(ctx.stores.secrets, namespace, ctx.recent).get(names(name).internal) ?? {})[
        'admin-token'
      ]?.toString('utf8') ?? '';
    const plan = skip || !sts ? undefined : await this.drains.plan(relay, sts, pods, token, true);
    if (!plan || plan.drained) {
      await this.drains.release(relay, plan && sts, skip);
      ctx.refs.delete(`SmtpRelay:${namespace}/${name}`);
      return;
    }
    await this.drains.act(relay, plan, pods, token, ctx.clock.now());
    const status = computeStatus(
      {
        relay,
        nowIso: rfc3339(ctx.clock.now()),
        blocking: [],
        degraded: plan.problems.map((p) => ({
          ...p,
          message: `${p.message} (to delete without draining, annotate the SmtpRelay ${SKIP_DRAIN_ANNOTATION}=true)`,
        })),
        tls: statusTls(relay.status?.conditions),
        statefulSet: stsView(sts!),
        draining: plan.draining,
        deleting: true,
        domains: relay.status?.domains ?? [],
        caSecret: relay.status?.caSecret,
      },
      relay.status,
    );
    await writeStatus(ctx, relay, status, RELAY_TRANSITIONS);
    return plan.problems.length
      ? { retry: true }
      : { requeueAfterMs: this.opts.drainPollMs || DRAIN_POLL_FALLBACK_MS };
  }

  /** When to look again: drains are polled, problems retried with backoff, TLS renewal is scheduled. */
  private next(
    plan: ScalePlan | undefined,
    blocking: Problem[],
    renewAt: number | undefined,
    now: number,
  ): ReconcileResult {
    if (plan?.waiting || plan?.problems.length) {
      return plan.problems.length
        ? { retry: true }
        : { requeueAfterMs: this.opts.drainPollMs || DRAIN_POLL_FALLBACK_MS };
    }
    if (blocking.length) return {};
    if (renewAt !== undefined)
      return { requeueAfterMs: Math.max(1000, Math.min(renewAt - now, MAX_RESYNC_MS)) };
    return {};
  }
}

/** With a fleet store, look again within FLEET_POLL_MS (a store outage changes nothing the watches see). */
function withFleetPoll(relay: SmtpRelay, r: ReconcileResult): ReconcileResult {
  // A retry's backoff starts far shorter; a backoff grown past 30 s is the error's, left to it.
  if (!relay.spec.fleetStore || r.retry) return r;
  return { requeueAfterMs: Math.min(r.requeueAfterMs ?? FLEET_POLL_MS, FLEET_POLL_MS) };
}

/** A relay that never had a status, rolling out for the first time and with nothing wrong: on its way. */
function firstRollout(relay: SmtpRelay, status: SmtpRelayStatus): boolean {
  if (relay.status?.conditions?.length) return false;
  const ready = status.conditions?.find((c) => c.type === 'Ready');
  const degraded = status.conditions?.find((c) => c.type === 'Degraded');
  return ready?.reason === 'RolloutInProgress' && degraded?.status !== 'True';
}
