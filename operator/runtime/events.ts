/**
 * Kubernetes Events for notable transitions (core/v1 Events, shown by kubectl describe), recorded the way
 * client-go's EventRecorder does (tools/record/events_cache.go), so a condition that flaps or an error that
 * repeats does not create an Event each time:
 * - the same Event (object, type, reason, message) seen again is one Event with `count` raised and
 *   `lastTimestamp` moved (a PATCH), not a new one;
 * - more than 10 Events of one object with the same reason but different messages within 10 minutes are
 *   combined into one "(combined from similar events): <latest message>" Event, counted the same way;
 * - a spam filter per object (burst 25, then one per 5 minutes) drops the rest.
 * The caches are bounded (4096 entries, least recently used out). Callers emit only on transitions, so
 * steady state writes none. A failure to record an Event is logged, never fatal.
 */
import type { Condition } from '../api/common.js';
import { findCondition, rfc3339 } from './conditions.js';
import type { Clock } from './clock.js';
import { isNotFound, type KubeApi, type KubeObject } from './kube.js';
import { errorMessage, type Logger } from './logger.js';
import type { PolicyRule } from './rbac.js';
import { Kinds } from './resources.js';

export const EVENTS_RBAC: PolicyRule[] = [
  { apiGroups: [''], resources: ['events'], verbs: ['create', 'patch'] },
];

export type EventKind = 'Normal' | 'Warning';

/** What an Event is about: any object with its identity (SmtpRelay and MailDomain are, without casts). */
export interface EventSubject {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string; uid?: string; resourceVersion?: string };
}

export interface EventRecorder {
  record(obj: EventSubject, type: EventKind, reason: string, message: string): void;
}

/** client-go's defaults. */
const CACHE_SIZE = 4096;
const AGGREGATE_MAX_EVENTS = 10;
const AGGREGATE_WINDOW_MS = 10 * 60_000;
const SPAM_BURST = 25;
const SPAM_REFILL_MS = 5 * 60_000;

/** A Map that forgets its least recently used entries beyond `size`. */
class Lru<V> {
  private readonly m = new Map<string, V>();
  constructor(private readonly size: number) {}
  get(k: string): V | undefined {
    const v = this.m.get(k);
    if (v !== undefined) {
      this.m.delete(k);
      this.m.set(k, v);
    }
    return v;
  }
  set(k: string, v: V): void {
    this.m.delete(k);
    this.m.set(k, v);
    if (this.m.size > this.size) this.m.delete(this.m.keys().next().value!);
  }
}

interface Logged {
  name: string;
  namespace: string;
  count: number;
  firstTimestamp: string;
  /** The write of this Event in flight (the next one of the same key waits for it). */
  pending: Promise<void>;
}

export class ApiEventRecorder implements EventRecorder {
  private seq = 0;
  private readonly logged = new Lru<Logged>(CACHE_SIZE);
  private readonly similar = new Lru<{ messages: Set<string>; since: number }>(CACHE_SIZE);
  private readonly spam = new Lru<{ tokens: number; at: number }>(CACHE_SIZE);

  constructor(
    private readonly api: KubeApi,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly component = 'mailfleet-operator',
  ) {}

  record(obj: EventSubject, type: EventKind, reason: string, message: string): void {
    const md = obj.metadata ?? {};
    const objKey = [obj.apiVersion, obj.kind, md.namespace, md.name, md.uid].join('/');
    const now = this.clock.now();
    if (!this.allow(objKey, now)) return;
    const similarKey = `${objKey}/${type}/${reason}`;
    const { msg, combined } = this.aggregate(similarKey, message.slice(0, 1024), now);
    // A combined Event is one per similar key, whatever its latest message (as in client-go).
    const key = combined ? `${similarKey}/(combined)` : `${similarKey}/${msg}`;
    const prev = this.logged.get(key);
    const ts = rfc3339(now);
    if (prev) {
      prev.count++;
      const count = prev.count;
      prev.pending = prev.pending.then(() => this.bump(prev, count, ts, obj, type, reason, msg));
      return;
    }
    const entry: Logged = {
      name: `${md.name ?? 'object'}.${now.toString(16)}${(this.seq++).toString(16)}`,
      namespace: md.namespace ?? 'default',
      count: 1,
      firstTimestamp: ts,
      pending: Promise.resolve(),
    };
    entry.pending = this.create(entry, ts, obj, type, reason, msg);
    this.logged.set(key, entry);
  }

  /** The spam filter: a token bucket per object. */
  private allow(objKey: string, now: number): boolean {
    const b = this.spam.get(objKey) ?? { tokens: SPAM_BURST, at: now };
    b.tokens = Math.min(SPAM_BURST, b.tokens + (now - b.at) / SPAM_REFILL_MS);
    b.at = now;
    const ok = b.tokens >= 1;
    if (ok) b.tokens -= 1;
    this.spam.set(objKey, b);
    return ok;
  }

  /** The message to record: the message itself, or the combined form once similar ones pile up. */
  private aggregate(similarKey: string, message: string, now: number): { msg: string; combined: boolean } {
    let rec = this.similar.get(similarKey);
    if (!rec || now - rec.since > AGGREGATE_WINDOW_MS) rec = { messages: new Set(), since: now };
    rec.messages.add(message);
    this.similar.set(similarKey, rec);
    return rec.messages.size > AGGREGATE_MAX_EVENTS
      ? { msg: `(combined from similar events): ${message}`, combined: true }
      : { msg: message, combined: false };
  }

  private event(e: Logged, ts: string, obj: EventSubject, type: EventKind, reason: string, message: string) {
    const md = obj.metadata ?? {};
    return {
      apiVersion: 'v1',
      kind: 'Event',
      metadata: { name: e.name, namespace: e.namespace },
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
      message,
      source: { component: this.component },
      reportingComponent: this.component,
      reportingInstance: this.component,
      firstTimestamp: e.firstTimestamp,
      lastTimestamp: ts,
      count: e.count,
    } satisfies KubeObject;
  }

  private async create(
    e: Logged,
    ts: string,
    obj: EventSubject,
    type: EventKind,
    reason: string,
    msg: string,
  ) {
    try {
      await this.api.create(this.event(e, ts, obj, type, reason, msg));
    } catch (err) {
      this.log.warn({ err: errorMessage(err), reason }, 'could not record event');
    }
  }

  private async bump(
    e: Logged,
    count: number,
    ts: string,
    obj: EventSubject,
    type: EventKind,
    reason: string,
    msg: string,
  ) {
    try {
      await this.api.mergePatch(Kinds.Event, e.namespace, e.name, { count, lastTimestamp: ts, message: msg });
    } catch (err) {
      // Events expire (the API server's --event-ttl, 1 h by default): start a new one.
      if (!isNotFound(err)) {
        this.log.warn({ err: errorMessage(err), reason }, 'could not record event');
        return;
      }
      e.name = `${obj.metadata?.name ?? 'object'}.${this.clock.now().toString(16)}${(this.seq++).toString(16)}`;
      e.firstTimestamp = ts;
      await this.create(e, ts, obj, type, reason, msg);
    }
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
  obj: EventSubject,
  before: readonly Condition[] | undefined,
  after: readonly Condition[] | undefined,
  types: readonly string[],
  isWarning: (c: Condition) => boolean,
  isNews: (before: Condition | undefined, after: Condition) => boolean = () => true,
): void {
  for (const type of types) {
    const b = findCondition(before, type);
    const a = findCondition(after, type);
    if (!a || (b && b.status === a.status)) continue;
    if (!b && !isWarning(a) && !(type === 'Ready' && a.status === 'True')) continue;
    if (!isNews(b, a)) continue;
    events.record(obj, isWarning(a) ? 'Warning' : 'Normal', a.reason, `${type}=${a.status}: ${a.message}`);
  }
}
