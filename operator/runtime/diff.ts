/**
 * Does the live object already say what we would apply? (pure)
 *
 * Server-side apply of an unchanged object is itself a write request; steady state must make none. An
 * object needs applying when either
 * - its `mailfleet.dev/applied` annotation (a hash of what we last applied) differs from the hash of the
 *   desired object — this catches fields we stopped setting, which a subset check cannot see; or
 * - the desired object is not a subset of the live one — this catches drift made by someone else.
 * The subset check tolerates what the API server adds (defaults, status, metadata), treats an empty map or
 * list as equal to an absent one, and compares resource quantities by value ("0.5" equals "500m").
 */
import { createHash } from 'node:crypto';
import type { KubeObject } from './kube.js';

export const APPLIED_ANNOTATION = 'mailfleet.dev/applied';

function canonical(x: unknown): unknown {
  if (Array.isArray(x)) return x.map(canonical);
  if (x && typeof x === 'object') {
    return Object.fromEntries(
      Object.keys(x)
        .sort()
        .map((k) => [k, canonical((x as Record<string, unknown>)[k])]),
    );
  }
  return x;
}

export function hashObject(x: unknown): string {
  return createHash('sha256')
    .update(JSON.stringify(canonical(x)))
    .digest('hex')
    .slice(0, 16);
}

/** The desired object with the hash annotation set (over everything else in it). */
export function withAppliedHash<T extends KubeObject>(desired: T): T {
  const h = hashObject(desired);
  return {
    ...desired,
    metadata: {
      ...desired.metadata,
      annotations: { ...desired.metadata?.annotations, [APPLIED_ANNOTATION]: h },
    },
  };
}

export function needsApply(desiredWithHash: KubeObject, live: KubeObject | undefined): boolean {
  if (!live) return true;
  const want = desiredWithHash.metadata?.annotations?.[APPLIED_ANNOTATION];
  if (live.metadata?.annotations?.[APPLIED_ANNOTATION] !== want) return true;
  return !isSubset(desiredWithHash, live);
}

const isEmpty = (x: unknown) =>
  x === undefined ||
  x === null ||
  (Array.isArray(x) && x.length === 0) ||
  (typeof x === 'object' && x !== null && !Array.isArray(x) && Object.keys(x).length === 0);

/** Every field of `want` is present in `have` with an equal value (recursively). */
export function isSubset(want: unknown, have: unknown): boolean {
  if (isEmpty(want)) return isEmpty(have) || typeof have === typeof want;
  if (Array.isArray(want)) {
    return Array.isArray(have) && have.length === want.length && want.every((w, i) => isSubset(w, have[i]));
  }
  if (typeof want === 'object' && want !== null) {
    if (typeof have !== 'object' || have === null || Array.isArray(have)) return false;
    const h = have as Record<string, unknown>;
    return Object.entries(want).every(([k, v]) => isSubset(v, h[k]));
  }
  if (want === have) return true;
  const a = parseQuantity(want);
  const b = parseQuantity(have);
  return a !== undefined && b !== undefined && a === b;
}

const SUFFIX: Record<string, number> = {
  '': 1,
  n: 1e-9,
  u: 1e-6,
  m: 1e-3,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};

/** A Kubernetes resource quantity as a number, or undefined when it is not one. */
export function parseQuantity(x: unknown): number | undefined {
  if (typeof x === 'number') return x;
  if (typeof x !== 'string') return undefined;
  const m = /^([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?$/.exec(x);
  if (!m) return undefined;
  const n = Number(m[1]) * (SUFFIX[m[2] ?? ''] ?? NaN);
  // Round to avoid 0.1*1e3 style float noise.
  return Number.isFinite(n) ? Math.round(n * 1e9) / 1e9 : undefined;
}
