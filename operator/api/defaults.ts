/**
 * Defaults from the schemas, applied to objects read from the API (the API server has already defaulted
 * them; this covers objects from before a default existed and unit fixtures). Pure.
 *
 * Reconciles look at every MailDomain of a relay each time, so the result is kept per input object (the
 * informer cache replaces an object on every change, so identity is the version): read-only, like the
 * cache it comes from.
 */
import { Value } from 'typebox/value';
import { MailDomainSpec, type MailDomain } from './maildomain.js';
import { SmtpRelaySpec, type SmtpRelay } from './smtprelay.js';

const relays = new WeakMap<object, SmtpRelay>();
const domains = new WeakMap<object, MailDomain>();

export function withRelayDefaults(relay: SmtpRelay): SmtpRelay {
  let out = relays.get(relay);
  if (!out) {
    const spec = Value.Default(SmtpRelaySpec, structuredClone(relay.spec ?? {})) as SmtpRelay['spec'];
    out = { ...relay, spec };
    relays.set(relay, out);
  }
  return out;
}

export function withDomainDefaults(domain: MailDomain): MailDomain {
  let out = domains.get(domain);
  if (!out) {
    const spec = Value.Default(MailDomainSpec, structuredClone(domain.spec ?? {})) as MailDomain['spec'];
    out = { ...domain, spec };
    domains.set(domain, out);
  }
  return out;
}
