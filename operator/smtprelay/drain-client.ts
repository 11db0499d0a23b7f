/**
 * Talking to a relay's admin server to drain it (see the relay's drain contract):
 * POST /drain {"peers": ["host:port", ...]} starts a drain (the relay stops accepting, then delivers or
 * hands each queued message to a peer); GET /drain reports {"state": "idle"|"draining"|"drained"|"failed",
 * "queued": n, "error": "…" when failed}. Both carry "Authorization: Bearer <admin token>".
 *
 * `DrainClient` is the seam unit tests fake. `podAdminAddress` is the single place that decides where a pod
 * is reached (podIP:adminPort), so an e2e harness running relays on loopback pod IPs works unchanged.
 */
import { request } from 'undici';

export type DrainState = 'idle' | 'draining' | 'drained' | 'failed';

export interface DrainStatus {
  state: DrainState;
  queued: number;
  /** Why the pod's drain loop stopped (state "failed"). */
  error?: string;
}

const STATES: readonly unknown[] = ['idle', 'draining', 'drained', 'failed'] satisfies DrainState[];

export interface DrainClient {
  status(address: string, token: string): Promise<DrainStatus>;
  start(address: string, token: string, peers: readonly string[]): Promise<void>;
}

export interface PodLike {
  metadata?: { name?: string };
  status?: { podIP?: string; phase?: string };
}

/** host:port of a pod's admin server, or undefined when the pod has no IP yet. */
export function podAdminAddress(pod: PodLike, adminPort: number): string | undefined {
  const ip = pod.status?.podIP;
  if (!ip) return undefined;
  return ip.includes(':') ? `[${ip}]:${adminPort}` : `${ip}:${adminPort}`;
}

export class HttpDrainClient implements DrainClient {
  constructor(private readonly timeoutMs = 10_000) {}

  async status(address: string, token: string): Promise<DrainStatus> {
    const res = await request(`http://${address}/drain`, {
      method: 'GET',
      headers: { authorization: `Bearer ${token}` },
      headersTimeout: this.timeoutMs,
      bodyTimeout: this.timeoutMs,
    });
    const text = await res.body.text();
    if (res.statusCode !== 200)
      throw new Error(`GET /drain on ${address}: HTTP ${res.statusCode}${reason(text)}`);
    const body = JSON.parse(text) as { state?: unknown; queued?: unknown; error?: unknown };
    if (!STATES.includes(body.state)) {
      throw new Error(`GET /drain on ${address}: unexpected state ${JSON.stringify(body.state)}`);
    }
    return {
      state: body.state as DrainState,
      queued: typeof body.queued === 'number' ? body.queued : 0,
      ...(body.state === 'failed'
        ? { error: typeof body.error === 'string' ? body.error.slice(0, 300) : 'no cause given' }
        : {}),
    };
  }

  async start(address: string, token: string, peers: readonly string[]): Promise<void> {
    const res = await request(`http://${address}/drain`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify(peers.length ? { peers } : {}),
      headersTimeout: this.timeoutMs,
      bodyTimeout: this.timeoutMs,
    });
    const text = await res.body.text();
    if (res.statusCode < 200 || res.statusCode >= 300) {
      throw new Error(`POST /drain on ${address}: HTTP ${res.statusCode}${reason(text)}`);
    }
  }
}

/** The relay's {"error": "..."} body, as ": <error>" for messages (bounded). Every admin endpoint answers errors so. */
export function reason(body: string): string {
  try {
    const e = (JSON.parse(body) as { error?: unknown }).error;
    return typeof e === 'string' ? `: ${e.slice(0, 300)}` : '';
  } catch {
    return '';
  }
}
