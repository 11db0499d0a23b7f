/**
 * `mailfleet-relay queue …` and `mailfleet-relay drain …`: the operator's tools for a LIVE relay, run
 * beside it (e.g. `kubectl exec`). They talk to the running relay's admin HTTP API (admin-routes.ts)
 * and never open its spool, which belongs to the relay process alone.
 *
 *   queue list [--json]              what is queued (like `postqueue -p`; * marks a message in delivery)
 *   queue show ID [--json]           one message: state, recipients, last replies, headers
 *   queue retry ID | --all           deliver deferred mail now (like `postqueue -i ID` / `postqueue -f`)
 *   queue delete ID                  remove a message (like `postsuper -d ID`)
 *   drain [--peer HOST:PORT]… [--wait] [--status] [--json]
 *                                    stop accepting; deliver, or hand the queue to peers; --wait polls
 *                                    until drained; --status only shows the drain state
 *
 * Where the relay is: --admin URL, else the admin address of --config FILE (0.0.0.0/:: → loopback),
 * else http://127.0.0.1:9091. The bearer token: --token-file FILE, else the config's admin.tokenFile.
 * Exit codes: 0 ok, 1 the relay said no (or could not be reached), 2 usage.
 */
import fs from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { loadConfigFile } from '../config/load.js';
import type { DrainStatus } from './drain.js';
import type { QueueItem } from './queue-ops.js';

const EXIT_FAIL = 1;
const EXIT_USAGE = 2;
const DEFAULT_ADMIN = 'http://127.0.0.1:9091';

export const QUEUE_USAGE = `Usage:
  mailfleet-relay queue list [--json]          list queued mail (* = being delivered now)
  mailfleet-relay queue show ID [--json]       one message: state, recipients, last replies, headers
  mailfleet-relay queue retry ID | --all       deliver deferred mail now
  mailfleet-relay queue delete ID              remove a message from the queue
  mailfleet-relay drain [--peer HOST:PORT]... [--wait] [--status] [--json]
                                               stop accepting mail, then deliver the queue or hand it to peers

Options (all of these commands):
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

interface Target {
  base: string;
  token?: string;
}

class CliError extends Error {
  constructor(
    message: string,
    readonly code = EXIT_FAIL,
  ) {
    super(message);
  }
}

type Out = (line: string) => void;

/** `mailfleet-relay queue …` */
export async function queueCommand(args: string[], out: Out = console.log): Promise<number> {
  return run(async () => {
    const { values, positionals } = parse(args, { all: { type: 'boolean' } });
    if (values.help) return usage(out);
    const [action, id, ...extra] = positionals;
    if (extra.length) throw new CliError(`unexpected arguments: ${extra.join(' ')}`, EXIT_USAGE);
    const target = await resolveTarget(values);
    switch (action) {
      case 'list':
      case undefined: {
        const { messages } = (await call(target, 'GET', '/queue')) as { messages: QueueItem[] };
        if (values.json) out(JSON.stringify(messages, null, 2));
        else formatList(messages).forEach((l) => out(l));
        return 0;
      }
      case 'show': {
        if (!id) throw new CliError('queue show needs a queue ID', EXIT_USAGE);
        const item = (await call(
          target,
          'GET',
          `/queue/message?id=${encodeURIComponent(id)}`,
        )) as QueueItem & {
          headers: string;
        };
        if (values.json) out(JSON.stringify(item, null, 2));
        else formatShow(item).forEach((l) => out(l));
        return 0;
      }
      case 'retry': {
        if (values.all === (id !== undefined))
          throw new CliError('queue retry needs a queue ID or --all (not both)', EXIT_USAGE);
        const res = (await call(target, 'POST', '/queue/retry', id ? { id } : { all: true })) as {
          scheduled: number;
        };
        out(
          id ? `${id}: scheduled for delivery now` : `${res.scheduled} message(s) scheduled for delivery now`,
        );
        return 0;
      }
      case 'delete': {
        if (!id) throw new CliError('queue delete needs a queue ID', EXIT_USAGE);
        await call(target, 'POST', '/queue/delete', { id });
        out(`${id}: deleted`);
        return 0;
      }
      default:
        throw new CliError(`unknown queue action "${action}"`, EXIT_USAGE);
    }
  }, out);
}

/** `mailfleet-relay drain …` */
export async function drainCommand(
  args: string[],
  out: Out = console.log,
  opts: { pollMs?: number; maxPolls?: number } = {},
): Promise<number> {
  return run(async () => {
    const { values, positionals } = parse(args, {
      peer: { type: 'string', multiple: true },
      wait: { type: 'boolean' },
      status: { type: 'boolean' },
    });
    if (values.help) return usage(out);
    if (positionals.length) throw new CliError(`unexpected arguments: ${positionals.join(' ')}`, EXIT_USAGE);
    if (values.status && values.peer?.length) throw new CliError('--status takes no --peer', EXIT_USAGE);
    const target = await resolveTarget(values);
    let status = values.status
      ? ((await call(target, 'GET', '/drain')) as DrainStatus)
      : ((await call(
          target,
          'POST',
          '/drain',
          values.peer?.length ? { peers: values.peer } : {},
        )) as DrainStatus);
    const show = (s: DrainStatus) =>
      out(
        values.json
          ? JSON.stringify(s)
          : `${s.state}: ${s.queued} queued, ${s.handedOff} handed off, ${s.delivered} delivered, ${s.failed} failed hand-offs`,
      );
    show(status);
    if (!values.wait) return 0;
    const pollMs = opts.pollMs ?? 1000;
    for (let i = 0; status.state !== 'drained' && i < (opts.maxPolls ?? Number.MAX_SAFE_INTEGER); i++) {
      await new Promise((r) => setTimeout(r, pollMs));
      const next = (await call(target, 'GET', '/drain')) as DrainStatus;
      if (JSON.stringify(next) !== JSON.stringify(status)) show(next);
      status = next;
    }
    return status.state === 'drained' ? 0 : EXIT_FAIL;
  }, out);
}

async function run(body: () => Promise<number>, out: Out): Promise<number> {
  try {
    return await body();
  } catch (err) {
    if (!(err instanceof CliError)) throw err;
    console.error(`mailfleet-relay: ${err.message}`);
    if (err.code === EXIT_USAGE) out(QUEUE_USAGE);
    return err.code;
  }
}

function usage(out: Out): number {
  out(QUEUE_USAGE);
  return 0;
}

function parse<T extends Record<string, { type: 'string' | 'boolean'; multiple?: boolean }>>(
  args: string[],
  extra: T,
) {
  try {
    return parseArgs({ args, options: { ...commonOptions, ...extra }, allowPositionals: true });
  } catch (err) {
    throw new CliError((err as Error).message, EXIT_USAGE);
  }
}

async function resolveTarget(values: {
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

async function call(target: Target, method: string, path: string, body?: unknown): Promise<unknown> {
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

// ── output ─────────────────────────────────────────────────────────────────────────────────────────

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** "Tue Nov 24 03:21:36" (UTC), as postqueue prints arrival times. */
function arrival(iso: string): string {
  const d = new Date(iso);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${DAYS[d.getUTCDay()]} ${MONTHS[d.getUTCMonth()]} ${String(d.getUTCDate()).padStart(2)} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())}`;
}

const sender = (s: string) => s || 'MAILER-DAEMON';

/** The postqueue -p layout: one block per message, the reason in parentheses above its recipients. */
export function formatList(items: QueueItem[]): string[] {
  if (items.length === 0) return ['Mail queue is empty'];
  const idWidth = Math.max(10, ...items.map((i) => i.id.length + 1));
  const lines = [`${'-Queue ID-'.padEnd(idWidth)} --Size-- ----Arrival Time---- -Sender/Recipient-------`];
  const indent = ' '.repeat(idWidth + 31);
  let bytes = 0;
  for (const item of items) {
    bytes += item.size;
    const mark = item.state === 'active' ? '*' : '';
    lines.push(
      `${(item.id + mark).padEnd(idWidth)} ${String(item.size).padStart(8)} ${arrival(item.arrivalTime)}  ${sender(item.sender)}`,
    );
    const byReason = new Map<string, string[]>();
    for (const r of item.recipients) {
      if (r.status === 'delivered') continue;
      const reason =
        r.status === 'failed'
          ? `(failed: ${r.lastReply ?? 'unknown'})`
          : r.lastReply
            ? `(${r.lastReply})`
            : '';
      byReason.set(reason, [...(byReason.get(reason) ?? []), r.address]);
    }
    for (const [reason, addresses] of byReason) {
      if (reason) lines.push(indent + reason);
      for (const a of addresses) lines.push(indent + a);
    }
    lines.push('');
  }
  const kb = Math.ceil(bytes / 1024);
  lines.push(`-- ${kb} Kbytes in ${items.length} Request${items.length === 1 ? '' : 's'}.`);
  return lines;
}

export function formatShow(item: QueueItem & { headers: string }): string[] {
  const state =
    item.state === 'deferred'
      ? `deferred (attempts: ${item.attempts}, next attempt ${item.nextAttemptAt})`
      : item.state === 'active'
        ? `being delivered (attempts so far: ${item.attempts})`
        : `ready (attempts: ${item.attempts})`;
  const width = Math.max(...item.recipients.map((r) => r.address.length));
  return [
    `Queue ID:   ${item.id}`,
    `State:      ${state}`,
    `Arrival:    ${item.arrivalTime}`,
    `Size:       ${item.size} bytes`,
    `Sender:     ${sender(item.sender)}`,
    'Recipients:',
    ...item.recipients.map((r) =>
      `  ${r.address.padEnd(width)}  ${r.status.padEnd(9)}  ${r.lastReply ?? ''}`.trimEnd(),
    ),
    ...(item.lastError ? [`Last error: ${item.lastError}`] : []),
    '',
    ...item.headers.split(/\r?\n/),
  ];
}
