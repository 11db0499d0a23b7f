/**
 * The MailDomain reconciler: makes sure the DKIM key exists (generated into an owned Secret unless one is
 * referenced), binds the domain to its relay (the relay's own reconcile puts it in the config), publishes
 * the DNS records to create in status, and looks them up every --dns-check-interval.
 *
 * Bad input — unknown relayRef, a domain another MailDomain already claims on that relay, a missing or
 * unusable DKIM key Secret — is reported as Ready=False / Degraded=True with what to fix. The relay watch
 * and the Secret watch re-queue the domain when the missing thing appears.
 */
import { withDomainDefaults } from '../api/defaults.js';
import type { MailDomain, MailDomainStatus } from '../api/maildomain.js';
import type { SmtpRelay } from '../api/smtprelay.js';
import { applyIfChanged, b64, SecretReader, type OperatorContext } from '../context.js';
import { rfc3339 } from '../runtime/conditions.js';
import type { ReconcileResult } from '../runtime/controller.js';
import { hashObject } from '../runtime/diff.js';
import type { KubeObject } from '../runtime/kube.js';
import { ensureGenerated, type SecretData } from '../generated.js';
import { reportFailure, writeStatus, type Transitions } from '../status.js';
import type { PolicyRule } from '../runtime/rbac.js';
import { dkimSecretOf } from '../smtprelay/material.js';
import { MANAGED_BY, LABELS } from '../smtprelay/names.js';
import { bindDomains } from './binding.js';
import { dkimRecordValue, generateDkimKey, parseDkimKey } from './dkim.js';
import { expectedRecords, matchRecords, type Lookup, type TxtLookup, type TxtResult } from './dns.js';
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

export interface DomainControllerOptions {
  dns: TxtLookup;
  dnsCheckIntervalMs: number;
}

export class MailDomainReconciler {
  /** Last DNS lookup per MailDomain key: when, for which expected records, and what it found. */
  private readonly dnsCache = new Map<string, { at: number; expectHash: string; lookup: Lookup }>();

  constructor(
    private readonly ctx: OperatorContext,
    private readonly opts: DomainControllerOptions,
  ) {}

  async reconcile(key: string): Promise<ReconcileResult | void> {
    const [namespace, name] = key.split('/') as [string, string];
    const cached = this.ctx.stores.domains.get(namespace, name);
    const raw = this.ctx.recent.resolve('MailDomain', cached, namespace, name) as MailDomain | undefined;
    if (!raw || raw.metadata.deletionTimestamp) {
      this.ctx.refs.delete(`MailDomain:${key}`);
      this.dnsCache.delete(key);
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
    const dns = await this.lookup(key, expected, now);
    const status = computeDomainStatus(
      {
        domain: d,
        nowIso: rfc3339(now),
        relay: relay?.metadata.name,
        servedByRelay: !!relay?.status?.domains?.includes(d.spec.domain.toLowerCase()),
        problems,
        dkim,
        dkimSecret: dkim.secret,
        dns,
      },
      d.status,
    );
    await this.writeStatus(d, status);
    const checked = this.dnsCache.get(key)?.at ?? now;
    return { requeueAfterMs: Math.max(1000, checked + this.opts.dnsCheckIntervalMs - now) };
  }

  private relay(d: MailDomain, problems: Problem[]): SmtpRelay | undefined {
    const { namespace, name } = d.metadata;
    const relayName = d.spec.relayRef.name;
    const relay = this.ctx.stores.relays.get(namespace, relayName) as SmtpRelay | undefined;
    if (!relay) {
      problems.push({
        reason: 'RelayNotFound',
        message: `SmtpRelay ${relayName} does not exist in namespace ${namespace}; create it or fix spec.relayRef.name`,
      });
      return undefined;
    }
    const all = this.ctx.stores.domains
      .list(namespace)
      .map((x) => withDomainDefaults(x as unknown as MailDomain));
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
    const given = !!d.spec.dkim.privateKeySecretRef;
    const read = reader.key(ref.name, ref.key, 'DKIM private key');
    let pem = 'value' in read ? read.value : undefined;
    let parsed = pem ? parseDkimKey(pem, d.spec.dkim.algorithm) : undefined;
    if (given && (!pem || typeof parsed === 'string')) {
      const p = pem
        ? { reason: 'DKIMKeyInvalid', message: `Secret ${ref.name} key ${ref.key} ${parsed as string}` }
        : (read as Problem);
      problems.push(p);
      return { ready: false, ...p, value: undefined, secret: ref.name };
    }
    if (!given) {
      const { algorithm, keySize } = d.spec.dkim;
      const usable = (data: SecretData | undefined) => {
        const p = data?.[ref.key]?.toString('utf8');
        return p !== undefined && typeof parseDkimKey(p, algorithm) !== 'string';
      };
      const stored = await ensureGenerated(this.ctx, reader, {
        name: ref.name,
        needs: (data) => !usable(data),
        build: async () => dkimSecret(d, ref.name, await generateDkimKey(algorithm, keySize)),
      });
      pem = stored.data[ref.key]!.toString('utf8');
      parsed = parseDkimKey(pem, algorithm);
      if (stored.generated)
        this.ctx.events.record(
          d as unknown as KubeObject,
          'Normal',
          'DKIMKeyGenerated',
          `generated a ${algorithm} DKIM key into Secret ${ref.name}`,
        );
      await applyIfChanged(this.ctx, this.ctx.stores.secrets, dkimSecret(d, ref.name, pem));
    }
    const value = dkimRecordValue(parsed as Exclude<typeof parsed, string | undefined>);
    return {
      ready: true,
      reason: 'KeyReady',
      message: `signing with selector ${d.spec.dkim.selector} (${d.spec.dkim.algorithm})`,
      value,
      secret: ref.name,
    };
  }

  /** Looks the records up when the interval has passed or what we expect changed; otherwise reuses the last result. */
  private async lookup(
    key: string,
    expected: ReturnType<typeof expectedRecords>,
    now: number,
  ): Promise<Lookup> {
    const expectHash = hashObject(expected);
    const cached = this.dnsCache.get(key);
    if (cached && cached.expectHash === expectHash && now - cached.at < this.opts.dnsCheckIntervalMs)
      return cached.lookup;
    const results = new Map<string, TxtResult>();
    for (const name of new Set(expected.map((e) => e.name))) results.set(name, await this.opts.dns.txt(name));
    const lookup = matchRecords(expected, results);
    this.dnsCache.set(key, { at: now, expectHash, lookup });
    return lookup;
  }

  private async writeStatus(d: MailDomain, status: MailDomainStatus) {
    await writeStatus(this.ctx, d, status, DOMAIN_TRANSITIONS);
  }
}

const DOMAIN_TRANSITIONS: Transitions = {
  types: ['Ready', 'Degraded', 'DNSVerified'],
  isWarning: (c) =>
    (c.type === 'Degraded' && c.status === 'True') || (c.type === 'DNSVerified' && c.status === 'False'),
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
