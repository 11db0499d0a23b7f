import path from 'node:path';
import { ConfigError, parseConfig, validateConfig } from '../../../relay/config/load.js';
import { defaultConfig, defaultConfigObject } from '../../../relay/config/default.js';

const base = `
hostname: relay.example.com
listeners:
  relay:
    port: 2525
    allowedNetworks: [10.0.0.0/8]
domains:
  - name: example.com
spool:
  dir: spool
delivery:
  route:
    mode: direct
`;

function problems(text: string): string[] {
  try {
    parseConfig(text, { source: 'relay.yaml', baseDir: '/etc/mailfleet' });
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
}

describe('config loading', () => {
  test('a minimal file: defaults filled, relative paths resolved against its directory', () => {
    const { config, files } = parseConfig(base, { source: 'relay.yaml', baseDir: '/etc/mailfleet' });
    expect(config.limits.maxMessageBytes).toBe(26214400);
    expect(config.listeners.relay?.address).toBe('0.0.0.0');
    expect(config.admin).toEqual({ address: '127.0.0.1', port: 9091 });
    expect(config.spool.dir).toBe(path.resolve('/etc/mailfleet/spool'));
    expect(config.domains[0]).toEqual({ name: 'example.com', allowedUsers: [], allowedSenders: [] });
    expect(files).toEqual([]);
  });

  test('schema errors name the field and the line', () => {
    const text = base.replace('port: 2525', 'port: "x"') + 'limits:\n  maxRecipients: 0\n  bogus: 1\n';
    expect(problems(text).sort()).toEqual([
      'relay.yaml:15: limits.maxRecipients: must be >= 1',
      'relay.yaml:16: limits.bogus: unknown field',
      'relay.yaml:5: listeners.relay.port: must be integer',
    ]);
  });

  test('missing required fields are named', () => {
    expect(problems('listeners: {}\n')).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/hostname: required field is missing$/),
        expect.stringMatching(/spool: required field is missing$/),
        expect.stringMatching(/delivery: required field is missing$/),
      ]),
    );
  });

  test('enum and pattern errors say what is allowed', () => {
    const text = base
      .replace('mode: direct', 'mode: carrier-pigeon')
      .replace('- name: example.com', '- name: not_a_domain');
    const p = problems(text);
    expect(p).toContain(
      'relay.yaml:8: domains[0].name: has the wrong format (A fully qualified DNS domain name, e.g. example.com.)',
    );
    expect(p).toContain('relay.yaml:13: delivery.route.mode: must be one of "smarthost", "direct"');
  });

  test('cross-field rules', () => {
    const text = `
hostname: relay.example.com
listeners:
  submission: { port: 587 }
  relay: { port: 587, address: 0.0.0.0, allowedNetworks: [10.0.0.1/8, bogus] }
domains:
  - name: example.com
  - name: EXAMPLE.com
    route: { mode: smarthost }
spool: { dir: /var/spool }
dns: { servers: [1.2.3.4, "[::1]:5353", "resolver.example"] }
delivery:
  route: { mode: smarthost }
`;
    expect(problems(text)).toEqual([
      'relay.yaml:4: listeners.submission: needs the tls section (certificate and key)',
      'relay.yaml:4: listeners.submission: needs the auth section (users file)',
      'relay.yaml:5: listeners.relay.allowedNetworks[0]: "10.0.0.1/8" has host bits set; did you mean 10.0.0.0/8?',
      'relay.yaml:5: listeners.relay.allowedNetworks[1]: "bogus" is not a CIDR (e.g. 10.0.0.0/8 or fd00::/8)',
      'relay.yaml:13: delivery.route.smarthost: required when mode is smarthost',
      'relay.yaml:9: domains[1].route.smarthost: required when mode is smarthost',
      'relay.yaml:8: domains[1].name: "EXAMPLE.com" is already domains[0]',
      'relay.yaml:5: listeners.relay: 0.0.0.0:587 is already used by listeners.submission',
      'relay.yaml:11: dns.servers: "resolver.example" is not "ip", "ip:port" or "[ipv6]:port"',
    ]);
  });

  test('per-client limits: defaults, and exempt networks are CIDRs', () => {
    const { config } = parseConfig(base, { source: 'relay.yaml', baseDir: '/etc' });
    expect(config.limits).toMatchObject({
      maxConnectionsPerClient: 100,
      connectionsPerMinutePerClient: 1200,
      exemptNetworks: ['127.0.0.0/8', '::1/128'],
    });
    expect(
      problems(`${base}limits: { exemptNetworks: [10.0.0.0/8, 10.0.0.1/8], maxConnectionsPerClient: -1 }\n`),
    ).toEqual(['relay.yaml:14: limits.maxConnectionsPerClient: must be >= 0']);
    expect(problems(`${base}limits: { exemptNetworks: [10.0.0.0/8, 10.0.0.1/8] }\n`)).toEqual([
      'relay.yaml:14: limits.exemptNetworks[1]: "10.0.0.1/8" has host bits set; did you mean 10.0.0.0/8?',
    ]);
  });

  test('proxyProtocol: trusted proxies are CIDRs, at least one', () => {
    const with_ = (proxy: string) =>
      problems(
        base.replace(
          '    allowedNetworks: [10.0.0.0/8]',
          `    allowedNetworks: [10.0.0.0/8]\n    proxyProtocol: ${proxy}`,
        ),
      );
    expect(with_('{ trustedProxies: [10.1.0.0/16] }')).toEqual([]);
    expect(with_('{ trustedProxies: [] }')).toEqual([
      'relay.yaml:7: listeners.relay.proxyProtocol.trustedProxies: must not have fewer than 1 items',
    ]);
    expect(with_('{ trustedProxies: [lb.example] }')).toEqual([
      'relay.yaml:7: listeners.relay.proxyProtocol.trustedProxies[0]: "lb.example" is not a CIDR (e.g. 10.0.0.0/8 or fd00::/8)',
    ]);
  });

  test('YAML syntax errors carry the line', () => {
    expect(problems('hostname: a\nlisteners: [\n')[0]).toMatch(/^relay\.yaml:\d+: YAML: /);
    expect(problems('hostname: a\nhostname: b\n')[0]).toMatch(
      /^relay\.yaml:2: YAML: .*[Mm]ap keys must be unique/,
    );
  });

  test('not a mapping: located like every other problem', () => {
    expect(problems('')).toEqual(['relay.yaml: the configuration must be a YAML mapping (key: value)']);
    expect(problems('- a\n- b\n')).toEqual([
      'relay.yaml:1: the configuration must be a YAML mapping (key: value)',
    ]);
  });

  test('referenced files are listed for the watcher, resolved', () => {
    const text = `${base}tls: { certFile: tls/cert.pem, keyFile: /abs/key.pem }\nauth: { usersFile: users }\n`;
    const { config, files } = parseConfig(text, { source: 'relay.yaml', baseDir: '/etc/mailfleet' });
    expect(config.auth?.throttle.lockoutAfterFailures).toBe(10);
    expect(files).toEqual([
      { field: 'tls.certFile', path: path.resolve('/etc/mailfleet/tls/cert.pem') },
      { field: 'tls.keyFile', path: '/abs/key.pem' },
      { field: 'auth.usersFile', path: path.resolve('/etc/mailfleet/users') },
    ]);
  });

  test('the embedded default is valid, loopback-only, with submission only when TLS files are given', () => {
    const plain = defaultConfig({ cwd: '/work' }).config;
    expect(plain.listeners.relay).toEqual({
      address: '127.0.0.1',
      port: 2525,
      allowedNetworks: ['127.0.0.0/8', '::1/128'],
    });
    expect(plain.listeners.submission).toBeUndefined();
    expect(plain.admin.address).toBe('127.0.0.1');
    expect(plain.spool.dir).toBe(path.resolve('/work/.spool'));
    const withTls = defaultConfig({
      cwd: '/work',
      tlsCertFile: '/c.pem',
      tlsKeyFile: '/k.pem',
      usersFile: '/u',
    }).config;
    expect(withTls.listeners.submission).toEqual({ address: '127.0.0.1', port: 2587 });
    expect(withTls.listeners.smtps).toEqual({ address: '127.0.0.1', port: 2465 });
    expect(withTls.tls?.minVersion).toBe('TLSv1.2');
    expect(validateConfig(defaultConfigObject(), { source: 'x', baseDir: '/' }).config.domains[0]?.name).toBe(
      'example.com',
    );
  });
});
