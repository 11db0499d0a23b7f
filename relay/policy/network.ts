/**
 * Client network checks for the relay listener (allowedNetworks) — pure functions over parsed CIDRs.
 *
 * IPv4-mapped IPv6 addresses (::ffff:10.1.2.3, what a dual-stack socket reports for an IPv4 peer) are
 * matched as the IPv4 address they carry, so "10.0.0.0/8" means the same on any bind address.
 */
import ipaddr from 'ipaddr.js';

export interface Network {
  readonly cidr: string;
  readonly range: [ipaddr.IPv4 | ipaddr.IPv6, number];
}

/** Parses CIDRs; errors say which entry is wrong and why (the caller prefixes the field path). */
export function parseNetworks(cidrs: readonly string[]): { networks: Network[]; errors: string[] } {
  const networks: Network[] = [];
  const errors: string[] = [];
  cidrs.forEach((cidr, i) => {
    try {
      const range = ipaddr.parseCIDR(cidr);
      const [addr, bits] = range;
      // Host bits set ("10.0.0.1/8") usually means a typo; refuse rather than guess.
      const network =
        addr.kind() === 'ipv4'
          ? ipaddr.IPv4.networkAddressFromCIDR(cidr)
          : ipaddr.IPv6.networkAddressFromCIDR(cidr);
      if (network.toNormalizedString() !== addr.toNormalizedString())
        errors.push(`[${i}]: "${cidr}" has host bits set; did you mean ${network.toString()}/${bits}?`);
      else networks.push({ cidr, range });
    } catch {
      errors.push(`[${i}]: "${cidr}" is not a CIDR (e.g. 10.0.0.0/8 or fd00::/8)`);
    }
  });
  return { networks, errors };
}

/** Parses a client address, unwrapping IPv4-mapped IPv6; undefined when it is not an IP address. */
export function parseClientAddress(address: string): ipaddr.IPv4 | ipaddr.IPv6 | undefined {
  if (!ipaddr.isValid(address)) return undefined;
  return ipaddr.process(address);
}

export function isAddressAllowed(address: string, networks: readonly Network[]): boolean {
  const ip = parseClientAddress(address);
  if (!ip) return false;
  return networks.some((n) => n.range[0].kind() === ip.kind() && ip.match(n.range));
}

/**
 * The key per-client limits are kept under: the IPv4 address, or the /64 of an IPv6 address (one host
 * usually owns a whole /64 and could otherwise rotate addresses to escape a limit).
 */
export function clientKey(address: string): string {
  const ip = parseClientAddress(address);
  if (!ip) return address;
  if (ip.kind() === 'ipv4') return ip.toString();
  const parts = (ip as ipaddr.IPv6).parts.slice(0, 4);
  return `${parts.map((p) => p.toString(16)).join(':')}::/64`;
}
