/**
 * Defaults from the schemas, applied to objects read from the API (the API server has already defaulted
 * them; this covers objects from before a default existed and unit fixtures). Pure.
 */
import { Value } from 'typebox/value';
import { MailDomainSpec, type MailDomain } from './maildomain.js';
import { SmtpRelaySpec, type SmtpRelay } from './smtprelay.js';

export function withRelayDefaults(relay: SmtpRelay): SmtpRelay {
  const spec = Value.Default(SmtpRelaySpec, structuredClone(relay.spec ?? {})) as SmtpRelay['spec'];
  return { ...relay, spec };
}

export function withDomainDefaults(domain: MailDomain): MailDomain {
  const spec = Value.Default(MailDomainSpec, structuredClone(domain.spec ?? {})) as MailDomain['spec'];
  return { ...domain, spec };
}
