import { advertisesOta, findDevice, NobleTransport, type ScannedDevice } from '@esp-ble-ota/noble';
import {
  BaselineUploader,
  type BaselineUploadResult,
  type DeviceInformation,
  readDeviceInformation,
} from '@esp-ble-ota/protocol';
import { CliError } from '../errors.ts';
import { ExitCode, type ExitCodeValue } from '../exit-codes.ts';
import { assertImageIntact, imageJson, type LoadedImage, loadImage } from '../image.ts';
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
  durationMs: number;
}

/** Chip names compared the way people write them: "ESP32-S3", "esp32s3", "ESP32 S3" agree. */
export function chipKey(name: string): string {
  return name.toUpperCase().replace(/[^A-Z0-9]/g, '');
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
    const uploader = new BaselineUploader(connected, {
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
    );
    uploader.on('phase', (event) => {
      if (event.state === 'start') return;
      out.phase(event.phase, event.state, event.durationMs);
      // From the events, not the result, so a failed upload still shows how far it got.
      timings.push({
        phase: event.state === 'fail' ? `${event.phase} (failed)` : event.phase,
        durationMs: event.durationMs ?? 0,
      });
    });
    uploader.on('progress', (snapshot) => progress.update(snapshot));
    let result: BaselineUploadResult;
    progress.start(image.bytes.length);
    try {
      result = await uploader.upload(image.bytes);
    } finally {
      progress.stop();
    }
    out.uploaded(result);

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
  const { info } = image;
  if (options.chipCheck) {
    const model = device.model;
    if (model === undefined || model === '') {
      out.note('the device does not report its model (no DIS Model Number); chip not checked');
    } else if (!chipKey(model).startsWith('ESP')) {
      out.note(`the device reports model "${model}", which names no ESP chip; chip not checked`);
    } else if (chipKey(model) !== chipKey(info.chip)) {
      throw new CliError(
        ExitCode.IMAGE_MISMATCH,
        `image is for ${info.chip} but the device is an ${model}; build the firmware for the device's target (idf.py set-target ${model.toLowerCase().replace(/[^a-z0-9]/g, '')}) or pick the right device (--skip-chip-check to override)`,
      );
    }
  }
  if (image.bytes.length > options.slotSize) {
    throw new CliError(
      ExitCode.IMAGE_MISMATCH,
      `image is ${image.bytes.length} bytes but the device's OTA slot holds ${options.slotSize} bytes (${formatBytes(options.slotSize)}); shrink the app or use a partition table with larger OTA slots (--slot-size if the device has them)`,
    );
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

  phase(phase: string, state: 'end' | 'fail', durationMs: number | undefined): void {
    if (this.#json) this.#event('phase', { phase, state, durationMs: durationMs ?? null });
  }

  uploaded(result: BaselineUploadResult): void {
    if (this.#json) {
      this.#event('uploaded', {
        bytes: result.bytes,
        packets: result.packets,
        packetSize: result.packetSize,
        mtu: result.mtu,
        durationMs: result.durationMs,
        transferMs: result.transferMs,
        bytesPerSecond: result.bytesPerSecond,
        restarted: result.restart.observed,
      });
      return;
    }
    line(
      this.#io.stdout,
      `uploaded ${result.bytes} bytes in ${result.packets} packets of ${result.packetSize} bytes: ${formatMs(result.transferMs)} (${(result.bytesPerSecond / 1000).toFixed(1)} kB/s)${result.restart.observed ? '; device restarted' : ''}`,
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
    line(this.#io.stdout, 'phase timings:');
    const width = Math.max(...timings.map((t) => t.phase.length));
    for (const t of timings) {
      line(this.#io.stdout, `  ${t.phase.padEnd(width)}  ${formatMs(t.durationMs).padStart(10)}`);
    }
  }
}
