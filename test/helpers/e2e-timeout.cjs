// setupFilesAfterEnv of the e2e and node projects: their tests wait on a real control plane (and real
// containers), so each test may take minutes. Jest reads `testTimeout` only from the global config, not
// from a project's, hence this; a file's own jest.setTimeout still wins.
jest.setTimeout(300_000);
