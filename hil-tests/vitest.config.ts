import { defineConfig } from 'vitest/config';
import { sharedTest } from '../vitest.shared.ts';

// Scenario suites run under `pnpm hil`, which builds the firmware and passes the run context in
// HIL_CONTEXT. Each scenario starts its own virtual board (or talks to the one bench board), so
// files run one at a time on the bench; on the virtual rig two at a time keep both cores busy.
// A scenario is a whole update, so its test limit is longer than the shared unit-test one.
export default defineConfig({
  test: {
    ...sharedTest,
    include: ['scenarios/**/*.test.ts'],
    testTimeout: 180_000,
    fileParallelism: process.env.HIL_RIG !== 'bench',
    maxWorkers: process.env.HIL_RIG === 'bench' ? 1 : 2,
  },
});
