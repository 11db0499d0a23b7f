import { withDomainDefaults, withRelayDefaults } from '../../../operator/api/defaults.js';
import type { MailDomain, MailDomainSpec } from '../../../operator/api/maildomain.js';
import type { SmtpRelay, SmtpRelaySpec } from '../../../operator/api/smtprelay.js';

export function relay(spec: Partial<SmtpRelaySpec> = {}, name = 'mail', namespace = 'apps'): SmtpRelay {
  return withRelayDefaults({
    apiVersion: 'mailfleet.dev/v1alpha1',
    kind: 'SmtpRelay',
    metadata: { name, namespace, uid: 'uid-relay', generation: 3, creationTimestamp: '2025-01-01T00:00:00Z' },
    spec: spec as SmtpRelaySpec,
  });
}

export function domain(
  name: string,
  spec: Partial<MailDomainSpec> & { domain: string },
  opts: { created?: string; relay?: string; namespace?: string } = {},
): MailDomain {
  return withDomainDefaults({
    apiVersion: 'mailfleet.dev/v1alpha1',
    kind: 'MailDomain',
    metadata: {
      name,
      namespace: opts.namespace ?? 'apps',
      uid: `uid-${name}`,
      generation: 1,
      creationTimestamp: opts.created ?? '2025-01-01T00:00:00Z',
    },
    spec: { relayRef: { name: opts.relay ?? 'mail' }, ...spec } as MailDomainSpec,
  });
}
