/* eslint-disable @typescript-eslint/no-explicit-any, @typescript-eslint/no-unsafe-return -- fixtures poke at rendered JSON */
import { Value } from 'typebox/value';
import { parse, stringify } from 'yaml';
import { RelayConfig } from '../../../relay/config/schema.js';
import { crossFieldProblems } from '../../../relay/config/load.js';
import { renderRelayConfig, type BoundDomain } from '../../../operator/smtprelay/config.js';
import { PATHS, RUNTIME_KEYS } from '../../../operator/smtprelay/names.js';
import { certificateDnsNames, renderRelay, type RenderInput } from '../../../operator/smtprelay/render.js';
import { bindDomains } from '../../../operator/shared/binding.js';
import { domain, relay } from './fixtures.js';

function input(r = relay(), over: Partial<RenderInput> = {}): RenderInput {
  return {
    relay: r,
    image: 'ghcr.io/mailfleet/mailfleet:test',
    configYaml: 'hostname: x\n',
    secrets: {
      runtime: { users: 'eA==' },
      credentials: {},
      internal: {},
      ca: { 'ca.crt': 'eA==' },
      tls: { 'tls.crt': 'eA==' },
    },
    statefulSetReplicas: r.spec.replicas,
    storage: { size: '1Gi' },
    serviceMonitor: false,
    certificate: false,
    ...over,
  };
}

const byKind = (objs: any[], kind: string, name?: string) =>
  objs.find((o) => o.kind === kind && (name === undefined || o.metadata.name === name));

function validate(config: unknown): string[] {
  const errors = [...Value.Errors(RelayConfig, Value.Default(RelayConfig, structuredClone(config)))];
  return errors.map((e: any) => `${e.instancePath ?? e.path}: ${e.message}`);
}

describe('renderRelay', () => {
  const objs = renderRelay(input());
  const sts = byKind(objs, 'StatefulSet');
  const pod = sts.spec.template.spec;
  const c = pod.containers[0];

  it('applies Secrets before the ConfigMap and the ConfigMap before the StatefulSet', () => {
    const kinds = objs.map((o) => o.kind);
    expect(kinds.lastIndexOf('Secret')).toBeLessThan(kinds.indexOf('ConfigMap'));
    expect(kinds.indexOf('ConfigMap')).toBeLessThan(kinds.indexOf('StatefulSet'));
  });

  it('owns every child with a controller reference and labels it', () => {
    for (const o of objs as any[]) {
      expect(o.metadata.ownerReferences).toEqual([
        {
          apiVersion: 'mailfleet.dev/v1alpha1',
          kind: 'SmtpRelay',
          name: 'mail',
          uid: 'uid-relay',
          controller: true,
          blockOwnerDeletion: true,
        },
      ]);
      expect(o.metadata.namespace).toBe('apps');
      expect(o.metadata.labels).toMatchObject({
        'app.kubernetes.io/managed-by': 'mailfleet',
        'app.kubernetes.io/instance': 'mail',
      });
    }
  });

  it('hardens the pod: non-root, read-only root fs, no capabilities, RuntimeDefault seccomp, no API token', () => {
    expect(pod.securityContext).toMatchObject({
      runAsNonRoot: true,
      runAsUser: 65532,
      fsGroup: 65532,
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(c.securityContext).toEqual({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      runAsNonRoot: true,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(pod.automountServiceAccountToken).toBe(false);
  });

  it('lets the non-root relay bind ports below 1024 through the pod-scoped safe sysctl, only when it listens on one', () => {
    // The defaults listen on 587: without the sysctl the relay exits with EACCES on containerd 1.x.
    expect(pod.securityContext.sysctls).toEqual([
      { name: 'net.ipv4.ip_unprivileged_port_start', value: '0' },
    ]);
    const high = relay({
      listeners: {
        submission: { enabled: true, port: 2587 },
        smtps: { enabled: false, port: 465 },
        relay: { enabled: true, port: 2525, allowedNetworks: [] },
      },
    });
    const highPod = byKind(renderRelay(input(high)), 'StatefulSet').spec.template.spec;
    expect(highPod.securityContext.sysctls).toBeUndefined();
  });

  it('runs the relay on its config file with probes on the admin port', () => {
    expect(c.command).toEqual(['mailfleet-relay', '--config', '/etc/mailfleet/relay.yaml']);
    expect(c.image).toBe('ghcr.io/mailfleet/mailfleet:test');
    expect(c.ports).toEqual([
      { name: 'submission', containerPort: 587, protocol: 'TCP' },
      { name: 'admin', containerPort: 9091, protocol: 'TCP' },
    ]);
    expect(c.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'admin' });
    expect(c.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'admin' });
    expect(c.startupProbe.httpGet.path).toBe('/healthz');
  });

  it('mounts config and secrets through one projected volume of fixed sources, the queue PVC and a tmp dir', () => {
    expect(c.volumeMounts).toEqual([
      { name: 'config', mountPath: '/etc/mailfleet', readOnly: true },
      { name: 'queue', mountPath: '/var/spool/mailfleet' },
      { name: 'tmp', mountPath: '/tmp' },
    ]);
    expect(pod.volumes[0].projected.sources).toEqual([
      { configMap: { name: 'mail-config', items: [{ key: 'relay.yaml', path: 'relay.yaml' }] } },
      { secret: { name: 'mail-runtime' } },
    ]);
    expect(sts.spec.volumeClaimTemplates[0]).toMatchObject({
      metadata: { name: 'queue' },
      spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } },
    });
    expect(sts.spec.persistentVolumeClaimRetentionPolicy).toEqual({
      whenScaled: 'Delete',
      whenDeleted: 'Retain',
    });
  });

  it('gives a grace period long enough to finish sessions and selects pods by stable labels', () => {
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(60);
    const sel = { 'app.kubernetes.io/name': 'mailfleet-relay', 'app.kubernetes.io/instance': 'mail' };
    expect(sts.spec.selector.matchLabels).toEqual(sel);
    expect(sts.spec.template.metadata.labels).toMatchObject(sel);
    expect(sts.spec.serviceName).toBe('mail-headless');
    expect(byKind(objs, 'PodDisruptionBudget').spec).toEqual({
      maxUnavailable: 1,
      selector: { matchLabels: sel },
    });
  });

  it('renders a client Service with listener ports and a headless Service that also exposes admin', () => {
    const client = byKind(objs, 'Service', 'mail');
    expect(client.spec.type).toBe('ClusterIP');
    expect(client.spec.ports).toEqual([
      { name: 'submission', port: 587, targetPort: 'submission', protocol: 'TCP' },
    ]);
    const headless = byKind(objs, 'Service', 'mail-headless');
    expect(headless.spec.clusterIP).toBe('None');
    expect(headless.spec.publishNotReadyAddresses).toBe(true);
    expect(headless.spec.ports.map((p: any) => p.name)).toEqual(['submission', 'admin']);
  });

  it('sets externalTrafficPolicy on the client Service only when asked (never on the headless one)', () => {
    expect(byKind(objs, 'Service', 'mail').spec).not.toHaveProperty('externalTrafficPolicy');
    const lb = renderRelay(
      input(relay({ service: { type: 'LoadBalancer', externalTrafficPolicy: 'Local' } } as any)),
    );
    expect(byKind(lb, 'Service', 'mail').spec).toMatchObject({
      type: 'LoadBalancer',
      externalTrafficPolicy: 'Local',
    });
    expect(byKind(lb, 'Service', 'mail-headless').spec).not.toHaveProperty('externalTrafficPolicy');
  });

  it('pod template is independent of config and secret content (reload, not restart)', () => {
    const a = byKind(
      renderRelay(
        input(relay(), { configYaml: 'a: 1\n', secrets: { ...input().secrets, runtime: { x: 'YQ==' } } }),
      ),
      'StatefulSet',
    );
    const b = byKind(
      renderRelay(
        input(relay(), { configYaml: 'b: 2\n', secrets: { ...input().secrets, runtime: { y: 'Yg==' } } }),
      ),
      'StatefulSet',
    );
    expect(a.spec.template).toEqual(b.spec.template);
  });

  it('changes the pod template when a listener port changes (a restart is needed)', () => {
    const a = byKind(
      renderRelay(input(relay({ listeners: { submission: { enabled: true, port: 2587 } } as any }))),
      'StatefulSet',
    );
    expect(a.spec.template).not.toEqual(sts.spec.template);
    expect(a.spec.template.spec.containers[0].ports[0].containerPort).toBe(2587);
  });

  it('renders ServiceMonitor and Certificate only when asked', () => {
    expect(byKind(objs, 'ServiceMonitor')).toBeUndefined();
    const r = relay({
      tls: { issuerRef: { name: 'letsencrypt', kind: 'ClusterIssuer', group: 'cert-manager.io' } } as any,
    });
    const more = renderRelay(
      input(r, {
        serviceMonitor: true,
        certificate: true,
        secrets: { ...input().secrets, ca: undefined, tls: undefined },
      }),
    );
    expect(byKind(more, 'ServiceMonitor').spec.endpoints).toEqual([
      { port: 'admin', path: '/metrics', interval: '30s' },
    ]);
    const cert = byKind(more, 'Certificate');
    expect(cert.spec.issuerRef).toEqual({
      name: 'letsencrypt',
      kind: 'ClusterIssuer',
      group: 'cert-manager.io',
    });
    expect(cert.spec.dnsNames).toContain('*.mail-headless.apps.svc');
    expect(byKind(more, 'Secret', 'mail-ca')).toBeUndefined();
  });

  it('covers the client Service and every pod behind the headless Service in the certificate', () => {
    expect(certificateDnsNames(relay())).toEqual([
      'mail',
      'mail.apps',
      'mail.apps.svc',
      'mail.apps.svc.cluster.local',
      '*.mail-headless.apps.svc',
      '*.mail-headless.apps.svc.cluster.local',
    ]);
  });
});

describe('renderRelayConfig', () => {
  const r = relay({
    listeners: {
      submission: { enabled: true, port: 587 },
      smtps: { enabled: true, port: 465 },
      relay: { enabled: true, port: 2525, allowedNetworks: ['10.0.0.0/8'] },
    },
    delivery: {
      route: {
        mode: 'smarthost',
        smarthost: {
          host: 'smtp.example.net',
          port: 587,
          tls: 'starttls',
          credentialsSecretRef: { name: 'up' },
        },
      },
    } as any,
    logLevel: 'debug',
  } as any);
  const bound: BoundDomain[] = [
    {
      domain: domain('b', { domain: 'B.example.org', allowedUsers: ['app'] }),
      dkimKey: true,
      routeCredentials: false,
      routeCa: false,
    },
    {
      domain: domain('a', {
        domain: 'a.example.com',
        route: { mode: 'smarthost', smarthost: { host: 'mx.a.example.com', port: 25, tls: 'none' } } as any,
      }),
      dkimKey: false,
      routeCredentials: false,
      routeCa: false,
    },
  ];
  const config = renderRelayConfig({
    relay: r,
    domains: bound,
    tls: true,
    ca: true,
    smarthostCredentials: true,
    smarthostCa: false,
    fleetStore: { username: false, password: false, ca: false },
  });

  it('passes the relay loader cross-field checks (TLS and users for submission, distinct binds, hostname)', () => {
    expect(crossFieldProblems(Value.Default(RelayConfig, structuredClone(config)) as RelayConfig)).toEqual(
      [],
    );
  });

  it('validates against the relay schema (the contract), also after a YAML round trip', () => {
    expect(validate(config)).toEqual([]);
    expect(validate(parse(stringify(config)))).toEqual([]);
    const minimal = renderRelayConfig({
      relay: relay(),
      domains: [],
      tls: false,
      ca: false,
      smarthostCredentials: false,
      smarthostCa: false,
      fleetStore: { username: false, password: false, ca: false },
    });
    expect(validate(minimal)).toEqual([]);
  });

  it('renders dkim.onSigningFailure: SendUnsigned as the relay domain dkim.onFailure send-unsigned', () => {
    const d = domain('u', { domain: 'u.example', dkim: { onSigningFailure: 'SendUnsigned' } as never });
    const rendered = renderRelayConfig({
      relay: relay(),
      domains: [{ domain: d, dkimKey: true, routeCredentials: false, routeCa: false }],
      tls: false,
      ca: false,
      smarthostCredentials: false,
      smarthostCa: false,
      fleetStore: { username: false, password: false, ca: false },
    });
    expect(rendered.domains[0]!.dkim?.onFailure).toBe('send-unsigned');
    expect(validate(rendered)).toEqual([]);
  });

  it('renders fleetStore (credentials as files, a key prefix per relay), shaping and suppression', () => {
    const rendered = renderRelayConfig({
      relay: relay({
        fleetStore: {
          url: 'rediss://valkey.infra:6380/2',
          passwordSecretRef: { name: 'valkey', key: 'password' },
          caSecretRef: { name: 'valkey', key: 'ca.crt' },
          timeoutMs: 100,
        },
        delivery: {
          route: { mode: 'direct' },
          concurrency: 50,
          shaping: {
            maxConnections: 10,
            deliveriesPerConnection: 50,
            messagesPerMinute: 0,
            sites: [{ match: ['*.google.com', 'gmail.com'], messagesPerMinute: 600 }],
          },
        },
        suppression: { enabled: true, ttlSeconds: 86400, action: 'Bounce' },
      } as never),
      domains: [],
      tls: false,
      ca: false,
      smarthostCredentials: false,
      smarthostCa: false,
      fleetStore: { username: false, password: true, ca: true },
    });
    expect(rendered.fleetStore).toEqual({
      url: 'rediss://valkey.infra:6380/2',
      passwordFile: '/etc/mailfleet/fleet-store-password',
      caFile: '/etc/mailfleet/fleet-store-ca.crt',
      keyPrefix: 'mailfleet:apps/mail:',
      timeoutMs: 100,
    });
    expect(rendered.delivery.shaping.sites).toEqual([
      { match: ['*.google.com', 'gmail.com'], messagesPerMinute: 600 },
    ]);
    expect(rendered.suppression).toMatchObject({ ttl: 86400, action: 'bounce' });
    expect(validate(rendered)).toEqual([]);
    const none = renderRelayConfig({
      relay: relay(),
      domains: [],
      tls: false,
      ca: false,
      smarthostCredentials: false,
      smarthostCa: false,
      fleetStore: { username: false, password: false, ca: false },
    });
    expect(none.fleetStore).toBeUndefined();
  });

  it('renders the queue volume free-space floor from spec.queue', () => {
    const floor = renderRelayConfig({
      relay: relay({ queue: { minFreeSpacePercent: 3, minFreeInodesPercent: 0 } } as never),
      domains: [],
      tls: false,
      ca: false,
      smarthostCredentials: false,
      smarthostCa: false,
      fleetStore: { username: false, password: false, ca: false },
    });
    expect(floor.spool).toMatchObject({ minFreeSpacePercent: 3, minFreeInodesPercent: 0 });
  });

  it('renders proxyProtocol per listener, only where it is set', () => {
    const listeners = renderRelayConfig({
      relay: relay({
        listeners: {
          submission: { enabled: true, port: 587, proxyProtocol: { trustedProxies: ['10.0.1.0/24'] } },
          smtps: { enabled: true, port: 465 },
          relay: {
            enabled: true,
            port: 2525,
            allowedNetworks: ['10.0.0.0/8'],
            proxyProtocol: { trustedProxies: ['10.0.2.0/24', 'fd00:1::/64'] },
          },
        },
      }),
      domains: [],
      tls: true,
      ca: false,
      smarthostCredentials: false,
      smarthostCa: false,
      fleetStore: { username: false, password: false, ca: false },
    }).listeners;
    expect(listeners.submission).toEqual({
      address: '0.0.0.0',
      port: 587,
      proxyProtocol: { trustedProxies: ['10.0.1.0/24'] },
    });
    expect(listeners.smtps).toEqual({ address: '0.0.0.0', port: 465 });
    expect(listeners.relay).toEqual({
      address: '0.0.0.0',
      port: 2525,
      proxyProtocol: { trustedProxies: ['10.0.2.0/24', 'fd00:1::/64'] },
      allowedNetworks: ['10.0.0.0/8'],
    });
    expect(validate({ ...config, listeners })).toEqual([]);
  });

  it('renders the per-client connection limits, with their defaults', () => {
    const render = (spec: any) =>
      renderRelayConfig({
        relay: relay(spec),
        domains: [],
        tls: false,
        ca: false,
        smarthostCredentials: false,
        smarthostCa: false,
        fleetStore: { username: false, password: false, ca: false },
      }).limits;
    expect(render({})).toMatchObject({
      maxConnectionsPerClient: 100,
      connectionsPerMinutePerClient: 1200,
      exemptNetworks: ['127.0.0.0/8', '::1/128'],
    });
    expect(
      render({
        limits: {
          maxConnectionsPerClient: 7,
          connectionsPerMinutePerClient: 0,
          exemptNetworks: ['10.1.0.0/16'],
        },
      }),
    ).toMatchObject({
      maxConnectionsPerClient: 7,
      connectionsPerMinutePerClient: 0,
      exemptNetworks: ['10.1.0.0/16'],
    });
  });

  it('points every secret at a file of the mounted runtime Secret', () => {
    expect(config.tls).toEqual({
      certFile: '/etc/mailfleet/tls.crt',
      keyFile: '/etc/mailfleet/tls.key',
      minVersion: 'TLSv1.2',
    });
    expect(config.auth?.usersFile).toBe(PATHS.file(RUNTIME_KEYS.users));
    expect(config.handoff).toEqual({
      username: 'mailfleet-handoff',
      passwordFile: '/etc/mailfleet/handoff-password',
      caFile: '/etc/mailfleet/ca.crt',
      serverName: `${r.metadata.name}.${r.metadata.namespace}.svc`,
    });
    expect(config.admin).toEqual({ address: '0.0.0.0', port: 9091, tokenFile: '/etc/mailfleet/admin-token' });
    expect(config.delivery.route.smarthost?.auth).toEqual({
      usernameFile: '/etc/mailfleet/smarthost-username',
      passwordFile: '/etc/mailfleet/smarthost-password',
    });
    expect(JSON.stringify(config)).not.toMatch(/BEGIN|password":"[^/]/);
  });

  it('renders listeners, domains sorted and lower-cased, DKIM only where the key is mounted, and routes', () => {
    expect(config.listeners.relay).toEqual({
      address: '0.0.0.0',
      port: 2525,
      allowedNetworks: ['10.0.0.0/8'],
    });
    expect(config.listeners.smtps?.port).toBe(465);
    expect(config.domains.map((d) => d.name)).toEqual(['a.example.com', 'b.example.org']);
    expect(config.domains[1]!.dkim).toEqual({
      selector: 'mailfleet',
      algorithm: 'rsa-sha256',
      keyFile: '/etc/mailfleet/dkim-b.example.org.key',
      onFailure: 'defer',
    });
    expect(config.domains[0]!.dkim).toBeUndefined();
    expect(config.domains[0]!.route).toEqual({
      mode: 'smarthost',
      smarthost: { host: 'mx.a.example.com', port: 25, tls: 'none' },
    });
    expect(config.domains[0]!.allowedUsers).toEqual(['*']);
    expect(config.spool).toEqual({
      dir: '/var/spool/mailfleet',
      minFreeSpacePercent: 10,
      minFreeInodesPercent: 10,
    });
    expect(config.delivery.retry).toMatchObject({ firstRetry: 300, maxBackoff: 4000, maxLifetime: 432000 });
    expect(config.log.level).toBe('debug');
  });
});

describe('bindDomains', () => {
  it('binds domains of this relay only; the oldest claim of a domain wins', () => {
    const all = [
      domain('new', { domain: 'example.com' }, { created: '2025-02-01T00:00:00Z' }),
      domain('old', { domain: 'EXAMPLE.com' }, { created: '2025-01-01T00:00:00Z' }),
      domain('other-relay', { domain: 'example.com' }, { relay: 'other' }),
      domain('other-ns', { domain: 'example.com' }, { namespace: 'x' }),
    ];
    const b = bindDomains('apps', 'mail', all);
    expect(b.bound.map((d) => d.metadata.name)).toEqual(['old']);
    expect(b.conflicts).toEqual(new Map([['new', 'old']]));
  });
});
