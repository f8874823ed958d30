import { readFile } from 'node:fs/promises';
import { relative } from 'node:path';
import { advertisesOta, nobleAccess, normalizeAddress } from '@esp-ble-ota/noble';
import {
  AttError,
  AttStatus,
  BASELINE_SLOT_SIZE,
  type BaselineUploadResult,
  type Clock,
  type DeviceInformation,
  DeviceRefusedError,
  type FoundDevice,
  ImageMismatchError,
  type ProtocolChoice,
  protocolChoiceText,
  readSignatures,
  resumingText,
  type SlotSource,
  UpdateError,
  type UpdateEvent,
  type UpdateTiming,
  type UploadProtocol,
  updateDevice,
  type V2Compression,
  V2RefusedError,
  type V2UploadResult,
} from '@esp-ble-ota/protocol';
import { CliError } from '../errors.ts';
import { ExitCode, type ExitCodeValue } from '../exit-codes.ts';
import { assertImageIntact, imageJson, type LoadedImage, loadImage } from '../image.ts';
import { ImageStore, imageStoreDir, sha256Hex } from '../image-store.ts';
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
  const signatures = await readSignatures(bytes);
  return { ...image, bytes, ...(signatures ? { signatures } : {}) };
}

/** The slot size assumed for a device that cannot tell its own (the baseline's partition table). */
export const DEFAULT_SLOT_SIZE = BASELINE_SLOT_SIZE;

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
  /**
   * v2 only: an image the device may run; if it does (and takes patches), a patch against it
   * goes out instead of the image. The image store is looked in too.
   */
  base?: string;
  /** Look in and add to the store of images flashed (default true; `--no-image-store`). */
  imageStore?: boolean;
  verify: boolean;
  /** How long to wait for the device to come back with the new image, ms. */
  verifyTimeout: number;
  /** Write REQUEST and DONE as Write Commands, as the baseline's Python client does. */
  baselineWrites?: boolean;
  /** Time limit of each protocol step (a write, an acknowledgement, the restart), ms. */
  stepTimeout?: number;
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
  const out = new Reporter(io, options.json ?? false);
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

  // 2. The update itself (find, connect, device info, protocol, pre-flight, upload, resume,
  // verify) is the library's; this renders it.
  const radio = await openRadio(io, simOptions(options));
  const boardOf = (device: FoundDevice) =>
    radio.rig?.boards.find((b) => normalizeAddress(b.address) === normalizeAddress(device.address));
  const access = nobleAccess(radio.noble, {
    filter: {
      name: options.name,
      address: options.address,
      match:
        options.name === undefined && options.address === undefined ? advertisesOta : undefined,
    },
    clock: (device) => modeledClock(boardOf(device)),
  });
  const progress = new ProgressView(
    io,
    options.json ? 'json' : io.stdout.isTTY ? 'tty' : 'plain',
    radio.rig?.profile !== undefined,
  );
  let model: string | undefined;
  let slot: { bytes: number; source: SlotSource } | undefined;
  let protocol: UploadProtocol | undefined;
  const onEvent = (event: UpdateEvent) => {
    switch (event.type) {
      case 'found': {
        out.found(event.device);
        const board = boardOf(event.device);
        model = modeledClock(board) === undefined ? undefined : radio.rig?.profile;
        return;
      }
      case 'connected':
        return out.connected(event.mtu, event.device);
      case 'protocol':
        if (protocol !== undefined) return;
        protocol = event.protocol;
        return out.protocol(event.protocol, event.choice);
      case 'preflight':
        slot = { bytes: event.slotSize, source: event.slotSource };
        for (const n of event.notes) out.note(n.note);
        return;
      case 'phase':
        if (event.state === 'start') {
          if (event.phase === 'info' || event.phase === 'subscribe') {
            if (!progress.started) {
              if (model !== undefined)
                out.note(`upload timings in modeled time on the ${model} link model`);
              progress.start(image.bytes.length);
            }
          }
          return;
        }
        return out.phase(event.phase, event.state, event.wallMs, event.modeledMs);
      case 'progress':
        return progress.update(event.snapshot);
      case 'resuming':
        return out.resuming(event);
      case 'uploaded':
        progress.stop();
        if (event.upload.protocol === 'v2')
          out.uploadedV2(
            event.upload.result,
            event,
            event.wallMs,
            model,
            options.base !== undefined,
          );
        else out.uploaded(event.upload.result, event.wallMs, model);
        return;
      case 'note':
        return out.note(event.message);
      case 'verified':
        return out.verified(event.version, event.expected ?? image.info.version);
    }
  };
  const store = options.imageStore === false ? undefined : new ImageStore(imageStoreDir());
  const baseBytes =
    options.base === undefined ? undefined : new Uint8Array(await readFile(options.base));
  const baseSha = baseBytes === undefined ? undefined : sha256Hex(baseBytes);
  const baseImages = (sha: string): Uint8Array | undefined =>
    sha === baseSha ? baseBytes : store?.get(sha);
  out.note(`scanning for ${describeTarget(options)}${options.sim ? ' on the virtual rig' : ''}...`);
  try {
    const result = await updateDevice(access, {
      baseImages,
      image: image.bytes,
      imageInfo: image.info,
      protocol: options.baselineWrites ? 'baseline' : (options.protocol ?? 'auto'),
      chipCheck: options.chipCheck,
      ...(options.slotSize === undefined ? {} : { slotSize: options.slotSize }),
      compression: options.compression ?? 'auto',
      ...(options.allowDowngrade ? { allowDowngrade: true } : {}),
      requestWriteType: options.baselineWrites ? 'command' : 'request',
      ...(options.stepTimeout === undefined ? {} : { stepTimeoutMs: options.stepTimeout }),
      findTimeoutMs: options.timeout,
      resumeAttempts: options.resumeAttempts ?? 3,
      verify: options.verify,
      verifyTimeoutMs: options.verifyTimeout,
      ...(io.signal === undefined ? {} : { signal: io.signal }),
      ...(io.now === undefined ? {} : { now: io.now }),
      onEvent,
    });
    out.timings(result.timings);
    try {
      store?.put(image.bytes); // the next update of this device can be a patch against it
    } catch (error) {
      out.note(
        `could not keep the image in ${store?.dir} for later delta updates: ${(error as Error).message}`,
      );
    }
    return ExitCode.OK;
  } catch (error) {
    if (error instanceof UpdateError && error.timings.length > 0) out.timings(error.timings);
    throw explainUpdateError(error, options, radio.rig?.signingKeyPath, image, slot);
  } finally {
    progress.stop();
    await radio.close();
  }
}

function describeTarget(options: FlashOptions): string {
  if (options.address !== undefined) return `device ${options.address}`;
  if (options.name !== undefined) return `device "${options.name}"`;
  return 'a device offering the OTA service';
}

const SLOT_SOURCES: Record<SlotSource, string> = {
  option: '--slot-size',
  'v2-info': "the device's v2 INFO",
  'v2-begin': 'v2 BEGIN',
  'baseline-default': 'the baseline partition table (the device cannot tell its own)',
};

/** A key file as a --key argument: relative to where the command runs, when it can be. */
function keyArg(path: string): string {
  return relative(process.cwd(), path) || path;
}

/** The exit code and the command-line hint for a failed update; the flow's message otherwise. */
function explainUpdateError(
  error: unknown,
  options: FlashOptions,
  rigKeyPath: string | undefined,
  image: LoadedImage,
  slot: { bytes: number; source: SlotSource } | undefined,
): unknown {
  if (!(error instanceof UpdateError)) return error;
  const cause = error.cause;
  if (error.code === 'VERIFY_FAILED') {
    return new CliError(ExitCode.VERIFY_FAILED, error.message, { cause: error });
  }
  if (cause instanceof ImageMismatchError) {
    const hint =
      cause.reason === 'chip'
        ? ' (--skip-chip-check to override)'
        : slot === undefined || slot.source === 'option'
          ? ` (--slot-size ${formatBytes(slot?.bytes ?? 0)})`
          : ` (it holds ${formatBytes(slot.bytes)}, from ${SLOT_SOURCES[slot.source]}; --slot-size if the device has larger slots)`;
    return new CliError(ExitCode.IMAGE_MISMATCH, `${cause.message}${hint}`, { cause: error });
  }
  // The baseline device ran out of slot while the image streamed in (this firmware says so);
  // an image it refused (IMAGE_REFUSED) stays a refusal.
  if (
    cause instanceof DeviceRefusedError &&
    cause.step === 'DATA' &&
    cause.cause instanceof AttError &&
    cause.cause.status === AttStatus.IMAGE_TOO_LARGE
  ) {
    return new CliError(ExitCode.IMAGE_MISMATCH, cause.message, { cause: error });
  }
  // The baseline's DONE_NAK carries no reason; an unsigned image is the likely one on a board
  // that takes signed images only (its console says so).
  if (
    cause instanceof DeviceRefusedError &&
    cause.step === 'DONE' &&
    rigKeyPath !== undefined &&
    image.signatures === undefined
  ) {
    return new CliError(
      ExitCode.DEVICE_REFUSED,
      `${cause.message}; the image is not signed, and the simulated board takes images signed by the rig's key only (its console gives the reason): add --key ${keyArg(rigKeyPath)}, or --sim-insecure`,
      { cause: error },
    );
  }
  if (!(cause instanceof V2RefusedError)) return error;
  if (cause.statusName === 'WRONG_CHIP' && options.chipCheck === false) {
    return new CliError(
      ExitCode.IMAGE_MISMATCH,
      `${cause.message} (the device checks the chip itself; --skip-chip-check cannot override it)`,
      { cause: error },
    );
  }
  if (cause.statusName === 'WRONG_CHIP' || cause.statusName === 'TOO_LARGE') {
    return new CliError(ExitCode.IMAGE_MISMATCH, cause.message, { cause: error });
  }
  // The virtual board runs the firmware's secure default; say which key it trusts.
  if (
    rigKeyPath !== undefined &&
    (cause.statusName === 'UNSIGNED' || cause.statusName === 'UNTRUSTED_KEY')
  ) {
    return new CliError(
      ExitCode.DEVICE_REFUSED,
      `${cause.message}. The simulated board takes images signed by the rig's key only: add --key ${keyArg(rigKeyPath)}, or --sim-insecure for a board that takes anything`,
      { cause: error },
    );
  }
  return error;
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

  found(device: FoundDevice): void {
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

  protocol(protocol: UploadProtocol, choice: ProtocolChoice): void {
    if (this.#json) this.#event('protocol', { protocol, choice });
    else line(this.#io.stdout, `protocol: ${protocol} (${protocolChoiceText(choice)})`);
  }

  resuming(event: Extract<UpdateEvent, { type: 'resuming' }>): void {
    const { phase, committed, streamSize, attempt, attempts, message } = event;
    if (this.#json) {
      this.#event('resuming', { phase, committed, streamSize, attempt, attempts, message });
      return;
    }
    line(this.#io.stderr, resumingText(event));
  }

  /** A v2 upload: what was sent (deflated, resumed) and what it took; see `uploaded`. */
  uploadedV2(
    result: V2UploadResult,
    session: { resumes: number; totalMs: number },
    wallMs: number,
    model: string | undefined,
    baseGiven = false,
  ): void {
    const { resumes, totalMs } = session;
    if (this.#json) {
      this.#event('uploaded', {
        protocol: 'v2',
        outcome: result.outcome,
        bytes: result.imageSize,
        streamBytes: result.streamSize,
        compressed: result.compression.used,
        delta: result.delta.used,
        ...(result.delta.used
          ? { patchBytes: result.delta.patchSize, baseSha256: result.delta.baseSha256 }
          : { deltaReason: result.delta.reason }),
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
        resumes > 0
          ? `installed: the device runs this image (same SHA-256); its answer to END was lost with the link`
          : `already installed: the device runs this image (same SHA-256); nothing sent`,
      );
      return;
    }
    const took = tookText(result.transferMs, result.imageBytesPerSecond, wallMs, model);
    const uncompressed = {
      disabled: 'uncompressed as asked',
      'device-unsupported': 'uncompressed: the device does not inflate',
      'not-smaller': 'uncompressed: deflate would not make it smaller',
    };
    const notDelta: Record<string, string | undefined> = {
      'no-base': undefined,
      'device-unsupported': 'the whole image: the device takes no patches',
      // Without --base the store was only asked: no news that it had nothing.
      'not-running': !baseGiven
        ? undefined
        : 'the whole image: the device does not run the --base image',
      'not-smaller': 'the whole image: a patch would not be smaller',
      'base-mismatch': 'the whole image: the device refused the base (BASE_MISMATCH)',
    };
    const how = [
      ...(result.delta.used
        ? [`a ${result.delta.patchSize}-byte patch against the running image`]
        : notDelta[result.delta.reason] === undefined
          ? []
          : [notDelta[result.delta.reason] as string]),
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

  timings(updateTimings: readonly UpdateTiming[]): void {
    const timings = updateTimings.map((t) => ({
      phase: t.failed ? `${t.phase} (failed)` : t.phase,
      durationMs: t.wallMs,
      ...(t.modeledMs === undefined ? {} : { modeledMs: t.modeledMs }),
    }));
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
