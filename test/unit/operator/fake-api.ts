/* eslint-disable @typescript-eslint/no-explicit-any -- merge patches are untyped JSON */
/**
 * An in-memory API server for reconcile tests: the seam is KubeApi plus the informer Stores. By default
 * the Stores read the same map (a cache that is always in sync); with `{ lagging: true }` they read a
 * snapshot that moves only on `sync()`, like informers whose watch events have not arrived yet. It counts
 * writes, so tests can assert that steady state makes none. Create answers 409 AlreadyExists and update 409
 * Conflict on a stale resourceVersion, as the API server does. Server-side apply is simplified: the
 * operator is the only writer, so an apply replaces the object (status apply replaces status;
 * metadata-only applies merge finalizers).
 */
import type { MailDomain } from '../../../operator/api/maildomain.js';
import type { SmtpRelay } from '../../../operator/api/smtprelay.js';
import type { Stores } from '../../../operator/shared/context.js';
import type { Store } from '../../../operator/runtime/informer.js';
import { ApiError, type KubeApi, type KubeList, type KubeObject } from '../../../operator/runtime/kube.js';
import { kindOf, type ResourceType } from '../../../operator/runtime/resources.js';

export class FakeApi implements KubeApi {
  readonly objects = new Map<string, KubeObject>();
  /** Writes the server carried out, in order. */
  writes: string[] = [];
  /** Creates and updates it refused with 409 (AlreadyExists, Conflict): they changed nothing. */
  refused: string[] = [];
  private rv = 100;
  private cache = new Map<string, KubeObject>();

  constructor(private readonly opts: { lagging?: boolean } = {}) {}

  /** Lagging mode: the watch events arrive; the Stores now show what the API holds. */
  sync(): void {
    this.cache = new Map([...this.objects].map(([k, v]) => [k, structuredClone(v)]));
  }

  private get view() {
    return this.opts.lagging ? this.cache : this.objects;
  }

  private key(kind: string | undefined, ns: string | undefined, name: string | undefined) {
    return `${kind}/${ns ?? ''}/${name ?? ''}`;
  }

  put(obj: KubeObject): KubeObject {
    const o = structuredClone(obj);
    o.metadata = { ...o.metadata, resourceVersion: String(++this.rv) };
    o.metadata.uid ??= `uid-${o.metadata.name}`;
    o.metadata.creationTimestamp ??= '2025-01-01T00:00:00Z';
    this.objects.set(this.key(o.kind, o.metadata.namespace, o.metadata.name), o);
    return o;
  }

  find(kind: string, ns: string, name: string) {
    return this.objects.get(this.key(kind, ns, name));
  }

  /** The informer cache of one kind; T is that kind's type, as the manager's informers have it. */
  store<T = KubeObject>(kind: string): Store<T> {
    return {
      get: (ns, name) => this.view.get(this.key(kind, ns, name)) as T | undefined,
      list: (ns) =>
        [...this.view.values()].filter(
          (o) => o.kind === kind && (ns === undefined || o.metadata?.namespace === ns),
        ) as T[],
    };
  }

  stores(): Stores {
    return {
      relays: this.store<SmtpRelay>('SmtpRelay'),
      domains: this.store<MailDomain>('MailDomain'),
      secrets: this.store('Secret'),
      configMaps: this.store('ConfigMap'),
      services: this.store('Service'),
      statefulSets: this.store('StatefulSet'),
      pods: this.store('Pod'),
      pdbs: this.store('PodDisruptionBudget'),
      serviceMonitors: this.store('ServiceMonitor'),
      certificates: this.store('Certificate'),
    };
  }

  list(t: ResourceType, namespace?: string): Promise<KubeList> {
    const items = [...this.objects.values()].filter(
      (o) => o.kind === t.kind && (namespace === undefined || o.metadata?.namespace === namespace),
    );
    return Promise.resolve({ items });
  }
  get(t: ResourceType, namespace: string | undefined, name: string) {
    return Promise.resolve(this.find(t.kind, namespace ?? '', name));
  }
  apply(obj: KubeObject, subresource?: 'status'): Promise<KubeObject> {
    this.writes.push(`apply${subresource ? '/' + subresource : ''} ${obj.kind} ${obj.metadata?.name}`);
    const live = this.find(obj.kind!, obj.metadata?.namespace ?? '', obj.metadata?.name ?? '');
    if (subresource === 'status') return Promise.resolve(this.put({ ...live!, status: obj.status }));
    const isMetaOnly = Object.keys(obj).every((k) => ['apiVersion', 'kind', 'metadata'].includes(k));
    if (isMetaOnly && live) {
      const finalizers = [
        ...new Set([...(live.metadata?.finalizers ?? []), ...(obj.metadata?.finalizers ?? [])]),
      ];
      return Promise.resolve(this.put({ ...live, metadata: { ...live.metadata, finalizers } }));
    }
    return Promise.resolve(this.put({ ...obj, ...(live?.status ? { status: live.status } : {}) }));
  }
  create(obj: KubeObject) {
    const what = `create ${obj.kind} ${obj.metadata?.name}`;
    if (this.find(obj.kind!, obj.metadata?.namespace ?? '', obj.metadata?.name ?? '')) {
      this.refused.push(what);
      return Promise.reject(new ApiError(409, 'AlreadyExists', `${obj.kind} ${obj.metadata?.name} exists`));
    }
    this.writes.push(what);
    return Promise.resolve(this.put(obj));
  }
  update(obj: KubeObject) {
    const what = `update ${obj.kind} ${obj.metadata?.name}`;
    const live = this.find(obj.kind!, obj.metadata?.namespace ?? '', obj.metadata?.name ?? '');
    if (!live || live.metadata?.resourceVersion !== obj.metadata?.resourceVersion) {
      this.refused.push(what);
      return Promise.reject(new ApiError(409, 'Conflict', `${obj.kind} ${obj.metadata?.name} changed`));
    }
    this.writes.push(what);
    return Promise.resolve(this.put(obj));
  }
  mergePatch(t: ResourceType, namespace: string, name: string, patch: any) {
    this.writes.push(`patch ${t.kind} ${name}`);
    const live = this.find(t.kind, namespace, name)!;
    const md = {
      ...live.metadata,
      ...patch.metadata,
      annotations: { ...live.metadata?.annotations, ...patch.metadata?.annotations },
    };
    if (patch.metadata && 'finalizers' in patch.metadata)
      md.finalizers = patch.metadata.finalizers ?? undefined;
    return Promise.resolve(this.put({ ...live, ...patch, metadata: md }));
  }
  delete(t: ResourceType, namespace: string, name: string) {
    this.writes.push(`delete ${t.kind} ${name}`);
    this.objects.delete(this.key(t.kind, namespace, name));
    return Promise.resolve();
  }
  discover() {
    return Promise.resolve(undefined);
  }
}

export const typeOf = (o: KubeObject) => kindOf(o.apiVersion, o.kind);
