/** Names, labels and in-pod paths derived from an SmtpRelay: one place, so render, controller and drain agree. */
import type { SmtpRelay } from '../api/smtprelay.js';
import { LABELS, MANAGED_BY, RELAY_APP } from '../shared/labels.js';

export const names = (relayName: string) => ({
  statefulSet: relayName,
  clientService: relayName,
  headlessService: `${relayName}-headless`,
  configMap: `${relayName}-config`,
  /** User-readable plaintext passwords of generated users (keys are user names). */
  credentials: `${relayName}-credentials`,
  /** Operator-internal secrets: handoff password, admin token. */
  internal: `${relayName}-internal`,
  /** The operator CA (operator-managed TLS). */
  ca: `${relayName}-ca`,
  /** The server certificate (operator-managed TLS), with ca.crt. */
  tls: `${relayName}-tls`,
  /** The Secret cert-manager writes (issuerRef mode). */
  certManagerTls: `${relayName}-certmanager-tls`,
  certificate: relayName,
  /** Everything the relay mounts besides its config: one Secret, so the pod template never changes with content. */
  runtime: `${relayName}-runtime`,
  pdb: relayName,
  serviceMonitor: relayName,
});

export const selectorLabels = (relay: SmtpRelay) => ({
  [LABELS.name]: RELAY_APP,
  [LABELS.instance]: relay.metadata.name,
});

export const commonLabels = (relay: SmtpRelay) => ({
  ...selectorLabels(relay),
  [LABELS.managedBy]: MANAGED_BY,
  [LABELS.partOf]: 'mailfleet',
  [LABELS.component]: 'relay',
});

export const selectorString = (relay: SmtpRelay) =>
  Object.entries(selectorLabels(relay))
    .map(([k, v]) => `${k}=${v}`)
    .join(',');

/** Finalizer that makes deletion wait for the pods to drain. */
export const DRAIN_FINALIZER = 'mailfleet.dev/drain';
/** Annotation on an SmtpRelay: delete without draining (mail left in the queue volumes stays there, PVCs are kept). */
export const SKIP_DRAIN_ANNOTATION = 'mailfleet.dev/skip-drain';
/** Annotation the operator puts on a pod it asked to drain (RFC 3339 start time). */
export const DRAIN_STARTED_ANNOTATION = 'mailfleet.dev/drain-started';

/** Paths inside the relay container. */
export const PATHS = {
  configDir: '/etc/mailfleet',
  configFile: '/etc/mailfleet/relay.yaml',
  spoolDir: '/var/spool/mailfleet',
  file: (key: string) => `/etc/mailfleet/${key}`,
} as const;

/** Keys of the runtime Secret (mounted next to relay.yaml). */
export const RUNTIME_KEYS = {
  users: 'users',
  handoffPassword: 'handoff-password',
  adminToken: 'admin-token',
  tlsCert: 'tls.crt',
  tlsKey: 'tls.key',
  ca: 'ca.crt',
  smarthostUsername: 'smarthost-username',
  smarthostPassword: 'smarthost-password',
  smarthostCa: 'smarthost-ca.crt',
  fleetStoreUsername: 'fleet-store-username',
  fleetStorePassword: 'fleet-store-password',
  fleetStoreCa: 'fleet-store-ca.crt',
  dkim: (domain: string) => `dkim-${domain}.key`,
  routeUsername: (domain: string) => `route-${domain}-username`,
  routePassword: (domain: string) => `route-${domain}-password`,
  routeCa: (domain: string) => `route-${domain}-ca.crt`,
} as const;

export const HANDOFF_USER = 'mailfleet-handoff';

/** Stable DNS name of a relay pod through the headless Service. */
export const podDnsName = (relay: SmtpRelay, podName: string) =>
  `${podName}.${names(relay.metadata.name).headlessService}.${relay.metadata.namespace}.svc`;

export const serviceHost = (relay: SmtpRelay) => `${relay.metadata.name}.${relay.metadata.namespace}.svc`;
