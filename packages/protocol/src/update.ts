/**
 * The whole update of one device, written once for every front end (the command-line tool, the
 * HIL runner, the bench, the browser page): find the device, connect, read what it is and what it
 * enforces, choose the protocol, check the image against it, upload, reconnect and resume after
 * a lost link, wait for the restart and check that the device runs the new version.
 *
 * A front end gives a {@link DeviceAccess} (how to find the device and get a transport to it:
 * noble, the virtual rig, Web Bluetooth, a fake) and renders the {@link UpdateEvent}s. Nothing
 * here does I/O of its own or needs Node: it runs in a page as well.
 */

import { isOtaError, LinkLostError, type OtaErrorCode } from './errors.ts';
import { checkImageForDevice, type PreflightNote } from './preflight.ts';
import type { Clock } from './progress.ts';
import { readDeviceInformation } from './session.ts';
import type { DeviceInformation, Transport } from './transport.ts';
import {
  type AutoPhaseEvent,
  type AutoProgressSnapshot,
  chooseProtocol,
  type ProtocolChoice,
  type UploadAutoResult,
  type UploadProtocol,
  uploadAuto,
} from './v2/auto.ts';
import { V2LinkLostError } from './v2/errors.ts';
import { type BaseImageLookup, hasV2, readV2Info, type V2Compression } from './v2/uploader.ts';

/**
 * The OTA slot size of the baseline's partition table (CONFIG_PARTITION_TABLE_TWO_OTA: two 1 MB
 * app slots), for a device that cannot tell its own: a baseline device has no v2 INFO. A device
 * with protocol v2 reports its real slot in INFO (this firmware's partitions.csv: 0x1f0000), and
 * the update always takes that figure when the device offers it.
 */
export const BASELINE_SLOT_SIZE = 0x100000;

/** What a front end knows of a device it found. */
export interface FoundDevice {
  /** The device's address, or the id its stack gives it (Web Bluetooth hides addresses). */
  address: string;
  name?: string | undefined;
  /** dBm, when the stack tells it. */
  rssi?: number | undefined;
}

export interface FindOptions {
  signal?: AbortSignal | undefined;
  timeoutMs?: number | undefined;
}

/**
 * How the update reaches the device; the seam each front end fills in (noble in the command-line
 * tool and the HIL runner, Web Bluetooth in the page, the virtual rig, a fake in tests).
 */
export interface DeviceAccess<D extends FoundDevice = FoundDevice> {
  /** Find the device to update. Rejects (code 'DEVICE_NOT_FOUND' where it can) when none is. */
  find(options: FindOptions): Promise<D>;
  /**
   * Find the same device again: after a lost link ('reconnect') and after its restart into the
   * new image ('verify'). A stack that keeps a handle (Web Bluetooth) may return it as it is.
   */
  findAgain(device: D, options: FindOptions & { purpose: 'reconnect' | 'verify' }): Promise<D>;
  /** A transport to `device`, not yet connected; the update connects and closes it. */
  transport(device: D): Transport;
  /**
   * The clock the upload's figures are on for this device: the link model's on the virtual rig,
   * where the transfer runs faster than real time. Undefined: the wall clock.
   */
  clock?(device: D): Clock | undefined;
}

export type UpdatePhase =
  | 'scan'
  | 'connect'
  | 'device-info'
  | 'preflight'
  | 'reconnect'
  | 'verify'
  /** The upload session's own phases (v2: info, begin, data, end; baseline: subscribe, ...). */
  | Exclude<AutoPhaseEvent['phase'], 'connect'>;

export interface UpdateTiming {
  phase: UpdatePhase;
  /** Wall-clock time the phase took here. */
  wallMs: number;
  /**
   * The upload phases on the access's clock (the link model's on the virtual rig), when it has
   * one; the restart is the device's own timer and reboot, not air time, so it has none.
   */
  modeledMs?: number;
  failed?: true;
}

export type UpdateEvent =
  | { type: 'phase'; phase: UpdatePhase; state: 'start' }
  | {
      type: 'phase';
      phase: UpdatePhase;
      state: 'end' | 'fail';
      wallMs: number;
      modeledMs?: number;
      error?: Error;
    }
  | { type: 'found'; device: FoundDevice }
  | { type: 'connected'; mtu: number; device: DeviceInformation }
  | { type: 'protocol'; protocol: UploadProtocol; choice: ProtocolChoice }
  /** What the pre-flight checked the image against, and what it could not check. */
  | { type: 'preflight'; slotSize: number; slotSource: SlotSource; notes: PreflightNote[] }
  | { type: 'progress'; snapshot: AutoProgressSnapshot }
  /** The link dropped; the update reconnects (and a v2 upload continues where it stopped). */
  | {
      type: 'resuming';
      phase: UpdatePhase;
      attempt: number;
      attempts: number;
      /** Stream bytes the device confirmed before the drop (v2 after BEGIN), else 0. */
      committed: number;
      streamSize: number | undefined;
      message: string;
    }
  | {
      type: 'uploaded';
      upload: UploadAutoResult;
      /** Reconnects the upload took. */
      resumes: number;
      /** The whole upload, reconnects included, on the access's clock. */
      totalMs: number;
      /** The same in real time. */
      wallMs: number;
    }
  | { type: 'note'; message: string }
  | { type: 'verified'; version: string | undefined; expected: string | undefined };

/** Where the slot size the pre-flight used came from. */
export type SlotSource = 'option' | 'v2-info' | 'v2-begin' | 'baseline-default';

export interface UpdateOptions<D extends FoundDevice = FoundDevice> {
  image: Uint8Array;
  /** The image's chip and app version (`parseAppImage`); needed for the pre-flight and verify. */
  imageInfo: { chip: string; version: string; size?: number };
  /** A device found before (a page's chooser, the HIL's board): no scan. */
  device?: D;
  /** 'auto' (default): v2 when the device offers it and the MTU carries BEGIN. */
  protocol?: 'auto' | UploadProtocol;
  /** Compare the image's chip with the device's Model Number (default true). */
  chipCheck?: boolean;
  /**
   * Check the image against the device before sending (default true). Off, it goes out anyway
   * and the device's own checks answer: for tests of the device.
   */
  preflight?: boolean;
  /**
   * The slot size to check against, overriding what the device says; default: the device's v2
   * INFO; a v2 upload leaves it to the device at BEGIN; {@link BASELINE_SLOT_SIZE} for a device
   * that cannot tell.
   */
  slotSize?: number;
  compression?: V2Compression;
  allowDowngrade?: boolean;
  /**
   * Images the device may run, looked up by the SHA-256 its v2 INFO states (lowercase hex): a
   * store of images flashed before, or one file. When the device takes patches and one is found,
   * a patch against it goes out instead of the image (docs/protocol-v2.md, "Delta updates").
   */
  baseImages?: BaseImageLookup | Uint8Array;
  /** Changes the patch before it is sent, unchecked: for tests of the device (BAD_PATCH). */
  alterPatch?: (patch: Uint8Array) => Uint8Array;
  /** Baseline: REQUEST and DONE as Write Commands, as the baseline's Python client writes them. */
  requestWriteType?: 'request' | 'command';
  /** Time limit of each protocol step (a write, an acknowledgement, the restart), ms. */
  stepTimeoutMs?: number;
  /** Scan time limit, ms (default 10 s); also for finding the device again after a lost link. */
  findTimeoutMs?: number;
  /**
   * Reconnects after a lost link, before and during the upload (default 3); a v2 upload resumes
   * from the device's confirmed offset. 0: a lost link ends the update.
   */
  resumeAttempts?: number;
  /** Reconnect after the restart and compare the Firmware Revision (default true). */
  verify?: boolean;
  /** How long the device may take to come back with the new image, ms (default 30 s). */
  verifyTimeoutMs?: number;
  signal?: AbortSignal;
  /** Wall clock for timings (default performance.now). */
  now?: () => number;
  onEvent?: (event: UpdateEvent) => void;
}

export type VerifyOutcome =
  | { verified: true; version: string }
  | {
      verified: false;
      reason: 'not-asked' | 'no-restart' | 'no-version' | 'already-installed';
    };

export interface UpdateResult<D extends FoundDevice = FoundDevice> {
  device: D;
  deviceInfo: DeviceInformation;
  protocol: UploadProtocol;
  choice: ProtocolChoice;
  upload: UploadAutoResult;
  /** Reconnects after a lost link before or during the upload. */
  resumes: number;
  verify: VerifyOutcome;
  timings: UpdateTiming[];
}

/** Stable codes of the failures only the whole update has, beside {@link OtaErrorCode}'s. */
export type UpdateErrorCode = OtaErrorCode | 'DEVICE_NOT_FOUND' | 'VERIFY_FAILED' | 'ERROR';

/**
 * The update failed for good in `phase`. `code` is the cause's (so a front end maps it the same
 * way as the cause), `cause` the error itself, and the message ends with what to do.
 */
export class UpdateError extends Error {
  readonly code: UpdateErrorCode;
  readonly phase: UpdatePhase;
  /** What the user can do about it. */
  readonly advice: string | undefined;
  /** Timings up to the failure, the failed phase included. */
  readonly timings: UpdateTiming[];

  constructor(
    phase: UpdatePhase,
    message: string,
    options: {
      code: UpdateErrorCode;
      cause?: unknown;
      advice?: string | undefined;
      timings?: UpdateTiming[];
    },
  ) {
    super(
      `${message}${options.advice === undefined ? '' : `; ${options.advice}`} (the update failed at: ${phase})`,
      options.cause === undefined ? undefined : { cause: options.cause },
    );
    this.name = 'UpdateError';
    this.code = options.code;
    this.phase = phase;
    this.advice = options.advice;
    this.timings = options.timings ?? [];
  }
}

/** The device came back with another version than the image's, or did not come back. */
export class VerifyFailedError extends Error {
  readonly code = 'VERIFY_FAILED' as const;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'VerifyFailedError';
  }
}

const isLinkLost = (error: unknown): boolean =>
  error instanceof LinkLostError || (isOtaError(error) && error.code === 'LINK_LOST');

function codeOf(error: unknown): UpdateErrorCode {
  const code = (error as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' ? (code as UpdateErrorCode) : 'ERROR';
}

/** What to do when `phase` failed for good with `error`; undefined when the message says it. */
function adviceFor(phase: UpdatePhase, error: unknown, linkRetries: number): string | undefined {
  if (!isLinkLost(error)) return undefined;
  const tried = linkRetries > 0 ? `the link dropped ${linkRetries + 1} times; ` : '';
  switch (phase) {
    case 'verify':
      return `${tried}the image was sent and the device restarted, but its version could not be read: check it with \`ble-ota flash --protocol v2\` again (a device that runs it says "already installed") or on its serial console`;
    case 'data':
    case 'end':
    case 'begin':
      return `${tried}move the device closer or reduce interference and run the update again: a v2 device continues from what it holds`;
    default:
      return `${tried}nothing was written to the device; move it closer or reduce interference and run the update again`;
  }
}

function formatSeconds(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${Number((ms / 1000).toFixed(1))} s`;
}

function signalOption(signal: AbortSignal | undefined): { signal?: AbortSignal } {
  return signal === undefined ? {} : { signal };
}

/**
 * Update one device with `options.image`. Events report every phase, the progress and what was
 * decided; the result has the upload's figures and the timings. A failure for good rejects with
 * an {@link UpdateError} that names the phase and what to do.
 */
export async function updateDevice<D extends FoundDevice>(
  access: DeviceAccess<D>,
  options: UpdateOptions<D>,
): Promise<UpdateResult<D>> {
  const flow = new UpdateFlow(access, options);
  return flow.run();
}

class UpdateFlow<D extends FoundDevice> {
  readonly #access: DeviceAccess<D>;
  readonly #o: UpdateOptions<D>;
  readonly #now: () => number;
  readonly #timings: UpdateTiming[] = [];
  readonly #attempts: number;
  #transport: Transport | undefined;
  /** The phase running now: a failure for good is reported against it. */
  #phase: UpdatePhase = 'scan';
  #linkRetries = 0;

  constructor(access: DeviceAccess<D>, options: UpdateOptions<D>) {
    this.#access = access;
    this.#o = options;
    this.#now = options.now ?? (() => performance.now());
    this.#attempts = options.resumeAttempts ?? 3;
  }

  #emit(event: UpdateEvent): void {
    this.#o.onEvent?.(event);
  }

  async #timed<T>(phase: UpdatePhase, body: () => Promise<T>): Promise<T> {
    this.#phase = phase;
    this.#emit({ type: 'phase', phase, state: 'start' });
    const start = this.#now();
    try {
      const value = await body();
      const wallMs = this.#now() - start;
      this.#timings.push({ phase, wallMs });
      this.#emit({ type: 'phase', phase, state: 'end', wallMs });
      return value;
    } catch (error) {
      const wallMs = this.#now() - start;
      this.#timings.push({ phase, wallMs, failed: true });
      this.#emit({ type: 'phase', phase, state: 'fail', wallMs, error: error as Error });
      throw error;
    }
  }

  async run(): Promise<UpdateResult<D>> {
    try {
      return await this.#run();
    } catch (error) {
      if (error instanceof UpdateError) throw error;
      throw new UpdateError(this.#phase, error instanceof Error ? error.message : String(error), {
        code: codeOf(error),
        cause: error,
        advice: adviceFor(this.#phase, error, this.#linkRetries),
        timings: this.#timings,
      });
    } finally {
      await this.#transport?.close().catch(() => {});
      this.#transport = undefined;
    }
  }

  async #run(): Promise<UpdateResult<D>> {
    const o = this.#o;
    const findOptions = { ...signalOption(o.signal), timeoutMs: o.findTimeoutMs };
    const device = o.device ?? (await this.#timed('scan', () => this.#access.find(findOptions)));
    this.#emit({ type: 'found', device });

    // Connect, read what the device is, decide and check: a lost link here costs nothing (no
    // image byte was sent yet), so it is another try on a new connection.
    const { deviceInfo, protocol, choice } = await this.#withReconnects(async () => {
      const transport = await this.#connected(
        device,
        this.#linkRetries === 0 ? 'connect' : 'reconnect',
      );
      const deviceInfo = await this.#timed('device-info', () =>
        readDeviceInformation(transport, signalOption(o.signal)),
      );
      this.#emit({ type: 'connected', mtu: transport.mtu, device: deviceInfo });
      const { protocol, choice } = chooseProtocol(transport, o.protocol ?? 'auto');
      if (protocol === 'v2' && choice === 'forced' && !hasV2(transport)) {
        throw new UpdateError(
          'preflight',
          'the device does not offer protocol v2 (no v2 characteristics)',
          { code: 'REFUSED', advice: 'use protocol auto or baseline' },
        );
      }
      this.#emit({ type: 'protocol', protocol, choice });
      if (o.preflight !== false) {
        await this.#timed('preflight', () => this.#preflight(transport, protocol, deviceInfo));
      }
      return { deviceInfo, protocol, choice };
    });

    const upload = await this.#upload(device, protocol);
    const result: Omit<UpdateResult<D>, 'verify'> = {
      device,
      deviceInfo,
      protocol,
      choice,
      upload,
      resumes: this.#linkRetries,
      timings: this.#timings,
    };
    if (upload.protocol === 'v2' && upload.result.outcome === 'already-installed') {
      // After a lost link the device may run the image because this update installed it (its
      // END_RSP lost in the restart): INFO's running SHA-256 says it does; read its version
      // on this link as the verification would after a restart.
      if (this.#linkRetries > 0 && o.verify !== false && this.#transport !== undefined) {
        const verify = await this.#versionOnThisLink(this.#transport);
        if (verify !== undefined) return { ...result, verify };
      }
      return { ...result, verify: { verified: false, reason: 'already-installed' } };
    }
    if (o.verify === false) return { ...result, verify: { verified: false, reason: 'not-asked' } };
    if (!upload.result.restart.observed) {
      this.#emit({
        type: 'note',
        message: `the device did not drop the link after ${upload.protocol === 'v2' ? 'END_RSP' : 'DONE_ACK'}; not verifying the new version`,
      });
      return { ...result, verify: { verified: false, reason: 'no-restart' } };
    }
    await this.#closeTransport();
    const verify = await this.#timed('verify', () => this.#verify(device));
    return { ...result, verify };
  }

  /** The Firmware Revision on the open link, checked against the image's; undefined if unread. */
  async #versionOnThisLink(transport: Transport): Promise<VerifyOutcome | undefined> {
    const expected = this.#o.imageInfo.version;
    let info: DeviceInformation;
    try {
      info = await readDeviceInformation(transport, signalOption(this.#o.signal));
    } catch (error) {
      if (isLinkLost(error)) return undefined;
      throw error;
    }
    if (info.firmwareRevision === undefined || info.firmwareRevision !== expected) return undefined;
    this.#emit({ type: 'verified', version: info.firmwareRevision, expected });
    return { verified: true, version: info.firmwareRevision };
  }

  /** A connected transport to `device`, timed as `phase`. */
  async #connected(device: D, phase: 'connect' | 'reconnect'): Promise<Transport> {
    await this.#closeTransport();
    return this.#timed(phase, async () => {
      const found =
        phase === 'connect'
          ? device
          : await this.#access.findAgain(device, {
              purpose: 'reconnect',
              ...signalOption(this.#o.signal),
              timeoutMs: this.#o.findTimeoutMs,
            });
      const transport = this.#access.transport(found);
      this.#transport = transport;
      await transport.connect(signalOption(this.#o.signal));
      return transport;
    });
  }

  async #closeTransport(): Promise<void> {
    const transport = this.#transport;
    this.#transport = undefined;
    await transport?.close().catch(() => {});
  }

  /**
   * Runs `body`; a lost link makes it run again on a new connection, up to the resume attempts
   * (shared by everything before and during the upload).
   */
  async #withReconnects<T>(body: () => Promise<T>): Promise<T> {
    for (;;) {
      try {
        return await body();
      } catch (error) {
        if (!isLinkLost(error) || this.#linkRetries >= this.#attempts) throw error;
        this.#linkRetries += 1;
        const lost = error instanceof V2LinkLostError ? error : undefined;
        this.#emit({
          type: 'resuming',
          phase: this.#phase,
          attempt: this.#linkRetries,
          attempts: this.#attempts,
          committed: lost?.committed ?? 0,
          streamSize: lost?.streamSize,
          message: (error as Error).message,
        });
        await this.#closeTransport();
      }
    }
  }

  async #preflight(
    transport: Transport,
    protocol: UploadProtocol,
    deviceInfo: DeviceInformation,
  ): Promise<void> {
    const o = this.#o;
    let slotSize: number;
    let slotSource: SlotSource;
    if (o.slotSize !== undefined) {
      slotSize = o.slotSize;
      slotSource = 'option';
    } else if (protocol === 'v2') {
      // The device checks its real slot at BEGIN, before any data, and refuses TOO_LARGE.
      slotSize = Number.POSITIVE_INFINITY;
      slotSource = 'v2-begin';
    } else if (hasV2(transport)) {
      // The baseline protocol cannot tell the slot size; this firmware tells it in v2 INFO.
      slotSize = (await readV2Info(transport, signalOption(o.signal))).slotSize;
      slotSource = 'v2-info';
    } else {
      slotSize = BASELINE_SLOT_SIZE;
      slotSource = 'baseline-default';
    }
    let notes: PreflightNote[];
    try {
      notes = checkImageForDevice({ chip: o.imageInfo.chip, size: o.image.length }, deviceInfo, {
        slotSize,
        checkChip: o.chipCheck ?? true,
      });
    } catch (error) {
      // What the image was checked against, for the front end's hint, then the refusal.
      this.#emit({ type: 'preflight', slotSize, slotSource, notes: [] });
      throw error;
    }
    this.#emit({ type: 'preflight', slotSize, slotSource, notes });
  }

  async #upload(device: D, protocol: UploadProtocol): Promise<UploadAutoResult> {
    const o = this.#o;
    const clock = this.#access.clock?.(device);
    const step = o.stepTimeoutMs;
    const started = new Map<string, number>();
    const onPhase = (event: AutoPhaseEvent) => {
      if (event.protocol === 'discovery') return;
      const phase = event.phase as UpdatePhase;
      if (event.state === 'start') {
        this.#phase = phase;
        started.set(phase, this.#now());
        this.#emit({ type: 'phase', phase, state: 'start' });
        return;
      }
      const wallMs = this.#now() - (started.get(phase) ?? this.#now());
      const modeledMs =
        clock !== undefined && phase !== 'restart' && event.durationMs !== undefined
          ? event.durationMs
          : undefined;
      const timing: UpdateTiming = { phase, wallMs };
      if (modeledMs !== undefined) timing.modeledMs = modeledMs;
      if (event.state === 'fail') timing.failed = true;
      this.#timings.push(timing);
      this.#emit({
        type: 'phase',
        phase,
        state: event.state,
        wallMs,
        ...(modeledMs === undefined ? {} : { modeledMs }),
        ...(event.error === undefined ? {} : { error: event.error }),
      });
    };
    const wallStarted = this.#now();
    const sessionStarted = clock?.now() ?? wallStarted;
    let first = true;
    const upload = await this.#withReconnects(async () => {
      const transport =
        first && this.#transport?.connected
          ? this.#transport
          : await this.#connected(device, 'reconnect');
      first = false;
      return uploadAuto(transport, o.image, {
        protocol,
        ...(clock === undefined ? {} : { clock }),
        ...signalOption(o.signal),
        onPhase,
        onProgress: (snapshot) => this.#emit({ type: 'progress', snapshot }),
        baseline: {
          requestWriteType: o.requestWriteType ?? 'request',
          ...(step === undefined
            ? {}
            : {
                timeouts: {
                  subscribeMs: step,
                  writeMs: step,
                  requestAckMs: step,
                  doneAckMs: step,
                  restartMs: step,
                },
              }),
        },
        v2: {
          compression: o.compression ?? 'auto',
          ...(o.allowDowngrade ? { allowDowngrade: true } : {}),
          ...(o.preflight === false ? { preflight: false } : {}),
          ...(o.baseImages === undefined ? {} : { base: o.baseImages }),
          ...(o.alterPatch === undefined ? {} : { alterPatch: o.alterPatch }),
          ...(step === undefined
            ? {}
            : {
                timeouts: {
                  infoMs: step,
                  subscribeMs: step,
                  beginMs: step,
                  writeMs: step,
                  ackMs: step,
                  endMs: step,
                  restartMs: step,
                },
              }),
        },
      }).catch((error: unknown) => {
        // The baseline cannot resume: a drop after its first data is a failure for good.
        if (protocol === 'baseline' && isLinkLost(error) && this.#phase !== 'subscribe') {
          throw new UpdateError(this.#phase, (error as Error).message, {
            code: 'LINK_LOST',
            cause: error,
            advice:
              'the baseline protocol cannot resume; move the device closer and run the update again from the start',
            timings: this.#timings,
          });
        }
        throw error;
      });
    });
    this.#emit({
      type: 'uploaded',
      upload,
      resumes: this.#linkRetries,
      totalMs: (clock?.now() ?? this.#now()) - sessionStarted,
      wallMs: this.#now() - wallStarted,
    });
    return upload;
  }

  async #verify(device: D): Promise<VerifyOutcome> {
    const o = this.#o;
    const timeoutMs = o.verifyTimeoutMs ?? 30_000;
    const name = device.name ?? device.address;
    this.#emit({
      type: 'note',
      message: `waiting for ${name} to restart with the new image...`,
    });
    // A lost link while reading the version after the restart is not the update failing: the
    // image is in; connect again and read it, as often as before the upload.
    for (let tries = 0; ; tries++) {
      let info: DeviceInformation;
      try {
        const again = await this.#access
          .findAgain(device, { purpose: 'verify', ...signalOption(o.signal), timeoutMs })
          .catch((error: unknown) => {
            if (isOtaError(error) || codeOf(error) !== 'DEVICE_NOT_FOUND') throw error;
            throw new VerifyFailedError(
              `the device did not advertise again within ${formatSeconds(timeoutMs)} after the update; check its serial console for a boot loop or rollback`,
              { cause: error },
            );
          });
        const transport = this.#access.transport(again);
        this.#transport = transport;
        await transport.connect(signalOption(o.signal));
        info = await readDeviceInformation(transport, signalOption(o.signal));
        await this.#closeTransport();
      } catch (error) {
        await this.#closeTransport();
        if (!isLinkLost(error) || tries >= this.#attempts) throw error;
        this.#emit({
          type: 'resuming',
          phase: 'verify',
          attempt: tries + 1,
          attempts: this.#attempts,
          committed: 0,
          streamSize: undefined,
          message: (error as Error).message,
        });
        continue;
      }
      const expected = o.imageInfo.version;
      if (info.firmwareRevision === undefined) {
        this.#emit({
          type: 'note',
          message:
            'the device does not report its version (no DIS Firmware Revision); not verified',
        });
        this.#emit({ type: 'verified', version: undefined, expected });
        return { verified: false, reason: 'no-version' };
      }
      if (info.firmwareRevision !== expected) {
        throw new VerifyFailedError(
          `the device runs version ${info.firmwareRevision} after the update, not ${expected}: the bootloader rejected the image or rolled it back; check the serial console`,
        );
      }
      this.#emit({ type: 'verified', version: info.firmwareRevision, expected });
      return { verified: true, version: info.firmwareRevision };
    }
  }
}
