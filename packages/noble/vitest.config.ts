import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts'],
    // Scans wait out their timeouts on purpose; leave room on a loaded CI machine.
    testTimeout: 15_000,
  },
});
