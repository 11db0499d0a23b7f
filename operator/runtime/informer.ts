/**
 * Informers: a local cache of one kind, kept current by list+watch (@kubernetes/client-node makeInformer),
 * over all namespaces or one informer per namespace in scope. A list or watch error stops a client-node
 * informer; here it is restarted with exponential backoff (1 s → 60 s), and the restart count is a metric.
 * `synced` turns true once every namespace's initial list is in the cache (readiness).
 */
import {
  makeInformer,
  type Informer,
  type KubeConfig,
  type KubernetesObject,
  type ObjectCache,
} from '@kubernetes/client-node';
import type { Clock } from './clock.js';
import type { KubeApi, KubeObject } from './kube.js';
import { errorMessage, type Logger } from './logger.js';
import { resourcePath, type ResourceType } from './resources.js';

export type EventType = 'add' | 'update' | 'delete';
export type Handler<T = KubeObject> = (type: EventType, obj: T) => void;

/** Read access to cached objects of one kind: what reconcilers use. */
export interface Store<T = KubeObject> {
  get(namespace: string, name: string): T | undefined;
  list(namespace?: string): T[];
}

interface Member {
  namespace?: string;
  informer: Informer<KubernetesObject> & ObjectCache<KubernetesObject>;
  synced: boolean;
  failures: number;
  /** Errors seen so far; start() resolves even when its list failed, so this tells whether it did. */
  errors: number;
  timer?: unknown;
}

/**
 * T is the kind's type (SmtpRelay, MailDomain; KubeObject for built-in kinds): the API server serves only
 * objects of `type`, which the CRD schema validated, so the cache's objects are typed here, once.
 */
export class ManagedInformer<T = KubeObject> implements Store<T> {
  private readonly members: Member[];
  private readonly handlers: Handler<T>[] = [];
  private readonly syncWaiters: Array<() => void> = [];
  private stopped = false;

  constructor(
    kc: KubeConfig,
    api: KubeApi,
    readonly type: ResourceType,
    namespaces: readonly string[] | undefined,
    private readonly log: Logger,
    private readonly clock: Clock,
    private readonly onRestart: () => void = () => {},
    labelSelector?: string,
  ) {
    const scopes =
      namespaces && type.namespaced ? namespaces.map((n) => n as string | undefined) : [undefined];
    this.members = scopes.map((namespace) => {
      const list = () => api.list(type, namespace, labelSelector) as never;
      const informer = makeInformer<KubernetesObject>(kc, resourcePath(type, namespace), list, labelSelector);
      const m: Member = { namespace, informer, synced: false, failures: 0, errors: 0 };
      informer.on('add', (o) => this.emit('add', o as T));
      informer.on('update', (o) => this.emit('update', o as T));
      informer.on('delete', (o) => this.emit('delete', o as T));
      informer.on('connect', () => {
        m.failures = 0;
      });
      informer.on('error', (err: unknown) => {
        m.errors++;
        this.restart(m, err);
      });
      return m;
    });
  }

  on(handler: Handler<T>): void {
    this.handlers.push(handler);
  }

  get synced(): boolean {
    return this.members.every((m) => m.synced);
  }

  async start(): Promise<void> {
    await Promise.all(this.members.map((m) => this.startMember(m)));
  }

  /**
   * Resolves once every member's initial list is in the cache (or the informer is stopped). Controllers
   * start only after this: reconciling against an empty cache would regenerate what already exists.
   */
  waitForSync(): Promise<void> {
    if (this.synced || this.stopped) return Promise.resolve();
    return new Promise((resolve) => this.syncWaiters.push(resolve));
  }

  private notifySync(): void {
    if (!this.synced && !this.stopped) return;
    for (const w of this.syncWaiters.splice(0)) w();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.notifySync();
    for (const m of this.members) if (m.timer !== undefined) this.clock.clearTimeout(m.timer);
    await Promise.all(this.members.map((m) => m.informer.stop()));
  }

  get(namespace: string, name: string): T | undefined {
    const m = this.members.find((x) => x.namespace === undefined || x.namespace === namespace);
    return m?.informer.get(name, namespace) as T | undefined;
  }

  list(namespace?: string): T[] {
    if (namespace === undefined) return this.members.flatMap((m) => m.informer.list() as T[]);
    const m = this.members.find((x) => x.namespace === undefined || x.namespace === namespace);
    return m ? (m.informer.list(namespace) as T[]) : [];
  }

  private emit(type: EventType, obj: T): void {
    for (const h of this.handlers) {
      try {
        h(type, obj);
      } catch (e) {
        this.log.error({ err: errorMessage(e), kind: this.type.kind }, 'informer handler failed');
      }
    }
  }

  private async startMember(m: Member): Promise<void> {
    const errorsBefore = m.errors;
    try {
      await m.informer.start();
      if (m.errors === errorsBefore) m.synced = true;
      this.notifySync();
    } catch (e) {
      this.restart(m, e);
    }
  }

  private restart(m: Member, err: unknown): void {
    if (this.stopped) return;
    const delay = Math.min(1000 * 2 ** m.failures, 60_000);
    m.failures++;
    this.onRestart();
    this.log.warn(
      { kind: this.type.kind, namespace: m.namespace ?? '*', err: errorMessage(err), retryInMs: delay },
      'informer failed; restarting',
    );
    if (m.timer !== undefined) this.clock.clearTimeout(m.timer);
    m.timer = this.clock.setTimeout(() => {
      m.timer = undefined;
      if (!this.stopped) void this.startMember(m);
    }, delay);
  }
}
