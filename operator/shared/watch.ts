/**
 * What both controllers' watches share: the informers the manager hands them, how a watch pokes its
 * controller (at once, or coalesced for bursts), owner lookups, and which changes of a MailDomain matter
 * (not its status). Each controller declares its own watches beside its reconcile.
 */
import type { MailDomain } from '../api/maildomain.js';
import type { SmtpRelay } from '../api/smtprelay.js';
import type { EventType, Handler, Store } from '../runtime/informer.js';
import { keyOf, type KubeObject } from '../runtime/kube.js';

/** An informer as a watch sees it: events of one kind. */
export interface Watchable<T = KubeObject> {
  on(handler: Handler<T>): void;
}

export interface Informers {
  relays: Watchable<SmtpRelay>;
  /** Watched, and listed for the domains a relay or another claim affects. */
  domains: Watchable<MailDomain> & Store<MailDomain>;
  pods: Watchable;
  secrets: Watchable;
  /** The other kinds the operator owns (ConfigMaps, Services, StatefulSets, PDBs). */
  owned: Watchable[];
}

/** How a watch pokes its controller. */
export interface Enqueue {
  now(key: string): void;
  /** Once a burst of these has been quiet for a moment (a relay's render of many domain changes). */
  coalesced(key: string): void;
}

/** "ns/name" of the object's controlling owner of `kind` (one of ours), if it has one. */
export function ownerKey(o: KubeObject, kind: 'SmtpRelay' | 'MailDomain'): string | undefined {
  const ref = o.metadata?.ownerReferences?.find(
    (r) => r.controller && r.apiVersion === 'mailfleet.dev/v1alpha1' && r.kind === kind,
  );
  return ref ? `${o.metadata?.namespace}/${ref.name}` : undefined;
}

/** What of a MailDomain the controllers react to. */
export interface DomainFacts {
  relay: string;
  domain: string;
  generation: number;
  deleting: boolean;
}

const factsOf = (d: MailDomain): DomainFacts => ({
  relay: d.spec?.relayRef?.name ?? '',
  domain: d.spec?.domain?.toLowerCase() ?? '',
  generation: d.metadata?.generation ?? 0,
  deleting: !!d.metadata?.deletionTimestamp,
});

const same = (a: DomainFacts, b: DomainFacts) =>
  a.relay === b.relay && a.domain === b.domain && a.generation === b.generation && a.deleting === b.deleting;

/**
 * Remembers what each MailDomain event showed, so a watch can tell a change that matters from a status-only
 * update (the operator's own status write) and knows the relay a domain was bound to before. Each watch
 * keeps its own: handlers of one informer run in the order they were added, so two sharing one would see
 * each other's updates.
 */
export class DomainFactsTracker {
  private readonly seen = new Map<string, DomainFacts>();

  /** The facts now and before; `changed` is false for an update that changed none of them. */
  observe(type: EventType, d: MailDomain): { now?: DomainFacts; before?: DomainFacts; changed: boolean } {
    const key = keyOf(d);
    const now = type === 'delete' ? undefined : factsOf(d);
    const before = this.seen.get(key);
    if (now) this.seen.set(key, now);
    else this.seen.delete(key);
    return { now, before, changed: !(now && before && same(now, before)) };
  }
}
