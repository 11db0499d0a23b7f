import { createPrivateKey } from 'node:crypto';
import { dkimRecordValue, generateDkimKey, parseDkimKey } from '../../../operator/maildomain/dkim.js';
import { expectedRecords, matchRecords, recordMatches } from '../../../operator/maildomain/dns.js';
import { evaluateDomainConditions } from '../../../operator/maildomain/status.js';
import { domain } from './fixtures.js';

describe('DKIM keys', () => {
  it('generates keys whose TXT value carries the public key', async () => {
    const rsa = await generateDkimKey('rsa-sha256', 1024);
    const key = parseDkimKey(rsa, 'rsa-sha256');
    expect(typeof key).not.toBe('string');
    expect(dkimRecordValue(key as never)).toMatch(/^v=DKIM1; k=rsa; p=MI[A-Za-z0-9+/=]+$/);
    const ed = await generateDkimKey('ed25519-sha256', 0);
    const v = dkimRecordValue(createPrivateKey(ed));
    expect(v).toMatch(/^v=DKIM1; k=ed25519; p=/);
    expect(Buffer.from(v.split('p=')[1]!, 'base64')).toHaveLength(32);
    expect(parseDkimKey(ed, 'rsa-sha256')).toBe('is a ed25519 key but spec.dkim.algorithm is rsa-sha256');
    expect(parseDkimKey('nope', 'rsa-sha256')).toBe('is not a PEM private key');
  });
});

describe('DNS records', () => {
  const d = domain('x', {
    domain: 'Example.COM',
    dns: {
      spf: 'v=spf1 include:_spf.example.net ~all',
      dmarcPolicy: 'reject',
      dmarcReportAddress: 'dmarc@example.com',
    },
  } as never);
  const expected = expectedRecords(d, 'v=DKIM1; k=rsa; p=ABC');

  it('lists DKIM, SPF and DMARC records at the right names', () => {
    expect(expected).toEqual([
      {
        purpose: 'DKIM',
        type: 'TXT',
        name: 'mailfleet._domainkey.example.com',
        value: 'v=DKIM1; k=rsa; p=ABC',
      },
      { purpose: 'SPF', type: 'TXT', name: 'example.com', value: 'v=spf1 include:_spf.example.net ~all' },
      {
        purpose: 'DMARC',
        type: 'TXT',
        name: '_dmarc.example.com',
        value: 'v=DMARC1; p=reject; rua=mailto:dmarc@example.com',
      },
    ]);
  });

  it('matches published records: DKIM by key, SPF and DMARC by presence; failures are not "missing"', () => {
    expect(recordMatches(expected[0]!, 'v=DKIM1;k=rsa; p=A BC')).toBe(true);
    expect(recordMatches(expected[0]!, 'v=DKIM1; k=rsa; p=OTHER')).toBe(false);
    expect(recordMatches(expected[1]!, 'v=spf1 -all')).toBe(true);
    expect(recordMatches(expected[1]!, 'google-site-verification=x')).toBe(false);
    expect(recordMatches(expected[2]!, 'v=DMARC1; p=none')).toBe(true);
    const found = matchRecords(
      expected,
      new Map<string, string[] | { error: string }>([
        ['mailfleet._domainkey.example.com', ['v=DKIM1; k=rsa; p=ABC']],
        ['example.com', ['v=spf1 mx ~all']],
        ['_dmarc.example.com', { error: 'ETIMEOUT' }],
      ]),
    );
    expect(found.records.map((r) => r.found)).toEqual([true, true, false]);
    expect(found.failed).toEqual(['_dmarc.example.com: ETIMEOUT']);
    const conds = evaluateDomainConditions({
      domain: d,
      nowIso: 'x',
      relay: 'mail',
      servedByRelay: true,
      problems: [],
      dkim: { ready: true, reason: 'KeyReady', message: '' },
      dns: found,
    });
    expect(conds.find((c) => c.type === 'DNSVerified')).toMatchObject({
      status: 'Unknown',
      reason: 'LookupFailed',
    });
    expect(conds.find((c) => c.type === 'Ready')).toMatchObject({ status: 'True', reason: 'Bound' });
  });
});
