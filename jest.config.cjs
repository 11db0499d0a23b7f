/** Jest runs the TypeScript sources through ts-jest as CommonJS; ESM-only dependencies load via Node 24's require(esm). */
const common = {
  transform: {
    '^.+\\.ts$': [
      'ts-jest',
      {
        tsconfig: { module: 'commonjs', moduleResolution: 'node10', ignoreDeprecations: '6.0' },
        diagnostics: false,
      },
    ],
  },
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  testEnvironment: 'node',
};
module.exports = {
  projects: [
    { ...common, displayName: 'unit', testMatch: ['<rootDir>/test/unit/**/*.test.ts'] },
    {
      ...common,
      displayName: 'integration',
      testMatch: ['<rootDir>/test/integration/**/*.test.ts'],
      globalSetup: '<rootDir>/test/integration/global-setup.cjs',
    },
    {
      ...common,
      displayName: 'image',
      testMatch: ['<rootDir>/test/image/**/*.test.ts'],
      // Builds (or reuses) the image with scripts/image.sh; the tests run it with podman.
      globalSetup: '<rootDir>/test/image/global-setup.cjs',
      globalTeardown: '<rootDir>/test/image/global-teardown.cjs',
    },
    {
      ...common,
      displayName: 'e2e',
      testMatch: ['<rootDir>/test/e2e/**/*.test.ts'],
      // One control plane (test/cluster/) for all e2e files; needs `npm run cluster:build` first.
      globalSetup: '<rootDir>/test/e2e/global-setup.ts',
      globalTeardown: '<rootDir>/test/e2e/global-teardown.ts',
      setupFilesAfterEnv: ['<rootDir>/test/helpers/e2e-timeout.cjs'],
    },
    {
      ...common,
      displayName: 'node',
      testMatch: ['<rootDir>/test/node/**/*.test.ts'],
      // A control plane with a real node running the image from the Dockerfile (test/cluster/node.ts).
      globalSetup: '<rootDir>/test/node/global-setup.ts',
      globalTeardown: '<rootDir>/test/node/global-teardown.ts',
      setupFilesAfterEnv: ['<rootDir>/test/helpers/e2e-timeout.cjs'],
    },
  ],
};
