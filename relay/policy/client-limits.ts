/**
 * Per-client connection limits (limits.maxConnectionsPerClient, limits.connectionsPerMinutePerClient),
 * Postfix anvil's smtpd_client_connection_count_limit and smtpd_client_connection_rate_limit: how many
 * connections one client address holds open, and how many it opened in the last minute.
 *
 * Keys are network.clientKey(): the IPv4 address, or the /64 of an IPv6 address. Clients inside
 * limits.exemptNetworks are neither limited nor counted. The address is the session's, so behind a
 * trusted PROXY-protocol proxy it is the one the header carries (relay/smtp/proxy-protocol.ts).
 *
 * Invariants
 * - admit() and release() are the only writers of the open-connection counts: the SMTP layer calls
 *   admit() once per connection at connect and release() once when an admitted one closes. Both run
 *   synchronously, so N clients connecting at once cannot overshoot the limit.
 * - The rate is a token bucket (policy/rate-limit.ts) of connectionsPerMinutePerClient tokens that
 *   refills in a minute; a token is taken only by a connection that is admitted.
 * - Memory stays bounded: a key leaves the count map when its last connection closes; the buckets
 *   prune themselves (rate-limit.ts).
 */
import type { LimitsConfig } from '../config/schema.js';
import { clientKey, isAddressAllowed, type Network } from './network.js';
import { RateLimiter } from './rate-limit.js';
import { Replies, type Reply } from './replies.js';

export type ClientLimitSettings = Pick<
  LimitsConfig,
  'maxConnectionsPerClient' | 'connectionsPerMinutePerClient'
>;

export type ClientAdmission =
  | {
      ok: true;
      /** Pass to release() when the connection closes; undefined for exempt clients. */ key?: string;
    }
  | {
      ok: false;
      reason: 'client_connections' | 'client_connection_rate';
      reply: Reply;
      key: string;
      /** Rate refusals: ms until the next connection would be admitted. */
      retryAfterMs?: number;
    };

/** The count limit alone (pure): may a client holding `open` connections open another? */
export function underConnectionLimit(open: number, maxPerClient: number): boolean {
  return maxPerClient <= 0 || open < maxPerClient;
}

export class ClientConnectionLimits {
  private readonly open = new Map<string, number>();
  private readonly rate: RateLimiter;

  constructor(now: () => number = Date.now, maxKeys = 100_000) {
    this.rate = new RateLimiter(now, maxKeys);
  }

  /** At connect: admits the connection (and counts it) or says which limit refuses it. */
  admit(address: string, limits: ClientLimitSettings, exempt: readonly Network[]): ClientAdmission {
    if (isAddressAllowed(address, exempt)) return { ok: true };
    const key = clientKey(address);
    const open = this.open.get(key) ?? 0;
    if (!underConnectionLimit(open, limits.maxConnectionsPerClient))
      return { ok: false, reason: 'client_connections', reply: Replies.clientTooManyConnections, key };
    const token = this.rate.take(key, limits.connectionsPerMinutePerClient);
    if (!token.allowed)
      return {
        ok: false,
        reason: 'client_connection_rate',
        reply: Replies.clientConnectionRate,
        key,
        retryAfterMs: token.retryAfterMs,
      };
    this.open.set(key, open + 1);
    return { ok: true, key };
  }

  /** When an admitted connection closes. */
  release(key: string | undefined): void {
    if (key === undefined) return;
    const n = (this.open.get(key) ?? 0) - 1;
    if (n > 0) this.open.set(key, n);
    else this.open.delete(key);
  }

  /** Connections counted for this address's key (0 for exempt or unknown clients). */
  openFrom(address: string): number {
    return this.open.get(clientKey(address)) ?? 0;
  }

  /** Keys with open connections. */
  get clients(): number {
    return this.open.size;
  }
}
