/**
 * Builders for CRD schemas: thin wrappers over typebox that make a description mandatory and emit only
 * what a *structural* Kubernetes schema allows (a `type` on every node, no `additionalProperties`
 * beside `properties`, maps as `additionalProperties`, int-or-string as `x-kubernetes-int-or-string`).
 *
 * The same schema object is (1) serialized into the CRD's openAPIV3Schema by operator/gen, (2) the source
 * of the TypeScript types through `Static`, and (3) used by the controllers to fill defaults on objects
 * that did not pass through the API server (unit fixtures). Symbol keys typebox adds are dropped by
 * JSON serialization.
 */
import Type, { type TSchema } from 'typebox';

export type { Static } from 'typebox';

/** A CEL rule on a node (`x-kubernetes-validations`). */
export type CelRule = {
  rule: string;
  message: string;
  reason?: 'FieldValueInvalid' | 'FieldValueForbidden' | 'FieldValueRequired' | 'FieldValueDuplicate';
  fieldPath?: string;
};

type Common = {
  description: string;
  'x-kubernetes-validations'?: CelRule[];
};

export const Str = (
  o: Common & { default?: string; minLength?: number; maxLength?: number; pattern?: string; format?: string },
) => Type.String(o);

export const Int = (
  o: Common & { default?: number; minimum?: number; maximum?: number; format?: 'int32' | 'int64' },
) => Type.Integer(o);

export const Bool = (o: Common & { default?: boolean }) => Type.Boolean(o);

export function Enum<const T extends readonly string[]>(values: T, o: Common & { default?: T[number] }) {
  return Type.Unsafe<T[number]>({ type: 'string', enum: [...values], ...o });
}

export function Obj<P extends Record<string, TSchema>>(
  properties: P,
  o: Common & { default?: object; 'x-kubernetes-map-type'?: 'atomic' | 'granular' },
) {
  return Type.Object(properties, o);
}

export function Arr<T extends TSchema>(
  items: T,
  o: Common & {
    default?: unknown[];
    minItems?: number;
    maxItems?: number;
    'x-kubernetes-list-type'?: 'atomic' | 'set' | 'map';
    'x-kubernetes-list-map-keys'?: string[];
  },
) {
  return Type.Array(items, o);
}

/** A map of string to string (labels, annotations, nodeSelector). */
export const StringMap = (o: Common) =>
  Type.Unsafe<Record<string, string>>({ type: 'object', additionalProperties: { type: 'string' }, ...o });

/** An integer or a string, e.g. a resource quantity or a port name. */
export const IntOrString = (o: Common & { pattern?: string }) =>
  Type.Unsafe<number | string>({
    'x-kubernetes-int-or-string': true,
    anyOf: [{ type: 'integer' }, { type: 'string' }],
    ...o,
  });

/** An object whose content Kubernetes does not prune or check (Kubernetes-native structures passed through). */
export const Opaque = <T = Record<string, unknown>>(o: Common) =>
  Type.Unsafe<T>({ type: 'object', 'x-kubernetes-preserve-unknown-fields': true, ...o });

export const Optional = Type.Optional;

/** A resource quantity ("1Gi", "500m", 2). */
export const Quantity = (o: Common & { default?: string }) =>
  IntOrString({ pattern: QUANTITY_PATTERN, ...o });
export const QUANTITY_PATTERN =
  '^(\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))))?$';

/** A map of resource name to quantity (container resources). */
export const QuantityMap = (o: Common) =>
  Type.Unsafe<Record<string, string | number>>({
    type: 'object',
    additionalProperties: {
      'x-kubernetes-int-or-string': true,
      anyOf: [{ type: 'integer' }, { type: 'string' }],
      pattern: QUANTITY_PATTERN,
    },
    ...o,
  });

/** RFC 1123 DNS subdomain with at least two labels (a mail domain), lower or upper case. */
export const DOMAIN_PATTERN = '^([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\\.)+[a-zA-Z]{2,63}$';
/** A Kubernetes object name (RFC 1123 subdomain). */
export const NAME_PATTERN = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$';
