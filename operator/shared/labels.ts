/** Labels on what the operator creates, for both controllers and the informers that select them. */
export const LABELS = {
  name: 'app.kubernetes.io/name',
  instance: 'app.kubernetes.io/instance',
  managedBy: 'app.kubernetes.io/managed-by',
  partOf: 'app.kubernetes.io/part-of',
  component: 'app.kubernetes.io/component',
  service: 'mailfleet.dev/service',
} as const;

export const MANAGED_BY = 'mailfleet';
export const RELAY_APP = 'mailfleet-relay';
/** Selects what the operator manages (informers on owned kinds use it). */
export const MANAGED_SELECTOR = `${LABELS.managedBy}=${MANAGED_BY}`;
