import { EventEmitter } from 'node:events';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import type { LinkSecurityLevel } from '../att/smp.ts';
import type { CpuWorkKind } from '../link/device-cpu.ts';
import {
  type DeviceEvent,
  encode,
  type FlashOpKind,
  FrameDecoder,
  type LinkTuningRequest,
  type LinkTuningUpdate,
} from './frames.ts';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..');

/** Where the firmware's host build puts the simulated device program. */
export const defaultDeviceProgram = join(repoRoot, 'firmware', 'host', 'build', 'ble-ota-device');

/** Wall time a frame may wait for its FRAME_DONE before the device counts as not sending it. */
const FRAME_DONE_TIMEOUT_MS = 15_000;

/** The exit code with which the device program reports a cut at its Nth flash operation. */
export const POWER_CUT_EXIT_CODE = 137;

/** Why the firmware restarted, as its RESET frame says (firmware/host/src/io.h). */
export const RESET_REASONS = {
  swRestart: 1,
  rollback: 2,
  /** The app faulted and the panic handler restarted the chip (an image with no code for it). */
  panic: 4,
} as const;

const programOptions = {
  stdin: 'pipe',
  stdout: 'pipe',
  stderr: 'pipe',
  buffer: false,
  reject: false,
  encoding: 'buffer',
} as const;

export type DeviceState = 'off' | 'booting' | 'running' | 'halted';

export interface SimulatedDeviceOptions {
  /** Flash image file (4 MB, with partition table and otadata). */
  flashPath: string;
  /** Advertised name; the firmware's default is `esp32`. */
  name?: string;
  /** Path of the device program; defaults to the host build's. */
  program?: string;
  /**
   * Whether the program answers every input frame with FRAME_DONE (protocol-v2.md, "The host
   * build's frames for v2"). Unknown (default): learnt from the first FRAME_DONE it sends, and
   * kept for later boots of the same device.
   */
  sendsFrameDone?: boolean;
  /** The firmware's update security (Kconfig on a chip), passed to every boot. */
  security?: DeviceSecurity;
  /** The firmware's denial-of-service limits (Kconfig on a chip), passed to every boot. */
  limits?: DeviceLimits;
  /** The firmware's background erase of the update slot (Kconfig on a chip), every boot. */
  preErase?: DevicePreErase;
}

/**
 * CONFIG_BLE_OTA_PRE_ERASE, _DELAY_S and _PAUSE_MS of the simulated firmware: when it erases the
 * next update slot in the background (one 64 KB block per pause, a FLASH_OP each, whose stall a
 * link that is up pays), so that an update skips those erases. An absent field keeps the
 * firmware's default: idle without a connection, after 30 s, a block every 1000 ms.
 */
export interface DevicePreErase {
  mode?: 'off' | 'disconnected' | 'idle';
  /** Idle time before it starts (0 to 3600 s). */
  delayS?: number;
  /** At least this long between two block erases (0 to 60000 ms). */
  pauseMs?: number;
}

/**
 * CONFIG_BLE_OTA_IDLE_TIMEOUT_S and CONFIG_BLE_OTA_REFUSAL_BACKOFF_MAX_S of the simulated
 * firmware, in whole seconds (0 to 3600); an absent one keeps the firmware's default, as a chip
 * built from firmware/sdkconfig.defaults has it.
 */
export interface DeviceLimits {
  /**
   * A link that has started or moved on no update for this long is dropped (the device then
   * advertises again); default 30, 0 never.
   */
  idleTimeoutS?: number;
  /**
   * After n refused v2 updates in a row BEGIN is answered BUSY for 2^(n-1) s, at most this long;
   * default 64. 0 turns the back-off off, for tests that send refused images back to back.
   */
  refusalBackoffMaxS?: number;
}

/**
 * CONFIG_BLE_OTA_TRUSTED_KEY_DIGESTS and CONFIG_BLE_OTA_ANTI_ROLLBACK of the simulated firmware:
 * with a trusted key digest the device takes signed updates only (Secure Boot v2 format, checked
 * before the boot slot changes); with anti-rollback it refuses a secure_version below the one
 * the last confirmed image had (the eFuse lives beside the flash file, `<flash>.efuse`).
 */
export interface DeviceSecurity {
  /** SHA-256 of each trusted public key, 64 hex digits (ble-ota keygen prints it); at most 3. */
  trustedKeyDigests?: string[];
  antiRollback?: boolean;
  /**
   * CONFIG_BLE_OTA_LINK_SECURITY: the link the OTA writes need. Absent: open (a firmware built
   * without NimBLE's security manager).
   */
  linkSecurity?: LinkSecurityLevel;
  /** CONFIG_BLE_OTA_ALLOW_DOWNGRADE: an older app version when the client asks (default off). */
  allowDowngrade?: boolean;
}

/**
 * Freezes modeled time while the device works on a frame; returns the release. The board hands
 * in its link's `hold()`, so that whatever the device does for a frame (answers, flash stalls,
 * link requests) lands at the modeled instant the frame arrived, however slow the machine is.
 */
export type HoldModeledTime = () => (() => void) | undefined;

interface InFlightFrame {
  type: number;
  release: (() => void) | undefined;
  done: (() => void) | undefined;
}

export interface BootOptions {
  /** Cut power at this flash operation (1-based, counted from the start of this boot). */
  powerCutAt?: number;
  /** Tear that operation (half of it happens) instead of skipping it. */
  powerCutTorn?: boolean;
  /** Make a new flash file first, as the factory would, with `image` in ota_0. */
  create?: { chip: string; image?: string };
  /** What the ROM prints as the reset cause: power-on, or the software reset after an OTA. */
  resetReason?: 'poweron' | 'sw';
  /** Delay between DONE_ACK and the restart; the firmware's default is 500 ms. */
  restartDelayMs?: number;
  /**
   * Append every erase and write of this boot, with a write's bytes, to this file
   * (`--flash-journal`, firmware/host/README.md); `readFlashJournal` reads it back.
   */
  flashJournal?: string;
}

export interface DeviceFlashOp {
  op: FlashOpKind;
  addr: number;
  len: number;
}

interface Pending<T> {
  resolve(value: T): void;
  reject(error: Error): void;
}

interface DeviceEvents {
  console: [data: Uint8Array];
  hello: [info: { advertising: boolean; name: string }];
  notify: [conn: number, chrId: number, data: Uint8Array];
  flashOp: [op: DeviceFlashOp];
  /** CPU_WORK: what the app computed that costs a chip time (the device cost model). */
  cpuWork: [kind: CpuWorkKind, amount: number];
  /** LINK_REQUEST: the firmware asks for other link parameters. */
  linkRequest: [request: LinkTuningRequest];
  /** TERMINATE: the firmware drops this link (ble_gap_terminate); `reason` goes to the central. */
  terminate: [conn: number, reason: number];
  /** The device finished an input frame of this type (FRAME_DONE). */
  frameDone: [frameType: number];
  /** The firmware asked for a restart (after OTA, a rollback, a panic: RESET_REASONS). */
  reset: [reason: number];
  /** The process ended; `powerCut` when it was a cut at a flash operation. */
  off: [
    info: {
      exitCode: number | undefined;
      powerCut: boolean;
      stderr: string;
      /** The flash operations of the boot that ended. */
      flashOps: readonly DeviceFlashOp[];
    },
  ];
}

/**
 * One simulated ESP32: runs the firmware's host build (bootloader emulation, then the app that
 * is in the boot slot) as a child process over the frame protocol of firmware/host/README.md.
 * One process is one boot; a restart is a new process on the same flash file.
 */
export class SimulatedDevice extends EventEmitter<DeviceEvents> {
  private child: ResultPromise<typeof programOptions> | undefined;
  private decoder = new FrameDecoder();
  private pendingWrites: Pending<number>[] = [];
  private pendingReads: Pending<{ status: number; data: Uint8Array }>[] = [];
  private stderr = '';
  private _state: DeviceState = 'off';
  private _advertisedName = '';
  private ops: DeviceFlashOp[] = [];
  /** Frames handed to the device that await their FRAME_DONE, oldest first. */
  private inFlight: InFlightFrame[] = [];
  /** Frames sent before the device was known to send FRAME_DONE: their FRAME_DONEs come first. */
  private untracked = 0;
  private frameDoneSeen: boolean | undefined;
  private watchdog: NodeJS.Timeout | undefined;
  private backlog: DeviceEvent[] = [];
  private draining = false;
  private drained: Promise<void> = Promise.resolve();
  /** Set by the board: how to hold modeled time while the device works on a frame. */
  holdModeledTime: HoldModeledTime | undefined;
  /**
   * Set by a board with a link model: its modeled clock in ms. Before a frame, the device is told
   * how much modeled time passed since its boot (CLOCK), so its console counts modeled time.
   */
  modeledNowMs: (() => number | undefined) | undefined;
  private bootModeledMs: number | undefined;
  private clockSentMs = 0;

  constructor(readonly options: SimulatedDeviceOptions) {
    super();
    this.frameDoneSeen = options.sendsFrameDone;
  }

  /** Whether the program sends FRAME_DONE (undefined until it is known). */
  get sendsFrameDone(): boolean | undefined {
    return this.frameDoneSeen;
  }

  /** Flash operations of the current (or last) boot, in order. */
  get flashOps(): readonly DeviceFlashOp[] {
    return this.ops;
  }

  /**
   * Keeps a device that is off from booting again on its own: what a rig does to a board that
   * only boot-loops, so that a run ends. The next boot() starts it as usual.
   */
  halt(): void {
    if (this._state === 'off') this._state = 'halted';
  }

  get state(): DeviceState {
    return this._state;
  }

  /** The name from the app's HELLO, once it runs. */
  get advertisedName(): string {
    return this._advertisedName;
  }

  get program(): string {
    return this.options.program ?? defaultDeviceProgram;
  }

  /**
   * Powers the device on. Resolves once the app runs (HELLO) or the boot ended without one
   * (no bootable app, or a power cut): look at `state`.
   */
  async boot(opts: BootOptions = {}): Promise<DeviceState> {
    if (this.child) throw new Error('the simulated device is already powered on');
    if (!existsSync(this.program)) {
      throw new Error(
        `simulated device program not found at ${this.program}: build the firmware's host build first (pnpm --filter @esp-ble-ota/firmware-host build)`,
      );
    }
    const args = ['--flash', this.options.flashPath];
    if (this.options.name) args.push('--name', this.options.name);
    if (opts.powerCutAt !== undefined) {
      args.push('--power-cut-at', String(opts.powerCutAt));
      if (opts.powerCutTorn) args.push('--power-cut-mode', 'torn');
    }
    if (opts.create) {
      args.push('--create', '--chip', opts.create.chip);
      if (opts.create.image) args.push('--image', opts.create.image);
    }
    if (opts.resetReason) args.push('--reset-reason', opts.resetReason);
    const security = this.options.security;
    for (const digest of security?.trustedKeyDigests ?? [])
      args.push('--trusted-key-digest', digest);
    if (security?.antiRollback !== undefined) {
      args.push('--anti-rollback', security.antiRollback ? 'on' : 'off');
    }
    if (security?.linkSecurity !== undefined) args.push('--link-security', security.linkSecurity);
    if (security?.allowDowngrade !== undefined) {
      args.push('--allow-downgrade', security.allowDowngrade ? 'on' : 'off');
    }
    if (opts.restartDelayMs !== undefined) {
      args.push('--restart-delay-ms', String(opts.restartDelayMs));
    }
    if (opts.flashJournal !== undefined) args.push('--flash-journal', opts.flashJournal);
    const limits = this.options.limits;
    if (limits?.idleTimeoutS !== undefined) {
      args.push('--idle-timeout-s', String(limits.idleTimeoutS));
    }
    if (limits?.refusalBackoffMaxS !== undefined) {
      args.push('--refusal-backoff-max-s', String(limits.refusalBackoffMaxS));
    }
    const preErase = this.options.preErase;
    if (preErase?.mode !== undefined) args.push('--pre-erase', preErase.mode);
    if (preErase?.delayS !== undefined) args.push('--pre-erase-delay-s', String(preErase.delayS));
    if (preErase?.pauseMs !== undefined)
      args.push('--pre-erase-pause-ms', String(preErase.pauseMs));
    this.decoder = new FrameDecoder();
    this.ops = [];
    this.untracked = 0;
    // The boot's modeled start: the model's clock now (it holds between connections).
    this.bootModeledMs = this.modeledNowMs?.();
    this.clockSentMs = 0;
    this.backlog = [];
    this.stderr = '';
    this._state = 'booting';
    const child = execa(this.program, args, programOptions);
    this.child = child;
    // Output of a boot that has ended (a restart raced it) must not reach the next boot's decoder.
    child.stdout.on('data', (chunk: Buffer) => {
      if (this.child === child) this.onStdout(chunk);
    });
    child.stderr.on('data', (chunk: Buffer) => {
      this.stderr = (this.stderr + chunk.toString()).slice(-8192);
    });
    // A device that is gone may still be written to by a racing client: that is a lost link,
    // reported through the pending operations, not an unhandled EPIPE.
    child.stdin.on('error', () => {});

    const ready = new Promise<DeviceState>((resolve) => {
      const onHello = () => {
        this.off('off', onOff);
        resolve(this._state);
      };
      const onOff = () => {
        this.off('hello', onHello);
        resolve(this._state);
      };
      this.once('hello', onHello);
      this.once('off', onOff);
    });
    void child.then(async (result) => {
      // Whatever the device said before it went is handed on first.
      while (this.draining) await this.drained;
      this.onExit(child, result.exitCode);
    });
    return ready;
  }

  /** Cuts power now (whatever the device is doing). */
  async powerOff(): Promise<void> {
    const child = this.child;
    if (!child) return;
    child.kill('SIGKILL');
    await child;
  }

  connect(conn: number, mtu: number): void {
    this.send(encode.connect(conn, mtu));
  }

  disconnect(conn: number, reason: number): void {
    this.send(encode.disconnect(conn, reason));
  }

  mtu(conn: number, mtu: number): void {
    this.send(encode.mtu(conn, mtu));
  }

  subscribe(conn: number, chrId: number, flags: number): void {
    this.send(encode.subscribe(conn, chrId, flags));
  }

  /** LINK_UPDATE: tells the firmware what the link uses now. */
  linkUpdate(update: LinkTuningUpdate): void {
    this.send(encode.linkUpdate(update));
  }

  /**
   * Resolves with the ATT status for a write with response. A Write Command resolves with 0 once
   * the device has processed it (FRAME_DONE), or at once on a device that does not say so.
   */
  write(conn: number, chrId: number, data: Uint8Array, withResponse: boolean): Promise<number> {
    if (withResponse) {
      this.send(encode.write(conn, chrId, data, true));
      return new Promise((resolve, reject) => this.pendingWrites.push({ resolve, reject }));
    }
    if (!this.frameDoneSeen) {
      this.send(encode.write(conn, chrId, data, false));
      return Promise.resolve(0);
    }
    return new Promise((resolve) => {
      // A device that goes away finishes nothing: the command is lost, as on a real link.
      this.send(encode.write(conn, chrId, data, false), () => resolve(0));
    });
  }

  read(conn: number, chrId: number): Promise<{ status: number; data: Uint8Array }> {
    this.send(encode.read(conn, chrId));
    return new Promise((resolve, reject) => this.pendingReads.push({ resolve, reject }));
  }

  /**
   * IDLE: `ms` passed with nothing on the air. The device's clock moves on by that much and its
   * writer runs, so its timers (idle timeout, refusal back-off) act as a chip's would after that
   * wait. Resolves once the device has handled it (at once on a device that does not say so).
   * A caller with a modeled clock moves it on by `ms` right after this call: the device is told
   * the modeled time until now (CLOCK) first, and the idle time is not told again.
   */
  idle(ms: number): Promise<void> {
    const child = this.child;
    if (!child || this._state !== 'running') {
      return Promise.reject(new Error(`the simulated device is ${this._state}, not running`));
    }
    this.sendClock();
    this.clockSentMs += Math.floor(ms);
    if (!this.frameDoneSeen) {
      this.sendFrame(child, encode.idle(ms));
      return Promise.resolve();
    }
    // A device that goes away meanwhile finishes nothing: there is no time left to wait for.
    return new Promise((resolve) => {
      this.sendFrame(child, encode.idle(ms), resolve);
      child.finally(() => resolve()).catch(() => {});
    });
  }

  /** Frames handed to the device whose FRAME_DONE has not come yet. */
  get framesInFlight(): number {
    return this.inFlight.length;
  }

  private send(bytes: Uint8Array, done?: () => void): void {
    const child = this.child;
    if (!child || this._state !== 'running') {
      throw new Error(`the simulated device is ${this._state}, not running`);
    }
    this.sendClock();
    this.sendFrame(child, bytes, done);
  }

  /** CLOCK before the next frame, when modeled time moved on by a millisecond or more. */
  private sendClock(): void {
    const now = this.modeledNowMs?.();
    if (now === undefined || !this.child) return;
    this.bootModeledMs ??= now;
    const sinceBoot = Math.floor(now - this.bootModeledMs);
    if (sinceBoot <= this.clockSentMs) return;
    this.clockSentMs = sinceBoot;
    this.sendFrame(this.child, encode.clock(sinceBoot));
  }

  private sendFrame(
    child: NonNullable<typeof this.child>,
    bytes: Uint8Array,
    done?: () => void,
  ): void {
    if (this.frameDoneSeen) {
      this.inFlight.push({ type: bytes[0] as number, release: this.holdModeledTime?.(), done });
      this.armWatchdog();
    } else {
      this.untracked += 1;
    }
    child.stdin.write(bytes);
  }

  /**
   * A program thought to send FRAME_DONE that stays silent (an older app booted from flash)
   * would freeze modeled time for good: after a few seconds of wall time without any FRAME_DONE
   * the device counts as one that does not send it.
   */
  private armWatchdog(): void {
    if (this.watchdog || this.inFlight.length === 0) return;
    this.watchdog = setTimeout(() => {
      this.watchdog = undefined;
      if (this.inFlight.length === 0) return;
      this.stderr += `\nno FRAME_DONE within ${FRAME_DONE_TIMEOUT_MS} ms for ${this.inFlight.length} frame(s): treating the device as one that does not send FRAME_DONE`;
      this.frameDoneSeen = false;
      for (const f of this.inFlight.splice(0)) {
        f.done?.();
        f.release?.();
      }
    }, FRAME_DONE_TIMEOUT_MS);
    this.watchdog.unref();
  }

  private onFrameDone(frameType: number): void {
    if (this.watchdog) {
      clearTimeout(this.watchdog);
      this.watchdog = undefined;
    }
    if (!this.frameDoneSeen) {
      this.frameDoneSeen = true;
    }
    if (this.untracked > 0) {
      this.untracked -= 1;
    } else {
      const f = this.inFlight.shift();
      if (!f) {
        this.stderr += `\nFRAME_DONE for frame type 0x${frameType.toString(16)} with no frame in flight`;
      } else {
        if (f.type !== frameType) {
          this.stderr += `\nFRAME_DONE for frame type 0x${frameType.toString(16)}, expected 0x${f.type.toString(16)}: frames processed out of order`;
        }
        f.done?.();
        f.release?.();
      }
    }
    this.armWatchdog();
    this.emit('frameDone', frameType);
  }

  private releaseInFlight(): void {
    if (this.watchdog) {
      clearTimeout(this.watchdog);
      this.watchdog = undefined;
    }
    for (const f of this.inFlight.splice(0)) f.release?.();
  }

  private onStdout(chunk: Buffer): void {
    let events: DeviceEvent[];
    try {
      events = this.decoder.push(chunk);
    } catch (error) {
      this.stderr += `\nframe error: ${(error as Error).message}`;
      this.child?.kill('SIGKILL');
      return;
    }
    this.backlog.push(...events);
    if (!this.draining) {
      this.draining = true;
      this.drained = this.drain();
    }
  }

  /**
   * Hands the device's events on in the order it sent them. An answer to a Write Request or a
   * Read reaches the ATT server through promise jobs; a flash operation stalls the link at once.
   * On a device that reports FRAME_DONE (time is held until then) each answer gets a turn of the
   * event loop before the next event, so that an answer sent before a flash operation leaves
   * before its stall, one sent after it waits for it, however the pipe cut the stream into chunks.
   */
  private async drain(): Promise<void> {
    try {
      while (this.backlog.length > 0) {
        const ev = this.backlog.shift() as DeviceEvent;
        this.dispatch(ev);
        if (this.frameDoneSeen && (ev.type === 'writeRsp' || ev.type === 'readRsp')) {
          await new Promise<void>((resolve) => setImmediate(resolve));
        }
      }
    } finally {
      this.draining = false;
    }
  }

  private dispatch(ev: DeviceEvent): void {
    switch (ev.type) {
      case 'hello':
        this._state = 'running';
        this._advertisedName = ev.name;
        this.emit('hello', { advertising: ev.advertising, name: ev.name });
        break;
      case 'console':
        this.emit('console', ev.data);
        break;
      case 'notify':
        this.emit('notify', ev.conn, ev.chrId, ev.data);
        break;
      case 'writeRsp':
        this.pendingWrites.shift()?.resolve(ev.status);
        break;
      case 'readRsp':
        this.pendingReads.shift()?.resolve({ status: ev.status, data: ev.data });
        break;
      case 'flashOp': {
        const op = { op: ev.op, addr: ev.addr, len: ev.len };
        this.ops.push(op);
        this.emit('flashOp', op);
        break;
      }
      case 'reset':
        this.emit('reset', ev.reason);
        break;
      case 'cpuWork':
        this.emit('cpuWork', ev.kind, ev.amount);
        break;
      case 'linkRequest':
        this.emit('linkRequest', ev.request);
        break;
      case 'terminate':
        this.emit('terminate', ev.conn, ev.reason);
        break;
      case 'frameDone':
        this.onFrameDone(ev.frameType);
        break;
    }
  }

  private onExit(child: ResultPromise<typeof programOptions>, exitCode: number | undefined): void {
    if (this.child !== child) return;
    this.child = undefined;
    const powerCut = exitCode === POWER_CUT_EXIT_CODE;
    // Exit 0 is a restart the firmware asked for; anything else before HELLO means the
    // bootloader found nothing it could boot.
    this._state = exitCode === 0 || powerCut || this._state === 'running' ? 'off' : 'halted';
    this.releaseInFlight();
    const gone = new Error('the simulated device restarted or lost power');
    for (const p of this.pendingWrites.splice(0)) p.reject(gone);
    for (const p of this.pendingReads.splice(0)) p.reject(gone);
    this.emit('off', { exitCode, powerCut, stderr: this.stderr, flashOps: this.ops });
  }
}
