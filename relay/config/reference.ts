/**
 * The configuration reference table of docs/relay-config.md, generated from the schema (schema.ts is
 * the one source of truth: field names, types, defaults, limits and descriptions). A unit test fails
 * when the doc is stale; `npm run docs:relay` rewrites it.
 */
import { RelayConfig } from './schema.js';

type Schema = Record<string, unknown> & {
  type?: string;
  properties?: Record<string, Schema>;
  required?: string[];
  items?: Schema;
  enum?: unknown[];
  default?: unknown;
  description?: string;
};

const cell = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
const code = (s: string) => '`' + s.replace(/`/g, "'") + '`';

function typeOf(s: Schema): string {
  if (s.enum) return 'string';
  if (s.type === 'array') return `list of ${s.items ? typeOf(s.items) : 'any'}`;
  return s.type ?? 'any';
}

function constraints(s: Schema): string[] {
  const out: string[] = [];
  if (s.enum) out.push(`one of ${s.enum.map((v) => code(String(v))).join(', ')}`);
  if (typeof s.minimum === 'number') out.push(`≥ ${s.minimum}`);
  if (typeof s.maximum === 'number') out.push(`≤ ${s.maximum}`);
  if (typeof s.minItems === 'number' && s.minItems > 0) out.push(`at least ${s.minItems} item(s)`);
  return out;
}

function rows(s: Schema, path: string, required: boolean, out: string[]): void {
  const isObject = s.type === 'object' || (s.type === 'array' && s.items?.type === 'object');
  const def =
    s.default !== undefined && !(typeof s.default === 'object' && !Array.isArray(s.default))
      ? code(JSON.stringify(s.default))
      : '';
  const checks = constraints(s);
  const desc = [s.description, checks.length ? `(${checks.join('; ')})` : ''].filter(Boolean).join(' ');
  const req = required && s.default === undefined ? 'yes' : '';
  out.push(`| ${code(path)} | ${isObject ? 'section' : typeOf(s)} | ${req} | ${def} | ${cell(desc)} |`);
  const inner = s.type === 'array' ? s.items : s;
  if (!inner?.properties) return;
  const prefix = s.type === 'array' ? `${path}[]` : path;
  const requiredSet = new Set(inner.required ?? []);
  for (const [name, child] of Object.entries(inner.properties))
    rows(child, `${prefix}.${name}`, requiredSet.has(name), out);
}

export function configReferenceTable(): string {
  const root = RelayConfig as unknown as Schema;
  const out = ['| field | type | required | default | description |', '|---|---|---|---|---|'];
  const required = new Set(root.required ?? []);
  for (const [name, child] of Object.entries(root.properties ?? {}))
    rows(child, name, required.has(name), out);
  return out.join('\n') + '\n';
}

export const REFERENCE_BEGIN =
  '<!-- BEGIN generated from relay/config/schema.ts (npm run docs:relay); do not edit -->';
export const REFERENCE_END = '<!-- END generated -->';

/** `doc` with the text between the markers `begin` and `end` replaced by `generated`. */
export function replaceGenerated(
  doc: string,
  begin: string,
  end: string,
  generated: string,
  what: string,
): string {
  const from = doc.indexOf(begin);
  const to = doc.indexOf(end);
  if (from < 0 || to < from) throw new Error(`the ${what} markers are missing from the document`);
  return doc.slice(0, from + begin.length) + '\n' + generated + doc.slice(to);
}

/** `doc` with the text between the markers replaced by the current table. */
export function withReference(doc: string): string {
  return replaceGenerated(doc, REFERENCE_BEGIN, REFERENCE_END, configReferenceTable(), 'reference');
}
