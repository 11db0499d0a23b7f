// Jest requires a globalSetup with Node's own resolver (moduleNameMapper applies only inside test files),
// so the harness's `./x.js` imports of TypeScript sources would not resolve. This maps a relative `.js`
// request that does not exist to the `.ts` file next to it, as the mapper does for tests. The e2e and
// node globalSetups install it before their first dynamic import of a TypeScript module.
const Module = require('node:module');

module.exports = function installTsResolution() {
  const original = Module._resolveFilename;
  if (original.mailfleetTs) return;
  const patched = function (request, ...rest) {
    try {
      return original.call(this, request, ...rest);
    } catch (e) {
      if (!request.startsWith('.') || !request.endsWith('.js')) throw e;
      return original.call(this, `${request.slice(0, -3)}.ts`, ...rest);
    }
  };
  patched.mailfleetTs = true;
  Module._resolveFilename = patched;
};
