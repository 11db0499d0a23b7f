/**
 * Asking a relay's admin server where its fleet state is decided (see the relay's fleet contract):
 * GET /fleet with "Authorization: Bearer <admin token>" answers 200 {"state": "shared"|"degraded"|"per_pod",
 * "error": "why degraded", "since": "ISO time of the last change"}, on the same address as GET /drain
 * (`podAdminAddress`).
 *
 * A client of its own rather than a method of DrainClient: drains and the fleet store are separate
 * concerns, and a test faking one need not fake the other. `FleetClient` is the seam unit tests fake.
 */
import { request } from 'undici';
import { errorMessage } from '../runtime/logger.js';
import { reason } from './drain-client.js';

export type FleetState = 'shared' | 'degraded' | 'per_pod';

export interface FleetAnswer {
  state: FleetState;
  /** Why the pod decides alone (state "degraded"), bounded. */
  error?: string;
}

const STATES: readonly unknown[] = ['shared', 'degraded', 'per_pod'] satisfies FleetState[];

export interface FleetClient {
  /** Throws, naming the address and the HTTP status, when the pod gives no valid answer. */
  fleetState(address: string, token: string): Promise<FleetAnswer>;
}

export class HttpFleetClient implements FleetClient {
  // Short: the reconcile waits for the slowest of a batch of pods, and the next poll is 30 s away.
  constructor(private readonly timeoutMs = 5_000) {}

  async fleetState(address: string, token: string): Promise<FleetAnswer> {
    let res: Awaited<ReturnType<typeof request>>;
    let text: string;
    const deadline = AbortSignal.timeout(this.timeoutMs);
    try {
      // One deadline for connect, headers and body (undici's own timeouts leave connect at 10 s).
      res = await request(`http://${address}/fleet`, {
        method: 'GET',
        headers: { authorization: `Bearer ${token}` },
        signal: deadline,
      });
      text = await res.body.text();
    } catch (e) {
      throw new Error(
        `GET /fleet on ${address}: ${deadline.aborted ? `no answer within ${this.timeoutMs} ms` : errorMessage(e)}`,
        { cause: e },
      );
    }
    if (res.statusCode !== 200)
      throw new Error(`GET /fleet on ${address}: HTTP ${res.statusCode}${reason(text)}`);
    let body: { state?: unknown; error?: unknown };
    try {
      body = JSON.parse(text) as typeof body;
    } catch {
      throw new Error(`GET /fleet on ${address}: HTTP 200 with a body that is not JSON`);
    }
    if (!STATES.includes(body.state))
      throw new Error(`GET /fleet on ${address}: unexpected state ${JSON.stringify(body.state)}`);
    return {
      state: body.state as FleetState,
      ...(body.state === 'degraded'
        ? { error: typeof body.error === 'string' ? body.error.slice(0, 300) : 'no cause given' }
        : {}),
    };
  }
}
