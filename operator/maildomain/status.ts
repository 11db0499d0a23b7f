/** MailDomain conditions (pure): what the reconcile found → Ready, Progressing, Degraded, DKIMReady, DNSVerified. */
import type { MailDomain, MailDomainStatus } from '../api/maildomain.js';
import { setConditions, type ConditionInput } from '../runtime/conditions.js';
import type { Lookup } from './dns.js';

export interface Problem {
  reason: string;
  message: string;
}

export interface DomainStatusInput {
  domain: MailDomain;
  nowIso: string;
  /** Set when the relay exists and this domain is bound to it. */
  relay?: string;
  /** Relay reports the domain in its status.domains (the config carrying it is rolled out). */
  servedByRelay: boolean;
  problems: Problem[];
  dkim: { ready: boolean; reason: string; message: string };
  dkimSecret?: string;
  dns?: Lookup;
}

function dnsCondition(dns: Lookup | undefined): ConditionInput {
  if (!dns)
    return {
      type: 'DNSVerified',
      status: 'Unknown',
      reason: 'NotChecked',
      message: 'DNS records have not been looked up yet',
    };
  const missing = dns.records.filter((r) => !r.found);
  if (dns.failed.length) {
    return {
      type: 'DNSVerified',
      status: 'Unknown',
      reason: 'LookupFailed',
      message: `DNS lookups failed: ${dns.failed.join('; ')}`,
    };
  }
  if (missing.length) {
    return {
      type: 'DNSVerified',
      status: 'False',
      reason: 'RecordsMissing',
      message: `publish ${missing.map((r) => `${r.purpose} TXT at ${r.name}`).join(', ')} (values in status.dnsRecords)`,
    };
  }
  return {
    type: 'DNSVerified',
    status: 'True',
    reason: 'RecordsFound',
    message: 'DKIM, SPF and DMARC records are published',
  };
}

export function evaluateDomainConditions(input: DomainStatusInput): ConditionInput[] {
  const first = input.problems[0];
  const ready: ConditionInput = first
    ? { type: 'Ready', status: 'False', reason: first.reason, message: first.message }
    : input.servedByRelay
      ? { type: 'Ready', status: 'True', reason: 'Bound', message: `served by SmtpRelay ${input.relay}` }
      : {
          type: 'Ready',
          status: 'False',
          reason: 'WaitingForRelay',
          message: `waiting for SmtpRelay ${input.relay} to roll out a config with this domain`,
        };
  return [
    ready,
    !first && !input.servedByRelay
      ? { type: 'Progressing', status: 'True', reason: 'WaitingForRelay', message: ready.message }
      : {
          type: 'Progressing',
          status: 'False',
          reason: first ? 'Blocked' : 'Reconciled',
          message: first ? 'waiting for the problem in Degraded to be fixed' : 'up to date',
        },
    first
      ? {
          type: 'Degraded',
          status: 'True',
          reason: first.reason,
          message: input.problems.map((p) => p.message).join('; '),
        }
      : { type: 'Degraded', status: 'False', reason: 'AsExpected', message: 'no problems found' },
    {
      type: 'DKIMReady',
      status: input.dkim.ready ? 'True' : 'False',
      reason: input.dkim.reason,
      message: input.dkim.message,
    },
    dnsCondition(input.dns),
  ];
}

export function computeDomainStatus(
  input: DomainStatusInput,
  previous: MailDomainStatus | undefined,
): MailDomainStatus {
  const d = input.domain;
  return {
    observedGeneration: d.metadata.generation ?? 0,
    conditions: setConditions(
      previous?.conditions,
      evaluateDomainConditions(input),
      d.metadata.generation,
      input.nowIso,
    ),
    ...(input.relay ? { relay: input.relay } : {}),
    ...(input.dkimSecret ? { dkimSecret: input.dkimSecret } : {}),
    ...(input.dns ? { dnsRecords: input.dns.records } : {}),
  };
}
