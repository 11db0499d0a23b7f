/* eslint-disable @typescript-eslint/no-explicit-any, @typescript-eslint/no-unsafe-return -- inspects stored JSON */
import { RecentWrites, ReferenceIndex, type OperatorContext } from '../../../operator/shared/context.js';
import { MailDomainReconciler } from '../../../operator/maildomain/controller.js';
import { STATUS_GRACE_MS } from '../../../operator/shared/status.js';
import type { TxtLookup } from '../../../operator/maildomain/dns.js';
import type { EventRecorder } from '../../../operator/runtime/events.js';
import { silentLogger } from '../../../operator/runtime/logger.js';
import { SmtpRelayReconciler } from '../../../operator/smtprelay/controller.js';
import type { DrainClient, DrainStatus } from '../../../operator/smtprelay/drain-client.js';
import type { FleetAnswer, FleetClient } from '../../../operator/smtprelay/fleet-client.js';
import { FakeClock } from '../../helpers/fake-clock.js';
import { FakeApi } from './fake-api.js';
import { ApiError } from '../../../operator/runtime/kube.js';
import { parseNetworks } from '../../../relay/policy/network.js';

const b64 = (s: string) => Buffer.from(s).toString('base64');

class FakeDrain implements DrainClient {
  states = new Map<string, DrainStatus>();
  started: Array<{ address: string; peers: readonly string[] }> = [];
  refuse?: string;
  status(address: string) {
    const s = this.states.get(address);
    return s ? Promise.resolve(s) : Promise.reject(new Error(`connect ECONNREFUSED ${address}`));
  }
  start(address: string, _token: string, peers: readonly string[]) {
    if (this.refuse) return Promise.reject(new Error(this.refuse));
    this.started.push({ address, peers });
    this.states.set(address, { state: 'draining', queued: 1 });
    return Promise.resolve();
  }
}

/** Pods' answers to GET /fleet by admin address; an address without one refuses the connection. */
class FakeFleet implements FleetClient {
  answers = new Map<string, FleetAnswer | Error>();
  asked: string[] = [];
  fleetState(address: string) {
    this.asked.push(address);
    const a = this.answers.get(address);
    if (a instanceof Error) return Promise.reject(a);
    return a ? Promise.resolve(a) : Promise.reject(new Error(`connect ECONNREFUSED ${address}`));
  }
}

function setup(drainNetworks?: string[]) {
  const api = new FakeApi();
  const clock = new FakeClock();
  const events: Array<{ type: string; reason: string; message: string }> = [];
  const recorder: EventRecorder = {
    record: (_o, type, reason, message) => events.push({ type, reason, message }),
  };
  const ctx: OperatorContext = {
    api,
    recent: new RecentWrites(clock),
    stores: api.stores(),
    features: { serviceMonitors: false, certManager: false },
    events: recorder,
    clock,
    log: silentLogger,
    refs: new ReferenceIndex(),
  };
  const drain = new FakeDrain();
  const fleet = new FakeFleet();
  const relays = new SmtpRelayReconciler(ctx, {
    image: 'img:1',
    drain,
    fleet,
    drainPollMs: 5000,
    drainNetworks: drainNetworks ? parseNetworks(drainNetworks).networks : undefined,
  });
  const dns: TxtLookup = { txt: () => Promise.resolve([]) };
  const domains = new MailDomainReconciler(ctx, { dns, dnsCheckIntervalMs: 300_000 });
  /** A domain reconcile once its first DNS lookup is in (the checker runs it off the reconcile). */
  const settle = async (key: string) => {
    await domains.reconcile(key);
    await domains.dnsChecker.idle();
    return domains.reconcile(key);
  };
  return { api, clock, ctx, drain, fleet, relays, domains, events, settle };
}

const tlsSecret = {
  apiVersion: 'v1',
  kind: 'Secret',
  metadata: { name: 'relay-tls', namespace: 'apps' },
  data: { 'tls.crt': b64('CERT'), 'tls.key': b64('KEY'), 'ca.crt': b64('CA') },
};

function relayObj(spec: any = {}) {
  return {
    apiVersion: 'mailfleet.dev/v1alpha1',
    kind: 'SmtpRelay',
    metadata: { name: 'mail', namespace: 'apps', generation: 1 },
    spec: { tls: { secretName: 'relay-tls' }, ...spec },
  };
}

const cond = (o: any, type: string) => o.status.conditions.find((c: any) => c.type === type);

describe('SmtpRelay reconcile', () => {
  it('reports a missing password Secret as Degraded with what to fix, then recovers when it appears', async () => {
    const { api, relays } = setup();
    api.put(tlsSecret);
    api.put(relayObj({ users: [{ name: 'app', passwordSecretRef: { name: 'app-pw' } }] }));
    await relays.reconcile('apps/mail');
    const r = api.find('SmtpRelay', 'apps', 'mail');
    expect(cond(r, 'Ready')).toMatchObject({ status: 'False', reason: 'SecretNotFound' });
    expect(cond(r, 'Degraded').message).toBe(
      'Secret app-pw (password of SMTP user app) does not exist in namespace apps; create it',
    );
    expect(api.find('StatefulSet', 'apps', 'mail')).toBeUndefined();
    expect(r!.metadata!.finalizers).toEqual(['mailfleet.dev/drain']);

    api.put({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'app-pw', namespace: 'apps' },
      data: { password: b64('s3cret') },
    });
    await relays.reconcile('apps/mail');
    const r2 = api.find('SmtpRelay', 'apps', 'mail');
    expect(cond(r2, 'Degraded')).toMatchObject({ status: 'False', reason: 'AsExpected' });
    expect(cond(r2, 'Ready')).toMatchObject({ status: 'False', reason: 'RolloutInProgress' });
    const runtime = api.find('Secret', 'apps', 'mail-runtime') as any;
    const users = Buffer.from(runtime.data.users, 'base64').toString();
    expect(users).toMatch(/^app:\$scrypt\$/m);
    expect(users).toMatch(/^mailfleet-handoff:\$scrypt\$/m);
    expect(users).not.toContain('s3cret');
  }, 30_000);

  it('creates every child, then makes zero writes at steady state', async () => {
    const { api, relays, clock } = setup();
    api.put(tlsSecret);
    api.put(relayObj({ users: [{ name: 'app' }] }));
    // A new relay's status waits while its first rollout is under way (the StatefulSet re-queues it)...
    expect(await relays.reconcile('apps/mail')).toEqual({ requeueAfterMs: STATUS_GRACE_MS });
    expect((api.find('SmtpRelay', 'apps', 'mail') as any).status).toBeUndefined();
    const kinds = api.writes
      .filter((w) => /^(apply|create) /.test(w))
      .map((w) => w.split(' ').slice(1).join(' '));
    expect(kinds).toEqual(
      expect.arrayContaining([
        'Secret mail-credentials',
        'Secret mail-internal',
        'Secret mail-runtime',
        'ConfigMap mail-config',
        'Service mail',
        'Service mail-headless',
        'StatefulSet mail',
        'PodDisruptionBudget mail',
      ]),
    );
    const creds = api.find('Secret', 'apps', 'mail-credentials') as any;
    expect(Buffer.from(creds.data.app, 'base64').toString()).toMatch(/^[A-Za-z0-9_-]{32}$/);
    // ...at most STATUS_GRACE_MS: a rollout that takes longer is reported as in progress.
    clock.advance(STATUS_GRACE_MS);
    await relays.reconcile('apps/mail');
    const r = api.find('SmtpRelay', 'apps', 'mail') as any;
    expect(cond(r, 'Ready')).toMatchObject({ status: 'False', reason: 'RolloutInProgress' });
    expect(r.status).toMatchObject({
      credentialsSecret: 'mail-credentials',
      caSecret: 'relay-tls',
      selector: 'app.kubernetes.io/name=mailfleet-relay,app.kubernetes.io/instance=mail',
    });

    // The second pass sees the StatefulSet it created (status moves on); after that nothing changes.
    await relays.reconcile('apps/mail');
    api.writes = [];
    await relays.reconcile('apps/mail');
    await relays.reconcile('apps/mail');
    expect(api.writes).toEqual([]);
    expect(
      Buffer.from((api.find('Secret', 'apps', 'mail-credentials') as any).data.app, 'base64').toString(),
    ).toBe(Buffer.from(creds.data.app, 'base64').toString());
  }, 30_000);

  it('a new relay whose first rollout finishes within the grace writes its status once, Ready, without an Event', async () => {
    const { api, relays, events } = setup();
    api.put(tlsSecret);
    api.put(relayObj({}));
    api.writes = [];
    await relays.reconcile('apps/mail');
    const sts = api.find('StatefulSet', 'apps', 'mail') as any;
    api.put({
      ...sts,
      status: {
        replicas: 2,
        readyReplicas: 2,
        updatedReplicas: 2,
        observedGeneration: sts.metadata.generation,
      },
    });
    await relays.reconcile('apps/mail');
    expect(api.writes.filter((w) => w.includes('/status'))).toEqual(['apply/status SmtpRelay mail']);
    expect(cond(api.find('SmtpRelay', 'apps', 'mail'), 'Ready')).toMatchObject({ status: 'True' });
    expect(events).toEqual([]);
  });

  it('drains the pods a scale-down removes before shrinking the StatefulSet', async () => {
    const { api, relays, drain } = setup();
    api.put(tlsSecret);
    api.put(relayObj({ replicas: 3 }));
    await relays.reconcile('apps/mail');
    for (let i = 0; i < 3; i++) {
      api.put({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: `mail-${i}`, namespace: 'apps', labels: { 'app.kubernetes.io/instance': 'mail' } },
        status: { podIP: `10.0.0.${i}` },
      });
      drain.states.set(`10.0.0.${i}:9091`, { state: 'idle', queued: 0 });
    }
    const relay = api.find('SmtpRelay', 'apps', 'mail') as any;
    api.put({ ...relay, spec: { ...relay.spec, replicas: 1 } });
    const res = await relays.reconcile('apps/mail');
    expect(res).toEqual({ requeueAfterMs: 5000 });
    expect((api.find('StatefulSet', 'apps', 'mail') as any).spec.replicas).toBe(3);
    expect(drain.started.map((s) => s.address)).toEqual(['10.0.0.1:9091', '10.0.0.2:9091']);
    expect(drain.started[0]!.peers).toEqual(['mail-0.mail-headless.apps.svc:587']);
    expect(
      (api.find('Pod', 'apps', 'mail-1') as any).metadata.annotations['mailfleet.dev/drain-started'],
    ).toBeDefined();
    const r = api.find('SmtpRelay', 'apps', 'mail') as any;
    expect(cond(r, 'Draining')).toMatchObject({ status: 'True', reason: 'ScaleDown' });
    expect(r.status.drainingPods).toEqual(['mail-1', 'mail-2']);

    // One pod still holds mail; the other is done: no shrink yet.
    drain.states.set('10.0.0.1:9091', { state: 'drained', queued: 0 });
    await relays.reconcile('apps/mail');
    expect((api.find('StatefulSet', 'apps', 'mail') as any).spec.replicas).toBe(3);

    // A pod becomes unreachable: Degraded with the reason, still no shrink, retried with backoff.
    drain.states.delete('10.0.0.2:9091');
    expect(await relays.reconcile('apps/mail')).toEqual({ retry: true });
    expect(cond(api.find('SmtpRelay', 'apps', 'mail'), 'Degraded')).toMatchObject({
      status: 'True',
      reason: 'DrainFailed',
    });
    expect((api.find('StatefulSet', 'apps', 'mail') as any).spec.replicas).toBe(3);

    drain.states.set('10.0.0.2:9091', { state: 'drained', queued: 0 });
    await relays.reconcile('apps/mail');
    expect((api.find('StatefulSet', 'apps', 'mail') as any).spec.replicas).toBe(1);
    expect(cond(api.find('SmtpRelay', 'apps', 'mail'), 'Draining')).toMatchObject({ status: 'False' });
  }, 30_000);

  it('a pod refusing to drain is reported with its reason and retried, not thrown', async () => {
    const { api, relays, drain } = setup();
    api.put(tlsSecret);
    api.put(relayObj({ replicas: 2 }));
    await relays.reconcile('apps/mail');
    for (const i of [0, 1]) {
      api.put({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: `mail-${i}`, namespace: 'apps', labels: { 'app.kubernetes.io/instance': 'mail' } },
        status: { podIP: `10.0.0.${i}` },
      });
      drain.states.set(`10.0.0.${i}:9091`, { state: 'idle', queued: 0 });
    }
    drain.refuse = 'POST /drain on 10.0.0.1:9091: HTTP 409: no handoff section';
    const r = api.find('SmtpRelay', 'apps', 'mail') as any;
    api.put({ ...r, spec: { ...r.spec, replicas: 1 } });
    expect(await relays.reconcile('apps/mail')).toEqual({ retry: true });
    expect(cond(api.find('SmtpRelay', 'apps', 'mail'), 'Degraded')).toMatchObject({
      status: 'True',
      reason: 'DrainFailed',
      message:
        'asking pod mail-1 to drain failed: POST /drain on 10.0.0.1:9091: HTTP 409: no handoff section',
    });
    expect((api.find('StatefulSet', 'apps', 'mail') as any).spec.replicas).toBe(2);
  }, 30_000);

  it('never connects to pod IPs outside --drain-networks', async () => {
    const { api, relays, drain } = setup(['127.0.0.0/8']);
    api.put(tlsSecret);
    api.put(relayObj({ replicas: 2 }));
    await relays.reconcile('apps/mail');
    for (const [i, ip] of [
      [0, '127.0.0.10'],
      [1, '10.244.0.7'],
    ] as const) {
      api.put({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: `mail-${i}`, namespace: 'apps', labels: { 'app.kubernetes.io/instance': 'mail' } },
        status: { podIP: ip },
      });
    }
    drain.states.set('10.244.0.7:9091', { state: 'idle', queued: 0 });
    const r = api.find('SmtpRelay', 'apps', 'mail') as any;
    api.put({ ...r, spec: { ...r.spec, replicas: 1 } });
    expect(await relays.reconcile('apps/mail')).toEqual({ retry: true });
    expect(drain.started).toEqual([]);
    expect(cond(api.find('SmtpRelay', 'apps', 'mail'), 'Degraded').message).toContain(
      'pod IP 10.244.0.7 is outside --drain-networks',
    );
    expect((api.find('StatefulSet', 'apps', 'mail') as any).spec.replicas).toBe(2);
  }, 30_000);

  it('cert-manager mode: renders the Certificate while waiting for its Secret, then rolls out', async () => {
    const { api, relays, ctx } = setup();
    ctx.features.certManager = true;
    api.put({ ...relayObj(), spec: { tls: { issuerRef: { name: 'ca-issuer' } } } });
    await relays.reconcile('apps/mail');
    const cert = api.find('Certificate', 'apps', 'mail') as any;
    expect(cert.spec).toMatchObject({
      secretName: 'mail-certmanager-tls',
      issuerRef: { name: 'ca-issuer', kind: 'Issuer', group: 'cert-manager.io' },
    });
    expect(cond(api.find('SmtpRelay', 'apps', 'mail'), 'TLSReady')).toMatchObject({
      status: 'False',
      reason: 'SecretNotFound',
    });
    expect(api.find('StatefulSet', 'apps', 'mail')).toBeUndefined();
    api.put({ ...tlsSecret, metadata: { name: 'mail-certmanager-tls', namespace: 'apps' } });
    await relays.reconcile('apps/mail');
    expect(cond(api.find('SmtpRelay', 'apps', 'mail'), 'TLSReady')).toMatchObject({ status: 'True' });
    expect(api.find('StatefulSet', 'apps', 'mail')).toBeDefined();
    expect((api.find('SmtpRelay', 'apps', 'mail') as any).status.caSecret).toBe('mail-certmanager-tls');
  }, 30_000);

  it('an API error it cannot get past reaches status and an Event, and clears once the request succeeds', async () => {
    const { api, relays, events } = setup();
    api.put(tlsSecret);
    api.put(relayObj());
    const apply = api.apply.bind(api);
    const forbidden =
      'PATCH /apis/apps/v1/namespaces/apps/statefulsets/mail: 403 statefulsets.apps "mail" is forbidden: User "system:serviceaccount:mf:op" cannot patch resource "statefulsets"';
    api.apply = (obj, sub) =>
      obj.kind === 'StatefulSet'
        ? Promise.reject(new ApiError(403, 'Forbidden', forbidden))
        : apply(obj, sub);
    await expect(relays.reconcile('apps/mail')).rejects.toThrow('forbidden');
    const r = api.find('SmtpRelay', 'apps', 'mail');
    expect(cond(r, 'Degraded')).toMatchObject({
      status: 'True',
      reason: 'Forbidden',
      message: `a request to the API server failed: ${forbidden}`,
    });
    expect(cond(r, 'Ready')).toMatchObject({ status: 'False', reason: 'Forbidden' });
    expect(events).toContainEqual({
      type: 'Warning',
      reason: 'Forbidden',
      message: cond(r, 'Degraded').message,
    });
    // The same failure again: status unchanged, no second Event.
    await expect(relays.reconcile('apps/mail')).rejects.toThrow('forbidden');
    expect(events.filter((e) => e.reason === 'Forbidden')).toHaveLength(1);

    api.apply = apply;
    await relays.reconcile('apps/mail');
    expect(cond(api.find('SmtpRelay', 'apps', 'mail'), 'Degraded')).toMatchObject({
      status: 'False',
      reason: 'AsExpected',
    });
  }, 30_000);

  it('deletion drains every pod, then releases the finalizer', async () => {
    const { api, relays, drain } = setup();
    api.put(tlsSecret);
    api.put(relayObj({ replicas: 1 }));
    await relays.reconcile('apps/mail');
    api.put({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'mail-0', namespace: 'apps', labels: { 'app.kubernetes.io/instance': 'mail' } },
      status: { podIP: '10.0.0.9' },
    });
    drain.states.set('10.0.0.9:9091', { state: 'idle', queued: 2 });
    const r = api.find('SmtpRelay', 'apps', 'mail') as any;
    api.put({ ...r, metadata: { ...r.metadata, deletionTimestamp: '2025-01-01T00:00:00Z' } });
    await relays.reconcile('apps/mail');
    expect(drain.started).toEqual([{ address: '10.0.0.9:9091', peers: [] }]);
    expect(api.find('SmtpRelay', 'apps', 'mail')!.metadata!.finalizers).toEqual(['mailfleet.dev/drain']);
    drain.states.set('10.0.0.9:9091', { state: 'drained', queued: 0 });
    await relays.reconcile('apps/mail');
    expect(api.find('SmtpRelay', 'apps', 'mail')!.metadata!.finalizers).toBeUndefined();
  }, 30_000);
});

describe('SmtpRelay FleetStore condition', () => {
  const STORE = 'redis://valkey.infra.svc:6379';
  const storePw = {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: 'valkey', namespace: 'apps' },
    data: { password: b64('hunter2') },
  };
  const withStore = { fleetStore: { url: STORE, passwordSecretRef: { name: 'valkey' } } };

  /** A relay whose StatefulSet has rolled out and whose `n` pods are ready on 10.0.0.<i>. */
  async function running(env: ReturnType<typeof setup>, spec: any, n = 3) {
    const { api, relays } = env;
    api.put(tlsSecret);
    api.put(storePw);
    api.put(relayObj({ replicas: n, ...spec }));
    await relays.reconcile('apps/mail');
    const sts = api.find('StatefulSet', 'apps', 'mail') as any;
    api.put({
      ...sts,
      status: {
        replicas: n,
        readyReplicas: n,
        updatedReplicas: n,
        observedGeneration: sts.metadata.generation,
      },
    });
    for (let i = 0; i < n; i++)
      api.put({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: `mail-${i}`, namespace: 'apps', labels: { 'app.kubernetes.io/instance': 'mail' } },
        status: { podIP: `10.0.0.${i}`, conditions: [{ type: 'Ready', status: 'True' }] },
      });
  }
  const fleetCond = (api: FakeApi) => cond(api.find('SmtpRelay', 'apps', 'mail'), 'FleetStore');
  const statusWrites = (api: FakeApi) => api.writes.filter((w) => w.includes('/status'));

  it('without fleetStore says the pods count alone, asks no pod and does not poll', async () => {
    const env = setup();
    await running(env, {});
    const res = await env.relays.reconcile('apps/mail');
    expect(fleetCond(env.api)).toMatchObject({
      status: 'False',
      reason: 'PerPod',
      message: 'no fleetStore: each pod enforces its rate limits, shaping and suppression list alone',
    });
    expect(env.fleet.asked).toEqual([]);
    expect(res).toEqual({});
  });

  it('pods sharing the store: Shared naming the URL, not the password; polled every 30 s, zero writes while nothing changes', async () => {
    const env = setup();
    const { api, relays, fleet, events } = env;
    await running(env, withStore);
    for (let i = 0; i < 3; i++) fleet.answers.set(`10.0.0.${i}:9091`, { state: 'shared' });
    expect(await relays.reconcile('apps/mail')).toEqual({ requeueAfterMs: 30_000 });
    const c = fleetCond(api);
    expect(c).toMatchObject({
      status: 'True',
      reason: 'Shared',
      message: `3 of 3 ready pods share rate limits, shaping and the suppression list through ${STORE}`,
    });
    expect(JSON.stringify(api.find('SmtpRelay', 'apps', 'mail'))).not.toContain('hunter2');
    expect(cond(api.find('SmtpRelay', 'apps', 'mail'), 'Ready')).toMatchObject({ status: 'True' });

    // The next polls ask every pod again and, the answers being the same, write nothing.
    api.writes = [];
    fleet.asked = [];
    expect(await relays.reconcile('apps/mail')).toEqual({ requeueAfterMs: 30_000 });
    await relays.reconcile('apps/mail');
    expect(fleet.asked).toHaveLength(6);
    expect(api.writes).toEqual([]);
    expect(events.filter((e) => e.reason.startsWith('FleetStore'))).toEqual([]);
  });

  it('a pod that decides alone: Degraded naming it and why, a Warning Event, Ready untouched; recovery is a Normal Event', async () => {
    const env = setup();
    const { api, relays, fleet, events } = env;
    await running(env, withStore);
    for (let i = 0; i < 3; i++) fleet.answers.set(`10.0.0.${i}:9091`, { state: 'shared' });
    await relays.reconcile('apps/mail');

    fleet.answers.set('10.0.0.1:9091', { state: 'degraded', error: 'connect ETIMEDOUT 10.96.0.20:6379' });
    await relays.reconcile('apps/mail');
    const r = api.find('SmtpRelay', 'apps', 'mail');
    expect(cond(r, 'FleetStore')).toMatchObject({
      status: 'False',
      reason: 'Degraded',
      message: `1 of 3 ready pods (mail-1) cannot use the fleet store at ${STORE} and enforce rate limits, shaping and the suppression list alone: connect ETIMEDOUT 10.96.0.20:6379`,
    });
    // Mail keeps flowing: the fleet is not unready, nor Degraded as a relay.
    expect(cond(r, 'Ready')).toMatchObject({ status: 'True' });
    expect(cond(r, 'Degraded')).toMatchObject({ status: 'False' });
    expect(events.filter((e) => e.reason.startsWith('FleetStore'))).toEqual([
      { type: 'Warning', reason: 'FleetStoreDegraded', message: cond(r, 'FleetStore').message },
    ]);

    // Still degraded, same answers: nothing written, no second Event.
    api.writes = [];
    await relays.reconcile('apps/mail');
    expect(api.writes).toEqual([]);

    fleet.answers.set('10.0.0.1:9091', { state: 'shared' });
    await relays.reconcile('apps/mail');
    expect(fleetCond(api)).toMatchObject({ status: 'True', reason: 'Shared' });
    expect(events.filter((e) => e.reason.startsWith('FleetStore')).map((e) => [e.type, e.reason])).toEqual([
      ['Warning', 'FleetStoreDegraded'],
      ['Normal', 'FleetStoreShared'],
    ]);
  });

  it('a pod that cannot be asked is named but does not flip a sharing fleet; when none answers the state is Unknown', async () => {
    const env = setup();
    const { api, relays, fleet, events } = env;
    await running(env, withStore);
    fleet.answers.set('10.0.0.0:9091', { state: 'shared' });
    fleet.answers.set('10.0.0.1:9091', { state: 'shared' });
    fleet.answers.set('10.0.0.2:9091', new Error('GET /fleet on 10.0.0.2:9091: HTTP 503'));
    await relays.reconcile('apps/mail');
    expect(fleetCond(api)).toMatchObject({
      status: 'True',
      reason: 'Shared',
      message: `2 of 3 ready pods share rate limits, shaping and the suppression list through ${STORE}; could not ask mail-2: GET /fleet on 10.0.0.2:9091: HTTP 503`,
    });

    fleet.answers.clear();
    await relays.reconcile('apps/mail');
    expect(fleetCond(api)).toMatchObject({
      status: 'Unknown',
      reason: 'NoAnswer',
      message:
        'no ready pod answered GET /fleet (mail-0, mail-1, mail-2): connect ECONNREFUSED 10.0.0.0:9091',
    });
    expect(events.filter((e) => e.reason.startsWith('FleetStore'))).toEqual([]);
  });

  it('no ready pod yet: Pending; pods outside --drain-networks are not contacted', async () => {
    const env = setup(['127.0.0.0/8']);
    const { api, relays, fleet } = env;
    api.put(tlsSecret);
    api.put(storePw);
    api.put(relayObj(withStore));
    await relays.reconcile('apps/mail');
    env.clock.advance(STATUS_GRACE_MS);
    expect(await relays.reconcile('apps/mail')).toEqual({ requeueAfterMs: 30_000 });
    expect(fleetCond(api)).toMatchObject({
      status: 'Unknown',
      reason: 'Pending',
      message: `no ready pod yet to ask whether it reaches the fleet store at ${STORE}`,
    });

    api.put({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'mail-0', namespace: 'apps', labels: { 'app.kubernetes.io/instance': 'mail' } },
      status: { podIP: '10.244.0.7', conditions: [{ type: 'Ready', status: 'True' }] },
    });
    await relays.reconcile('apps/mail');
    expect(fleet.asked).toEqual([]);
    expect(fleetCond(api)).toMatchObject({ status: 'Unknown', reason: 'NoAnswer' });
    expect(fleetCond(api).message).toContain('pod IP 10.244.0.7 is outside --drain-networks');
  });

  it('removing fleetStore goes back to PerPod and stops polling', async () => {
    const env = setup();
    const { api, relays, fleet } = env;
    await running(env, withStore, 1);
    fleet.answers.set('10.0.0.0:9091', { state: 'shared' });
    await relays.reconcile('apps/mail');
    expect(fleetCond(api)).toMatchObject({ reason: 'Shared' });
    const r = api.find('SmtpRelay', 'apps', 'mail') as any;
    api.put({ ...r, spec: { ...r.spec, fleetStore: undefined } });
    fleet.asked = [];
    expect(await relays.reconcile('apps/mail')).toEqual({});
    expect(fleet.asked).toEqual([]);
    expect(fleetCond(api)).toMatchObject({ status: 'False', reason: 'PerPod' });
    expect(statusWrites(api).length).toBeGreaterThan(0);
  });
});

describe('MailDomain reconcile', () => {
  const md = (name: string, domain: string, relay = 'mail', created = '2025-01-01T00:00:00Z') => ({
    apiVersion: 'mailfleet.dev/v1alpha1',
    kind: 'MailDomain',
    metadata: { name, namespace: 'apps', generation: 1, creationTimestamp: created },
    spec: { domain, relayRef: { name: relay } },
  });

  it('generates a DKIM key once, lists the DNS records, and reports an unknown relay', async () => {
    const { api, settle } = setup();
    api.put(md('example', 'example.com', 'nope'));
    const res = await settle('apps/example');
    // No requeue for DNS: the checker looks again on its own schedule and re-queues on a change.
    expect(res).toEqual({});
    const d = api.find('MailDomain', 'apps', 'example') as any;
    expect(cond(d, 'Ready')).toMatchObject({
      status: 'False',
      reason: 'RelayNotFound',
      message: 'SmtpRelay nope does not exist in namespace apps; create it or fix spec.relayRef.name',
    });
    expect(cond(d, 'DKIMReady')).toMatchObject({ status: 'True' });
    expect(cond(d, 'DNSVerified')).toMatchObject({ status: 'False', reason: 'RecordsMissing' });
    expect(d.status.dnsRecords.map((r: any) => [r.purpose, r.name])).toEqual([
      ['DKIM', 'mailfleet._domainkey.example.com'],
      ['SPF', 'example.com'],
      ['DMARC', '_dmarc.example.com'],
    ]);
    expect(d.status.dnsRecords[0].value).toMatch(/^v=DKIM1; k=rsa; p=MII/);
    const key = (api.find('Secret', 'apps', 'example-dkim') as any).data['private.pem'];
    api.writes = [];
    await settle('apps/example');
    expect(api.writes).toEqual([]);
    expect((api.find('Secret', 'apps', 'example-dkim') as any).data['private.pem']).toBe(key);
  }, 30_000);

  it('the older claim of a domain on a relay wins; the newer is told why', async () => {
    const { api, settle, clock } = setup();
    api.put(tlsSecret);
    api.put(relayObj());
    api.put(md('first', 'example.com', 'mail', '2025-01-01T00:00:00Z'));
    api.put(md('second', 'Example.COM', 'mail', '2025-02-01T00:00:00Z'));
    await settle('apps/first');
    await settle('apps/second');
    // The relay has not rolled "first" out (no relay reconcile here): its status waits that long at most.
    clock.advance(STATUS_GRACE_MS);
    await settle('apps/first');
    expect(cond(api.find('MailDomain', 'apps', 'first'), 'Degraded')).toMatchObject({ status: 'False' });
    expect(cond(api.find('MailDomain', 'apps', 'second'), 'Ready')).toMatchObject({
      status: 'False',
      reason: 'DomainConflict',
    });
    expect(cond(api.find('MailDomain', 'apps', 'second'), 'Ready').message).toContain(
      'already claimed on SmtpRelay mail by MailDomain first',
    );
  }, 30_000);

  it('reports a referenced DKIM key Secret that is missing or of the wrong algorithm', async () => {
    const { api, settle } = setup();
    api.put({
      ...md('given', 'example.org'),
      spec: {
        domain: 'example.org',
        relayRef: { name: 'mail' },
        dkim: { privateKeySecretRef: { name: 'dk' } },
      },
    });
    await settle('apps/given');
    expect(cond(api.find('MailDomain', 'apps', 'given'), 'Degraded')).toMatchObject({
      status: 'True',
      reason: 'SecretNotFound',
    });
    api.put({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'dk', namespace: 'apps' },
      data: { 'private.pem': b64('junk') },
    });
    await settle('apps/given');
    expect(cond(api.find('MailDomain', 'apps', 'given'), 'Degraded')).toMatchObject({
      reason: 'DKIMKeyInvalid',
      message: expect.stringContaining('Secret dk key private.pem is not a PEM private key'),
    });
    expect(api.find('Secret', 'apps', 'dk')!.data).toEqual({ 'private.pem': b64('junk') });
  }, 30_000);

  it('an API error on its DKIM Secret reaches status and an Event', async () => {
    const { api, domains, events } = setup();
    api.put(md('example', 'example.com'));
    const create = api.create.bind(api);
    api.create = (obj) =>
      obj.kind === 'Secret'
        ? Promise.reject(
            new ApiError(422, 'Invalid', 'POST /api/v1/namespaces/apps/secrets: 422 denied by policy'),
          )
        : create(obj);
    await expect(domains.reconcile('apps/example')).rejects.toThrow('denied by policy');
    const d = api.find('MailDomain', 'apps', 'example');
    expect(cond(d, 'Degraded')).toMatchObject({ status: 'True', reason: 'Invalid' });
    expect(cond(d, 'Ready').message).toContain('422 denied by policy');
    expect(events.map((e) => `${e.type} ${e.reason}`)).toEqual(['Warning Invalid']);
  }, 30_000);

  it('reports a missing route credentials Secret', async () => {
    const { api, settle } = setup();
    api.put({
      ...md('routed', 'example.net'),
      spec: {
        domain: 'example.net',
        relayRef: { name: 'mail' },
        route: {
          mode: 'smarthost',
          smarthost: { host: 'up.example', credentialsSecretRef: { name: 'up-creds' } },
        },
      },
    });
    await settle('apps/routed');
    expect(cond(api.find('MailDomain', 'apps', 'routed'), 'Degraded')).toMatchObject({
      status: 'True',
      reason: 'SecretNotFound',
      message: expect.stringContaining(
        'Secret up-creds (spec.route.smarthost.credentialsSecretRef) does not exist',
      ),
    });
  }, 30_000);
});
