// A type-only import by path: the root workspace does not depend on the runner's package, so a
// change to the runner does not invalidate turbo's cache of the firmware build.
import type { HilConfigInput } from './packages/hil/src/config.ts';

// Defaults for `pnpm hil`. Override per machine with HIL_* environment variables (HIL_RIG,
// HIL_PORT, HIL_TARGET, HIL_BLE_NAME, ...) or per run with flags (--rig bench --port ...).
export default {
  rig: 'sim',
  target: 'esp32',
  appPath: 'firmware',
  sim: {
    linkProfile: 'linux-noble-esp32',
    boards: 1,
    buildDir: 'firmware/host/build',
  },
  bench: {
    // Found by the USB ids of the common ESP32 bridges when no port is set.
    bleName: 'esp32',
    buildDir: 'firmware/build',
  },
  thresholds: {
    transferSlowerPct: 15,
  },
  resultsDir: 'hil-results',
  baselineFile: 'hil-baseline.json',
} satisfies HilConfigInput;
