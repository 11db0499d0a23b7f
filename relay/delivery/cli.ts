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
 * Where the relay is and its token: relay/admin/client.ts. Exit codes: 0 ok, 1 the relay said no (or
 * could not be reached), 2 usage.
 */
import {
  ADMIN_OPTIONS_USAGE,
  CliError,
  EXIT_FAIL,
  EXIT_USAGE,
  call,
  parseAdminArgs,
  resolveTarget,
  runCli,
  type Out,
} from '../admin/client.js';
import type { DrainStatus } from './drain.js';
import type { QueueItem } from './queue-ops.js';

export const QUEUE_USAGE = `Usage:
  mailfleet-relay queue list [--json]          list queued mail (* = being delivered now)
  mailfleet-relay queue show ID [--json]       one message: state, recipients, last replies, headers
  mailfleet-relay queue retry ID | --all       deliver deferred mail now
  mailfleet-relay queue delete ID              remove a message from the queue
  mailfleet-relay drain [--peer HOST:PORT]... [--wait] [--status] [--json]
                                               stop accepting mail, then deliver the queue or hand it to peers

${ADMIN_OPTIONS_USAGE}`;

/** `mailfleet-relay queue …` */
export async function queueCommand(args: string[], out: Out = console.log): Promise<number> {
  return runCli(
    QUEUE_USAGE,
    async () => {
      const { values, positionals } = parseAdminArgs(args, { all: { type: 'boolean' } });
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
            id
              ? `${id}: scheduled for delivery now`
              : `${res.scheduled} message(s) scheduled for delivery now`,
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
    },
    out,
  );
}

/** `mailfleet-relay drain …` */
export async function drainCommand(
  args: string[],
  out: Out = console.log,
  opts: { pollMs?: number; maxPolls?: number } = {},
): Promise<number> {
  return runCli(
    QUEUE_USAGE,
    async () => {
      const { values, positionals } = parseAdminArgs(args, {
        peer: { type: 'string', multiple: true },
        wait: { type: 'boolean' },
        status: { type: 'boolean' },
      });
      if (values.help) return usage(out);
      if (positionals.length)
        throw new CliError(`unexpected arguments: ${positionals.join(' ')}`, EXIT_USAGE);
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
            : `${s.state}: ${s.queued} queued, ${s.handedOff} handed off, ${s.delivered} delivered, ${s.failed} failed hand-offs${s.error ? ` (${s.error})` : ''}`,
        );
      show(status);
      if (!values.wait) return 0;
      const pollMs = opts.pollMs ?? 1000;
      for (
        let i = 0;
        status.state !== 'drained' &&
        status.state !== 'failed' &&
        i < (opts.maxPolls ?? Number.MAX_SAFE_INTEGER);
        i++
      ) {
        await new Promise((r) => setTimeout(r, pollMs));
        const next = (await call(target, 'GET', '/drain')) as DrainStatus;
        if (JSON.stringify(next) !== JSON.stringify(status)) show(next);
        status = next;
      }
      return status.state === 'drained' ? 0 : EXIT_FAIL;
    },
    out,
  );
}

function usage(out: Out): number {
  out(QUEUE_USAGE);
  return 0;
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
