import { EventEmitter } from 'node:events';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import { type DeviceEvent, encode, type FlashOpKind, FrameDecoder } from './frames.ts';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..');

/** Where the firmware's host build puts the simulated device program. */
export const defaultDeviceProgram = join(repoRoot, 'firmware', 'host', 'build', 'ble-ota-device');

/** The exit code with which the device program reports a cut at its Nth flash operation. */
export const POWER_CUT_EXIT_CODE = 137;

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
}

export interface BootOptions {
  /** Cut power at this flash operation (1-based, counted from the start of this boot). */
  powerCutAt?: number;
  /** Make a new flash file first, as the factory would, with `image` in ota_0. */
  create?: { chip: string; image?: string };
  /** What the ROM prints as the reset cause: power-on, or the software reset after an OTA. */
  resetReason?: 'poweron' | 'sw';
  /** Delay between DONE_ACK and the restart; the firmware's default is 500 ms. */
  restartDelayMs?: number;
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
  /** The firmware asked for a restart (after OTA, or a rollback). */
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

  constructor(readonly options: SimulatedDeviceOptions) {
    super();
  }

  /** Flash operations of the current (or last) boot, in order. */
  get flashOps(): readonly DeviceFlashOp[] {
    return this.ops;
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
    if (opts.powerCutAt !== undefined) args.push('--power-cut-at', String(opts.powerCutAt));
    if (opts.create) {
      args.push('--create', '--chip', opts.create.chip);
      if (opts.create.image) args.push('--image', opts.create.image);
    }
    if (opts.resetReason) args.push('--reset-reason', opts.resetReason);
    if (opts.restartDelayMs !== undefined) {
      args.push('--restart-delay-ms', String(opts.restartDelayMs));
    }
    this.decoder = new FrameDecoder();
    this.ops = [];
    this.stderr = '';
    this._state = 'booting';
    const child = execa(this.program, args, programOptions);
    this.child = child;
    child.stdout.on('data', (chunk: Buffer) => this.onStdout(chunk));
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
    void child.then((result) => this.onExit(child, result.exitCode));
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

  /** Resolves with the ATT status for a write with response, with 0 at once otherwise. */
  write(conn: number, chrId: number, data: Uint8Array, withResponse: boolean): Promise<number> {
    this.send(encode.write(conn, chrId, data, withResponse));
    if (!withResponse) return Promise.resolve(0);
    return new Promise((resolve, reject) => this.pendingWrites.push({ resolve, reject }));
  }

  read(conn: number, chrId: number): Promise<{ status: number; data: Uint8Array }> {
    this.send(encode.read(conn, chrId));
    return new Promise((resolve, reject) => this.pendingReads.push({ resolve, reject }));
  }

  private send(bytes: Uint8Array): void {
    const child = this.child;
    if (!child || this._state !== 'running') {
      throw new Error(`the simulated device is ${this._state}, not running`);
    }
    child.stdin.write(bytes);
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
    for (const ev of events) this.dispatch(ev);
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
    }
  }

  private onExit(child: ResultPromise<typeof programOptions>, exitCode: number | undefined): void {
    if (this.child !== child) return;
    this.child = undefined;
    const powerCut = exitCode === POWER_CUT_EXIT_CODE;
    // Exit 0 is a restart the firmware asked for; anything else before HELLO means the
    // bootloader found nothing it could boot.
    this._state = exitCode === 0 || powerCut || this._state === 'running' ? 'off' : 'halted';
    const gone = new Error('the simulated device restarted or lost power');
    for (const p of this.pendingWrites.splice(0)) p.reject(gone);
    for (const p of this.pendingReads.splice(0)) p.reject(gone);
    this.emit('off', { exitCode, powerCut, stderr: this.stderr, flashOps: this.ops });
  }
}
