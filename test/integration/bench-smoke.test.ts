/**
 * Keeps the relay benchmark (bench/relay) working: the real script code, a tiny load (2 sessions × 50
 * messages, both connection modes) against the relay built into dist/ and against the sink alone.
 * Asserts only that every run completes and every message reaches the sink — never speed.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runRelayBench } from '../../bench/relay/bench.js';
import { markdown } from '../../bench/relay/report.js';
import { direct, mailfleet } from '../../bench/relay/targets.js';
import { RELAY_CLI, REPO_ROOT } from '../helpers/relay.js';

jest.setTimeout(180_000);

test('bench smoke: the relay bench relays 2 sessions × 50 messages per mode and reports them', async () => {
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mailfleet-bench-smoke-'));
  try {
    const load = { sessions: 2, messages: 50, bytes: 4096 };
    const result = await runRelayBench({
      repoRoot: REPO_ROOT,
      workDir,
      targets: [mailfleet({ cli: RELAY_CLI, version: 'mailfleet (smoke)' }), direct()],
      load,
      modes: ['new', 'reuse'],
      reps: 1,
      warmup: 0,
      probeRate: 5,
    });
    const failures = result.runs.filter((r) => !r.ok).map((r) => `${r.target} ${r.mode}: ${r.error}`);
    expect(failures).toEqual([]);
    expect(result.runs).toHaveLength(4);
    for (const r of result.runs) {
      // ok means the sink counted all 50 load messages plus every probe message the relay accepted
      expect(r.messages).toBe(50);
      expect(r.deliveredPerSec).toBeGreaterThan(0);
    }
    const relayRuns = result.runs.filter((r) => r.target === 'mailfleet');
    expect(relayRuns.every((r) => (r.usage?.cpuSeconds ?? -1) >= 0 && (r.usage?.peakRssBytes ?? 0) > 0)).toBe(
      true,
    );
    const md = markdown({
      result,
      modes: ['new', 'reuse'],
      load,
      reps: 1,
      warmup: 0,
      probeRate: 5,
      machine: { date: 'now', cpus: '', kernel: '', memory: '', filesystem: '', versions: [], loadavg: '' },
      command: 'smoke',
      targets: [],
    });
    expect(md).toContain('| mailfleet |');
  } finally {
    fs.rmSync(workDir, { recursive: true, force: true });
  }
});
