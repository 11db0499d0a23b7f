/**
 * Draining an SmtpRelay's pods before they go, and the finalizer that makes deletion wait for it: asks the
 * pods that must drain where they stand (GET /drain), plans the StatefulSet size (pure, scale.ts), starts
 * drains with the peers to hand mail to, restarts pods whose scale-down was reverted, and once a deleted
 * relay's pods are drained deletes their queue claims and releases the finalizer.
 */
import type { SmtpRelay } from '../api/smtprelay.js';
import { isAddressAllowed, type Network } from '../../relay/policy/network.js';
import { rfc3339 } from '../runtime/conditions.js';
import { API_VERSION } from '../api/common.js';
import type { KubeObject } from '../runtime/kube.js';
import { errorMessage } from '../runtime/logger.js';
import { Kinds } from '../runtime/resources.js';
import type { OperatorContext } from '../shared/context.js';
import { LABELS } from '../shared/labels.js';
import { podAdminAddress, type DrainClient } from './drain-client.js';
import {
  DRAIN_FINALIZER,
  DRAIN_STARTED_ANNOTATION,
  SKIP_DRAIN_ANNOTATION,
  names,
  podDnsName,
} from './names.js';
import { drainTargets, planScale, podOrdinal, type PodView, type ScalePlan } from './scale.js';

export interface DrainOptions {
  drain: DrainClient;
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

export class RelayDrains {
  constructor(
    private readonly ctx: OperatorContext,
    private readonly opts: DrainOptions,
  ) {}

  /** The relay's pods (ordinals of its StatefulSet), from the cache. */
  pods(relay: SmtpRelay): KubeObject[] {
    const sel = relay.metadata.name;
    return this.ctx.stores.pods
      .list(relay.metadata.namespace)
      .filter(
        (p) =>
          p.metadata?.labels?.[LABELS.instance] === sel &&
          podOrdinal(names(sel).statefulSet, p.metadata?.name ?? '') >= 0,
      );
  }

  /** Asks the pods that must drain where they stand, then plans the StatefulSet size. */
  async plan(
    relay: SmtpRelay,
    sts: KubeObject | undefined,
    pods: KubeObject[],
    token: string,
    deleting: boolean,
  ): Promise<ScalePlan> {
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
  async act(relay: SmtpRelay, plan: ScalePlan, pods: KubeObject[], token: string, now: number) {
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
          relay,
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
        relay,
        'Normal',
        'DrainCancelled',
        `restarting pod ${podName}: it was drained for a scale-down that was reverted`,
      );
      await ctx.api.delete(Kinds.Pod, namespace, podName);
    }
  }

  async ensureFinalizer(relay: SmtpRelay) {
    if (relay.metadata.finalizers?.includes(DRAIN_FINALIZER)) return;
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

  /**
   * A deleted relay whose pods are drained (or that skips the drain): drained queues are empty, so their
   * claims go too (the StatefulSet keeps them on deletion, so that a deletion that skips the drain, or
   * finds no StatefulSet, strands no mail); then the finalizer is released.
   */
  async release(relay: SmtpRelay, drainedSts: KubeObject | undefined, skipped: boolean) {
    if (drainedSts) await this.deleteQueueClaims(relay, drainedSts);
    this.ctx.events.record(
      relay,
      'Normal',
      'Deleted',
      skipped
        ? 'deleted without draining (skip-drain annotation); queue volumes are kept'
        : 'all pods drained; deleting them and their queue volumes',
    );
    await this.removeFinalizer(relay);
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
