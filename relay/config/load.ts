/**
 * Loading the relay's configuration: YAML text → defaults → schema validation → cross-field checks →
 * paths resolved. Every error names the field by its path ("limits.maxRecipients") and, when the value
 * came from a file, the line ("relay.yaml:12"). All problems are reported at once, not the first only.
 *
 * Cross-field rules the schema cannot express:
 *  - at least one listener; submission and smtps need `tls` and `auth`;
 *  - relay.allowedNetworks, limits.exemptNetworks and every proxyProtocol.trustedProxies entry are
 *    CIDRs without host bits;
 *  - a route with mode smarthost has a `smarthost` (delivery.route and every domain's route);
 *  - domain names are unique (case-insensitive, IDNs compared as A-labels);
 *  - no two listeners (admin included) bind the same address and port;
 *  - dns.servers entries are "ip", "ip:port" or "[ipv6]:port";
 *  - hostname is a plain host name (it goes into greetings, Received headers and Message-IDs).
 *
 * Relative paths (spool.dir and every *File) are resolved against the config file's directory, or the
 * working directory for the embedded default. Referenced files are listed so config/watch.ts can watch
 * them; their contents are read by main.ts (users, TLS), not here.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Value } from 'typebox/value';
import YAML, { LineCounter, isNode } from 'yaml';
import { asciiDomain } from '../policy/address.js';
import { parseNetworks } from '../policy/network.js';
import { normaliseServers } from '../dns/resolver.js';
import { RelayConfig, type RouteConfig } from './schema.js';

export interface LoadedConfig {
  config: RelayConfig;
  /** Absolute path of the config file; undefined for the embedded default. */
  file?: string;
  /** Absolute paths of the files the config references, by field path (watched for changes). */
  files: { field: string; path: string }[];
}

export class ConfigError extends Error {
  constructor(
    readonly source: string,
    readonly problems: string[],
  ) {
    super(`invalid configuration (${source}):\n  - ${problems.join('\n  - ')}`);
  }
}

type Segment = string | number;
type Locate = (segments: Segment[]) => string;

/** "domains[0].name" */
export function fieldPath(segments: readonly Segment[]): string {
  return segments.reduce<string>(
    (acc, s) => (typeof s === 'number' ? `${acc}[${s}]` : acc ? `${acc}.${s}` : s),
    '',
  );
}

function pointerSegments(pointer: string): Segment[] {
  if (pointer === '') return [];
  return pointer
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
}

/** The schema node at a typebox schemaPath ("#/properties/limits/properties/maxRecipients"). */
function schemaAt(schemaPath: string): { description?: string } | undefined {
  let node: unknown = RelayConfig;
  for (const part of schemaPath.replace(/^#\/?/, '').split('/')) {
    if (part === '') continue;
    if (typeof node !== 'object' || node === null) return undefined;
    node = (node as Record<string, unknown>)[part];
  }
  return typeof node === 'object' && node !== null ? node : undefined;
}

interface SchemaError {
  instancePath: string;
  schemaPath: string;
  keyword: string;
  message: string;
  params: object;
}

function describeSchemaError(e: SchemaError, locate: Locate): string[] {
  const at = pointerSegments(e.instancePath);
  const where = (segs: Segment[]) => `${locate(segs)}${fieldPath(segs) || '(top level)'}`;
  switch (e.keyword) {
    case 'boolean': // the per-property echo of additionalProperties: false
      return [];
    case 'required':
      return (e.params as { requiredProperties: string[] }).requiredProperties.map(
        (p) => `${where([...at, p])}: required field is missing`,
      );
    case 'additionalProperties':
      return (e.params as { additionalProperties: string[] }).additionalProperties.map(
        (p) => `${where([...at, p])}: unknown field`,
      );
    case 'enum':
      return [
        `${where(at)}: must be one of ${(e.params as { allowedValues: unknown[] }).allowedValues
          .map((v) => JSON.stringify(v))
          .join(', ')}`,
      ];
    case 'pattern': {
      const description = schemaAt(e.schemaPath.replace(/\/pattern$/, ''))?.description;
      return [`${where(at)}: has the wrong format${description ? ` (${description})` : ''}`];
    }
    default:
      return [`${where(at)}: ${e.message}`];
  }
}

function smarthostChecks(route: RouteConfig | undefined, at: Segment[], problems: string[]): void {
  if (route?.mode === 'smarthost' && !route.smarthost)
    problems.push(`${fieldPath([...at, 'smarthost'])}: required when mode is smarthost`);
}

/** Every CIDR list: allowedNetworks, exemptNetworks, each listener's trusted proxies. */
function networkProblems(c: RelayConfig): string[] {
  const lists: [string, readonly string[] | undefined][] = [
    ['listeners.relay.allowedNetworks', c.listeners.relay?.allowedNetworks],
    ['limits.exemptNetworks', c.limits.exemptNetworks],
    ...(['submission', 'smtps', 'relay'] as const).map((name): [string, readonly string[] | undefined] => [
      `listeners.${name}.proxyProtocol.trustedProxies`,
      c.listeners[name]?.proxyProtocol?.trustedProxies,
    ]),
  ];
  return lists.flatMap(([field, cidrs]) => parseNetworks(cidrs ?? []).errors.map((e) => `${field}${e}`));
}

/** Cross-field rules (see the module header). Returns problems without line numbers. */
export function crossFieldProblems(c: RelayConfig): string[] {
  const problems: string[] = [];
  const { submission, smtps, relay } = c.listeners;
  if (!submission && !smtps && !relay)
    problems.push('listeners: at least one of submission, smtps, relay must be set');
  for (const [name, l] of [
    ['submission', submission],
    ['smtps', smtps],
  ] as const) {
    if (!l) continue;
    if (!c.tls) problems.push(`listeners.${name}: needs the tls section (certificate and key)`);
    if (!c.auth) problems.push(`listeners.${name}: needs the auth section (users file)`);
  }
  problems.push(...networkProblems(c));
  smarthostChecks(c.delivery.route, ['delivery', 'route'], problems);
  const seen = new Map<string, number>();
  c.domains.forEach((d, i) => {
    smarthostChecks(d.route, ['domains', i, 'route'], problems);
    const key = asciiDomain(d.name) ?? d.name.toLowerCase();
    const first = seen.get(key);
    if (first !== undefined) problems.push(`domains[${i}].name: "${d.name}" is already domains[${first}]`);
    else seen.set(key, i);
  });
  const binds = new Map<string, string>();
  const bindsOf: [string, { address: string; port: number } | undefined][] = [
    ['listeners.submission', submission],
    ['listeners.smtps', smtps],
    ['listeners.relay', relay],
    ['admin', c.admin],
  ];
  for (const [field, l] of bindsOf) {
    if (!l || l.port === 0) continue;
    const key = `${l.address}:${l.port}`;
    const other = binds.get(key);
    if (other) problems.push(`${field}: ${key} is already used by ${other}`);
    else binds.set(key, field);
  }
  try {
    normaliseServers(c.dns.servers);
  } catch (err) {
    problems.push(`dns.servers: ${(err as Error).message}`);
  }
  if (!/^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$/.test(c.hostname))
    problems.push('hostname: must be a host name (letters, digits, dots and hyphens)');
  return problems;
}

/** The path-valued fields of a config, as [field, getter, setter]. */
function pathFields(c: RelayConfig): { field: string; get: () => string; set: (v: string) => void }[] {
  const out: { field: string; get: () => string; set: (v: string) => void }[] = [];
  const add = <T extends object, K extends keyof T>(field: string, obj: T | undefined, key: K) => {
    if (obj && typeof obj[key] === 'string')
      out.push({
        field,
        get: () => obj[key] as string,
        set: (v) => ((obj as Record<K, unknown>)[key] = v),
      });
  };
  add('spool.dir', c.spool, 'dir');
  add('tls.certFile', c.tls, 'certFile');
  add('tls.keyFile', c.tls, 'keyFile');
  add('auth.usersFile', c.auth, 'usersFile');
  add('admin.tokenFile', c.admin, 'tokenFile');
  add('handoff.passwordFile', c.handoff, 'passwordFile');
  add('handoff.caFile', c.handoff, 'caFile');
  add('fleetStore.usernameFile', c.fleetStore, 'usernameFile');
  add('fleetStore.passwordFile', c.fleetStore, 'passwordFile');
  add('fleetStore.caFile', c.fleetStore, 'caFile');
  const routes: [string, RouteConfig | undefined][] = [['delivery.route', c.delivery.route]];
  c.domains.forEach((d, i) => {
    add(`domains[${i}].dkim.keyFile`, d.dkim, 'keyFile');
    routes.push([`domains[${i}].route`, d.route]);
  });
  for (const [field, route] of routes) {
    add(`${field}.smarthost.caFile`, route?.smarthost, 'caFile');
    add(`${field}.smarthost.auth.usernameFile`, route?.smarthost?.auth, 'usernameFile');
    add(`${field}.smarthost.auth.passwordFile`, route?.smarthost?.auth, 'passwordFile');
  }
  return out;
}

/**
 * Validates a parsed config object (defaults are filled in place on a copy). `baseDir` resolves
 * relative paths; `locate` prefixes a problem with where the field is ("relay.yaml:12: ").
 */
export function validateConfig(
  raw: unknown,
  opts: { source: string; baseDir: string; file?: string; locate?: Locate },
): LoadedConfig {
  const locate = opts.locate ?? (() => '');
  if (raw === null || raw === undefined || typeof raw !== 'object' || Array.isArray(raw))
    throw new ConfigError(opts.source, [
      `${locate([])}the configuration must be a YAML mapping (key: value)`,
    ]);
  const value = structuredClone(raw);
  Value.Default(RelayConfig, value);
  const schemaProblems = [...Value.Errors(RelayConfig, value)].flatMap((e) =>
    describeSchemaError(e as SchemaError, locate),
  );
  if (schemaProblems.length > 0) throw new ConfigError(opts.source, schemaProblems);
  const config = value as RelayConfig;
  const cross = crossFieldProblems(config);
  if (cross.length > 0) {
    throw new ConfigError(
      opts.source,
      cross.map((p) => {
        const field = p.slice(0, p.indexOf(':'));
        return `${locate(pathToSegments(field))}${p}`;
      }),
    );
  }
  const files: LoadedConfig['files'] = [];
  for (const f of pathFields(config)) {
    const resolved = path.resolve(opts.baseDir, f.get());
    f.set(resolved);
    if (f.field !== 'spool.dir') files.push({ field: f.field, path: resolved });
  }
  return { config, file: opts.file, files };
}

function pathToSegments(field: string): Segment[] {
  const out: Segment[] = [];
  for (const m of field.matchAll(/([^.[\]]+)|\[(\d+)\]/g))
    out.push(m[2] !== undefined ? Number(m[2]) : m[1]!);
  return out;
}

/** Parses YAML text and validates it; problems carry "<source>:<line>: " prefixes. */
export function parseConfig(
  text: string,
  opts: { source: string; baseDir: string; file?: string },
): LoadedConfig {
  const lineCounter = new LineCounter();
  const doc = YAML.parseDocument(text, { lineCounter, prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0)
    throw new ConfigError(
      opts.source,
      doc.errors.map(
        (e) => `${opts.source}:${e.linePos?.[0]?.line ?? '?'}: YAML: ${e.message.split('\n')[0]}`,
      ),
    );
  const locate: Locate = (segments) => {
    for (let n = segments.length; n >= 0; n--) {
      const node = doc.getIn(segments.slice(0, n), true);
      if (isNode(node) && node.range) return `${opts.source}:${lineCounter.linePos(node.range[0]).line}: `;
    }
    return `${opts.source}: `;
  };
  return validateConfig(doc.toJS() as unknown, { ...opts, locate });
}

/** Reads and validates a config file; relative paths resolve against its directory. */
export async function loadConfigFile(file: string): Promise<LoadedConfig> {
  const absolute = path.resolve(file);
  let text: string;
  try {
    text = await readFile(absolute, 'utf8');
  } catch (err) {
    throw new ConfigError(file, [`cannot read ${absolute}: ${(err as Error).message}`]);
  }
  return parseConfig(text, {
    source: path.basename(absolute),
    baseDir: path.dirname(absolute),
    file: absolute,
  });
}
