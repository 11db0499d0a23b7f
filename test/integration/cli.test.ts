/**
 * The mailfleet-relay command line: subcommands, exit codes, and configuration errors as a user sees them.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { parseHash, verifyPassword } from '../../relay/auth/passwords.js';
import { RELAY_CLI, makeTempDir } from '../helpers/relay.js';

jest.setTimeout(60_000);

function run(args: string[], opts: { cwd?: string; stdin?: string } = {}) {
  const child = spawn(process.execPath, [RELAY_CLI, ...args], {
    cwd: opts.cwd,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdin.end(opts.stdin ?? '');
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    child.on('exit', (code) => resolve({ code, stdout, stderr })),
  );
}

test('--help and unknown commands', async () => {
  const help = await run(['--help']);
  expect(help.code).toBe(0);
  expect(help.stdout).toMatch(/^Usage: mailfleet-relay \[command\] \[options\]/);
  const unknown = await run(['frobnicate']);
  expect(unknown.code).toBe(2);
  expect(unknown.stderr).toMatch(/unknown command "frobnicate"/);
  expect((await run(['--no-such-flag'])).code).toBe(2);
});

test('check-config: the embedded default is valid', async () => {
  const dir = await makeTempDir();
  const r = await run(['check-config'], { cwd: dir });
  expect(r).toMatchObject({ code: 0, stdout: 'embedded default: ok (1 domains, 0 users)\n' });
});

test('check-config and run: every problem named by file, line and field; exit 78', async () => {
  const dir = await makeTempDir();
  const file = path.join(dir, 'relay.yaml');
  await fs.writeFile(
    file,
    [
      'hostname: relay.example.com',
      'listeners:',
      '  submission: { port: 587 }',
      'domains:',
      '  - name: example.com',
      '    allowedUsers: alice',
      'spool: { dir: spool }',
      'delivery: { route: { mode: direct } }',
      'limits: { maxRecipients: 0 }',
      '',
    ].join('\n'),
  );
  for (const command of [['check-config'], []]) {
    const r = await run([...command, '--config', file]);
    expect(r.code).toBe(78);
    expect(r.stderr).toBe(
      'mailfleet-relay: invalid configuration (relay.yaml):\n' +
        '  - relay.yaml:6: domains[0].allowedUsers: must be array\n' +
        '  - relay.yaml:9: limits.maxRecipients: must be >= 1\n',
    );
  }
  await fs.writeFile(
    file,
    'hostname: relay.example.com\nlisteners:\n  submission: { port: 587 }\nspool: { dir: spool }\ndelivery: { route: { mode: direct } }\n',
  );
  const cross = await run(['check-config', '--config', file]);
  expect(cross.code).toBe(78);
  expect(cross.stderr).toContain(
    'relay.yaml:3: listeners.submission: needs the tls section (certificate and key)',
  );
  await fs.writeFile(
    file,
    'hostname: relay.example.com\nlisteners:\n  smtps: { port: 465 }\ntls: { certFile: nope.pem, keyFile: nope.key }\nauth: { usersFile: users }\nspool: { dir: spool }\ndelivery: { route: { mode: direct } }\n',
  );
  const files = await run(['check-config', '--config', file]);
  expect(files.code).toBe(78);
  expect(files.stderr).toMatch(/auth\.usersFile: users file .*users: cannot read/);
  expect(files.stderr).toMatch(/tls\.certFile: cannot read .*nope\.pem/);
  expect((await run(['--config', path.join(dir, 'missing.yaml')])).code).toBe(78);
});

test('hash-password reads stdin and prints a hash the users file accepts', async () => {
  const r = await run(['hash-password'], { stdin: 'correct horse battery staple\n' });
  expect(r.code).toBe(0);
  const parsed = parseHash(r.stdout.trim());
  if (typeof parsed === 'string') throw new Error(parsed);
  expect(await verifyPassword('correct horse battery staple', parsed)).toBe(true);
  expect(r.stdout).not.toContain('correct horse');
  expect((await run(['hash-password'], { stdin: '' })).code).toBe(2);
});
