/** Schema pieces both kinds share: API group, conditions, Secret references, smarthost routes. */
import { Arr, Enum, Int, NAME_PATTERN, Obj, Optional, Str, type Static } from './schema.js';

export const GROUP = 'mailfleet.dev';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;
export const CATEGORY = 'mailfleet';
/** The server-side apply field manager of every write the operator makes. */
export const FIELD_MANAGER = 'mailfleet';

/** metav1.Condition, as in every Kubernetes API. */
export const Condition = Obj(
  {
    type: Str({
      description: 'Type of condition in CamelCase, e.g. Ready, Progressing, Degraded.',
      maxLength: 316,
      pattern:
        '^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$',
    }),
    status: Enum(['True', 'False', 'Unknown'] as const, { description: 'Status of the condition.' }),
    observedGeneration: Optional(
      Int({
        description: 'The .metadata.generation the condition was computed from.',
        minimum: 0,
        format: 'int64',
      }),
    ),
    lastTransitionTime: Str({
      description:
        'When the condition last changed status (RFC 3339); unchanged while the status stays the same.',
      format: 'date-time',
    }),
    reason: Str({
      description: 'Programmatic identifier in CamelCase for the last transition.',
      minLength: 1,
      maxLength: 1024,
      pattern: '^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$',
    }),
    message: Str({
      description: 'Human-readable details: what is happening and what to fix.',
      maxLength: 32768,
    }),
  },
  { description: 'One aspect of the object state, in the shape of metav1.Condition.' },
);
export type Condition = Static<typeof Condition>;

export const Conditions = Arr(Condition, {
  description:
    'Current state: Ready, Progressing and Degraded on every object, plus kind-specific types (TLSReady, Draining, FleetStore, DKIMReady, DNSVerified).',
  'x-kubernetes-list-type': 'map',
  'x-kubernetes-list-map-keys': ['type'],
  maxItems: 32,
});

export const ObservedGeneration = Int({
  description: 'The .metadata.generation the status was last computed from.',
  minimum: 0,
  format: 'int64',
});

export const LocalObjectName = (description: string) =>
  Str({ description, minLength: 1, maxLength: 253, pattern: NAME_PATTERN });

export const SecretKeyRef = (description: string, defaultKey: string) =>
  Obj(
    {
      name: LocalObjectName('Name of a Secret in the same namespace.'),
      key: Str({
        description: `Key in the Secret (default "${defaultKey}").`,
        default: defaultKey,
        minLength: 1,
        maxLength: 253,
        pattern: '^[-._a-zA-Z0-9]+$',
      }),
    },
    { description },
  );
export type SecretKeyRef = { name: string; key: string };

export const SmarthostTlsModes = ['implicit', 'starttls', 'opportunistic', 'none'] as const;

export const Smarthost = Obj(
  {
    host: Str({ description: 'Smarthost DNS name or IP address.', minLength: 1, maxLength: 253 }),
    port: Int({ description: 'Smarthost port.', minimum: 1, maximum: 65535, default: 587 }),
    tls: Enum(SmarthostTlsModes, {
      description:
        'implicit: TLS from connect (usually port 465); starttls: STARTTLS required; opportunistic: STARTTLS if offered; none: never (only for trusted networks).',
      default: 'starttls',
    }),
    credentialsSecretRef: Optional(
      Obj(
        {
          name: LocalObjectName(
            'Name of a Secret in the same namespace holding keys "username" and "password".',
          ),
        },
        {
          description:
            'Credentials for AUTH at the smarthost. The operator reads this Secret and never changes it.',
        },
      ),
    ),
    caSecretRef: Optional(
      SecretKeyRef(
        'A CA bundle (PEM) to verify the smarthost; without it the system CAs are used.',
        'ca.crt',
      ),
    ),
  },
  { description: 'An upstream relay all mail of this route is handed to.' },
);
export type Smarthost = Static<typeof Smarthost>;

export const RouteModes = ['direct', 'smarthost'] as const;

export const Route = (description: string, defaultMode?: 'direct') =>
  Obj(
    {
      mode: Enum(RouteModes, {
        description:
          'direct: deliver to the MX hosts of each recipient domain; smarthost: hand all mail to the upstream relay in smarthost.',
        ...(defaultMode ? { default: defaultMode } : {}),
      }),
      smarthost: Optional(Smarthost),
    },
    {
      description,
      ...(defaultMode ? { default: {} } : {}),
      'x-kubernetes-validations': [
        {
          rule: "self.mode != 'smarthost' || has(self.smarthost)",
          message: 'smarthost is required when mode is smarthost',
          reason: 'FieldValueRequired',
        },
        {
          rule: "self.mode != 'direct' || !has(self.smarthost)",
          message: 'smarthost must not be set when mode is direct',
          reason: 'FieldValueForbidden',
        },
      ],
    },
  );
export type Route = { mode: 'direct' | 'smarthost'; smarthost?: Smarthost };
