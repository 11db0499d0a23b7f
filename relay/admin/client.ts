/**
 * The client side of the admin port for the command-line tools (`queue`, `drain`, `suppression`) that
 * talk to a LIVE relay, run beside it (e.g. `kubectl exec`): where the relay is, its token, one JSON call.
 *
 * Where the relay is: --admin URL, else the admin address of --config FILE (0.0.0.0/:: → loopback),
 * else http://127.0.0.1:9091. The bearer token: --token-file FILE, else the config's admin.tokenFile.
 * Exit codes: 0 ok, 1 the relay said no (or could not be reached), 2 usage.
 */
import fs from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { loadConfigFile } from '../config/load.js';

export const EXIT_FAIL = 1;
export const EXIT_USAGE = 2;
const DEFAULT_ADMIN = 'http://127.0.0.1:9091';

export const ADMIN_OPTIONS_USAGE = `Options (all of these commands):
  --admin URL         the relay's admin server (default: from --config, else ${DEFAULT_ADMIN})
  --config FILE       the relay's configuration file (for its admin address and token file;
                      default: $MAILFLEET_RELAY_CONFIG, which relay pods set)
  --token-file FILE   file holding the admin bearer token (default: admin.tokenFile from --config)
`;

const commonOptions = {
  admin: { type: 'string' },
  config: { type: 'string' },
  'token-file': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

export interface Target {
  base: string;
  token?: string;
}

export class CliError extends Error {
  constructor(
    message: string,
    readonly code = EXIT_FAIL,
  ) {
    super(message);
  }
}

export type Out = (line: string) => void;

/** Runs a command body: a CliError is printed (with the usage for usage errors) and becomes the exit code. */
export async function runCli(usageText: string, body: () => Promise<number>, out: Out): Promise<number> {
  try {
    return await body();
  } catch (err) {
    if (!(err instanceof CliError)) throw err;
    console.error(`mailfleet-relay: ${err.message}`);
    if (err.code === EXIT_USAGE) out(usageText);
    return err.code;
  }
}

export function parseAdminArgs<T extends Record<string, { type: 'string' | 'boolean'; multiple?: boolean }>>(
  args: string[],
  extra: T,
) {
  try {
    return parseArgs({ args, options: { ...commonOptions, ...extra }, allowPositionals: true });
  } catch (err) {
    throw new CliError((err as Error).message, EXIT_USAGE);
  }
}

export async function resolveTarget(values: {
  admin?: string;
  config?: string;
  'token-file'?: string;
}): Promise<Target> {
  let base = values.admin;
  let tokenFile = values['token-file'];
  if (values.config) {
    let config;
    try {
      ({ config } = await loadConfigFile(values.config));
    } catch (err) {
      throw new CliError(`cannot read ${values.config}: ${(err as Error).message}`);
    }
    if (!base) {
      if (config.admin.port === 0)
        throw new CliError('the config picks a random admin port; pass --admin URL');
      const host = ['0.0.0.0', '::', ''].includes(config.admin.address) ? '127.0.0.1' : config.admin.address;
      base = `http://${host.includes(':') ? `[${host}]` : host}:${config.admin.port}`;
    }
    tokenFile ??= config.admin.tokenFile;
  }
  const token = tokenFile ? (await fs.readFile(tokenFile, 'utf8').catch(fail(tokenFile))).trim() : undefined;
  return { base: (base ?? DEFAULT_ADMIN).replace(/\/+$/, ''), ...(token ? { token } : {}) };
}

function fail(file: string) {
  return (err: Error): never => {
    throw new CliError(`cannot read ${file}: ${err.message}`);
  };
}

export async function call(target: Target, method: string, path: string, body?: unknown): Promise<unknown> {
  let res: Response;
  try {
    res = await fetch(target.base + path, {
      method,
      headers: {
        ...(target.token ? { authorization: `Bearer ${target.token}` } : {}),
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
  } catch (err) {
    const cause = (err as { cause?: Error }).cause?.message ?? (err as Error).message;
    throw new CliError(`cannot reach the relay at ${target.base}: ${cause}`);
  }
  const text = await res.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : {};
  } catch {
    throw new CliError(`${method} ${path}: HTTP ${res.status}, not JSON: ${text.slice(0, 200)}`);
  }
  if (!res.ok) {
    const error = (json as { error?: string }).error ?? `HTTP ${res.status}`;
    throw new CliError(res.status === 401 ? `${error} (use --token-file or --config)` : error);
  }
  return json;
}
