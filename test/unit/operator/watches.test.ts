/**
 * What each controller's watches enqueue, with informers replaced by emitters (the seam is Watchable):
 * the operator's own status writes re-queue nothing, a burst of domain changes reaches the relay
 * coalesced, and a relay's served domains reach the domains.
 */
import type { MailDomain } from '../../../operator/api/maildomain.js';
import type { SmtpRelay } from '../../../operator/api/smtprelay.js';
import { watchForDomains } from '../../../operator/maildomain/controller.js';
import type { EventType, Handler } from '../../../operator/runtime/informer.js';
import type { KubeObject } from '../../../operator/runtime/kube.js';
import { ReferenceIndex } from '../../../operator/shared/context.js';
import { watchForRelays } from '../../../operator/smtprelay/controller.js';

class Emitter<T> {
  private readonly handlers: Handler<T>[] = [];
  items: T[] = [];
  on(h: Handler<T>) {
    this.handlers.push(h);
  }
  emit(type: EventType, o: T) {
    for (const h of this.handlers) h(type, o);
  }
  get(_ns: string, name: string) {
    return this.items.find((o) => (o as { metadata: { name: string } }).metadata.name === name);
  }
  list() {
    return this.items;
  }
}

const domain = (name: string, relay: string, opts: { domain?: string; generation?: number } = {}) =>
  ({
    apiVersion: 'mailfleet.dev/v1alpha1',
    kind: 'MailDomain',
    metadata: { name, namespace: 'ns', generation: opts.generation ?? 1 },
    spec: { domain: opts.domain ?? `${name}.example`, relayRef: { name: relay } },
  }) as MailDomain;

const relay = (name: string, served: string[] = []) =>
  ({
    apiVersion: 'mailfleet.dev/v1alpha1',
    kind: 'SmtpRelay',
    metadata: { name, namespace: 'ns', generation: 1 },
    spec: {},
    status: { domains: served },
  }) as unknown as SmtpRelay;

function setup() {
  const inf = {
    relays: new Emitter<SmtpRelay>(),
    domains: new Emitter<MailDomain>(),
    pods: new Emitter<KubeObject>(),
    secrets: new Emitter<KubeObject>(),
    owned: [new Emitter<KubeObject>()],
  };
  const got = { relayNow: [] as string[], relayCoalesced: [] as string[], domainNow: [] as string[] };
  const refs = new ReferenceIndex();
  watchForRelays(
    inf,
    { now: (k) => got.relayNow.push(k), coalesced: (k) => got.relayCoalesced.push(k) },
    refs,
  );
  watchForDomains(inf, { now: (k) => got.domainNow.push(k) }, refs);
  const clear = () => {
    got.relayNow.length = 0;
    got.relayCoalesced.length = 0;
    got.domainNow.length = 0;
  };
  return { inf, got, refs, clear };
}

test("a domain's status-only update (the operator's own write) re-queues nothing", () => {
  const { inf, got, clear } = setup();
  const d = domain('a', 'r1');
  inf.domains.items = [d];
  inf.domains.emit('add', d);
  clear();
  inf.domains.emit('update', { ...d, status: { conditions: [] } });
  expect(got).toEqual({ relayNow: [], relayCoalesced: [], domainNow: [] });
});

test('a domain moved to another relay re-queues it and both relays, coalesced', () => {
  const { inf, got, clear } = setup();
  const d = domain('a', 'r1');
  inf.domains.emit('add', d);
  clear();
  inf.domains.emit('update', domain('a', 'r2', { generation: 2 }));
  expect(got.domainNow).toEqual(['ns/a']);
  expect(got.relayCoalesced.sort()).toEqual(['ns/r1', 'ns/r2']);
  expect(got.relayNow).toEqual([]);
});

test('a deleted claim re-queues the other claims of the same domain on that relay only', () => {
  const { inf, got, clear } = setup();
  const first = domain('first', 'r1', { domain: 'shared.example' });
  const second = domain('second', 'r1', { domain: 'shared.example' });
  const other = domain('other', 'r1');
  inf.domains.items = [first, second, other];
  for (const d of inf.domains.items) inf.domains.emit('add', d);
  clear();
  inf.domains.items = [second, other];
  inf.domains.emit('delete', first);
  expect(got.domainNow.sort()).toEqual(['ns/first', 'ns/second']);
});

test("a relay's update re-queues only the domains whose served state changed", () => {
  const { inf, got, clear } = setup();
  inf.domains.items = [domain('a', 'r1'), domain('b', 'r1'), domain('c', 'r2')];
  inf.relays.emit('add', relay('r1'));
  expect(got.relayNow).toEqual(['ns/r1']);
  expect(got.domainNow.sort()).toEqual(['ns/a', 'ns/b']);
  clear();
  inf.relays.emit('update', relay('r1')); // e.g. its Ready condition changed
  expect(got.domainNow).toEqual([]);
  inf.relays.emit('update', relay('r1', ['a.example']));
  expect(got.domainNow).toEqual(['ns/a']);
  clear();
  inf.relays.emit('update', relay('r1', ['b.example']));
  expect(got.domainNow.sort()).toEqual(['ns/a', 'ns/b']);
  clear();
  inf.relays.emit('delete', relay('r1', ['b.example']));
  expect(got.domainNow.sort()).toEqual(['ns/a', 'ns/b']);
});

test('children and pods re-queue their relay; a Secret re-queues who reads or owns it', () => {
  const { inf, got, refs, clear } = setup();
  const ownedBy = (kind: string, name: string): KubeObject => ({
    kind: 'ConfigMap',
    metadata: {
      name: `${name}-x`,
      namespace: 'ns',
      ownerReferences: [{ apiVersion: 'mailfleet.dev/v1alpha1', kind, name, uid: 'u', controller: true }],
    },
  });
  inf.owned[0]!.emit('update', ownedBy('SmtpRelay', 'r1'));
  inf.pods.emit('update', {
    kind: 'Pod',
    metadata: { name: 'r2-0', namespace: 'ns', labels: { 'app.kubernetes.io/instance': 'r2' } },
  });
  expect(got.relayNow).toEqual(['ns/r1', 'ns/r2']);
  clear();
  refs.set('SmtpRelay:ns/r1', ['ns/users']);
  refs.set('MailDomain:ns/a', ['ns/users']);
  inf.secrets.emit('update', { kind: 'Secret', metadata: { name: 'users', namespace: 'ns' } });
  expect(got.relayCoalesced).toEqual(['ns/r1']);
  expect(got.domainNow).toEqual(['ns/a']);
  clear();
  inf.secrets.emit('update', { ...ownedBy('MailDomain', 'b'), kind: 'Secret' });
  expect(got.domainNow).toEqual(['ns/b']);
  expect(got.relayNow).toEqual([]);
});
