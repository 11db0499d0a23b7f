/**
 * SmtpRelay + bound MailDomains → the relay's config file (RelayConfig of relay/config/schema.ts). Pure.
 *
 * Secrets never appear in it: every credential, key and certificate is a path to a key of the runtime
 * Secret, which is mounted next to relay.yaml. The file is reloaded by the relay when it changes, so a
 * change here reaches running pods without a restart.
 */
import type { Smarthost } from '../api/common.js';
import type { MailDomain } from '../api/maildomain.js';
import type { SmtpRelay } from '../api/smtprelay.js';
import {
  SuppressionCodes,
  type FleetStoreConfig,
  type MailDomainConfig,
  type RelayConfig,
  type RouteConfig,
  type SmarthostConfig,
} from '../../relay/config/schema.js';
import { HANDOFF_USER, PATHS, RUNTIME_KEYS, serviceHost } from './names.js';

/** A MailDomain bound to this relay, with what the runtime Secret holds for it. */
export interface BoundDomain {
  domain: MailDomain;
  /** The DKIM key is in the runtime Secret. */
  dkimKey: boolean;
  /** The route smarthost credentials / CA are in the runtime Secret. */
  routeCredentials: boolean;
  routeCa: boolean;
}

export interface ConfigInput {
  relay: SmtpRelay;
  domains: readonly BoundDomain[];
  /** tls.crt/tls.key are in the runtime Secret. */
  tls: boolean;
  /** ca.crt (the CA that signed the relay certificates) is in the runtime Secret. */
  ca: boolean;
  smarthostCredentials: boolean;
  smarthostCa: boolean;
  fleetStore: FleetStoreFiles;
}

/** Which of spec.fleetStore's Secret keys are in the runtime Secret. */
export interface FleetStoreFiles {
  username: boolean;
  password: boolean;
  ca: boolean;
}

const file = PATHS.file;

function smarthost(
  s: Smarthost,
  keys: { username: string; password: string; ca: string },
  has: { credentials: boolean; ca: boolean },
): SmarthostConfig {
  return {
    host: s.host,
    port: s.port,
    tls: s.tls,
    ...(has.ca ? { caFile: file(keys.ca) } : {}),
    ...(has.credentials
      ? { auth: { usernameFile: file(keys.username), passwordFile: file(keys.password) } }
      : {}),
  };
}

function domainConfig(b: BoundDomain): MailDomainConfig {
  const { spec } = b.domain;
  const name = spec.domain.toLowerCase();
  const route: RouteConfig | undefined = spec.route
    ? {
        mode: spec.route.mode,
        ...(spec.route.mode === 'smarthost' && spec.route.smarthost
          ? {
              smarthost: smarthost(
                spec.route.smarthost,
                {
                  username: RUNTIME_KEYS.routeUsername(name),
                  password: RUNTIME_KEYS.routePassword(name),
                  ca: RUNTIME_KEYS.routeCa(name),
                },
                { credentials: b.routeCredentials, ca: b.routeCa },
              ),
            }
          : {}),
      }
    : undefined;
  return {
    name,
    allowedUsers: [...spec.allowedUsers],
    allowedSenders: [...spec.allowedSenders],
    ...(spec.dkim.enabled && b.dkimKey
      ? {
          dkim: {
            selector: spec.dkim.selector,
            algorithm: spec.dkim.algorithm,
            keyFile: file(RUNTIME_KEYS.dkim(name)),
            onFailure: spec.dkim.onSigningFailure === 'SendUnsigned' ? 'send-unsigned' : 'defer',
          },
        }
      : {}),
    ...(route ? { route } : {}),
  };
}

function fleetStore(relay: SmtpRelay, has: FleetStoreFiles): FleetStoreConfig {
  const s = relay.spec.fleetStore!;
  return {
    url: s.url,
    ...(has.username ? { usernameFile: file(RUNTIME_KEYS.fleetStoreUsername) } : {}),
    ...(has.password ? { passwordFile: file(RUNTIME_KEYS.fleetStorePassword) } : {}),
    ...(has.ca ? { caFile: file(RUNTIME_KEYS.fleetStoreCa) } : {}),
    // Fleets sharing one server keep apart: a key names its namespace and relay.
    keyPrefix: `mailfleet:${relay.metadata.namespace}/${relay.metadata.name}:`,
    timeoutMs: s.timeoutMs,
  };
}

export function renderRelayConfig(input: ConfigInput): RelayConfig {
  const { spec } = input.relay;
  const l = spec.listeners;
  const listeners: RelayConfig['listeners'] = {};
  const base = (listener: { port: number; proxyProtocol?: { trustedProxies: string[] } }) => ({
    address: '0.0.0.0',
    port: listener.port,
    ...(listener.proxyProtocol
      ? { proxyProtocol: { trustedProxies: [...listener.proxyProtocol.trustedProxies] } }
      : {}),
  });
  if (l.submission.enabled) listeners.submission = base(l.submission);
  if (l.smtps.enabled) listeners.smtps = base(l.smtps);
  if (l.relay.enabled) listeners.relay = { ...base(l.relay), allowedNetworks: [...l.relay.allowedNetworks] };
  const route = spec.delivery.route;
  return {
    hostname: spec.delivery.heloName ?? serviceHost(input.relay),
    listeners,
    ...(input.tls
      ? {
          tls: {
            certFile: file(RUNTIME_KEYS.tlsCert),
            keyFile: file(RUNTIME_KEYS.tlsKey),
            minVersion: spec.tls.minVersion,
          },
        }
      : {}),
    auth: {
      usersFile: file(RUNTIME_KEYS.users),
      throttle: {
        delayAfterFailures: 3,
        maxDelayMs: 8000,
        lockoutAfterFailures: 10,
        lockout: 300,
        window: 900,
      },
    },
    domains: [...input.domains]
      .sort((a, b) => a.domain.spec.domain.localeCompare(b.domain.spec.domain))
      .map(domainConfig),
    limits: { ...spec.limits, idleTimeout: 300 },
    dns: { servers: [], timeoutMs: 5000, tries: 2, cacheMaxEntries: 10000 },
    spool: {
      dir: PATHS.spoolDir,
      minFreeSpacePercent: spec.queue.minFreeSpacePercent,
      minFreeInodesPercent: spec.queue.minFreeInodesPercent,
    },
    delivery: {
      route: {
        mode: route.mode,
        ...(route.mode === 'smarthost' && route.smarthost
          ? {
              smarthost: smarthost(
                route.smarthost,
                {
                  username: RUNTIME_KEYS.smarthostUsername,
                  password: RUNTIME_KEYS.smarthostPassword,
                  ca: RUNTIME_KEYS.smarthostCa,
                },
                { credentials: input.smarthostCredentials, ca: input.smarthostCa },
              ),
            }
          : {}),
      },
      ...(spec.delivery.heloName ? { heloName: spec.delivery.heloName } : {}),
      concurrency: spec.delivery.concurrency,
      shaping: {
        ...spec.delivery.shaping,
        sites: spec.delivery.shaping.sites.map((s) => ({ ...s, match: [...s.match] })),
      },
      directPort: 25,
      connectTimeoutMs: 30000,
      commandTimeoutMs: 300000,
      retry: {
        firstRetry: spec.queue.retry.firstRetrySeconds,
        maxBackoff: spec.queue.retry.maxBackoffSeconds,
        maxLifetime: spec.queue.retry.maxLifetimeSeconds,
        delayWarningAfter: 0,
      },
    },
    handoff: {
      username: HANDOFF_USER,
      passwordFile: file(RUNTIME_KEYS.handoffPassword),
      ...(input.ca ? { caFile: file(RUNTIME_KEYS.ca) } : {}),
      // Peers named by pod IP (--drain-peer-address=ip) are verified against a name every pod's
      // certificate covers.
      serverName: serviceHost(input.relay),
    },
    ...(spec.fleetStore ? { fleetStore: fleetStore(input.relay, input.fleetStore) } : {}),
    suppression: {
      enabled: spec.suppression.enabled,
      codes: [...SuppressionCodes],
      ttl: spec.suppression.ttlSeconds,
      action: spec.suppression.action === 'Bounce' ? 'bounce' : 'refuse',
    },
    admin: {
      address: '0.0.0.0',
      port: spec.monitoring.metricsPort,
      tokenFile: file(RUNTIME_KEYS.adminToken),
    },
    log: { level: spec.logLevel },
  };
}
