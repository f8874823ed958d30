import { loadNoble, type Noble } from '@esp-ble-ota/noble';
import { CliError } from './errors.ts';
import { ExitCode } from './exit-codes.ts';
import type { CliIo, VirtualRig } from './io.ts';

/**
 * Start the virtual rig: simulated ESP32s (the firmware's host build) behind a virtual HCI
 * controller, under the real noble. Imported only for --sim, so the CLI does not load the
 * simulator otherwise.
 */
export async function startVirtualRig(): Promise<VirtualRig> {
  let sim: { startVirtualRig?: (options?: object) => Promise<VirtualRig> };
  try {
    // A variable specifier: the sim is an optional runtime dependency, checked below.
    const specifier = '@esp-ble-ota/sim';
    sim = (await import(specifier)) as typeof sim;
  } catch (error) {
    throw new CliError(
      ExitCode.ERROR,
      `--sim needs the virtual rig (@esp-ble-ota/sim), which could not be loaded: ${String(error)}; run pnpm install at the repository root`,
      { cause: error },
    );
  }
  if (typeof sim.startVirtualRig !== 'function') {
    throw new CliError(
      ExitCode.ERROR,
      '--sim: this version of @esp-ble-ota/sim has no startVirtualRig(); update the workspace',
    );
  }
  return sim.startVirtualRig();
}

export interface Radio {
  noble: Noble;
  rig: VirtualRig | undefined;
  close(): Promise<void>;
}

/** noble for a command: the rig's with --sim, else the machine's adapter. */
export async function openRadio(io: CliIo, sim: boolean): Promise<Radio> {
  if (sim) {
    const rig = await (io.startRig ?? startVirtualRig)();
    return { noble: rig.noble, rig, close: () => rig.close() };
  }
  const noble = await (io.loadNoble ?? loadNoble)();
  return {
    noble,
    rig: undefined,
    // noble keeps the HCI socket open and the process alive; stop what this command started.
    close: async () => {
      noble.stopScanning();
    },
  };
}
