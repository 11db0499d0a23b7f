/**
 * The relay's configuration file: its one source of truth.
 *
 * This schema validates the YAML file at start and on reload (errors name the field by its path), fills
 * defaults, and types the code (`RelayConfig`). The operator renders the same shape into a ConfigMap, so
 * it imports these types too: change the format here and both sides follow.
 *
 * Secrets never appear in the file itself: password hashes, TLS keys, DKIM keys and smarthost
 * credentials are referenced by path (Kubernetes mounts them as files). Relative paths are resolved
 * against the config file's directory by the loader.
 */
import Type from 'typebox';

/** A port to listen on; 0 picks a free port (tests), and the relay logs the port it bound. */
const ListenPort = Type.Integer({
  minimum: 0,
  maximum: 65535,
  description: 'TCP port to listen on; 0 picks a free port (the bound port is logged at start).',
});
const Address = Type.String({
  minLength: 1,
  description: 'IP address to bind, e.g. 127.0.0.1, 0.0.0.0 or ::.',
});
const Cidr = Type.String({
  minLength: 1,
  description: 'An IPv4 or IPv6 network in CIDR notation, e.g. 10.0.0.0/8 or ::1/128.',
});
const DomainName = Type.String({
  minLength: 1,
  maxLength: 253,
  pattern: '^(?=.{1,253}$)([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\\.)+[a-zA-Z]{2,63}$',
  description: 'A fully qualified DNS domain name, e.g. example.com.',
});
const Seconds = (description: string, dflt: number) =>
  Type.Integer({ minimum: 0, default: dflt, description: `${description} (seconds).` });

export const ListenerNames = ['submission', 'smtps', 'relay'] as const;
export type ListenerName = (typeof ListenerNames)[number];

export const ProxyProtocol = Type.Object(
  {
    trustedProxies: Type.Array(Cidr, {
      minItems: 1,
      description:
        'Addresses (CIDR) of the load balancers or proxies in front of this listener. A connection from them must start with a PROXY protocol v1 or v2 header within 5 s (else 421 4.7.0 and closed), and the client address it carries is the one allowedNetworks, the per-client limits, the AUTH throttle, logs and Received headers use. Anyone else is served as a direct client, and refused (554 5.7.1) if it sends a PROXY header. Must not cover clients that connect directly (peer relays handing over mail, in-cluster applications).',
    }),
  },
  {
    additionalProperties: false,
    description:
      'Accept the PROXY protocol (HAProxy, v1 and v2) on this listener from trusted proxies only. Absent: no proxy is trusted, and a PROXY header from anyone is refused.',
  },
);

const ListenerBase = {
  address: Type.String({ ...Address, default: '0.0.0.0' }),
  port: ListenPort,
  proxyProtocol: Type.Optional(ProxyProtocol),
};

export const SubmissionListener = Type.Object(
  { ...ListenerBase },
  {
    additionalProperties: false,
    description: 'Message submission (RFC 6409): STARTTLS offered, AUTH required and offered only after TLS.',
  },
);
export const SmtpsListener = Type.Object(
  { ...ListenerBase },
  { additionalProperties: false, description: 'Submission over implicit TLS (RFC 8314): AUTH required.' },
);
export const RelayListener = Type.Object(
  {
    ...ListenerBase,
    allowedNetworks: Type.Array(Cidr, {
      minItems: 1,
      description:
        'Client networks allowed to relay without AUTH (in-cluster applications). Connections from anywhere else get 554 at connect.',
    }),
  },
  {
    additionalProperties: false,
    description:
      'Plain SMTP without AUTH, accepted only from allowedNetworks. STARTTLS offered when TLS is configured.',
  },
);

export const Listeners = Type.Object(
  {
    submission: Type.Optional(SubmissionListener),
    smtps: Type.Optional(SmtpsListener),
    relay: Type.Optional(RelayListener),
  },
  { additionalProperties: false, description: 'Which SMTP listeners run; at least one must be set.' },
);

export const Tls = Type.Object(
  {
    certFile: Type.String({
      minLength: 1,
      description: 'PEM certificate chain file; re-read when it changes.',
    }),
    keyFile: Type.String({ minLength: 1, description: 'PEM private key file; re-read when it changes.' }),
    minVersion: Type.Enum(['TLSv1.2', 'TLSv1.3'], {
      default: 'TLSv1.2',
      description: 'Lowest TLS version accepted.',
    }),
  },
  { additionalProperties: false, description: 'Server TLS for STARTTLS and implicit TLS.' },
);

export const AuthThrottle = Type.Object(
  {
    delayAfterFailures: Type.Integer({
      minimum: 0,
      default: 3,
      description: 'Failed AUTH attempts from one client address before replies are delayed.',
    }),
    maxDelayMs: Type.Integer({
      minimum: 0,
      default: 8000,
      description: 'Longest delay before answering a failed AUTH (the delay doubles per failure).',
    }),
    lockoutAfterFailures: Type.Integer({
      minimum: 1,
      default: 10,
      description:
        'Failed attempts after which the client address is refused AUTH temporarily (454 4.7.0). Checks in flight count toward it: at most this many passwords are checked before the lockout, however many connections try at once.',
    }),
    lockout: Seconds('How long a locked-out client address stays refused', 300),
    window: Seconds('Failures older than this are forgotten', 900),
  },
  {
    additionalProperties: false,
    default: {},
    description: 'Throttling of failed AUTH attempts per client address.',
  },
);

export const Auth = Type.Object(
  {
    usersFile: Type.String({
      minLength: 1,
      description:
        'Credentials file: one "username:hash" per line, hash in PHC form ($scrypt$ln=..,r=..,p=..$salt$hash). Re-read when it changes.',
    }),
    throttle: AuthThrottle,
  },
  { additionalProperties: false, description: 'SMTP AUTH (PLAIN and LOGIN) for submission and smtps.' },
);

export const SmarthostTlsModes = ['implicit', 'starttls', 'opportunistic', 'none'] as const;
export const Smarthost = Type.Object(
  {
    host: Type.String({ minLength: 1, description: 'Smarthost name or IP address.' }),
    port: Type.Integer({ minimum: 1, maximum: 65535, default: 587, description: 'Smarthost port.' }),
    tls: Type.Enum([...SmarthostTlsModes], {
      default: 'starttls',
      description:
        'implicit: TLS from connect (port 465); starttls: STARTTLS required; opportunistic: STARTTLS if offered; none: never.',
    }),
    caFile: Type.Optional(
      Type.String({
        minLength: 1,
        description: 'PEM CA bundle to verify the smarthost (default: system CAs).',
      }),
    ),
    auth: Type.Optional(
      Type.Object(
        {
          usernameFile: Type.String({ minLength: 1, description: 'File holding the AUTH username.' }),
          passwordFile: Type.String({ minLength: 1, description: 'File holding the AUTH password.' }),
        },
        { additionalProperties: false, description: 'Credentials for AUTH at the smarthost.' },
      ),
    ),
  },
  { additionalProperties: false, description: 'An upstream relay all mail of this route is handed to.' },
);

export const Route = Type.Object(
  {
    mode: Type.Enum(['smarthost', 'direct'], {
      description:
        'smarthost: hand mail to one upstream relay; direct: deliver to the recipient domain MX hosts.',
    }),
    smarthost: Type.Optional(Smarthost),
  },
  {
    additionalProperties: false,
    description: 'How mail leaves the relay. mode smarthost requires smarthost.',
  },
);

export const DkimFailureActions = ['defer', 'send-unsigned'] as const;
export type DkimFailureAction = (typeof DkimFailureActions)[number];

export const Dkim = Type.Object(
  {
    selector: Type.String({
      minLength: 1,
      pattern: '^[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?$',
      description: 'DKIM selector; the public key is published at <selector>._domainkey.<domain>.',
    }),
    algorithm: Type.Enum(['rsa-sha256', 'ed25519-sha256'], {
      default: 'rsa-sha256',
      description: 'Signing algorithm.',
    }),
    keyFile: Type.String({ minLength: 1, description: 'PEM private key file.' }),
    onFailure: Type.Enum([...DkimFailureActions], {
      default: 'defer',
      description:
        'When the message cannot be signed (key unreadable or invalid, signer error): defer keeps it queued and retries on the schedule, signing again at each attempt (receivers enforcing DMARC would reject or junk it unsigned); send-unsigned delivers it without a signature. Either way the failure is logged and counted (dkim_signing_failures_total).',
    }),
  },
  { additionalProperties: false, description: 'DKIM signing for mail sent as this domain.' },
);

export const MailDomain = Type.Object(
  {
    name: DomainName,
    allowedUsers: Type.Array(Type.String({ minLength: 1 }), {
      default: [],
      description:
        'SMTP users (AUTH names) who may send as this domain; "*" allows every authenticated user. Unauthenticated clients of the relay listener need no user.',
    }),
    allowedSenders: Type.Array(Type.String({ minLength: 1 }), {
      default: [],
      description:
        'Sender address patterns allowed for this domain ("*" matches any run of characters, e.g. "noreply@example.com", "*-alerts@example.com"). Empty: any address at the domain.',
    }),
    dkim: Type.Optional(Dkim),
    route: Type.Optional(Route),
  },
  {
    additionalProperties: false,
    description: 'A sending domain: who may use it, how it is signed and routed.',
  },
);

export const Limits = Type.Object(
  {
    maxMessageBytes: Type.Integer({
      minimum: 1024,
      default: 26214400,
      description: 'Largest message accepted, advertised as SIZE and enforced while streaming (552 5.3.4).',
    }),
    maxRecipients: Type.Integer({
      minimum: 1,
      default: 100,
      description: 'Recipients per message; more get 452 4.5.3.',
    }),
    messagesPerMinutePerUser: Type.Integer({
      minimum: 0,
      default: 600,
      description: 'Messages per minute one authenticated user may submit (0: unlimited); past it 450 4.7.1.',
    }),
    messagesPerMinutePerClient: Type.Integer({
      minimum: 0,
      default: 1200,
      description:
        'Messages per minute one client address (IPv6: one /64) may submit (0: unlimited); past it 450 4.7.1.',
    }),
    messagesPerMinutePerSenderDomain: Type.Integer({
      minimum: 0,
      default: 0,
      description:
        'Messages per minute all senders of one sending domain may submit together (0: unlimited); past it 450 4.7.1.',
    }),
    maxConnections: Type.Integer({
      minimum: 1,
      default: 2000,
      description: 'Concurrent SMTP connections across all listeners; more get 421 4.3.2.',
    }),
    maxConnectionsPerClient: Type.Integer({
      minimum: 0,
      default: 100,
      description:
        'Concurrent SMTP connections from one client address (IPv6: one /64), across all listeners (0: unlimited); more get 421 4.7.0 at connect. Keep it well below maxConnections, so one address cannot take every slot.',
    }),
    connectionsPerMinutePerClient: Type.Integer({
      minimum: 0,
      default: 1200,
      description:
        'New SMTP connections per minute from one client address (IPv6: one /64), a burst of that many allowed (0: unlimited); past it 421 4.7.0 at connect.',
    }),
    exemptNetworks: Type.Array(Cidr, {
      default: ['127.0.0.0/8', '::1/128'],
      description:
        'Client networks exempt from the per-client limits (maxConnectionsPerClient, connectionsPerMinutePerClient, messagesPerMinutePerClient), like Postfix smtpd_client_event_limit_exceptions. Default: loopback (the pod itself).',
    }),
    idleTimeout: Seconds('A session idle this long is closed (RFC 5321 suggests 300)', 300),
  },
  {
    additionalProperties: false,
    default: {},
    description:
      'Per-message, per-user, per-client and per-sender-domain limits. With fleetStore the three messagesPerMinute… rates are counted fleet-wide; without it, or while it is unreachable, each pod counts alone. Connection limits are always per pod.',
  },
);

export const Dns = Type.Object(
  {
    servers: Type.Array(Type.String({ minLength: 1 }), {
      default: [],
      description:
        'DNS resolvers as "ip" or "ip:port" (IPv6 as "[ip]:port"). Empty: the system resolvers from /etc/resolv.conf.',
    }),
    timeoutMs: Type.Integer({ minimum: 100, default: 5000, description: 'Per-query timeout.' }),
    tries: Type.Integer({
      minimum: 1,
      default: 2,
      description: 'Attempts per query before it counts as failed.',
    }),
    cacheMaxEntries: Type.Integer({
      minimum: 0,
      default: 10000,
      description: 'Answers kept (each within its TTL); 0 disables the cache.',
    }),
  },
  {
    additionalProperties: false,
    default: {},
    description: 'The resolver used for recipient checks and MX delivery.',
  },
);

export const Spool = Type.Object(
  {
    dir: Type.String({ minLength: 1, description: 'Directory of the durable queue (a PVC on Kubernetes).' }),
    minFreeSpacePercent: Type.Integer({
      minimum: 0,
      maximum: 90,
      default: 10,
      description:
        "Free space on the spool's file system (share of its size available to the relay) below which new mail is refused with 452 4.3.1 and /readyz fails; delivery and bounces go on, so space comes back. 0 disables the floor (a full disk still never gets a 250).",
    }),
    minFreeInodesPercent: Type.Integer({
      minimum: 0,
      maximum: 90,
      default: 10,
      description:
        'The same floor for free inodes (a file per queued message once deferred or when over 64 KiB, plus its delivery state). Ignored on file systems that report no inode count.',
    }),
  },
  { additionalProperties: false, description: 'Where accepted mail is kept until delivered.' },
);

export const Retry = Type.Object(
  {
    firstRetry: Seconds(
      'Delay before the first retry of a deferred message (Postfix: minimal_backoff_time)',
      300,
    ),
    maxBackoff: Seconds(
      'Longest delay between retries; delays double up to it (Postfix: maximal_backoff_time)',
      4000,
    ),
    maxLifetime: Seconds(
      'A message still undelivered after this long is bounced (Postfix: maximal_queue_lifetime)',
      432000,
    ),
    delayWarningAfter: Seconds('Send a delay notice to the sender after this long; 0 disables', 0),
  },
  { additionalProperties: false, default: {}, description: 'Retry schedule for deferred mail.' },
);

/** Per-site limits. A `sites` override states only what it changes, so its fields carry no default. */
const siteLimits = (defaults: boolean) => ({
  maxConnections: Type.Integer({
    minimum: 1,
    ...(defaults ? { default: 20 } : {}),
    description:
      'Deliveries in flight to one site at once (each holds one SMTP connection): fleet-wide with fleetStore, else per pod.',
  }),
  deliveriesPerConnection: Type.Integer({
    minimum: 1,
    ...(defaults ? { default: 100 } : {}),
    description: 'Messages sent over one SMTP connection to a site before it is closed and a new one opened.',
  }),
  messagesPerMinute: Type.Integer({
    minimum: 0,
    ...(defaults ? { default: 0 } : {}),
    description:
      'Messages per minute to one site (0: unlimited), a burst of that many allowed: fleet-wide with fleetStore, else per pod.',
  }),
});
const overrides = siteLimits(false);

export const SiteShaping = Type.Object(
  {
    match: Type.Array(Type.String({ minLength: 1, pattern: '^(\\*\\.)?[a-zA-Z0-9.-]+$' }), {
      minItems: 1,
      description:
        'Sites this override applies to: a name ("gmail.com", "smtp.example.net") or a suffix ("*.google.com"), matched against the recipient domain, the MX host names and the smarthost host. The first matching override wins.',
    }),
    maxConnections: Type.Optional(overrides.maxConnections),
    deliveriesPerConnection: Type.Optional(overrides.deliveriesPerConnection),
    messagesPerMinute: Type.Optional(overrides.messagesPerMinute),
  },
  { additionalProperties: false, description: 'Limits for the sites matching one pattern list.' },
);

export const Shaping = Type.Object(
  {
    ...siteLimits(true),
    sites: Type.Array(SiteShaping, {
      default: [],
      description: 'Overrides of the limits above for some sites.',
    }),
  },
  {
    additionalProperties: false,
    default: {},
    description:
      'Traffic shaping per destination site. A site is the smarthost, or in direct delivery the set of MX hosts a recipient domain uses (domains hosted by one provider share its MX hosts: one site, "MX rollup"). Over a limit a message waits in the queue: no bounce, no attempt counted.',
  },
);

export const Delivery = Type.Object(
  {
    route: Route,
    heloName: Type.Optional(
      Type.String({
        minLength: 1,
        description: 'Name sent in EHLO to downstream servers (default: hostname).',
      }),
    ),
    concurrency: Type.Integer({
      minimum: 1,
      default: 100,
      description: 'Deliveries in flight across all destinations.',
    }),
    shaping: Shaping,
    directPort: Type.Integer({
      minimum: 1,
      maximum: 65535,
      default: 25,
      description: 'Port used to reach MX hosts in direct mode (25 on the Internet; tests use another).',
    }),
    connectTimeoutMs: Type.Integer({ minimum: 100, default: 30000, description: 'TCP connect timeout.' }),
    commandTimeoutMs: Type.Integer({
      minimum: 100,
      default: 300000,
      description: 'Timeout for each SMTP command reply downstream (RFC 5321 §4.5.3.2 minimums are minutes).',
    }),
    retry: Retry,
  },
  { additionalProperties: false, description: 'How the relay forwards queued mail.' },
);

export const Admin = Type.Object(
  {
    address: Type.String({ ...Address, default: '127.0.0.1' }),
    port: Type.Integer({ ...ListenPort, default: 9091 }),
    tokenFile: Type.Optional(
      Type.String({
        minLength: 1,
        description:
          'When set, state-changing endpoints (drain, queue actions) require "Authorization: Bearer <token>".',
      }),
    ),
  },
  {
    additionalProperties: false,
    default: {},
    description: 'HTTP port for /metrics, /healthz, /readyz, drain and queue tools.',
  },
);

export const Handoff = Type.Object(
  {
    username: Type.String({
      minLength: 1,
      default: 'mailfleet-handoff',
      description:
        'AUTH name of the fleet-internal peer identity. A session authenticated as this user is a peer relay handing over queued mail: the envelope is kept as is (null sender allowed) and sender, recipient-domain and rate checks are skipped. Its hash must be in auth.usersFile.',
    }),
    passwordFile: Type.String({
      minLength: 1,
      description: 'File holding the password this relay uses to authenticate to peers while draining.',
    }),
    caFile: Type.Optional(
      Type.String({ minLength: 1, description: 'PEM CA bundle to verify peer relays (the fleet CA).' }),
    ),
    serverName: Type.Optional(
      Type.String({
        minLength: 1,
        description:
          "Name a peer's certificate is verified against when the drain request names that peer by IP address (certificates rarely cover pod IPs). The operator sets the relay's client Service name, which every pod's certificate covers. A peer named by DNS name is verified against that name.",
      }),
    ),
  },
  {
    additionalProperties: false,
    description:
      'Handing queued mail to a peer relay while draining (scale-down); peers are named in the drain request.',
  },
);

export const SuppressionCodes = ['5.1.1', '5.1.6', '5.1.10', '5.2.1'] as const;

export const Suppression = Type.Object(
  {
    enabled: Type.Boolean({
      default: true,
      description:
        'Put a recipient on the suppression list when a downstream server rejects it permanently with one of `codes`.',
    }),
    codes: Type.Array(Type.String({ pattern: '^5\\.[0-9]{1,3}\\.[0-9]{1,3}$' }), {
      default: [...SuppressionCodes],
      description:
        'Enhanced status codes (RFC 3463) that say the mailbox itself does not exist or takes no mail: 5.1.1 bad mailbox, 5.1.6 mailbox moved, 5.1.10 null MX, 5.2.1 mailbox disabled. Other 5xx replies (policy, content, bare 550) bounce the message but suppress nothing.',
    }),
    ttl: Seconds('How long a recipient stays suppressed (Postal keeps entries 30 days)', 2592000),
    action: Type.Enum(['refuse', 'bounce'], {
      default: 'refuse',
      description:
        'refuse: RCPT TO a suppressed recipient gets 550 5.1.1 saying it is suppressed; bounce: the message is accepted and the suppressed recipient bounced at once with a DSN, without contacting the downstream.',
    }),
  },
  {
    additionalProperties: false,
    default: {},
    description:
      'The suppression list: recipients that bounced permanently are not tried again. Shared by the fleet with fleetStore, per pod without it.',
  },
);

export const FleetStore = Type.Object(
  {
    url: Type.String({
      minLength: 1,
      pattern: '^rediss?://[^@/]+(/[0-9]+)?$',
      description:
        'Valkey or Redis (7 or newer) server shared by the fleet: redis://host:port[/db], or rediss:// for TLS. Credentials go in usernameFile/passwordFile, never in the URL.',
    }),
    usernameFile: Type.Optional(
      Type.String({ minLength: 1, description: 'File holding the ACL username (default: "default").' }),
    ),
    passwordFile: Type.Optional(Type.String({ minLength: 1, description: 'File holding the password.' })),
    caFile: Type.Optional(
      Type.String({
        minLength: 1,
        description: 'PEM CA bundle to verify a rediss:// server (default: system CAs).',
      }),
    ),
    serverName: Type.Optional(
      Type.String({
        minLength: 1,
        description: "Name the server's certificate is verified against (default: the URL host).",
      }),
    ),
    keyPrefix: Type.String({
      minLength: 1,
      default: 'mailfleet:',
      description:
        'Prefix of every key the relay writes, so several fleets can share one server. The operator sets mailfleet:NAMESPACE/NAME:.',
    }),
    timeoutMs: Type.Integer({
      minimum: 10,
      default: 250,
      description:
        'Longest wait for one answer. A slower or unreachable store makes that decision per pod (the fleet counts as degraded until the store answers again); mail is never refused or held for it.',
    }),
  },
  {
    additionalProperties: false,
    description:
      'The store the relay pods of one fleet share rate limits, shaping leases and the suppression list through. Without it each pod decides alone.',
  },
);

export const RelayConfig = Type.Object(
  {
    hostname: Type.String({
      minLength: 1,
      description: 'Name this relay uses in its greeting, Received headers, Message-IDs and bounces.',
    }),
    listeners: Listeners,
    tls: Type.Optional(Tls),
    auth: Type.Optional(Auth),
    domains: Type.Array(MailDomain, {
      default: [],
      description: 'Sending domains. Mail from any other domain is refused (550 5.7.1).',
    }),
    limits: Limits,
    dns: Dns,
    spool: Spool,
    delivery: Delivery,
    handoff: Type.Optional(Handoff),
    fleetStore: Type.Optional(FleetStore),
    suppression: Suppression,
    admin: Admin,
    log: Type.Object(
      { level: Type.Enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal'], { default: 'info' }) },
      { additionalProperties: false, default: {} },
    ),
  },
  { additionalProperties: false, description: 'mailfleet relay configuration.' },
);

/** The configuration after defaults are filled: every section with a default is present. */
export type RelayConfig = Type.Static<typeof RelayConfig>;
export type MailDomainConfig = Type.Static<typeof MailDomain>;
export type RouteConfig = Type.Static<typeof Route>;
export type SmarthostConfig = Type.Static<typeof Smarthost>;
export type TlsConfig = Type.Static<typeof Tls>;
export type DkimConfig = Type.Static<typeof Dkim>;
export type LimitsConfig = Type.Static<typeof Limits>;
export type DnsConfig = Type.Static<typeof Dns>;
export type RetryConfig = Type.Static<typeof Retry>;
export type DeliveryConfig = Type.Static<typeof Delivery>;
export type ShapingConfig = Type.Static<typeof Shaping>;
export type SiteShapingConfig = Type.Static<typeof SiteShaping>;
export type SuppressionConfig = Type.Static<typeof Suppression>;
export type FleetStoreConfig = Type.Static<typeof FleetStore>;
export type AdminConfig = Type.Static<typeof Admin>;
export type AuthConfig = Type.Static<typeof Auth>;
export type HandoffConfig = Type.Static<typeof Handoff>;
export type SpoolConfig = Type.Static<typeof Spool>;
export type ProxyProtocolConfig = Type.Static<typeof ProxyProtocol>;
