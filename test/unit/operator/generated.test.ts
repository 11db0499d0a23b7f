/* eslint-disable @typescript-eslint/no-explicit-any -- inspects stored JSON */
/**
 * Generated material survives a cache that is behind: reconciles that run before the watch events of
 * the operator's own writes arrive (here: long after RecentWrites forgot them, as after a watch that
 * expired and is relisting) keep every password, token, certificate and DKIM key that is already stored.
 */
import { RecentWrites, ReferenceIndex, type OperatorContext } from '../../../operator/context.js';
import { MailDomainReconciler } from '../../../operator/maildomain/controller.js';
import { silentLogger } from '../../../operator/runtime/logger.js';
import { SmtpRelayReconciler } from '../../../operator/smtprelay/controller.js';
import { FakeClock } from '../../helpers/fake-clock.js';
import { FakeApi } from './fake-api.js';

function setup() {
  const api = new FakeApi({ lagging: true });
  const clock = new FakeClock();
  const events: string[] = [];
  const ctx: OperatorContext = {
    api,
    recent: new RecentWrites(clock),
    stores: api.stores(),
    features: { serviceMonitors: false, certManager: false },
    events: { record: (_o, _t, reason) => events.push(reason) },
    clock,
    log: silentLogger,
    refs: new ReferenceIndex(),
  };
  const relays = new SmtpRelayReconciler(ctx, {
    image: 'img:1',
    drain: { status: () => Promise.reject(new Error('no pods')), start: () => Promise.resolve() },
    drainPollMs: 5000,
  });
  const domains = new MailDomainReconciler(ctx, {
    dns: { txt: () => Promise.resolve([]) },
    dnsCheckIntervalMs: 300_000,
  });
  return { api, clock, relays, domains, events };
}

const data = (api: FakeApi, name: string): any => api.find('Secret', 'apps', name)?.data;
const PAST_RECENT_WRITES_MS = 61_000;

describe('generated material with a cache that lags behind the writes', () => {
  it('an SmtpRelay keeps its passwords, tokens, CA and certificate', async () => {
    const { api, clock, relays } = setup();
    api.put({
      apiVersion: 'mailfleet.dev/v1alpha1',
      kind: 'SmtpRelay',
      metadata: { name: 'mail', namespace: 'apps', generation: 1 },
      spec: { users: [{ name: 'app' }] },
    });
    api.sync();
    await relays.reconcile('apps/mail');
    const first = Object.fromEntries(
      ['mail-internal', 'mail-credentials', 'mail-ca', 'mail-tls'].map((n) => [n, data(api, n)]),
    );
    expect(Object.values(first).every((d) => d && Object.keys(d).length > 0)).toBe(true);

    // The cache still shows no Secret, and RecentWrites has let go of them.
    clock.advance(PAST_RECENT_WRITES_MS);
    await relays.reconcile('apps/mail');
    await relays.reconcile('apps/mail');
    for (const [name, d] of Object.entries(first)) expect([name, data(api, name)]).toEqual([name, d]);
    const runtime = data(api, 'mail-runtime');
    expect(runtime['admin-token']).toBe(first['mail-internal']['admin-token']);
    expect(runtime['tls.key']).toBe(first['mail-tls']['tls.key']);
    for (const name of Object.keys(first))
      expect(api.writes.filter((w) => w.endsWith(`Secret ${name}`))).toEqual([`create Secret ${name}`]);
  }, 60_000);

  it('a MailDomain keeps its DKIM key and says it generated one once', async () => {
    const { api, clock, domains, events } = setup();
    api.put({
      apiVersion: 'mailfleet.dev/v1alpha1',
      kind: 'MailDomain',
      metadata: { name: 'example', namespace: 'apps', generation: 1 },
      spec: { domain: 'example.com', relayRef: { name: 'mail' }, dkim: { algorithm: 'ed25519-sha256' } },
    });
    api.sync();
    await domains.reconcile('apps/example');
    const key = data(api, 'example-dkim')['private.pem'];
    clock.advance(PAST_RECENT_WRITES_MS);
    await domains.reconcile('apps/example');
    expect(data(api, 'example-dkim')['private.pem']).toBe(key);
    expect(api.writes.filter((w) => w.endsWith('Secret example-dkim'))).toEqual([
      'create Secret example-dkim',
    ]);
    expect(events.filter((r) => r === 'DKIMKeyGenerated')).toHaveLength(1);
    // The record published in status is the stored key's.
    await domains.dnsChecker.idle();
    await domains.reconcile('apps/example');
    const st = (api.find('MailDomain', 'apps', 'example') as any).status;
    expect(st.dnsRecords[0].value).toMatch(/^v=DKIM1; k=ed25519; p=/);
  }, 30_000);

  it('a key that another writer stored meanwhile is read back, not overwritten', async () => {
    const { api, domains } = setup();
    api.put({
      apiVersion: 'mailfleet.dev/v1alpha1',
      kind: 'MailDomain',
      metadata: { name: 'example', namespace: 'apps', generation: 1 },
      spec: { domain: 'example.com', relayRef: { name: 'mail' }, dkim: { algorithm: 'ed25519-sha256' } },
    });
    api.sync();
    // A Secret appears between the operator's live read and its create (an earlier leader's write).
    const { generateKeyPairSync } = await import('node:crypto');
    const theirs = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' });
    const get = api.get.bind(api);
    let raced = false;
    api.get = async (t, ns, name) => {
      const live = await get(t, ns, name);
      if (t.kind === 'Secret' && name === 'example-dkim' && !raced) {
        raced = true;
        api.put({
          apiVersion: 'v1',
          kind: 'Secret',
          metadata: { name: 'example-dkim', namespace: 'apps' },
          data: { 'private.pem': Buffer.from(theirs).toString('base64') },
        });
      }
      return live;
    };
    await domains.reconcile('apps/example');
    expect(Buffer.from(data(api, 'example-dkim')['private.pem'], 'base64').toString()).toBe(theirs);
  }, 30_000);
});
