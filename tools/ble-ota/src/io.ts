import type { Noble } from '@esp-ble-ota/noble';

/** Where a command writes. Tests pass string sinks; the real CLI passes process streams. */
export interface OutputStream {
  write(chunk: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface VirtualRigBoard {
  name: string;
  address: string;
  serialPath: string;
  flashPath?: string;
  /**
   * Modeled air time of the board's current connection in ms (the link model's clock), or
   * undefined while it has none or on a zero-latency link.
   */
  modeledNowMs?: () => number | undefined;
  /** Cut the board's power and power it on again (a fresh boot on the console). */
  powerCycle?: () => Promise<void>;
}

/** How `--sim` sets up the virtual rig. */
export interface SimOptions {
  /** Link profile (`linux-noble-esp32`, `macos-esp32`, ..., or `immediate`). */
  profile?: string;
  /** Chip of the simulated board (`esp32`, `esp32s3`, ...). */
  chip?: string;
  /** A board that takes any image; by default it takes images signed by the rig's key only. */
  insecure?: boolean;
}

/** What `--sim` needs from the virtual rig (packages/sim `startVirtualRig`). */
export interface VirtualRig {
  noble: Noble;
  /** The key the simulated boards trust (they take images signed by it only), if they check. */
  signingKeyPath?: string;
  boards: readonly VirtualRigBoard[];
  /** Name of the link profile, undefined for the zero-latency link. */
  profile?: string | undefined;
  /** The ATT MTU the profile's central asks for; undefined for the zero-latency link. */
  centralMtu?: number | undefined;
  close(): Promise<void>;
}

export interface CliIo {
  stdout: OutputStream;
  stderr: OutputStream;
  /** Fires on Ctrl-C; commands stop and exit with 130. */
  signal?: AbortSignal;
  /** Loads the real noble (default: @esp-ble-ota/noble's loadNoble). */
  loadNoble?: () => Promise<Noble>;
  /** Starts the virtual rig for --sim (default: @esp-ble-ota/sim's startVirtualRig). */
  startRig?: (options: SimOptions) => Promise<VirtualRig>;
  /** Wall clock for timings (default performance.now). */
  now?: () => number;
}

export function line(stream: OutputStream, text = ''): void {
  stream.write(`${text}\n`);
}

export function json(stream: OutputStream, value: unknown): void {
  stream.write(`${JSON.stringify(value)}\n`);
}
