import {
  advertisesOta,
  findDevice,
  NobleTransport,
  normalizeAddress,
  type ScannedDevice,
} from '@esp-ble-ota/noble';
import {
  BaselineUploader,
  type BaselineUploadResult,
  type Clock,
  checkImageForDevice,
  type DeviceInformation,
  ImageMismatchError,
  readDeviceInformation,
} from '@esp-ble-ota/protocol';
import { CliError } from '../errors.ts';
import { ExitCode, type ExitCodeValue } from '../exit-codes.ts';
import { assertImageIntact, imageJson, type LoadedImage, loadImage } from '../image.ts';
import type { VirtualRigBoard } from '../io.ts';
import { type CliIo, json, line } from '../io.ts';
import { formatBytes, formatMs } from '../parse.ts';
import { ProgressView } from '../progress.ts';
import { openRadio, simOptions } from '../rig.ts';

/** The baseline partition table (CONFIG_PARTITION_TABLE_TWO_OTA): 1 MB per app slot. */
export const DEFAULT_SLOT_SIZE = 0x100000;

export interface FlashOptions {
  name?: string;
  address?: string;
  /** Scan time limit, ms. */
  timeout: number;
  sim?: boolean;
  simProfile?: string;
  simChip?: string;
  json?: boolean;
  slotSize: number;
  chipCheck: boolean;
  verify: boolean;
  /** How long to wait for the device to come back with the new image, ms. */
  verifyTimeout: number;
  /** Write REQUEST and DONE as Write Commands, as the baseline's Python client does. */
  baselineWrites?: boolean;
  /** Time limit of each protocol step (a write, an acknowledgement, the restart), ms. */
  stepTimeout?: number;
}

interface Timing {
  phase: string;
  /** Wall-clock time the step took here. */
  durationMs: number;
  /** With --sim on a modeled link: the link model's time for the step (what a bench would take). */
  modeledMs?: number;
}

/**
 * The link model's clock of the board we talk to, for the upload session: on the virtual rig
 * the transfer runs much faster than real time, and the modeled figures are the ones that say
 * what a bench would see. The rig holds the last value while the board has no connection.
 */
function modeledClock(board: VirtualRigBoard | undefined): Clock | undefined {
  const read = board?.modeledNowMs;
  if (read === undefined || read() === undefined) return undefined;
  return { now: () => read() ?? 0 };
}

export async function flashCommand(
  path: string,
  options: FlashOptions,
  io: CliIo,
): Promise<ExitCodeValue> {
  const now = io.now ?? (() => performance.now());
  const out = new Reporter(io, options.json ?? false);
  const timings: Timing[] = [];
  const timed = async <T>(phase: string, body: () => Promise<T>): Promise<T> => {
    const start = now();
    try {
      return await body();
    } finally {
      timings.push({ phase, durationMs: now() - start });
    }
  };

  // 1. The image, before any radio traffic.
  const image = await loadImage(path);
  assertImageIntact(image);
  out.image(image);

  // 2. The device.
  const radio = await openRadio(io, simOptions(options));
  let transport: NobleTransport | undefined;
  try {
    const filter = {
      name: options.name,
      address: options.address,
      match:
        options.name === undefined && options.address === undefined ? advertisesOta : undefined,
    };
    out.note(
      `scanning for ${describeTarget(options)}${options.sim ? ' on the virtual rig' : ''}...`,
    );
    const device = await timed('scan', () =>
      findDevice(radio.noble, { ...filter, timeoutMs: options.timeout, signal: io.signal }),
    );
    out.found(device);

    transport = new NobleTransport(device.peripheral, { noble: radio.noble });
    const connected = transport;
    await timed('connect', () => connected.connect(signalOption(io.signal)));
    const deviceInfo = await timed('device-info', () =>
      readDeviceInformation(connected, signalOption(io.signal)),
    );
    out.connected(connected.mtu, deviceInfo);

    // 3. Pre-flight: the image must suit this device before a single image byte is sent.
    checkDevice(image, deviceInfo, options, out);

    // 4. Upload.
    const step = options.stepTimeout;
    const board = radio.rig?.boards.find(
      (b) => normalizeAddress(b.address) === normalizeAddress(device.address),
    );
    const clock = modeledClock(board);
    const model = clock === undefined ? undefined : radio.rig?.profile;
    if (model !== undefined) out.note(`upload timings in modeled time on the ${model} link model`);
    const uploader = new BaselineUploader(connected, {
      ...(clock === undefined ? {} : { clock }),
      requestWriteType: options.baselineWrites ? 'command' : 'request',
      ...signalOption(io.signal),
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
    });
    const progress = new ProgressView(
      io,
      options.json ? 'json' : io.stdout.isTTY ? 'tty' : 'plain',
      model !== undefined,
    );
    const phaseStarted = new Map<string, number>();
    uploader.on('phase', (event) => {
      if (event.state === 'start') {
        phaseStarted.set(event.phase, now());
        return;
      }
      const wallMs = now() - (phaseStarted.get(event.phase) ?? now());
      // The restart is the device's own timer and reboot, not air time: no modeled figure.
      const modeledMs =
        model !== undefined && event.phase !== 'restart' ? event.durationMs : undefined;
      out.phase(event.phase, event.state, wallMs, modeledMs);
      // From the events, not the result, so a failed upload still shows how far it got.
      const timing: Timing = {
        phase: event.state === 'fail' ? `${event.phase} (failed)` : event.phase,
        durationMs: wallMs,
      };
      if (modeledMs !== undefined) timing.modeledMs = modeledMs;
      timings.push(timing);
    });
    uploader.on('progress', (snapshot) => progress.update(snapshot));
    let result: BaselineUploadResult;
    progress.start(image.bytes.length);
    const uploadStarted = now();
    try {
      result = await uploader.upload(image.bytes);
    } finally {
      progress.stop();
    }
    out.uploaded(result, now() - uploadStarted, model);

    // 5. The device runs the new image.
    if (options.verify) {
      if (!result.restart.observed) {
        out.note('the device did not drop the link after DONE_ACK; not verifying the new version');
      } else {
        await transport.close();
        transport = undefined;
        const version = await timed('verify', () =>
          verifyVersion(radio.noble, device, image, options, io, out),
        );
        out.verified(version, image.info.version);
      }
    }
    out.timings(timings);
    return ExitCode.OK;
  } catch (error) {
    if (timings.length > 0) out.timings(timings);
    throw error;
  } finally {
    await transport?.close().catch(() => {});
    await radio.close();
  }
}

function signalOption(signal: AbortSignal | undefined): { signal?: AbortSignal } {
  return signal === undefined ? {} : { signal };
}

function describeTarget(options: FlashOptions): string {
  if (options.address !== undefined) return `device ${options.address}`;
  if (options.name !== undefined) return `device "${options.name}"`;
  return 'a device offering the OTA service';
}

function checkDevice(
  image: LoadedImage,
  device: DeviceInformation,
  options: FlashOptions,
  out: Reporter,
): void {
  try {
    const notes = checkImageForDevice({ chip: image.info.chip, size: image.bytes.length }, device, {
      slotSize: options.slotSize,
      checkChip: options.chipCheck,
    });
    for (const n of notes) out.note(n.note);
  } catch (error) {
    if (!(error instanceof ImageMismatchError)) throw error;
    const hint =
      error.reason === 'chip'
        ? ' (--skip-chip-check to override)'
        : ` (--slot-size if the device has larger slots; it holds ${formatBytes(options.slotSize)})`;
    throw new CliError(ExitCode.IMAGE_MISMATCH, `${error.message}${hint}`, { cause: error });
  }
}

async function verifyVersion(
  noble: Parameters<typeof findDevice>[0],
  device: ScannedDevice,
  image: LoadedImage,
  options: FlashOptions,
  io: CliIo,
  out: Reporter,
): Promise<string | undefined> {
  out.note(`waiting for ${device.name ?? device.address} to restart with the new image...`);
  const again = await findDevice(noble, {
    address: device.address,
    timeoutMs: options.verifyTimeout,
    signal: io.signal,
  }).catch((error: unknown) => {
    throw new CliError(
      ExitCode.VERIFY_FAILED,
      `the device did not advertise again within ${formatMs(options.verifyTimeout)} after the update; check its serial console (ble-ota monitor) for a boot loop or rollback`,
      { cause: error },
    );
  });
  const transport = new NobleTransport(again.peripheral, { noble });
  try {
    await transport.connect(signalOption(io.signal));
    const info = await readDeviceInformation(transport, signalOption(io.signal));
    if (info.firmwareRevision === undefined) {
      out.note('the device does not report its version (no DIS Firmware Revision); not verified');
      return undefined;
    }
    if (info.firmwareRevision !== image.info.version) {
      throw new CliError(
        ExitCode.VERIFY_FAILED,
        `the device runs version ${info.firmwareRevision} after the update, not ${image.info.version}: the bootloader rejected the image or rolled it back; check the serial console (ble-ota monitor)`,
      );
    }
    return info.firmwareRevision;
  } finally {
    await transport.close();
  }
}

/** Human lines or JSON events, one per line. */
class Reporter {
  readonly #io: CliIo;
  readonly #json: boolean;

  constructor(io: CliIo, asJson: boolean) {
    this.#io = io;
    this.#json = asJson;
  }

  #event(event: string, fields: Record<string, unknown>): void {
    json(this.#io.stdout, { event, ...fields });
  }

  note(message: string): void {
    if (this.#json) this.#event('note', { message });
    else line(this.#io.stderr, message);
  }

  image(image: LoadedImage): void {
    const { info } = image;
    if (this.#json) {
      this.#event('image', imageJson(image));
      return;
    }
    const hash = info.hashValid === null ? 'no SHA-256 appended' : 'SHA-256 ok';
    line(
      this.#io.stdout,
      `image: ${info.project} ${info.version} for ${info.chip} (ESP-IDF ${info.idfVersion}), ${info.size} bytes, checksum ok, ${hash}`,
    );
  }

  found(device: ScannedDevice): void {
    const fields = { name: device.name ?? null, address: device.address, rssi: device.rssi };
    if (this.#json) this.#event('found', fields);
    else
      line(
        this.#io.stdout,
        `found: ${device.name ?? '(no name)'} ${device.address} RSSI ${device.rssi} dBm`,
      );
  }

  connected(mtu: number, info: DeviceInformation): void {
    if (this.#json) {
      this.#event('connected', { mtu, ...info });
      return;
    }
    const parts = [
      info.model ?? 'model unknown',
      info.firmwareRevision === undefined ? undefined : `firmware ${info.firmwareRevision}`,
      info.manufacturer,
    ].filter((p) => p !== undefined);
    line(this.#io.stdout, `connected: MTU ${mtu}; device: ${parts.join(', ')}`);
  }

  phase(phase: string, state: 'end' | 'fail', durationMs: number, modeledMs?: number): void {
    if (!this.#json) return;
    this.#event('phase', {
      phase,
      state,
      durationMs,
      ...(modeledMs === undefined ? {} : { modeledMs }),
    });
  }

  /**
   * `result`'s durations are on the session's clock: the link model's with --sim on a modeled
   * link (`model` names it), the wall clock otherwise; `wallMs` is always real time.
   */
  uploaded(result: BaselineUploadResult, wallMs: number, model: string | undefined): void {
    if (this.#json) {
      this.#event('uploaded', {
        bytes: result.bytes,
        packets: result.packets,
        packetSize: result.packetSize,
        mtu: result.mtu,
        clock: model === undefined ? 'wall' : 'modeled',
        ...(model === undefined ? {} : { linkModel: model }),
        durationMs: result.durationMs,
        transferMs: result.transferMs,
        bytesPerSecond: result.bytesPerSecond,
        wallMs,
        restarted: result.restart.observed,
      });
      return;
    }
    const rate = `${(result.bytesPerSecond / 1000).toFixed(1)} kB/s`;
    const took =
      model === undefined
        ? `${formatMs(result.transferMs)} (${rate})`
        : `${formatMs(result.transferMs)} modeled on ${model} (${rate}), ${formatMs(wallMs)} real time`;
    line(
      this.#io.stdout,
      `uploaded ${result.bytes} bytes in ${result.packets} packets of ${result.packetSize} bytes: ${took}${result.restart.observed ? '; device restarted' : ''}`,
    );
  }

  verified(version: string | undefined, expected: string): void {
    if (this.#json) this.#event('verified', { version: version ?? null, expected });
    else if (version !== undefined) line(this.#io.stdout, `verified: the device runs ${version}`);
  }

  timings(timings: readonly Timing[]): void {
    if (this.#json) {
      this.#event('timings', { phases: timings });
      return;
    }
    const modeled = timings.some((t) => t.modeledMs !== undefined);
    line(this.#io.stdout, modeled ? 'phase timings (real time, modeled):' : 'phase timings:');
    const width = Math.max(...timings.map((t) => t.phase.length));
    for (const t of timings) {
      const extra =
        t.modeledMs === undefined ? '' : `  ${formatMs(t.modeledMs).padStart(10)} modeled`;
      line(
        this.#io.stdout,
        `  ${t.phase.padEnd(width)}  ${formatMs(t.durationMs).padStart(10)}${extra}`,
      );
    }
  }
}
