/**
 * The one status writer of both controllers: server-side apply on the status subresource, only when the
 * computed status differs from the live one, remembered until the cache shows it, with Events for the
 * condition transitions the caller names.
 *
 * And what a reconcile that failed on the API leaves there: an API error it cannot get past (RBAC that
 * forbids a write, an object the server or a webhook rejects) becomes Degraded=True with the server's
 * reason and message, Ready=False unless the object was Ready (what runs keeps running), and one Warning
 * Event per new message. Conflicts and throttling are retried without a word: the next attempt succeeds.
 */
import { API_VERSION, type Condition } from '../api/common.js';
import type { OperatorContext } from './context.js';
import { findCondition, rfc3339, setConditions, type ConditionInput } from '../runtime/conditions.js';
import { hashObject } from '../runtime/diff.js';
import { recordTransitions } from '../runtime/events.js';
import { ApiError } from '../runtime/kube.js';
import { errorMessage } from '../runtime/logger.js';

export interface StatusOwner {
  apiVersion?: string;
  kind: 'SmtpRelay' | 'MailDomain';
  metadata: { name: string; namespace: string; generation?: number };
  status?: { conditions?: Condition[] };
}

export interface Transitions {
  types: readonly string[];
  isWarning: (c: Condition) => boolean;
  /** Whether a change from `before` to `after` is worth an Event (default: every change). */
  isNews?: (before: Condition | undefined, after: Condition) => boolean;
}

/** Applies `status` when it differs from the object's; records Events for transitions. Returns whether it wrote. */
export async function writeStatus(
  ctx: Pick<OperatorContext, 'api' | 'recent' | 'stores' | 'events'>,
  obj: StatusOwner,
  status: { conditions?: Condition[] },
  transitions?: Transitions,
): Promise<boolean> {
  if (hashObject(status) === hashObject(obj.status ?? {})) return false;
  const store = obj.kind === 'SmtpRelay' ? ctx.stores.relays : ctx.stores.domains;
  const base = store.get(obj.metadata.namespace, obj.metadata.name);
  const written = await ctx.api.apply(
    {
      apiVersion: API_VERSION,
      kind: obj.kind,
      metadata: { name: obj.metadata.name, namespace: obj.metadata.namespace },
      status,
    },
    'status',
  );
  ctx.recent.remember(written, base);
  if (transitions)
    recordTransitions(
      ctx.events,
      obj,
      obj.status?.conditions,
      status.conditions,
      transitions.types,
      transitions.isWarning,
      transitions.isNews,
    );
  return true;
}

/** The server's reason as a condition reason (CamelCase, letters and digits). */
const conditionReason = (reason: string) => reason.replace(/[^A-Za-z0-9]/g, '') || 'APIError';

/** An API error worth telling the user about (not a conflict or throttling, which the retry resolves). */
export function reportableApiError(e: unknown): e is ApiError {
  return e instanceof ApiError && e.statusCode !== 409 && e.statusCode !== 429;
}

/**
 * After a reconcile failed with `err`: Degraded (and Ready unless it was True) say so, with an Event when
 * the message is new. Never throws: the caller rethrows `err` for the backoff.
 */
export async function reportFailure(
  ctx: Pick<OperatorContext, 'api' | 'recent' | 'stores' | 'events' | 'clock' | 'log'>,
  obj: StatusOwner,
  err: unknown,
): Promise<void> {
  if (!reportableApiError(err)) return;
  const reason = conditionReason(err.reason);
  const message = `a request to the API server failed: ${errorMessage(err)}`.slice(0, 2048);
  const inputs: ConditionInput[] = [{ type: 'Degraded', status: 'True', reason, message }];
  if (findCondition(obj.status?.conditions, 'Ready')?.status !== 'True')
    inputs.push({ type: 'Ready', status: 'False', reason, message });
  const conditions = setConditions(
    obj.status?.conditions,
    inputs,
    obj.metadata.generation,
    rfc3339(ctx.clock.now()),
  );
  try {
    const wrote = await writeStatus(ctx, obj, { ...obj.status, conditions });
    if (wrote) ctx.events.record(obj, 'Warning', reason, message);
  } catch (e) {
    ctx.log.warn(
      { kind: obj.kind, name: obj.metadata.name, err: errorMessage(e) },
      'could not report a failed reconcile in status',
    );
  }
}

/**
 * How long a new object's status that is only on its way (a domain whose DNS is not looked up yet or whose
 * relay does not serve it yet; a new relay whose first rollout is under way) is held back: a burst then
 * writes each status once, settled, instead of a "waiting" status followed by the real one. Longer than
 * the relays' coalescing (COALESCE_MAX_MS in manager.ts).
 */
export const STATUS_GRACE_MS = 45_000;

/** Per controller: since when each object's transient status has been held back. */
export class StatusHold {
  private readonly since = new Map<string, number>();

  /** How long to keep holding `key`'s status back (ms); 0: write it now. */
  wait(key: string, transient: boolean, now: number): number {
    if (!transient) {
      this.since.delete(key);
      return 0;
    }
    const since = this.since.get(key) ?? now;
    this.since.set(key, since);
    return Math.max(0, since + STATUS_GRACE_MS - now);
  }

  forget(key: string): void {
    this.since.delete(key);
  }
}
