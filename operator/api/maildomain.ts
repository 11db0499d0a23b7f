/**
 * MailDomain (mailfleet.dev/v1alpha1): a sending domain bound to one SmtpRelay. One source of truth for
 * its CRD schema, TypeScript types and defaults.
 */
import { Conditions, LocalObjectName, ObservedGeneration, Route, SecretKeyRef } from './common.js';
import type { ObjectMeta } from './smtprelay.js';
import { Arr, Bool, DOMAIN_PATTERN, Enum, Int, Obj, Optional, Str, type Static } from './schema.js';

export const DkimAlgorithms = ['rsa-sha256', 'ed25519-sha256'] as const;
export const DkimFailureActions = ['Defer', 'SendUnsigned'] as const;

export const DkimSpec = Obj(
  {
    enabled: Bool({ description: 'Sign mail sent as this domain with DKIM.', default: true }),
    selector: Str({
      description: 'DKIM selector; the public key is published at <selector>._domainkey.<domain>.',
      default: 'mailfleet',
      minLength: 1,
      maxLength: 63,
      pattern: '^[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?$',
    }),
    algorithm: Enum(DkimAlgorithms, {
      description:
        'Signing algorithm. rsa-sha256 is understood everywhere; ed25519-sha256 (RFC 8463) is not yet.',
      default: 'rsa-sha256',
    }),
    keySize: Int({
      description: 'RSA key size in bits for a generated key (ignored for ed25519).',
      default: 2048,
      minimum: 1024,
      maximum: 4096,
    }),
    onSigningFailure: Enum(DkimFailureActions, {
      description:
        'When a message cannot be signed (key unreadable or invalid): Defer keeps it queued and retries, signing again each time, until it is signed or its lifetime ends (then it bounces with the reason); SendUnsigned delivers it unsigned, which receivers enforcing DMARC may reject. Both are counted (mailfleet_relay_dkim_signing_failures_total) and alerted on.',
      default: 'Defer',
    }),
    privateKeySecretRef: Optional(
      SecretKeyRef(
        'Use this existing private key (PEM, PKCS#8 or PKCS#1) instead of generating one. The operator reads it and never changes it.',
        'private.pem',
      ),
    ),
  },
  { description: 'DKIM signing key and selector.', default: {} },
);

export const DnsPolicy = Obj(
  {
    spf: Str({
      description:
        'The SPF record to publish at the domain. Name the addresses your relays send from (their egress IPs or your smarthost).',
      default: 'v=spf1 mx ~all',
      pattern: '^v=spf1( .*)?$',
    }),
    dmarcPolicy: Enum(['none', 'quarantine', 'reject'] as const, {
      description: 'DMARC policy (p=) of the record to publish at _dmarc.<domain>.',
      default: 'none',
    }),
    dmarcReportAddress: Optional(
      Str({
        description: 'Where DMARC aggregate reports go (rua=mailto:...).',
        pattern: '^[^@\\s]+@[^@\\s]+$',
      }),
    ),
  },
  { description: 'The SPF and DMARC records shown in status for you to publish.', default: {} },
);

export const MailDomainSpec = Obj(
  {
    domain: Str({
      description: 'The sending domain, e.g. example.com. Immutable.',
      minLength: 1,
      maxLength: 253,
      pattern: DOMAIN_PATTERN,
      'x-kubernetes-validations': [
        { rule: 'self == oldSelf', message: 'domain is immutable; create another MailDomain' },
      ],
    }),
    relayRef: Obj(
      { name: LocalObjectName('Name of an SmtpRelay in the same namespace.') },
      { description: 'The SmtpRelay that sends mail for this domain.' },
    ),
    allowedUsers: Arr(Str({ description: 'An SMTP user name of the relay, or "*".', minLength: 1 }), {
      description:
        'SMTP users who may send as this domain; "*" allows every user of the relay. Clients of the relay listener (no AUTH) need no user.',
      default: ['*'],
      'x-kubernetes-list-type': 'set',
    }),
    allowedSenders: Arr(
      Str({
        description: 'An address pattern, e.g. noreply@example.com or *-alerts@example.com.',
        minLength: 1,
      }),
      {
        description:
          'Sender address patterns allowed ("*" matches any run of characters). Empty: any address at the domain.',
        default: [],
        'x-kubernetes-list-type': 'set',
      },
    ),
    dkim: DkimSpec,
    route: Optional(Route('A route for mail sent as this domain, overriding the relay delivery route.')),
    dns: DnsPolicy,
  },
  { description: 'Desired state of the sending domain.' },
);

export const DnsRecordPurposes = ['DKIM', 'SPF', 'DMARC'] as const;

export const DnsRecordStatus = Obj(
  {
    purpose: Enum(DnsRecordPurposes, { description: 'What the record is for.' }),
    type: Str({ description: 'DNS record type (TXT).' }),
    name: Str({ description: 'Fully qualified record name.' }),
    value: Str({
      description: 'Record value to publish (long TXT values may be split into 255-byte strings).',
    }),
    found: Bool({ description: 'Whether the last lookup found a matching record.' }),
  },
  { description: 'A DNS record to publish and whether it was found.' },
);

export const MailDomainStatus = Obj(
  {
    observedGeneration: Optional(ObservedGeneration),
    conditions: Optional(Conditions),
    relay: Optional(Str({ description: 'The SmtpRelay this domain is bound to, once bound.' })),
    dkimSecret: Optional(Str({ description: 'Secret holding the DKIM private key in use.' })),
    dnsRecords: Optional(
      Arr(DnsRecordStatus, { description: 'The DNS records to publish, with what the last lookup found.' }),
    ),
  },
  { description: 'Observed state of the sending domain.' },
);

export type MailDomainSpec = Static<typeof MailDomainSpec>;
export type MailDomainStatus = Static<typeof MailDomainStatus>;
export type DnsRecordStatus = Static<typeof DnsRecordStatus>;

export interface MailDomain {
  apiVersion: 'mailfleet.dev/v1alpha1';
  kind: 'MailDomain';
  metadata: ObjectMeta;
  spec: MailDomainSpec;
  status?: MailDomainStatus;
}
