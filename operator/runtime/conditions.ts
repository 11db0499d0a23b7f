/**
 * metav1.Condition bookkeeping (pure). A condition's lastTransitionTime changes only when its status
 * changes; reason, message and observedGeneration are updated in place. Steady state therefore yields
 * identical conditions, and the status patch is skipped.
 */
import type { Condition } from '../api/common.js';

export type ConditionStatus = 'True' | 'False' | 'Unknown';

/** What an evaluation says about one condition type. */
export interface ConditionInput {
  type: string;
  status: ConditionStatus;
  reason: string;
  message: string;
}

export function findCondition(list: readonly Condition[] | undefined, type: string): Condition | undefined {
  return list?.find((c) => c.type === type);
}

/** Returns a new list where `input` replaced (or was appended as) the condition of its type. */
export function setCondition(
  list: readonly Condition[] | undefined,
  input: ConditionInput,
  observedGeneration: number | undefined,
  nowIso: string,
): Condition[] {
  const current = list ?? [];
  const prev = findCondition(current, input.type);
  const next: Condition = {
    type: input.type,
    status: input.status,
    reason: input.reason,
    message: input.message,
    lastTransitionTime: prev && prev.status === input.status ? prev.lastTransitionTime : nowIso,
    ...(observedGeneration !== undefined ? { observedGeneration } : {}),
  };
  return prev ? current.map((c) => (c.type === input.type ? next : c)) : [...current, next];
}

/** Applies several inputs in order. Conditions of types not listed are kept as they are. */
export function setConditions(
  list: readonly Condition[] | undefined,
  inputs: readonly ConditionInput[],
  observedGeneration: number | undefined,
  nowIso: string,
): Condition[] {
  return inputs.reduce<Condition[]>(
    (acc, input) => setCondition(acc, input, observedGeneration, nowIso),
    [...(list ?? [])],
  );
}

/** Kubernetes' RFC 3339 form, seconds precision (what the API server stores for metav1.Time). */
export function rfc3339(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}
