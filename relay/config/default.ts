/**
 * The embedded default configuration: what `mailfleet-relay` runs without --config. Safe to start on
 * any machine: loopback only, unprivileged ports, the spool under ./.spool of the working directory.
 *
 *   relay listener   127.0.0.1:2525  no AUTH, clients from 127.0.0.0/8 and ::1/128 only
 *   admin (HTTP)     127.0.0.1:9091  /metrics /healthz /readyz
 *   domains          example.com — the sample sending domain (MAIL FROM must be @example.com)
 *
 * With TLS files and a users file (CLI: --tls-cert, --tls-key, --users) it also runs submission on
 * 127.0.0.1:2587 (STARTTLS, AUTH) and smtps on 127.0.0.1:2465, and any authenticated user may send as
 * example.com. Outgoing delivery is direct (MX lookup).
 */
import os from 'node:os';
import { validateConfig, type LoadedConfig } from './load.js';

export interface DefaultConfigOptions {
  /** Directory relative paths resolve against (the working directory). */
  cwd: string;
  tlsCertFile?: string;
  tlsKeyFile?: string;
  usersFile?: string;
}

export const DEFAULT_PORTS = { relay: 2525, submission: 2587, smtps: 2465, admin: 9091 } as const;

export function defaultConfigObject(opts: Omit<DefaultConfigOptions, 'cwd'> = {}): Record<string, unknown> {
  const withSubmission = Boolean(opts.tlsCertFile && opts.tlsKeyFile && opts.usersFile);
  const hostname = os.hostname().replace(/[^A-Za-z0-9.-]/g, '-') || 'localhost';
  return {
    hostname,
    listeners: {
      relay: {
        address: '127.0.0.1',
        port: DEFAULT_PORTS.relay,
        allowedNetworks: ['127.0.0.0/8', '::1/128'],
      },
      ...(withSubmission && {
        submission: { address: '127.0.0.1', port: DEFAULT_PORTS.submission },
        smtps: { address: '127.0.0.1', port: DEFAULT_PORTS.smtps },
      }),
    },
    ...(withSubmission && {
      tls: { certFile: opts.tlsCertFile, keyFile: opts.tlsKeyFile },
      auth: { usersFile: opts.usersFile },
    }),
    domains: [{ name: 'example.com', allowedUsers: ['*'] }],
    spool: { dir: '.spool' },
    delivery: { route: { mode: 'direct' } },
    admin: { address: '127.0.0.1', port: DEFAULT_PORTS.admin },
  };
}

/** The default configuration, validated like a file would be. */
export function defaultConfig(opts: DefaultConfigOptions): LoadedConfig {
  return validateConfig(defaultConfigObject(opts), { source: 'embedded default', baseDir: opts.cwd });
}
