/**
 * What reconcilers share, built once by the manager: the API client, informer caches, discovered optional
 * features, the event recorder, the clock, the logger, and the index of Secrets each object references;
 * and how both controllers apply an object (applyIfChanged) and read Secrets (SecretReader).
 */
import type { MailDomain } from '../api/maildomain.js';
import type { SmtpRelay } from '../api/smtprelay.js';
import type { Clock } from '../runtime/clock.js';
import type { EventRecorder } from '../runtime/events.js';
import type { Store } from '../runtime/informer.js';
import type { KubeApi, KubeObject } from '../runtime/kube.js';
import type { Logger } from '../runtime/logger.js';
import { withAppliedHash, needsApply } from '../runtime/diff.js';

export interface Stores {
  relays: Store<SmtpRelay>;
  domains: Store<MailDomain>;
  secrets: Store;
  configMaps: Store;
  services: Store;
  statefulSets: Store;
  pods: Store;
  pdbs: Store;
  serviceMonitors: Store;
  certificates: Store;
}

/** The store of an optional API that is not served (no ServiceMonitor or Certificate CRD). */
export const emptyStore: Store = { get: () => undefined, list: () => [] };

/** Optional APIs, discovered at start and re-checked periodically. */
export interface Features {
  serviceMonitors: boolean;
  certManager: boolean;
}

/**
 * Secrets referenced by an object (by key "ns/name"), so a change to a Secret the operator does not own
 * (a user's password, DKIM key, TLS Secret) re-queues the objects that read it, like a field index.
 */
export class ReferenceIndex {
  private readonly byOwner = new Map<string, Set<string>>();
  private readonly bySecret = new Map<string, Set<string>>();

  set(owner: string, secrets: Iterable<string>): void {
    this.delete(owner);
    const set = new Set(secrets);
    this.byOwner.set(owner, set);
    for (const s of set) {
      const owners = this.bySecret.get(s) ?? new Set<string>();
      owners.add(owner);
      this.bySecret.set(s, owners);
    }
  }

  delete(owner: string): void {
    for (const s of this.byOwner.get(owner) ?? []) {
      const owners = this.bySecret.get(s);
      owners?.delete(owner);
      if (owners && owners.size === 0) this.bySecret.delete(s);
    }
    this.byOwner.delete(owner);
  }

  owners(secretKey: string): string[] {
    return [...(this.bySecret.get(secretKey) ?? [])];
  }
}

/**
 * Objects the operator just wrote, as the API returned them, until the informer cache moves past the
 * version we wrote over (or 60 s pass). Reads prefer them, so a reconcile that runs before the watch event
 * arrives neither regenerates a password or key it has just stored nor writes the same status twice. If the
 * cache shows any other version (ours or someone else's newer one), the cache wins.
 */
export class RecentWrites {
  /** The written object is kept as the API returned it; resolve hands it out as the cache's type. */
  private readonly objs = new Map<string, { obj: unknown; baseRv: string | undefined; at: number }>();
  constructor(private readonly clock: Clock) {}

  /** `base` is the cached object the write was computed from (undefined when it did not exist). */
  remember(obj: KubeObject, base: Versioned | undefined): void {
    const k = recentKey(obj.kind, obj.metadata?.namespace, obj.metadata?.name);
    this.objs.set(k, { obj, baseRv: base?.metadata?.resourceVersion, at: this.clock.now() });
  }

  /** Our last write of the object while the cache still shows the version it replaced; else the cache. */
  resolve<T extends Versioned>(
    kind: string | undefined,
    cached: T | undefined,
    namespace: string,
    name: string,
  ): T | undefined {
    const k = recentKey(kind, namespace, name);
    const mine = this.objs.get(k);
    if (!mine) return cached;
    const stale = cached?.metadata?.resourceVersion === mine.baseRv;
    if (!stale || this.clock.now() - mine.at > 60_000) {
      this.objs.delete(k);
      return cached;
    }
    return mine.obj as T;
  }
}

/** Anything cached with a resourceVersion (a KubeObject, an SmtpRelay, a MailDomain). */
interface Versioned {
  metadata?: { resourceVersion?: string };
}

const recentKey = (kind: string | undefined, ns: string | undefined, name: string | undefined) =>
  `${kind ?? ''}/${ns ?? ''}/${name ?? ''}`;

export interface OperatorContext {
  api: KubeApi;
  recent: RecentWrites;
  stores: Stores;
  features: Features;
  events: EventRecorder;
  clock: Clock;
  log: Logger;
  /** Owner keys are "<Kind>:<ns>/<name>". */
  refs: ReferenceIndex;
}

/**
 * Server-side applies `desired` unless the live object already matches: the cache, or our own last write
 * while the cache has not caught up with it (so a reconcile that runs before the watch event does not
 * write the same object twice). Returns whether it wrote.
 */
export async function applyIfChanged(
  ctx: Pick<OperatorContext, 'api' | 'recent' | 'log'>,
  store: Store,
  desired: KubeObject,
): Promise<boolean> {
  const d = withAppliedHash(desired);
  const ns = desired.metadata?.namespace ?? '';
  const name = desired.metadata?.name ?? '';
  const cached = store.get(ns, name);
  const live = ctx.recent.resolve(desired.kind, cached, ns, name);
  if (!needsApply(d, live)) return false;
  ctx.log.debug({ kind: desired.kind, name, namespace: ns }, 'applying');
  ctx.recent.remember(await ctx.api.apply(d), cached);
  return true;
}

export type SecretData = Record<string, Buffer>;

/** A Secret's data, decoded. */
export function secretData(s: KubeObject | undefined): SecretData | undefined {
  if (!s) return undefined;
  const data = (s.data ?? {}) as Record<string, string>;
  return Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v, 'base64')]));
}

/** Reads Secrets from the cache and remembers which were read (for the ReferenceIndex). */
export class SecretReader {
  readonly read = new Set<string>();
  constructor(
    private readonly store: Store,
    readonly namespace: string,
    private readonly recent?: RecentWrites,
  ) {}

  get(name: string): SecretData | undefined {
    this.read.add(`${this.namespace}/${name}`);
    const cached = this.store.get(this.namespace, name);
    return secretData(this.recent ? this.recent.resolve('Secret', cached, this.namespace, name) : cached);
  }

  /** One key as text, or a problem saying what to fix. */
  key(name: string, key: string, what: string): { value: string } | { reason: string; message: string } {
    const s = this.get(name);
    if (!s)
      return {
        reason: 'SecretNotFound',
        message: `Secret ${name} (${what}) does not exist in namespace ${this.namespace}; create it`,
      };
    const v = s[key];
    if (v === undefined)
      return { reason: 'SecretKeyMissing', message: `Secret ${name} (${what}) has no key "${key}"; add it` };
    return { value: v.toString('utf8') };
  }
}

export const b64 = (s: string | Buffer) =>
  (typeof s === 'string' ? Buffer.from(s, 'utf8') : s).toString('base64');
