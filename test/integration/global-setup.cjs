// Builds the relay into dist/ once per test run: integration tests run the relay (and spool writers) as
// real processes from the compiled output, exactly as a user runs `mailfleet-relay`. Only the relay's
// import graph is compiled: an operator change in progress must not stop relay tests.
const path = require('node:path');
const buildDist = require('../helpers/build-dist.cjs');
const checkMachine = require('../helpers/machine-check.cjs');

module.exports = async function buildRelayOnce() {
  checkMachine(path.join(__dirname, '..', '..'));
  const ms = buildDist(path.join(__dirname, '..', '..'), ['relay/cli.ts'], 'integration: relay');
  process.stderr.write(`\nintegration: relay built into dist/ in ${ms} ms\n`);
};
