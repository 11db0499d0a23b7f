// Builds the image once per test run as a user does, with scripts/image.sh (podman, its caches: an
// unchanged tree reuses the image and its OCI archive, a changed one rebuilds on the engine's layer
// cache), and hands the image's name and archive to the tests through the environment.
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const checkMachine = require('../helpers/machine-check.cjs');

module.exports = async function buildImageOnce() {
  const root = path.join(__dirname, '..', '..');
  checkMachine(root);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mailfleet-image-test-'));
  const archive = path.join(dir, 'mailfleet.oci.tar');
  const started = Date.now();
  process.stderr.write('\nimage: scripts/image.sh --engine podman (cached; a cold build takes minutes)\n');
  const r = spawnSync(
    'bash',
    [path.join(root, 'scripts/image.sh'), '--engine', 'podman', '--oci-archive', archive],
    {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
      timeout: 60 * 60 * 1000,
    },
  );
  if (r.status !== 0) throw new Error(`scripts/image.sh failed (exit ${r.status ?? r.signal}):\n${r.stdout}`);
  const image = /^image: (\S+) \(podman\)$/m.exec(r.stdout)?.[1];
  const written = /^oci-archive: (.+)$/m.exec(r.stdout)?.[1];
  if (!image || written !== archive)
    throw new Error(`scripts/image.sh printed no image or archive:\n${r.stdout}`);
  process.env.MAILFLEET_TEST_IMAGE = image;
  process.env.MAILFLEET_TEST_OCI_ARCHIVE = archive;
  process.env.MAILFLEET_TEST_IMAGE_DIR = dir;
  process.stderr.write(`image: ${image} ready in ${Math.round((Date.now() - started) / 1000)} s\n`);
};
