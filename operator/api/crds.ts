/**
 * The CustomResourceDefinitions, built from the typebox schemas of operator/api. operator/gen writes them
 * to crds/ and to the chart; a unit test fails when those files are stale.
 */
import { CATEGORY, GROUP, VERSION } from './common.js';
import { MailDomainSpec, MailDomainStatus } from './maildomain.js';
import { SmtpRelaySpec, SmtpRelayStatus } from './smtprelay.js';

export interface PrinterColumn {
  name: string;
  type: 'string' | 'integer' | 'number' | 'boolean' | 'date';
  jsonPath: string;
  description: string;
  priority?: number;
}

export interface KindDef {
  kind: string;
  plural: string;
  singular: string;
  shortNames: string[];
  description: string;
  spec: unknown;
  status: unknown;
  scale?: { specReplicasPath: string; statusReplicasPath: string; labelSelectorPath: string };
  /** CEL rules on the whole object (only metadata.name is visible of metadata). */
  rootRules?: Array<{ rule: string; message: string }>;
  printerColumns: PrinterColumn[];
}

const condition = (type: string, field: 'status' | 'reason' | 'message') =>
  `.status.conditions[?(@.type=="${type}")].${field}`;

export const SMTP_RELAY_KIND: KindDef = {
  kind: 'SmtpRelay',
  plural: 'smtprelays',
  singular: 'smtprelay',
  shortNames: ['smtpr'],
  description:
    'SmtpRelay is a fleet of SMTP relay pods with a durable queue per pod, SMTP AUTH users, TLS, and delivery by smarthost or direct MX. MailDomains bind sending domains to it.',
  spec: SmtpRelaySpec,
  status: SmtpRelayStatus,
  rootRules: [
    {
      rule: 'self.metadata.name.size() <= 40',
      message: 'SmtpRelay names are at most 40 characters: pod, Service and Secret names derive from them',
    },
  ],
  scale: {
    specReplicasPath: '.spec.replicas',
    statusReplicasPath: '.status.replicas',
    labelSelectorPath: '.status.selector',
  },
  printerColumns: [
    { name: 'Replicas', type: 'integer', jsonPath: '.spec.replicas', description: 'Desired pods.' },
    { name: 'Ready', type: 'integer', jsonPath: '.status.readyReplicas', description: 'Ready pods.' },
    {
      name: 'Status',
      type: 'string',
      jsonPath: condition('Ready', 'status'),
      description: 'Ready condition.',
    },
    { name: 'Reason', type: 'string', jsonPath: condition('Ready', 'reason'), description: 'Why.' },
    {
      name: 'Fleet',
      type: 'string',
      jsonPath: condition('FleetStore', 'reason'),
      description:
        'Where limits are decided (FleetStore condition): Shared, Degraded, PerPod, Pending, NoAnswer.',
    },
    {
      name: 'Endpoint',
      type: 'string',
      jsonPath: '.status.endpoints.host',
      description: 'Client Service name.',
      priority: 1,
    },
    { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp', description: 'Age.' },
  ],
};

export const MAIL_DOMAIN_KIND: KindDef = {
  kind: 'MailDomain',
  plural: 'maildomains',
  singular: 'maildomain',
  shortNames: ['maild'],
  description:
    'MailDomain is a sending domain bound to one SmtpRelay: who may send as it, its DKIM key, its route, and the DNS records to publish (status).',
  spec: MailDomainSpec,
  status: MailDomainStatus,
  printerColumns: [
    { name: 'Domain', type: 'string', jsonPath: '.spec.domain', description: 'Sending domain.' },
    { name: 'Relay', type: 'string', jsonPath: '.spec.relayRef.name', description: 'Bound SmtpRelay.' },
    {
      name: 'Status',
      type: 'string',
      jsonPath: condition('Ready', 'status'),
      description: 'Ready condition.',
    },
    {
      name: 'DNS',
      type: 'string',
      jsonPath: condition('DNSVerified', 'status'),
      description: 'DNS records found.',
    },
    {
      name: 'Reason',
      type: 'string',
      jsonPath: condition('Ready', 'reason'),
      description: 'Why.',
      priority: 1,
    },
    { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp', description: 'Age.' },
  ],
};

export const KINDS = [SMTP_RELAY_KIND, MAIL_DOMAIN_KIND];

/**
 * Plain JSON schema for the CRD: drops typebox's symbol keys, and takes fields that have a default out of
 * `required` (the API server fills them; kubectl explain should not call them required). The TypeScript
 * types keep them non-optional: objects are defaulted before the operator reads them.
 */
export function crdSchema(x: unknown): Record<string, unknown> {
  return dropDefaultedRequired(JSON.parse(JSON.stringify(x))) as Record<string, unknown>;
}

function dropDefaultedRequired(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(dropDefaultedRequired);
  if (!node || typeof node !== 'object') return node;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(node))
    out[k] = k === 'default' || k === 'enum' ? v : dropDefaultedRequired(v);
  // The API server validates a default as written (nested defaults are not applied to it, and CEL rules
  // run on it), so object defaults are written out in full.
  if (out.default && typeof out.default === 'object')
    out.default = fillDefaults(out, structuredClone(out.default));
  const props = out.properties as Record<string, { default?: unknown }> | undefined;
  if (Array.isArray(out.required) && props) {
    const req = (out.required as string[]).filter((f) => props[f]?.default === undefined);
    if (req.length) out.required = req;
    else delete out.required;
  }
  return out;
}

type SchemaNode = { properties?: Record<string, SchemaNode>; items?: SchemaNode; default?: unknown };

function fillDefaults(node: SchemaNode, value: unknown): unknown {
  if (Array.isArray(value)) return node.items ? value.map((v) => fillDefaults(node.items!, v)) : value;
  if (!value || typeof value !== 'object' || !node.properties) return value;
  const obj = value as Record<string, unknown>;
  for (const [k, p] of Object.entries(node.properties)) {
    if (obj[k] === undefined && p.default !== undefined) obj[k] = fillDefaults(p, structuredClone(p.default));
    else if (obj[k] !== undefined) obj[k] = fillDefaults(p, obj[k]);
  }
  return obj;
}
const plain = crdSchema;

export function buildCrd(def: KindDef): Record<string, unknown> {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: {
      name: `${def.plural}.${GROUP}`,
      labels: { 'app.kubernetes.io/name': 'mailfleet', 'app.kubernetes.io/part-of': 'mailfleet' },
    },
    spec: {
      group: GROUP,
      names: {
        kind: def.kind,
        listKind: `${def.kind}List`,
        plural: def.plural,
        singular: def.singular,
        shortNames: def.shortNames,
        categories: [CATEGORY],
      },
      scope: 'Namespaced',
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          schema: {
            openAPIV3Schema: {
              type: 'object',
              description: def.description,
              required: ['spec'],
              ...(def.rootRules ? { 'x-kubernetes-validations': def.rootRules } : {}),
              properties: {
                apiVersion: {
                  type: 'string',
                  description:
                    'APIVersion defines the versioned schema of this representation of an object. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources',
                },
                kind: {
                  type: 'string',
                  description:
                    'Kind is a string value representing the REST resource this object represents. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds',
                },
                metadata: { type: 'object' },
                spec: plain(def.spec),
                status: plain(def.status),
              },
            },
          },
          subresources: {
            status: {},
            ...(def.scale ? { scale: def.scale } : {}),
          },
          additionalPrinterColumns: def.printerColumns,
        },
      ],
    },
  };
}
