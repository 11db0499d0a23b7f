/**
 * Gathering what the relay's Secrets and config need: passwords (kept or generated), TLS (kept, issued or
 * read), smarthost credentials and per-domain DKIM keys and route credentials (read). The only impure step
 * of the SmtpRelay reconcile besides API calls: it reads caches and, through `generate` (create-if-absent,
 * operator/shared/generated.ts), stores random material when none exists yet. Everything it returns is plain data
 * for the pure render.
 */
import { b64, type SecretReader } from '../shared/context.js';
import type { Generate } from '../shared/generated.js';
import type { SmtpRelay } from '../api/smtprelay.js';
import type { MailDomain } from '../api/maildomain.js';
import { dkimSecretOf } from '../shared/binding.js';
import type { BoundDomain, FleetStoreFiles } from './config.js';
import { HANDOFF_USER, RUNTIME_KEYS, names } from './names.js';
import { generatePassword, usersFile } from './passwords.js';
import { certificateDnsNames, ownedSecret } from './render.js';
import { evaluateCa, evaluateServerCert, issueCa, issueServerCert, renewalDueAt, type Pem } from './tls.js';
import type { Problem } from './status.js';

export interface Material {
  runtime: Record<string, string>;
  credentials: Record<string, string>;
  internal: Record<string, string>;
  ca?: Record<string, string>;
  tls?: Record<string, string>;
  adminToken: string;
  /** Problems that block the rollout. */
  blocking: Problem[];
  tlsStatus: { ready: boolean; reason: string; message: string };
  hasTls: boolean;
  hasCa: boolean;
  caSecret?: string;
  smarthostCredentials: boolean;
  smarthostCa: boolean;
  /** Which fleet store credentials are in the runtime Secret. */
  fleetStore: FleetStoreFiles;
  domains: BoundDomain[];
  /** When TLS must be looked at again (ms since epoch). */
  renewAt?: number;
}

const text = (b: Buffer | undefined) => b?.toString('utf8');

async function users(
  relay: SmtpRelay,
  reader: SecretReader,
  generate: Generate,
  m: Material,
  handoff: string,
  liveUsers?: string,
) {
  const n = names(relay.metadata.name);
  const generatedUsers = relay.spec.users
    .filter((u) => u.name !== HANDOFF_USER && !u.passwordSecretRef)
    .map((u) => u.name);
  const { data: liveCreds } = await generate({
    name: n.credentials,
    needs: (d) => generatedUsers.some((u) => !text(d?.[u])),
    build: (live) =>
      Promise.resolve(
        ownedSecret(
          relay,
          n.credentials,
          Object.fromEntries(generatedUsers.map((u) => [u, b64(text(live?.[u]) || generatePassword())])),
        ),
      ),
  });
  const passwords = new Map<string, string>([[HANDOFF_USER, handoff]]);
  for (const u of relay.spec.users) {
    if (u.name === HANDOFF_USER) {
      m.blocking.push({
        reason: 'ReservedUserName',
        message: `user name ${HANDOFF_USER} is reserved for peer handoff; rename the user`,
      });
      continue;
    }
    if (u.passwordSecretRef) {
      const r = reader.key(
        u.passwordSecretRef.name,
        u.passwordSecretRef.key,
        `password of SMTP user ${u.name}`,
      );
      if ('value' in r) passwords.set(u.name, r.value.trim());
      else m.blocking.push(r);
      continue;
    }
    const pw = text(liveCreds[u.name]);
    if (!pw) throw new Error(`generated password of SMTP user ${u.name} is missing after generation`);
    passwords.set(u.name, pw);
    m.credentials[u.name] = b64(pw);
  }
  m.runtime[RUNTIME_KEYS.users] = b64(await usersFile(passwords, liveUsers));
}

const pemOf = (d: Record<string, Buffer> | undefined, cert: string, key: string): Pem | undefined =>
  d ? { cert: text(d[cert]) ?? '', key: text(d[key]) ?? '' } : undefined;

async function operatorTls(relay: SmtpRelay, generate: Generate, m: Material, nowMs: number) {
  const n = names(relay.metadata.name);
  const caData = await generate({
    name: n.ca,
    needs: (d) => !evaluateCa(pemOf(d, 'ca.crt', 'ca.key'), nowMs).ok,
    build: async () => {
      const ca = await issueCa(`mailfleet ${relay.metadata.namespace}/${relay.metadata.name} CA`, nowMs);
      return ownedSecret(relay, n.ca, { 'ca.crt': b64(ca.cert), 'ca.key': b64(ca.key) });
    },
  });
  const ca = pemOf(caData.data, 'ca.crt', 'ca.key')!;
  const dns = certificateDnsNames(relay);
  const tlsData = await generate({
    name: n.tls,
    needs: (d) => !evaluateServerCert(pemOf(d, 'tls.crt', 'tls.key'), ca, dns, nowMs).ok,
    build: async () => {
      const cert = await issueServerCert(ca, dns, nowMs);
      return ownedSecret(relay, n.tls, tlsSecretData(cert, ca), 'kubernetes.io/tls');
    },
  });
  const cert = pemOf(tlsData.data, 'tls.crt', 'tls.key')!;
  m.ca = { 'ca.crt': b64(ca.cert), 'ca.key': b64(ca.key) };
  m.tls = tlsSecretData(cert, ca);
  m.renewAt = renewalDueAt(cert);
  return { cert: cert.cert, key: cert.key, ca: ca.cert };
}

const tlsSecretData = (cert: Pem, ca: Pem) => ({
  'tls.crt': b64(cert.cert),
  'tls.key': b64(cert.key),
  'ca.crt': b64(ca.cert),
});

function secretTls(name: string, reader: SecretReader, m: Material, what: string) {
  const s = reader.get(name);
  const cert = text(s?.['tls.crt']);
  const key = text(s?.['tls.key']);
  if (!s || !cert || !key) {
    m.tlsStatus = {
      ready: false,
      reason: s ? 'SecretKeyMissing' : 'SecretNotFound',
      message: s
        ? `Secret ${name} (${what}) lacks tls.crt or tls.key`
        : `Secret ${name} (${what}) does not exist yet`,
    };
    return undefined;
  }
  return { cert, key, ca: text(s['ca.crt']) };
}

async function tlsMaterial(
  relay: SmtpRelay,
  reader: SecretReader,
  generate: Generate,
  m: Material,
  certManager: boolean,
  nowMs: number,
) {
  const spec = relay.spec.tls;
  let got: { cert: string; key: string; ca?: string } | undefined;
  if (spec.secretName) {
    got = secretTls(spec.secretName, reader, m, 'spec.tls.secretName');
    m.caSecret = spec.secretName;
  } else if (spec.issuerRef) {
    if (!certManager) {
      m.tlsStatus = {
        ready: false,
        reason: 'CertManagerMissing',
        message:
          'spec.tls.issuerRef is set but the cert-manager.io/v1 Certificate API is not served in this cluster; install cert-manager or drop issuerRef',
      };
    } else {
      got = secretTls(names(relay.metadata.name).certManagerTls, reader, m, 'written by cert-manager');
      m.caSecret = names(relay.metadata.name).certManagerTls;
    }
  } else {
    got = await operatorTls(relay, generate, m, nowMs);
    m.caSecret = names(relay.metadata.name).tls;
  }
  if (!got) {
    if (needsTls(relay)) m.blocking.push({ reason: 'TLSNotReady', message: m.tlsStatus.message });
    return;
  }
  m.runtime[RUNTIME_KEYS.tlsCert] = b64(got.cert);
  m.runtime[RUNTIME_KEYS.tlsKey] = b64(got.key);
  m.hasTls = true;
  if (got.ca) {
    m.runtime[RUNTIME_KEYS.ca] = b64(got.ca);
    m.hasCa = true;
  }
  const source = spec.secretName
    ? `Secret ${spec.secretName}`
    : spec.issuerRef
      ? `cert-manager (${spec.issuerRef.kind} ${spec.issuerRef.name})`
      : 'the operator CA';
  m.tlsStatus = { ready: true, reason: 'CertificateReady', message: `serving a certificate from ${source}` };
}

const needsTls = (relay: SmtpRelay) =>
  relay.spec.listeners.submission.enabled || relay.spec.listeners.smtps.enabled;

function smarthost(relay: SmtpRelay, reader: SecretReader, m: Material) {
  const s = relay.spec.delivery.route.mode === 'smarthost' ? relay.spec.delivery.route.smarthost : undefined;
  if (!s) return;
  if (s.credentialsSecretRef) {
    const what = 'spec.delivery.route.smarthost.credentialsSecretRef';
    const u = reader.key(s.credentialsSecretRef.name, 'username', what);
    const p = reader.key(s.credentialsSecretRef.name, 'password', what);
    if ('value' in u && 'value' in p) {
      m.runtime[RUNTIME_KEYS.smarthostUsername] = b64(u.value.trim());
      m.runtime[RUNTIME_KEYS.smarthostPassword] = b64(p.value.trim());
      m.smarthostCredentials = true;
    } else m.blocking.push('value' in u ? (p as Problem) : u);
  }
  if (s.caSecretRef) {
    const c = reader.key(s.caSecretRef.name, s.caSecretRef.key, 'spec.delivery.route.smarthost.caSecretRef');
    if ('value' in c) {
      m.runtime[RUNTIME_KEYS.smarthostCa] = b64(c.value);
      m.smarthostCa = true;
    } else m.blocking.push(c);
  }
}

/** The fleet store's credentials and CA, copied into the runtime Secret like the smarthost's. */
function fleetStore(relay: SmtpRelay, reader: SecretReader, m: Material) {
  const s = relay.spec.fleetStore;
  if (!s) return;
  const refs = [
    ['username', s.usernameSecretRef, RUNTIME_KEYS.fleetStoreUsername, true],
    ['password', s.passwordSecretRef, RUNTIME_KEYS.fleetStorePassword, true],
    ['ca', s.caSecretRef, RUNTIME_KEYS.fleetStoreCa, false],
  ] as const;
  for (const [what, ref, key, trim] of refs) {
    if (!ref) continue;
    const v = reader.key(ref.name, ref.key, `spec.fleetStore.${what}SecretRef`);
    if ('value' in v) {
      m.runtime[key] = b64(trim ? v.value.trim() : v.value);
      m.fleetStore[what] = true;
    } else m.blocking.push(v);
  }
}

/** Per-domain material; a domain whose DKIM key or route credentials are missing is left out (its MailDomain says why). */
function domainMaterial(bound: readonly MailDomain[], reader: SecretReader, m: Material) {
  for (const d of bound) {
    const name = d.spec.domain.toLowerCase();
    const entries: Record<string, string> = {};
    const b: BoundDomain = { domain: d, dkimKey: false, routeCredentials: false, routeCa: false };
    let ok = true;
    if (d.spec.dkim.enabled) {
      const ref = dkimSecretOf(d);
      const k = reader.key(ref.name, ref.key, 'DKIM key');
      if ('value' in k) {
        entries[RUNTIME_KEYS.dkim(name)] = b64(k.value);
        b.dkimKey = true;
      } else ok = false;
    }
    const sh = d.spec.route?.mode === 'smarthost' ? d.spec.route.smarthost : undefined;
    if (sh?.credentialsSecretRef) {
      const u = reader.key(sh.credentialsSecretRef.name, 'username', 'route credentials');
      const p = reader.key(sh.credentialsSecretRef.name, 'password', 'route credentials');
      if ('value' in u && 'value' in p) {
        entries[RUNTIME_KEYS.routeUsername(name)] = b64(u.value.trim());
        entries[RUNTIME_KEYS.routePassword(name)] = b64(p.value.trim());
        b.routeCredentials = true;
      } else ok = false;
    }
    if (sh?.caSecretRef) {
      const c = reader.key(sh.caSecretRef.name, sh.caSecretRef.key, 'route CA');
      if ('value' in c) {
        entries[RUNTIME_KEYS.routeCa(name)] = b64(c.value);
        b.routeCa = true;
      } else ok = false;
    }
    if (!ok) continue;
    Object.assign(m.runtime, entries);
    m.domains.push(b);
  }
}

export async function gatherMaterial(
  relay: SmtpRelay,
  reader: SecretReader,
  bound: readonly MailDomain[],
  opts: { certManager: boolean; nowMs: number; generate: Generate },
): Promise<Material> {
  const n = names(relay.metadata.name);
  const m: Material = {
    runtime: {},
    credentials: {},
    internal: {},
    adminToken: '',
    blocking: [],
    tlsStatus: { ready: false, reason: 'Pending', message: 'not evaluated' },
    hasTls: false,
    hasCa: false,
    smarthostCredentials: false,
    smarthostCa: false,
    fleetStore: { username: false, password: false, ca: false },
    domains: [],
  };
  const keys = [RUNTIME_KEYS.handoffPassword, RUNTIME_KEYS.adminToken];
  const { data: internal } = await opts.generate({
    name: n.internal,
    needs: (d) => keys.some((k) => !text(d?.[k])),
    build: (live) =>
      Promise.resolve(
        ownedSecret(
          relay,
          n.internal,
          Object.fromEntries(keys.map((k) => [k, b64(text(live?.[k]) || generatePassword())])),
        ),
      ),
  });
  const handoff = text(internal[RUNTIME_KEYS.handoffPassword])!;
  m.adminToken = text(internal[RUNTIME_KEYS.adminToken])!;
  m.internal = { [RUNTIME_KEYS.handoffPassword]: b64(handoff), [RUNTIME_KEYS.adminToken]: b64(m.adminToken) };
  m.runtime[RUNTIME_KEYS.handoffPassword] = b64(handoff);
  m.runtime[RUNTIME_KEYS.adminToken] = b64(m.adminToken);
  const liveRuntime = reader.get(n.runtime);
  await users(relay, reader, opts.generate, m, handoff, text(liveRuntime?.[RUNTIME_KEYS.users]));
  await tlsMaterial(relay, reader, opts.generate, m, opts.certManager, opts.nowMs);
  smarthost(relay, reader, m);
  fleetStore(relay, reader, m);
  domainMaterial(bound, reader, m);
  return m;
}
