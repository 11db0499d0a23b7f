/** The node project's globalTeardown: stops the cluster globalSetup started (not one it was given). */
import type { Teardown } from './global-setup.js';

export default async function globalTeardown(): Promise<void> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  (require('../helpers/exit-watchdog.cjs') as () => void)();
  const g = globalThis as { mailfleetNodeTeardown?: Teardown };
  await g.mailfleetNodeTeardown?.();
  delete g.mailfleetNodeTeardown;
}
