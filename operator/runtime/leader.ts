/**
 * Lease-based leader election with client-go's semantics (15 s lease, 10 s renew deadline, 2 s retry):
 * - every retry period a candidate reads the Lease; it takes it when it is free, already its own, or
 *   expired — expiry judged by the candidate's own clock from when it last *saw the record change*, so
 *   clock skew between replicas does not matter;
 * - a leader that cannot renew within the renew deadline stops leading (the manager stops its
 *   controllers at once, so a stale leader never acts) and goes on campaigning: when the API server comes
 *   back it leads again, or stands by for the replica that took over, without a restart;
 * - on shutdown the leader releases the Lease so a standby takes over at once.
 * Writes use resourceVersion preconditions, so two candidates never both win.
 */
import type { Clock } from './clock.js';
import { isConflict, type KubeApi, type KubeObject } from './kube.js';
import { errorMessage, type Logger } from './logger.js';
import { Kinds } from './resources.js';
import type { PolicyRule } from './rbac.js';

export const LEADER_ELECTION_RBAC: PolicyRule[] = [
  {
    apiGroups: ['coordination.k8s.io'],
    resources: ['leases'],
    verbs: ['get', 'list', 'watch', 'create', 'update', 'patch'],
  },
];

export interface LeaderElectionConfig {
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
}

export const DEFAULT_LEASE_TIMINGS = {
  leaseDurationMs: 15_000,
  renewDeadlineMs: 10_000,
  retryPeriodMs: 2_000,
};

interface LeaseSpec {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions?: number;
}

const microTime = (ms: number) => new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');

export class LeaderElector {
  private leading = false;
  private lastRenew = 0;
  private observedRecord = '';
  private observedAt = 0;
  private timer: unknown;
  private stopped = false;

  constructor(
    private readonly api: KubeApi,
    private readonly cfg: LeaderElectionConfig,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly callbacks: {
      onStartedLeading: () => void;
      onStoppedLeading: () => void;
      onStatus?: (leading: boolean) => void;
    },
  ) {}

  isLeader(): boolean {
    return this.leading;
  }

  start(): void {
    void this.tick();
  }

  /** Stops campaigning; a leader releases the Lease. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.clock.clearTimeout(this.timer);
    if (this.leading) {
      this.leading = false;
      this.callbacks.onStatus?.(false);
      await this.release().catch((e: unknown) =>
        this.log.warn({ err: errorMessage(e) }, 'could not release lease'),
      );
    }
  }

  /** One attempt to acquire or renew; exposed for tests. Returns whether we hold the lease after it. */
  async tryAcquireOrRenew(): Promise<boolean> {
    const now = this.clock.now();
    const { namespace, name, identity } = this.cfg;
    const live = await this.api.get(Kinds.Lease, namespace, name);
    const spec: LeaseSpec = {
      holderIdentity: identity,
      leaseDurationSeconds: Math.round(this.cfg.leaseDurationMs / 1000),
      acquireTime: microTime(now),
      renewTime: microTime(now),
      leaseTransitions: 0,
    };
    if (!live) {
      await this.api.create({
        apiVersion: 'coordination.k8s.io/v1',
        kind: 'Lease',
        metadata: { name, namespace },
        spec,
      });
      this.observe(JSON.stringify(spec), now);
      return true;
    }
    const old = (live.spec ?? {}) as LeaseSpec;
    const record = JSON.stringify(old);
    if (record !== this.observedRecord) this.observe(record, now);
    const holder = old.holderIdentity ?? '';
    const durationMs = (old.leaseDurationSeconds ?? 0) * 1000;
    if (holder !== '' && holder !== identity && this.observedAt + durationMs > now) return false;
    if (holder === identity) {
      spec.acquireTime = old.acquireTime ?? spec.acquireTime;
      spec.leaseTransitions = old.leaseTransitions ?? 0;
    } else {
      spec.leaseTransitions = (old.leaseTransitions ?? 0) + 1;
    }
    const updated: KubeObject = { ...live, spec };
    await this.api.update(updated);
    this.observe(JSON.stringify(spec), now);
    return true;
  }

  private observe(record: string, now: number): void {
    this.observedRecord = record;
    this.observedAt = now;
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    let ok = false;
    try {
      ok = await this.tryAcquireOrRenew();
    } catch (e) {
      if (!isConflict(e)) this.log.warn({ err: errorMessage(e) }, 'leader election: lease request failed');
    }
    if (this.stopped) return;
    const now = this.clock.now();
    if (ok) {
      this.lastRenew = now;
      if (!this.leading) {
        this.leading = true;
        this.log.info(
          { lease: `${this.cfg.namespace}/${this.cfg.name}`, identity: this.cfg.identity },
          'became leader',
        );
        this.callbacks.onStatus?.(true);
        this.callbacks.onStartedLeading();
      }
    } else if (this.leading && now - this.lastRenew > this.cfg.renewDeadlineMs) {
      this.leading = false;
      this.log.error(
        { lease: `${this.cfg.namespace}/${this.cfg.name}` },
        'leader election lost: could not renew within the deadline',
      );
      this.callbacks.onStatus?.(false);
      this.callbacks.onStoppedLeading();
    }
    this.timer = this.clock.setTimeout(() => void this.tick(), this.cfg.retryPeriodMs);
  }

  private async release(): Promise<void> {
    const live = await this.api.get(Kinds.Lease, this.cfg.namespace, this.cfg.name);
    const spec = (live?.spec ?? {}) as LeaseSpec;
    if (!live || spec.holderIdentity !== this.cfg.identity) return;
    const now = microTime(this.clock.now());
    await this.api.update({
      ...live,
      spec: { ...spec, holderIdentity: '', leaseDurationSeconds: 1, acquireTime: now, renewTime: now },
    });
  }
}
