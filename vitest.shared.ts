import { defineConfig } from 'vitest/config';

// One config for every package's unit tests. `pnpm test` runs turbo with one task per core,
// and each task's vitest starts its own workers, so on a 2-core machine a test shares the CPU
// with several others. vitest's 5 s default timeout measured that load, not the code: a sweep
// that takes 1.3 s alone took 5.05 s there. Waits that a test makes on purpose carry their own
// timeouts; these limits only catch a test that hangs.
export const SHARED_TEST_TIMEOUT_MS = 60_000;

export const sharedTest = {
  testTimeout: SHARED_TEST_TIMEOUT_MS,
  hookTimeout: SHARED_TEST_TIMEOUT_MS,
  teardownTimeout: 20_000,
};

/** The config of a package whose tests are `src/**\/*.test.ts`. */
export default defineConfig({
  test: { ...sharedTest, include: ['src/**/*.test.ts'] },
});
