import { Controller } from '../../../operator/runtime/controller.js';
import { parseBindAddress } from '../../../operator/runtime/http.js';
import { LeaderElector } from '../../../operator/runtime/leader.js';
import { silentLogger } from '../../../operator/runtime/logger.js';
import { OperatorMetrics } from '../../../operator/runtime/metrics.js';
import { parseDuration, parseFlags } from '../../../operator/flags.js';
import { FakeApi } from './fake-api.js';
import { FakeClock } from '../../helpers/fake-clock.js';

describe('Controller result semantics', () => {
  async function run(result: () => Promise<unknown>) {
    const clock = new FakeClock();
    const metrics = new OperatorMetrics(false);
    const c = new Controller('t', () => result() as never, clock, metrics, silentLogger);
    await c.processOne('ns/a');
    const totals = await metrics.reconcileTotal.get();
    return { c, clock, totals: totals.values.map((v) => [v.labels.result, v.value]) };
  }

  it('success forgets the key; requeueAfter schedules it; errors and retry back off', async () => {
    expect((await run(() => Promise.resolve(undefined))).totals).toEqual([['success', 1]]);
    const after = await run(() => Promise.resolve({ requeueAfterMs: 1000 }));
    expect(after.c.queue.pendingDelayed().get('ns/a')).toBe(after.clock.now() + 1000);
    const err = await run(() => Promise.reject(new Error('boom')));
    expect(err.totals).toEqual([['error', 1]]);
    expect(err.c.queue.numRequeues('ns/a')).toBe(1);
    expect(err.c.queue.pendingDelayed().get('ns/a')).toBe(err.clock.now() + 5);
    const retry = await run(() => Promise.resolve({ retry: true }));
    expect(retry.totals).toEqual([['requeue', 1]]);
    expect(retry.c.queue.numRequeues('ns/a')).toBe(1);
  });
});

describe('operator metrics', () => {
  it('exposes work in progress: unfinished work and the longest running processor', async () => {
    const clock = new FakeClock();
    const metrics = new OperatorMetrics(false);
    let release: () => void = () => {};
    const c = new Controller(
      'relay',
      () => new Promise<void>((r) => (release = r)),
      clock,
      metrics,
      silentLogger,
    );
    c.enqueue('ns/a');
    c.start();
    for (let i = 0; i < 20; i++) await Promise.resolve();
    clock.advance(3000);
    const page = await metrics.registry.metrics();
    expect(page).toMatch(
      /^workqueue_longest_running_processor_seconds\{name="relay",controller="relay"\} 3$/m,
    );
    expect(page).toMatch(/^workqueue_unfinished_work_seconds\{name="relay",controller="relay"\} 3$/m);
    expect(page).toMatch(/^controller_runtime_max_concurrent_reconciles\{controller="relay"\} 2$/m);
    release();
    await c.stop();
    expect(await metrics.registry.metrics()).toMatch(
      /^workqueue_longest_running_processor_seconds\{name="relay",controller="relay"\} 0$/m,
    );
  });
});

describe('LeaderElector', () => {
  const cfg = {
    namespace: 'ops',
    name: 'lease',
    leaseDurationMs: 15_000,
    renewDeadlineMs: 10_000,
    retryPeriodMs: 2_000,
  };
  const noop = { onStartedLeading: () => {}, onStoppedLeading: () => {} };

  it('takes a free lease, keeps it on renew, and a second candidate waits until it expires', async () => {
    const api = new FakeApi();
    const clock = new FakeClock();
    const a = new LeaderElector(api, { ...cfg, identity: 'a' }, clock, silentLogger, noop);
    const b = new LeaderElector(api, { ...cfg, identity: 'b' }, clock, silentLogger, noop);
    expect(await a.tryAcquireOrRenew()).toBe(true);
    expect(await b.tryAcquireOrRenew()).toBe(false);
    clock.advance(2000);
    expect(await a.tryAcquireOrRenew()).toBe(true);
    clock.advance(10_000);
    // b saw the record change 10 s ago (a renewed): not expired for b yet.
    expect(await b.tryAcquireOrRenew()).toBe(false);
    clock.advance(16_000);
    expect(await b.tryAcquireOrRenew()).toBe(true);
    const lease = api.find('Lease', 'ops', 'lease') as {
      spec: { holderIdentity: string; leaseTransitions: number };
    };
    expect(lease.spec).toMatchObject({ holderIdentity: 'b', leaseTransitions: 1 });
  });

  it('a leader cut off from the API server stops leading, and leads again once it is back', async () => {
    const api = new FakeApi();
    const clock = new FakeClock();
    const calls: string[] = [];
    const a = new LeaderElector(api, { ...cfg, identity: 'a' }, clock, silentLogger, {
      onStartedLeading: () => calls.push('started'),
      onStoppedLeading: () => calls.push('stopped'),
    });
    const settle = async () => {
      for (let i = 0; i < 50; i++) await Promise.resolve();
    };
    a.start();
    await settle();
    expect(calls).toEqual(['started']);
    const get = api.get.bind(api);
    api.get = () => Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:6443'));
    for (let t = 0; t < 12_000; t += 2000) {
      clock.advance(2000);
      await settle();
    }
    expect(calls).toEqual(['started', 'stopped']);
    expect(a.isLeader()).toBe(false);
    api.get = get;
    clock.advance(2000);
    await settle();
    expect(calls).toEqual(['started', 'stopped', 'started']);
    expect(a.isLeader()).toBe(true);
    await a.stop();
  });

  it('releases the lease on stop so a standby takes over at once', async () => {
    const api = new FakeApi();
    const clock = new FakeClock();
    const a = new LeaderElector(api, { ...cfg, identity: 'a' }, clock, silentLogger, noop);
    const b = new LeaderElector(api, { ...cfg, identity: 'b' }, clock, silentLogger, noop);
    a.start();
    for (let i = 0; i < 50 && !a.isLeader(); i++) await Promise.resolve();
    expect(a.isLeader()).toBe(true);
    await a.stop();
    expect(await b.tryAcquireOrRenew()).toBe(true);
  });
});

describe('flags', () => {
  it('parses controller-runtime style flags with defaults', () => {
    const c = parseFlags([
      '--kubeconfig',
      '/k',
      '--namespaces',
      'a, b',
      '--leader-elect',
      '--leader-election-namespace=ops',
      '--metrics-bind-address',
      '127.0.0.1:0',
    ]);
    expect(c).toMatchObject({
      kubeconfig: '/k',
      namespaces: ['a', 'b'],
      leaderElect: true,
      leaderElectionNamespace: 'ops',
      metricsBindAddress: '127.0.0.1:0',
      healthProbeBindAddress: ':8081',
      logLevel: 'info',
      dnsCheckIntervalMs: 300_000,
    });
    expect(parseFlags(['--leader-elect=false'])).toMatchObject({ leaderElect: false, namespaces: undefined });
    expect(parseFlags([], 'in-cluster-ns')).toMatchObject({ leaderElectionNamespace: 'in-cluster-ns' });
    expect(parseFlags(['--help'])).toBe('help');
    expect(parseFlags([])).toMatchObject({ drainPeerAddress: 'dns' });
    expect(parseFlags(['--drain-peer-address=ip'])).toMatchObject({ drainPeerAddress: 'ip' });
    expect(() => parseFlags(['--drain-peer-address=dhcp'])).toThrow('--drain-peer-address takes dns or ip');
    expect(parseFlags(['--drain-networks', '127.0.0.0/8,::1/128'])).toMatchObject({
      drainNetworks: ['127.0.0.0/8', '::1/128'],
    });
  });

  it('refuses what it cannot use, naming the flag', () => {
    expect(() => parseFlags(['--leader-elect'])).toThrow('--leader-election-namespace is required');
    expect(() => parseFlags(['--log-level', 'loud'])).toThrow('--log-level');
    expect(() => parseFlags(['--bogus'])).toThrow();
    expect(() => parseDuration('5 minutes')).toThrow('invalid duration');
    expect(() => parseFlags(['--drain-networks', '10.0.0.1/8'])).toThrow('--drain-networks[0]');
    expect(parseDuration('1.5s')).toBe(1500);
  });

  it('parses bind addresses', () => {
    expect(parseBindAddress(':8080')).toEqual({ host: '0.0.0.0', port: 8080 });
    expect(parseBindAddress('127.0.0.1:0')).toEqual({ host: '127.0.0.1', port: 0 });
    expect(parseBindAddress('[::1]:9')).toEqual({ host: '::1', port: 9 });
    expect(parseBindAddress('0')).toBeUndefined();
  });
});
