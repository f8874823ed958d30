import { relative } from 'node:path';
import {
  advertisesOta,
  findDevice,
  NobleTransport,
  normalizeAddress,
  type ScannedDevice,
} from '@esp-ble-ota/noble';
import {
  AttError,
  AttStatus,
  type AutoPhaseEvent,
  type BaselineUploadResult,
  type Clock,
  checkImageForDevice,
  chooseProtocol,
  type DeviceInformation,
  DeviceRefusedError,
  hasV2,
  ImageMismatchError,
  readDeviceInformation,
  readSignatures,
  readV2Info,
  type UploadAutoResult,
  type UploadProtocol,
  uploadAuto,
  type V2Compression,
  V2LinkLostError,
  V2RefusedError,
  type V2UploadResult,
} from '@esp-ble-ota/protocol';
import { CliError } from '../errors.ts';
import { ExitCode, type ExitCodeValue } from '../exit-codes.ts';
import { assertImageIntact, imageJson, type LoadedImage, loadImage } from '../image.ts';
import type { VirtualRigBoard } from '../io.ts';
import { type CliIo, json, line } from '../io.ts';
import { formatBytes, formatMs } from '../parse.ts';
import { ProgressView } from '../progress.ts';
import { openRadio, simOptions } from '../rig.ts';
import { signLoadedImage } from './sign.ts';

/** `image` signed with `keys` (Secure Boot v2 sector); an image already signed is refused. */
async function signLoaded(image: LoadedImage, keys: string[]): Promise<LoadedImage> {
  const bytes = await signLoadedImage(
    image,
    keys,
    'send it without --key, or pass the unsigned image',
  );
  const signatures = readSignatures(bytes);
  return { ...image, bytes, ...(signatures ? { signatures } : {}) };
}

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
  /** --sim: a board that takes any image (its firmware built with signature checks off). */
  simInsecure?: boolean;
  /** Sign the image with these keys (PEM files, at most 3) before sending it. */
  key?: string[];
  json?: boolean;
  /**
   * The OTA slot size to check the image against before sending. Unset: with v2 the device
   * checks against its real slot at BEGIN; with the baseline protocol the slot size the device
   * tells in v2 INFO when it has v2 (this firmware), else the baseline's 1 MB.
   */
  slotSize?: number;
  chipCheck: boolean;
  /** 'auto' (default): v2 when the device offers it, else the baseline. */
  protocol?: 'auto' | UploadProtocol;
  /** v2 only: deflate the image ('auto': when the device inflates and it gets smaller). */
  compression?: V2Compression;
  /** v2 only: how many times to reconnect and resume after the link drops. */
  resumeAttempts?: number;
  /** v2 only: ask the device to take an older app version (if its firmware allows it). */
  allowDowngrade?: boolean;
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

  if (options.baselineWrites && options.protocol === 'v2') {
    throw new CliError(
      ExitCode.USAGE,
      '--baseline-writes changes how the baseline protocol writes; it cannot go with --protocol v2',
    );
  }
  // 1. The image, before any radio traffic; signed here with --key, as idf.py signs an app
  // whose build names a signing key.
  let image = await loadImage(path);
  assertImageIntact(image);
  if (options.key !== undefined && options.key.length > 0)
    image = await signLoaded(image, options.key);
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

    // 3. The protocol, then the pre-flight: the image must suit this device before a single
    // image byte is sent.
    const { protocol, choice } = chooseProtocol(connected, options.protocol ?? 'auto');
    if (protocol === 'v2' && choice === 'forced' && !hasV2(connected)) {
      throw new CliError(
        ExitCode.DEVICE_REFUSED,
        'the device does not offer protocol v2 (no v2 characteristics); use --protocol auto or baseline',
      );
    }
    out.protocol(protocol, choice);
    const slot = await slotSizeFor(connected, options, protocol, io.signal);
    checkDevice(image, deviceInfo, options, slot, out);

    // 4. Upload.
    const step = options.stepTimeout;
    const board = radio.rig?.boards.find(
      (b) => normalizeAddress(b.address) === normalizeAddress(device.address),
    );
    const clock = modeledClock(board);
    const model = clock === undefined ? undefined : radio.rig?.profile;
    if (model !== undefined) out.note(`upload timings in modeled time on the ${model} link model`);
    const progress = new ProgressView(
      io,
      options.json ? 'json' : io.stdout.isTTY ? 'tty' : 'plain',
      model !== undefined,
    );
    const phaseStarted = new Map<string, number>();
    const onPhase = (event: AutoPhaseEvent) => {
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
    };
    const resumeAttempts = options.resumeAttempts ?? 3;
    let upload: UploadAutoResult;
    let resumes = 0;
    let active: NobleTransport = connected;
    progress.start(image.bytes.length);
    const uploadStarted = now();
    // On the session's clock (the link model's with --sim), across reconnects.
    const sessionStarted = clock?.now() ?? uploadStarted;
    try {
      for (;;) {
        try {
          upload = await uploadAuto(active, image.bytes, {
            protocol,
            ...(clock === undefined ? {} : { clock }),
            ...signalOption(io.signal),
            onPhase,
            onProgress: (snapshot) => progress.update(snapshot),
            baseline: {
              requestWriteType: options.baselineWrites ? 'command' : 'request',
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
              compression: options.compression ?? 'auto',
              ...(options.allowDowngrade ? { allowDowngrade: true } : {}),
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
          });
          break;
        } catch (error) {
          if (!(error instanceof V2LinkLostError) || !error.resumable || resumes >= resumeAttempts)
            throw error;
          resumes += 1;
          out.resuming(error, resumes, resumeAttempts);
          await active.close().catch(() => {});
          active = await timed('reconnect', () =>
            connectAgain(radio.noble, device, options.timeout, io.signal),
          );
          transport = active;
        }
      }
    } catch (error) {
      throw explainUploadError(error, options, radio.rig?.signingKeyPath, image);
    } finally {
      progress.stop();
    }
    if (upload.protocol === 'v2') {
      const totalMs = (clock?.now() ?? now()) - sessionStarted;
      out.uploadedV2(upload.result, { resumes, totalMs }, now() - uploadStarted, model);
    } else out.uploaded(upload.result, now() - uploadStarted, model);
    if (upload.protocol === 'v2' && upload.result.outcome === 'already-installed') {
      out.timings(timings);
      return ExitCode.OK;
    }

    // 5. The device runs the new image.
    if (options.verify) {
      if (!upload.result.restart.observed) {
        out.note(
          `the device did not drop the link after ${upload.protocol === 'v2' ? 'END_RSP' : 'DONE_ACK'}; not verifying the new version`,
        );
      } else {
        await active.close();
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

/** The slot the pre-flight checks the image against, and where that figure came from. */
interface SlotSize {
  bytes: number;
  source: string;
}

async function slotSizeFor(
  transport: NobleTransport,
  options: FlashOptions,
  protocol: UploadProtocol,
  signal: AbortSignal | undefined,
): Promise<SlotSize> {
  if (options.slotSize !== undefined) return { bytes: options.slotSize, source: '--slot-size' };
  // A v2 device refuses a too large image at BEGIN with its real slot size, before any data.
  if (protocol === 'v2') return { bytes: Number.POSITIVE_INFINITY, source: 'v2 BEGIN' };
  // The baseline protocol cannot tell the slot size; this firmware tells it in v2 INFO.
  if (hasV2(transport)) {
    const info = await readV2Info(transport, signalOption(signal));
    return { bytes: info.slotSize, source: "the device's v2 INFO" };
  }
  return {
    bytes: DEFAULT_SLOT_SIZE,
    source: 'the baseline partition table (the device cannot tell its own)',
  };
}

function checkDevice(
  image: LoadedImage,
  device: DeviceInformation,
  options: FlashOptions,
  slot: SlotSize,
  out: Reporter,
): void {
  try {
    const notes = checkImageForDevice({ chip: image.info.chip, size: image.bytes.length }, device, {
      slotSize: slot.bytes,
      checkChip: options.chipCheck,
    });
    for (const n of notes) out.note(n.note);
  } catch (error) {
    if (!(error instanceof ImageMismatchError)) throw error;
    const hint =
      error.reason === 'chip'
        ? ' (--skip-chip-check to override)'
        : slot.source === '--slot-size'
          ? ` (--slot-size ${formatBytes(slot.bytes)})`
          : ` (it holds ${formatBytes(slot.bytes)}, from ${slot.source}; --slot-size if the device has larger slots)`;
    throw new CliError(ExitCode.IMAGE_MISMATCH, `${error.message}${hint}`, { cause: error });
  }
}

/** A v2 refusal of an image that does not fit the device is the same failure as the pre-flight's. */
/** A key file as a --key argument: relative to where the command runs, when it can be. */
function keyArg(path: string): string {
  return relative(process.cwd(), path) || path;
}

function explainUploadError(
  error: unknown,
  options: FlashOptions,
  rigKeyPath: string | undefined,
  image: LoadedImage,
): unknown {
  // The baseline device ran out of slot while the image streamed in (this firmware says so);
  // an image it refused (IMAGE_REFUSED) stays a refusal.
  if (
    error instanceof DeviceRefusedError &&
    error.step === 'DATA' &&
    error.cause instanceof AttError &&
    error.cause.status === AttStatus.IMAGE_TOO_LARGE
  ) {
    return new CliError(ExitCode.IMAGE_MISMATCH, error.message, { cause: error });
  }
  // The baseline's DONE_NAK carries no reason; an unsigned image is the likely one on a board
  // that takes signed images only (its console says so).
  if (
    error instanceof DeviceRefusedError &&
    error.step === 'DONE' &&
    rigKeyPath !== undefined &&
    image.signatures === undefined
  ) {
    return new CliError(
      ExitCode.DEVICE_REFUSED,
      `${error.message}; the image is not signed, and the simulated board takes images signed by the rig's key only (its console gives the reason): add --key ${keyArg(rigKeyPath)}, or --sim-insecure`,
      { cause: error },
    );
  }
  if (!(error instanceof V2RefusedError)) return error;
  if (error.statusName === 'WRONG_CHIP' && options.chipCheck === false) {
    return new CliError(
      ExitCode.IMAGE_MISMATCH,
      `${error.message} (the device checks the chip itself; --skip-chip-check cannot override it)`,
      { cause: error },
    );
  }
  if (error.statusName === 'WRONG_CHIP' || error.statusName === 'TOO_LARGE') {
    return new CliError(ExitCode.IMAGE_MISMATCH, error.message, { cause: error });
  }
  // The virtual board runs the firmware's secure default; say which key it trusts.
  if (
    rigKeyPath !== undefined &&
    (error.statusName === 'UNSIGNED' || error.statusName === 'UNTRUSTED_KEY')
  ) {
    return new CliError(
      ExitCode.DEVICE_REFUSED,
      `${error.message}. The simulated board takes images signed by the rig's key only: add --key ${keyArg(rigKeyPath)}, or --sim-insecure for a board that takes anything`,
      { cause: error },
    );
  }
  return error;
}

/**
 * Find the device again by its address and connect: after a lost link (v2 resumes where it
 * stopped) and after the restart (to verify). `notFound` turns a failed scan into the caller's
 * error; a failed connect closes the transport before it rethrows.
 */
async function connectAgain(
  noble: Parameters<typeof findDevice>[0],
  device: ScannedDevice,
  timeoutMs: number,
  signal: AbortSignal | undefined,
  notFound: (error: unknown) => unknown = (error) => error,
): Promise<NobleTransport> {
  const again = await findDevice(noble, {
    address: device.address,
    timeoutMs,
    ...signalOption(signal),
  }).catch((error: unknown) => {
    throw notFound(error);
  });
  const transport = new NobleTransport(again.peripheral, { noble });
  try {
    await transport.connect(signalOption(signal));
  } catch (error) {
    await transport.close().catch(() => {});
    throw error;
  }
  return transport;
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
  const transport = await connectAgain(
    noble,
    device,
    options.verifyTimeout,
    io.signal,
    (error) =>
      new CliError(
        ExitCode.VERIFY_FAILED,
        `the device did not advertise again within ${formatMs(options.verifyTimeout)} after the update; check its serial console (ble-ota monitor) for a boot loop or rollback`,
        { cause: error },
      ),
  );
  try {
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

/** Which clock an upload's durations are on: the link model's with --sim on a modeled link. */
function clockFields(model: string | undefined) {
  return model === undefined
    ? { clock: 'wall' as const }
    : { clock: 'modeled' as const, linkModel: model };
}

/** "3.85 s (182.5 kB/s)", or with a link model also the real time it took here. */
function tookText(
  transferMs: number,
  bytesPerSecond: number,
  wallMs: number,
  model: string | undefined,
): string {
  const rate = `${(bytesPerSecond / 1000).toFixed(1)} kB/s`;
  return model === undefined
    ? `${formatMs(transferMs)} (${rate})`
    : `${formatMs(transferMs)} modeled on ${model} (${rate}), ${formatMs(wallMs)} real time`;
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

  protocol(protocol: UploadProtocol, choice: string): void {
    const why: Record<string, string> = {
      forced: 'as asked',
      'v2-offered': 'the device offers it',
      'no-v2-characteristics': 'the device offers no protocol v2',
      'mtu-too-small': 'the MTU is too small for protocol v2',
    };
    if (this.#json) this.#event('protocol', { protocol, choice });
    else line(this.#io.stdout, `protocol: ${protocol} (${why[choice] ?? choice})`);
  }

  resuming(error: V2LinkLostError, attempt: number, attempts: number): void {
    const fields = {
      committed: error.committed,
      streamSize: error.streamSize,
      attempt,
      attempts,
      message: error.message,
    };
    if (this.#json) this.#event('resuming', fields);
    else
      line(
        this.#io.stderr,
        `link lost with ${error.committed} of ${error.streamSize} bytes confirmed by the device; reconnecting to resume from there (attempt ${attempt} of ${attempts})`,
      );
  }

  /** A v2 upload: what was sent (deflated, resumed) and what it took; see `uploaded`. */
  uploadedV2(
    result: V2UploadResult,
    session: { resumes: number; totalMs: number },
    wallMs: number,
    model: string | undefined,
  ): void {
    const { resumes, totalMs } = session;
    if (this.#json) {
      this.#event('uploaded', {
        protocol: 'v2',
        outcome: result.outcome,
        bytes: result.imageSize,
        streamBytes: result.streamSize,
        compressed: result.compression.used,
        resumedFrom: result.resumedFrom,
        resumes,
        sentBytes: result.sentBytes,
        resentBytes: result.resentBytes,
        frameSize: result.frameSize,
        window: result.window,
        mtu: result.mtu,
        ...clockFields(model),
        durationMs: result.durationMs,
        transferMs: result.transferMs,
        bytesPerSecond: result.imageBytesPerSecond,
        totalMs,
        wallMs,
        restarted: result.restart.observed,
        ...(result.info.security ? { deviceSecurity: result.info.security } : {}),
      });
      return;
    }
    if (result.outcome === 'already-installed') {
      line(
        this.#io.stdout,
        `already installed: the device runs this image (same SHA-256); nothing sent`,
      );
      return;
    }
    const took = tookText(result.transferMs, result.imageBytesPerSecond, wallMs, model);
    const uncompressed = {
      disabled: 'uncompressed as asked',
      'device-unsupported': 'uncompressed: the device does not inflate',
      'not-smaller': 'uncompressed: deflate would not make it smaller',
    };
    const how = [
      result.compression.used
        ? `deflated to ${result.streamSize} bytes`
        : uncompressed[result.compression.reason],
      `frames of ${result.frameSize} bytes`,
      ...(resumes > 0 ? [`resumed ${resumes}x, last from byte ${result.resumedFrom}`] : []),
      ...(result.resentBytes > 0 ? [`${result.resentBytes} bytes sent again`] : []),
    ].join(', ');
    const last = resumes > 0 ? ' for the last part' : '';
    const overall =
      resumes > 0
        ? `; ${formatMs(totalMs)}${model === undefined ? '' : ' modeled'} in all, reconnects included`
        : '';
    line(
      this.#io.stdout,
      `uploaded ${result.imageSize} bytes with protocol v2 (${how}): ${took}${last}${overall}; device checked the SHA-256${result.info.security?.signedOnly ? ', the signature manifest before erasing and the signature' : ''}${result.restart.observed ? ' and restarted' : ''}`,
    );
  }

  /**
   * `result`'s durations are on the session's clock: the link model's with --sim on a modeled
   * link (`model` names it), the wall clock otherwise; `wallMs` is always real time.
   */
  uploaded(result: BaselineUploadResult, wallMs: number, model: string | undefined): void {
    if (this.#json) {
      this.#event('uploaded', {
        protocol: 'baseline',
        bytes: result.bytes,
        packets: result.packets,
        packetSize: result.packetSize,
        mtu: result.mtu,
        ...clockFields(model),
        durationMs: result.durationMs,
        transferMs: result.transferMs,
        bytesPerSecond: result.bytesPerSecond,
        wallMs,
        restarted: result.restart.observed,
      });
      return;
    }
    const took = tookText(result.transferMs, result.bytesPerSecond, wallMs, model);
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
