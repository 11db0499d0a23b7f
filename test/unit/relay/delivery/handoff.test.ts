import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parsePeer, peerTarget } from '../../../../relay/delivery/handoff.js';

describe('peerTarget', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'mailfleet-handoff-'));
    await fs.writeFile(path.join(dir, 'pass'), 'fleet-secret\n');
  });
  afterAll(() => fs.rm(dir, { recursive: true, force: true }));

  const handoff = () => ({
    username: 'mailfleet-handoff',
    passwordFile: path.join(dir, 'pass'),
    serverName: 'mail.ns.svc',
  });

  it('verifies a peer named by IP address against handoff.serverName', async () => {
    for (const peer of ['127.20.1.5:587', '[fd00::5]:587']) {
      const t = await peerTarget(parsePeer(peer), handoff());
      expect(t).toMatchObject({ port: 587, tls: 'starttls', servername: 'mail.ns.svc' });
      expect(t.auth).toEqual({ user: 'mailfleet-handoff', pass: 'fleet-secret' });
    }
  });

  it('verifies a peer named by DNS name against that name, and an IP peer by IP without serverName', async () => {
    const byName = await peerTarget(parsePeer('mail-0.mail-headless.ns.svc:587'), handoff());
    expect(byName.servername).toBeUndefined();
    expect(byName.name).toBe('mail-0.mail-headless.ns.svc');
    const { serverName: _omit, ...without } = handoff();
    expect((await peerTarget(parsePeer('127.20.1.5:587'), without)).servername).toBeUndefined();
  });
});
