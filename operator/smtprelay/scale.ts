/**
 * Drain-before-shrink (pure). Given the desired replicas, the StatefulSet's current replicas and what each
 * pod's drain endpoint said, decide the StatefulSet replicas to apply and which drains to start.
 *
 * Invariants:
 * - the StatefulSet never shrinks while a pod that would be removed has not reported "drained" with an
 *   empty queue — an unreachable pod, a failed request or mail left behind all keep it;
 * - pods are removed only from the top ordinals (StatefulSet order), so the pods to drain are those with
 *   ordinal >= desired; they hand mail to the pods that stay (their stable DNS names);
 * - deletion of the SmtpRelay drains every pod, without peers (they deliver what they hold);
 * - a pod that stays but was told to drain earlier (the scale-down was reverted) is restarted, which brings
 *   it back to accepting mail;
 * - a pod whose drain loop failed (it reports "failed" and why) is named in Degraded with its cause and
 *   asked to drain again (with backoff: a plan with problems is retried as an error would be).
 */
import type { DrainStatus } from './drain-client.js';

export interface PodView {
  name: string;
  ordinal: number;
  /** Admin address, undefined when the pod has no IP (not running). */
  address?: string;
  /** Drain start time from our annotation (ms), when the operator asked this pod to drain. */
  drainStartedAt?: number;
  /** Result of GET /drain, or the error message of a failed request; undefined when not asked. */
  drain?: DrainStatus | { error: string };
}

export interface ScaleInput {
  desired: number;
  /** The StatefulSet's spec.replicas, undefined when it does not exist yet. */
  current: number | undefined;
  deleting: boolean;
  pods: readonly PodView[];
  nowMs: number;
  drainTimeoutMs: number;
  /** The user opted out of draining (mailfleet.dev/skip-drain): shrink at once. */
  skipDrain?: boolean;
  /** StatefulSet name, to name pods that do not exist. */
  statefulSetName?: string;
}

export interface ScalePlan {
  statefulSetReplicas: number;
  /** Pods to POST /drain now. */
  startDrain: string[];
  /** Pods being drained (for status). */
  draining: string[];
  /** Pods to delete so they restart accepting mail. */
  restart: string[];
  /** Drain finished for every pod that had to drain (deletion may proceed). */
  drained: boolean;
  /** Problems: reason + message, for Degraded. */
  problems: Array<{ reason: string; message: string }>;
  /** Whether to poll again soon (drain in progress). */
  waiting: boolean;
}

const isError = (d: PodView['drain']): d is { error: string } => !!d && !('state' in d);

/** Ordinal of a StatefulSet pod name (<sts>-<n>), or -1. */
export function podOrdinal(stsName: string, podName: string): number {
  if (!podName.startsWith(`${stsName}-`)) return -1;
  const n = Number(podName.slice(stsName.length + 1));
  return Number.isInteger(n) && n >= 0 ? n : -1;
}

/** The ordinals that must be drained. */
export function drainTargets(input: Pick<ScaleInput, 'desired' | 'current' | 'deleting' | 'skipDrain'>): {
  from: number;
  to: number;
} {
  const current = input.current ?? 0;
  if (input.skipDrain) return { from: current, to: current };
  if (input.deleting) return { from: 0, to: current };
  return input.desired < current ? { from: input.desired, to: current } : { from: current, to: current };
}

export function planScale(input: ScaleInput): ScalePlan {
  const current = input.current;
  const plan: ScalePlan = {
    statefulSetReplicas: input.desired,
    startDrain: [],
    draining: [],
    restart: [],
    drained: true,
    problems: [],
    waiting: false,
  };
  const { from, to } = drainTargets(input);
  const byOrdinal = new Map(input.pods.map((p) => [p.ordinal, p]));
  for (const p of input.pods) {
    if (p.ordinal < from && p.drainStartedAt !== undefined && !input.deleting) plan.restart.push(p.name);
  }
  if (to <= from || current === undefined) return plan;
  for (let ord = from; ord < to; ord++) {
    const name = input.statefulSetName ? `${input.statefulSetName}-${ord}` : `ordinal ${ord}`;
    assessPod(plan, byOrdinal.get(ord), name, input.nowMs, input.drainTimeoutMs);
  }
  plan.draining.sort();
  if (!plan.drained) plan.statefulSetReplicas = current;
  // Every pod reported drained: this reconcile shrinks the StatefulSet, the drain is over.
  else plan.draining = [];
  return plan;
}

/** Folds one pod that must drain into the plan. */
function assessPod(
  plan: ScalePlan,
  pod: PodView | undefined,
  label: string,
  nowMs: number,
  timeoutMs: number,
): void {
  plan.draining.push(label);
  if (!pod || !pod.address) {
    plan.drained = false;
    plan.problems.push({
      reason: 'DrainPodUnreachable',
      message: `pod ${label} must be drained but is not running; waiting for it to come back so its queue can be emptied`,
    });
    return;
  }
  const d = pod.drain;
  if (isError(d)) {
    plan.drained = false;
    plan.problems.push({ reason: 'DrainFailed', message: `draining pod ${pod.name} failed: ${d.error}` });
    return;
  }
  if (!d || d.state === 'idle') {
    plan.drained = false;
    plan.waiting = true;
    plan.startDrain.push(pod.name);
    return;
  }
  if (d.state === 'failed') {
    plan.drained = false;
    plan.startDrain.push(pod.name);
    plan.problems.push({
      reason: 'DrainFailed',
      message: `pod ${pod.name} reports that its drain failed: ${d.error ?? 'no cause given'} (${d.queued} message(s) queued); asking it to drain again`,
    });
    return;
  }
  if (d.state === 'drained' && d.queued === 0) return;
  plan.drained = false;
  plan.waiting = true;
  // Drained but mail remains (peers refused it): ask again; the relay retries the handoff.
  if (d.state === 'drained') plan.startDrain.push(pod.name);
  const started = pod.drainStartedAt;
  if (started !== undefined && nowMs - started > timeoutMs) {
    plan.problems.push({
      reason: 'DrainStuck',
      message: `pod ${pod.name} still holds ${d.queued} queued message(s) after ${Math.round((nowMs - started) / 1000)}s of draining; the pod is kept until its queue is empty`,
    });
  }
}
