/**
 * The DNS records a MailDomain needs (DKIM, SPF, DMARC) and the check of what is published.
 *
 * `expectedRecords` and `matchRecords` are pure. `ResolverTxtLookup` queries TXT records with node's
 * dns.promises.Resolver, on the servers given by the --dns-server flag (else the system resolvers).
 * A lookup that fails for a reason other than "no such name / no data" is reported as unknown, not missing.
 * Each lookup gets a channel of its own so that its timeout holds (relay/dns/resolver.ts says why).
 */
import { promises as dns } from 'node:dns';
import type { DnsRecordStatus, MailDomain } from '../api/maildomain.js';

export interface ExpectedRecord {
  purpose: 'DKIM' | 'SPF' | 'DMARC';
  type: 'TXT';
  name: string;
  value: string;
}

export function expectedRecords(d: MailDomain, dkimValue: string | undefined): ExpectedRecord[] {
  const domain = d.spec.domain.toLowerCase();
  const out: ExpectedRecord[] = [];
  if (dkimValue)
    out.push({
      purpose: 'DKIM',
      type: 'TXT',
      name: `${d.spec.dkim.selector}._domainkey.${domain}`,
      value: dkimValue,
    });
  out.push({ purpose: 'SPF', type: 'TXT', name: domain, value: d.spec.dns.spf });
  const rua = d.spec.dns.dmarcReportAddress ? `; rua=mailto:${d.spec.dns.dmarcReportAddress}` : '';
  out.push({
    purpose: 'DMARC',
    type: 'TXT',
    name: `_dmarc.${domain}`,
    value: `v=DMARC1; p=${d.spec.dns.dmarcPolicy}${rua}`,
  });
  return out;
}

/** TXT strings at a name (each record's chunks joined), [] when none, or an error message. */
export type TxtResult = string[] | { error: string };

export interface TxtLookup {
  txt(name: string): Promise<TxtResult>;
}

const tag = (record: string, name: string) =>
  record
    .split(';')
    .map((p) => p.trim())
    .find((p) => p.toLowerCase().startsWith(`${name}=`))
    ?.slice(name.length + 1)
    .replace(/\s+/g, '');

/** Whether a published record satisfies the expected one. */
export function recordMatches(expected: ExpectedRecord, published: string): boolean {
  const p = published.trim();
  switch (expected.purpose) {
    case 'DKIM':
      return tag(p, 'p') === tag(expected.value, 'p');
    case 'SPF':
      // Any SPF record counts: sites merge ours into theirs.
      return /^v=spf1(\s|$)/i.test(p);
    case 'DMARC':
      return /^v=DMARC1\s*(;|$)/i.test(p);
  }
}

export interface Lookup {
  records: DnsRecordStatus[];
  /** Names whose lookup failed (not "absent"). */
  failed: string[];
}

export function matchRecords(
  expected: readonly ExpectedRecord[],
  results: ReadonlyMap<string, TxtResult>,
): Lookup {
  const failed: string[] = [];
  const records = expected.map((e) => {
    const r = results.get(e.name);
    if (r && !Array.isArray(r)) failed.push(`${e.name}: ${r.error}`);
    const found = Array.isArray(r) && r.some((txt) => recordMatches(e, txt));
    return { ...e, found };
  });
  return { records, failed };
}

export class ResolverTxtLookup implements TxtLookup {
  constructor(
    private readonly servers: readonly string[],
    private readonly timeoutMs = 5000,
  ) {
    // A malformed --dns-server fails here, at start, not at the first lookup.
    if (servers.length) new dns.Resolver().setServers([...servers]);
  }

  async txt(name: string): Promise<TxtResult> {
    const resolver = new dns.Resolver({ timeout: this.timeoutMs, tries: 2 });
    if (this.servers.length) resolver.setServers([...this.servers]);
    try {
      const recs = await resolver.resolveTxt(name);
      return recs.map((chunks) => chunks.join(''));
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code === 'ENOTFOUND' || code === 'ENODATA') return [];
      return { error: code ?? String(e) };
    }
  }
}
