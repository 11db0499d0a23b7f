/**
 * Routing (pure): which way each recipient of a message leaves the relay.
 *
 * The route is chosen by the SENDER: a mail domain's own `route` (matched by the envelope sender's
 * domain, case-insensitively, exact name) overrides the relay-wide `delivery.route`. Null-sender mail
 * (bounces) and senders of unknown domains take the relay-wide route.
 *
 * Recipients are then grouped by destination, the unit of one delivery attempt: one group for a
 * smarthost route (every recipient goes to the same upstream), one group per recipient domain for a
 * direct route (each domain has its own MX lookup). The queue manager queues and shapes groups by their
 * site (sites.ts), which several domains sharing MX hosts have in common.
 */
import type { RelayConfig, RouteConfig, SmarthostConfig } from '../config/schema.js';

export type Destination =
  | { kind: 'smarthost'; key: string; smarthost: SmarthostConfig }
  | { kind: 'direct'; key: string; domain: string };

export interface DeliveryGroup {
  destination: Destination;
  recipients: string[];
}

/** The domain part of an address, lower-cased ('' when there is none). */
export function domainOf(address: string): string {
  const at = address.lastIndexOf('@');
  return at < 0 ? '' : address.slice(at + 1).toLowerCase();
}

/** The route for mail from `mailFrom`: the sender domain's own route, else the relay-wide one. */
export function routeFor(config: Pick<RelayConfig, 'domains' | 'delivery'>, mailFrom: string): RouteConfig {
  const senderDomain = domainOf(mailFrom);
  const domain = senderDomain ? config.domains.find((d) => d.name.toLowerCase() === senderDomain) : undefined;
  return domain?.route ?? config.delivery.route;
}

/** Destination key of a smarthost: different credentials or TLS modes never share connections. */
export function smarthostKey(s: SmarthostConfig): string {
  return `smarthost:${s.host.toLowerCase()}:${s.port}:${s.tls}:${s.auth?.usernameFile ?? ''}`;
}

/**
 * Groups recipients by destination, keeping their order. A direct route with a recipient that has no
 * domain yields a group with domain '' (the caller bounces it as a bad address).
 */
export function groupRecipients(route: RouteConfig, recipients: readonly string[]): DeliveryGroup[] {
  if (route.mode === 'smarthost') {
    if (!route.smarthost) throw new Error('route mode smarthost requires smarthost');
    const destination: Destination = {
      kind: 'smarthost',
      key: smarthostKey(route.smarthost),
      smarthost: route.smarthost,
    };
    return recipients.length ? [{ destination, recipients: [...recipients] }] : [];
  }
  const groups = new Map<string, DeliveryGroup>();
  for (const r of recipients) {
    const domain = domainOf(r);
    let g = groups.get(domain);
    if (!g) {
      g = { destination: { kind: 'direct', key: `direct:${domain}`, domain }, recipients: [] };
      groups.set(domain, g);
    }
    g.recipients.push(r);
  }
  return [...groups.values()];
}
