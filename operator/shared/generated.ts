/**
 * Secrets that hold generated material (relay passwords, the handoff password and admin token, the CA and
 * server certificates, DKIM keys) are created once and never replaced because a cache was behind.
 *
 * The cache (and RecentWrites) answers the common case without a request. Only when it says the material
 * is missing or unusable does the operator ask the API server itself. A Secret the cache has never seen
 * is created at once (AlreadyExists: someone, usually our own earlier reconcile, got there first: read it
 * back and keep it); one the cache holds without usable material is read live, then updated with the
 * resourceVersion read (Conflict: read again). So a write never lands on a version the operator did not
 * look at, and stored material is never replaced; at worst a stale cache costs a key generated for
 * nothing. Renewal (a certificate due for renewal) is the same path: `needs` judges the live copy.
 */
import { secretData, type OperatorContext, type SecretData, type SecretReader } from './context.js';
import { withAppliedHash } from '../runtime/diff.js';
import { isConflict, type KubeObject } from '../runtime/kube.js';
import { Kinds } from '../runtime/resources.js';

export interface GeneratedSecret {
  name: string;
  /** Whether these contents lack material that must be generated (or renewed). Pure. */
  needs(data: SecretData | undefined): boolean;
  /** The whole Secret to store, generating what `live` (the API server's copy) lacks. */
  build(live: SecretData | undefined): Promise<KubeObject>;
}

/** Generates material: given a Secret's description, returns its contents as stored. */
export type Generate = (g: GeneratedSecret) => Promise<{ data: SecretData; generated: boolean }>;

const ATTEMPTS = 3;

/** Keeps what exists (cache, else the API server), or generates and stores it with create-if-absent. */
export async function ensureGenerated(
  ctx: Pick<OperatorContext, 'api' | 'recent' | 'stores'>,
  reader: SecretReader,
  g: GeneratedSecret,
): Promise<{ data: SecretData; generated: boolean }> {
  const cached = reader.get(g.name);
  if (!g.needs(cached)) return { data: cached ?? {}, generated: false };
  const ns = reader.namespace;
  const base = ctx.stores.secrets.get(ns, g.name);
  // Unseen: try to create it (no GET first: one request saved per new Secret, thousands in a burst).
  const seen = ctx.recent.resolve('Secret', base, ns, g.name) !== undefined;
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    const live = seen || attempt > 0 ? await ctx.api.get(Kinds.Secret, ns, g.name) : undefined;
    const liveData = secretData(live);
    if (live && !g.needs(liveData)) {
      ctx.recent.remember(live, base);
      return { data: liveData ?? {}, generated: false };
    }
    const obj = withAppliedHash(await g.build(liveData));
    try {
      const written = live
        ? await ctx.api.update({
            ...obj,
            metadata: { ...obj.metadata, resourceVersion: live.metadata?.resourceVersion },
          })
        : await ctx.api.create(obj);
      ctx.recent.remember(written, base);
      return { data: secretData(written) ?? {}, generated: true };
    } catch (e) {
      // 409: AlreadyExists on create, Conflict on update: someone wrote it meanwhile; look again.
      if (!isConflict(e)) throw e;
    }
  }
  throw new Error(
    `Secret ${ns}/${g.name} changed under the operator ${ATTEMPTS} times while it generated its contents; will retry`,
  );
}
