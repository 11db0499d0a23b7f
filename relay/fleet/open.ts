/**
 * The fleet as the rest of the relay sees it: builds the FleetState (with a FleetStore when the config
 * names one), reports its state in metrics, logs and GET /fleet, and gives sessions, the queue manager
 * and delivery the narrow seams they call. A reload that changes `fleetStore` (or the files it names)
 * opens a new store and closes the old one; the seams always use the current one.
 *
 * Diagnostics: mailfleet_relay_fleet_state (one-hot), mailfleet_relay_fleet_store_fallbacks_total
 * (decisions made here because a configured store did not answer); the store logs its transitions.
 */
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import type { FleetStoreConfig, RelayConfig } from '../config/schema.js';
import type { ShapingGate } from '../delivery/sites.js';
import type { SuppressionList } from '../delivery/suppression.js';
import type { Logger } from '../log.js';
import {
  FleetStates,
  type FleetFallbackOperation,
  type FleetState as FleetStateName,
  type RelayMetrics,
} from '../metrics.js';
import type { SubmissionLimits } from '../smtp/session.js';
import type { FleetReport } from './admin-routes.js';
import { FleetState, type Decider, type FleetMode } from './state.js';
import { FleetStore } from './store.js';

const STATE_OF: Record<FleetMode, FleetStateName> = {
  fleet: 'shared',
  degraded: 'degraded',
  local: 'per_pod',
};

/** What the store section resolves to once its files are read: equal inputs, same store. */
interface StoreInputs {
  config: FleetStoreConfig;
  username?: string;
  password?: string;
  ca?: string;
}

async function readInputs(config: FleetStoreConfig | undefined): Promise<StoreInputs | undefined> {
  if (!config) return undefined;
  const read = async (field: string, file: string | undefined) => {
    if (!file) return undefined;
    try {
      return (await readFile(file, 'utf8')).trim();
    } catch (err) {
      throw Object.assign(new Error(`fleetStore.${field}: ${(err as Error).message}`), {
        problems: [`fleetStore.${field}: cannot read ${file}: ${(err as Error).message}`],
      });
    }
  };
  return {
    config,
    username: await read('usernameFile', config.usernameFile),
    password: await read('passwordFile', config.passwordFile),
    ca: config.caFile ? await read('caFile', config.caFile) : undefined,
  };
}

export class Fleet {
  /** Set by open() before anyone can use the fleet, replaced by a reload that changes the store. */
  private state!: FleetState;
  private inputs?: StoreInputs;
  private since = new Date();
  private lastError?: string;
  private unsubscribe: () => void = () => {};
  private readonly holderPrefix = `${os.hostname()}:${process.pid}:${Date.now()}`;

  private constructor(
    private readonly log: Logger,
    private readonly metrics: RelayMetrics,
  ) {}

  static async open(config: RelayConfig, log: Logger, metrics: RelayMetrics): Promise<Fleet> {
    const fleet = new Fleet(log, metrics);
    await fleet.swap(await readInputs(config.fleetStore));
    return fleet;
  }

  /** On reload: a new store when its section or its files changed. Throws on unreadable files. */
  async apply(config: RelayConfig): Promise<void> {
    const inputs = await readInputs(config.fleetStore);
    if (JSON.stringify(inputs) !== JSON.stringify(this.inputs)) await this.swap(inputs);
  }

  /** Waits up to timeoutMs for a new store to connect, so a relay starts sharing rather than degraded. */
  private async swap(inputs: StoreInputs | undefined): Promise<void> {
    const previous = this.state as FleetState | undefined;
    const store = inputs && this.store(inputs);
    this.state = this.build(inputs, store);
    await previous?.close();
    if (store && inputs) await store.waitConnected(inputs.config.timeoutMs);
  }

  private build(inputs: StoreInputs | undefined, store?: FleetStore): FleetState {
    this.unsubscribe();
    this.inputs = inputs;
    const state = new FleetState({
      holderPrefix: this.holderPrefix,
      log: this.log,
      ...(store ? { store } : {}),
    });
    this.unsubscribe = state.onModeChange((mode) => this.changed(mode));
    this.changed(state.mode());
    return state;
  }

  private store(inputs: StoreInputs): FleetStore {
    const { config } = inputs;
    const store = new FleetStore({
      url: config.url,
      ...(inputs.username !== undefined ? { username: inputs.username } : {}),
      ...(inputs.password !== undefined ? { password: inputs.password } : {}),
      ...(inputs.ca !== undefined || config.serverName
        ? { tls: { ca: inputs.ca, serverName: config.serverName } }
        : {}),
      keyPrefix: config.keyPrefix,
      timeoutMs: config.timeoutMs,
      clientName: os.hostname(),
      log: this.log,
    });
    // The reason is the store's own words ("connect ECONNREFUSED host:port"): stable while the cause
    // lasts, so the operator's condition built from it does not change with every poll.
    store.onStateChange((state, reason) => {
      if (state === 'degraded') this.lastError = reason.slice(0, 300);
    });
    return store;
  }

  private changed(mode: FleetMode): void {
    const state = STATE_OF[mode];
    for (const s of FleetStates) this.metrics.fleetState.set({ state: s }, s === state ? 1 : 0);
    this.since = new Date();
    if (mode === 'fleet') this.lastError = undefined;
    // The store logs its own transitions (with the cause); without one, say once that limits are per pod.
    if (mode === 'local')
      this.log.info(
        { event: 'fleet_per_pod' },
        'no fleetStore: rate limits, shaping and suppression are per pod',
      );
  }

  report(): FleetReport {
    const state = STATE_OF[this.state.mode()];
    return {
      state,
      since: this.since.toISOString(),
      ...(state === 'degraded' && this.lastError ? { error: this.lastError } : {}),
    };
  }

  current(): FleetState {
    return this.state;
  }

  private counted<T extends { decidedBy: Decider }>(operation: FleetFallbackOperation, answer: T): T {
    if (answer.decidedBy === 'local' && this.inputs) this.metrics.fleetStoreFallbacks.inc({ operation });
    return answer;
  }

  /** The seam sessions call (relay/smtp/session.ts). */
  readonly limits: SubmissionLimits = {
    takeRate: async (kind, id, perMinute) =>
      this.counted('rate', await this.state.takeRate(kind, id, perMinute)),
    suppressed: async (address) => {
      const entry = await this.state.isSuppressed(address);
      if (entry) this.metrics.suppressedRecipients.inc({ action: 'refused' });
      return entry;
    },
  };

  /** The seam delivery calls (relay/delivery/suppression.ts). */
  readonly suppressionList: SuppressionList = {
    isSuppressed: (address) => this.state.isSuppressed(address),
    suppress: async (address, reason, ttl) =>
      this.counted('suppression', await this.state.suppress(address, reason, ttl)),
  };

  /** The seam the queue manager's shaping calls (relay/delivery/sites.ts): leases and rates per site. */
  readonly gate: ShapingGate = {
    admit: async (site, maxConnections, perMinute) => {
      const a = this.counted('lease', await this.state.admit('site', site, maxConnections, perMinute));
      if ('refused' in a) return { refused: a.refused, retryAfterMs: a.retryAfterMs };
      return { slot: { release: () => void a.release() } };
    },
  };

  async close(): Promise<void> {
    this.unsubscribe();
    await this.state.close();
  }
}
