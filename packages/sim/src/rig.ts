import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import type { PeripheralApp, ReadResult } from './att/app.ts';
import type { GattLayout } from './att/gatt-layout.ts';
import type { VirtualPeripheral } from './att/peripheral.ts';
import { UartBridge } from './console/uart-bridge.ts';
import {
  type BootOptions,
  defaultDeviceProgram,
  SimulatedDevice,
} from './device/simulated-device.ts';
import type { Fault } from './hci/faults.ts';
import { createNoble, installVirtualHci, loadNoble, type Noble } from './hci/install.ts';
import { VirtualRadio } from './hci/radio.ts';
import { FLASH_SLOW, FLASH_TYPICAL, type FlashTiming, flashOpStallUs } from './link/flash.ts';
import { ImmediateAirScheduler } from './link/immediate-scheduler.ts';
import {
  createProfileLink,
  getProfile,
  type LinkProfile,
  NIMBLE_DEFAULT_PREFERRED_MTU,
} from './link/profiles.ts';
import type { AirScheduler } from './link/types.ts';

export interface BoardOptions {
  /** Advertised name; the firmware's default is `esp32`. */
  name?: string;
  /** BD address; boards get 24:0a:c4:00:00:01, :02, ... (an Espressif OUI) by default. */
  address?: string;
  /** Chip the factory flash is made for (`esp32`, `esp32s3`, `esp32c3`, ...). */
  chip?: string;
  /** App image for ota_0 of a new flash file; default the host build's image for the chip. */
  image?: string;
  /** Use this flash file (kept as it is if it exists, made new otherwise). */
  flashPath?: string;
  /** Radio faults of this board (drop the link, corrupt or drop an ATT PDU, refuse a larger MTU). */
  faults?: Fault[];
  /** Delay between DONE_ACK and the restart; the firmware's default is 500 ms. */
  restartDelayMs?: number;
  /** Cut the power at this flash operation (1-based, erase/write) of the first boot. */
  powerCutAt?: number;
  /** Flash at its datasheet maxima (400 ms sector erase, 3 ms page program) instead of typical. */
  slowFlash?: boolean;
}

/** A fault of the device itself (radio faults are in the radio's log). */
export interface DeviceFaultRecord {
  name: string;
  board: string;
  detail: string;
}

export interface VirtualRigOptions {
  boards?: BoardOptions[];
  /**
   * Link profile (`linux-noble-esp32`, `macos-esp32`, ... see PROFILES), or `immediate` for a
   * zero-latency link that only checks behaviour.
   */
  profile?: string;
  /** Where flash files go; a temporary directory (removed on close) by default. */
  workDir?: string;
  /** Device program; the firmware's host build by default. */
  program?: string;
  /**
   * `instance` (default) gives a noble of its own (noble's own HCI bindings and a controller of
   * its own), so several rigs can live in one process; `singleton` gives noble's process-wide
   * instance, the one `import noble from '@abandonware/noble'` returns, for one rig per process.
   */
  noble?: 'singleton' | 'instance';
}

const layouts = new Map<string, GattLayout>();

/** The GATT layout the firmware declares (ble_ota_gatt.h), as its host build exports it. */
export async function readGattLayout(program = defaultDeviceProgram): Promise<GattLayout> {
  const cached = layouts.get(program);
  if (cached) return cached;
  if (!existsSync(program)) {
    throw new Error(
      `simulated device program not found at ${program}: build it with \`pnpm --filter @esp-ble-ota/firmware-host build\``,
    );
  }
  const { stdout } = await execa(program, ['--gatt-json']);
  const layout = JSON.parse(stdout) as GattLayout;
  layouts.set(program, layout);
  return layout;
}

/**
 * One dev board on the virtual bench: the simulated ESP32 (firmware host build on a flash file),
 * its radio presence (a peripheral on the virtual air, serving the GATT layout the firmware
 * declares) and its USB-UART bridge (a pty). It restarts the device when the firmware asks to,
 * and after a power cut, as a board on USB power does.
 */
export class VirtualBoard implements PeripheralApp {
  readonly device: SimulatedDevice;
  /** Boots so far, counting the first. */
  boots = 0;
  private link: AirScheduler | undefined;
  private closing = false;
  private nextBoot: BootOptions = {};
  private waiters: Array<() => void> = [];
  private readonly flashTiming: FlashTiming;
  /** Device faults that fired or are in force: power cuts, slow flash. */
  readonly faultLog: DeviceFaultRecord[] = [];
  peripheral!: VirtualPeripheral;

  constructor(
    readonly options: Required<Pick<BoardOptions, 'name' | 'address' | 'chip'>> & BoardOptions,
    readonly flashPath: string,
    readonly uart: UartBridge,
    readonly profile: LinkProfile | undefined,
    program: string,
  ) {
    this.device = new SimulatedDevice({ flashPath, name: options.name, program });
    this.flashTiming = options.slowFlash ? FLASH_SLOW : (profile?.flash ?? FLASH_TYPICAL);
    if (options.slowFlash) {
      this.faultLog.push({
        name: 'slow-flash',
        board: options.name,
        detail: 'flash at datasheet maxima',
      });
    }
    if (options.powerCutAt !== undefined) this.nextBoot = { powerCutAt: options.powerCutAt };
    this.device.on('console', (data) => this.uart.write(data));
    this.device.on('hello', (info) => {
      // HELLO 0 comes on CONNECT (NimBLE stops advertising while connected); the radio side
      // already stopped, so only the advertising that starts again needs passing on.
      if (info.advertising) this.peripheral.startAdvertising(info.name);
      for (const w of this.waiters.splice(0)) w();
    });
    this.device.on('notify', (conn, chrId, data) => {
      this.peripheral.notify(conn, chrId, data);
    });
    this.device.on('flashOp', (op) => {
      // The flash stall holds the whole chip, radio host task included (cache off).
      if (this.profile && this.link)
        this.link.stallPeripheral(flashOpStallUs(op, this.profile.flash));
    });
    this.device.on('off', (info) => {
      this.peripheral.reset();
      if (info.powerCut) {
        this.faultLog.push({
          name: 'power-cut',
          board: this.options.name,
          detail: `power cut at flash operation ${info.flashOps.filter((o) => o.op !== 'read').length + 1} of boot ${this.boots}`,
        });
      }
      if (this.closing || this.device.state === 'halted') {
        for (const w of this.waiters.splice(0)) w();
        return;
      }
      // exit 0 is the restart the firmware asked for; a power cut comes back as a power-on.
      void this.startDevice({ resetReason: info.powerCut ? 'poweron' : 'sw' });
    });
  }

  get name(): string {
    return this.options.name;
  }

  get address(): string {
    return this.options.address;
  }

  /** The board's console, to open with serialport like /dev/ttyUSB0. */
  get serialPath(): string {
    return this.uart.path;
  }

  /** The modeled link of the current connection, if any. */
  get currentLink(): AirScheduler | undefined {
    return this.link;
  }

  /** Called by the rig when a central connects to this board. */
  attachLink(link: AirScheduler): void {
    this.link = link;
  }

  /**
   * Options for the next boot only, e.g. a power cut at its Nth flash operation. The next boot
   * is the one after the running app restarts (or after `powerCycle()`).
   */
  armNextBoot(opts: BootOptions): void {
    this.nextBoot = { ...opts };
  }

  /** Resolves when the app is running (advertising) or the device halted. */
  waitReady(): Promise<void> {
    if (this.device.state === 'running' || this.device.state === 'halted') return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Cuts the power and powers on again; `opts` apply to the new boot. */
  async powerCycle(opts: BootOptions = {}): Promise<void> {
    this.nextBoot = { ...opts };
    if (this.device.state === 'halted' || this.device.state === 'off') {
      await this.startDevice({ resetReason: 'poweron' });
      return;
    }
    await this.device.powerOff();
    await this.waitReady();
  }

  async startDevice(base: BootOptions): Promise<void> {
    const opts: BootOptions = {
      ...base,
      ...this.nextBoot,
      restartDelayMs: this.options.restartDelayMs,
    };
    this.nextBoot = {};
    if (!existsSync(this.flashPath)) {
      opts.create = {
        chip: this.options.chip,
        ...(this.options.image ? { image: this.options.image } : {}),
      };
    }
    this.boots += 1;
    await this.device.boot(opts);
    if (this.device.state === 'running' || this.device.state === 'halted') {
      for (const w of this.waiters.splice(0)) w();
    }
  }

  async close(): Promise<void> {
    this.closing = true;
    await this.device.powerOff();
    await this.uart.close();
  }

  // --- PeripheralApp: the radio hands ATT traffic to the firmware through its frames ---

  onConnect(conn: number, mtu: number): void {
    if (this.device.state === 'running') this.device.connect(conn, mtu);
  }

  onDisconnect(conn: number, reason: number): void {
    this.link = undefined;
    if (this.device.state === 'running') this.device.disconnect(conn, reason);
  }

  onMtu(conn: number, mtu: number): void {
    if (this.device.state === 'running') this.device.mtu(conn, mtu);
  }

  async onWrite(
    conn: number,
    chrId: number,
    data: Uint8Array,
    withResponse: boolean,
  ): Promise<number> {
    if (this.device.state !== 'running') return ATT_UNLIKELY;
    return this.device.write(conn, chrId, data, withResponse).catch(() => ATT_UNLIKELY);
  }

  async onRead(conn: number, chrId: number): Promise<ReadResult> {
    if (this.device.state !== 'running') return { status: ATT_UNLIKELY, data: new Uint8Array() };
    return this.device
      .read(conn, chrId)
      .catch(() => ({ status: ATT_UNLIKELY, data: new Uint8Array() }));
  }

  onSubscribe(conn: number, chrId: number, flags: number): void {
    if (this.device.state === 'running') this.device.subscribe(conn, chrId, flags);
  }
}

const ATT_UNLIKELY = 0x0e;

export interface VirtualRig {
  /** noble, running its own Linux HCI stack on the virtual controller. */
  readonly noble: Noble;
  readonly radio: VirtualRadio;
  readonly boards: readonly VirtualBoard[];
  /** The link profile, or undefined for the zero-latency link. */
  readonly profile: LinkProfile | undefined;
  board(name: string): VirtualBoard;
  /** Every fault that fired, radio and device, by name. */
  faultNames(): string[];
  close(): Promise<void>;
}

/**
 * Starts a virtual bench: simulated ESP32 boards on a virtual radio, and noble on a virtual HCI
 * controller. Only one rig per process uses noble's singleton (as there is one adapter).
 */
export async function startVirtualRig(options: VirtualRigOptions = {}): Promise<VirtualRig> {
  const program = options.program ?? defaultDeviceProgram;
  const profileName = options.profile ?? 'linux-noble-esp32';
  const profile = profileName === 'immediate' ? undefined : getProfile(profileName);
  const layout = await readGattLayout(program);
  const ownDir = options.workDir === undefined;
  const workDir = options.workDir ?? (await mkdtemp(join(tmpdir(), 'esp-ble-ota-rig-')));

  const boards: VirtualBoard[] = [];
  const radio = new VirtualRadio({
    createLink: (req) => {
      const link: AirScheduler = profile ? createProfileLink(profile) : new ImmediateAirScheduler();
      boards.find((b) => b.address === req.peripheralAddress)?.attachLink(link);
      return link;
    },
  });

  const specs = options.boards?.length ? options.boards : [{}];
  for (const [i, spec] of specs.entries()) {
    const opts = {
      ...spec,
      name: spec.name ?? 'esp32',
      address: spec.address ?? `24:0a:c4:00:00:${(i + 1).toString(16).padStart(2, '0')}`,
      chip: spec.chip ?? profile?.chip ?? 'esp32',
    };
    const flashPath = spec.flashPath ?? join(workDir, `board-${i + 1}-flash.bin`);
    const uart = await UartBridge.open();
    const board = new VirtualBoard(opts, flashPath, uart, profile, program);
    board.peripheral = radio.addPeripheral({
      address: opts.address,
      name: opts.name,
      gatt: layout,
      app: board,
      advertising: false,
      supports2M: opts.chip !== 'esp32',
      // noble always asks for MTU 256; the central of the profile (macOS: 185) may offer less.
      preferredMtu: Math.min(
        NIMBLE_DEFAULT_PREFERRED_MTU,
        profile?.centralMtu ?? NIMBLE_DEFAULT_PREFERRED_MTU,
      ),
      ...(spec.faults ? { faults: spec.faults } : {}),
    });
    boards.push(board);
  }
  await Promise.all(boards.map((b) => b.startDevice({ resetReason: 'poweron' })));

  installVirtualHci(radio);
  const noble = options.noble === 'singleton' ? loadNoble() : createNoble();

  return {
    noble,
    radio,
    boards,
    profile,
    board(name: string) {
      const b = boards.find((x) => x.name === name);
      if (!b)
        throw new Error(
          `no board named ${name} on this rig (${boards.map((x) => x.name).join(', ')})`,
        );
      return b;
    },
    faultNames() {
      return [
        ...radio.faultLog.map((f) => f.name),
        ...boards.flatMap((b) => b.faultLog.map((f) => f.name)),
      ];
    },
    async close() {
      await Promise.all(boards.map((b) => b.close()));
      if (ownDir) await rm(workDir, { recursive: true, force: true });
    },
  };
}
