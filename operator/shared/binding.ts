/**
 * Which MailDomains a relay serves, and where a domain's DKIM key is (pure; both controllers use them so
 * they agree).
 *
 * A MailDomain binds to the SmtpRelay named in relayRef, in its namespace. Two MailDomains may claim the
 * same domain on the same relay; the oldest claim wins (creationTimestamp, then name), so an existing domain
 * is never taken over by a newcomer. The loser is reported as conflicting and left out of the config.
 * Domains being deleted are left out.
 */
import { withDomainDefaults } from '../api/defaults.js';
import type { MailDomain } from '../api/maildomain.js';
import type { Store } from '../runtime/informer.js';

export interface Binding {
  bound: MailDomain[];
  /** MailDomain name → name of the MailDomain that holds its domain. */
  conflicts: Map<string, string>;
}

const older = (a: MailDomain, b: MailDomain) => {
  const ta = a.metadata.creationTimestamp ?? '';
  const tb = b.metadata.creationTimestamp ?? '';
  if (ta !== tb) return ta < tb ? -1 : 1;
  return a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0;
};

export function bindDomains(namespace: string, relayName: string, all: readonly MailDomain[]): Binding {
  const mine = all
    .filter((d) => d.metadata.namespace === namespace && d.spec.relayRef.name === relayName)
    .filter((d) => !d.metadata.deletionTimestamp)
    .sort(older);
  const holder = new Map<string, MailDomain>();
  const conflicts = new Map<string, string>();
  const bound: MailDomain[] = [];
  for (const d of mine) {
    const key = d.spec.domain.toLowerCase();
    const h = holder.get(key);
    if (h) {
      conflicts.set(d.metadata.name, h.metadata.name);
      continue;
    }
    holder.set(key, d);
    bound.push(d);
  }
  return { bound, conflicts };
}

/** The MailDomains in `namespace` that name `relay` (with defaults), whether bound or not. */
export function domainsOf(domains: Store<MailDomain>, namespace: string, relay: string): MailDomain[] {
  return domains
    .list(namespace)
    .filter((d) => d.spec?.relayRef?.name === relay)
    .map(withDomainDefaults);
}

/** Name and key of the Secret holding a MailDomain's DKIM private key. */
export function dkimSecretOf(d: MailDomain): { name: string; key: string } {
  const ref = d.spec.dkim.privateKeySecretRef;
  return ref ? { name: ref.name, key: ref.key } : { name: `${d.metadata.name}-dkim`, key: 'private.pem' };
}
