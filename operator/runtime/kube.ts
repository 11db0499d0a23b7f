/**
 * The operator's Kubernetes API client: raw JSON over HTTPS with the kubeconfig's credentials (the same
 * fetch and TLS dispatcher @kubernetes/client-node's Watch uses), so objects in caches, in renders and on
 * the wire have one shape. `KubeApi` is the seam unit tests fake.
 *
 * Every write is server-side apply with fieldManager "mailfleet" and force, except Lease updates
 * (optimistic concurrency on resourceVersion), Events (create) and pod annotation merges.
 */
import { HttpMethod, RequestContext, type KubeConfig } from '@kubernetes/client-node';
import { fetch, type Dispatcher } from 'undici';
import { FIELD_MANAGER } from '../api/common.js';
import { kindOf, resourcePath, type ResourceType } from './resources.js';

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: {
    name?: string;
    namespace?: string;
    uid?: string;
    resourceVersion?: string;
    generation?: number;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    ownerReferences?: Array<{
      apiVersion: string;
      kind: string;
      name: string;
      uid: string;
      controller?: boolean;
      blockOwnerDeletion?: boolean;
    }>;
    deletionTimestamp?: string;
    creationTimestamp?: string;
    finalizers?: string[];
  };
  [k: string]: unknown;
}

export interface KubeList {
  items: KubeObject[];
  metadata?: { resourceVersion?: string; continue?: string };
}

export class ApiError extends Error {
  constructor(
    readonly statusCode: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export const isNotFound = (e: unknown) => e instanceof ApiError && e.statusCode === 404;
export const isConflict = (e: unknown) => e instanceof ApiError && e.statusCode === 409;

export interface KubeApi {
  list(t: ResourceType, namespace?: string, labelSelector?: string): Promise<KubeList>;
  get(t: ResourceType, namespace: string | undefined, name: string): Promise<KubeObject | undefined>;
  /** Server-side apply (fieldManager "mailfleet", force). */
  apply(obj: KubeObject, subresource?: 'status'): Promise<KubeObject>;
  create(obj: KubeObject): Promise<KubeObject>;
  /** PUT with the object's resourceVersion (optimistic concurrency). */
  update(obj: KubeObject): Promise<KubeObject>;
  mergePatch(t: ResourceType, namespace: string, name: string, patch: unknown): Promise<KubeObject>;
  delete(t: ResourceType, namespace: string, name: string, preconditionUid?: string): Promise<void>;
  /** Resource plurals served under an API group version, or undefined when the group version is not served. */
  discover(groupVersion: string): Promise<string[] | undefined>;
}

/** Counts requests for rest_client_requests_total. */
export type RequestObserver = (method: string, code: string) => void;

/** How long one connection pool to the API server is used before a fresh one picks up rotated TLS material. */
const DISPATCHER_LIFETIME_MS = 5 * 60_000;

export class RestKubeApi implements KubeApi {
  /**
   * client-node builds a new dispatcher (a connection pool) for every request it authenticates: a new TLS
   * connection per request, which at 2 s Lease renewals alone cost more CPU than an idle operator should.
   * One pool is kept and replaced every few minutes instead; the old one finishes what it carries.
   */
  private dispatcher?: { value: Dispatcher; until: number };

  constructor(
    private readonly kc: KubeConfig,
    private readonly observe: RequestObserver = () => {},
    private readonly timeoutMs = 30_000,
    private readonly now: () => number = Date.now,
  ) {}

  private pool(fresh: Dispatcher | undefined): Dispatcher | undefined {
    const cur = this.dispatcher;
    if (cur && cur.until > this.now()) {
      if (fresh && fresh !== cur.value) void fresh.close().catch(() => {});
      return cur.value;
    }
    if (!fresh) return undefined;
    if (cur) void cur.value.close().catch(() => {});
    this.dispatcher = { value: fresh, until: this.now() + DISPATCHER_LIFETIME_MS };
    return fresh;
  }

  async list(t: ResourceType, namespace?: string, labelSelector?: string): Promise<KubeList> {
    const items: KubeObject[] = [];
    let cont: string | undefined;
    let rv: string | undefined;
    // Paginated: bounded by the server's continue tokens; 10k pages of 500 is far beyond any fleet.
    for (let page = 0; page < 10_000; page++) {
      const q = new URLSearchParams({ limit: '500' });
      if (labelSelector) q.set('labelSelector', labelSelector);
      if (cont) q.set('continue', cont);
      const list = (await this.request('GET', `${resourcePath(t, namespace)}?${q.toString()}`)) as KubeList;
      for (const item of list.items ?? []) items.push({ apiVersion: apiVersion(t), kind: t.kind, ...item });
      rv = list.metadata?.resourceVersion;
      cont = list.metadata?.continue;
      if (!cont) break;
    }
    return { items, metadata: { resourceVersion: rv } };
  }

  async get(t: ResourceType, namespace: string | undefined, name: string): Promise<KubeObject | undefined> {
    try {
      return (await this.request('GET', resourcePath(t, namespace, name))) as KubeObject;
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
  }

  async apply(obj: KubeObject, subresource?: 'status'): Promise<KubeObject> {
    const t = typeOf(obj);
    const q = new URLSearchParams({ fieldManager: FIELD_MANAGER, force: 'true' });
    const path = `${resourcePath(t, obj.metadata?.namespace, obj.metadata?.name, subresource)}?${q.toString()}`;
    return (await this.request('PATCH', path, obj, 'application/apply-patch+yaml')) as KubeObject;
  }

  async create(obj: KubeObject): Promise<KubeObject> {
    const t = typeOf(obj);
    const q = new URLSearchParams({ fieldManager: FIELD_MANAGER });
    return (await this.request(
      'POST',
      `${resourcePath(t, obj.metadata?.namespace)}?${q.toString()}`,
      obj,
    )) as KubeObject;
  }

  async update(obj: KubeObject): Promise<KubeObject> {
    const t = typeOf(obj);
    const q = new URLSearchParams({ fieldManager: FIELD_MANAGER });
    const path = `${resourcePath(t, obj.metadata?.namespace, obj.metadata?.name)}?${q.toString()}`;
    return (await this.request('PUT', path, obj)) as KubeObject;
  }

  async mergePatch(t: ResourceType, namespace: string, name: string, patch: unknown): Promise<KubeObject> {
    const q = new URLSearchParams({ fieldManager: FIELD_MANAGER });
    const path = `${resourcePath(t, namespace, name)}?${q.toString()}`;
    return (await this.request('PATCH', path, patch, 'application/merge-patch+json')) as KubeObject;
  }

  async delete(t: ResourceType, namespace: string, name: string, preconditionUid?: string): Promise<void> {
    const body = {
      apiVersion: 'v1',
      kind: 'DeleteOptions',
      propagationPolicy: 'Background',
      ...(preconditionUid ? { preconditions: { uid: preconditionUid } } : {}),
    };
    try {
      await this.request('DELETE', resourcePath(t, namespace, name), body);
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
  }

  async discover(groupVersion: string): Promise<string[] | undefined> {
    try {
      const list = (await this.request('GET', `/apis/${groupVersion}`)) as {
        resources?: Array<{ name: string }>;
      };
      return (list.resources ?? []).map((r) => r.name);
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
  }

  private async request(method: string, path: string, body?: unknown, contentType = 'application/json') {
    const cluster = this.kc.getCurrentCluster();
    if (!cluster) throw new Error('kubeconfig has no current cluster');
    const url = cluster.server.replace(/\/$/, '') + path;
    const ctx = new RequestContext(url, method as HttpMethod);
    await this.kc.applySecurityAuthentication(ctx);
    const headers = ctx.getHeaders();
    headers['Accept'] = 'application/json';
    if (body !== undefined) headers['Content-Type'] = contentType;
    let res;
    try {
      res = await fetch(url, {
        method,
        headers,
        dispatcher: this.pool(ctx.getDispatcher()),
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (e) {
      this.observe(method, '<error>');
      throw e;
    }
    this.observe(method, String(res.status));
    const text = await res.text();
    let json: unknown = {};
    try {
      json = text ? JSON.parse(text) : {};
    } catch {
      if (res.status < 400) throw new Error(`${method} ${path}: response is not JSON`);
    }
    if (res.status >= 400) {
      const s = json as { reason?: string; message?: string };
      throw new ApiError(
        res.status,
        s.reason ?? 'Unknown',
        `${method} ${path}: ${res.status} ${s.message ?? text}`,
      );
    }
    return json;
  }
}

function typeOf(obj: KubeObject): ResourceType {
  const t = kindOf(obj.apiVersion, obj.kind);
  if (!t) throw new Error(`unknown kind ${obj.apiVersion}/${obj.kind}`);
  return t;
}

const apiVersion = (t: ResourceType) => (t.group ? `${t.group}/${t.version}` : t.version);

/** "ns/name": the work-queue key of any namespaced object (a KubeObject, an SmtpRelay, a MailDomain). */
export const keyOf = (o: { metadata?: { namespace?: string; name?: string } }) =>
  `${o.metadata?.namespace ?? ''}/${o.metadata?.name ?? ''}`;

export function splitKey(key: string): { namespace: string; name: string } {
  const i = key.indexOf('/');
  return { namespace: key.slice(0, i), name: key.slice(i + 1) };
}
