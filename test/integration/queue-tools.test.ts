/**
 * The queue tools on a live relay, run as a user runs them (`mailfleet-relay queue …` as a separate
 * process, e.g. through kubectl exec): list with reasons, show, delete, retry one or all — through the
 * relay's admin API with its bearer token, never by touching the spool files.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import nodemailer from 'nodemailer';
import { a, mx, startDnsServer, type TestDnsServer } from '../helpers/dns.js';
import {
  makeTempDir,
  PARKED_DELIVERY,
  RELAY_CLI,
  relayConfig,
  startRelay,
  type RelayProcess,
} from '../helpers/relay.js';
import { startDownstream, type Downstream } from '../helpers/smtp-downstream.js';

jest.setTimeout(60_000);

const exec = promisify(execFile);

let dns: TestDnsServer;
let downstream: Downstream;
let relay: RelayProcess;
let config: Record<string, unknown>;
const ids: string[] = [];

/** Runs `mailfleet-relay queue ARGS` against the relay; resolves with its exit code and output. */
async function queue(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const admin = ['--admin', `http://127.0.0.1:${relay.ports.admin}`, '--config', relay.configFile];
  try {
    const { stdout, stderr } = await exec(process.execPath, [RELAY_CLI, 'queue', ...args, ...admin]);
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

beforeAll(async () => {
  downstream = await startDownstream();
  dns = await startDnsServer({ records: [mx('x.test', 'mail.x.test'), a('mail.x.test', '127.0.0.1')] });
  const dir = await makeTempDir();
  await fs.writeFile(path.join(dir, 'admin-token'), 'queue-tools-token\n');
  config = relayConfig({
    dns: { servers: [dns.server], timeoutMs: 2000, tries: 1 },
    delivery: { ...PARKED_DELIVERY, retry: { firstRetry: 3600, maxBackoff: 3600, maxLifetime: 86400 } },
    admin: { address: '127.0.0.1', port: 0, tokenFile: 'admin-token' },
  });
  relay = await startRelay({ dir, config });
  const client = nodemailer.createTransport({ host: '127.0.0.1', port: relay.ports.relay, ignoreTLS: true });
  for (let i = 0; i < 3; i++) {
    const info = await client.sendMail({
      envelope: { from: 'app@example.com', to: [`r${i}@x.test`] },
      raw: `From: <app@example.com>\r\nSubject: queued ${i}\r\nX-Test-Id: qt-${i}\r\n\r\nbody\r\n`,
    });
    ids.push(/queued as (\S+)/.exec(info.response)![1]!);
  }
  client.close();
  for (const id of ids) await relay.waitForLog((l) => l.id === id && l.msg === 'message deferred');
});

afterAll(async () => {
  await relay?.stop();
  await Promise.all([downstream?.stop(), dns?.stop()]);
});

test('queue list shows every message with its reason, like postqueue -p', async () => {
  const { code, stdout } = await queue('list');
  expect(code).toBe(0);
  const lines = stdout.split('\n');
  expect(lines[0]).toMatch(/^-Queue ID- +--Size-- ----Arrival Time---- -Sender\/Recipient-------$/);
  for (const id of ids)
    expect(stdout).toMatch(
      new RegExp(`^${id} +\\d+ \\w{3} \\w{3} [ \\d]\\d \\d\\d:\\d\\d:\\d\\d  app@example.com$`, 'm'),
    );
  expect(stdout).toContain('(connect ECONNREFUSED 127.0.0.1:1');
  expect(stdout).toContain('r1@x.test');
  expect(stdout).toMatch(/-- \d+ Kbytes in 3 Requests\.\n$/);

  const json = JSON.parse((await queue('list', '--json')).stdout) as { id: string; state: string }[];
  expect(json.map((m) => [m.id, m.state])).toEqual(ids.map((id) => [id, 'deferred']));
});

test('queue show prints the recipients, their last reply and the headers', async () => {
  const { code, stdout } = await queue('show', ids[0]!);
  expect(code).toBe(0);
  expect(stdout).toContain(`Queue ID:   ${ids[0]}`);
  expect(stdout).toMatch(/State: +deferred \(attempts: 1, next attempt /);
  expect(stdout).toMatch(/r0@x\.test +pending +connect ECONNREFUSED/);
  expect(stdout).toContain('Subject: queued 0');
  expect(stdout).toContain('X-Test-Id: qt-0');
  expect(await queue('show', 'NOSUCHMESSAGE0000')).toMatchObject({
    code: 1,
    stderr: expect.stringContaining('no such message'),
  });
});

test('without the token the relay refuses', async () => {
  const { stdout } = await exec(process.execPath, [
    RELAY_CLI,
    'queue',
    'list',
    '--admin',
    `http://127.0.0.1:${relay.ports.admin}`,
  ]).catch((e: { stdout: string; stderr: string; code: number }) => ({ stdout: `${e.code} ${e.stderr}` }));
  expect(stdout).toMatch(/^1 mailfleet-relay: admin token required/);
});

test('in a relay pod the config comes from MAILFLEET_RELAY_CONFIG, so `kubectl exec POD -- mailfleet-relay queue list` needs no flags for the token', async () => {
  const env = { ...process.env, MAILFLEET_RELAY_CONFIG: relay.configFile };
  const { stdout } = await exec(
    process.execPath,
    [RELAY_CLI, 'queue', 'list', '--admin', `http://127.0.0.1:${relay.ports.admin}`],
    { env },
  );
  expect(stdout).toContain('-Queue ID-');
  expect(stdout.split('\n').filter((l) => /^[0-9A-Z]{17}/.test(l))).toHaveLength(ids.length);
});

test('queue delete removes a message; retry sends one now, retry --all the rest', async () => {
  expect(await queue('delete', ids[2]!)).toMatchObject({ code: 0, stdout: `${ids[2]}: deleted\n` });
  expect((await queue('list')).stdout).not.toContain(ids[2]);
  expect(await queue('delete', ids[2]!)).toMatchObject({ code: 1 });

  // route the relay to a live downstream (reloaded from the file), then deliver on demand
  await relay.writeConfig({
    ...config,
    delivery: {
      route: { mode: 'smarthost', smarthost: { host: '127.0.0.1', port: downstream.port, tls: 'none' } },
      retry: { firstRetry: 3600, maxBackoff: 3600, maxLifetime: 86400 },
    },
  });
  await relay.waitForLog((l) => l.event === 'config_reloaded');
  expect(await queue('retry', ids[0]!)).toMatchObject({
    code: 0,
    stdout: `${ids[0]}: scheduled for delivery now\n`,
  });
  await relay.waitForLog((l) => l.id === ids[0] && l.msg === 'message done');
  // the downstream reports on its own pipe: wait for its line too
  await downstream.waitForMessages(1, 20_000);
  expect(downstream.messages.map((m) => m.testId)).toEqual(['qt-0']);

  expect(await queue('retry', '--all')).toMatchObject({
    code: 0,
    stdout: '1 message(s) scheduled for delivery now\n',
  });
  await relay.waitForLog((l) => l.id === ids[1] && l.msg === 'message done');
  await downstream.waitForMessages(2, 20_000);
  expect((await queue('list')).stdout).toBe('Mail queue is empty\n');
  expect(downstream.messages.map((m) => m.testId).sort()).toEqual(['qt-0', 'qt-1']);
});
