/**
 * The test control plane's credentials, generated fresh at every start into the state directory: one CA
 * that signs the API server's serving certificate and every client certificate (admin, controller
 * manager, scheduler, kwok), and the RSA key pair that signs and verifies service-account tokens.
 * RSA keys come from node:crypto; node-forge builds and signs the X.509 certificates.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import forge from 'node-forge';

export interface Pem {
  cert: string;
  key: string;
}

export interface ClientIdentity {
  /** The user name the API server sees (the certificate's CN). */
  user: string;
  /** Groups (the certificate's O values), e.g. system:masters. */
  groups: string[];
}

const HOUR = 3600 * 1000;
const LIFETIME = 30 * 24 * HOUR;

function rsaKey(): { keyPem: string; publicPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs1', format: 'pem' },
  });
  return { keyPem: privateKey, publicPem: publicKey };
}

function serial(): string {
  const b = randomBytes(16);
  b[0] = b[0]! & 0x7f; // positive
  return b.toString('hex');
}

function newCert(publicPem: string, subject: forge.pki.CertificateField[]): forge.pki.Certificate {
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(publicPem);
  cert.serialNumber = serial();
  cert.validity.notBefore = new Date(Date.now() - HOUR);
  cert.validity.notAfter = new Date(Date.now() + LIFETIME);
  cert.setSubject(subject);
  return cert;
}

export function issueCa(commonName: string): Pem {
  const { keyPem, publicPem } = rsaKey();
  const subject = [{ name: 'commonName', value: commonName }];
  const cert = newCert(publicPem, subject);
  cert.setIssuer(subject);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(forge.pki.privateKeyFromPem(keyPem), forge.md.sha256.create());
  return { cert: forge.pki.certificateToPem(cert), key: keyPem };
}

function signBy(ca: Pem, cert: forge.pki.Certificate, extensions: object[]): string {
  const caCert = forge.pki.certificateFromPem(ca.cert);
  cert.setIssuer(caCert.subject.attributes);
  cert.setExtensions([
    { name: 'basicConstraints', cA: false },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    ...extensions,
  ]);
  cert.sign(forge.pki.privateKeyFromPem(ca.key), forge.md.sha256.create());
  return forge.pki.certificateToPem(cert);
}

/** A serving certificate for the given DNS names and IP addresses. */
export function issueServing(ca: Pem, dnsNames: string[], ips: string[]): Pem {
  const { keyPem, publicPem } = rsaKey();
  const cert = newCert(publicPem, [{ name: 'commonName', value: dnsNames[0] ?? ips[0] ?? 'server' }]);
  const altNames = [...dnsNames.map((value) => ({ type: 2, value })), ...ips.map((ip) => ({ type: 7, ip }))];
  const pem = signBy(ca, cert, [
    { name: 'extKeyUsage', serverAuth: true },
    { name: 'subjectAltName', altNames },
  ]);
  return { cert: pem, key: keyPem };
}

/** A client certificate the API server maps to `user` in `groups` (CN and O, as kubeadm does). */
export function issueClient(ca: Pem, id: ClientIdentity): Pem {
  const { keyPem, publicPem } = rsaKey();
  const subject = [
    { name: 'commonName', value: id.user },
    ...id.groups.map((value) => ({ name: 'organizationName', value })),
  ];
  const pem = signBy(ca, newCert(publicPem, subject), [{ name: 'extKeyUsage', clientAuth: true }]);
  return { cert: pem, key: keyPem };
}

/** The service-account token key pair: the API server signs with the private key, verifies with the public. */
export function serviceAccountKeys(): { key: string; pub: string } {
  const { keyPem, publicPem } = rsaKey();
  return { key: keyPem, pub: publicPem };
}
