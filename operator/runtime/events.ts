/**
 * Kubernetes Events for notable transitions (core/v1 Events, shown by kubectl describe). Callers emit only
 * on transitions, so steady state writes none. A failure to record an Event is logged, never fatal.
 */
import type { Condition } from '../api/common.js';
import { findCondition, rfc3339 } from './conditions.js';
import type { Clock } from './clock.js';
import type { KubeApi, KubeObject } from './kube.js';
import { errorMessage, type Logger } from './logger.js';
import type { PolicyRule } from './rbac.js';

export const EVENTS_RBAC: PolicyRule[] = [
  { apiGroups: [''], resources: ['events'], verbs: ['create', 'patch'] },
];

export type EventKind = 'Normal' | 'Warning';

export interface EventRecorder {
  record(obj: KubeObject, type: EventKind, reason: string, message: string): void;
}

export class ApiEventRecorder implements EventRecorder {
  private seq = 0;
  constructor(
    private readonly api: KubeApi,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly component = 'mailfleet-operator',
  ) {}

  record(obj: KubeObject, type: EventKind, reason: string, message: string): void {
    const md = obj.metadata ?? {};
    const now = rfc3339(this.clock.now());
    const event: KubeObject = {
      apiVersion: 'v1',
      kind: 'Event',
      metadata: {
        name: `${md.name ?? 'object'}.${this.clock.now().toString(16)}${(this.seq++).toString(16)}`,
        namespace: md.namespace ?? 'default',
      },
      involvedObject: {
        apiVersion: obj.apiVersion,
        kind: obj.kind,
        name: md.name,
        namespace: md.namespace,
        uid: md.uid,
        resourceVersion: md.resourceVersion,
      },
      type,
      reason,
      message: message.slice(0, 1024),
      source: { component: this.component },
      reportingComponent: this.component,
      reportingInstance: this.component,
      firstTimestamp: now,
      lastTimestamp: now,
      count: 1,
    };
    this.api
      .create(event)
      .catch((e: unknown) => this.log.warn({ err: errorMessage(e), reason }, 'could not record event'));
  }
}

export const noEvents: EventRecorder = { record() {} };

/**
 * Events for condition transitions between two status versions: a change of status, or a condition that
 * appears as a problem (Degraded=True, Ready=True is news too). A condition that first appears in a normal
 * state records nothing, so creating an object does not flood `kubectl describe`.
 */
export function recordTransitions(
  events: EventRecorder,
  obj: KubeObject,
  before: readonly Condition[] | undefined,
  after: readonly Condition[] | undefined,
  types: readonly string[],
  isWarning: (c: Condition) => boolean,
): void {
  for (const type of types) {
    const b = findCondition(before, type);
    const a = findCondition(after, type);
    if (!a || (b && b.status === a.status)) continue;
    if (!b && !isWarning(a) && !(type === 'Ready' && a.status === 'True')) continue;
    events.record(obj, isWarning(a) ? 'Warning' : 'Normal', a.reason, `${type}=${a.status}: ${a.message}`);
  }
}
