/**
 * Operator-managed TLS: a CA per SmtpRelay and a server certificate it signs for the relay's Service names
 * (and every pod through the headless Service, which peer handoff verifies).
 *
 * Decisions (`evaluateTls`) are pure over parsed certificates and the clock; key generation is the only
 * side effect (`issue*`). The CA lives 10 years and is replaced when less than a year is left; the server
 * certificate lives 90 days and is renewed when less than 30 days are left, or when its names, CA or key no
 * longer match. RSA 2048 keys come from node:crypto (shared/keygen.ts: off the event loop); node-forge (pure JS) builds the
 * X.509 and node:crypto signs it: forge's own RSA signature held the event loop ~100 ms a certificate.
 */
import { constants, privateEncrypt, randomBytes } from 'node:crypto';
import { generatePrivateKeyPem } from '../shared/keygen.js';
import forge from 'node-forge';

const DAY = 24 * 3600 * 1000;
export const CA_LIFETIME = 3650 * DAY;
export const CA_RENEW_BEFORE = 365 * DAY;
export const CERT_LIFETIME = 90 * DAY;
export const CERT_RENEW_BEFORE = 30 * DAY;

export interface Pem {
  cert: string;
  key: string;
}

// A relay's keys come before the DKIM keys of its domains (which wait for the relay anyway).
const rsaKeyPem = () => generatePrivateKeyPem({ type: 'rsa', bits: 2048 }, 'first');

/** DER prefix of a PKCS#1 v1.5 DigestInfo for SHA-256 (RFC 8017 §9.2, note 1). */
const SHA256_DIGEST_INFO = Buffer.from('3031300d060960864801650304020105000420', 'hex');

/** A signer with forge's key interface (sign(md) → binary string) that signs natively (RSASSA-PKCS1-v1_5). */
function nativeSigner(keyPem: string): forge.pki.rsa.PrivateKey {
  return {
    sign(md: forge.md.MessageDigest) {
      const digest = Buffer.from(md.digest().getBytes(), 'binary');
      const info = Buffer.concat([SHA256_DIGEST_INFO, digest]);
      return privateEncrypt({ key: keyPem, padding: constants.RSA_PKCS1_PADDING }, info).toString('binary');
    },
  } as unknown as forge.pki.rsa.PrivateKey;
}

function serial(): string {
  const b = randomBytes(16);
  b[0] = b[0]! & 0x7f; // positive
  return b.toString('hex');
}

export async function issueCa(commonName: string, nowMs: number): Promise<Pem> {
  const keyPem = await rsaKeyPem();
  const key = forge.pki.privateKeyFromPem(keyPem);
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.setRsaPublicKey(key.n, key.e);
  cert.serialNumber = serial();
  cert.validity.notBefore = new Date(nowMs - 5 * 60 * 1000);
  cert.validity.notAfter = new Date(nowMs + CA_LIFETIME);
  const subject = [
    { name: 'commonName', value: commonName },
    { name: 'organizationName', value: 'mailfleet' },
  ];
  cert.setSubject(subject);
  cert.setIssuer(subject);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(nativeSigner(keyPem), forge.md.sha256.create());
  return { cert: forge.pki.certificateToPem(cert), key: keyPem };
}

export async function issueServerCert(ca: Pem, dnsNames: string[], nowMs: number): Promise<Pem> {
  const keyPem = await rsaKeyPem();
  const key = forge.pki.privateKeyFromPem(keyPem);
  const caCert = forge.pki.certificateFromPem(ca.cert);
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.setRsaPublicKey(key.n, key.e);
  cert.serialNumber = serial();
  cert.validity.notBefore = new Date(nowMs - 5 * 60 * 1000);
  cert.validity.notAfter = new Date(nowMs + CERT_LIFETIME);
  cert.setSubject([{ name: 'commonName', value: dnsNames[0] ?? 'mailfleet-relay' }]);
  cert.setIssuer(caCert.subject.attributes);
  cert.setExtensions([
    { name: 'basicConstraints', cA: false },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true, clientAuth: true },
    { name: 'subjectAltName', altNames: dnsNames.map((value) => ({ type: 2, value })) },
  ]);
  cert.sign(nativeSigner(ca.key), forge.md.sha256.create());
  return { cert: forge.pki.certificateToPem(cert), key: keyPem };
}

export type TlsVerdict = { ok: true } | { ok: false; reason: string };

/**
 * Parsing and verifying in node-forge is pure JavaScript (an RSA key parse and a signature check take
 * milliseconds on the event loop), and every reconcile of every relay looks at the same few PEMs: the
 * results are kept per PEM text (bounded: cleared when full), so only new material costs anything.
 */
const MEMO_LIMIT = 4096;
function memo<T>(cache: Map<string, T>, key: string, compute: () => T): T {
  const hit = cache.get(key);
  if (hit !== undefined) return hit;
  const v = compute();
  if (cache.size >= MEMO_LIMIT) cache.clear();
  cache.set(key, v);
  return v;
}

interface Parsed {
  cert: forge.pki.Certificate;
  notAfter: number;
  keyMatches: boolean;
}
const parsedMemo = new Map<string, Parsed | null>();
const certMemo = new Map<string, forge.pki.Certificate | null>();
const verifyMemo = new Map<string, boolean>();

function certificate(pem: string): forge.pki.Certificate | undefined {
  return (
    memo(certMemo, pem, () => {
      try {
        return forge.pki.certificateFromPem(pem);
      } catch {
        return null;
      }
    }) ?? undefined
  );
}

function parse(pem: Pem | undefined): Parsed | undefined {
  if (!pem?.cert || !pem.key) return undefined;
  return (
    memo(parsedMemo, `${pem.cert}\u0000${pem.key}`, () => {
      try {
        const cert = certificate(pem.cert);
        if (!cert) return null;
        const key = forge.pki.privateKeyFromPem(pem.key);
        const pub = cert.publicKey as forge.pki.rsa.PublicKey;
        return {
          cert,
          notAfter: cert.validity.notAfter.getTime(),
          keyMatches: pub.n.equals(key.n) && pub.e.equals(key.e),
        };
      } catch {
        return null;
      }
    }) ?? undefined
  );
}

function signedBy(caPem: string, certPem: string, cert: forge.pki.Certificate): boolean {
  return memo(verifyMemo, `${caPem}\u0000${certPem}`, () => {
    try {
      return certificate(caPem)?.verify(cert) ?? false;
    } catch {
      return false;
    }
  });
}

/** Whether the stored CA can be kept. */
export function evaluateCa(ca: Pem | undefined, nowMs: number): TlsVerdict {
  const p = parse(ca);
  if (!p) return { ok: false, reason: 'no CA yet' };
  if (!p.keyMatches) return { ok: false, reason: 'CA key does not match its certificate' };
  if (p.notAfter - nowMs < CA_RENEW_BEFORE) return { ok: false, reason: 'CA expires soon' };
  return { ok: true };
}

/** Whether the stored server certificate can be kept under this CA for these names. */
export function evaluateServerCert(
  cert: Pem | undefined,
  ca: Pem,
  dnsNames: string[],
  nowMs: number,
): TlsVerdict {
  const p = parse(cert);
  if (!p) return { ok: false, reason: 'no certificate yet' };
  if (!p.keyMatches) return { ok: false, reason: 'key does not match the certificate' };
  if (!signedBy(ca.cert, cert!.cert, p.cert))
    return { ok: false, reason: 'certificate is not signed by the current CA' };
  const san: { altNames?: Array<{ value: string }> } | undefined = p.cert.getExtension('subjectAltName');
  const have = (san?.altNames ?? []).map((a) => a.value).sort();
  if (JSON.stringify(have) !== JSON.stringify([...dnsNames].sort()))
    return { ok: false, reason: 'DNS names changed' };
  if (p.notAfter - nowMs < CERT_RENEW_BEFORE) return { ok: false, reason: 'certificate expires soon' };
  return { ok: true };
}

/** When the server certificate must next be looked at (its renewal time), for requeueing. */
export function renewalDueAt(cert: Pem): number | undefined {
  const p = parse(cert);
  return p ? p.notAfter - CERT_RENEW_BEFORE : undefined;
}
