/**
 * The relay's runtime state: everything derived from the config and the files it references, built in
 * one step and swapped in one assignment on reload. A session reads the current runtime at each command,
 * so a reload never drops a session: its next command simply sees the new domains, users and limits.
 *
 * buildRuntime() reads the users file and the TLS files and fails as a whole — with messages that name
 * the field — when any of them is unusable, so a half-applied configuration never exists.
 */
import type { LoadedConfig } from './config/load.js';
import { ListenerNames, type ListenerName, type RelayConfig } from './config/schema.js';
import { UsersDb, UsersFileError } from './auth/users.js';
import { parseNetworks, type Network } from './policy/network.js';
import { buildDomainIndex, type DomainIndex } from './policy/sender.js';
import { loadTlsMaterial, TlsFileError, type TlsMaterial } from './smtp/tls.js';

export const DEFAULT_HANDOFF_USER = 'mailfleet-handoff';

export interface Runtime {
  readonly loaded: LoadedConfig;
  readonly config: RelayConfig;
  readonly domains: DomainIndex;
  /** listeners.relay.allowedNetworks, parsed. */
  readonly relayNetworks: readonly Network[];
  /** limits.exemptNetworks, parsed: clients exempt from the per-client limits. */
  readonly exemptNetworks: readonly Network[];
  /** listeners.<name>.proxyProtocol.trustedProxies, parsed (absent: the listener trusts no proxy). */
  readonly trustedProxies: Partial<Record<ListenerName, readonly Network[]>>;
  readonly users: UsersDb;
  readonly tls?: TlsMaterial;
  /** AUTH name of the peer-relay identity (handoff.username, default mailfleet-handoff). */
  readonly handoffUser: string;
}

export class RuntimeError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join('; '));
  }
}

export async function buildRuntime(loaded: LoadedConfig, previous?: Runtime): Promise<Runtime> {
  const { config } = loaded;
  const problems: string[] = [];
  let users = UsersDb.empty();
  let tlsMaterial: TlsMaterial | undefined;
  if (config.auth) {
    try {
      users = await UsersDb.load(config.auth.usersFile);
      if (previous) users.inheritCache(previous.users);
    } catch (err) {
      problems.push(err instanceof UsersFileError ? `auth.usersFile: ${err.message}` : String(err));
    }
  }
  if (config.tls) {
    try {
      tlsMaterial = await loadTlsMaterial(config.tls);
    } catch (err) {
      problems.push(err instanceof TlsFileError ? err.message : `tls: ${String(err)}`);
    }
  }
  if (problems.length > 0) throw new RuntimeError(problems);
  return {
    loaded,
    config,
    domains: buildDomainIndex(config.domains),
    relayNetworks: parseNetworks(config.listeners.relay?.allowedNetworks ?? []).networks,
    exemptNetworks: parseNetworks(config.limits.exemptNetworks).networks,
    trustedProxies: Object.fromEntries(
      ListenerNames.flatMap((name) => {
        const proxy = config.listeners[name]?.proxyProtocol;
        return proxy ? [[name, parseNetworks(proxy.trustedProxies).networks]] : [];
      }),
    ),
    users,
    tls: tlsMaterial,
    handoffUser: config.handoff?.username ?? DEFAULT_HANDOFF_USER,
  };
}

/** Changes between two configs that only a restart can apply (listener sockets, spool, admin port). */
export function restartRequired(before: RelayConfig, after: RelayConfig): string[] {
  const out: string[] = [];
  for (const name of ['submission', 'smtps', 'relay'] as const) {
    const a = before.listeners[name];
    const b = after.listeners[name];
    if (!a !== !b) out.push(`listeners.${name} (${b ? 'added' : 'removed'})`);
    else if (a && b && (a.address !== b.address || a.port !== b.port))
      out.push(`listeners.${name} address/port`);
  }
  if (!before.tls !== !after.tls) out.push('tls (added or removed)');
  if (before.spool.dir !== after.spool.dir) out.push('spool.dir');
  if (before.admin.address !== after.admin.address || before.admin.port !== after.admin.port)
    out.push('admin address/port');
  return out;
}
