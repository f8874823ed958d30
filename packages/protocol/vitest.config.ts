import { fileURLToPath } from 'node:url';
import { defineConfig, mergeConfig } from 'vitest/config';
import shared from '../../vitest.shared.ts';

// The tests use the test doubles of @esp-ble-ota/testing, which depends on this package: as a
// devDependency here it would be a cycle, which turbo refuses ("Cyclic dependency detected:
// @esp-ble-ota/testing#build, @esp-ble-ota/protocol#build"). The tests reach it by this alias
// instead (tsconfig.json's paths for the typecheck; turbo.json counts its sources as inputs).
const testing = (path: string) => fileURLToPath(new URL(`../testing/src/${path}`, import.meta.url));

export default mergeConfig(
  shared,
  defineConfig({
    resolve: {
      alias: [
        { find: /^@esp-ble-ota\/testing$/, replacement: testing('index.ts') },
        { find: /^@esp-ble-ota\/testing\/support$/, replacement: testing('support.ts') },
      ],
    },
  }),
);
