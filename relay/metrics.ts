/**
 * Every metric the relay exports, in one place. Dashboards and alert rules in the Helm chart are checked
 * against what a running relay serves on /metrics, and this module is the only place names are spelled.
 *
 * Invariant: label values are bounded sets (listener names, reasons, results, states). Never put an
 * address, user name, domain or message ID in a label.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export const RELAY_METRIC_PREFIX = 'mailfleet_relay_';

/** Why a message was refused at MAIL FROM or DATA. */
export const MessageRejectReasons = [
  'sender_syntax',
  'sender_domain',
  'sender_not_allowed',
  'not_authenticated',
  'rate_limited',
  'size',
  'no_recipients',
  'spool_error',
  'draining',
  'bad_protocol',
  'spool_full',
  'bad_content',
] as const;
/** Why a recipient was refused at RCPT TO. */
export const RecipientRejectReasons = [
  'syntax',
  'too_many',
  'nxdomain',
  'null_mx',
  'no_mail_host',
  'dns_tempfail',
  'spool_full',
  'bad_protocol',
  'suppressed',
] as const;
/** Why a connection was refused before (or instead of) its SMTP session. */
export const ConnectionRefusedReasons = [
  'shutting_down',
  'max_connections',
  'client_not_allowed',
  'client_connections',
  'client_connection_rate',
  'proxy_header_invalid',
  'proxy_header_untrusted',
] as const;
export const AuthResults = ['success', 'failure', 'throttled', 'locked_out', 'not_allowed'] as const;
export const DeliveryResults = ['delivered', 'deferred', 'bounced'] as const;
export const SpoolStates = ['ready', 'deferred', 'active', 'corrupt'] as const;
/** Result of a DNS lookup; 'cached' means it was answered from the relay's cache without a query. */
export const DnsQueryResults = ['answer', 'nodata', 'nxdomain', 'tempfail', 'cached'] as const;
export const ConfigReloadResults = ['success', 'failure'] as const;
export const DkimFailureOutcomes = ['deferred', 'sent_unsigned'] as const;
/**
 * Where the fleet's shared limits are decided: shared (the store answers), degraded (a store is
 * configured but does not answer in time: this pod decides alone until it does), per_pod (no store).
 */
export const FleetStates = ['shared', 'degraded', 'per_pod'] as const;
/** What a pod decided alone when the fleet store did not answer. */
export const FleetFallbackOperations = ['rate', 'lease', 'suppression'] as const;
/** How a recipient came onto the suppression list. */
export const SuppressionSources = ['bounce', 'admin'] as const;
/** What a suppressed recipient got: refused at RCPT, or bounced without an attempt. */
export const SuppressionActions = ['refused', 'bounced'] as const;
/** What runs short on the spool's file system. */
export const SpoolFsResources = ['space', 'inodes'] as const;
/** Which shaping limit held a delivery back. */
export const ShapingLimits = ['connections', 'rate'] as const;

export type MessageRejectReason = (typeof MessageRejectReasons)[number];
export type RecipientRejectReason = (typeof RecipientRejectReasons)[number];
export type ConnectionRefusedReason = (typeof ConnectionRefusedReasons)[number];
export type AuthResult = (typeof AuthResults)[number];
export type DeliveryResult = (typeof DeliveryResults)[number];
export type SpoolState = (typeof SpoolStates)[number];
export type FleetState = (typeof FleetStates)[number];
export type FleetFallbackOperation = (typeof FleetFallbackOperations)[number];

const SECONDS_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const QUEUE_TIME_BUCKETS = [0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600, 5 * 24 * 3600];

/** The relay's metrics, registered on their own registry (one per relay instance, so tests can run several). */
export class RelayMetrics {
  readonly registry = new Registry();

  // Intake
  readonly connections = new Counter({
    name: 'mailfleet_relay_connections_total',
    help: 'SMTP connections, by listener and whether they were accepted or refused at connect.',
    labelNames: ['listener', 'result'] as const,
    registers: [this.registry],
  });
  readonly connectionsRefused = new Counter({
    name: 'mailfleet_relay_connections_refused_total',
    help: 'SMTP connections refused, by listener and reason (each refusal once; connections_total counts it as refused too).',
    labelNames: ['listener', 'reason'] as const,
    registers: [this.registry],
  });
  readonly proxyHeaders = new Counter({
    name: 'mailfleet_relay_proxy_headers_total',
    help: 'PROXY protocol headers accepted from trusted proxies, by listener and protocol version (1, 2).',
    labelNames: ['listener', 'version'] as const,
    registers: [this.registry],
  });
  readonly sessionsInFlight = new Gauge({
    name: 'mailfleet_relay_sessions_in_flight',
    help: 'SMTP sessions currently open, by listener.',
    labelNames: ['listener'] as const,
    registers: [this.registry],
  });
  readonly messagesReceived = new Counter({
    name: 'mailfleet_relay_messages_received_total',
    help: 'Messages accepted and queued (answered 250), by listener.',
    labelNames: ['listener'] as const,
    registers: [this.registry],
  });
  readonly receivedBytes = new Counter({
    name: 'mailfleet_relay_received_bytes_total',
    help: 'Bytes of accepted messages, by listener.',
    labelNames: ['listener'] as const,
    registers: [this.registry],
  });
  readonly messagesRejected = new Counter({
    name: 'mailfleet_relay_messages_rejected_total',
    help: 'Messages refused at MAIL FROM or DATA, by listener and reason.',
    labelNames: ['listener', 'reason'] as const,
    registers: [this.registry],
  });
  readonly recipientsRejected = new Counter({
    name: 'mailfleet_relay_recipients_rejected_total',
    help: 'Recipients refused at RCPT TO, by listener and reason.',
    labelNames: ['listener', 'reason'] as const,
    registers: [this.registry],
  });
  readonly authAttempts = new Counter({
    name: 'mailfleet_relay_auth_attempts_total',
    help: 'SMTP AUTH attempts, by listener, mechanism and result.',
    labelNames: ['listener', 'mechanism', 'result'] as const,
    registers: [this.registry],
  });
  readonly tlsSessions = new Counter({
    name: 'mailfleet_relay_tls_sessions_total',
    help: 'TLS handshakes completed (STARTTLS or implicit), by listener and protocol version.',
    labelNames: ['listener', 'version'] as const,
    registers: [this.registry],
  });
  readonly tlsCertificateExpiry = new Gauge({
    name: 'mailfleet_relay_tls_certificate_expiry_timestamp_seconds',
    help: 'Expiry (notAfter, Unix seconds) of the server certificate in use.',
    registers: [this.registry],
  });
  readonly configReloads = new Counter({
    name: 'mailfleet_relay_config_reloads_total',
    help: 'Configuration (and credential/certificate file) reloads, by result (success, failure).',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly configLastReloadSuccessful = new Gauge({
    name: 'mailfleet_relay_config_last_reload_successful',
    help: '1 when the newest configuration is in force, 0 when the last reload was rejected and an older one stays in force.',
    registers: [this.registry],
  });
  readonly dnsQueries = new Counter({
    name: 'mailfleet_relay_dns_queries_total',
    help: 'DNS lookups, by record type (MX, A, AAAA) and result (answer, nodata, nxdomain, tempfail, cached).',
    labelNames: ['type', 'result'] as const,
    registers: [this.registry],
  });

  // Spool
  /** Set by the spool: refreshes the spool gauges just before each scrape. */
  private spoolCollector: (() => void) | undefined;
  setSpoolCollector(fn: () => void): void {
    this.spoolCollector = fn;
  }
  // Registered before spool_bytes and oldest_message_age, so its collect() refreshes all three.
  readonly spoolMessages = new Gauge({
    name: 'mailfleet_relay_spool_messages',
    help: 'Messages in the spool, by state.',
    labelNames: ['state'] as const,
    registers: [this.registry],
    collect: () => this.spoolCollector?.(),
  });
  readonly spoolBytes = new Gauge({
    name: 'mailfleet_relay_spool_bytes',
    help: 'Bytes of messages in the spool, by state.',
    labelNames: ['state'] as const,
    registers: [this.registry],
  });
  readonly oldestMessageAge = new Gauge({
    name: 'mailfleet_relay_oldest_message_age_seconds',
    help: 'Age of the oldest message in the spool (0 when empty).',
    registers: [this.registry],
  });
  readonly spoolSwept = new Counter({
    name: 'mailfleet_relay_spool_swept_total',
    help: 'Spool entries set aside at start or on read: half_written (never acknowledged, removed) or corrupt (kept in corrupt/).',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  readonly spoolCommitDuration = new Histogram({
    name: 'mailfleet_relay_spool_commit_duration_seconds',
    help: 'Time from end of DATA to the message being durable on disk.',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [this.registry],
  });

  readonly spoolFsFreeBytes = new Gauge({
    name: 'mailfleet_relay_spool_filesystem_free_bytes',
    help: "Bytes the relay may still write on the spool's file system (statfs f_bavail).",
    registers: [this.registry],
  });
  readonly spoolFsSizeBytes = new Gauge({
    name: 'mailfleet_relay_spool_filesystem_size_bytes',
    help: "Size of the spool's file system.",
    registers: [this.registry],
  });
  readonly spoolFsFreeRatio = new Gauge({
    name: 'mailfleet_relay_spool_filesystem_free_ratio',
    help: "Share of the spool's file system still free, by resource (space, inodes).",
    labelNames: ['resource'] as const,
    registers: [this.registry],
  });
  readonly spoolSpaceLow = new Gauge({
    name: 'mailfleet_relay_spool_space_low',
    help: '1 while the spool file system is below its free-space floor (spool.minFreeSpacePercent, minFreeInodesPercent): new mail is refused with 452 4.3.1 and the relay reports not ready.',
    registers: [this.registry],
  });

  // Delivery
  readonly deliveryAttempts = new Counter({
    name: 'mailfleet_relay_delivery_attempts_total',
    help: 'Delivery attempts per recipient, by result (delivered, deferred, bounced).',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly deliveryDuration = new Histogram({
    name: 'mailfleet_relay_delivery_duration_seconds',
    help: 'Duration of one delivery attempt (connect to final reply), by result.',
    labelNames: ['result'] as const,
    buckets: SECONDS_BUCKETS,
    registers: [this.registry],
  });
  readonly timeInQueue = new Histogram({
    name: 'mailfleet_relay_time_in_queue_seconds',
    help: 'Time from acceptance to final outcome (delivered or bounced), per message.',
    labelNames: ['result'] as const,
    buckets: QUEUE_TIME_BUCKETS,
    registers: [this.registry],
  });
  readonly bounces = new Counter({
    name: 'mailfleet_relay_bounces_total',
    help: 'Delivery status notifications sent to senders, by kind (failed, expired, delay).',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  readonly bouncesDropped = new Counter({
    name: 'mailfleet_relay_bounces_dropped_total',
    help: 'Recipients of null-sender mail (bounces) that failed and were dropped: a bounce is never bounced.',
    registers: [this.registry],
  });
  readonly dkimSigningFailures = new Counter({
    name: 'mailfleet_relay_dkim_signing_failures_total',
    help: 'Delivery attempts of mail from a DKIM-signing domain that could not be signed, by what the domain chose (domains[].dkim.onFailure): deferred (kept queued) or sent_unsigned.',
    labelNames: ['action'] as const,
    registers: [this.registry],
  });

  // Shaping per destination site. `site` is the delivery.shaping.sites override's first pattern, or
  // "default": bounded by the configuration, never a domain.
  /** Set by the queue manager: refreshes the site gauges just before each scrape. */
  private siteCollector: (() => void) | undefined;
  setSiteCollector(fn: () => void): void {
    this.siteCollector = fn;
  }
  readonly siteQueued = new Gauge({
    name: 'mailfleet_relay_site_queued',
    help: "Deliveries (one message, one destination group) waiting for their destination site: behind its limits or for a free delivery slot, by site (a shaping override's first pattern, or default).",
    labelNames: ['site'] as const,
    registers: [this.registry],
    collect: () => this.siteCollector?.(),
  });
  readonly siteInFlight = new Gauge({
    name: 'mailfleet_relay_site_in_flight',
    help: 'Deliveries in flight to destination sites, each on its own SMTP connection, by site.',
    labelNames: ['site'] as const,
    registers: [this.registry],
    collect: () => this.siteCollector?.(),
  });
  readonly siteShapingDeferrals = new Counter({
    name: 'mailfleet_relay_site_shaping_deferrals_total',
    help: "Deliveries held back by a site's shaping (they wait in the queue; no attempt is counted), by site and limit (connections, rate); each delivery at most once per limit.",
    labelNames: ['site', 'limit'] as const,
    registers: [this.registry],
  });

  readonly handoffs = new Counter({
    name: 'mailfleet_relay_handoffs_total',
    help: 'Messages handed to a peer relay while draining, by result (ok, failed).',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly drainFailures = new Counter({
    name: 'mailfleet_relay_drain_failures_total',
    help: 'Drain loops that stopped on an error (GET /drain then reports state "failed" with the cause).',
    registers: [this.registry],
  });
  readonly draining = new Gauge({
    name: 'mailfleet_relay_draining',
    help: '1 while the relay is draining (not accepting mail), else 0.',
    registers: [this.registry],
  });
  // Fleet
  readonly fleetState = new Gauge({
    name: 'mailfleet_relay_fleet_state',
    help: 'Where rate limits, shaping and the suppression list are decided: 1 for the current state (shared: the fleet store; degraded: a store is configured but unreachable or slow, this pod decides alone; per_pod: no store configured).',
    labelNames: ['state'] as const,
    registers: [this.registry],
  });
  readonly fleetStoreFallbacks = new Counter({
    name: 'mailfleet_relay_fleet_store_fallbacks_total',
    help: 'Decisions this pod made alone because the fleet store did not answer within fleetStore.timeoutMs, by operation (rate, lease, suppression).',
    labelNames: ['operation'] as const,
    registers: [this.registry],
  });
  readonly suppressionsAdded = new Counter({
    name: 'mailfleet_relay_suppressions_added_total',
    help: 'Recipients put on the suppression list, by source (bounce: a permanent failure with one of suppression.codes; admin: the suppression tool).',
    labelNames: ['source'] as const,
    registers: [this.registry],
  });
  readonly suppressedRecipients = new Counter({
    name: 'mailfleet_relay_suppressed_recipients_total',
    help: 'Recipients found on the suppression list, by action (refused at RCPT, or bounced at once without an attempt).',
    labelNames: ['action'] as const,
    registers: [this.registry],
  });
  readonly ready = new Gauge({
    name: 'mailfleet_relay_ready',
    help: '1 when the relay is ready to accept mail (config loaded, spool writable and above its free-space floor, not draining).',
    registers: [this.registry],
  });

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry });
  }
}
