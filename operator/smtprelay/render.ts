/**
 * SmtpRelay → the Kubernetes objects that run it. Pure: every input (generated secret material, the
 * rendered config, the replica count the scale planner allows) is decided before; this only shapes objects.
 *
 * Apply order matters and is the order returned: Secrets first (so files exist before the config names
 * them), then the ConfigMap, Services, StatefulSet, PodDisruptionBudget, monitoring and certificates.
 *
 * The pod template holds nothing that changes with content: the config and every secret file arrive through
 * one projected volume of fixed sources, and the relay reloads them. Only what truly needs a restart is in
 * the template (image, ports, resources, scheduling, probes).
 */
import type { SmtpRelay } from '../api/smtprelay.js';
import type { KubeObject } from '../runtime/kube.js';
import { LABELS } from '../shared/labels.js';
import { PATHS, commonLabels, names, selectorLabels, serviceHost } from './names.js';

export interface RenderInput {
  relay: SmtpRelay;
  image: string;
  configYaml: string;
  /** Base64 data of the Secrets the operator owns. `ca`/`tls` only in operator-managed TLS mode. */
  secrets: {
    runtime: Record<string, string>;
    credentials: Record<string, string>;
    internal: Record<string, string>;
    ca?: Record<string, string>;
    tls?: Record<string, string>;
  };
  /** spec.replicas, or the current count while pods that would be removed are draining. */
  statefulSetReplicas: number;
  /** volumeClaimTemplates are immutable: once the StatefulSet exists, its storage is kept. */
  storage: { size: string; storageClassName?: string };
  serviceMonitor: boolean;
  /** cert-manager mode with its CRD present: render a Certificate. */
  certificate: boolean;
}

export function ownerReference(relay: SmtpRelay) {
  return {
    apiVersion: relay.apiVersion,
    kind: relay.kind,
    name: relay.metadata.name,
    uid: relay.metadata.uid ?? '',
    controller: true,
    blockOwnerDeletion: true,
  };
}

function meta(relay: SmtpRelay, name: string, extraLabels: Record<string, string> = {}) {
  return {
    name,
    namespace: relay.metadata.namespace,
    labels: { ...commonLabels(relay), ...extraLabels },
    ownerReferences: [ownerReference(relay)],
  };
}

/** A Secret the relay owns, as rendered (also how generated material is first created). */
export function ownedSecret(
  relay: SmtpRelay,
  name: string,
  data: Record<string, string>,
  type = 'Opaque',
): KubeObject {
  return { apiVersion: 'v1', kind: 'Secret', metadata: meta(relay, name), type, data };
}

export interface ListenerPort {
  name: 'submission' | 'smtps' | 'relay';
  port: number;
}

export function listenerPorts(relay: SmtpRelay): ListenerPort[] {
  const l = relay.spec.listeners;
  const out: ListenerPort[] = [];
  if (l.submission.enabled) out.push({ name: 'submission', port: l.submission.port });
  if (l.smtps.enabled) out.push({ name: 'smtps', port: l.smtps.port });
  if (l.relay.enabled) out.push({ name: 'relay', port: l.relay.port });
  return out;
}

const ADMIN_PORT_NAME = 'admin';

/**
 * The relay runs as a non-root user with every capability dropped, so it may bind a port below 1024 (587,
 * 465, 25) only where the pod's network namespace allows unprivileged users to. containerd 2 and Docker
 * set that up for every pod, containerd 1.6/1.7 do not (the relay then exits with EACCES, as it did on
 * the test cluster's real node): the pod asks for it itself. net.ipv4.ip_unprivileged_port_start is one
 * of the kubelet's safe sysctls (allowed by default and by Pod Security "restricted"), scoped to the pod.
 */
export function unprivilegedPortSysctls(ports: readonly number[]): { name: string; value: string }[] {
  return ports.some((p) => p < 1024) ? [{ name: 'net.ipv4.ip_unprivileged_port_start', value: '0' }] : [];
}

export function renderStatefulSet(input: RenderInput): KubeObject {
  const { relay } = input;
  const { spec } = relay;
  const n = names(relay.metadata.name);
  const adminPort = spec.monitoring.metricsPort;
  const sysctls = unprivilegedPortSysctls([...listenerPorts(relay).map((p) => p.port), adminPort]);
  const container = {
    name: 'relay',
    image: spec.image ?? input.image,
    ...(spec.imagePullPolicy ? { imagePullPolicy: spec.imagePullPolicy } : {}),
    command: ['mailfleet-relay', '--config', PATHS.configFile],
    // For `kubectl exec POD -- mailfleet-relay queue …`: the queue tools read the admin port and token from it.
    env: [{ name: 'MAILFLEET_RELAY_CONFIG', value: PATHS.configFile }],
    ports: [
      ...listenerPorts(relay).map((p) => ({ name: p.name, containerPort: p.port, protocol: 'TCP' })),
      { name: ADMIN_PORT_NAME, containerPort: adminPort, protocol: 'TCP' },
    ],
    ...(spec.resources ? { resources: spec.resources } : {}),
    securityContext: {
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      runAsNonRoot: true,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    },
    startupProbe: {
      httpGet: { path: '/healthz', port: ADMIN_PORT_NAME },
      periodSeconds: 2,
      failureThreshold: 60,
    },
    livenessProbe: {
      httpGet: { path: '/healthz', port: ADMIN_PORT_NAME },
      periodSeconds: 10,
      timeoutSeconds: 5,
      failureThreshold: 3,
    },
    readinessProbe: {
      httpGet: { path: '/readyz', port: ADMIN_PORT_NAME },
      periodSeconds: 5,
      timeoutSeconds: 3,
      failureThreshold: 2,
    },
    volumeMounts: [
      { name: 'config', mountPath: PATHS.configDir, readOnly: true },
      { name: 'queue', mountPath: PATHS.spoolDir },
      { name: 'tmp', mountPath: '/tmp' },
    ],
  };
  const pod = {
    metadata: {
      labels: { ...(spec.podLabels ?? {}), ...commonLabels(relay) },
      ...(spec.podAnnotations && Object.keys(spec.podAnnotations).length
        ? { annotations: spec.podAnnotations }
        : {}),
    },
    spec: {
      automountServiceAccountToken: false,
      enableServiceLinks: false,
      terminationGracePeriodSeconds: spec.drain.terminationGracePeriodSeconds,
      securityContext: {
        runAsNonRoot: true,
        runAsUser: 65532,
        runAsGroup: 65532,
        fsGroup: 65532,
        fsGroupChangePolicy: 'OnRootMismatch',
        seccompProfile: { type: 'RuntimeDefault' },
        ...(sysctls.length ? { sysctls } : {}),
      },
      ...(spec.imagePullSecrets ? { imagePullSecrets: spec.imagePullSecrets } : {}),
      ...(spec.nodeSelector ? { nodeSelector: spec.nodeSelector } : {}),
      ...(spec.tolerations ? { tolerations: spec.tolerations } : {}),
      ...(spec.affinity ? { affinity: spec.affinity } : {}),
      containers: [container],
      volumes: [
        {
          name: 'config',
          projected: {
            defaultMode: 0o440,
            sources: [
              { configMap: { name: n.configMap, items: [{ key: 'relay.yaml', path: 'relay.yaml' }] } },
              { secret: { name: n.runtime } },
            ],
          },
        },
        { name: 'tmp', emptyDir: { sizeLimit: '64Mi' } },
      ],
    },
  };
  return {
    apiVersion: 'apps/v1',
    kind: 'StatefulSet',
    metadata: meta(relay, n.statefulSet),
    spec: {
      replicas: input.statefulSetReplicas,
      serviceName: n.headlessService,
      podManagementPolicy: 'Parallel',
      updateStrategy: { type: 'RollingUpdate' },
      // Pods are drained before a scale-down removes them, so their volumes are empty: delete them. On
      // deletion of the SmtpRelay the StatefulSet keeps them; the operator deletes them once the deletion
      // drain has emptied them (not when the drain was skipped).
      persistentVolumeClaimRetentionPolicy: { whenScaled: 'Delete', whenDeleted: 'Retain' },
      selector: { matchLabels: selectorLabels(relay) },
      template: pod,
      volumeClaimTemplates: [
        {
          apiVersion: 'v1',
          kind: 'PersistentVolumeClaim',
          metadata: { name: 'queue', labels: commonLabels(relay) },
          spec: {
            accessModes: ['ReadWriteOnce'],
            ...(input.storage.storageClassName ? { storageClassName: input.storage.storageClassName } : {}),
            resources: { requests: { storage: input.storage.size } },
          },
        },
      ],
    },
  };
}

function services(relay: SmtpRelay): KubeObject[] {
  const n = names(relay.metadata.name);
  const ports = listenerPorts(relay).map((p) => ({
    name: p.name,
    port: p.port,
    targetPort: p.name,
    protocol: 'TCP',
  }));
  const client: KubeObject = {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: {
      ...meta(relay, n.clientService, { [LABELS.service]: 'client' }),
      ...(relay.spec.service.annotations ? { annotations: relay.spec.service.annotations } : {}),
    },
    spec: {
      type: relay.spec.service.type,
      ...(relay.spec.service.externalTrafficPolicy
        ? { externalTrafficPolicy: relay.spec.service.externalTrafficPolicy }
        : {}),
      selector: selectorLabels(relay),
      ports,
    },
  };
  const headless: KubeObject = {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: meta(relay, n.headlessService, { [LABELS.service]: 'headless' }),
    spec: {
      clusterIP: 'None',
      // Peers must resolve each other while starting or draining.
      publishNotReadyAddresses: true,
      selector: selectorLabels(relay),
      ports: [
        ...ports,
        {
          name: ADMIN_PORT_NAME,
          port: relay.spec.monitoring.metricsPort,
          targetPort: ADMIN_PORT_NAME,
          protocol: 'TCP',
        },
      ],
    },
  };
  return [client, headless];
}

function pdb(relay: SmtpRelay): KubeObject {
  return {
    apiVersion: 'policy/v1',
    kind: 'PodDisruptionBudget',
    metadata: meta(relay, names(relay.metadata.name).pdb),
    spec: { maxUnavailable: 1, selector: { matchLabels: selectorLabels(relay) } },
  };
}

function serviceMonitor(relay: SmtpRelay): KubeObject {
  const sm = relay.spec.monitoring.serviceMonitor;
  return {
    apiVersion: 'monitoring.coreos.com/v1',
    kind: 'ServiceMonitor',
    metadata: meta(relay, names(relay.metadata.name).serviceMonitor, sm.labels ?? {}),
    spec: {
      selector: { matchLabels: { ...selectorLabels(relay), [LABELS.service]: 'headless' } },
      endpoints: [{ port: ADMIN_PORT_NAME, path: '/metrics', interval: sm.interval }],
    },
  };
}

/** DNS names the relay certificate covers: the client Service and every pod through the headless Service. */
export function certificateDnsNames(relay: SmtpRelay): string[] {
  const { name, namespace } = relay.metadata;
  const headless = names(name).headlessService;
  return [
    name,
    `${name}.${namespace}`,
    serviceHost(relay),
    `${serviceHost(relay)}.cluster.local`,
    `*.${headless}.${namespace}.svc`,
    `*.${headless}.${namespace}.svc.cluster.local`,
  ];
}

/** The cert-manager Certificate of an SmtpRelay with spec.tls.issuerRef. */
export function renderCertificate(relay: SmtpRelay): KubeObject {
  const ref = relay.spec.tls.issuerRef!;
  return {
    apiVersion: 'cert-manager.io/v1',
    kind: 'Certificate',
    metadata: meta(relay, names(relay.metadata.name).certificate),
    spec: {
      secretName: names(relay.metadata.name).certManagerTls,
      issuerRef: { name: ref.name, kind: ref.kind, group: ref.group },
      dnsNames: certificateDnsNames(relay),
      duration: '2160h',
      renewBefore: '720h',
      privateKey: { algorithm: 'RSA', size: 2048, rotationPolicy: 'Always' },
      usages: ['server auth', 'client auth', 'digital signature', 'key encipherment'],
    },
  };
}

export function renderRelay(input: RenderInput): KubeObject[] {
  const { relay, secrets } = input;
  const n = names(relay.metadata.name);
  const out: KubeObject[] = [];
  if (secrets.ca) out.push(ownedSecret(relay, n.ca, secrets.ca));
  if (secrets.tls) out.push(ownedSecret(relay, n.tls, secrets.tls, 'kubernetes.io/tls'));
  out.push(ownedSecret(relay, n.credentials, secrets.credentials));
  out.push(ownedSecret(relay, n.internal, secrets.internal));
  out.push(ownedSecret(relay, n.runtime, secrets.runtime));
  out.push({
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: meta(relay, n.configMap),
    data: { 'relay.yaml': input.configYaml },
  });
  out.push(...services(relay));
  out.push(renderStatefulSet(input));
  out.push(pdb(relay));
  if (input.serviceMonitor) out.push(serviceMonitor(relay));
  if (input.certificate) out.push(renderCertificate(relay));
  return out;
}
