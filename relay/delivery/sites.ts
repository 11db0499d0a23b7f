/**
 * Destination sites and their shaping limits (KumoMTA's model): the unit the scheduler limits
 * connections and message rates by.
 *
 *   smarthost route  → one site per smarthost, "smarthost:host:port"
 *   direct route     → the MX rollup, "mx:" + the recipient domain's MX host names, lower-cased, sorted:
 *                      domains hosted by one provider share its MX hosts and so one site; a domain
 *                      without MX records (implicit MX) is the site of its own name
 *   no mail host, null MX, NXDOMAIN, DNS trouble → "domain:" + the domain (the attempt bounces or
 *                      defers as it would without shaping)
 *
 * Limits: the first `delivery.shaping.sites` override with a pattern matching one of the site's names
 * (the recipient domain, an MX host name, the smarthost host) is merged over the defaults. A pattern is
 * a name or "*.suffix" (names strictly under suffix). Domains sharing MX hosts share one in-flight count;
 * an override naming a recipient domain sets the limit that domain's deliveries wait for.
 *
 * Invariant: a site's metric label is its override's first pattern or "default", a set bounded by the
 * configuration, never a domain or host name.
 *
 * The gate (ShapingGate) is where the limits are enforced beyond this pod; localShapingGate() is the
 * per-pod one.
 */
import type { ShapingConfig } from '../config/schema.js';
import type { ShapingLimits } from '../metrics.js';
import { RateLimiter } from '../policy/rate-limit.js';
import type { MailHostsLookup } from './mx.js';
import type { DeliveryGroup } from './router.js';

export interface Site {
  /** The site's identity: the queue manager's queue key and the gate's key (stable across pods). */
  key: string;
  /** Names override patterns are matched against. */
  names: string[];
}

export interface SiteLimits {
  maxConnections: number;
  deliveriesPerConnection: number;
  /** 0: unlimited. */
  messagesPerMinute: number;
  /** Metric label (bounded). */
  label: string;
}

type MailHostsAnswer = Awaited<ReturnType<MailHostsLookup['mailHosts']>>;

/** The site of a direct delivery to `domain`, from its mailHosts answer. */
export function directSite(domain: string, answer: MailHostsAnswer): Site {
  if (answer.kind !== 'mx' && answer.kind !== 'implicit') return { key: `domain:${domain}`, names: [domain] };
  const hosts = [...new Set(answer.hosts.map((h) => h.exchange.toLowerCase()))].sort();
  return { key: `mx:${hosts.join(',')}`, names: [domain, ...hosts.filter((h) => h !== domain)] };
}

/** The site of a group without DNS: the smarthost, or the recipient domain alone. */
export function siteWithoutDns(group: DeliveryGroup): Site {
  const d = group.destination;
  if (d.kind === 'smarthost') {
    const host = d.smarthost.host.toLowerCase();
    return { key: `smarthost:${host}:${d.smarthost.port}`, names: [host] };
  }
  return { key: `domain:${d.domain}`, names: [d.domain] };
}

/** The site of a group, looking up the MX hosts of a direct group's domain (cached by the resolver). */
export async function siteOf(
  resolver: Pick<MailHostsLookup, 'mailHosts'>,
  group: DeliveryGroup,
): Promise<Site> {
  const d = group.destination;
  if (d.kind === 'smarthost' || !d.domain) return siteWithoutDns(group);
  try {
    return directSite(d.domain, await resolver.mailHosts(d.domain));
  } catch {
    return siteWithoutDns(group);
  }
}

/** Whether `pattern` ("name" or "*.suffix", any case) matches `name` (lower-case). */
export function patternMatches(pattern: string, name: string): boolean {
  const p = pattern.toLowerCase();
  return p.startsWith('*.') ? name.endsWith(p.slice(1)) : name === p;
}

/** The limits of a site with these names: the first matching override over the defaults. */
export function siteLimits(shaping: ShapingConfig, names: readonly string[]): SiteLimits {
  const override = shaping.sites.find((s) => s.match.some((p) => names.some((n) => patternMatches(p, n))));
  return {
    maxConnections: override?.maxConnections ?? shaping.maxConnections,
    deliveriesPerConnection: override?.deliveriesPerConnection ?? shaping.deliveriesPerConnection,
    messagesPerMinute: override?.messagesPerMinute ?? shaping.messagesPerMinute,
    label: override ? override.match[0]! : 'default',
  };
}

/**
 * Where the queue manager asks before a delivery starts. Both calls may take a round trip (a fleet-wide
 * store): the queue manager never assumes they settle at once, and counts a job against its site's
 * local limit from before it asks until its delivery ends.
 */
/** What held a delivery back: the site's connections or its rate. */
export type ShapingLimit = (typeof ShapingLimits)[number];

/** A delivery's admission at a site: its connection slot, or which limit refused it and when to ask again. */
export type Admission = { slot: { release(): void } } | { refused: ShapingLimit; retryAfterMs: number };

export interface ShapingGate {
  /**
   * A connection slot at `site` (at most `maxConnections`, shared by the fleet or per pod) and, when
   * perMinute > 0, one message of the site's rate: both or neither. retryAfterMs 0: ask again when a
   * slot frees or after the re-check interval.
   */
  admit(site: string, maxConnections: number, perMinute: number): Promise<Admission>;
}

/** This pod's own counts: a slot counter and a token bucket (rate-limit.ts) per site. */
export function localShapingGate(now: () => number = Date.now): ShapingGate {
  const inUse = new Map<string, number>();
  const rates = new RateLimiter(now);
  return {
    admit(site, maxConnections, perMinute) {
      const n = inUse.get(site) ?? 0;
      if (n >= maxConnections) return Promise.resolve({ refused: 'connections', retryAfterMs: 0 });
      const rate = rates.take(site, perMinute);
      if (!rate.allowed) return Promise.resolve({ refused: 'rate', retryAfterMs: rate.retryAfterMs });
      inUse.set(site, n + 1);
      let released = false;
      return Promise.resolve({
        slot: {
          release() {
            if (released) return;
            released = true;
            const left = (inUse.get(site) ?? 1) - 1;
            if (left > 0) inUse.set(site, left);
            else inUse.delete(site);
          },
        },
      });
    },
  };
}
