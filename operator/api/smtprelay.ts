/**
 * SmtpRelay (mailfleet.dev/v1alpha1): a fleet of relay pods. This file is the one source of truth for its
 * schema: the CRD (crds/, the chart's copy), the TypeScript types and the defaults all derive from it.
 */
import {
  Conditions,
  LocalObjectName,
  ObservedGeneration,
  Route,
  SecretKeyRef,
  type Condition,
  type Route as RouteT,
} from './common.js';
import {
  Arr,
  Bool,
  Enum,
  Int,
  Obj,
  Opaque,
  Optional,
  Quantity,
  QuantityMap,
  Str,
  StringMap,
  type Static,
} from './schema.js';

/**
 * An IPv4 or IPv6 network in CIDR notation, checked by the API server as the relay checks it
 * (relay/policy/network.ts): a valid prefix length, no host bits set. A /33 or a 10.0.0.1/8 is refused at
 * `kubectl apply` with this message instead of reaching the relay, which would refuse its config.
 */
const CidrString = (description: string) =>
  Str({
    description,
    minLength: 3,
    maxLength: 64,
    pattern: '^[0-9A-Fa-f:.]+/[0-9]{1,3}$',
    'x-kubernetes-validations': [
      {
        rule: 'isCIDR(self) && cidr(self) == cidr(self).masked()',
        message: 'must be a network in CIDR notation without host bits set, e.g. 10.0.0.0/8 or fd00::/8',
        reason: 'FieldValueInvalid',
      },
    ],
  });

const Port = (description: string, dflt: number) =>
  Int({ description, minimum: 1, maximum: 65535, default: dflt });

export const ProxyProtocolSpec = Obj(
  {
    trustedProxies: Arr(CidrString('A proxy network in CIDR notation.'), {
      description:
        'Addresses (CIDR) of the load balancer or L4 proxy in front of the relay, e.g. the load balancer subnet. Connections from them must start with a PROXY protocol v1 or v2 header (else 421 4.7.0); the client address in it is what allowedNetworks, the per-client limits, the AUTH throttle, logs and Received headers use. A PROXY header from any other address is refused (554 5.7.1). Must not cover addresses that connect directly: the relay pods themselves (peers hand over mail on submission while draining) or in-cluster applications.',
      minItems: 1,
      maxItems: 256,
    }),
  },
  {
    description:
      'Accept the PROXY protocol on this listener (opt-in), from trusted proxies only. Use it when a load balancer or proxy that speaks it (HAProxy send-proxy, AWS NLB proxy protocol v2, ...) hides client addresses.',
  },
);

const Listener = (what: string, enabledByDefault: boolean, port: number) => ({
  enabled: Bool({ description: `Run the ${what} listener.`, default: enabledByDefault }),
  port: Port(`Container and Service port of the ${what} listener.`, port),
  proxyProtocol: Optional(ProxyProtocolSpec),
});

export const Listeners = Obj(
  {
    submission: Obj(Listener('submission', true, 587), {
      description:
        'Message submission (RFC 6409): STARTTLS offered, SMTP AUTH required and offered only after TLS. Peer relays also hand over queued mail here while draining.',
      default: {},
    }),
    smtps: Obj(Listener('smtps', false, 465), {
      description: 'Submission over implicit TLS (RFC 8314); SMTP AUTH required.',
      default: {},
    }),
    relay: Obj(
      {
        ...Listener('relay', false, 2525),
        allowedNetworks: Arr(CidrString('A network in CIDR notation.'), {
          description:
            'Client networks (CIDR) allowed to send without AUTH, e.g. the pod network for in-cluster applications. Required when the relay listener is enabled.',
          default: [],
          maxItems: 256,
        }),
      },
      {
        description:
          'Plain SMTP without AUTH for in-cluster applications, accepted only from allowedNetworks.',
        default: {},
        'x-kubernetes-validations': [
          {
            rule: '!self.enabled || size(self.allowedNetworks) > 0',
            message: 'allowedNetworks must list at least one network when the relay listener is enabled',
            reason: 'FieldValueRequired',
          },
        ],
      },
    ),
  },
  {
    description: 'Which SMTP listeners run and on which ports. Changing a port restarts the pods (rolling).',
    default: {},
    'x-kubernetes-validations': [
      {
        rule: 'self.submission.enabled || self.smtps.enabled || self.relay.enabled',
        message: 'at least one listener must be enabled',
      },
      {
        rule: '!(self.submission.enabled && self.smtps.enabled && self.submission.port == self.smtps.port) && !(self.submission.enabled && self.relay.enabled && self.submission.port == self.relay.port) && !(self.smtps.enabled && self.relay.enabled && self.smtps.port == self.relay.port)',
        message: 'enabled listeners must use different ports',
      },
    ],
  },
);

export const IssuerRef = Obj(
  {
    name: Str({ description: 'Name of the cert-manager issuer.', minLength: 1, maxLength: 253 }),
    kind: Enum(['Issuer', 'ClusterIssuer'] as const, {
      description: 'Kind of the issuer.',
      default: 'Issuer',
    }),
    group: Str({ description: 'API group of the issuer.', default: 'cert-manager.io', minLength: 1 }),
  },
  { description: 'A cert-manager issuer; the operator renders a Certificate for the relay service names.' },
);

export const TlsSpec = Obj(
  {
    secretName: Optional(
      LocalObjectName(
        'Use this existing kubernetes.io/tls Secret (keys tls.crt, tls.key, optionally ca.crt). The operator reads it and never changes it.',
      ),
    ),
    issuerRef: Optional(IssuerRef),
    minVersion: Enum(['TLSv1.2', 'TLSv1.3'] as const, {
      description: 'Lowest TLS version the listeners accept.',
      default: 'TLSv1.2',
    }),
  },
  {
    description:
      "Where the listeners' certificate comes from: an existing Secret (secretName), cert-manager (issuerRef), or, when neither is set, a CA the operator creates for this relay with a server certificate it renews well before expiry.",
    default: {},
    'x-kubernetes-validations': [
      {
        rule: '!(has(self.secretName) && has(self.issuerRef))',
        message: 'set at most one of secretName and issuerRef',
        reason: 'FieldValueForbidden',
      },
    ],
  },
);

export const SmtpUser = Obj(
  {
    name: Str({
      description:
        'SMTP AUTH user name (letters, digits, ".", "_" and "-"; it is also the key of its password in the credentials Secret).',
      minLength: 1,
      maxLength: 128,
      pattern: '^[A-Za-z0-9][-._A-Za-z0-9]*$',
    }),
    passwordSecretRef: Optional(
      SecretKeyRef(
        'Take the password from this Secret (read, never changed). Without it the operator generates a password into the credentials Secret (status.credentialsSecret).',
        'password',
      ),
    ),
  },
  { description: 'An SMTP AUTH user.' },
);

export const QueueSpec = Obj(
  {
    storage: Obj(
      {
        size: Quantity({ description: 'Size of each pod queue volume (PVC).', default: '1Gi' }),
        storageClassName: Optional(
          Str({
            description: 'StorageClass of the queue volumes (default: the cluster default).',
            minLength: 1,
          }),
        ),
      },
      {
        description:
          'Per-pod persistent volume for the durable queue. Immutable once the StatefulSet exists.',
        default: {},
      },
    ),
    minFreeSpacePercent: Int({
      description:
        'Free space on a pod queue volume (percent of its size) below which the relay refuses new mail with 452 4.3.1 and reports not ready, so the Service sends clients to other pods; delivery and bounces go on, so space comes back. 0 disables the floor (a full volume still never acknowledges a message).',
      minimum: 0,
      maximum: 90,
      default: 10,
    }),
    minFreeInodesPercent: Int({
      description:
        'The same floor for free inodes of the queue volume (a file per deferred or large message).',
      minimum: 0,
      maximum: 90,
      default: 10,
    }),
    retry: Obj(
      {
        firstRetrySeconds: Int({
          description: 'Delay before the first retry of deferred mail.',
          minimum: 1,
          default: 300,
        }),
        maxBackoffSeconds: Int({ description: 'Longest delay between retries.', minimum: 1, default: 4000 }),
        maxLifetimeSeconds: Int({
          description: 'Mail still undelivered after this long is bounced to its sender.',
          minimum: 60,
          default: 432000,
        }),
      },
      {
        description: 'Retry schedule for deferred mail (Postfix defaults).',
        default: {},
        'x-kubernetes-validations': [
          {
            rule: 'self.firstRetrySeconds <= self.maxBackoffSeconds',
            message: 'firstRetrySeconds must not exceed maxBackoffSeconds',
          },
        ],
      },
    ),
  },
  { description: 'Queue storage and retry policy.', default: {} },
);

export const LimitsSpec = Obj(
  {
    maxMessageBytes: Int({
      description: 'Largest message accepted (bytes).',
      minimum: 1024,
      default: 26214400,
    }),
    maxRecipients: Int({ description: 'Recipients per message.', minimum: 1, default: 100 }),
    messagesPerMinutePerUser: Int({
      description: 'Messages per minute one authenticated user may submit (0: unlimited).',
      minimum: 0,
      default: 600,
    }),
    messagesPerMinutePerClient: Int({
      description: 'Messages per minute one client address may submit (0: unlimited).',
      minimum: 0,
      default: 1200,
    }),
    messagesPerMinutePerSenderDomain: Int({
      description:
        'Messages per minute all senders of one sending domain may submit together (0: unlimited).',
      minimum: 0,
      default: 0,
    }),
    maxConnections: Int({ description: 'Concurrent SMTP connections per pod.', minimum: 1, default: 2000 }),
    maxConnectionsPerClient: Int({
      description:
        'Concurrent SMTP connections per pod from one client address (IPv6: one /64); more get 421 4.7.0 (0: unlimited).',
      minimum: 0,
      default: 100,
    }),
    connectionsPerMinutePerClient: Int({
      description:
        'New SMTP connections per minute per pod from one client address (IPv6: one /64), a burst of that many allowed; past it 421 4.7.0 (0: unlimited).',
      minimum: 0,
      default: 1200,
    }),
    exemptNetworks: Arr(CidrString('A client network in CIDR notation.'), {
      description:
        'Client networks (CIDR) exempt from the per-client limits (connections, connection rate, messages per minute per client). Default: loopback, the pod itself.',
      default: ['127.0.0.0/8', '::1/128'],
      maxItems: 256,
    }),
  },
  {
    description:
      'Message, recipient, rate and connection limits. The messagesPerMinute rates are fleet-wide when fleetStore is set (per pod without it, or while the store is unreachable); connection limits are per pod.',
    default: {},
  },
);

export const MonitoringSpec = Obj(
  {
    metricsPort: Port('Port of the relay admin server (/metrics, /healthz, /readyz, drain).', 9091),
    serviceMonitor: Obj(
      {
        enabled: Bool({
          description:
            'Create a Prometheus Operator ServiceMonitor (only when its CRD exists in the cluster).',
          default: true,
        }),
        interval: Str({ description: 'Scrape interval.', default: '30s', pattern: '^[0-9]+(ms|s|m|h)$' }),
        labels: Optional(
          StringMap({
            description: 'Extra labels on the ServiceMonitor, e.g. to match a Prometheus selector.',
          }),
        ),
      },
      { description: 'ServiceMonitor for the relay metrics.', default: {} },
    ),
  },
  { description: 'Metrics endpoint and Prometheus scraping.', default: {} },
);

export const DrainSpec = Obj(
  {
    timeoutSeconds: Int({
      description:
        'How long a drain may run before the operator reports it as stuck (Degraded). The operator keeps waiting: it never removes a pod that still holds mail.',
      minimum: 10,
      default: 600,
    }),
    terminationGracePeriodSeconds: Int({
      description:
        'Pod termination grace period: time for a stopping relay to finish sessions and fsync its queue.',
      minimum: 10,
      default: 120,
    }),
  },
  { description: 'Draining before scale-down and deletion.', default: {} },
);

/** Per-site limits. An override states only what it changes, so its fields carry no default. */
const siteLimits = (defaults: boolean) => ({
  maxConnections: Int({
    description:
      'Deliveries in flight to one site at once, each on its own SMTP connection (fleet-wide with fleetStore).',
    minimum: 1,
    ...(defaults ? { default: 20 } : {}),
  }),
  deliveriesPerConnection: Int({
    description: 'Messages sent over one connection to a site before a new one is opened.',
    minimum: 1,
    ...(defaults ? { default: 100 } : {}),
  }),
  messagesPerMinute: Int({
    description: 'Messages per minute to one site, fleet-wide with fleetStore (0: unlimited).',
    minimum: 0,
    ...(defaults ? { default: 0 } : {}),
  }),
});
const overrides = siteLimits(false);

export const ShapingSpec = Obj(
  {
    ...siteLimits(true),
    sites: Arr(
      Obj(
        {
          match: Arr(
            Str({
              description: 'A name, e.g. gmail.com, or a suffix, e.g. *.google.com.',
              minLength: 1,
              maxLength: 255,
              pattern: '^(\\*\\.)?[a-zA-Z0-9.-]+$',
            }),
            {
              description:
                'Matched against the recipient domain, the MX host names and the smarthost host; the first matching entry wins.',
              minItems: 1,
              maxItems: 64,
            },
          ),
          maxConnections: Optional(overrides.maxConnections),
          deliveriesPerConnection: Optional(overrides.deliveriesPerConnection),
          messagesPerMinute: Optional(overrides.messagesPerMinute),
        },
        { description: 'Limits for the sites matching one pattern list (unset fields: the defaults above).' },
      ),
      { description: 'Per-site overrides.', default: [], maxItems: 256 },
    ),
  },
  {
    description:
      'Traffic shaping per destination site: the smarthost, or the MX hosts a recipient domain uses (domains sharing MX hosts are one site). Over a limit mail waits in the queue; nothing bounces.',
    default: {},
  },
);

export const SuppressionSpec = Obj(
  {
    enabled: Bool({
      description:
        'Suppress recipients a downstream server rejected permanently with one of the codes (5.1.1, 5.1.6, 5.1.10, 5.2.1).',
      default: true,
    }),
    ttlSeconds: Int({ description: 'How long a recipient stays suppressed.', minimum: 60, default: 2592000 }),
    action: Enum(['Refuse', 'Bounce'] as const, {
      description:
        'Refuse: RCPT TO a suppressed recipient gets 550 5.1.1; Bounce: accepted, then bounced at once with a DSN.',
      default: 'Refuse',
    }),
  },
  {
    description:
      'The suppression list of recipients that bounced permanently, shared by the fleet with fleetStore (per pod without it).',
    default: {},
  },
);

export const FleetStoreSpec = Obj(
  {
    url: Str({
      description:
        'Valkey or Redis (7 or newer) server the pods share state through: redis://host:port[/db], or rediss:// for TLS. No credentials in the URL.',
      minLength: 10,
      maxLength: 512,
      pattern: '^rediss?://[^@/]+(/[0-9]+)?$',
    }),
    usernameSecretRef: Optional(SecretKeyRef('Secret key holding the ACL username.', 'username')),
    passwordSecretRef: Optional(SecretKeyRef('Secret key holding the password.', 'password')),
    caSecretRef: Optional(
      SecretKeyRef('Secret key holding the PEM CA that signed a rediss:// server.', 'ca.crt'),
    ),
    timeoutMs: Int({
      description:
        'Longest wait for one answer; slower, the pod decides alone (and reports the fleet degraded). Mail is never refused for it.',
      minimum: 10,
      maximum: 10000,
      default: 250,
    }),
  },
  {
    description:
      'Shared state of the fleet: rate limits, shaping leases and the suppression list. Without it each pod enforces its limits alone.',
  },
);

export const SmtpRelaySpec = Obj(
  {
    replicas: Int({
      description: 'Number of relay pods.',
      minimum: 0,
      maximum: 1000,
      default: 2,
      format: 'int32',
    }),
    image: Optional(
      Str({ description: 'Relay container image (default: the operator --relay-image).', minLength: 1 }),
    ),
    imagePullPolicy: Optional(
      Enum(['Always', 'IfNotPresent', 'Never'] as const, {
        description: 'Image pull policy of the relay container.',
      }),
    ),
    imagePullSecrets: Optional(
      Arr(Obj({ name: LocalObjectName('Secret name.') }, { description: 'A pull Secret.' }), {
        description: 'Pull Secrets for the relay image.',
      }),
    ),
    resources: Optional(
      Obj(
        {
          requests: Optional(
            QuantityMap({ description: 'Minimum resources, e.g. cpu: 100m, memory: 128Mi.' }),
          ),
          limits: Optional(QuantityMap({ description: 'Maximum resources.' })),
        },
        { description: 'Compute resources of the relay container.' },
      ),
    ),
    nodeSelector: Optional(StringMap({ description: 'Node labels the pods must match.' })),
    tolerations: Optional(
      Arr(
        Opaque({ description: 'A core/v1 Toleration (key, operator, value, effect, tolerationSeconds).' }),
        { description: 'Pod tolerations.' },
      ),
    ),
    affinity: Optional(Opaque({ description: 'A core/v1 Affinity for the pods.' })),
    podAnnotations: Optional(StringMap({ description: 'Extra annotations on the pods.' })),
    podLabels: Optional(StringMap({ description: 'Extra labels on the pods.' })),
    listeners: Listeners,
    service: Obj(
      {
        type: Enum(['ClusterIP', 'NodePort', 'LoadBalancer'] as const, {
          description: 'Type of the client Service.',
          default: 'ClusterIP',
        }),
        annotations: Optional(
          StringMap({ description: 'Annotations on the client Service (e.g. load balancer settings).' }),
        ),
        externalTrafficPolicy: Optional(
          Enum(['Cluster', 'Local'] as const, {
            description:
              'externalTrafficPolicy of a NodePort or LoadBalancer client Service. Local keeps the client address (no SNAT to the node) so the relay sees it, but only nodes running a relay pod receive traffic; Cluster (the Kubernetes default) spreads traffic over all nodes and hides client addresses behind node addresses.',
          }),
        ),
      },
      {
        description: 'The client Service in front of the pods.',
        default: {},
        'x-kubernetes-validations': [
          {
            rule: "!has(self.externalTrafficPolicy) || self.type != 'ClusterIP'",
            message: 'externalTrafficPolicy applies only to a NodePort or LoadBalancer Service',
            reason: 'FieldValueForbidden',
          },
        ],
      },
    ),
    tls: TlsSpec,
    users: Arr(SmtpUser, {
      description: 'SMTP AUTH users of the submission and smtps listeners.',
      default: [],
      maxItems: 1000,
      'x-kubernetes-list-type': 'map',
      'x-kubernetes-list-map-keys': ['name'],
    }),
    queue: QueueSpec,
    delivery: Obj(
      {
        route: Route('How mail leaves the relay unless its sending MailDomain has its own route.', 'direct'),
        heloName: Optional(
          Str({ description: 'Name sent in EHLO downstream (default: the pod hostname).', minLength: 1 }),
        ),
        concurrency: Int({ description: 'Deliveries in flight per pod.', minimum: 1, default: 100 }),
        shaping: ShapingSpec,
      },
      { description: 'Outbound delivery.', default: {} },
    ),
    limits: LimitsSpec,
    suppression: SuppressionSpec,
    fleetStore: Optional(FleetStoreSpec),
    monitoring: MonitoringSpec,
    drain: DrainSpec,
    logLevel: Enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const, {
      description: 'Relay log level.',
      default: 'info',
    }),
  },
  {
    description: 'Desired state of the relay fleet.',
    'x-kubernetes-validations': [
      {
        rule: '!(self.listeners.submission.enabled && self.listeners.submission.port == self.monitoring.metricsPort) && !(self.listeners.smtps.enabled && self.listeners.smtps.port == self.monitoring.metricsPort) && !(self.listeners.relay.enabled && self.listeners.relay.port == self.monitoring.metricsPort)',
        message: 'monitoring.metricsPort must differ from the enabled listener ports',
      },
    ],
  },
);

export const SmtpRelayStatus = Obj(
  {
    observedGeneration: Optional(ObservedGeneration),
    conditions: Optional(Conditions),
    replicas: Optional(
      Int({
        description: 'Pods that exist (the scale subresource reads this).',
        minimum: 0,
        format: 'int32',
      }),
    ),
    readyReplicas: Optional(Int({ description: 'Pods ready to accept mail.', minimum: 0, format: 'int32' })),
    selector: Optional(
      Str({ description: 'Label selector of the pods (for the scale subresource and HPA).' }),
    ),
    endpoints: Optional(
      Obj(
        {
          host: Str({ description: 'DNS name of the client Service.' }),
          ports: Arr(
            Obj(
              {
                name: Str({ description: 'Listener name: submission, smtps or relay.' }),
                port: Int({ description: 'Service port.' }),
              },
              { description: 'A listener port.' },
            ),
            { description: 'Listener ports on the client Service.' },
          ),
        },
        { description: 'Where clients connect.' },
      ),
    ),
    domains: Optional(
      Arr(Str({ description: 'A domain name.' }), {
        description: 'Domains of the MailDomains bound to this relay.',
      }),
    ),
    credentialsSecret: Optional(
      Str({ description: 'Secret holding the generated SMTP user passwords (keys are user names).' }),
    ),
    caSecret: Optional(Str({ description: 'Secret whose ca.crt clients use to verify the listeners.' })),
    drainingPods: Optional(
      Arr(Str({ description: 'A pod name.' }), {
        description: 'Pods being drained before scale-down or deletion.',
      }),
    ),
  },
  { description: 'Observed state of the relay fleet.' },
);

export type SmtpRelaySpec = Static<typeof SmtpRelaySpec>;
export type SmtpRelayStatus = Static<typeof SmtpRelayStatus>;
export type { Condition, RouteT };

export interface SmtpRelay {
  apiVersion: 'mailfleet.dev/v1alpha1';
  kind: 'SmtpRelay';
  metadata: ObjectMeta;
  spec: SmtpRelaySpec;
  status?: SmtpRelayStatus;
}

export interface ObjectMeta {
  name: string;
  namespace: string;
  uid?: string;
  generation?: number;
  resourceVersion?: string;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  finalizers?: string[];
  ownerReferences?: OwnerReference[];
}

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}
