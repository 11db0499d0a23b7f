/**
 * The relay's DNS resolver: where mail for a domain goes (RFC 5321 §5.1), with a bounded answer cache.
 *
 * Used twice: at RCPT TO, to refuse recipients whose domain cannot receive mail, and by delivery, to
 * find the MX hosts and their addresses. Built on node's dns.promises.Resolver (c-ares), with the
 * servers from config.dns ("ip", "ip:port", "[ipv6]:port"; empty: /etc/resolv.conf).
 *
 * mailHosts(domain):
 *   MX records            → { kind: 'mx', hosts } sorted by preference, equal preferences shuffled
 *                           (RFC 5321 §5.1 asks for randomisation among equals)
 *   one MX "0 ."          → { kind: 'null-mx' }                 (RFC 7505)
 *   no MX, but A or AAAA  → { kind: 'implicit', hosts: [domain] } (the implicit MX)
 *   no MX, no A, no AAAA  → { kind: 'no-mail-host' }
 *   NXDOMAIN              → { kind: 'nxdomain' }
 *   timeout, SERVFAIL, refused, anything else → { kind: 'tempfail', error } — never cached, so the
 *                           next attempt asks again; callers turn it into a 4xx.
 *
 * Caching: A/AAAA answers for their TTL (c-ares reports it). Node does not expose the TTL of MX
 * answers, so MX answers are kept for `mxTtlSeconds` (default 300) and negative answers (NXDOMAIN,
 * NODATA) for `negativeTtlSeconds` (default 60, RFC 2308 would use the SOA minimum, which c-ares
 * does not report either). At most `cacheMaxEntries` answers, least recently used dropped first.
 * Concurrent lookups of one name share one query.
 */
import { promises as dnsPromises } from 'node:dns';
import type { DnsConfig } from '../config/schema.js';
import type { RelayMetrics } from '../metrics.js';

export interface MxHost {
  exchange: string;
  priority: number;
}

export type MailHosts =
  | { kind: 'mx'; hosts: MxHost[] }
  | { kind: 'implicit'; hosts: MxHost[] }
  | { kind: 'null-mx' }
  | { kind: 'nxdomain' }
  | { kind: 'no-mail-host' }
  | { kind: 'tempfail'; error: string };

export interface HostAddress {
  address: string;
  family: 4 | 6;
  ttl: number;
}

/** Outcome of one query: records, or why there are none. */
export type Answer<T> =
  | { kind: 'records'; records: T[] }
  | { kind: 'nodata' }
  | { kind: 'nxdomain' }
  | { kind: 'tempfail'; error: string };

type RecordType = 'MX' | 'A' | 'AAAA';

export interface ResolverOptions {
  config: DnsConfig;
  metrics?: RelayMetrics;
  now?: () => number;
  random?: () => number;
  mxTtlSeconds?: number;
  negativeTtlSeconds?: number;
  /** A/AAAA TTLs above this are capped (seconds). */
  maxTtlSeconds?: number;
}

interface CacheEntry {
  answer: Answer<unknown>;
  expires: number;
}

/** Turns config.dns.servers entries into what Resolver.setServers accepts; throws naming the entry. */
export function normaliseServers(servers: readonly string[]): string[] {
  return servers.map((s) => {
    const v4 = /^(\d{1,3}(?:\.\d{1,3}){3})(?::(\d{1,5}))?$/.exec(s);
    const v6port = /^\[([0-9a-fA-F:.]+)\]:(\d{1,5})$/.exec(s);
    const port = Number(v4?.[2] ?? v6port?.[2] ?? 53);
    if (!(port >= 1 && port <= 65535)) throw new Error(`"${s}": port out of range`);
    if (v4 || v6port) return s;
    if (/^[0-9a-fA-F:.]+$/.test(s) && s.includes(':')) return s; // bare IPv6
    throw new Error(`"${s}" is not "ip", "ip:port" or "[ipv6]:port"`);
  });
}

export class MailResolver {
  private readonly resolver: dnsPromises.Resolver;
  private readonly cache = new Map<string, CacheEntry>();
  private readonly inflight = new Map<string, Promise<Answer<unknown>>>();
  private readonly now: () => number;
  private readonly random: () => number;

  constructor(private readonly opts: ResolverOptions) {
    const { config } = opts;
    this.resolver = new dnsPromises.Resolver({ timeout: config.timeoutMs, tries: config.tries });
    if (config.servers.length > 0) this.resolver.setServers(normaliseServers(config.servers));
    this.now = opts.now ?? Date.now;
    this.random = opts.random ?? Math.random;
  }

  /** Where mail for `domain` (lower-case A-label form) goes. */
  async mailHosts(domain: string): Promise<MailHosts> {
    const mx = await this.mx(domain);
    switch (mx.kind) {
      case 'nxdomain':
        return { kind: 'nxdomain' };
      case 'tempfail':
        return { kind: 'tempfail', error: `MX ${domain}: ${mx.error}` };
      case 'records': {
        const real = mx.records.filter((r) => r.exchange !== '' && r.exchange !== '.');
        if (real.length === 0) return { kind: 'null-mx' };
        return { kind: 'mx', hosts: this.shuffleEqual(real) };
      }
      case 'nodata':
        break;
    }
    // RFC 5321 §5.1: no MX records → the domain itself is the mail host, if it has an address.
    const [a, aaaa] = await Promise.all([this.addresses(domain, 4), this.addresses(domain, 6)]);
    if (a.kind === 'records' || aaaa.kind === 'records')
      return { kind: 'implicit', hosts: [{ exchange: domain, priority: 0 }] };
    if (a.kind === 'nxdomain' || aaaa.kind === 'nxdomain') return { kind: 'nxdomain' };
    const failed = [a, aaaa].find((x) => x.kind === 'tempfail');
    if (failed) return { kind: 'tempfail', error: `A/AAAA ${domain}: ${failed.error}` };
    return { kind: 'no-mail-host' };
  }

  /** MX records of `domain`, sorted by preference (lowest first), as cached. */
  async mx(domain: string): Promise<Answer<MxHost>> {
    const answer = await this.query('MX', domain, async () => {
      const records = await this.resolver.resolveMx(domain);
      const sorted = records
        .map((r) => ({ exchange: r.exchange.toLowerCase().replace(/\.$/, ''), priority: r.priority }))
        .sort((x, y) => x.priority - y.priority || x.exchange.localeCompare(y.exchange));
      return { records: sorted, ttl: this.opts.mxTtlSeconds ?? 300 };
    });
    return answer;
  }

  /** A (family 4) or AAAA (family 6) records of `host`, with their TTLs. */
  async addresses(host: string, family: 4 | 6): Promise<Answer<HostAddress>> {
    const type = family === 4 ? 'A' : 'AAAA';
    const answer = await this.query(type, host, async () => {
      const records =
        family === 4
          ? await this.resolver.resolve4(host, { ttl: true })
          : await this.resolver.resolve6(host, { ttl: true });
      const ttl = Math.min(...records.map((r) => r.ttl), this.opts.maxTtlSeconds ?? 3600);
      return { records: records.map((r) => ({ address: r.address, family, ttl: r.ttl })), ttl };
    });
    return answer;
  }

  /** Drops every cached answer (tests; a DNS config change builds a new resolver instead). */
  clearCache(): void {
    this.cache.clear();
  }

  /** Cancels queries in flight (they settle as tempfail). */
  cancel(): void {
    this.resolver.cancel();
  }

  private async query<T>(
    type: RecordType,
    name: string,
    run: () => Promise<{ records: T[]; ttl: number }>,
  ): Promise<Answer<T>> {
    const key = `${type} ${name}`;
    const hit = this.cache.get(key);
    if (hit && hit.expires > this.now()) {
      this.cache.delete(key); // refresh LRU position
      this.cache.set(key, hit);
      this.opts.metrics?.dnsQueries.inc({ type, result: 'cached' });
      return hit.answer as Answer<T>;
    }
    const pending = this.inflight.get(key);
    if (pending) return (await pending) as Answer<T>;
    const promise = this.ask(type, run);
    this.inflight.set(key, promise);
    try {
      const answer = await promise;
      this.remember(key, answer);
      return answer;
    } finally {
      this.inflight.delete(key);
    }
  }

  private async ask<T>(
    type: RecordType,
    run: () => Promise<{ records: T[]; ttl: number }>,
  ): Promise<Answer<T> & { ttl?: number }> {
    let answer: Answer<T> & { ttl?: number };
    try {
      const { records, ttl } = await run();
      answer = records.length > 0 ? { kind: 'records', records, ttl } : { kind: 'nodata' };
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? '';
      if (code === 'ENOTFOUND') answer = { kind: 'nxdomain' };
      else if (code === 'ENODATA') answer = { kind: 'nodata' };
      else answer = { kind: 'tempfail', error: code || (err as Error).message };
    }
    this.opts.metrics?.dnsQueries.inc({
      type,
      result: answer.kind === 'records' ? 'answer' : answer.kind,
    });
    return answer;
  }

  private remember(key: string, answer: Answer<unknown> & { ttl?: number }): void {
    const max = this.opts.config.cacheMaxEntries;
    if (max <= 0 || answer.kind === 'tempfail') return;
    const ttl = answer.kind === 'records' ? (answer.ttl ?? 0) : (this.opts.negativeTtlSeconds ?? 60);
    if (ttl <= 0) return;
    const { ttl: _drop, ...stored } = answer;
    this.cache.delete(key);
    this.cache.set(key, { answer: stored, expires: this.now() + ttl * 1000 });
    while (this.cache.size > max) {
      const oldest = this.cache.keys().next();
      if (oldest.done) break;
      this.cache.delete(oldest.value);
    }
  }

  private shuffleEqual(sorted: MxHost[]): MxHost[] {
    const out = sorted.map((h) => ({ ...h }));
    let start = 0;
    while (start < out.length) {
      let end = start + 1;
      while (end < out.length && out[end]!.priority === out[start]!.priority) end++;
      for (let i = end - 1; i > start; i--) {
        const j = start + Math.floor(this.random() * (i - start + 1));
        [out[i], out[j]] = [out[j]!, out[i]!];
      }
      start = end;
    }
    return out;
  }
}
