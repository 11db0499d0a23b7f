/**
 * The SmtpRelay reconciler: gather (caches, Secrets, drain status of pods) → evaluate (pure render, scale
 * plan, status) → apply (server-side apply of what differs, status only when changed, Events on
 * transitions). Level-triggered: it recomputes everything from the current state on every call.
 *
 * Bad input (a missing Secret, a reserved user name, TLS that cannot be had) never throws: it becomes
 * Ready=False / Degraded=True with a message saying what to fix, and the Secret watch (through the
 * ReferenceIndex) brings the relay back when the Secret appears. Errors from the API do throw, and the
 * work queue retries them with backoff.
 */
import { stringify } from 'yaml';
import { API_VERSION, type Condition } from '../api/common.js';
import { withDomainDefaults, withRelayDefaults } from '../api/defaults.js';
import type { MailDomain } from '../api/maildomain.js';
import type { SmtpRelay, SmtpRelayStatus } from '../api/smtprelay.js';
import { applyIfChanged, SecretReader, type OperatorContext } from '../context.js';
import { bindDomains } from '../maildomain/binding.js';
import { findCondition, rfc3339 } from '../runtime/conditions.js';
import { recordTransitions } from '../runtime/events.js';
import type { ReconcileResult } from '../runtime/controller.js';
import { hashObject, isSubset } from '../runtime/diff.js';
import type { KubeObject } from '../runtime/kube.js';
import { errorMessage } from '../runtime/logger.js';
import type { PolicyRule } from '../runtime/rbac.js';
import { Kinds } from '../runtime/resources.js';
import { renderRelayConfig } from './config.js';
import { isAddressAllowed, type Network } from '../../relay/policy/network.js';
import { podAdminAddress, type DrainClient } from './drain.js';
import { gatherMaterial } from './material.js';
import {
  DRAIN_FINALIZER,
  DRAIN_STARTED_ANNOTATION,
  LABELS,
  SKIP_DRAIN_ANNOTATION,
  names,
  podDnsName,
} from './names.js';
import { renderCertificate, renderRelay } from './render.js';
import { drainTargets, planScale, podOrdinal, type PodView, type ScalePlan } from './scale.js';
import { computeStatus, type Problem } from './status.js';

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

export interface RelayControllerOptions {
  /** Relay image used when spec.image is empty. */
  image: string;
  drain: DrainClient;
  /** How often to poll a drain in progress. */
  drainPollMs: number;
  /**
   * Networks the operator may connect to for drains (--drain-networks); undefined: any. A pod outside them
   * counts as unreachable, so a test cluster whose fake pod IPs route nowhere is never contacted.
   */
  drainNetworks?: readonly Network[];
  /**
   * How draining pods address their peers (--drain-peer-address): "dns" (default), the stable name through
   * the headless Service, which the relay certificate covers; "ip", the peer pod's IP, for environments
   * without cluster DNS (an e2e running relays on loopback pod IPs).
   */
  peerAddress?: 'dns' | 'ip';
}

const DRAIN_POLL_FALLBACK_MS = 5000;
const MAX_RESYNC_MS = 12 * 3600 * 1000;

export class SmtpRelayReconciler {
  constructor(
    private readonly ctx: OperatorContext,
    private readonly opts: RelayControllerOptions,
  ) {}

  async reconcile(key: string): Promise<ReconcileResult | void> {
    const [namespace, name] = key.split('/') as [string, string];
    const cached = this.ctx.stores.relays.get(namespace, name);
    const raw = this.ctx.recent.resolve('SmtpRelay', cached, namespace, name) as SmtpRelay | undefined;
    if (!raw) {
      this.ctx.refs.delete(`SmtpRelay:${key}`);
      return;
    }
    const relay = withRelayDefaults(raw);
    if (relay.metadata.deletionTimestamp) return this.finalize(relay);
    if (!relay.metadata.finalizers?.includes(DRAIN_FINALIZER)) await this.addFinalizer(relay);
    return this.sync(relay);
  }

  private async sync(relay: SmtpRelay): Promise<ReconcileResult> {
    const { ctx } = this;
    const { namespace, name } = relay.metadata;
    const n = names(name);
    const now = ctx.clock.now();
    const reader = new SecretReader(ctx.stores.secrets, namespace, ctx.recent);
    const allDomains = ctx.stores.domains
      .list(namespace)
      .map((d) => withDomainDefaults(d as unknown as MailDomain));
    const binding = bindDomains(namespace, name, allDomains);
    const m = await gatherMaterial(relay, reader, binding.bound, {
      certManager: ctx.features.certManager,
      nowMs: now,
    });
    ctx.refs.set(`SmtpRelay:${namespace}/${name}`, reader.read);

    const sts = ctx.stores.statefulSets.get(namespace, n.statefulSet);
    const degraded: Problem[] = [];
    const storage = this.storage(relay, sts, degraded);
    const pods = this.pods(relay);
    let plan: ScalePlan | undefined;
    if (m.blocking.length === 0) {
      plan = await this.plan(relay, sts, pods, m.adminToken, false);
      const config = renderRelayConfig({
        relay,
        domains: m.domains,
        tls: m.hasTls,
        ca: m.hasCa,
        smarthostCredentials: m.smarthostCredentials,
        smarthostCa: m.smarthostCa,
      });
      const objects = renderRelay({
        relay,
        image: this.opts.image,
        configYaml: stringify(config, { lineWidth: 0 }),
        secrets: m,
        statefulSetReplicas: plan.statefulSetReplicas,
        storage,
        serviceMonitor: ctx.features.serviceMonitors && relay.spec.monitoring.serviceMonitor.enabled,
        certificate: this.wantsCertificate(relay),
      });
      for (const o of objects) await applyIfChanged(ctx, this.storeOf(o), o);
      await this.prune(relay, objects);
      await this.act(relay, plan, pods, m.adminToken, now);
      degraded.push(...plan.problems);
    } else if (this.wantsCertificate(relay)) {
      // cert-manager issues the Secret TLS waits for only once the Certificate exists.
      await applyIfChanged(ctx, ctx.stores.certificates, renderCertificate(relay));
    }
    const domains = m.domains.map((b) => b.domain.spec.domain.toLowerCase());
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
        domains,
        caSecret: m.caSecret,
      },
      relay.status,
    );
    await this.writeStatus(relay, status);
    return this.next(plan, m.blocking, m.renewAt, now);
  }

  private wantsCertificate(relay: SmtpRelay): boolean {
    return this.ctx.features.certManager && !!relay.spec.tls.issuerRef && !relay.spec.tls.secretName;
  }

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

  /** volumeClaimTemplates cannot change: keep what the StatefulSet has and say so when the spec differs. */
  private storage(relay: SmtpRelay, sts: KubeObject | undefined, degraded: Problem[]) {
    const want = {
      size: String(relay.spec.queue.storage.size),
      storageClassName: relay.spec.queue.storage.storageClassName,
    };
    const vct = (
      sts?.spec as
        | {
            volumeClaimTemplates?: Array<{
              spec?: { storageClassName?: string; resources?: { requests?: { storage?: string } } };
            }>;
          }
        | undefined
    )?.volumeClaimTemplates?.[0]?.spec;
    if (!vct) return want;
    const have = {
      size: vct.resources?.requests?.storage ?? want.size,
      storageClassName: vct.storageClassName,
    };
    const sameClass = !want.storageClassName || want.storageClassName === have.storageClassName;
    if (!isSubset(want.size, have.size) || !sameClass) {
      degraded.push({
        reason: 'StorageChangeIgnored',
        message: `queue.storage asks for ${want.size}${want.storageClassName ? ` of ${want.storageClassName}` : ''} but the queue volumes are ${have.size}${have.storageClassName ? ` of ${have.storageClassName}` : ''}; volume templates cannot change (resize the PVCs directly, or recreate the relay)`,
      });
    }
    return have;
  }

  private pods(relay: SmtpRelay): KubeObject[] {
    const sel = `${relay.metadata.name}`;
    return this.ctx.stores.pods
      .list(relay.metadata.namespace)
      .filter(
        (p) =>
          p.metadata?.labels?.[LABELS.instance] === sel &&
          podOrdinal(names(sel).statefulSet, p.metadata?.name ?? '') >= 0,
      );
  }

  /** Asks the pods that must drain where they stand, then plans the StatefulSet size. */
  private async plan(
    relay: SmtpRelay,
    sts: KubeObject | undefined,
    pods: KubeObject[],
    token: string,
    deleting: boolean,
  ) {
    const current = (sts?.spec as { replicas?: number } | undefined)?.replicas;
    const skipDrain = relay.metadata.annotations?.[SKIP_DRAIN_ANNOTATION] === 'true';
    const { from, to } = drainTargets({ desired: relay.spec.replicas, current, deleting, skipDrain });
    const port = relay.spec.monitoring.metricsPort;
    const views: PodView[] = [];
    for (const p of pods) {
      const view = podView(relay, p, port);
      if (view.ordinal >= from && view.ordinal < to && view.address)
        view.drain = await this.drainStatus(p, view.address, token);
      views.push(view);
    }
    return planScale({
      desired: relay.spec.replicas,
      current,
      deleting,
      skipDrain,
      statefulSetName: names(relay.metadata.name).statefulSet,
      pods: views,
      nowMs: this.ctx.clock.now(),
      drainTimeoutMs: relay.spec.drain.timeoutSeconds * 1000,
    });
  }

  /** GET /drain on a pod, or why the operator did not or could not ask. */
  private async drainStatus(pod: KubeObject, address: string, token: string): Promise<PodView['drain']> {
    const ip = (pod.status as { podIP?: string } | undefined)?.podIP ?? '';
    if (this.opts.drainNetworks && !isAddressAllowed(ip, this.opts.drainNetworks)) {
      return { error: `pod IP ${ip} is outside --drain-networks; the operator does not connect to it` };
    }
    try {
      return await this.opts.drain.status(address, token);
    } catch (e) {
      return { error: errorMessage(e) };
    }
  }

  /** Starts drains (a refusal becomes a problem in the plan), marks draining pods, restarts pods whose drain was called off. */
  private async act(relay: SmtpRelay, plan: ScalePlan, pods: KubeObject[], token: string, now: number) {
    const { ctx } = this;
    const { namespace } = relay.metadata;
    const port = relay.spec.monitoring.metricsPort;
    const submission = relay.spec.listeners.submission;
    const keep = Math.min(relay.spec.replicas, plan.statefulSetReplicas);
    const peers =
      submission.enabled && keep > 0 && !relay.metadata.deletionTimestamp
        ? peerAddresses(relay, pods, keep, submission.port, this.opts.peerAddress ?? 'dns')
        : [];
    for (const podName of plan.startDrain) {
      const pod = pods.find((p) => p.metadata?.name === podName);
      const address = pod && podAdminAddress(pod, port);
      if (!pod || !address) continue;
      if (!pod.metadata?.annotations?.[DRAIN_STARTED_ANNOTATION]) {
        await ctx.api.mergePatch(Kinds.Pod, namespace, podName, {
          metadata: { annotations: { [DRAIN_STARTED_ANNOTATION]: rfc3339(now) } },
        });
        ctx.events.record(
          relay as unknown as KubeObject,
          'Normal',
          'DrainStarted',
          `draining pod ${podName} (${peers.length ? `handing mail to ${peers.length} peer(s)` : 'delivering its queue'})`,
        );
      }
      try {
        await this.opts.drain.start(address, token, peers);
      } catch (e) {
        plan.problems.push({
          reason: 'DrainFailed',
          message: `asking pod ${podName} to drain failed: ${errorMessage(e)}`,
        });
      }
    }
    for (const podName of plan.restart) {
      ctx.events.record(
        relay as unknown as KubeObject,
        'Normal',
        'DrainCancelled',
        `restarting pod ${podName}: it was drained for a scale-down that was reverted`,
      );
      await ctx.api.delete(Kinds.Pod, namespace, podName);
    }
  }

  /** Deletes owned optional children that the spec no longer asks for. */
  private async prune(relay: SmtpRelay, desired: KubeObject[]) {
    const { ctx } = this;
    const n = names(relay.metadata.name);
    const want = new Set(desired.map((o) => `${o.kind}/${o.metadata?.name}`));
    const candidates: Array<[keyof typeof Kinds, string, typeof ctx.stores.secrets]> = [
      ['ServiceMonitor', n.serviceMonitor, ctx.stores.serviceMonitors],
      ['Certificate', n.certificate, ctx.stores.certificates],
      ['Secret', n.ca, ctx.stores.secrets],
      ['Secret', n.tls, ctx.stores.secrets],
    ];
    for (const [kind, objName, store] of candidates) {
      if (want.has(`${kind}/${objName}`)) continue;
      const live = store.get(relay.metadata.namespace, objName);
      const owned = live?.metadata?.ownerReferences?.some(
        (r) => r.uid === relay.metadata.uid && r.controller,
      );
      if (live && owned)
        await ctx.api.delete(Kinds[kind], relay.metadata.namespace, objName, live.metadata?.uid);
    }
  }

  private storeOf(o: KubeObject) {
    const s = this.ctx.stores;
    switch (o.kind) {
      case 'Secret':
        return s.secrets;
      case 'ConfigMap':
        return s.configMaps;
      case 'Service':
        return s.services;
      case 'StatefulSet':
        return s.statefulSets;
      case 'PodDisruptionBudget':
        return s.pdbs;
      case 'ServiceMonitor':
        return s.serviceMonitors;
      default:
        return s.certificates;
    }
  }

  private async addFinalizer(relay: SmtpRelay) {
    const base = this.ctx.stores.relays.get(relay.metadata.namespace, relay.metadata.name);
    const written = await this.ctx.api.apply({
      apiVersion: API_VERSION,
      kind: 'SmtpRelay',
      metadata: {
        name: relay.metadata.name,
        namespace: relay.metadata.namespace,
        finalizers: [DRAIN_FINALIZER],
      },
    });
    this.ctx.recent.remember(written, base);
  }

  /** Deletion: drain every pod (no peers: they deliver what they hold), then release the finalizer. */
  private async finalize(relay: SmtpRelay): Promise<ReconcileResult | void> {
    const { ctx } = this;
    const { namespace, name } = relay.metadata;
    if (!relay.metadata.finalizers?.includes(DRAIN_FINALIZER)) return;
    const skip = relay.metadata.annotations?.[SKIP_DRAIN_ANNOTATION] === 'true';
    const sts = ctx.stores.statefulSets.get(namespace, names(name).statefulSet);
    const pods = this.pods(relay);
    const token =
      (new SecretReader(ctx.stores.secrets, namespace, ctx.recent).get(names(name).internal) ?? {})[
        'admin-token'
      ]?.toString('utf8') ?? '';
    const plan = skip || !sts ? undefined : await this.plan(relay, sts, pods, token, true);
    if (!plan || plan.drained) {
      // Drained queues are empty: their claims go too (the StatefulSet keeps them on deletion, so that a
      // deletion that skips the drain, or finds no StatefulSet, strands no mail).
      if (plan && sts) await this.deleteQueueClaims(relay, sts);
      ctx.events.record(
        relay as unknown as KubeObject,
        'Normal',
        'Deleted',
        skip
          ? 'deleted without draining (skip-drain annotation); queue volumes are kept'
          : 'all pods drained; deleting them and their queue volumes',
      );
      await this.removeFinalizer(relay);
      ctx.refs.delete(`SmtpRelay:${namespace}/${name}`);
      return;
    }
    await this.act(relay, plan, pods, token, ctx.clock.now());
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
    await this.writeStatus(relay, status);
    return plan.problems.length
      ? { retry: true }
      : { requeueAfterMs: this.opts.drainPollMs || DRAIN_POLL_FALLBACK_MS };
  }

  /** Deletes the queue claims of every ordinal the StatefulSet has (queue-<statefulset>-<ordinal>). */
  private async deleteQueueClaims(relay: SmtpRelay, sts: KubeObject) {
    const replicas = (sts.spec as { replicas?: number } | undefined)?.replicas ?? 0;
    const stsName = names(relay.metadata.name).statefulSet;
    for (let i = 0; i < replicas; i++)
      await this.ctx.api.delete(
        Kinds.PersistentVolumeClaim,
        relay.metadata.namespace,
        `queue-${stsName}-${i}`,
      );
  }

  private async removeFinalizer(relay: SmtpRelay) {
    const rest = (relay.metadata.finalizers ?? []).filter((f) => f !== DRAIN_FINALIZER);
    const base = this.ctx.stores.relays.get(relay.metadata.namespace, relay.metadata.name);
    const written = await this.ctx.api.mergePatch(
      Kinds.SmtpRelay,
      relay.metadata.namespace,
      relay.metadata.name,
      {
        metadata: { finalizers: rest.length ? rest : null, resourceVersion: relay.metadata.resourceVersion },
      },
    );
    // Until the watch shows it, later reconciles must see the finalizer gone (no second drain or event).
    this.ctx.recent.remember(written, base);
  }

  /** Patches status only when it changed; records Events for condition transitions. */
  private async writeStatus(relay: SmtpRelay, status: SmtpRelayStatus) {
    if (hashObject(status) === hashObject(relay.status ?? {})) return;
    const base = this.ctx.stores.relays.get(relay.metadata.namespace, relay.metadata.name);
    const written = await this.ctx.api.apply(
      {
        apiVersion: API_VERSION,
        kind: 'SmtpRelay',
        metadata: { name: relay.metadata.name, namespace: relay.metadata.namespace },
        status,
      },
      'status',
    );
    this.ctx.recent.remember(written, base);
    recordTransitions(
      this.ctx.events,
      relay as unknown as KubeObject,
      relay.status?.conditions,
      status.conditions,
      ['Ready', 'Degraded', 'Draining'],
      (c) =>
        (c.type === 'Degraded' && c.status === 'True') ||
        (c.type === 'Ready' &&
          c.status === 'False' &&
          c.reason !== 'RolloutInProgress' &&
          c.reason !== 'Draining'),
    );
  }
}

/** host:port of the pods that stay (ordinals below `keep`), as draining pods reach them for handoff. */
export function peerAddresses(
  relay: SmtpRelay,
  pods: readonly KubeObject[],
  keep: number,
  port: number,
  mode: 'dns' | 'ip',
): string[] {
  const sts = names(relay.metadata.name).statefulSet;
  if (mode === 'dns')
    return Array.from({ length: keep }, (_, i) => `${podDnsName(relay, `${sts}-${i}`)}:${port}`);
  return pods
    .map((p) => ({
      ord: podOrdinal(sts, p.metadata?.name ?? ''),
      ip: (p.status as { podIP?: string } | undefined)?.podIP,
    }))
    .filter((p) => p.ord >= 0 && p.ord < keep && p.ip)
    .sort((a, b) => a.ord - b.ord)
    .map((p) => (p.ip!.includes(':') ? `[${p.ip}]:${port}` : `${p.ip}:${port}`));
}

function podView(relay: SmtpRelay, p: KubeObject, adminPort: number): PodView {
  const name = p.metadata?.name ?? '';
  const startedRaw = p.metadata?.annotations?.[DRAIN_STARTED_ANNOTATION];
  return {
    name,
    ordinal: podOrdinal(names(relay.metadata.name).statefulSet, name),
    address: p.metadata?.deletionTimestamp ? undefined : podAdminAddress(p, adminPort),
    drainStartedAt: startedRaw ? Date.parse(startedRaw) : undefined,
  };
}

function statusTls(conds: Condition[] | undefined) {
  const c = findCondition(conds, 'TLSReady');
  return { ready: c?.status === 'True', reason: c?.reason ?? 'Unknown', message: c?.message ?? 'unknown' };
}

function stsView(sts: KubeObject) {
  const st = (sts.status ?? {}) as {
    replicas?: number;
    readyReplicas?: number;
    updatedReplicas?: number;
    observedGeneration?: number;
  };
  return {
    replicas: st.replicas,
    readyReplicas: st.readyReplicas,
    updatedReplicas: st.updatedReplicas,
    observedGeneration: st.observedGeneration,
    generation: sts.metadata?.generation,
    specReplicas: (sts.spec as { replicas?: number } | undefined)?.replicas,
  };
}
