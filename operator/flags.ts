/** Command-line flags of mailfleet-operator (controller-runtime's names where they exist). Pure: argv in, config out. */
import { parseArgs } from 'node:util';
import { parseNetworks } from '../relay/policy/network.js';
import type { LogLevel } from './runtime/logger.js';
import type { ManagerConfig } from './manager.js';

export const USAGE = `Usage: mailfleet-operator [flags]

  --kubeconfig PATH                  kubeconfig file (default: in-cluster config, else $KUBECONFIG or ~/.kube/config)
  --namespaces a,b                   namespaces to watch (default: all)
  --log-level LEVEL                  trace|debug|info|warn|error|fatal (default: info)
  --metrics-bind-address ADDR        /metrics address, "0" disables (default: :8080)
  --health-probe-bind-address ADDR   /healthz and /readyz address, "0" disables (default: :8081)
  --leader-elect[=true|false]        Lease leader election, for running several replicas (default: false)
  --leader-election-namespace NS     namespace of the Lease (default: the pod's namespace)
  --leader-election-id NAME          name of the Lease (default: mailfleet-operator)
  --relay-image IMAGE                relay image when an SmtpRelay sets none
  --dns-server a,b                   resolvers for MailDomain DNS checks, "ip" or "ip:port" (default: system)
  --dns-check-interval DURATION      how often MailDomain DNS records are looked up (default: 5m)
  --sync-period DURATION             how often every object is reconciled anyway (default: 10m)
  --drain-poll-interval DURATION     how often a drain in progress is polled (default: 5s)
  --drain-networks a,b               CIDRs of pod IPs the operator may connect to (drains, fleet store state; default: any)
  --drain-peer-address dns|ip        how a draining pod addresses its peers (default: dns, the headless Service name)
  --workers N                        concurrent reconciles per controller (default: 2; MailDomains get at
                                     least four per core: their first reconcile waits for key generation)
  --help
`;

export interface CliConfig extends ManagerConfig {
  logLevel: LogLevel;
}

export const DEFAULT_RELAY_IMAGE = 'ghcr.io/mailfleet/mailfleet:0.1.0';

/** "500ms", "10s", "5m", "1h" → milliseconds. */
export function parseDuration(s: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(s.trim());
  if (!m) throw new Error(`invalid duration "${s}" (use e.g. 500ms, 10s, 5m, 1h)`);
  const mult = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'];
  return Math.round(Number(m[1]) * mult);
}

const list = (s: string | undefined) =>
  s
    ?.split(',')
    .map((x) => x.trim())
    .filter(Boolean);

function bool(v: string | boolean | undefined, name: string): boolean {
  if (v === undefined || v === false) return false;
  if (v === true || v === 'true') return true;
  if (v === 'false') return false;
  throw new Error(`--${name} takes true or false, not "${v}"`);
}

function drainNetworks(v: string | undefined): string[] | undefined {
  const cidrs = list(v);
  if (!cidrs?.length) return undefined;
  const { errors } = parseNetworks(cidrs);
  if (errors.length) throw new Error(`--drain-networks${errors.join('; ')}`);
  return cidrs;
}

function peerMode(v: string): 'dns' | 'ip' {
  if (v !== 'dns' && v !== 'ip') throw new Error(`--drain-peer-address takes dns or ip, not "${v}"`);
  return v;
}

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];

/**
 * Parses argv. `podNamespace` is the in-cluster namespace (from the service account mount), used as the
 * Lease namespace when the flag is not given.
 */
export function parseFlags(argv: string[], podNamespace?: string): CliConfig | 'help' {
  // --leader-elect may stand alone (true) or carry =true/=false.
  const args = argv.map((a) => (a === '--leader-elect' ? '--leader-elect=true' : a));
  const { values } = parseArgs({
    args,
    strict: true,
    allowPositionals: false,
    options: {
      kubeconfig: { type: 'string' },
      namespaces: { type: 'string' },
      'log-level': { type: 'string', default: 'info' },
      'metrics-bind-address': { type: 'string', default: ':8080' },
      'health-probe-bind-address': { type: 'string', default: ':8081' },
      'leader-elect': { type: 'string', default: 'false' },
      'leader-election-namespace': { type: 'string' },
      'leader-election-id': { type: 'string', default: 'mailfleet-operator' },
      'relay-image': { type: 'string', default: DEFAULT_RELAY_IMAGE },
      'dns-server': { type: 'string' },
      'dns-check-interval': { type: 'string', default: '5m' },
      'sync-period': { type: 'string', default: '10m' },
      'drain-poll-interval': { type: 'string', default: '5s' },
      'drain-networks': { type: 'string' },
      'drain-peer-address': { type: 'string', default: 'dns' },
      workers: { type: 'string', default: '2' },
      help: { type: 'boolean' },
    },
  });
  if (values.help) return 'help';
  const logLevel = values['log-level'];
  if (!LEVELS.includes(logLevel)) throw new Error(`--log-level must be one of ${LEVELS.join(', ')}`);
  const leaderElect = bool(values['leader-elect'], 'leader-elect');
  const leaderElectionNamespace = values['leader-election-namespace'] ?? podNamespace;
  if (leaderElect && !leaderElectionNamespace) {
    throw new Error('--leader-election-namespace is required with --leader-elect outside a cluster');
  }
  const workers = Number(values.workers);
  if (!Number.isInteger(workers) || workers < 1 || workers > 64)
    throw new Error('--workers must be an integer 1..64');
  const namespaces = list(values.namespaces);
  return {
    kubeconfig: values.kubeconfig,
    namespaces: namespaces?.length ? namespaces : undefined,
    logLevel: logLevel as LogLevel,
    metricsBindAddress: values['metrics-bind-address'],
    healthProbeBindAddress: values['health-probe-bind-address'],
    leaderElect,
    leaderElectionNamespace,
    leaderElectionId: values['leader-election-id'],
    relayImage: values['relay-image'],
    dnsServers: list(values['dns-server']) ?? [],
    dnsCheckIntervalMs: parseDuration(values['dns-check-interval']),
    syncPeriodMs: parseDuration(values['sync-period']),
    drainPollMs: parseDuration(values['drain-poll-interval']),
    drainNetworks: drainNetworks(values['drain-networks']),
    drainPeerAddress: peerMode(values['drain-peer-address']),
    featureCheckIntervalMs: 60_000,
    workers,
  };
}
