import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hasBleRadio, noBleRadioReason } from '@esp-ble-ota/protocol';
import { execa } from 'execa';
import type { PeripheralApp, ReadResult } from './att/app.ts';
import { type GattLayout, parseGattLayout } from './att/gatt-layout.ts';
import type { VirtualPeripheral } from './att/peripheral.ts';
import type { LinkSecurityLevel } from './att/smp.ts';
import { UartBridge } from './console/uart-bridge.ts';
import { type LinkTuningRequest, PHY_1M, PHY_2M } from './device/frames.ts';
import {
  type BootOptions,
  type DeviceLimits,
  type DevicePreErase,
  type DeviceSecurity,
  defaultDeviceProgram,
  RESET_REASONS,
  SimulatedDevice,
} from './device/simulated-device.ts';
import type { Fault } from './hci/faults.ts';
import {
  createNoble,
  installVirtualHci,
  loadNoble,
  type Noble,
  releaseNoble,
} from './hci/install.ts';
import { VirtualRadio } from './hci/radio.ts';
import { cpuWorkUs, type DeviceCpuProfile, deviceCpuFor } from './link/device-cpu.ts';
import { FLASH_SLOW, FLASH_TYPICAL, type FlashTiming, flashOpStallUs } from './link/flash.ts';
import { ImmediateAirScheduler } from './link/immediate-scheduler.ts';
import {
  centralChooseInterval,
  connectionStartParams,
  createProfileLink,
  getProfile,
  type LinkProfile,
  NIMBLE_DEFAULT_PREFERRED_MTU,
  NIMBLE_MAX_MTU,
} from './link/profiles.ts';
import type { AirScheduler, Phy } from './link/types.ts';
import { rigSigningKey } from './signing-key.ts';

/**
 * Panic restarts in a row, with no app running in between, after which the rig halts a board.
 * One is the unconfirmed image the bootloader then rolls back; a board that panics on and on has
 * nothing it can run.
 */
const BOOT_LOOP_LIMIT = 3;

/** Chips the firmware's host build simulates and makes images for (firmware/host/src/chip.c). */
export const SIM_CHIPS: readonly string[] = [
  'esp32',
  'esp32s2',
  'esp32c3',
  'esp32s3',
  'esp32c2',
  'esp32c6',
  'esp32h2',
];
/** The simulated chips a board on the virtual radio can be: those with a BLE radio. */
export const SIM_BLE_CHIPS: readonly string[] = SIM_CHIPS.filter(hasBleRadio);

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
  /**
   * The firmware's update security: trusted signing keys, anti-rollback. Default: the
   * firmware's secure default, images signed by the rig's key only (`rigSigningKey()`) and
   * anti-rollback on. `TAKES_ANY_IMAGE` is a firmware built with signature checks off.
   */
  security?: DeviceSecurity;
  /**
   * The firmware's denial-of-service limits: the idle timeout (30 s) and the refusal back-off
   * (up to 64 s), at the firmware's defaults unless given. Tests that send refused images back
   * to back turn the back-off off (`refusalBackoffMaxS: 0`).
   */
  limits?: DeviceLimits;
  /**
   * The firmware's background erase of the update slot, at the firmware's default (idle without a
   * connection, after 30 s, a block a second) unless given; `idle()` lets the time pass.
   */
  preErase?: DevicePreErase;
  /** Delay between DONE_ACK and the restart; the firmware's default is 500 ms. */
  restartDelayMs?: number;
  /** Cut the power at this flash operation (1-based, erase/write) of the first boot. */
  powerCutAt?: number;
  /** Tear that operation (half a write programmed, half a sector or block erased). */
  powerCutTorn?: boolean;
  /** Journal every erase and write of every boot to this file (BootOptions.flashJournal). */
  flashJournal?: string;
  /** After a power cut, leave the board off (halted) instead of powering it on again. */
  stayOffAfterPowerCut?: boolean;
  /** Flash at its datasheet maxima (400 ms sector erase, 3 ms page program) instead of typical. */
  slowFlash?: boolean;
}

/** A board's firmware built with signature checks and anti-rollback off: it takes any image. */
export const TAKES_ANY_IMAGE: DeviceSecurity = Object.freeze({});

/**
 * The firmware's secure default (CONFIG_BLE_OTA_REQUIRE_SIGNED, anti-rollback,
 * CONFIG_BLE_OTA_LINK_SECURITY "encrypted"): updates signed by the key with this digest only,
 * no secure_version below the one that confirmed itself, and OTA writes only on an encrypted
 * link (the central pairs first; noble does so on its own).
 */
export function signedUpdatesOnly(trustedKeyDigest: string): DeviceSecurity {
  return { trustedKeyDigests: [trustedKeyDigest], antiRollback: true, linkSecurity: 'encrypted' };
}

/** One LINK_REQUEST of the firmware and what the link did with it. */
export interface LinkTuningRecord {
  board: string;
  conn: number;
  request: LinkTuningRequest;
  /** Modeled time of the request on the connection's link, in microseconds. */
  requestedAtUs: number;
  /** Set once the procedure finished (never, if the link dropped first). */
  outcome?: {
    /** Whether the central granted it (a connection update can be refused). */
    accepted: boolean;
    /** Modeled time when the link used the new parameters, in microseconds. */
    atUs: number;
    connIntervalMs: number;
    dataLength: number;
    phy: Phy;
  };
}

/** One line per request, for logs and test failures. */
export function describeLinkTuning(r: LinkTuningRecord): string {
  const q = r.request;
  const asked =
    q.kind === 'connParams'
      ? `connection interval ${q.minInterval * 1.25}-${q.maxInterval * 1.25} ms, latency ${q.latency}, timeout ${q.timeout * 10} ms`
      : q.kind === 'dataLength'
        ? `data length ${q.txOctets} (${q.txTimeUs} us)`
        : `PHY tx ${phyBits(q.txPhys)} rx ${phyBits(q.rxPhys)}`;
  const at = `${(r.requestedAtUs / 1000).toFixed(3)} ms`;
  if (!r.outcome) return `${r.board} conn ${r.conn} @${at}: asked ${asked}; pending`;
  const o = r.outcome;
  return `${r.board} conn ${r.conn} @${at}: asked ${asked}; ${o.accepted ? 'granted' : 'refused'} @${(o.atUs / 1000).toFixed(3)} ms: interval ${o.connIntervalMs} ms, data length ${o.dataLength}, PHY ${o.phy}`;
}

function phyBits(bits: number): string {
  const names = [bits & PHY_1M ? '1M' : '', bits & PHY_2M ? '2M' : ''].filter(Boolean);
  return names.length ? names.join('|') : 'none';
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
   * zero-latency link that only checks behaviour; or a profile of one's own (a PROFILES entry
   * with another flash or model, for what-if figures).
   */
  profile?: string | LinkProfile;
  /**
   * What-if: the device's ACL receive pool in link-layer PDUs, instead of what the firmware's
   * configuration declares (`--gatt-json`). IDF's default is 24.
   */
  peripheralRxBuffers?: number;
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
  /**
   * noble's extended (Bluetooth 5) mode for an `instance` noble: it then enables the LE events
   * of Data Length Change and PHY Update Complete, which the controller sends only when enabled.
   */
  nobleExtended?: boolean;
}

const layouts = new Map<string, GattLayout>();

/** protocol-v2.md: the v2 Control characteristic. */
const V2_CONTROL_UUID = '44d90618-0f1a-4804-b9c7-a5ae29118ffa';

/**
 * A firmware that declares the v2 characteristics is a v2 host build, which answers every input
 * frame with FRAME_DONE (protocol-v2.md, "The host build's frames for v2"). Knowing it before the
 * first frame lets the rig hold modeled time from the very first CONNECT.
 */
export function declaresV2(layout: GattLayout): boolean {
  return layout.services.some((s) =>
    s.characteristics.some((c) => c.uuid.toLowerCase() === V2_CONTROL_UUID),
  );
}

/** The GATT layout the firmware declares (ble_ota_gatt.h), as its host build exports it. */
export async function readGattLayout(
  program = defaultDeviceProgram,
  linkSecurity: LinkSecurityLevel = 'open',
): Promise<GattLayout> {
  const key = `${program}\0${linkSecurity}`;
  const cached = layouts.get(key);
  if (cached) return cached;
  if (!existsSync(program)) {
    throw new Error(
      `simulated device program not found at ${program}: build it with \`pnpm --filter @esp-ble-ota/firmware-host build\``,
    );
  }
  const { stdout } = await execa(program, ['--link-security', linkSecurity, '--gatt-json']);
  const layout = parseGattLayout(stdout, program);
  layouts.set(key, layout);
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
  /** Restarts by the panic handler since the app last ran. */
  private panicsSinceRun = 0;
  private link: AirScheduler | undefined;
  private lastModeledMs = 0;
  /** Modeled time of this board's connections before the current one. */
  private priorLinksMs = 0;
  /**
   * The link model's clock of this board in milliseconds: the modeled time of its connections
   * one after the other (each starts where the last one ended), held at its last value between
   * connections. Undefined on the zero-latency link,
   * which has no time of its own. Upload sessions take it as their clock so rates, ETAs and
   * phase timings are what a bench would see.
   */
  readonly modeledClock: { now(): number } | undefined;
  private closing = false;
  private nextBoot: BootOptions = {};
  private waiters: Array<() => void> = [];
  private readonly flashTiming: FlashTiming;
  /** What this board's CPU costs in modeled time; undefined on the zero-latency link. */
  readonly deviceCpu: DeviceCpuProfile | undefined;
  /** Device faults that fired or are in force: power cuts, slow flash. */
  readonly faultLog: DeviceFaultRecord[] = [];
  /** Every LINK_REQUEST of the firmware and its outcome, in the order they came. */
  readonly linkLog: LinkTuningRecord[] = [];
  peripheral!: VirtualPeripheral;

  constructor(
    readonly options: Required<Pick<BoardOptions, 'name' | 'address' | 'chip'>> & BoardOptions,
    readonly flashPath: string,
    readonly uart: UartBridge,
    readonly profile: LinkProfile | undefined,
    program: string,
    sendsFrameDone?: boolean,
  ) {
    this.device = new SimulatedDevice({
      flashPath,
      name: options.name,
      program,
      ...(sendsFrameDone === undefined ? {} : { sendsFrameDone }),
      ...(options.security ? { security: options.security } : {}),
      ...(options.limits ? { limits: options.limits } : {}),
      ...(options.preErase ? { preErase: options.preErase } : {}),
    });
    this.device.holdModeledTime = () => this.link?.hold?.();
    this.device.on('linkRequest', (request) => {
      void this.onLinkRequest(request);
    });
    this.flashTiming = options.slowFlash ? FLASH_SLOW : (profile?.flash ?? FLASH_TYPICAL);
    this.modeledClock = profile
      ? {
          now: () => {
            if (this.link) this.lastModeledMs = this.priorLinksMs + this.link.nowUs / 1000;
            return this.lastModeledMs;
          },
        }
      : undefined;
    // The console's clock follows the model, so "OTA done: N ms" and the timeline agree.
    if (this.modeledClock) this.device.modeledNowMs = this.modeledClock.now;
    if (options.slowFlash) {
      this.faultLog.push({
        name: 'slow-flash',
        board: options.name,
        detail: 'flash at datasheet maxima',
      });
    }
    if (options.powerCutAt !== undefined) {
      this.nextBoot = {
        powerCutAt: options.powerCutAt,
        ...(options.powerCutTorn ? { powerCutTorn: true } : {}),
      };
    }
    this.device.on('console', (data) => this.uart.write(data));
    this.device.on('reset', (reason) => {
      if (reason === RESET_REASONS.panic) this.panicsSinceRun += 1;
    });
    this.device.on('hello', (info) => {
      this.panicsSinceRun = 0;
      // HELLO 0 comes on CONNECT (NimBLE stops advertising while connected); the radio side
      // already stopped, so only the advertising that starts again needs passing on.
      if (info.advertising) this.peripheral.startAdvertising(info.name);
      for (const w of this.waiters.splice(0)) w();
    });
    this.device.on('notify', (conn, chrId, data) => {
      this.peripheral.notify(conn, chrId, data);
    });
    // The firmware drops a link (an idle one): a peripheral-initiated disconnect on the air. The
    // central hears `reason`, the device hears of it through onDisconnect and advertises again.
    this.device.on('terminate', (conn, reason) => {
      this.peripheral.disconnect(conn, reason);
    });
    // The chip's CPU (device-cpu.ts): the OTA writer's work as the device program reports it.
    this.deviceCpu =
      profile === undefined
        ? undefined
        : profile.chip === options.chip
          ? profile.deviceCpu
          : profile.deviceCpu && deviceCpuFor(options.chip);
    this.device.on('cpuWork', (kind, amount) => {
      if (this.deviceCpu && this.link?.occupyWriter)
        this.link.occupyWriter(cpuWorkUs(this.deviceCpu, kind, amount));
    });
    this.device.on('flashOp', (op) => {
      // The flash stall holds the whole chip, radio host task included (cache off).
      if (this.profile && this.link)
        this.link.stallPeripheral(flashOpStallUs(op, this.flashTiming));
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
      if (!this.closing && this.panicsSinceRun >= BOOT_LOOP_LIMIT) {
        // A real board goes on boot-looping; the rig stops it so that a test or a run ends.
        this.faultLog.push({
          name: 'boot-loop',
          board: this.options.name,
          detail: `halted after ${this.panicsSinceRun} panic restarts in a row without an app running`,
        });
        this.device.halt();
      }
      if (info.powerCut && this.options.stayOffAfterPowerCut) this.device.halt();
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

  /**
   * Carries out one LINK_REQUEST through the radio model, as NimBLE's controller and the central
   * would: an L2CAP connection parameter update (the central picks the interval and says so to
   * noble in LE Connection Update Complete), the Data Length Update procedure (Data Length Change
   * to noble), the PHY Update procedure (2M only when both sides have it; PHY Update Complete to
   * noble). Then LINK_UPDATE tells the firmware what the link uses.
   */
  async onLinkRequest(request: LinkTuningRequest): Promise<LinkTuningRecord> {
    const link = this.link;
    const record: LinkTuningRecord = {
      board: this.name,
      conn: request.conn,
      request,
      requestedAtUs: link?.nowUs ?? 0,
    };
    this.linkLog.push(record);
    if (!link || !this.peripheral.connections().includes(request.conn)) return record;
    const p = this.peripheral;
    let accepted = true;
    try {
      if (request.kind === 'connParams') {
        let onUpdate: ((conn: number) => void) | undefined;
        const updated = new Promise<void>((resolve) => {
          onUpdate = (conn) => {
            if (conn === request.conn) resolve();
          };
          p.on('connectionUpdated', onUpdate);
          p.on('disconnect', onUpdate);
        });
        try {
          accepted = await p.requestConnectionUpdate(request.conn, {
            minIntervalMs: request.minInterval * 1.25,
            maxIntervalMs: request.maxInterval * 1.25,
            latency: request.latency,
            supervisionTimeoutMs: request.timeout * 10,
          });
          // The answer may reach the peripheral before or after the central switches.
          if (accepted) await updated;
        } finally {
          if (onUpdate) {
            p.off('connectionUpdated', onUpdate);
            p.off('disconnect', onUpdate);
          }
        }
      } else if (request.kind === 'dataLength') {
        await p.requestDataLength(request.conn, request.txOctets);
      } else {
        await p.requestPhy(request.conn, request.txPhys, request.rxPhys);
      }
    } catch {
      // The link dropped while the procedure ran: nothing to tell the firmware.
      return record;
    }
    if (this.link !== link || this.device.state !== 'running') return record;
    const now = link.params;
    record.outcome = {
      accepted,
      atUs: link.nowUs,
      connIntervalMs: now.connIntervalMs,
      dataLength: now.dataLength,
      phy: now.phy,
    };
    this.device.linkUpdate({
      conn: request.conn,
      interval: Math.round(now.connIntervalMs / 1.25),
      dataLength: now.dataLength,
      phy: now.phy === '2M' ? 2 : 1,
    });
    return record;
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

  /**
   * Lets `ms` pass with nothing on the air: the link model has no events then, so its clock
   * stands still, while a board's timers would run on. The board's modeled clock moves on by
   * `ms` and the device is told at once (IDLE), so the firmware's timers (the idle timeout, the
   * refusal back-off, a held session) see that wait as a chip would; resolves once the device
   * has handled it. On the zero-latency link, which has no clock of its own, it waits `ms` of
   * real time instead. A device that is not running only lets the time pass.
   */
  async idle(ms: number): Promise<void> {
    if (!this.modeledClock) {
      await new Promise((resolve) => setTimeout(resolve, ms));
      return;
    }
    const told = this.device.state === 'running' ? this.device.idle(ms) : Promise.resolve();
    this.modeledClock.now();
    this.priorLinksMs += ms;
    this.lastModeledMs += ms;
    await told;
  }

  /** Called by the rig when a central connects to this board. */
  attachLink(link: AirScheduler): void {
    // Each connection's model starts at 0; the board's clock goes on from where the last one was.
    this.priorLinksMs = this.modeledClock?.now() ?? 0;
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
    // Power comes back as a power-on reset, whatever the firmware was doing.
    this.nextBoot = { resetReason: 'poweron', ...opts };
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
      ...(this.options.flashJournal === undefined
        ? {}
        : { flashJournal: this.options.flashJournal }),
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
    // The board's clock keeps the link's last instant.
    this.modeledClock?.now();
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
    // The NimBLE host task's work on this PDU; on one core the writer waits for it too.
    const cpu = this.deviceCpu;
    if (cpu && this.link?.busyHost) {
      this.link.busyHost(cpu.nimbleRxPduUs);
      if (cpu.cores === 1) this.link.occupyWriter?.(cpu.nimbleRxPduUs, true);
    }
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
  /** Every LINK_REQUEST of every board and its outcome, in the order they came per board. */
  linkLog(): LinkTuningRecord[];
  close(): Promise<void>;
}

/**
 * Starts a virtual bench: simulated ESP32 boards on a virtual radio, and noble on a virtual HCI
 * controller. Only one rig per process uses noble's singleton (as there is one adapter).
 */
export async function startVirtualRig(options: VirtualRigOptions = {}): Promise<VirtualRig> {
  const program = options.program ?? defaultDeviceProgram;
  const profileOption = options.profile ?? 'linux-noble-esp32';
  const profile =
    typeof profileOption !== 'string'
      ? profileOption
      : profileOption === 'immediate'
        ? undefined
        : getProfile(profileOption);
  const specs = options.boards?.length ? options.boards : [{}];
  for (const [i, spec] of specs.entries()) {
    const chip = spec.chip ?? profile?.chip ?? 'esp32';
    if (!hasBleRadio(chip)) {
      throw new Error(
        `board ${i + 1}: ${noBleRadioReason(chip)}; simulate a chip with one (${SIM_BLE_CHIPS.join(', ')})`,
      );
    }
  }
  const layout = await readGattLayout(program);
  const ownDir = options.workDir === undefined;
  const workDir = options.workDir ?? (await mkdtemp(join(tmpdir(), 'esp-ble-ota-rig-')));

  const boards: VirtualBoard[] = [];
  // The firmware's own receive buffering, when its configuration declares one, replaces the
  // profile's IDF default: it decides how much of a flash stall the link rides out.
  const rxBuffers = options.peripheralRxBuffers ?? layout.controller?.aclRxBuffers;
  const deviceModel = rxBuffers === undefined ? {} : { peripheralRxBuffers: rxBuffers };
  const radio = new VirtualRadio({
    createLink: (req) => {
      const link: AirScheduler = profile
        ? createProfileLink(profile, connectionStartParams(profile), deviceModel)
        : new ImmediateAirScheduler();
      boards.find((b) => b.address === req.peripheralAddress)?.attachLink(link);
      return link;
    },
    ...(profile
      ? {
          chooseInterval: (minMs: number, maxMs: number, currentMs: number) =>
            centralChooseInterval(profile, minMs, maxMs, currentMs),
          controller: { supports2M: profile.centralSupports2M },
        }
      : {}),
  });
  const sendsFrameDone = declaresV2(layout) ? true : undefined;

  // Boards run the firmware's secure default unless told otherwise.
  const secureDefault = specs.some((s) => s.security === undefined)
    ? signedUpdatesOnly((await rigSigningKey()).digest)
    : undefined;
  for (const [i, spec] of specs.entries()) {
    const opts = {
      ...spec,
      ...(spec.security === undefined && secureDefault ? { security: secureDefault } : {}),
      name: spec.name ?? 'esp32',
      address: spec.address ?? `24:0a:c4:00:00:${(i + 1).toString(16).padStart(2, '0')}`,
      chip: spec.chip ?? profile?.chip ?? 'esp32',
    };
    const flashPath = spec.flashPath ?? join(workDir, `board-${i + 1}-flash.bin`);
    const uart = await UartBridge.open();
    const board = new VirtualBoard(opts, flashPath, uart, profile, program, sendsFrameDone);
    board.peripheral = radio.addPeripheral({
      address: opts.address,
      name: opts.name,
      gatt: await readGattLayout(program, opts.security?.linkSecurity ?? 'open'),
      app: board,
      advertising: false,
      supports2M: opts.chip !== 'esp32',
      // The device answers with its firmware's preferred MTU; the central of the profile
      // (macOS: 185) may offer less. noble asks for 256 unless setRequestedMtu raised it.
      preferredMtu: Math.min(
        layout.controller?.preferredMtu ?? NIMBLE_DEFAULT_PREFERRED_MTU,
        profile?.centralMtu ?? NIMBLE_MAX_MTU,
      ),
      ...(spec.faults ? { faults: spec.faults } : {}),
    });
    boards.push(board);
  }
  await Promise.all(boards.map((b) => b.startDevice({ resetReason: 'poweron' })));
  // The first boot printed to nobody: let it leave the UART bridges before anyone can open a
  // port, so a reader never sees the tail of a boot that happened before it was there.
  await Promise.all(boards.map((b) => b.uart.idle()));

  installVirtualHci(radio);
  const noble =
    options.noble === 'singleton'
      ? loadNoble()
      : createNoble(options.nobleExtended ? { extended: true } : {});

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
    linkLog() {
      return boards.flatMap((b) => b.linkLog);
    },
    faultNames() {
      return [
        ...radio.faultLog.map((f) => f.name),
        ...boards.flatMap((b) => b.faultLog.map((f) => f.name)),
      ];
    },
    async close() {
      await Promise.all(boards.map((b) => b.close()));
      releaseNoble(noble);
      if (ownDir) await rm(workDir, { recursive: true, force: true });
    },
  };
}
