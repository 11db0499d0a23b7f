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
 *
 * Each query gets a c-ares channel of its own, so that `timeoutMs` is what it waits: c-ares (1.32 and
 * later, in Node 24) uses the configured timeout only for a server's first query and then adapts it to
 * five times the server's average latency (at least 250 ms). After a run of fast answers a query that
 * needs longer (a cache miss at the recursive resolver, a loaded machine) timed out early and became a
 * 451 4.4.3. A channel costs 0.1–0.2 ms and no file descriptor once its query is done; answers are
 * cached above it. What is lost is c-ares remembering a dead server across queries: like resolv.conf
 * without "rotate", every query asks the servers in their configured order.
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
  /** The channels of the queries in flight (cancel() reaches them). */
  private readonly channels = new Set<dnsPromises.Resolver>();
  private readonly servers: string[];
  private readonly cache = new Map<string, CacheEntry>();
  private readonly inflight = new Map<string, Promise<Answer<unknown>>>();
  private readonly now: () => number;
  private readonly random: () => number;

  constructor(private readonly opts: ResolverOptions) {
    const { config } = opts;
    this.servers = normaliseServers(config.servers);
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
      const records = await this.withChannel((c) => c.resolveMx(domain));
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
      const records = await this.withChannel((c) =>
        family === 4 ? c.resolve4(host, { ttl: true }) : c.resolve6(host, { ttl: true }),
      );
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
    for (const c of this.channels) c.cancel();
  }

  /** Runs one query on a channel of its own (see the top of this file for why). */
  private async withChannel<T>(query: (channel: dnsPromises.Resolver) => Promise<T>): Promise<T> {
    const { timeoutMs, tries } = this.opts.config;
    const channel = new dnsPromises.Resolver({ timeout: timeoutMs, tries });
    if (this.servers.length > 0) channel.setServers(this.servers);
    this.channels.add(channel);
    try {
      return await query(channel);
    } finally {
      this.channels.delete(channel);
    }
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
