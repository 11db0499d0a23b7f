/**
 * RBAC a component needs, declared next to its code (kubebuilder's +kubebuilder:rbac markers as data).
 * operator/gen merges every declaration into the chart's ClusterRole, so the chart grants exactly what
 * the code declares.
 */
export interface PolicyRule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
}

const VERB_ORDER = ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete', 'deletecollection'];

/** Merges rules: one rule per (group, resource) with the union of verbs, in a stable order. */
export function mergeRules(rules: readonly PolicyRule[]): PolicyRule[] {
  const byKey = new Map<string, Set<string>>();
  for (const r of rules) {
    for (const g of r.apiGroups) {
      for (const res of r.resources) {
        const k = `${g}\u0000${res}`;
        const set = byKey.get(k) ?? new Set<string>();
        r.verbs.forEach((v) => set.add(v));
        byKey.set(k, set);
      }
    }
  }
  // Group resources with identical verb sets within a group, as controller-gen does.
  const grouped = new Map<string, { group: string; verbs: string[]; resources: string[] }>();
  for (const [k, verbs] of [...byKey].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const [group, resource] = k.split('\u0000') as [string, string];
    const v = [...verbs].sort((a, b) => VERB_ORDER.indexOf(a) - VERB_ORDER.indexOf(b));
    const gk = `${group}\u0000${v.join(',')}`;
    const entry = grouped.get(gk) ?? { group, verbs: v, resources: [] };
    entry.resources.push(resource);
    grouped.set(gk, entry);
  }
  return [...grouped.values()].map((e) => ({ apiGroups: [e.group], resources: e.resources, verbs: e.verbs }));
}
