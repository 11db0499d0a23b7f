/**
 * Test certificates: a CA and server certificates signed by it, generated in the test (node-forge for
 * the X.509 structure; keys from node:crypto, which is much faster than forge's pure-JS RSA).
 *
 *   const ca = makeCa();
 *   const cert = makeCert(ca, { names: ['localhost', '127.0.0.1'] });
 *   await writeCert(dir, cert)   → { certFile, keyFile } for the relay config
 *   nodemailer: tls: { ca: ca.certPem, servername: 'localhost' }
 *   swaks: --tls-ca-path <ca file>
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import forge from 'node-forge';

export interface KeyAndCert {
  keyPem: string;
  certPem: string;
  /** SHA-256 fingerprint in Node's X509Certificate.fingerprint256 form (AA:BB:…). */
  fingerprint256: string;
}

function rsaKeys(): {
  publicKey: forge.pki.rsa.PublicKey;
  privateKey: forge.pki.rsa.PrivateKey;
  keyPem: string;
} {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const keyPem = privateKey.export({ type: 'pkcs1', format: 'pem' }).toString();
  const forgeKey = forge.pki.privateKeyFromPem(keyPem);
  return { privateKey: forgeKey, publicKey: forge.pki.setRsaPublicKey(forgeKey.n, forgeKey.e), keyPem };
}

function fingerprint(cert: forge.pki.Certificate): string {
  const der = forge.asn1.toDer(forge.pki.certificateToAsn1(cert)).getBytes();
  const md = forge.md.sha256.create();
  md.update(der);
  return (md.digest().toHex().toUpperCase().match(/../g) ?? []).join(':');
}

function build(opts: {
  subject: string;
  issuer?: { cert: forge.pki.Certificate; key: forge.pki.rsa.PrivateKey };
  ca: boolean;
  names?: string[];
  notBefore?: Date;
  notAfter?: Date;
}): KeyAndCert & { cert: forge.pki.Certificate; key: forge.pki.rsa.PrivateKey } {
  const keys = rsaKeys();
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  cert.serialNumber = '01' + randomBytes(8).toString('hex');
  cert.validity.notBefore = opts.notBefore ?? new Date(Date.now() - 60_000);
  cert.validity.notAfter = opts.notAfter ?? new Date(Date.now() + 30 * 86_400_000);
  const attrs = [{ name: 'commonName', value: opts.subject }];
  cert.setSubject(attrs);
  cert.setIssuer(opts.issuer ? opts.issuer.cert.subject.attributes : attrs);
  const extensions: object[] = [{ name: 'basicConstraints', cA: opts.ca, critical: true }];
  if (opts.ca) extensions.push({ name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true });
  else {
    extensions.push({ name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true });
    extensions.push({ name: 'extKeyUsage', serverAuth: true });
    extensions.push({
      name: 'subjectAltName',
      altNames: (opts.names ?? []).map((n) => (net.isIP(n) ? { type: 7, ip: n } : { type: 2, value: n })),
    });
  }
  cert.setExtensions(extensions);
  cert.sign(opts.issuer?.key ?? keys.privateKey, forge.md.sha256.create());
  return {
    cert,
    key: keys.privateKey,
    keyPem: keys.keyPem,
    certPem: forge.pki.certificateToPem(cert),
    fingerprint256: fingerprint(cert),
  };
}

export type TestCa = ReturnType<typeof makeCa>;

export function makeCa(name = 'mailfleet test CA') {
  return build({ subject: name, ca: true });
}

/** A server certificate for `names` (DNS names and IP addresses), signed by `ca`. */
export function makeCert(ca: TestCa, opts: { names?: string[]; notAfter?: Date } = {}): KeyAndCert {
  const names = opts.names ?? ['localhost', '127.0.0.1'];
  const { keyPem, certPem, fingerprint256 } = build({
    subject: names[0] ?? 'localhost',
    issuer: { cert: ca.cert, key: ca.key },
    ca: false,
    names,
    notAfter: opts.notAfter,
  });
  return { keyPem, certPem, fingerprint256 };
}

/** Writes cert.pem and key.pem (mode 0600) into `dir`; returns their paths. */
export async function writeCert(
  dir: string,
  cert: KeyAndCert,
  prefix = '',
): Promise<{ certFile: string; keyFile: string }> {
  const certFile = path.join(dir, `${prefix}cert.pem`);
  const keyFile = path.join(dir, `${prefix}key.pem`);
  await fs.writeFile(certFile, cert.certPem);
  await fs.writeFile(keyFile, cert.keyPem, { mode: 0o600 });
  return { certFile, keyFile };
}
