/**
 * The MailDomain controller: its RBAC, its watches and its reconcile, which makes sure the DKIM key exists
 * (generated into an owned Secret unless one is referenced), binds the domain to its relay (the relay's own
 * reconcile puts it in the config), publishes the DNS records to create in status, and looks them up every
 * --dns-check-interval (off the reconcile, dns-checker.ts).
 *
 * Bad input — unknown relayRef, a domain another MailDomain already claims on that relay, a missing or
 * unusable DKIM key Secret — is reported as Ready=False / Degraded=True with what to fix. The relay watch
 * and the Secret watch re-queue the domain when the missing thing appears.
 */
import { withDomainDefaults } from '../api/defaults.js';
import type { MailDomain } from '../api/maildomain.js';
import type { SmtpRelay } from '../api/smtprelay.js';
import { rfc3339 } from '../runtime/conditions.js';
import type { ReconcileResult } from '../runtime/controller.js';
import { keyOf, type KubeObject } from '../runtime/kube.js';
import type { PolicyRule } from '../runtime/rbac.js';
import { bindDomains, dkimSecretOf, domainsOf } from '../shared/binding.js';
import {
  applyIfChanged,
  b64,
  SecretReader,
  type OperatorContext,
  type ReferenceIndex,
} from '../shared/context.js';
import { ensureGenerated } from '../shared/generated.js';
import { LABELS, MANAGED_BY } from '../shared/labels.js';
import { reportFailure, StatusHold, writeStatus, type Transitions } from '../shared/status.js';
import { DomainFactsTracker, ownerKey, type Enqueue, type Informers } from '../shared/watch.js';
import { dkimKeyInfo, generateDkimKey } from './dkim.js';
import { DnsChecker } from './dns-checker.js';
import { expectedRecords, type TxtLookup } from './dns.js';
import { computeDomainStatus, type Problem } from './status.js';

export const RBAC: PolicyRule[] = [
  {
    apiGroups: ['mailfleet.dev'],
    resources: ['maildomains'],
    verbs: ['get', 'list', 'watch', 'update', 'patch'],
  },
  { apiGroups: ['mailfleet.dev'], resources: ['maildomains/status'], verbs: ['get', 'update', 'patch'] },
  { apiGroups: ['mailfleet.dev'], resources: ['maildomains/finalizers'], verbs: ['update'] },
  { apiGroups: ['mailfleet.dev'], resources: ['smtprelays'], verbs: ['get', 'list', 'watch'] },
  {
    apiGroups: [''],
    resources: ['secrets'],
    verbs: ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'],
  },
];

/**
 * What re-queues a MailDomain (beside the resync and its DNS checks, which re-queue it themselves when a
 * result changed): its own changes (not its status); the other claims of the same domain on the same relay
 * (a deleted claim hands the domain to the next); its relay appearing, going, or changing which domains its
 * status says it serves (RelayNotFound resolves, Ready follows the rollout); its DKIM Secret and the
 * Secrets it reads.
 */
export function watchForDomains(inf: Informers, domain: Pick<Enqueue, 'now'>, refs: ReferenceIndex): void {
  const facts = new DomainFactsTracker();
  inf.domains.on((type, o) => {
    const { now, before, changed } = facts.observe(type, o);
    if (!changed) return;
    const key = keyOf(o);
    const ns = o.metadata?.namespace ?? '';
    domain.now(key);
    // Only claims of the same domain on the same relay can change each other's binding.
    for (const f of [now, before]) {
      if (!f) continue;
      for (const other of domainsOf(inf.domains, ns, f.relay))
        if (keyOf(other) !== key && other.spec.domain.toLowerCase() === f.domain) domain.now(keyOf(other));
    }
  });
  // Domains read only whether their relay exists and which domains its status says it serves: a relay
  // that appears or goes re-queues all of its domains, a change of what it serves only those it concerns.
  const served = new Map<string, ReadonlySet<string>>();
  inf.relays.on((type, o) => {
    const key = keyOf(o);
    const before = served.get(key);
    const now = type === 'delete' ? undefined : new Set(o.status?.domains ?? []);
    if (now) served.set(key, now);
    else served.delete(key);
    const concerned = (name: string) => !before || !now || before.has(name) !== now.has(name);
    if (before && now && before.size === now.size && [...now].every((d) => before.has(d))) return;
    for (const d of domainsOf(inf.domains, o.metadata?.namespace ?? '', o.metadata?.name ?? ''))
      if (concerned(d.spec.domain.toLowerCase())) domain.now(keyOf(d));
  });
  inf.secrets.on((_t, o) => {
    const owner = ownerKey(o, 'MailDomain');
    if (owner) domain.now(owner);
    for (const ref of refs.owners(keyOf(o)))
      if (ref.startsWith('MailDomain:')) domain.now(ref.slice('MailDomain:'.length));
  });
}

export interface DomainControllerOptions {
  dns: TxtLookup;
  dnsCheckIntervalMs: number;
  /** Called with a domain's key when its DNS result changed (the manager re-queues it). */
  onDnsChange?: (key: string) => void;
}

export class MailDomainReconciler {
  readonly dnsChecker: DnsChecker;
  private readonly hold = new StatusHold();

  constructor(
    private readonly ctx: OperatorContext,
    private readonly opts: DomainControllerOptions,
  ) {
    this.dnsChecker = new DnsChecker({
      lookup: opts.dns,
      clock: ctx.clock,
      intervalMs: opts.dnsCheckIntervalMs,
      onChange: (key) => this.opts.onDnsChange?.(key),
    });
  }

  async reconcile(key: string): Promise<ReconcileResult | void> {
    const [namespace, name] = key.split('/') as [string, string];
    const cached = this.ctx.stores.domains.get(namespace, name);
    const raw = this.ctx.recent.resolve('MailDomain', cached, namespace, name);
    if (!raw || raw.metadata.deletionTimestamp) {
      this.ctx.refs.delete(`MailDomain:${key}`);
      this.dnsChecker.forget(key);
      this.hold.forget(key);
      return;
    }
    const d = withDomainDefaults(raw);
    try {
      return await this.sync(key, d);
    } catch (e) {
      await reportFailure(this.ctx, d, e);
      throw e;
    }
  }

  private async sync(key: string, d: MailDomain): Promise<ReconcileResult> {
    const { namespace } = d.metadata;
    const reader = new SecretReader(this.ctx.stores.secrets, namespace, this.ctx.recent);
    const problems: Problem[] = [];
    const dkim = await this.dkim(d, reader, problems);
    routeSecrets(d, reader, problems);
    this.ctx.refs.set(`MailDomain:${key}`, reader.read);
    const relay = this.relay(d, problems);
    const now = this.ctx.clock.now();
    const expected = expectedRecords(d, dkim.value);
    const dns = this.dnsChecker.current(key, expected);
    const servedByRelay = !!relay?.status?.domains?.includes(d.spec.domain.toLowerCase());
    const status = computeDomainStatus(
      {
        domain: d,
        nowIso: rfc3339(now),
        relay: relay?.metadata.name,
        servedByRelay,
        problems,
        dkim,
        dkimSecret: dkim.secret,
        dns,
      },
      d.status,
    );
    const onItsWay = !dns || (relay !== undefined && problems.length === 0 && !servedByRelay);
    // The DNS result and the relay's status re-queue the domain; the hold bounds the wait.
    const wait = this.hold.wait(key, onItsWay, now);
    if (wait > 0) return { requeueAfterMs: wait };
    await writeStatus(this.ctx, d, status, DOMAIN_TRANSITIONS);
    return {};
  }

  private relay(d: MailDomain, problems: Problem[]): SmtpRelay | undefined {
    const { namespace, name } = d.metadata;
    const relayName = d.spec.relayRef.name;
    const relay = this.ctx.stores.relays.get(namespace, relayName);
    if (!relay) {
      problems.push({
        reason: 'RelayNotFound',
        message: `SmtpRelay ${relayName} does not exist in namespace ${namespace}; create it or fix spec.relayRef.name`,
      });
      return undefined;
    }
    const all = domainsOf(this.ctx.stores.domains, namespace, relayName);
    const holder = bindDomains(namespace, relayName, all).conflicts.get(name);
    if (holder) {
      problems.push({
        reason: 'DomainConflict',
        message: `domain ${d.spec.domain} is already claimed on SmtpRelay ${relayName} by MailDomain ${holder} (the older claim wins); delete one of them or bind this one to another relay`,
      });
      return undefined;
    }
    return relay;
  }

  /** Ensures a usable DKIM key; returns the TXT value to publish. */
  private async dkim(d: MailDomain, reader: SecretReader, problems: Problem[]) {
    if (!d.spec.dkim.enabled) {
      return {
        ready: false,
        reason: 'Disabled',
        message: 'spec.dkim.enabled is false: mail is not signed',
        value: undefined,
        secret: undefined,
      };
    }
    const ref = dkimSecretOf(d);
    const { algorithm, keySize } = d.spec.dkim;
    const given = !!d.spec.dkim.privateKeySecretRef;
    const info = (pem: string | undefined) => (pem === undefined ? undefined : dkimKeyInfo(pem, algorithm));
    let value: string;
    if (given) {
      const read = reader.key(ref.name, ref.key, 'DKIM private key');
      const got = info('value' in read ? read.value : undefined);
      if (!got || 'error' in got) {
        const p = got
          ? { reason: 'DKIMKeyInvalid', message: `Secret ${ref.name} key ${ref.key} ${got.error}` }
          : (read as Problem);
        problems.push(p);
        return { ready: false, ...p, value: undefined, secret: ref.name };
      }
      value = got.record;
    } else {
      const stored = await ensureGenerated(this.ctx, reader, {
        name: ref.name,
        needs: (data) => {
          const got = info(data?.[ref.key]?.toString('utf8'));
          return !got || 'error' in got;
        },
        build: async () => dkimSecret(d, ref.name, await generateDkimKey(algorithm, keySize)),
      });
      const pem = stored.data[ref.key]!.toString('utf8');
      value = (info(pem) as { record: string }).record;
      // No Event per generated key: thousands of domains would mean thousands of Events that expire within
      // the hour; the lasting word is DKIMReady's message (and the Secret's owner).
      await applyIfChanged(this.ctx, this.ctx.stores.secrets, dkimSecret(d, ref.name, pem));
    }
    return {
      ready: true,
      reason: 'KeyReady',
      message: `signing with selector ${d.spec.dkim.selector} (${algorithm}, ${given ? `key from Secret ${ref.name}` : `key generated by the operator into Secret ${ref.name}`})`,
      value,
      secret: ref.name,
    };
  }
}

const DOMAIN_TRANSITIONS: Transitions = {
  types: ['Ready', 'Degraded', 'DNSVerified'],
  isWarning: (c) =>
    (c.type === 'Degraded' && c.status === 'True') || (c.type === 'DNSVerified' && c.status === 'False'),
  // What every new domain goes through is in status, not worth an Event each: records not published yet
  // (before they were ever found), and Ready once the relay rolled the domain out.
  isNews: (before, after) => {
    if (after.type === 'DNSVerified' && after.reason === 'RecordsMissing') return before?.status === 'True';
    if (after.type === 'Ready' && after.status === 'True')
      return before !== undefined && before.reason !== 'WaitingForRelay';
    return true;
  },
};

/** The route's smarthost Secrets must exist, or the relay leaves the domain out of its config. */
function routeSecrets(d: MailDomain, reader: SecretReader, problems: Problem[]) {
  const sh = d.spec.route?.mode === 'smarthost' ? d.spec.route.smarthost : undefined;
  if (sh?.credentialsSecretRef) {
    for (const key of ['username', 'password']) {
      const r = reader.key(sh.credentialsSecretRef.name, key, 'spec.route.smarthost.credentialsSecretRef');
      if (!('value' in r)) {
        problems.push(r);
        break;
      }
    }
  }
  if (sh?.caSecretRef) {
    const r = reader.key(sh.caSecretRef.name, sh.caSecretRef.key, 'spec.route.smarthost.caSecretRef');
    if (!('value' in r)) problems.push(r);
  }
}

function dkimSecret(d: MailDomain, name: string, pem: string): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: {
      name,
      namespace: d.metadata.namespace,
      labels: {
        [LABELS.managedBy]: MANAGED_BY,
        [LABELS.partOf]: 'mailfleet',
        [LABELS.component]: 'dkim-key',
        'mailfleet.dev/maildomain': d.metadata.name,
      },
      ownerReferences: [
        {
          apiVersion: d.apiVersion,
          kind: d.kind,
          name: d.metadata.name,
          uid: d.metadata.uid ?? '',
          controller: true,
          blockOwnerDeletion: true,
        },
      ],
    },
    type: 'Opaque',
    data: { 'private.pem': b64(pem) },
  };
}
