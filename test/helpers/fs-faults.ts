/**
 * File systems that misbehave, for tests of the spool (the test process runs as root):
 *
 *   const fsys = await mountSmallFs(dir, 8 * 1024 * 1024);   // a tmpfs of exactly 8 MiB at dir
 *   await fsys.unmount();                                     // also done at process exit, whatever happened
 *   await setImmutable(file, true);                           // chattr +i: even root cannot unlink it
 *
 * Mounting fails the test with a clear error (never a skip) when the machine does not allow it.
 * Everything set up here is undone at process exit too, so a failing test leaves no mount and no
 * immutable file behind (an immutable file would make its directory impossible to delete).
 */
import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import { promisify } from 'node:util';

const run = promisify(execFile);

const mounted = new Set<string>();
const immutable = new Set<string>();
process.once('exit', () => {
  for (const file of immutable) {
    try {
      execFileSync('chattr', ['-i', file], { stdio: 'ignore' });
    } catch {
      // gone already
    }
  }
  for (const dir of mounted) {
    try {
      execFileSync('umount', ['-l', dir], { stdio: 'ignore' });
    } catch {
      // not mounted any more
    }
  }
});

export interface SmallFs {
  dir: string;
  bytes: number;
  unmount(): Promise<void>;
}

/** Mounts a tmpfs of `bytes` (rounded to pages by the kernel) at `dir`, creating it. */
export async function mountSmallFs(dir: string, bytes: number): Promise<SmallFs> {
  await fs.mkdir(dir, { recursive: true });
  try {
    await run('mount', ['-t', 'tmpfs', '-o', `size=${bytes},mode=0700`, 'mailfleet-test', dir]);
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(
      `cannot mount a ${bytes}-byte tmpfs at ${dir} (this test needs root with CAP_SYS_ADMIN): ` +
        (e.stderr?.trim() || e.message),
      { cause: err },
    );
  }
  mounted.add(dir);
  return {
    dir,
    bytes,
    async unmount() {
      if (!mounted.has(dir)) return;
      try {
        await run('umount', [dir]);
      } catch {
        await run('umount', ['-l', dir]); // still busy (a process that has not exited yet)
      }
      mounted.delete(dir);
    },
  };
}

/** chattr +i / -i: an immutable file cannot be unlinked or renamed, even by root. */
export async function setImmutable(file: string, on: boolean): Promise<void> {
  await run('chattr', [on ? '+i' : '-i', file]);
  if (on) immutable.add(file);
  else immutable.delete(file);
}
