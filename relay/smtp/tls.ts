/**
 * Server TLS material from the certificate and key files (config.tls), checked before use: both files
 * readable, the certificate parses, the key matches it, and Node can build a secure context from them.
 * A rotation that fails any check is refused and the previous material stays in force (main.ts).
 *
 * Certificates are applied to running listeners with SMTPServer.updateSecureContext(), which replaces
 * the default context every new STARTTLS or implicit-TLS handshake takes; sessions already encrypted
 * keep theirs. Minimum protocol version comes from tls.minVersion (TLS 1.2 unless raised).
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import tls from 'node:tls';
import type { TlsConfig } from '../config/schema.js';

export interface TlsMaterial {
  key: Buffer;
  cert: Buffer;
  minVersion: tls.SecureVersion;
  /** notAfter of the leaf certificate, epoch ms. */
  notAfter: number;
  subject: string;
  fingerprint256: string;
}

export class TlsFileError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
  }
}

async function read(field: string, file: string): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (err) {
    throw new TlsFileError(field, `cannot read ${file}: ${(err as Error).message}`);
  }
}

export async function loadTlsMaterial(config: TlsConfig): Promise<TlsMaterial> {
  const [cert, key] = await Promise.all([
    read('tls.certFile', config.certFile),
    read('tls.keyFile', config.keyFile),
  ]);
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch (err) {
    throw new TlsFileError('tls.certFile', `not a PEM certificate: ${(err as Error).message}`);
  }
  try {
    if (!x509.checkPrivateKey(createPrivateKey(key)))
      throw new TlsFileError('tls.keyFile', 'the key does not match the certificate in tls.certFile');
  } catch (err) {
    if (err instanceof TlsFileError) throw err;
    throw new TlsFileError('tls.keyFile', `not a PEM private key: ${(err as Error).message}`);
  }
  const minVersion = config.minVersion as tls.SecureVersion;
  try {
    tls.createSecureContext({ key, cert, minVersion });
  } catch (err) {
    throw new TlsFileError('tls', `unusable certificate/key: ${(err as Error).message}`);
  }
  return {
    key,
    cert,
    minVersion,
    notAfter: Date.parse(x509.validTo),
    subject: x509.subject,
    fingerprint256: x509.fingerprint256,
  };
}

/** The options smtp-server takes for its secure context. */
export function secureContextOptions(m: TlsMaterial): tls.SecureContextOptions {
  return { key: m.key, cert: m.cert, minVersion: m.minVersion };
}
