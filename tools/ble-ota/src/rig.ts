import { loadNoble, type Noble } from '@esp-ble-ota/noble';
import { CliError } from './errors.ts';
import { ExitCode } from './exit-codes.ts';
import type { CliIo, SimOptions, VirtualRig } from './io.ts';

/**
 * Start the virtual rig: simulated ESP32s (the firmware's host build) behind a virtual HCI
 * controller, under the real noble. Imported only for --sim, so the CLI does not load the
 * simulator otherwise.
 */
export async function startVirtualRig(options: SimOptions = {}): Promise<VirtualRig> {
  let sim: {
    startVirtualRig?: (options?: {
      profile?: string;
      boards?: Array<{ chip?: string }>;
    }) => Promise<VirtualRig>;
  };
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
  return sim.startVirtualRig({
    ...(options.profile === undefined ? {} : { profile: options.profile }),
    ...(options.chip === undefined ? {} : { boards: [{ chip: options.chip }] }),
  });
}

export interface Radio {
  noble: Noble;
  rig: VirtualRig | undefined;
  close(): Promise<void>;
}

/** The --sim options of a command, or undefined without --sim. */
export function simOptions(options: {
  sim?: boolean;
  simProfile?: string;
  simChip?: string;
}): SimOptions | undefined {
  if (!options.sim) return undefined;
  const sim: SimOptions = {};
  if (options.simProfile !== undefined) sim.profile = options.simProfile;
  if (options.simChip !== undefined) sim.chip = options.simChip;
  return sim;
}

/** noble for a command: the rig's with --sim, else the machine's adapter. */
export async function openRadio(io: CliIo, sim: SimOptions | undefined): Promise<Radio> {
  if (sim !== undefined) {
    const rig = await (io.startRig ?? startVirtualRig)(sim);
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
