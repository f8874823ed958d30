import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts'],
    // End-to-end tests start simulated boards (device processes, ptys); a loaded CI machine
    // with two cores can take several seconds for what takes one here.
    testTimeout: 30_000,
  },
});
