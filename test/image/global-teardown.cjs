// Removes what the image tests wrote under the temp directory (the archive there is a link to the cache).
const fs = require('node:fs');

const armExitWatchdog = require('../helpers/exit-watchdog.cjs');

module.exports = async function removeImageTestDir() {
  armExitWatchdog();
  const dir = process.env.MAILFLEET_TEST_IMAGE_DIR;
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
};
