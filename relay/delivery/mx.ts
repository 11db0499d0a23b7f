/**
 * Direct delivery's host list: which servers to try, in which order, for one recipient domain
 * (RFC 5321 §5.1), from the relay's shared resolver (relay/dns, with its cache).
 *
 *   MX records      → their hosts by preference (equal preferences shuffled by the resolver), each
 *                     host's IPv4 then IPv6 addresses; at most MAX_ADDRESSES addresses per attempt
 *   no MX, A/AAAA   → the domain itself (implicit MX)
 *   null MX         → bounce 5.1.10 (RFC 7505)
 *   NXDOMAIN        → bounce 5.1.2 (bad destination system address)
 *   no mail host    → bounce 5.1.2
 *   DNS trouble     → defer 4.4.3, and so are MX hosts none of which has an address we could look up
 *
 * The transport connects to the addresses; the MX host name is kept for TLS SNI, logs and DSNs.
 */

/** The part of relay/dns's resolver this module uses (structural, so tests can hand in a fake). */
export interface MailHostsLookup {
  mailHosts(
    domain: string,
  ): Promise<
    | { kind: 'mx' | 'implicit'; hosts: { exchange: string; priority: number }[] }
    | { kind: 'null-mx' | 'nxdomain' | 'no-mail-host' }
    | { kind: 'tempfail'; error: string }
  >;
  addresses(
    host: string,
    family: 4 | 6,
  ): Promise<
    | { kind: 'records'; records: { address: string }[] }
    | { kind: 'nodata' | 'nxdomain' }
    | { kind: 'tempfail'; error: string }
  >;
}

export interface MxAddress {
  /** MX host name (or the domain, for an implicit MX). */
  host: string;
  address: string;
}

export type DirectPlan =
  | { kind: 'connect'; addresses: MxAddress[] }
  | { kind: 'bounce'; status: string; reason: string }
  | { kind: 'defer'; status: string; reason: string };

/** Postfix's smtp_mx_address_limit: addresses tried per attempt. */
export const MAX_ADDRESSES = 5;

export async function planDirect(resolver: MailHostsLookup, domain: string): Promise<DirectPlan> {
  if (!domain) return { kind: 'bounce', status: '5.1.3', reason: 'recipient address has no domain' };
  const hosts = await resolver.mailHosts(domain);
  switch (hosts.kind) {
    case 'null-mx':
      return { kind: 'bounce', status: '5.1.10', reason: `domain ${domain} does not accept mail (null MX)` };
    case 'nxdomain':
      return { kind: 'bounce', status: '5.1.2', reason: `domain ${domain} does not exist` };
    case 'no-mail-host':
      return {
        kind: 'bounce',
        status: '5.1.2',
        reason: `domain ${domain} has no mail host (no MX, A or AAAA)`,
      };
    case 'tempfail':
      return { kind: 'defer', status: '4.4.3', reason: `DNS lookup failed: ${hosts.error}` };
    default:
      break;
  }
  const addresses: MxAddress[] = [];
  const problems: string[] = [];
  for (const { exchange } of hosts.hosts) {
    for (const family of [4, 6] as const) {
      if (addresses.length >= MAX_ADDRESSES) break;
      const answer = await resolver.addresses(exchange, family);
      if (answer.kind === 'tempfail') problems.push(`${exchange}: ${answer.error}`);
      if (answer.kind !== 'records') continue;
      const room = MAX_ADDRESSES - addresses.length;
      addresses.push(...answer.records.slice(0, room).map((r) => ({ host: exchange, address: r.address })));
    }
  }
  if (addresses.length) return { kind: 'connect', addresses };
  const why = problems.length ? problems.join('; ') : 'no MX host has an address';
  return { kind: 'defer', status: '4.4.3', reason: `no address for the mail hosts of ${domain}: ${why}` };
}
