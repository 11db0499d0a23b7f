/**
 * The kinds the operator reads or writes, with their REST paths. A static table instead of API discovery:
 * the operator knows exactly what it touches, and the same table drives the RBAC it declares.
 */
export interface ResourceType {
  group: string;
  version: string;
  kind: string;
  plural: string;
  namespaced: boolean;
}

const r = (
  group: string,
  version: string,
  kind: string,
  plural: string,
  namespaced = true,
): ResourceType => ({
  group,
  version,
  kind,
  plural,
  namespaced,
});

export const Kinds = {
  Secret: r('', 'v1', 'Secret', 'secrets'),
  ConfigMap: r('', 'v1', 'ConfigMap', 'configmaps'),
  Service: r('', 'v1', 'Service', 'services'),
  Pod: r('', 'v1', 'Pod', 'pods'),
  PersistentVolumeClaim: r('', 'v1', 'PersistentVolumeClaim', 'persistentvolumeclaims'),
  Event: r('', 'v1', 'Event', 'events'),
  StatefulSet: r('apps', 'v1', 'StatefulSet', 'statefulsets'),
  PodDisruptionBudget: r('policy', 'v1', 'PodDisruptionBudget', 'poddisruptionbudgets'),
  Lease: r('coordination.k8s.io', 'v1', 'Lease', 'leases'),
  SmtpRelay: r('mailfleet.dev', 'v1alpha1', 'SmtpRelay', 'smtprelays'),
  MailDomain: r('mailfleet.dev', 'v1alpha1', 'MailDomain', 'maildomains'),
  ServiceMonitor: r('monitoring.coreos.com', 'v1', 'ServiceMonitor', 'servicemonitors'),
  Certificate: r('cert-manager.io', 'v1', 'Certificate', 'certificates'),
} as const;

export type KindName = keyof typeof Kinds;

export const apiVersionOf = (t: ResourceType) => (t.group ? `${t.group}/${t.version}` : t.version);

export function kindOf(apiVersion: string | undefined, kind: string | undefined): ResourceType | undefined {
  return Object.values(Kinds).find((t) => t.kind === kind && apiVersionOf(t) === apiVersion);
}

/** /api/v1/namespaces/ns/secrets/name[/status], or the cluster-wide collection when ns is undefined. */
export function resourcePath(
  t: ResourceType,
  namespace?: string,
  name?: string,
  subresource?: string,
): string {
  const base = t.group ? `/apis/${t.group}/${t.version}` : `/api/${t.version}`;
  const ns = t.namespaced && namespace ? `/namespaces/${encodeURIComponent(namespace)}` : '';
  const n = name ? `/${encodeURIComponent(name)}` : '';
  const sub = name && subresource ? `/${subresource}` : '';
  return `${base}${ns}/${t.plural}${n}${sub}`;
}
