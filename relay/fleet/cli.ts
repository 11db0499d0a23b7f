/**
 * `mailfleet-relay suppression …`: the fleet's suppression list, through a running relay's admin port
 * (relay/fleet/admin-routes.ts), so the same command works with a shared store (every pod sees the
 * change) and without one (that pod's list).
 *
 *   suppression list [--json]                   every entry (--json: one JSON array, the export format)
 *   suppression add ADDRESS… [--reason TEXT]    suppress addresses for suppression.ttl
 *   suppression add --from FILE [--reason TEXT] seed from a file: one address per line, or the --json
 *                                               export (its addresses and reasons)
 *   suppression remove ADDRESS                  take an address off the list
 */
import fs from 'node:fs/promises';
import {
  ADMIN_OPTIONS_USAGE,
  CliError,
  EXIT_USAGE,
  call,
  parseAdminArgs,
  resolveTarget,
  runCli,
  type Out,
  type Target,
} from '../admin/client.js';
import { MAX_SUPPRESSION_ADD as MAX_ADD, type SuppressedEntry } from './types.js';

export const SUPPRESSION_USAGE = `Usage:
  mailfleet-relay suppression list [--json]                 the suppression list (--json: exportable)
  mailfleet-relay suppression add ADDRESS... [--reason TEXT] suppress addresses for suppression.ttl
  mailfleet-relay suppression add --from FILE [--reason TEXT]
                                                            seed: one address per line, or a --json export
  mailfleet-relay suppression remove ADDRESS                take an address off the list

${ADMIN_OPTIONS_USAGE}`;

interface Page {
  entries: SuppressedEntry[];
  cursor?: string;
  decidedBy: 'fleet' | 'local';
}

export async function suppressionCommand(args: string[], out: Out = console.log): Promise<number> {
  return runCli(
    SUPPRESSION_USAGE,
    async () => {
      const { values, positionals } = parseAdminArgs(args, {
        from: { type: 'string' },
        reason: { type: 'string' },
      });
      if (values.help) {
        out(SUPPRESSION_USAGE);
        return 0;
      }
      const [action, ...rest] = positionals;
      const target = await resolveTarget(values);
      switch (action) {
        case 'list':
        case undefined: {
          const entries = await listAll(target);
          if (values.json) out(JSON.stringify(entries, null, 2));
          else if (entries.length === 0) out('The suppression list is empty');
          else
            for (const e of entries)
              out(`${e.address}  until ${new Date(e.until).toISOString()}  ${e.reason}`);
          return 0;
        }
        case 'add':
          return add(target, rest, values, out);
        case 'remove': {
          if (rest.length !== 1) throw new CliError('suppression remove needs one address', EXIT_USAGE);
          const res = (await call(target, 'POST', '/suppression/remove', { address: rest[0] })) as {
            removed: boolean;
            decidedBy: string;
          };
          out(
            `${rest[0]}: ${res.removed ? 'removed' : 'was not on the list'}${res.decidedBy === 'local' ? localNote : ''}`,
          );
          return 0;
        }
        default:
          throw new CliError(`unknown suppression action "${action}"`, EXIT_USAGE);
      }
    },
    out,
  );
}

async function add(
  target: Target,
  addresses: string[],
  values: { from?: string; reason?: string },
  out: Out,
): Promise<number> {
  const seeded = values.from ? await readSeed(values.from) : [];
  const items: { address: string; reason?: string }[] = [
    ...addresses.map((address) => ({ address })),
    ...seeded,
  ];
  if (items.length === 0) throw new CliError('suppression add needs addresses or --from FILE', EXIT_USAGE);
  // One request per reason and batch: entries of an export keep their own reasons.
  const byReason = new Map<string | undefined, string[]>();
  for (const i of items) {
    const reason = values.reason ?? i.reason;
    byReason.set(reason, [...(byReason.get(reason) ?? []), i.address]);
  }
  let added = 0;
  let local = false;
  for (const [reason, list] of byReason)
    for (let i = 0; i < list.length; i += MAX_ADD) {
      const res = (await call(target, 'POST', '/suppression/add', {
        addresses: list.slice(i, i + MAX_ADD),
        ...(reason ? { reason } : {}),
      })) as { added: number; decidedBy: string };
      added += res.added;
      local ||= res.decidedBy === 'local';
    }
  out(`${added} address(es) suppressed${local ? localNote : ''}`);
  return 0;
}

const localNote =
  ' (on this pod only for now: the fleet store did not answer; it is sent there when it is back)';

async function listAll(target: Target): Promise<SuppressedEntry[]> {
  const all: SuppressedEntry[] = [];
  let cursor: string | undefined;
  // Bounded: a million entries in pages of 1 000.
  for (let n = 0; n < 1000; n++) {
    const q = `/suppression?limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
    const page = (await call(target, 'GET', q)) as Page;
    all.push(...page.entries);
    cursor = page.cursor;
    if (!cursor) return all;
  }
  throw new CliError('the suppression list has more than a million entries; stopped listing');
}

/** A seed file: the --json export, or one address per line (blank lines and # comments skipped). */
async function readSeed(file: string): Promise<{ address: string; reason?: string }[]> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    throw new CliError(`cannot read ${file}: ${(err as Error).message}`);
  }
  if (text.trimStart().startsWith('[')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      throw new CliError(`${file}: not valid JSON: ${(err as Error).message}`);
    }
    if (
      !Array.isArray(parsed) ||
      !parsed.every((e) => typeof (e as { address?: unknown })?.address === 'string')
    )
      throw new CliError(
        `${file}: expected a list of {"address", "reason"} entries (suppression list --json)`,
      );
    return (parsed as { address: string; reason?: unknown }[]).map((e) => ({
      address: e.address,
      ...(typeof e.reason === 'string' ? { reason: e.reason } : {}),
    }));
  }
  return text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((address) => ({ address }));
}
