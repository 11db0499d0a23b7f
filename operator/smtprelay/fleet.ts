/**
 * Asking an SmtpRelay's ready pods whether they reach the fleet store (GET /fleet), a few at a time. Only
 * with spec.fleetStore: without it there is nothing to ask and no HTTP is made. What the answers mean for
 * status is status.ts's (`fleetStoreCondition`); the reconcile polls every FLEET_POLL_MS while a store is
 * configured, since a store going down changes nothing the informers see.
 */
import type { SmtpRelay } from '../api/smtprelay.js';
import { isAddressAllowed, type Network } from '../../relay/policy/network.js';
import type { KubeObject } from '../runtime/kube.js';
import { errorMessage } from '../runtime/logger.js';
import { podAdminAddress } from './drain-client.js';
import type { FleetAnswer, FleetClient } from './fleet-client.js';
import { names } from './names.js';
import { podOrdinal } from './scale.js';

/** How often a relay with a fleet store is asked again. */
export const FLEET_POLL_MS = 30_000;
/** Pods asked at once: a large fleet is not a burst of hundreds of connections. */
const CONCURRENCY = 8;

/** One ready pod and what it said, or why it could not be asked. */
export interface PodFleetAnswer {
  pod: string;
  answer?: FleetAnswer;
  error?: string;
}

/** The relay's ready pods (Ready=True, not terminating), in ordinal order so messages are stable. */
export function readyPods(relay: SmtpRelay, pods: readonly KubeObject[]): KubeObject[] {
  const sts = names(relay.metadata.name).statefulSet;
  return pods
    .filter((p) => {
      const conds = (p.status as { conditions?: Array<{ type?: string; status?: string }> } | undefined)
        ?.conditions;
      return !p.metadata?.deletionTimestamp && conds?.some((c) => c.type === 'Ready' && c.status === 'True');
    })
    .sort((a, b) => podOrdinal(sts, a.metadata?.name ?? '') - podOrdinal(sts, b.metadata?.name ?? ''));
}

export class RelayFleet {
  constructor(
    private readonly client: FleetClient,
    /** --drain-networks: the pod IPs the operator may connect to at all. */
    private readonly networks?: readonly Network[],
  ) {}

  /** GET /fleet on every ready pod; undefined without spec.fleetStore (nothing asked). */
  async ask(
    relay: SmtpRelay,
    pods: readonly KubeObject[],
    token: string,
  ): Promise<PodFleetAnswer[] | undefined> {
    if (!relay.spec.fleetStore) return undefined;
    const port = relay.spec.monitoring.metricsPort;
    return mapLimit(readyPods(relay, pods), CONCURRENCY, async (p) => {
      const pod = p.metadata?.name ?? '';
      const ip = (p.status as { podIP?: string } | undefined)?.podIP ?? '';
      const address = podAdminAddress(p, port);
      if (!address) return { pod, error: 'the pod has no IP yet' };
      if (this.networks && !isAddressAllowed(ip, this.networks))
        return {
          pod,
          error: `pod IP ${ip} is outside --drain-networks; the operator does not connect to it`,
        };
      try {
        return { pod, answer: await this.client.fleetState(address, token) };
      } catch (e) {
        return { pod, error: errorMessage(e) };
      }
    });
  }
}

/** `fn` over `items`, at most `limit` at once, results in the order of `items`. */
async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
