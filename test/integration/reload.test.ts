/**
 * Reload without restart and without dropping sessions: the config file, the users file and the TLS
 * certificate change (the certificate and users file through a Kubernetes-style `..data` symlink swap)
 * while a session is in the middle of a transaction. Bad new configs are rejected and counted while the
 * old one stays in force.
 */
import path from 'node:path';
import tls from 'node:tls';
import { hashPassword } from '../../relay/auth/passwords.js';
import { a, mx, startDnsServer, type TestDnsServer } from '../helpers/dns.js';
import { makeTempDir, relayConfig, startRelay, type RelayProcess } from '../helpers/relay.js';
import { SmtpClient, authPlain } from '../helpers/smtp-client.js';
import { makeCa, makeCert, type KeyAndCert, type TestCa } from '../helpers/tls.js';
import { ProjectedVolume } from '../helpers/volume.js';

jest.setTimeout(60_000);

let dns: TestDnsServer;
let relay: RelayProcess;
let ca: TestCa;
let secrets: ProjectedVolume;
let hashes: Record<string, string>;
let certs: KeyAndCert[];

const tlsOpts = () => ({ ca: ca.certPem, servername: 'localhost' });
const users = (names: string[]) => names.map((n) => `${n}:${hashes[n]}\n`).join('');
const secretFiles = (cert: KeyAndCert, names: string[]) => ({
  'cert.pem': cert.certPem,
  'key.pem': cert.keyPem,
  users: users(names),
});

function config(domains: object[], extra: object = {}) {
  return relayConfig({
    listeners: { smtps: { address: '127.0.0.1', port: 0 } },
    tls: { certFile: 'secrets/cert.pem', keyFile: 'secrets/key.pem' },
    auth: { usersFile: 'secrets/users' },
    domains,
    dns: { servers: [dns.server], timeoutMs: 2000, tries: 1 },
    ...extra,
  });
}
const V1 = () => config([{ name: 'example.com', allowedUsers: ['alice'] }]);
const V2 = () =>
  config([
    { name: 'example.com', allowedUsers: ['alice'] },
    { name: 'new.example', allowedUsers: ['bob'] },
  ]);

async function session(user: string, password = `${user}-pw`): Promise<SmtpClient> {
  const c = await SmtpClient.connect(relay.ports.smtps!, { tls: tlsOpts() });
  await c.command('EHLO client.test');
  const r = await c.command(`AUTH PLAIN ${authPlain(user, password)}`);
  if (r.code !== 235) throw new Error(`AUTH as ${user}: ${r.raw}`);
  return c;
}

async function fingerprintSeen(): Promise<string> {
  const c = await SmtpClient.connect(relay.ports.smtps!, { tls: tlsOpts() });
  const fp = (c.tlsSocket as tls.TLSSocket).getPeerX509Certificate()!.fingerprint256;
  c.close();
  return fp;
}

beforeAll(async () => {
  dns = await startDnsServer({ records: [mx('mx.test', 'mail.mx.test'), a('mail.mx.test', '127.0.0.1')] });
  ca = makeCa();
  certs = [makeCert(ca), makeCert(ca), makeCert(ca, { names: ['wrong.example'] })];
  hashes = Object.fromEntries(
    await Promise.all(
      ['alice', 'bob'].map(async (u) => [u, await hashPassword(`${u}-pw`, { ln: 10, r: 8, p: 1 })]),
    ),
  );
  const dir = await makeTempDir();
  secrets = await ProjectedVolume.create(path.join(dir, 'secrets'), secretFiles(certs[0]!, ['alice']));
  relay = await startRelay({ dir, config: V1() });
});

afterAll(async () => {
  await relay?.stop();
  await dns?.stop();
});

test('config, users and certificate change mid-transaction; the session finishes, new sessions see it all', async () => {
  expect(await fingerprintSeen()).toBe(certs[0]!.fingerprint256);
  const expiryBefore = await relay.metric('mailfleet_relay_tls_certificate_expiry_timestamp_seconds');
  expect(expiryBefore).toBeGreaterThan(Date.now() / 1000);

  const inFlight = await session('alice');
  expect((await inFlight.command('MAIL FROM:<alice@example.com>')).code).toBe(250);

  const reloaded = relay.nextLog((l) => l.event === 'config_reloaded');
  const certLoaded = relay.nextLog((l) => l.msg === 'TLS certificate loaded');
  await secrets.update(secretFiles(certs[1]!, ['alice', 'bob']));
  await relay.writeConfig(V2());
  await reloaded;
  await certLoaded;

  // The open session was not dropped; its TLS session keeps the old certificate.
  expect((await inFlight.command('RCPT TO:<r@mx.test>')).code).toBe(250);
  expect((await inFlight.command('DATA')).code).toBe(354);
  expect((await inFlight.command('Subject: across a reload\r\n\r\nstill here\r\n.')).raw).toMatch(
    /^250 2\.0\.0 Ok: queued as /,
  );
  expect(inFlight.tlsSocket!.getPeerX509Certificate()!.fingerprint256).toBe(certs[0]!.fingerprint256);
  inFlight.close();

  // New sessions: the new certificate, the new user, the new domain.
  expect(await fingerprintSeen()).toBe(certs[1]!.fingerprint256);
  const bob = await session('bob');
  expect((await bob.command('MAIL FROM:<bob@new.example>')).code).toBe(250);
  bob.close();
  expect(
    await relay.metric('mailfleet_relay_config_reloads_total', { result: 'success' }),
  ).toBeGreaterThanOrEqual(1);
  expect(await relay.metric('mailfleet_relay_config_last_reload_successful')).toBe(1);
});

test('a bad config is rejected with the field named; the old one stays in force', async () => {
  const rejected = relay.nextLog((l) => l.event === 'config_rejected');
  const broken = V2() as { limits?: object };
  broken.limits = { maxRecipients: -1 };
  await relay.writeConfig(broken);
  const log = await rejected;
  expect(log.problems).toEqual([
    expect.stringMatching(/^relay\.yaml:\d+: limits\.maxRecipients: must be >= 1$/),
  ]);
  expect(await relay.metric('mailfleet_relay_config_last_reload_successful')).toBe(0);
  expect(await relay.metric('mailfleet_relay_config_reloads_total', { result: 'failure' })).toBe(1);

  const bob = await session('bob');
  expect((await bob.command('MAIL FROM:<bob@new.example>')).code).toBe(250);
  bob.close();

  const reloaded = relay.nextLog((l) => l.event === 'config_reloaded');
  await relay.writeConfig(V2());
  await reloaded;
  expect(await relay.metric('mailfleet_relay_config_last_reload_successful')).toBe(1);
});

test('a certificate that does not match its key, or a broken users file, is refused as a whole', async () => {
  const rejected = relay.nextLog((l) => l.event === 'config_rejected');
  await secrets.update({
    'cert.pem': certs[2]!.certPem,
    'key.pem': certs[1]!.keyPem,
    users: users(['alice', 'bob']) + 'carol:not-a-hash\n',
  });
  const log = await rejected;
  expect(log.problems).toEqual([
    expect.stringMatching(/^auth\.usersFile: users file .*: line 3 \(user "carol"\): not a \$scrypt/),
    'tls.keyFile: the key does not match the certificate in tls.certFile',
  ]);
  expect(await fingerprintSeen()).toBe(certs[1]!.fingerprint256);
  (await session('bob')).close();

  const reloaded = relay.nextLog((l) => l.event === 'config_reloaded');
  await secrets.update(secretFiles(certs[0]!, ['alice']));
  await reloaded;
  expect(await fingerprintSeen()).toBe(certs[0]!.fingerprint256);
  await expect(session('bob')).rejects.toThrow(/535 5\.7\.8/);
});

test('SIGHUP reloads at once', async () => {
  const reloaded = relay.nextLog((l) => l.event === 'config_reloaded');
  process.kill(relay.pid, 'SIGHUP');
  await reloaded;
});

test('listener changes need a restart: logged, not applied', async () => {
  const warned = relay.nextLog((l) => l.msg === 'configuration changes that need a restart were not applied');
  const moved = V1() as { listeners: { smtps: { port: number } } };
  moved.listeners.smtps.port = 1;
  await relay.writeConfig(moved);
  expect((await warned).fields).toEqual(['listeners.smtps address/port']);
  (await session('alice')).close();
});
