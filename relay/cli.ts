#!/usr/bin/env node
/**
 * mailfleet-relay — the relay's command line. The only module that reads argv, the environment and the
 * working directory; everything else gets values passed in.
 *
 *   mailfleet-relay [run] [--config FILE] [options]   run the relay (default: the embedded config)
 *   mailfleet-relay check-config [--config FILE]       validate a config (and the files it names), exit
 *   mailfleet-relay hash-password                      read a password on stdin, print its scrypt hash
 *
 * Subcommands are a table (COMMANDS): `queue …`, `drain` and `suppression …` are added next to these.
 *
 * $MAILFLEET_RELAY_CONFIG names the config file for every command given no --config. The operator sets
 * it in relay pods, so `kubectl exec POD -- mailfleet-relay queue list` finds the admin port and token.
 *
 * Signals while running: SIGTERM/SIGINT stop gracefully (exit 0; a second one exits at once),
 * SIGHUP reloads the configuration.
 * Exit codes: 0 ok, 1 failure at run time, 2 usage, 78 invalid configuration (EX_CONFIG).
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { hashPassword } from './auth/passwords.js';
import { defaultConfig, DEFAULT_PORTS } from './config/default.js';
import { ConfigError, loadConfigFile, type LoadedConfig } from './config/load.js';
import { createLogger } from './log.js';
import { startRelay, type Relay } from './main.js';
import { buildRuntime, RuntimeError } from './runtime.js';
import { drainCommand, queueCommand } from './delivery/cli.js';
import { suppressionCommand } from './fleet/cli.js';

const EXIT_USAGE = 2;
export const CONFIG_ENV = 'MAILFLEET_RELAY_CONFIG';
const EXIT_CONFIG = 78;

const USAGE = `Usage: mailfleet-relay [command] [options]

Commands:
  run (default)     run the relay
  check-config      validate the configuration and the files it references, then exit
  hash-password     read a password from stdin, print its hash for the users file
  queue             list, show, retry or delete queued mail of a running relay (queue --help)
  drain             make a running relay stop accepting and empty its queue (drain --help)
  suppression       list, add or remove suppressed recipients of a running relay (suppression --help)

Options:
  --config FILE             YAML configuration (default: $MAILFLEET_RELAY_CONFIG, else the embedded default config:
                            relay listener on 127.0.0.1:${DEFAULT_PORTS.relay}, admin on 127.0.0.1:${DEFAULT_PORTS.admin}, spool in ./.spool)
  --shutdown-grace SECONDS  on SIGTERM, how long transactions in flight may take to finish (default 30)
  --watch-interval-ms MS    how often to check the config and its files for changes (default 1000; 0 = never)
  --tls-cert FILE, --tls-key FILE, --users FILE
                            with the embedded default: also run submission (127.0.0.1:${DEFAULT_PORTS.submission})
                            and smtps (127.0.0.1:${DEFAULT_PORTS.smtps}) with this certificate and users file
  -h, --help                this text
`;

interface CommonOptions {
  config?: string;
  'tls-cert'?: string;
  'tls-key'?: string;
  users?: string;
}

type Command = (args: string[]) => Promise<number>;

/** The subcommand table; delivery adds `queue` and `drain` here, the fleet `suppression`. */
export const COMMANDS: Record<string, Command> = {
  run: runCommand,
  'check-config': checkConfigCommand,
  'hash-password': hashPasswordCommand,
  queue: (args) => queueCommand(args),
  drain: (args) => drainCommand(args),
  suppression: (args) => suppressionCommand(args),
};

const commonOptions = {
  config: { type: 'string' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  users: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

function configSource(o: CommonOptions, cwd: string): () => Promise<LoadedConfig> {
  if (o.config) {
    const file = path.resolve(cwd, o.config);
    return () => loadConfigFile(file);
  }
  const fromCwd = (f: string | undefined) => (f ? path.resolve(cwd, f) : undefined);
  return () =>
    Promise.resolve(
      defaultConfig({
        cwd,
        tlsCertFile: fromCwd(o['tls-cert']),
        tlsKeyFile: fromCwd(o['tls-key']),
        usersFile: fromCwd(o.users),
      }),
    );
}

function printProblems(err: unknown): number {
  if (err instanceof ConfigError || err instanceof RuntimeError) {
    console.error(
      `mailfleet-relay: invalid configuration${err instanceof ConfigError ? ` (${err.source})` : ''}:`,
    );
    for (const p of err.problems) console.error(`  - ${p}`);
    return EXIT_CONFIG;
  }
  throw err;
}

function usageError(message: string): number {
  console.error(`mailfleet-relay: ${message}\n\n${USAGE}`);
  return EXIT_USAGE;
}

async function runCommand(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        ...commonOptions,
        'shutdown-grace': { type: 'string' },
        'watch-interval-ms': { type: 'string' },
      },
    }));
  } catch (err) {
    return usageError((err as Error).message);
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const graceSeconds = Number(values['shutdown-grace'] ?? 30);
  const watchIntervalMs = Number(values['watch-interval-ms'] ?? 1000);
  if (!(graceSeconds >= 0) || !(watchIntervalMs >= 0)) return usageError('durations must be numbers >= 0');
  const source = configSource(values, process.cwd());
  let loaded: LoadedConfig;
  try {
    loaded = await source();
  } catch (err) {
    return printProblems(err);
  }
  const log = createLogger({ level: loaded.config.log.level });
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled promise rejection'));
  process.on('uncaughtException', (err) => {
    // The spool never acknowledges what is not on disk, so exiting loses nothing; limping on might.
    log.fatal({ err }, 'uncaught exception; exiting');
    process.exit(70);
  });
  // Signal handlers go in before the relay starts: a SIGTERM during start-up (the pod deleted while
  // it was coming up) must still end in a graceful stop, not the default kill.
  let relay: Relay | undefined;
  let stopRequested = false;
  let signals = 0;
  const stopAndExit = (r: Relay) =>
    r.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        log.fatal({ err }, 'error while stopping');
        process.exit(1);
      },
    );
  const onStop = (signal: string) => {
    if (++signals > 1) {
      log.warn({ signal }, 'second signal: exiting at once');
      process.exit(1);
    }
    log.info({ signal }, 'signal received');
    stopRequested = true;
    if (relay) void stopAndExit(relay);
  };
  process.on('SIGTERM', onStop);
  process.on('SIGINT', onStop);
  process.on('SIGHUP', () => void relay?.reload());
  try {
    relay = await startRelay({
      loaded,
      log,
      shutdownGraceMs: graceSeconds * 1000,
      watchIntervalMs,
      reloadSource: source,
    });
  } catch (err) {
    if (err instanceof RuntimeError) return printProblems(err);
    log.fatal({ err }, 'relay failed to start');
    return 1;
  }
  if (stopRequested) void stopAndExit(relay);
  else if (!loaded.file) printQuickstart(relay.listeners.relay?.port, relay.admin.port, relay.spool.dir);
  return new Promise<number>(() => undefined); // runs until a signal ends the process
}

function printQuickstart(relayPort: number | undefined, adminPort: number, spoolDir: string): void {
  const lines = [
    '',
    'mailfleet relay is running on its embedded default configuration.',
    '',
    '  Send a test message (the sender must be @example.com; the recipient domain needs MX or A records):',
    `    swaks --server 127.0.0.1:${relayPort} --from test@example.com --to you@your-domain.example`,
    '  or, from this repository:',
    `    node -e "require('nodemailer').createTransport({host:'127.0.0.1',port:${relayPort}})` +
      `.sendMail({from:'test@example.com',to:'you@your-domain.example',subject:'hi',text:'hello'})` +
      `.then(i=>console.log(i.response))"`,
    '',
    `  Metrics: http://127.0.0.1:${adminPort}/metrics   Health: /healthz   Readiness: /readyz`,
    `  Queue:   ${spoolDir}`,
    '  Stop:    Ctrl-C (SIGTERM/SIGINT stop gracefully)',
    '',
  ];
  console.error(lines.join('\n'));
}

async function checkConfigCommand(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({ args, options: commonOptions }));
  } catch (err) {
    return usageError((err as Error).message);
  }
  try {
    const loaded = await configSource(values, process.cwd())();
    const rt = await buildRuntime(loaded);
    console.log(
      `${loaded.file ?? 'embedded default'}: ok (${rt.config.domains.length} domains, ${rt.users.size} users` +
        `${rt.tls ? `, certificate valid until ${new Date(rt.tls.notAfter).toISOString()}` : ''})`,
    );
    return 0;
  } catch (err) {
    return printProblems(err);
  }
}

async function hashPasswordCommand(args: string[]): Promise<number> {
  if (args.length > 0)
    return usageError('hash-password reads the password from stdin and takes no arguments');
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  const password = Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '');
  if (password === '') return usageError('empty password on stdin');
  console.log(await hashPassword(password));
  return 0;
}

/** `args` with `--config $MAILFLEET_RELAY_CONFIG` added when it is set and args name no config. */
function withConfigFromEnv(args: string[], env: NodeJS.ProcessEnv): string[] {
  const file = env[CONFIG_ENV];
  if (!file || args.some((a) => a === '--config' || a.startsWith('--config='))) return args;
  return [...args, '--config', file];
}

export async function main(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const [first, ...rest] = argv;
  if (first === '-h' || first === '--help' || first === 'help') {
    console.log(USAGE);
    return 0;
  }
  if (first && !first.startsWith('-')) {
    const command = COMMANDS[first];
    if (!command) return usageError(`unknown command "${first}"`);
    return command(first === 'hash-password' ? rest : withConfigFromEnv(rest, env));
  }
  return runCommand(withConfigFromEnv(argv, env));
}

main(process.argv.slice(2), process.env).then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error('mailfleet-relay:', err);
    process.exit(1);
  },
);
