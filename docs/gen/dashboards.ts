/**
 * The Grafana dashboards of the chart (charts/mailfleet/dashboards/*.json), built from a few panel
 * helpers so every panel has the same datasource, legend and layout rules. `npm run generate` writes the
 * JSON; a unit test fails when a file is stale, and another checks every metric in every query against
 * what the relay and the operator export.
 *
 * Variables: $datasource (any Prometheus), then $namespace → $relay (the scrape job: the relay's
 * headless Service) → $pod for the relays; $namespace → $job → $pod for the operator (the job that
 * exports leader_election_master_status for the mailfleet-operator Lease).
 */

type Target = { expr: string; legend: string };
type Panel = Record<string, unknown>;

const DS = { type: 'prometheus', uid: '${datasource}' };

const WIDTH = 24;

/** Lays panels out left to right, `perRow` per row, starting at y. Returns the next free y. */
function layout(panels: Panel[], y: number, perRow: number, height: number): number {
  const w = WIDTH / perRow;
  panels.forEach((p, i) => {
    p.gridPos = { x: (i % perRow) * w, y: y + Math.floor(i / perRow) * height, w, h: height };
  });
  return y + Math.ceil(panels.length / perRow) * height;
}

function targets(ts: Target[]) {
  return ts.map((t, i) => ({
    datasource: DS,
    expr: t.expr,
    legendFormat: t.legend,
    range: true,
    refId: String.fromCharCode(65 + i),
  }));
}

function timeseries(title: string, description: string, unit: string, ts: Target[], stack = false): Panel {
  return {
    type: 'timeseries',
    title,
    description,
    datasource: DS,
    targets: targets(ts),
    fieldConfig: {
      defaults: {
        unit,
        min: 0,
        custom: {
          drawStyle: 'line',
          lineWidth: 1,
          fillOpacity: stack ? 30 : 10,
          showPoints: 'never',
          stacking: { mode: stack ? 'normal' : 'none', group: 'A' },
        },
      },
      overrides: [],
    },
    options: {
      legend: { displayMode: 'table', placement: 'bottom', calcs: ['mean', 'max', 'lastNotNull'] },
      tooltip: { mode: 'multi', sort: 'desc' },
    },
  };
}

function stat(
  title: string,
  description: string,
  unit: string,
  expr: string,
  thresholds: Array<[number | null, string]> = [[null, 'green']],
): Panel {
  return {
    type: 'stat',
    title,
    description,
    datasource: DS,
    targets: targets([{ expr, legend: title }]),
    fieldConfig: {
      defaults: {
        unit,
        thresholds: { mode: 'absolute', steps: thresholds.map(([value, color]) => ({ value, color })) },
      },
      overrides: [],
    },
    options: {
      reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false },
      colorMode: 'value',
      graphMode: 'area',
      textMode: 'auto',
    },
  };
}

function row(title: string, y: number): Panel {
  return { type: 'row', title, collapsed: false, gridPos: { x: 0, y, w: WIDTH, h: 1 }, panels: [] };
}

interface Section {
  title: string;
  panels: Panel[];
  perRow?: number;
  height?: number;
}

function sections(list: Section[]): Panel[] {
  const out: Panel[] = [];
  let y = 0;
  for (const s of list) {
    out.push(row(s.title, y));
    y = layout(s.panels, y + 1, s.perRow ?? 3, s.height ?? 8);
    out.push(...s.panels);
  }
  return out.map((p, i) => ({ ...p, id: i + 1 }));
}

function queryVariable(name: string, label: string, query: string, includeAll = true) {
  return {
    name,
    label,
    type: 'query',
    datasource: DS,
    query: { query, refId: `${name}-query` },
    definition: query,
    refresh: 2,
    sort: 1,
    multi: includeAll,
    includeAll,
    ...(includeAll ? { allValue: '.+', current: { text: 'All', value: '$__all' } } : {}),
  };
}

const datasourceVariable = {
  name: 'datasource',
  label: 'Data source',
  type: 'datasource',
  query: 'prometheus',
  refresh: 1,
  current: {},
};

function dashboard(uid: string, title: string, description: string, variables: unknown[], panels: Panel[]) {
  return {
    uid,
    title,
    description,
    tags: ['mailfleet'],
    editable: true,
    graphTooltip: 1,
    schemaVersion: 39,
    version: 1,
    refresh: '30s',
    time: { from: 'now-6h', to: 'now' },
    timepicker: {},
    timezone: 'browser',
    annotations: { list: [] },
    links: [
      {
        title: 'mailfleet dashboards',
        type: 'dashboards',
        tags: ['mailfleet'],
        asDropdown: true,
        includeVars: true,
        keepTime: true,
      },
    ],
    templating: { list: [datasourceVariable, ...variables] },
    panels,
  };
}

// --- Relays -------------------------------------------------------------------------------------------

const R = 'namespace=~"$namespace", job=~"$relay", pod=~"$pod"';
const rate = (metric: string, extra = '') =>
  `rate(${metric}{${R}${extra ? ', ' + extra : ''}}[$__rate_interval])`;
const quantile = (q: number, metric: string, by: string) =>
  `histogram_quantile(${q}, sum by (le${by ? ', ' + by : ''}) (${rate(metric + '_bucket')}))`;

export function relayDashboard() {
  const variables = [
    queryVariable('namespace', 'Namespace', 'label_values(mailfleet_relay_ready, namespace)'),
    queryVariable(
      'relay',
      'Relay (job)',
      'label_values(mailfleet_relay_ready{namespace=~"$namespace"}, job)',
    ),
    queryVariable(
      'pod',
      'Pod',
      'label_values(mailfleet_relay_ready{namespace=~"$namespace", job=~"$relay"}, pod)',
    ),
  ];
  const overview: Panel[] = [
    stat(
      'Accepted',
      'Messages accepted and queued (250) per second.',
      'reqps',
      `sum(${rate('mailfleet_relay_messages_received_total')})`,
    ),
    stat(
      'Rejected',
      'Messages refused at MAIL FROM or DATA per second.',
      'reqps',
      `sum(${rate('mailfleet_relay_messages_rejected_total')})`,
    ),
    stat(
      'Queued',
      'Messages waiting for delivery (ready, deferred, in delivery).',
      'short',
      `sum(mailfleet_relay_spool_messages{${R}, state=~"ready|deferred|active"})`,
      [
        [null, 'green'],
        [100, 'orange'],
        [1000, 'red'],
      ],
    ),
    stat(
      'Oldest message',
      'Age of the oldest queued message.',
      's',
      `max(mailfleet_relay_oldest_message_age_seconds{${R}})`,
      [
        [null, 'green'],
        [3600, 'orange'],
        [86400, 'red'],
      ],
    ),
    stat(
      'Pods ready',
      'Relay pods reporting ready / pods scraped.',
      'percentunit',
      `sum(mailfleet_relay_ready{${R}}) / count(mailfleet_relay_ready{${R}})`,
      [
        [null, 'red'],
        [0.5, 'orange'],
        [1, 'green'],
      ],
    ),
    stat(
      'Certificate expires in',
      'Shortest time until a served TLS certificate expires.',
      's',
      `min(mailfleet_relay_tls_certificate_expiry_timestamp_seconds{${R}} > 0) - time()`,
      [
        [null, 'red'],
        [3 * 86400, 'orange'],
        [14 * 86400, 'green'],
      ],
    ),
  ];
  const traffic: Panel[] = [
    timeseries(
      'Connections',
      'SMTP connections by listener and result (accepted or refused at connect).',
      'cps',
      [
        {
          expr: `sum by (listener, result) (${rate('mailfleet_relay_connections_total')})`,
          legend: '{{listener}} {{result}}',
        },
      ],
    ),
    timeseries('Sessions in flight', 'Open SMTP sessions by listener.', 'short', [
      { expr: `sum by (listener) (mailfleet_relay_sessions_in_flight{${R}})`, legend: '{{listener}}' },
    ]),
    timeseries('Messages accepted', 'Messages accepted and queued, by listener.', 'reqps', [
      {
        expr: `sum by (listener) (${rate('mailfleet_relay_messages_received_total')})`,
        legend: '{{listener}}',
      },
    ]),
    timeseries('Bytes accepted', 'Size of accepted messages, by listener.', 'Bps', [
      { expr: `sum by (listener) (${rate('mailfleet_relay_received_bytes_total')})`, legend: '{{listener}}' },
    ]),
    timeseries(
      'TLS handshakes',
      'TLS sessions (STARTTLS or implicit) by listener and protocol version.',
      'ops',
      [
        {
          expr: `sum by (listener, version) (${rate('mailfleet_relay_tls_sessions_total')})`,
          legend: '{{listener}} {{version}}',
        },
      ],
    ),
    timeseries(
      'DNS lookups',
      'Recipient-domain and MX lookups by type and result (cached: answered from cache).',
      'ops',
      [
        {
          expr: `sum by (type, result) (${rate('mailfleet_relay_dns_queries_total')})`,
          legend: '{{type}} {{result}}',
        },
      ],
    ),
  ];
  const rejections: Panel[] = [
    timeseries(
      'Messages rejected by reason',
      'Messages refused at MAIL FROM or DATA.',
      'reqps',
      [
        {
          expr: `sum by (reason) (${rate('mailfleet_relay_messages_rejected_total')})`,
          legend: '{{reason}}',
        },
      ],
      true,
    ),
    timeseries(
      'Recipients rejected by reason',
      'Recipients refused at RCPT TO.',
      'reqps',
      [
        {
          expr: `sum by (reason) (${rate('mailfleet_relay_recipients_rejected_total')})`,
          legend: '{{reason}}',
        },
      ],
      true,
    ),
    timeseries(
      'Connections refused by reason',
      'Connections refused at connect: shutting down, the relay-wide or a per-client limit, a client outside allowedNetworks, a bad or untrusted PROXY header.',
      'cps',
      [
        {
          expr: `sum by (reason) (${rate('mailfleet_relay_connections_refused_total')})`,
          legend: '{{reason}}',
        },
      ],
      true,
    ),
    timeseries(
      'PROXY protocol headers',
      'Headers accepted from trusted proxies, by listener and version; refusals are under Connections refused.',
      'cps',
      [
        {
          expr: `sum by (listener, version) (${rate('mailfleet_relay_proxy_headers_total')})`,
          legend: '{{listener}} v{{version}}',
        },
      ],
    ),
    timeseries('Authentication', 'SMTP AUTH attempts by result.', 'reqps', [
      { expr: `sum by (result) (${rate('mailfleet_relay_auth_attempts_total')})`, legend: '{{result}}' },
    ]),
    timeseries(
      'Authentication failures',
      'Failed, throttled, locked-out and not-allowed AUTH attempts by listener and mechanism.',
      'reqps',
      [
        {
          expr: `sum by (listener, mechanism, result) (${rate('mailfleet_relay_auth_attempts_total', 'result!="success"')})`,
          legend: '{{listener}} {{mechanism}} {{result}}',
        },
      ],
    ),
  ];
  const queue: Panel[] = [
    timeseries(
      'Queue by state',
      'Messages in the spool by state.',
      'short',
      [{ expr: `sum by (state) (mailfleet_relay_spool_messages{${R}})`, legend: '{{state}}' }],
      true,
    ),
    timeseries(
      'Queue size by state',
      'Bytes in the spool by state.',
      'bytes',
      [{ expr: `sum by (state) (mailfleet_relay_spool_bytes{${R}})`, legend: '{{state}}' }],
      true,
    ),
    timeseries('Oldest message age', 'Age of the oldest message, per pod.', 's', [
      { expr: `max by (pod) (mailfleet_relay_oldest_message_age_seconds{${R}})`, legend: '{{pod}}' },
    ]),
    timeseries('Spool commit latency', 'End of DATA to durable on disk (fsync), before the 250 reply.', 's', [
      { expr: quantile(0.5, 'mailfleet_relay_spool_commit_duration_seconds', ''), legend: 'p50' },
      { expr: quantile(0.99, 'mailfleet_relay_spool_commit_duration_seconds', ''), legend: 'p99' },
    ]),
    timeseries(
      'Queue volume free',
      'Free share of each pod queue volume (space, inodes) and 1 while the pod refuses new mail below its floor.',
      'percentunit',
      [
        {
          expr: `min by (pod, resource) (mailfleet_relay_spool_filesystem_free_ratio{${R}})`,
          legend: '{{pod}} {{resource}} free',
        },
        { expr: `max by (pod) (mailfleet_relay_spool_space_low{${R}})`, legend: '{{pod}} refusing' },
      ],
    ),
    timeseries('Queue volume bytes', 'Free bytes and size of each pod queue volume.', 'bytes', [
      { expr: `max by (pod) (mailfleet_relay_spool_filesystem_free_bytes{${R}})`, legend: '{{pod}} free' },
      { expr: `max by (pod) (mailfleet_relay_spool_filesystem_size_bytes{${R}})`, legend: '{{pod}} size' },
    ]),
    timeseries('Entries set aside', 'Half-written entries removed and corrupt entries kept aside.', 'short', [
      {
        expr: `sum by (kind) (increase(mailfleet_relay_spool_swept_total{${R}}[$__rate_interval]))`,
        legend: '{{kind}}',
      },
    ]),
  ];
  const delivery: Panel[] = [
    timeseries(
      'Delivery attempts by result',
      'Per-recipient delivery attempts: delivered, deferred (retried later) or bounced.',
      'ops',
      [
        {
          expr: `sum by (result) (${rate('mailfleet_relay_delivery_attempts_total')})`,
          legend: '{{result}}',
        },
      ],
      true,
    ),
    timeseries('Delivery failure ratio', 'Share of attempts deferred or bounced.', 'percentunit', [
      {
        expr: `sum(${rate('mailfleet_relay_delivery_attempts_total', 'result=~"deferred|bounced"')}) / sum(${rate('mailfleet_relay_delivery_attempts_total')})`,
        legend: 'failed',
      },
    ]),
    timeseries('Delivery latency', 'One attempt, connect to final reply: p50 and p99 by result.', 's', [
      {
        expr: quantile(0.5, 'mailfleet_relay_delivery_duration_seconds', 'result'),
        legend: 'p50 {{result}}',
      },
      {
        expr: quantile(0.99, 'mailfleet_relay_delivery_duration_seconds', 'result'),
        legend: 'p99 {{result}}',
      },
    ]),
    timeseries('Time in queue', 'Acceptance to final outcome, per message: p50 and p99 by result.', 's', [
      { expr: quantile(0.5, 'mailfleet_relay_time_in_queue_seconds', 'result'), legend: 'p50 {{result}}' },
      { expr: quantile(0.99, 'mailfleet_relay_time_in_queue_seconds', 'result'), legend: 'p99 {{result}}' },
    ]),
    timeseries(
      'Bounces',
      'DSNs sent to senders by kind, and failed bounces dropped (never bounced).',
      'ops',
      [
        { expr: `sum by (kind) (${rate('mailfleet_relay_bounces_total')})`, legend: '{{kind}}' },
        { expr: `sum(${rate('mailfleet_relay_bounces_dropped_total')})`, legend: 'dropped' },
      ],
    ),
    timeseries(
      'DKIM signing failures',
      'Attempts whose message could not be signed, by what its domain chose: deferred (held) or sent_unsigned.',
      'ops',
      [
        {
          expr: `sum by (action) (${rate('mailfleet_relay_dkim_signing_failures_total')})`,
          legend: '{{action}}',
        },
      ],
    ),
    timeseries('Drain hand-offs', 'Messages handed to a peer relay while draining, by result.', 'ops', [
      { expr: `sum by (result) (${rate('mailfleet_relay_handoffs_total')})`, legend: '{{result}}' },
    ]),
    timeseries(
      'Destination sites',
      'Deliveries waiting for and in flight to destination sites, by site (a delivery.shaping override, or default).',
      'short',
      [
        { expr: `sum by (site) (mailfleet_relay_site_queued{${R}})`, legend: '{{site}} queued' },
        { expr: `sum by (site) (mailfleet_relay_site_in_flight{${R}})`, legend: '{{site}} in flight' },
      ],
    ),
    timeseries(
      'Held back by shaping',
      'Deliveries that waited for a site limit (connections or messages per minute): queued, not failed.',
      'ops',
      [
        {
          expr: `sum by (site, limit) (${rate('mailfleet_relay_site_shaping_deferrals_total')})`,
          legend: '{{site}} {{limit}}',
        },
      ],
    ),
  ];
  const fleet: Panel[] = [
    timeseries(
      'Fleet state by pod',
      'Where each pod decides limits, shaping and suppression: shared (the fleet store), degraded (store unreachable, deciding alone) or per_pod (no store).',
      'short',
      [{ expr: `max by (pod, state) (mailfleet_relay_fleet_state{${R}}) == 1`, legend: '{{pod}} {{state}}' }],
    ),
    timeseries(
      'Decisions made without the store',
      'Rate, lease and suppression checks a pod answered alone because the fleet store did not answer in time.',
      'ops',
      [
        {
          expr: `sum by (operation) (${rate('mailfleet_relay_fleet_store_fallbacks_total')})`,
          legend: '{{operation}}',
        },
      ],
    ),
    timeseries(
      'Suppression list',
      'Recipients added to the suppression list by source, and suppressed recipients refused or bounced.',
      'ops',
      [
        {
          expr: `sum by (source) (${rate('mailfleet_relay_suppressions_added_total')})`,
          legend: 'added ({{source}})',
        },
        {
          expr: `sum by (action) (${rate('mailfleet_relay_suppressed_recipients_total')})`,
          legend: '{{action}}',
        },
      ],
    ),
  ];
  const perPod: Panel[] = [
    timeseries('Accepted by pod', 'Messages accepted per pod.', 'reqps', [
      { expr: `sum by (pod) (${rate('mailfleet_relay_messages_received_total')})`, legend: '{{pod}}' },
    ]),
    timeseries('Queued by pod', 'Messages waiting per pod.', 'short', [
      {
        expr: `sum by (pod) (mailfleet_relay_spool_messages{${R}, state=~"ready|deferred|active"})`,
        legend: '{{pod}}',
      },
    ]),
    timeseries('Ready and draining', 'Per pod: ready (1) and draining (1).', 'short', [
      { expr: `max by (pod) (mailfleet_relay_ready{${R}})`, legend: '{{pod}} ready' },
      { expr: `max by (pod) (mailfleet_relay_draining{${R}})`, legend: '{{pod}} draining' },
    ]),
    timeseries(
      'Configuration in force',
      '1 when the newest configuration was accepted, per pod; reloads by result.',
      'short',
      [
        {
          expr: `max by (pod) (mailfleet_relay_config_last_reload_successful{${R}})`,
          legend: '{{pod}} newest',
        },
        {
          expr: `sum by (pod, result) (increase(mailfleet_relay_config_reloads_total{${R}}[$__rate_interval]))`,
          legend: '{{pod}} reload {{result}}',
        },
      ],
    ),
    timeseries('Memory', 'Resident memory per pod.', 'bytes', [
      { expr: `max by (pod) (process_resident_memory_bytes{${R}})`, legend: '{{pod}}' },
    ]),
    timeseries('CPU', 'CPU time per second, per pod.', 'percentunit', [
      { expr: `sum by (pod) (${rate('process_cpu_seconds_total')})`, legend: '{{pod}}' },
    ]),
  ];
  return dashboard(
    'mailfleet-relays',
    'mailfleet / Relays',
    'SMTP relay fleets run by mailfleet: traffic, rejections, authentication, queue, delivery, per pod.',
    variables,
    sections([
      { title: 'Overview', panels: overview, perRow: 6, height: 4 },
      { title: 'Traffic', panels: traffic },
      { title: 'Rejections and authentication', panels: rejections, perRow: 2 },
      { title: 'Queue', panels: queue },
      { title: 'Delivery', panels: delivery },
      { title: 'Fleet', panels: fleet },
      { title: 'Per pod', panels: perPod },
    ]),
  );
}

// --- Operator -----------------------------------------------------------------------------------------

const O = 'namespace=~"$namespace", job=~"$job", pod=~"$pod"';
const orate = (metric: string, extra = '') =>
  `rate(${metric}{${O}${extra ? ', ' + extra : ''}}[$__rate_interval])`;
const oquantile = (q: number, metric: string, by: string) =>
  `histogram_quantile(${q}, sum by (le, ${by}) (${orate(metric + '_bucket')}))`;

export function operatorDashboard() {
  const variables = [
    queryVariable(
      'namespace',
      'Namespace',
      'label_values(leader_election_master_status{name="mailfleet-operator"}, namespace)',
    ),
    queryVariable(
      'job',
      'Job',
      'label_values(leader_election_master_status{name="mailfleet-operator", namespace=~"$namespace"}, job)',
    ),
    queryVariable(
      'pod',
      'Pod',
      'label_values(leader_election_master_status{name="mailfleet-operator", namespace=~"$namespace", job=~"$job"}, pod)',
    ),
  ];
  const overview: Panel[] = [
    stat(
      'Leaders',
      'Replicas holding the Lease (should be 1).',
      'short',
      `sum(leader_election_master_status{${O}})`,
      [
        [null, 'red'],
        [1, 'green'],
        [2, 'red'],
      ],
    ),
    stat('Replicas up', 'Operator replicas scraped.', 'short', `sum(up{${O}})`, [
      [null, 'red'],
      [1, 'green'],
    ]),
    stat(
      'Reconciles',
      'Reconciles per second, all controllers.',
      'ops',
      `sum(${orate('controller_runtime_reconcile_total')})`,
    ),
    stat(
      'Errors',
      'Reconcile errors per second, all controllers.',
      'ops',
      `sum(${orate('controller_runtime_reconcile_errors_total')})`,
      [
        [null, 'green'],
        [0.001, 'orange'],
      ],
    ),
    stat('Queue depth', 'Keys waiting in the work queues.', 'short', `sum(workqueue_depth{${O}})`, [
      [null, 'green'],
      [50, 'orange'],
    ]),
    stat(
      'Informer restarts',
      'List/watch errors that restarted an informer, over the range.',
      'short',
      `sum(increase(mailfleet_operator_informer_restarts_total{${O}}[$__range]))`,
      [
        [null, 'green'],
        [1, 'orange'],
      ],
    ),
  ];
  const reconcile: Panel[] = [
    timeseries(
      'Reconcile rate',
      'Reconciles by controller and result (success, error, requeue, requeue_after).',
      'ops',
      [
        {
          expr: `sum by (controller, result) (${orate('controller_runtime_reconcile_total')})`,
          legend: '{{controller}} {{result}}',
        },
      ],
      true,
    ),
    timeseries('Reconcile errors', 'Errors by controller.', 'ops', [
      {
        expr: `sum by (controller) (${orate('controller_runtime_reconcile_errors_total')})`,
        legend: '{{controller}}',
      },
    ]),
    timeseries('Reconcile latency', 'p50 and p99 by controller.', 's', [
      {
        expr: oquantile(0.5, 'controller_runtime_reconcile_time_seconds', 'controller'),
        legend: 'p50 {{controller}}',
      },
      {
        expr: oquantile(0.99, 'controller_runtime_reconcile_time_seconds', 'controller'),
        legend: 'p99 {{controller}}',
      },
    ]),
    timeseries('Workers', 'Active workers and the maximum, by controller.', 'short', [
      {
        expr: `sum by (controller) (controller_runtime_active_workers{${O}})`,
        legend: '{{controller}} active',
      },
      {
        expr: `max by (controller) (controller_runtime_max_concurrent_reconciles{${O}})`,
        legend: '{{controller}} max',
      },
    ]),
  ];
  const queue: Panel[] = [
    timeseries('Work queue depth', 'Keys waiting, by queue.', 'short', [
      { expr: `sum by (name) (workqueue_depth{${O}})`, legend: '{{name}}' },
    ]),
    timeseries('Adds and retries', 'Keys added and retried (with backoff), by queue.', 'ops', [
      { expr: `sum by (name) (${orate('workqueue_adds_total')})`, legend: '{{name}} adds' },
      { expr: `sum by (name) (${orate('workqueue_retries_total')})`, legend: '{{name}} retries' },
    ]),
    timeseries('Queue wait (p99)', 'Time a key waits in the queue before a worker takes it.', 's', [
      { expr: oquantile(0.99, 'workqueue_queue_duration_seconds', 'name'), legend: '{{name}}' },
    ]),
    timeseries('Work duration (p99)', 'Time a worker spends on a key.', 's', [
      { expr: oquantile(0.99, 'workqueue_work_duration_seconds', 'name'), legend: '{{name}}' },
    ]),
  ];
  const process: Panel[] = [
    timeseries('Leader', 'Per replica: 1 while it holds the Lease.', 'short', [
      { expr: `max by (pod) (leader_election_master_status{${O}})`, legend: '{{pod}}' },
    ]),
    timeseries('API requests', 'Requests to the Kubernetes API by method and code.', 'reqps', [
      {
        expr: `sum by (method, code) (${orate('rest_client_requests_total')})`,
        legend: '{{method}} {{code}}',
      },
    ]),
    timeseries('Memory', 'Resident memory per replica.', 'bytes', [
      { expr: `max by (pod) (process_resident_memory_bytes{${O}})`, legend: '{{pod}}' },
    ]),
    timeseries('CPU', 'CPU time per second, per replica.', 'percentunit', [
      { expr: `sum by (pod) (${orate('process_cpu_seconds_total')})`, legend: '{{pod}}' },
    ]),
  ];
  return dashboard(
    'mailfleet-operator',
    'mailfleet / Operator',
    'The mailfleet operator: leader election, reconciles, work queues, API traffic.',
    variables,
    sections([
      { title: 'Overview', panels: overview, perRow: 6, height: 4 },
      { title: 'Reconcile', panels: reconcile, perRow: 2 },
      { title: 'Work queues', panels: queue, perRow: 2 },
      { title: 'Replicas', panels: process, perRow: 2 },
    ]),
  );
}

/** Dashboard files of the chart: path → JSON text. */
export function dashboardFiles(): Map<string, string> {
  return new Map([
    ['charts/mailfleet/dashboards/relays.json', JSON.stringify(relayDashboard(), null, 2) + '\n'],
    ['charts/mailfleet/dashboards/operator.json', JSON.stringify(operatorDashboard(), null, 2) + '\n'],
  ]);
}
