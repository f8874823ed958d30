import { loadNoble, MAX_REQUESTED_MTU, type Noble, setRequestedMtu } from '@esp-ble-ota/noble';
import { noBleRadioReason } from '@esp-ble-ota/protocol';
import type { VirtualRig as SimRig, VirtualRigOptions } from '@esp-ble-ota/sim';
import { CliError } from './errors.ts';
import { ExitCode } from './exit-codes.ts';
import type { CliIo, SimOptions, VirtualRig } from './io.ts';

/**
 * Start the virtual rig: simulated ESP32s (the firmware's host build) behind a virtual HCI
 * controller, under the real noble. Imported only for --sim, so the CLI does not load the
 * simulator otherwise.
 */
export async function startVirtualRig(options: SimOptions = {}): Promise<VirtualRig> {
  let sim: typeof import('@esp-ble-ota/sim');
  try {
    sim = await import('@esp-ble-ota/sim');
  } catch (error) {
    throw new CliError(
      ExitCode.ERROR,
      `--sim needs the virtual rig (@esp-ble-ota/sim), which could not be loaded: ${String(error)}; run pnpm install at the repository root`,
      { cause: error },
    );
  }
  // Wrong --sim-* values are usage errors, said before a device process starts.
  if (
    options.profile !== undefined &&
    options.profile !== 'immediate' &&
    !sim.PROFILES.some((p) => p.name === options.profile)
  ) {
    throw new CliError(
      ExitCode.USAGE,
      `unknown --sim-profile "${options.profile}"; use one of ${[...sim.PROFILES.map((p) => p.name), 'immediate'].join(', ')}`,
    );
  }
  if (options.chip !== undefined && !sim.SIM_BLE_CHIPS.includes(options.chip)) {
    const why = sim.SIM_CHIPS.includes(options.chip)
      ? `--sim-chip ${options.chip}: ${noBleRadioReason(options.chip)}`
      : `unknown --sim-chip "${options.chip}"`;
    throw new CliError(
      ExitCode.USAGE,
      `${why}; the simulated board can be ${sim.SIM_BLE_CHIPS.join(', ')}`,
    );
  }
  const rigOptions: VirtualRigOptions = {};
  if (options.profile !== undefined) rigOptions.profile = options.profile;
  // The rig's boards run the firmware's secure default: images signed by the rig's key only
  // (.ble-ota/rig-signing-key.pem, made on first use); its path goes into refusal hints.
  const rigKey = options.insecure ? undefined : await sim.rigSigningKey();
  rigOptions.boards = [
    {
      ...(options.chip !== undefined ? { chip: options.chip } : {}),
      ...(options.insecure ? { security: sim.TAKES_ANY_IMAGE } : {}),
    },
  ];
  const rig = await sim.startVirtualRig(rigOptions).catch((error: unknown) => {
    throw new CliError(
      ExitCode.ERROR,
      `--sim: the virtual rig did not start: ${error instanceof Error ? error.message : String(error)}`,
      { cause: error },
    );
  });
  return { ...adaptRig(rig), ...(rigKey ? { signingKeyPath: rigKey.path } : {}) };
}

/** The CLI's view of a rig from @esp-ble-ota/sim. */
export function adaptRig(rig: SimRig): VirtualRig {
  return {
    // The rig's noble is typed as the module's declarations, which omit the `state` getter
    // every noble instance has; this package's structural type names it.
    noble: rig.noble,
    profile: rig.profile?.name,
    centralMtu: rig.profile?.centralMtu,
    boards: rig.boards.map((board) => ({
      name: board.name,
      address: board.address,
      serialPath: board.serialPath,
      flashPath: board.flashPath,
      modeledNowMs: () => board.modeledClock?.now(),
      powerCycle: () => board.powerCycle(),
    })),
    close: () => rig.close(),
  };
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
  simInsecure?: boolean;
}): SimOptions | undefined {
  if (!options.sim) return undefined;
  const sim: SimOptions = {};
  if (options.simProfile !== undefined) sim.profile = options.simProfile;
  if (options.simChip !== undefined) sim.chip = options.simChip;
  if (options.simInsecure) sim.insecure = true;
  return sim;
}

/** noble for a command: the rig's with --sim, else the machine's adapter. */
export async function openRadio(io: CliIo, sim: SimOptions | undefined): Promise<Radio> {
  if (sim !== undefined) {
    const rig = await (io.startRig ?? startVirtualRig)(sim);
    // noble plays the profile's central, so it asks for that central's MTU (Android 517).
    setRequestedMtu(rig.centralMtu ?? MAX_REQUESTED_MTU);
    return { noble: rig.noble, rig, close: () => rig.close() };
  }
  // On a real adapter ask for the most: the device answers with its own preference, and the
  // link takes the lesser of both.
  setRequestedMtu(MAX_REQUESTED_MTU);
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
