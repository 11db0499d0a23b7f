/* eslint-disable @typescript-eslint/no-explicit-any -- walks untyped JSON schema */
/**
 * A checker for Kubernetes' structural schema rules (apiextensions.k8s.io/v1), plus the project rule that
 * every field carries a description. Returns the problems with their paths; empty means OK.
 */
const ALLOWED = new Set([
  'description',
  'type',
  'format',
  'title',
  'default',
  'maximum',
  'exclusiveMaximum',
  'minimum',
  'exclusiveMinimum',
  'maxLength',
  'minLength',
  'pattern',
  'maxItems',
  'minItems',
  'uniqueItems',
  'multipleOf',
  'enum',
  'maxProperties',
  'minProperties',
  'required',
  'items',
  'allOf',
  'oneOf',
  'anyOf',
  'not',
  'properties',
  'additionalProperties',
  'nullable',
  'example',
  'externalDocs',
  'x-kubernetes-preserve-unknown-fields',
  'x-kubernetes-embedded-resource',
  'x-kubernetes-int-or-string',
  'x-kubernetes-list-map-keys',
  'x-kubernetes-list-type',
  'x-kubernetes-map-type',
  'x-kubernetes-validations',
]);
const TYPES = new Set(['object', 'array', 'string', 'integer', 'number', 'boolean']);

type Node = Record<string, any>;

export function structuralProblems(schema: Node, path = '', inJunctor = false): string[] {
  const out: string[] = [];
  for (const k of Object.keys(schema))
    if (!ALLOWED.has(k)) out.push(`${path}: keyword "${k}" is not allowed in a CRD schema`);
  const intOrString = schema['x-kubernetes-int-or-string'] === true;
  const preserve = schema['x-kubernetes-preserve-unknown-fields'] === true;
  if (!inJunctor) {
    if (!intOrString && !TYPES.has(schema.type))
      out.push(`${path}: missing or bad type (${String(schema.type)})`);
    if (!schema.description && path !== '' && !path.endsWith('.metadata'))
      out.push(`${path}: missing description`);
  } else {
    for (const k of ['description', 'default', 'additionalProperties', 'nullable']) {
      if (k in schema) out.push(`${path}: "${k}" inside anyOf/allOf/oneOf/not`);
    }
  }
  if (schema.properties && schema.additionalProperties !== undefined)
    out.push(`${path}: properties and additionalProperties together`);
  if (schema.additionalProperties === false)
    out.push(`${path}: additionalProperties: false is not structural`);
  if (intOrString) {
    const a = JSON.stringify(schema.anyOf);
    if (a !== JSON.stringify([{ type: 'integer' }, { type: 'string' }]))
      out.push(`${path}: int-or-string needs anyOf [integer, string]`);
  } else if (schema.anyOf || schema.oneOf || schema.allOf || schema.not) {
    out.push(`${path}: junctors are only used for int-or-string here`);
  }
  if (
    schema.type === 'object' &&
    !schema.properties &&
    !schema.additionalProperties &&
    !preserve &&
    !path.endsWith('.metadata')
  ) {
    out.push(`${path}: object without properties, additionalProperties or preserve-unknown-fields`);
  }
  if (schema.type === 'array' && !schema.items) out.push(`${path}: array without items`);
  if (Array.isArray(schema.required)) {
    for (const r of schema.required)
      if (!schema.properties?.[r]) out.push(`${path}: required "${r}" is not a property`);
  }
  if (schema.enum && schema.type === 'string' && !schema.enum.every((e: unknown) => typeof e === 'string'))
    out.push(`${path}: enum values must match type`);
  if (schema['x-kubernetes-list-type'] === 'map') {
    const keys: string[] = schema['x-kubernetes-list-map-keys'] ?? [];
    for (const k of keys)
      if (!schema.items?.required?.includes(k) && schema.items?.properties?.[k]?.default === undefined)
        out.push(`${path}: list map key "${k}" must be required or defaulted`);
  }
  for (const [k, v] of Object.entries(schema.properties ?? {}))
    out.push(...structuralProblems(v as Node, `${path}.${k}`));
  if (schema.items) out.push(...structuralProblems(schema.items, `${path}[]`));
  if (schema.additionalProperties && typeof schema.additionalProperties === 'object') {
    out.push(
      ...structuralProblems(schema.additionalProperties, `${path}{}`, false).filter(
        (p) => !p.endsWith('missing description'),
      ),
    );
  }
  for (const j of ['anyOf', 'oneOf', 'allOf'])
    for (const [i, s] of (schema[j] ?? []).entries())
      out.push(...structuralProblems(s, `${path}.${j}[${i}]`, true));
  return out;
}
