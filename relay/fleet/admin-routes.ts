/**
 * The fleet's routes on the admin port (relay/admin/server.ts): the state the operator reads for the
 * SmtpRelay's FleetStore condition, and the suppression list the `mailfleet-relay suppression` tool uses.
 *
 *   GET  /fleet                          {"state": "shared"|"degraded"|"per_pod", "since", "error"?}
 *   GET  /suppression?cursor=C&limit=N   {"entries": [{address, reason, until}], "cursor"?, "decidedBy"}
 *   POST /suppression/add                {"addresses": [..], "reason"?} → {"added": n, "decidedBy"}
 *   POST /suppression/remove             {"address": A} → {"removed": bool, "decidedBy"}
 *
 * The suppression routes are `mutating` (admin token; the listing shows addresses). Addresses are
 * checked and put in canonical form (relay/policy/address.ts) as RCPT TO would, so an entry added here
 * matches what sessions look up. "decidedBy": "local" says the store did not answer and this pod's own
 * list was used (it is replayed to the store when it is back).
 */
import { BadRequest, readJson, sendJson } from '../admin/server.js';
import type { RouteRegistrar } from '../delivery/admin-routes.js';
import { canonicalAddress, parseMailbox } from '../policy/address.js';
import type { RelayMetrics } from '../metrics.js';
import type { FleetState } from './state.js';
import { MAX_SUPPRESSION_ADD as MAX_ADD } from './types.js';

export type FleetReport = { state: 'shared' | 'degraded' | 'per_pod'; since: string; error?: string };

export interface FleetRoutesDeps {
  /** The fleet state in force (a reload may replace it). */
  fleet: () => FleetState;
  report: () => FleetReport;
  /** suppression.ttl of the config in force (seconds). */
  ttl: () => number;
  metrics: RelayMetrics;
}

export function registerFleetRoutes(admin: RouteRegistrar, deps: FleetRoutesDeps): void {
  admin.route('GET', '/fleet', (_req, res) => sendJson(res, 200, deps.report()));
  admin.route(
    'GET',
    '/suppression',
    async (_req, res, url) => {
      const limit = Number(url.searchParams.get('limit') ?? 100);
      if (!Number.isInteger(limit) || limit < 1 || limit > 1000)
        throw new BadRequest('"limit" must be an integer from 1 to 1000');
      const page = await deps.fleet().listSuppressed(url.searchParams.get('cursor') ?? undefined, limit);
      sendJson(res, 200, page);
    },
    { mutating: true },
  );
  admin.route(
    'POST',
    '/suppression/add',
    async (req, res) => {
      const body = await readJson(req);
      const { addresses } = body;
      if (!Array.isArray(addresses) || addresses.length === 0 || addresses.length > MAX_ADD)
        throw new BadRequest(`"addresses" must be a list of 1 to ${MAX_ADD} addresses`);
      if (body.reason !== undefined && typeof body.reason !== 'string')
        throw new BadRequest('"reason" must be a string');
      const canonical = addresses.map(toCanonical);
      const reason = body.reason || 'added by an operator';
      const results = await Promise.all(
        canonical.map((a) => deps.fleet().suppress(a, reason.slice(0, 500), deps.ttl())),
      );
      deps.metrics.suppressionsAdded.inc({ source: 'admin' }, results.length);
      const local = results.some((r) => r.decidedBy === 'local');
      sendJson(res, 200, { added: results.length, decidedBy: local ? 'local' : 'fleet' });
    },
    { mutating: true },
  );
  admin.route(
    'POST',
    '/suppression/remove',
    async (req, res) => {
      const body = await readJson(req);
      sendJson(res, 200, await deps.fleet().unsuppress(toCanonical(body.address)));
    },
    { mutating: true },
  );
}

function toCanonical(address: unknown): string {
  if (typeof address !== 'string') throw new BadRequest('an address must be a string');
  const mailbox = parseMailbox(address);
  if (typeof mailbox === 'string') throw new BadRequest(`not a mailbox address: ${address.slice(0, 100)}`);
  return canonicalAddress(mailbox);
}
