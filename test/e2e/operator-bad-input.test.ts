/**
 * Bad input, on the real control plane:
 *
 * - what the API can catch — a bad domain, missing required fields, contradictory fields (smarthost mode
 *   without a smarthost, two TLS sources, listeners on one port, ...), unknown fields, an edit of an
 *   immutable field — is refused by the API server (the CRDs' schemas and CEL rules), with a message that
 *   names the field and says what is wrong; nothing is created;
 * - what it cannot — a MailDomain whose relay does not exist, an SmtpRelay whose password, smarthost or
 *   TLS source is missing, two MailDomains claiming one domain, a DKIM key Secret that does not exist — is
 *   a Ready=False/Degraded=True condition whose reason and message say what to fix, while the operator
 *   keeps running; creating the missing thing (or removing the conflict) heals the object.
 */
import path from 'node:path';
import YAML from 'yaml';
import { clusterFromEnv, type Cluster, type KubeObject } from '../cluster/kube.js';
import { startDnsServer, type TestDnsServer } from '../helpers/dns.js';
import type { RelayConfig } from '../../relay/config/schema.js';
import {
  conditionOf,
  EXAMPLES_DIR,
  installOperator,
  startOperator,
  type OperatorNamespace,
  type OperatorProcess,
} from './operator.js';

jest.setTimeout(180_000);

let k: Cluster;
let env: OperatorNamespace;
let dns: TestDnsServer;
let op: OperatorProcess;
let ns: string;

beforeAll(async () => {
  k = clusterFromEnv();
  env = await installOperator(k, 'badinput');
  ns = env.ns;
  dns = await startDnsServer({ records: [] });
  op = await startOperator(k, env, { dnsServer: dns.server, syncPeriod: '30s' });
});

afterAll(async () => {
  await op?.stop();
  await dns?.stop();
  await env?.cleanup();
});

const get = (resource: string) => k.get(resource, { namespace: ns });

const relay = (name: string, spec: Record<string, unknown> = {}) => ({
  apiVersion: 'mailfleet.dev/v1alpha1',
  kind: 'SmtpRelay',
  metadata: { name },
  spec,
});

const domain = (name: string, spec: Record<string, unknown>) => ({
  apiVersion: 'mailfleet.dev/v1alpha1',
  kind: 'MailDomain',
  metadata: { name },
  spec,
});

const secret = (name: string, data: Record<string, string>) => ({
  apiVersion: 'v1',
  kind: 'Secret',
  metadata: { name },
  stringData: data,
});

/** Applies `obj` expecting a refusal; returns kubectl's error text. */
async function refused(obj: object): Promise<string> {
  const r = await k.apply(obj, { namespace: ns, allowFailure: true });
  if (r.code === 0) throw new Error(`the API server accepted it: ${r.stdout.trim()}`);
  return r.stderr.trim();
}

async function relayConfigOf(name: string): Promise<RelayConfig> {
  const cm = await get(`configmap/${name}-config`);
  return YAML.parse((cm?.data as Record<string, string>)['relay.yaml']!) as RelayConfig;
}

describe('the API server refuses invalid objects, saying which field and why', () => {
  const cases: Array<[string, object, string[]]> = [
    [
      'a MailDomain with a domain that is not a domain name',
      domain('bad-domain', { domain: 'not a domain', relayRef: { name: 'mail' } }),
      [
        'The MailDomain "bad-domain" is invalid',
        'spec.domain: Invalid value: "not a domain"',
        'should match',
      ],
    ],
    [
      'a MailDomain without relayRef',
      domain('no-relay', { domain: 'example.com' }),
      ['The MailDomain "no-relay" is invalid', 'spec.relayRef: Required value'],
    ],
    [
      'a MailDomain without spec',
      { apiVersion: 'mailfleet.dev/v1alpha1', kind: 'MailDomain', metadata: { name: 'no-spec' } },
      ['spec: Required value'],
    ],
    [
      'smarthost mode without a smarthost',
      relay('no-smarthost', { delivery: { route: { mode: 'smarthost' } } }),
      ['spec.delivery.route: Required value: smarthost is required when mode is smarthost'],
    ],
    [
      'direct mode with a smarthost',
      relay('direct-smarthost', {
        delivery: { route: { mode: 'direct', smarthost: { host: 'smtp.example.net' } } },
      }),
      ['spec.delivery.route: Forbidden: smarthost must not be set when mode is direct'],
    ],
    [
      'a smarthost route on a MailDomain without its smarthost',
      domain('route-no-smarthost', {
        domain: 'example.com',
        relayRef: { name: 'mail' },
        route: { mode: 'smarthost' },
      }),
      ['spec.route: Required value: smarthost is required when mode is smarthost'],
    ],
    [
      'the relay listener without allowedNetworks',
      relay('open-relay', { listeners: { relay: { enabled: true } } }),
      [
        'spec.listeners.relay: Required value: allowedNetworks must list at least one network when the relay listener is enabled',
      ],
    ],
    [
      'two listeners on one port',
      relay('same-port', { listeners: { smtps: { enabled: true, port: 587 } } }),
      ['spec.listeners: Invalid value: enabled listeners must use different ports'],
    ],
    [
      'no listener at all',
      relay('no-listener', { listeners: { submission: { enabled: false } } }),
      ['spec.listeners: Invalid value: at least one listener must be enabled'],
    ],
    [
      'the metrics port on a listener port',
      relay('metrics-port', { monitoring: { metricsPort: 587 } }),
      ['monitoring.metricsPort must differ from the enabled listener ports'],
    ],
    [
      'two TLS sources',
      relay('two-tls', { tls: { secretName: 'relay-tls', issuerRef: { name: 'ca-issuer' } } }),
      ['spec.tls: Forbidden: set at most one of secretName and issuerRef'],
    ],
    [
      'a negative replica count',
      relay('negative', { replicas: -1 }),
      ['spec.replicas: Invalid value: -1: spec.replicas in body should be greater than or equal to 0'],
    ],
    [
      'a first retry after the longest backoff',
      relay('retry', { queue: { retry: { firstRetrySeconds: 9000, maxBackoffSeconds: 60 } } }),
      ['spec.queue.retry: Invalid value: firstRetrySeconds must not exceed maxBackoffSeconds'],
    ],
    [
      'a user name with a space',
      relay('bad-user', { users: [{ name: 'bad user' }] }),
      ['spec.users[0].name: Invalid value: "bad user"'],
    ],
    [
      'a relay network with a prefix longer than the address',
      relay('prefix-33', {
        listeners: { relay: { enabled: true, allowedNetworks: ['10.0.0.0/33'] } },
      }),
      [
        'spec.listeners.relay.allowedNetworks[0]: Invalid value',
        'must be a network in CIDR notation without host bits set',
      ],
    ],
    [
      'a trusted proxy network with host bits set',
      relay('host-bits', {
        listeners: { submission: { proxyProtocol: { trustedProxies: ['10.1.2.3/8'] } } },
      }),
      ['must be a network in CIDR notation without host bits set, e.g. 10.0.0.0/8 or fd00::/8'],
    ],
    ['a misspelled field', relay('typo', { replica: 3 }), ['unknown field "spec.replica"']],
  ];

  test.each(cases)('%s', async (_what, obj, messages) => {
    const err = await refused(obj);
    for (const m of messages) expect(err).toContain(m);
    const o = obj as { kind: string; metadata: { name: string } };
    expect(await get(`${o.kind.toLowerCase()}/${o.metadata.name}`)).toBeUndefined();
  });

  test('the domain of a MailDomain cannot be changed', async () => {
    const d = domain('immutable', { domain: 'example.com', relayRef: { name: 'mail' } });
    await k.apply(d, { namespace: ns });
    const err = await refused({ ...d, spec: { ...d.spec, domain: 'example.net' } });
    expect(err).toContain(
      'spec.domain: Invalid value: "example.net": domain is immutable; create another MailDomain',
    );
    expect((await get('maildomain/immutable'))?.spec?.domain).toBe('example.com');
    await k.kubectl(['delete', 'maildomain/immutable', '-n', ns]);
  });
});

test('a MailDomain whose relay does not exist says so, and heals when the relay is created', async () => {
  await k.apply(domain('orphan', { domain: 'orphan.example', relayRef: { name: 'later' } }), {
    namespace: ns,
  });
  const d = await op.waitForCondition('maildomain/orphan', 'Ready', {
    status: 'False',
    reason: 'RelayNotFound',
    generation: true,
  });
  const want = `SmtpRelay later does not exist in namespace ${ns}; create it or fix spec.relayRef.name`;
  expect(conditionOf(d, 'Ready')?.message).toBe(want);
  expect(conditionOf(d, 'Degraded')).toMatchObject({
    status: 'True',
    reason: 'RelayNotFound',
    message: want,
  });

  await k.apply(relay('later', { replicas: 1 }), { namespace: ns });
  const healed = await op.waitForCondition('maildomain/orphan', 'Ready', {
    reason: 'Bound',
    generation: true,
  });
  expect(conditionOf(healed, 'Degraded')).toMatchObject({ status: 'False' });
  expect((await relayConfigOf('later')).domains.map((x) => x.name)).toEqual(['orphan.example']);
  await op.waitForCondition('smtprelay/later', 'Ready', { generation: true });
});

test('an SmtpRelay whose user password Secret is missing, then lacks its key, then exists', async () => {
  await k.apply(
    relay('pw', { replicas: 1, users: [{ name: 'app', passwordSecretRef: { name: 'app-password' } }] }),
    { namespace: ns },
  );
  const missing = await op.waitForCondition('smtprelay/pw', 'Ready', {
    status: 'False',
    reason: 'SecretNotFound',
    generation: true,
  });
  const message = `Secret app-password (password of SMTP user app) does not exist in namespace ${ns}; create it`;
  expect(conditionOf(missing, 'Ready')?.message).toBe(message);
  expect(conditionOf(missing, 'Degraded')).toMatchObject({
    status: 'True',
    reason: 'SecretNotFound',
    message,
  });
  expect(conditionOf(missing, 'Progressing')).toMatchObject({ status: 'False', reason: 'Blocked' });
  // Nothing is rolled out on a spec that cannot be satisfied.
  expect(await get('statefulset/pw')).toBeUndefined();

  await k.apply(secret('app-password', { pass: 'not-the-key' }), { namespace: ns });
  const keyless = await op.waitForCondition('smtprelay/pw', 'Degraded', { reason: 'SecretKeyMissing' });
  expect(conditionOf(keyless, 'Degraded')?.message).toBe(
    'Secret app-password (password of SMTP user app) has no key "password"; add it',
  );

  await k.apply(secret('app-password', { password: 's3cret-password' }), { namespace: ns });
  const ready = await op.waitForCondition('smtprelay/pw', 'Ready', { generation: true });
  expect(conditionOf(ready, 'Degraded')).toMatchObject({ status: 'False', reason: 'AsExpected' });
  const users = Buffer.from(
    ((await get('secret/pw-runtime'))?.data as Record<string, string>).users!,
    'base64',
  ).toString();
  expect(users.split('\n').map((l) => l.split(':')[0])).toEqual(
    expect.arrayContaining(['app', 'mailfleet-handoff']),
  );
  expect(users).not.toContain('s3cret-password');
});

test('an SmtpRelay whose fleet store password Secret is missing says so; once it exists the pods get the store', async () => {
  await k.apply(
    relay('fleet', {
      replicas: 1,
      fleetStore: {
        url: 'redis://valkey.infra.svc:6379/1',
        passwordSecretRef: { name: 'valkey-auth', key: 'password' },
      },
    }),
    { namespace: ns },
  );
  const missing = await op.waitForCondition('smtprelay/fleet', 'Degraded', {
    status: 'True',
    reason: 'SecretNotFound',
  });
  expect(conditionOf(missing, 'Degraded')?.message).toBe(
    `Secret valkey-auth (spec.fleetStore.passwordSecretRef) does not exist in namespace ${ns}; create it`,
  );
  expect(await get('statefulset/fleet')).toBeUndefined();

  await k.apply(secret('valkey-auth', { password: 'v4lkey-secret\n' }), { namespace: ns });
  await op.waitForCondition('smtprelay/fleet', 'Degraded', { status: 'False', reason: 'AsExpected' });
  const config = await relayConfigOf('fleet');
  expect(config.fleetStore).toEqual({
    url: 'redis://valkey.infra.svc:6379/1',
    passwordFile: '/etc/mailfleet/fleet-store-password',
    keyPrefix: `mailfleet:${ns}/fleet:`,
    timeoutMs: 250,
  });
  const runtime = (await get('secret/fleet-runtime'))?.data as Record<string, string>;
  expect(Buffer.from(runtime['fleet-store-password']!, 'base64').toString()).toBe('v4lkey-secret');
  const cm = await get('configmap/fleet-config');
  expect(JSON.stringify(cm)).not.toContain('v4lkey-secret');
});

test('examples/smtprelay-smarthost.yaml without cert-manager and its credentials Secret: both problems are named', async () => {
  await k.kubectl(['apply', '-n', ns, '-f', path.join(EXAMPLES_DIR, 'smtprelay-smarthost.yaml')]);
  const blocked = await op.waitForCondition('smtprelay/outbound', 'Degraded', {
    generation: true,
    match: (o) => conditionOf(o, 'Degraded')?.message?.includes('upstream-smtp') ?? false,
    matchWhat: 'a message naming the upstream-smtp Secret',
  });
  const degraded = conditionOf(blocked, 'Degraded')?.message ?? '';
  expect(degraded).toContain(
    'cert-manager.io/v1 Certificate API is not served in this cluster; install cert-manager or drop issuerRef',
  );
  expect(degraded).toContain(
    `Secret upstream-smtp (spec.delivery.route.smarthost.credentialsSecretRef) does not exist in namespace ${ns}; create it`,
  );
  expect(conditionOf(blocked, 'Ready')).toMatchObject({ status: 'False', reason: 'TLSNotReady' });
  expect(conditionOf(blocked, 'TLSReady')).toMatchObject({ status: 'False', reason: 'CertManagerMissing' });

  // Fix both, as the messages say: create the Secret, drop issuerRef (the operator CA takes over).
  await k.apply(secret('upstream-smtp', { username: 'relay', password: 'upstream-pass' }), { namespace: ns });
  await k.kubectl([
    'patch',
    'smtprelay/outbound',
    '-n',
    ns,
    '--type=json',
    '-p',
    '[{"op":"remove","path":"/spec/tls/issuerRef"}]',
  ]);
  const ready = await op.waitForCondition('smtprelay/outbound', 'Ready', {
    generation: true,
    timeoutMs: 120_000,
  });
  expect(conditionOf(ready, 'TLSReady')).toMatchObject({ status: 'True', reason: 'CertificateReady' });
  const config = await relayConfigOf('outbound');
  expect(config.delivery.route).toMatchObject({
    mode: 'smarthost',
    smarthost: {
      host: 'smtp.example.net',
      port: 587,
      tls: 'starttls',
      auth: {
        usernameFile: '/etc/mailfleet/smarthost-username',
        passwordFile: '/etc/mailfleet/smarthost-password',
      },
    },
  });
});

test('two MailDomains claim one domain: the older wins, the newer says who holds it, and takes over when it goes', async () => {
  await k.apply(domain('first', { domain: 'shared.example', relayRef: { name: 'later' } }), {
    namespace: ns,
  });
  await op.waitForCondition('maildomain/first', 'Ready', { reason: 'Bound' });
  await k.apply(domain('second', { domain: 'SHARED.example', relayRef: { name: 'later' } }), {
    namespace: ns,
  });
  const loser = await op.waitForCondition('maildomain/second', 'Ready', {
    status: 'False',
    reason: 'DomainConflict',
  });
  expect(conditionOf(loser, 'Degraded')?.message).toBe(
    'domain SHARED.example is already claimed on SmtpRelay later by MailDomain first (the older claim wins); delete one of them or bind this one to another relay',
  );
  expect((await relayConfigOf('later')).domains.map((x) => x.name)).toEqual([
    'orphan.example',
    'shared.example',
  ]);
  expect(conditionOf(await get('maildomain/first'), 'Ready')).toMatchObject({ status: 'True' });

  await k.kubectl(['delete', 'maildomain/first', '-n', ns]);
  await op.waitForCondition('maildomain/second', 'Ready', { reason: 'Bound' });
});

test('a MailDomain whose DKIM key Secret is missing is left out of the relay config until it exists', async () => {
  await k.apply(
    domain('keyless', {
      domain: 'keyless.example',
      relayRef: { name: 'later' },
      dkim: { privateKeySecretRef: { name: 'keyless-dkim-key' } },
    }),
    { namespace: ns },
  );
  const d = await op.waitForCondition('maildomain/keyless', 'DKIMReady', {
    status: 'False',
    reason: 'SecretNotFound',
  });
  expect(conditionOf(d, 'Ready')).toMatchObject({
    status: 'False',
    reason: 'SecretNotFound',
    message: `Secret keyless-dkim-key (DKIM private key) does not exist in namespace ${ns}; create it`,
  });
  expect((await relayConfigOf('later')).domains.map((x) => x.name)).not.toContain('keyless.example');

  // Lend it the key the operator generated for another domain.
  const generated = (await get('secret/orphan-dkim'))?.data as Record<string, string>;
  await k.apply(
    {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'keyless-dkim-key' },
      data: { 'private.pem': generated['private.pem']! },
    },
    { namespace: ns },
  );
  await op.waitForCondition('maildomain/keyless', 'Ready', { reason: 'Bound' });
  expect((await relayConfigOf('later')).domains.map((x) => x.name)).toContain('keyless.example');
});

test('after all of it the operator is still running and healthy', async () => {
  expect(op.running()).toBe(true);
  expect((await op.http('probe', '/healthz')).status).toBe(200);
  expect((await op.http('probe', '/readyz')).status).toBe(200);
  const fatal = op.logs.filter((l) => (l.level ?? 0) >= 60 || /uncaught|unhandled/i.test(String(l.msg)));
  expect(fatal).toEqual([]);
  const all = await k.kubectlJson<{ items: KubeObject[] }>(['get', 'smtprelays,maildomains', '-n', ns]);
  for (const o of all.items) {
    const ready = conditionOf(o, 'Ready');
    expect({ name: `${o.kind}/${o.metadata.name}`, observed: ready?.observedGeneration }).toEqual({
      name: `${o.kind}/${o.metadata.name}`,
      observed: o.metadata.generation,
    });
  }
});
