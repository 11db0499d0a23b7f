/**
 * SmtpRelay status (pure): conditions with reason and message from what the reconcile found, plus the
 * observed fields. Built so that an unchanged world yields a deep-equal status (no patch).
 */
import type { Condition } from '../api/common.js';
import type { SmtpRelay, SmtpRelayStatus } from '../api/smtprelay.js';
import { findCondition, setConditions, type ConditionInput } from '../runtime/conditions.js';
import type { KubeObject } from '../runtime/kube.js';
import type { Transitions } from '../shared/status.js';
import type { PodFleetAnswer } from './fleet.js';
import { names, selectorString, serviceHost } from './names.js';
import { listenerPorts } from './render.js';

export interface Problem {
  reason: string;
  message: string;
}

export interface StatusInput {
  relay: SmtpRelay;
  nowIso: string;
  /** Problems that stop the operator from rolling out the spec (bad input). */
  blocking: Problem[];
  /** Problems that do not stop the rollout (a drain that cannot finish, ignored storage change). */
  degraded: Problem[];
  tls: { ready: boolean; reason: string; message: string };
  statefulSet?: {
    replicas?: number;
    readyReplicas?: number;
    updatedReplicas?: number;
    observedGeneration?: number;
    generation?: number;
    specReplicas?: number;
  };
  draining: string[];
  deleting: boolean;
  domains: string[];
  caSecret?: string;
  /** The FleetStore condition (fleetStoreCondition); undefined keeps the one in status (a deletion asks no pod). */
  fleetStore?: ConditionInput;
}

function rollout(input: StatusInput): { done: boolean; message: string } {
  const sts = input.statefulSet;
  const want = input.relay.spec.replicas;
  if (!sts) return { done: false, message: 'the StatefulSet is being created' };
  if ((sts.observedGeneration ?? 0) < (sts.generation ?? 0))
    return { done: false, message: 'the StatefulSet controller has not yet seen the latest spec' };
  const ready = sts.readyReplicas ?? 0;
  const updated = sts.updatedReplicas ?? 0;
  if ((sts.specReplicas ?? want) !== want)
    return { done: false, message: `scaling from ${sts.specReplicas ?? 0} to ${want} pods` };
  if (updated < want)
    return { done: false, message: `${updated} of ${want} pods run the current pod template` };
  if (ready < want) return { done: false, message: `${ready} of ${want} pods are ready` };
  return { done: true, message: `${ready} of ${want} pods are ready` };
}

export function evaluateConditions(input: StatusInput): ConditionInput[] {
  const r = rollout(input);
  const draining = input.draining.length > 0;
  const first = input.blocking[0];
  const degraded = [...input.blocking, ...input.degraded];
  const ready: ConditionInput = first
    ? { type: 'Ready', status: 'False', reason: first.reason, message: first.message }
    : input.deleting
      ? {
          type: 'Ready',
          status: 'False',
          reason: 'Deleting',
          message: 'the relay is being deleted; pods are drained first',
        }
      : draining
        ? {
            type: 'Ready',
            status: 'False',
            reason: 'Draining',
            message: `draining ${input.draining.join(', ')} before scale-down`,
          }
        : r.done
          ? { type: 'Ready', status: 'True', reason: 'Ready', message: r.message }
          : { type: 'Ready', status: 'False', reason: 'RolloutInProgress', message: r.message };
  return [
    ready,
    first || r.done
      ? {
          type: 'Progressing',
          status: 'False',
          reason: first ? 'Blocked' : 'RolloutComplete',
          message: first ? 'waiting for the problem in Degraded to be fixed' : r.message,
        }
      : {
          type: 'Progressing',
          status: 'True',
          reason: draining ? 'Draining' : 'RolloutInProgress',
          message: r.message,
        },
    degraded.length
      ? {
          type: 'Degraded',
          status: 'True',
          reason: degraded[0]!.reason,
          message: degraded.map((p) => p.message).join('; '),
        }
      : { type: 'Degraded', status: 'False', reason: 'AsExpected', message: 'no problems found' },
    {
      type: 'TLSReady',
      status: input.tls.ready ? 'True' : 'False',
      reason: input.tls.reason,
      message: input.tls.message,
    },
    draining
      ? {
          type: 'Draining',
          status: 'True',
          reason: input.deleting ? 'Deletion' : 'ScaleDown',
          message: `draining pods ${input.draining.join(', ')}: they accept no new mail and hand their queue to ${input.deleting ? 'its destinations' : 'the remaining pods'}`,
        }
      : { type: 'Draining', status: 'False', reason: 'NotDraining', message: 'no pod is being drained' },
    ...(input.fleetStore ? [input.fleetStore] : []),
  ];
}

/** Pods named in a message: the first few, then how many more (a message stays short at 1000 pods). */
const MAX_NAMED_PODS = 5;
function podList(pods: readonly string[]): string {
  const named = pods.slice(0, MAX_NAMED_PODS).join(', ');
  return pods.length > MAX_NAMED_PODS ? `${named} and ${pods.length - MAX_NAMED_PODS} more` : named;
}
/** "2 of 3 ready pods (mail-0, mail-1)". */
const someOf = (pods: readonly PodFleetAnswer[], of: number) =>
  `${pods.length} of ${of} ready pods (${podList(pods.map((a) => a.pod))})`;

/** The store's address for messages: the URL (the API forbids credentials in it; stripped all the same). */
function storeName(url: string): string {
  return url.replace(/^(rediss?:\/\/)[^@/]*@/, '$1');
}

/**
 * The FleetStore condition from the ready pods' answers to GET /fleet (in ordinal order). Degraded (a
 * ready pod decides alone because the store is down or slow) is False; it leaves Ready and Degraded alone,
 * since mail keeps flowing. A pod that could not be asked (no IP, HTTP error, timeout) is named but does
 * not change what the pods that answered say, so one transient error does not flip the fleet; when no pod
 * answers, the state is Unknown (NoAnswer): the operator cannot tell, which is not the store's fault. Pods
 * still on a config without the store (answering per_pod) are Pending: the config reload is on its way.
 * Messages carry no timestamps or counters that move by themselves, so a steady fleet writes nothing.
 */
export function fleetStoreCondition(
  relay: SmtpRelay,
  answers: readonly PodFleetAnswer[] | undefined,
): ConditionInput {
  const type = 'FleetStore';
  const fs = relay.spec.fleetStore;
  if (!fs)
    return {
      type,
      status: 'False',
      reason: 'PerPod',
      message: 'no fleetStore: each pod enforces its rate limits, shaping and suppression list alone',
    };
  const store = storeName(fs.url);
  const list = answers ?? [];
  if (list.length === 0)
    return {
      type,
      status: 'Unknown',
      reason: 'Pending',
      message: `no ready pod yet to ask whether it reaches the fleet store at ${store}`,
    };
  const degraded = list.filter((a) => a.answer?.state === 'degraded');
  const perPod = list.filter((a) => a.answer?.state === 'per_pod');
  const shared = list.filter((a) => a.answer?.state === 'shared');
  const unasked = list.filter((a) => !a.answer);
  const notes = [
    ...(perPod.length && degraded.length
      ? [`${podList(perPod.map((a) => a.pod))} not yet on a config with the store`]
      : []),
    ...(unasked.length && unasked.length < list.length
      ? [`could not ask ${podList(unasked.map((a) => a.pod))}: ${unasked[0]!.error}`]
      : []),
  ];
  const tail = notes.length ? `; ${notes.join('; ')}` : '';
  if (degraded.length)
    return {
      type,
      status: 'False',
      reason: 'Degraded',
      message: `${someOf(degraded, list.length)} cannot use the fleet store at ${store} and enforce rate limits, shaping and the suppression list alone: ${degraded[0]!.answer!.error ?? 'no cause given'}${tail}`,
    };
  if (perPod.length)
    return {
      type,
      status: 'Unknown',
      reason: 'Pending',
      message: `${someOf(perPod, list.length)} still decide alone: their config does not name the fleet store at ${store} yet${tail}`,
    };
  if (shared.length)
    return {
      type,
      status: 'True',
      reason: 'Shared',
      message: `${shared.length} of ${list.length} ready pods share rate limits, shaping and the suppression list through ${store}${tail}`,
    };
  return {
    type,
    status: 'Unknown',
    reason: 'NoAnswer',
    message: `no ready pod answered GET /fleet (${podList(unasked.map((a) => a.pod))}): ${unasked[0]!.error}`,
  };
}

/**
 * The Event for a FleetStore change, beside RELAY_TRANSITIONS (which keys Events on status changes, and
 * PerPod to Degraded is False to False): a Warning when the fleet becomes degraded, Normal when it shares
 * again. Message changes while degraded are in status only.
 */
export function fleetStoreEvent(
  before: Condition | undefined,
  after: Condition | undefined,
): { type: 'Normal' | 'Warning'; reason: string; message: string } | undefined {
  if (!after || before?.reason === after.reason) return undefined;
  if (after.reason === 'Degraded')
    return { type: 'Warning', reason: 'FleetStoreDegraded', message: after.message };
  if (before?.reason === 'Degraded' && after.reason === 'Shared')
    return { type: 'Normal', reason: 'FleetStoreShared', message: after.message };
  return undefined;
}

export function computeStatus(input: StatusInput, previous: SmtpRelayStatus | undefined): SmtpRelayStatus {
  const { relay } = input;
  const conditions: Condition[] = setConditions(
    previous?.conditions,
    evaluateConditions(input),
    relay.metadata.generation,
    input.nowIso,
  );
  return {
    observedGeneration: relay.metadata.generation ?? 0,
    conditions,
    replicas: input.statefulSet?.replicas ?? 0,
    readyReplicas: input.statefulSet?.readyReplicas ?? 0,
    selector: selectorString(relay),
    endpoints: {
      host: serviceHost(relay),
      ports: listenerPorts(relay).map((p) => ({ name: p.name, port: p.port })),
    },
    domains: [...input.domains].sort(),
    credentialsSecret: names(relay.metadata.name).credentials,
    ...(input.caSecret ? { caSecret: input.caSecret } : {}),
    ...(input.draining.length ? { drainingPods: [...input.draining] } : {}),
  };
}

/** Which condition changes of an SmtpRelay are Events, and which of those are warnings. */
export const RELAY_TRANSITIONS: Transitions = {
  types: ['Ready', 'Degraded', 'Draining'],
  isWarning: (c) =>
    (c.type === 'Degraded' && c.status === 'True') ||
    (c.type === 'Ready' &&
      c.status === 'False' &&
      c.reason !== 'RolloutInProgress' &&
      c.reason !== 'Draining'),
  // A rollout that completes (a new relay's first, a scale or spec change) is in status, not worth an
  // Event each; Ready again after a problem is.
  isNews: (before, after) =>
    !(
      after.type === 'Ready' &&
      after.status === 'True' &&
      (!before || before.reason === 'RolloutInProgress')
    ),
};

/** TLS as the last status said (a deleted relay's reconcile gathers no material). */
export function statusTls(conds: Condition[] | undefined): StatusInput['tls'] {
  const c = findCondition(conds, 'TLSReady');
  return { ready: c?.status === 'True', reason: c?.reason ?? 'Unknown', message: c?.message ?? 'unknown' };
}

/** What status reads of the StatefulSet. */
export function stsView(sts: KubeObject): NonNullable<StatusInput['statefulSet']> {
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
