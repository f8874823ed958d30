/**
 * The protocol v2 upload (docs/protocol-v2.md) over any {@link Transport}: INFO, BEGIN with the
 * image's SHA-256 (resume or "already installed"), DATA frames as Write Commands with at most
 * one window unacknowledged, END, and the device's restart.
 */

import { deflate } from 'pako';
import { MAX_ATTRIBUTE_VALUE_LENGTH, normalizeUuid } from '../baseline.ts';
import { TypedEmitter } from '../emitter.ts';
import {
  BadImageError,
  isOtaError,
  ProtocolError,
  TimeoutError,
  UnknownCharacteristicError,
} from '../errors.ts';
import { sha256 } from '../image/bytes.ts';
import { APP_DESC_MAGIC } from '../image/layout.ts';
import { parseAppImage } from '../image/parse.ts';
import {
  findSignatureSector,
  MAX_SIG_BLOCKS,
  SIG_BLOCK_MAGIC,
  SIG_BLOCK_VERSION_ECDSA,
  SIG_BLOCK_VERSION_RSA,
} from '../image/signature.ts';

import {
  type Clock,
  type ProgressSnapshot,
  type ProgressTracker,
  systemClock,
} from '../progress.ts';
import type { RestartObservation } from '../session.ts';
import {
  PhaseRecorder,
  requireImageBytes,
  SessionLink,
  sessionProgressTracker,
} from '../session-link.ts';
import type {
  DisconnectInfo,
  NotificationListener,
  OperationOptions,
  Transport,
} from '../transport.ts';
import { UploadGuard, uploadOnce } from '../upload-guard.ts';
import {
  BEGIN_LENGTH,
  crc32,
  DATA_HEADER_LENGTH,
  decodeAnswer,
  decodeInfo,
  encodeBegin,
  encodeData,
  encodeEnd,
  encodeManifest,
  manifestPieces,
  SIGNATURE_BLOCK_LENGTH,
  V2_CONTROL_UUID,
  V2_DATA_UUID,
  V2_PROTO_VERSION,
  type V2Answer,
  type V2BeginRsp,
  type V2Info,
  V2Status,
  type V2WindowAck,
} from './codec.ts';
import { applyPatch, makePatch } from './delta.ts';
import { V2LinkLostError, V2RefusedError } from './errors.ts';

export type V2Phase = 'connect' | 'info' | 'begin' | 'data' | 'end' | 'restart';

export interface V2PhaseEvent {
  phase: V2Phase;
  state: 'start' | 'end' | 'fail';
  /** Clock time (ms) of the event. */
  at: number;
  /** For 'end' and 'fail': ms since the phase's 'start'. */
  durationMs?: number;
  error?: Error;
}

export interface V2PhaseTiming {
  phase: V2Phase;
  startedAt: number;
  endedAt: number;
  durationMs: number;
}

export interface V2Timeouts {
  /** connect() including MTU exchange and discovery, when the uploader connects itself. */
  connectMs: number;
  /** The read of INFO. */
  infoMs: number;
  /** The CCCD write enabling v2 Control notifications. */
  subscribeMs: number;
  /** BEGIN until BEGIN_RSP (Write Response and the answer). */
  beginMs: number;
  /** Each DATA Write Command: until the controller takes it (credits). */
  writeMs: number;
  /**
   * With a window in flight, how long to wait for a WINDOW_ACK before resending from the last
   * acknowledged offset: a frame lost at the end of a window or of the stream leaves the device
   * nothing that reveals the gap, and the resent frame makes it report where it stands.
   */
  ackMs: number;
  /** Resends after `ackMs` without any WINDOW_ACK before giving up with TIMEOUT. */
  ackRetries: number;
  /** END until END_RSP: the device hashes and checks the whole image meanwhile. */
  endMs: number;
  /** END_RSP until the link drops as the device restarts. */
  restartMs: number;
}

export const DEFAULT_V2_TIMEOUTS: Readonly<V2Timeouts> = {
  connectMs: 15_000,
  infoMs: 5_000,
  subscribeMs: 5_000,
  beginMs: 10_000,
  writeMs: 5_000,
  ackMs: 5_000,
  ackRetries: 2,
  endMs: 30_000,
  restartMs: 5_000,
};

/**
 * 'auto' (default): deflate when the device supports it and the stream gets smaller;
 * 'always': deflate whenever the device supports it; 'never': send the image as it is.
 */
export type V2Compression = 'auto' | 'always' | 'never';

export interface V2UploadOptions {
  compression?: V2Compression;
  /** esp_image_header_t chip id for BEGIN; default: read from the image header. */
  chipId?: number;
  /** Upper bound on a DATA frame (header included); the device's max_frame and MTU - 3 apply too. */
  maxFrame?: number;
  timeouts?: Partial<V2Timeouts>;
  signal?: AbortSignal;
  /** Drives phase timestamps, rate, ETA and (if it has timers) the timeouts. */
  clock?: Clock;
  /** Wait for the device to drop the link after END_RSP (default true). */
  waitForRestart?: boolean;
  /** Time constant of the rate smoothing, ms. */
  rateSmoothingMs?: number;
  /**
   * Install an image whose app version is older than the running one. The device takes it
   * only if its firmware allows that (CONFIG_BLE_OTA_ALLOW_DOWNGRADE); a secure_version below
   * the device's minimum is refused whatever this says.
   */
  allowDowngrade?: boolean;
  /**
   * Check what the device's INFO says it enforces before sending anything (default true). Off,
   * the image goes out and the device's own checks answer: for tests of the device.
   */
  preflight?: boolean;
  /**
   * An image the device may run (one flashed before, or the last build). When INFO says the
   * device takes patches and runs exactly this image (its SHA-256), a patch against it goes out
   * instead of the image; if BEGIN answers BASE_MISMATCH the full image goes out instead.
   * A function is asked for the image with INFO's running SHA-256 (lowercase hex), e.g. from
   * a store of images flashed before.
   */
  base?: Uint8Array | BaseImageLookup;
  /**
   * Changes the patch before it is sent, and sends it unchecked: for tests of the device's
   * refusals (BAD_PATCH). The image's SHA-256 at BEGIN stays the real image's.
   */
  alterPatch?: (patch: Uint8Array) => Uint8Array;
}

/** The image whose SHA-256 (lowercase hex) this is, if the caller has it. */
export type BaseImageLookup = (sha256: string) => Uint8Array | undefined;

/**
 * Orders two app versions as the firmware does (ble_ota_version_compare): by their numeric
 * major.minor.patch, a leading `v` allowed, suffixes not compared. < 0 when `a` is older,
 * undefined when either does not start with a number (then no order and no refusal).
 */
export function compareAppVersions(a: string, b: string): number | undefined {
  const parse = (v: string) => {
    const m = /^[vV]?(\d+)(?:\.(\d+))?(?:\.(\d+))?/.exec(v);
    return m ? [m[1], m[2], m[3]].map((x) => Math.min(Number(x ?? 0), 1e8)) : undefined;
  };
  const pa = parse(a);
  const pb = parse(b);
  if (!pa || !pb) return undefined;
  for (let i = 0; i < 3; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return Math.sign(d);
  }
  return 0;
}

/**
 * The signature manifest of a signed image (its Secure Boot v2 blocks, secure_version and
 * version), which a device that takes signed updates only checks at BEGIN before it erases
 * anything; undefined for an image without a signature sector.
 */
export function imageManifest(image: Uint8Array): Uint8Array | undefined {
  const at = findSignatureSector(image);
  if (at === undefined) return undefined;
  const blocks: Uint8Array[] = [];
  for (let i = 0; i < MAX_SIG_BLOCKS; i++) {
    const block = image.subarray(
      at + i * SIGNATURE_BLOCK_LENGTH,
      at + (i + 1) * SIGNATURE_BLOCK_LENGTH,
    );
    const version = block[1];
    if (
      block[0] !== SIG_BLOCK_MAGIC ||
      (version !== SIG_BLOCK_VERSION_RSA && version !== SIG_BLOCK_VERSION_ECDSA)
    ) {
      break;
    }
    blocks.push(block);
  }
  // Read where the device reads them (ble_ota_image.c): esp_app_desc_t after the image header
  // (24 bytes) and the first segment header (8), so an image the client cannot parse still gets
  // the claims the device will compare.
  const view = new DataView(image.buffer, image.byteOffset, image.byteLength);
  const hasDesc = image.length >= 80 && view.getUint32(32, true) === APP_DESC_MAGIC;
  // The version goes as the bytes it is: the device compares them with the image's own, and a
  // decoded and re-encoded string would differ wherever they are not valid UTF-8.
  const raw = hasDesc ? image.subarray(48, 80) : new Uint8Array(0);
  const end = raw.indexOf(0);
  return encodeManifest({
    secureVersion: hasDesc ? view.getUint32(36, true) : 0,
    version: end < 0 ? raw : raw.subarray(0, end),
    blocks,
  });
}

export interface V2ProgressSnapshot extends ProgressSnapshot {
  /** Stream bytes the device has committed (compressed bytes when deflating). */
  streamBytes: number;
  streamTotal: number;
  /** DATA payload bytes written by this call so far, resends included. */
  sentBytes: number;
  /** Where this call started in the stream (non-zero when resuming). */
  resumedFrom: number;
}

export type V2DeltaOutcome =
  | { used: true; patchSize: number; baseSha256: string }
  | {
      used: false;
      /** no-base: none given; not-running: the device runs another image than the base (or
       *  than any the lookup has). */
      reason: 'no-base' | 'device-unsupported' | 'not-running' | 'not-smaller' | 'base-mismatch';
    };

export type V2CompressionOutcome =
  | { used: true; streamSize: number }
  | { used: false; reason: 'disabled' | 'device-unsupported' | 'not-smaller' };

export interface V2UploadResult {
  protocol: 'v2';
  /** 'already-installed': the device runs this image; nothing was sent. */
  outcome: 'installed' | 'already-installed';
  info: V2Info;
  mtu: number;
  imageSize: number;
  imageSha256: string;
  streamSize: number;
  compression: V2CompressionOutcome;
  /** Whether a patch against the running image went out instead of the image, and why not. */
  delta: V2DeltaOutcome;
  /** Stream offset the device resumed from (0 for a new session). */
  resumedFrom: number;
  /** The device's held session did not match (CRC) and was restarted from 0. */
  sessionRestarted: boolean;
  /** DATA payload bytes this call wrote, resends included: less than the stream when resuming. */
  sentBytes: number;
  sentFrames: number;
  /** Bytes sent again after a gap or an ack timeout. */
  resentBytes: number;
  /** Gap reports (WINDOW_ACK with BAD_REQUEST) and ack timeouts recovered from. */
  gaps: number;
  ackTimeouts: number;
  frameSize: number;
  window: number;
  startedAt: number;
  endedAt: number;
  durationMs: number;
  /** Duration of the data phase alone. */
  transferMs: number;
  /** Stream bytes moved by this call per second of the data phase. */
  bytesPerSecond: number;
  /** Image bytes per second of the data phase (higher than the stream rate when deflating). */
  imageBytesPerSecond: number;
  phases: V2PhaseTiming[];
  restart: RestartObservation;
}

export interface V2UploaderEvents {
  progress: [snapshot: V2ProgressSnapshot];
  phase: [event: V2PhaseEvent];
  /** A v2 Control value the upload did not expect (logged, otherwise ignored). */
  unexpectedNotification: [data: Uint8Array, reason: string];
}

/** Smallest ATT MTU that carries BEGIN (44 bytes) in one write. */
export const V2_MIN_MTU = BEGIN_LENGTH + 3;

/** True when the transport's last discovery found the v2 characteristics. */
export function hasV2(transport: Transport): boolean {
  const present = new Set(
    transport.services().flatMap((s) => s.characteristics.map((c) => normalizeUuid(c.uuid))),
  );
  return present.has(normalizeUuid(V2_CONTROL_UUID)) && present.has(normalizeUuid(V2_DATA_UUID));
}

/**
 * Uploads one image with protocol v2. Listen to 'progress' and 'phase', then call `upload()`.
 * Reusable once an upload settled, e.g. to resume after a V2LinkLostError on a new connection.
 */
export class V2Uploader extends TypedEmitter<V2UploaderEvents> {
  readonly #transport: Transport;
  readonly #options: V2UploadOptions;
  readonly #guard = new UploadGuard();

  constructor(transport: Transport, options: V2UploadOptions = {}) {
    super();
    this.#transport = transport;
    this.#options = options;
  }

  async upload(image: Uint8Array, options: OperationOptions = {}): Promise<V2UploadResult> {
    return this.#guard.run(this.#options, options.signal, (runOptions) =>
      new Run(this.#transport, image, runOptions).execute({
        progress: (s) => this.emit('progress', s),
        phase: (e) => this.emit('phase', e),
        unexpected: (d, r) => this.emit('unexpectedNotification', d, r),
      }),
    );
  }
}

export interface UploadV2Options extends V2UploadOptions {
  onProgress?: (snapshot: V2ProgressSnapshot) => void;
  onPhase?: (event: V2PhaseEvent) => void;
}

/** One-call form of {@link V2Uploader}. */
export function uploadV2(
  transport: Transport,
  image: Uint8Array,
  options: UploadV2Options = {},
): Promise<V2UploadResult> {
  const { onProgress, onPhase, ...rest } = options;
  return uploadOnce(new V2Uploader(transport, rest), image, { onProgress, onPhase });
}

/** The chip id BEGIN carries: esp_image_header_t.chip_id, bytes 12-13 of an app image. */
/**
 * Reads and decodes v2 INFO (chip, slot size, window, running image, ...), refusing a device
 * without the v2 characteristics or with another protocol version. Read-only: a client that
 * goes on with the baseline may still learn the device's real slot size this way.
 */
export async function readV2Info(
  transport: Transport,
  options: { signal?: AbortSignal } = {},
): Promise<V2Info> {
  if (!hasV2(transport)) {
    const missing = [V2_CONTROL_UUID, V2_DATA_UUID].find(
      (uuid) =>
        !transport
          .services()
          .some((s) =>
            s.characteristics.some((c) => normalizeUuid(c.uuid) === normalizeUuid(uuid)),
          ),
    );
    throw new UnknownCharacteristicError(missing ?? V2_CONTROL_UUID);
  }
  const info = decodeInfo(
    await transport.read(
      V2_CONTROL_UUID,
      options.signal === undefined ? {} : { signal: options.signal },
    ),
  );
  if (info.protoVersion !== V2_PROTO_VERSION) {
    throw new ProtocolError(
      `the device speaks OTA protocol version ${info.protoVersion}, this client version ${V2_PROTO_VERSION}; upgrade the one that is older`,
    );
  }
  return info;
}

export function imageChipId(image: Uint8Array): number | undefined {
  if (image.length < 24 || image[0] !== 0xe9) return undefined;
  return (image[12] as number) | ((image[13] as number) << 8);
}

// ---------------------------------------------------------------------------------------------

interface Sinks {
  progress(snapshot: V2ProgressSnapshot): void;
  phase(event: V2PhaseEvent): void;
  unexpected(data: Uint8Array, reason: string): void;
}

interface Step {
  timeoutMs: number;
  /** Completes "timed out after N ms ..." */
  waitingFor: string;
  /** Completes "link lost ..." and "upload aborted ..." */
  during: string;
}

type AnswerOp = 'BEGIN_RSP' | 'END_RSP';

class Run {
  readonly #t: Transport;
  readonly #image: Uint8Array;
  readonly #opts: V2UploadOptions;
  readonly #clock: Clock;
  readonly #timeouts: V2Timeouts;
  readonly #link: SessionLink<Step>;
  readonly #phases: PhaseRecorder<V2Phase>;
  #sinks: Sinks | undefined;

  #answerWaiter: { op: AnswerOp; resolve(answer: V2Answer): void } | undefined;

  // Streaming state, shared with the notification listener.
  #stream: Uint8Array = new Uint8Array(0);
  #compression: V2CompressionOutcome = { used: false, reason: 'disabled' };
  #delta: V2DeltaOutcome = { used: false, reason: 'no-base' };
  /** The full image's stream, for a BEGIN that BASE_MISMATCH refused. */
  #fullStream: { stream: Uint8Array; compression: V2CompressionOutcome } | undefined;
  #baseSha: Uint8Array | undefined;
  #streaming = false;
  /** Offset the device last confirmed as written (OK acks); what a resume would continue from. */
  #committed = 0;
  /** Start of the window: the device holds everything before it. */
  #base = 0;
  /** Set by a gap report: the offset to resend from. */
  #rewindTo: number | undefined;
  /** Set by an ack the upload cannot continue after. */
  #failure: Error | undefined;
  #ackWaiter: (() => void) | undefined;
  #gaps = 0;
  #crcPos = 0;
  #crcVal = 0;
  #beginAccepted = false;
  #resumable = false;
  #tracker: ProgressTracker | undefined;
  #resumedFrom = 0;
  #sent = 0;

  readonly #onNotification: NotificationListener = (data) => {
    let answer: V2Answer;
    try {
      answer = decodeAnswer(data);
    } catch (error) {
      this.#sinks?.unexpected(data, (error as Error).message);
      return;
    }
    if (answer.op === 'WINDOW_ACK') {
      if (this.#streaming) this.#onAck(answer);
      else this.#sinks?.unexpected(data, 'WINDOW_ACK outside the data phase');
      return;
    }
    const waiter = this.#answerWaiter;
    if (waiter?.op === answer.op) {
      this.#answerWaiter = undefined;
      if (answer.op === 'END_RSP' && answer.status === V2Status.OK) this.#link.restartDue();
      // An earlier END of this image went through: the device is about to restart into it.
      if (answer.op === 'BEGIN_RSP' && answer.status === V2Status.INSTALLED_RESTARTING) {
        this.#link.restartDue();
      }
      waiter.resolve(answer);
    } else {
      this.#sinks?.unexpected(data, `${answer.op} was not expected now`);
    }
  };

  constructor(transport: Transport, image: Uint8Array, options: V2UploadOptions) {
    this.#t = transport;
    this.#image = image;
    this.#opts = options;
    this.#clock = options.clock ?? systemClock;
    this.#timeouts = { ...DEFAULT_V2_TIMEOUTS, ...options.timeouts };
    this.#link = new SessionLink<Step>({
      transport,
      clock: this.#clock,
      signal: options.signal,
      linkLost: (step, info) => this.#linkLostError(step, info),
      // The transport's own LinkLostError says less than ours (no committed offset).
      explain: (step, error) => {
        const lost = this.#link.lost;
        if (isOtaError(error) && error.code === 'LINK_LOST' && lost !== undefined) {
          return this.#linkLostError(step, lost);
        }
        return error as Error;
      },
    });
    this.#phases = new PhaseRecorder(this.#clock, (event) => this.#sinks?.phase(event));
  }

  async execute(sinks: Sinks): Promise<V2UploadResult> {
    this.#sinks = sinks;
    const image = this.#image;
    requireImageBytes(image);
    const chipId = this.#opts.chipId ?? imageChipId(image);
    if (chipId === undefined) {
      throw new BadImageError(
        'the image is not an ESP app image (no 0xE9 header), so its chip is unknown; pass the .bin that idf.py builds, or chipId',
      );
    }
    this.#link.throwIfAborted();
    const startedAt = this.#clock.now();
    this.#link.attach();
    let subscribed = false;
    try {
      if (!this.#t.connected) {
        await this.#phases.run('connect', () =>
          this.#link.step(
            {
              timeoutMs: this.#timeouts.connectMs,
              waitingFor: 'waiting for the connection',
              during: 'while connecting',
            },
            (signal) => this.#t.connect({ signal }),
          ),
        );
      }
      const info = await this.#phases.run('info', () => this.#readInfo());
      const mtu = this.#t.mtu;
      if (mtu < V2_MIN_MTU) {
        throw new ProtocolError(
          `protocol v2 needs an ATT MTU of at least ${V2_MIN_MTU} (BEGIN is a ${BEGIN_LENGTH}-byte write) but the link has ${mtu}; use the baseline protocol (uploadAuto does) or a central that negotiates a larger MTU`,
        );
      }
      const manifest = this.#preflight(info);
      const imageSha = sha256(image);
      this.#prepare(info);

      const begun = await this.#phases.run('begin', async () => {
        subscribed = true;
        await this.#link.step(
          {
            timeoutMs: this.#timeouts.subscribeMs,
            waitingFor: 'waiting for the device to enable v2 Control notifications',
            during: 'while subscribing to v2 Control notifications',
          },
          (signal) => this.#t.subscribe(V2_CONTROL_UUID, this.#onNotification, { signal }),
        );
        if (manifest !== undefined) await this.#sendManifest(manifest);
        return this.#begin(chipId, imageSha, info, manifest !== undefined);
      });
      // What BEGIN settled on: the patch, or the full image after BASE_MISMATCH.
      const stream = this.#stream;
      const compression = this.#compression;

      const base = {
        protocol: 'v2' as const,
        info,
        mtu,
        imageSize: image.length,
        imageSha256: toHex(imageSha),
        streamSize: stream.length,
        compression,
        delta: this.#delta,
        sessionRestarted: begun.sessionRestarted,
        startedAt,
      };
      if (begun.rsp === 'already-installed' || begun.rsp === 'installed-restarting') {
        // Nothing to stream: the device runs this image, or an earlier END of it went through and
        // the device restarts into it now (then the restart is waited for as after END).
        const installed = begun.rsp === 'installed-restarting';
        const restart: RestartObservation = installed
          ? await this.#awaitRestart()
          : { observed: false, reason: 'not-waited' };
        if (restart.observed) subscribed = false;
        const endedAt = this.#clock.now();
        return {
          ...base,
          outcome: installed ? 'installed' : 'already-installed',
          resumedFrom: installed ? stream.length : 0,
          sentBytes: 0,
          sentFrames: 0,
          resentBytes: 0,
          gaps: 0,
          ackTimeouts: 0,
          frameSize: 0,
          window: 0,
          endedAt,
          durationMs: endedAt - startedAt,
          transferMs: 0,
          bytesPerSecond: 0,
          imageBytesPerSecond: 0,
          phases: this.#phases.timings,
          restart,
        };
      }
      const rsp = begun.rsp;
      const frameSize = Math.min(
        rsp.maxFrame > 0 ? rsp.maxFrame : info.maxFrame,
        mtu - 3,
        // GATT caps an attribute value at 512 bytes (Core spec Vol 3 Part F 3.2.9); NimBLE
        // drops a longer Write Command silently.
        MAX_ATTRIBUTE_VALUE_LENGTH,
        this.#opts.maxFrame ?? Number.POSITIVE_INFINITY,
      );
      if (frameSize <= DATA_HEADER_LENGTH) {
        throw new ProtocolError(
          `a DATA frame of ${frameSize} bytes has no room for data after its 4-byte offset (device max_frame ${rsp.maxFrame}, MTU ${mtu}); raise the MTU or maxFrame`,
        );
      }
      const window = rsp.window > 0 ? rsp.window : info.window;
      if (window <= 0) {
        throw new ProtocolError('the device offered a window of 0 bytes; it cannot take data');
      }

      const transferStart = this.#clock.now();
      const stats = await this.#phases.run('data', () =>
        this.#sendStream(rsp.offset, frameSize, window),
      );
      const transferMs = this.#clock.now() - transferStart;

      await this.#phases.run('end', () => this.#end());
      const restart = await this.#awaitRestart();
      if (restart.observed) subscribed = false;
      const endedAt = this.#clock.now();
      const moved = stream.length - rsp.offset;
      const rate = (n: number) =>
        transferMs > 0 ? (n * 1000) / transferMs : Number.POSITIVE_INFINITY;
      return {
        ...base,
        outcome: 'installed',
        resumedFrom: rsp.offset,
        ...stats,
        frameSize,
        window,
        endedAt,
        durationMs: endedAt - startedAt,
        transferMs,
        bytesPerSecond: rate(moved),
        imageBytesPerSecond: rate((moved * image.length) / stream.length),
        phases: this.#phases.timings,
        restart,
      };
    } finally {
      this.#streaming = false;
      this.#answerWaiter = undefined;
      this.#ackWaiter = undefined;
      this.#link.detach();
      if (subscribed) {
        await this.#link.unsubscribeQuietly(
          V2_CONTROL_UUID,
          this.#onNotification,
          this.#timeouts.subscribeMs,
        );
      }
    }
  }

  #readInfo(): Promise<V2Info> {
    return this.#link.step(
      {
        timeoutMs: this.#timeouts.infoMs,
        waitingFor: 'waiting for the device to answer the read of v2 INFO',
        during: 'while reading v2 INFO',
      },
      (signal) => readV2Info(this.#t, { signal }),
    );
  }

  /**
   * What the device's INFO says it enforces, checked before anything is sent (the device checks
   * it all again). Returns the manifest to send when the device takes one and the image is signed.
   */
  #preflight(info: V2Info): Uint8Array | undefined {
    const image = this.#image;
    const manifest = info.manifest ? imageManifest(image) : undefined;
    const sec = info.security;
    if (sec === undefined || this.#opts.preflight === false) return manifest;
    // The device refuses a wrong chip or a too large image first: leave those to its answer.
    if (imageChipId(image) !== info.chipId || image.length > info.slotSize) return manifest;
    const refuse = (status: number, detail: string) =>
      new V2RefusedError('BEGIN', status, { preflight: { detail } });
    if (sec.signedOnly && findSignatureSector(image) === undefined) {
      throw refuse(
        V2Status.UNSIGNED,
        'its INFO says it takes signed updates only, and this image has no Secure Boot v2 signature sector',
      );
    }
    let app: ReturnType<typeof parseAppImage> | undefined;
    try {
      app = parseAppImage(image);
    } catch {
      return manifest; // not an app image the client can read: the device answers for it
    }
    if (sec.antiRollback && app.secureVersion < sec.minSecureVersion) {
      throw refuse(
        V2Status.DOWNGRADE,
        `the image's secure_version is ${app.secureVersion}, the device takes ${sec.minSecureVersion} or higher`,
      );
    }
    const running = info.runningVersion;
    const order = running === undefined ? undefined : compareAppVersions(app.version, running);
    if (order !== undefined && order < 0 && !(this.#opts.allowDowngrade && sec.allowDowngrade)) {
      throw refuse(
        V2Status.VERSION_DOWNGRADE,
        `the image is version ${app.version}, the device runs ${running}${
          this.#opts.allowDowngrade ? ' and its firmware takes no older version' : ''
        }`,
      );
    }
    return manifest;
  }

  /** MANIFEST in pieces (Write Requests), right before BEGIN on the same connection. */
  async #sendManifest(manifest: Uint8Array): Promise<void> {
    for (const piece of manifestPieces(manifest, this.#t.mtu - 3)) {
      await this.#link.step(
        {
          timeoutMs: this.#timeouts.writeMs,
          waitingFor: 'waiting for the device to take the signature manifest',
          during: 'while sending the signature manifest',
        },
        (signal) => this.#t.write(V2_CONTROL_UUID, piece, { withResponse: true, signal }),
      );
    }
  }

  #prepareStream(
    info: V2Info,
    data: Uint8Array,
  ): { stream: Uint8Array; compression: V2CompressionOutcome } {
    const mode = this.#opts.compression ?? 'auto';
    if (mode === 'never') return { stream: data, compression: { used: false, reason: 'disabled' } };
    if (!info.deflate) {
      return { stream: data, compression: { used: false, reason: 'device-unsupported' } };
    }
    // Level 9 is deterministic for a given zlib, so a resumed session gets the same stream;
    // the CRC check at BEGIN catches it if it does not. pako is a port of zlib: the same
    // bytes as node:zlib's deflate at level 9, in Node and in a page alike.
    const deflated = deflate(data, { level: 9 });
    if (mode === 'auto' && deflated.length >= data.length) {
      return { stream: data, compression: { used: false, reason: 'not-smaller' } };
    }
    return { stream: deflated, compression: { used: true, streamSize: deflated.length } };
  }

  /** The stream to send: a patch against the running image when that pays, else the image. */
  #prepare(info: V2Info): void {
    const full = this.#prepareStream(info, this.#image);
    this.#fullStream = full;
    this.#stream = full.stream;
    this.#compression = full.compression;
    this.#baseSha = undefined;
    const option = this.#opts.base;
    const base =
      typeof option === 'function'
        ? info.runningSha256 === undefined
          ? undefined
          : option(toHex(info.runningSha256))
        : option;
    if (base === undefined) {
      // A lookup that has no image with the running SHA-256: the device runs none it knows.
      this.#delta = { used: false, reason: option === undefined ? 'no-base' : 'not-running' };
      return;
    }
    if (!info.delta) {
      this.#delta = { used: false, reason: 'device-unsupported' };
      return;
    }
    const baseSha = sha256(base);
    if (info.runningSha256 === undefined || toHex(info.runningSha256) !== toHex(baseSha)) {
      this.#delta = { used: false, reason: 'not-running' };
      return;
    }
    const made = makePatch(base, this.#image);
    const patch = this.#opts.alterPatch === undefined ? made : this.#opts.alterPatch(made);
    // The device would refuse a wrong patch only at END (HASH_MISMATCH); check it here first.
    const rebuilt = applyPatch(base, made, this.#image.length);
    if (toHex(sha256(rebuilt)) !== toHex(sha256(this.#image))) {
      throw new ProtocolError(
        'the patch does not rebuild the image (a bug in the patch encoder); send the image without base',
      );
    }
    const prepared = this.#prepareStream(info, patch);
    if (prepared.stream.length >= full.stream.length) {
      this.#delta = { used: false, reason: 'not-smaller' };
      return;
    }
    this.#stream = prepared.stream;
    this.#compression = prepared.compression;
    this.#baseSha = baseSha;
    this.#delta = { used: true, patchSize: patch.length, baseSha256: toHex(baseSha) };
  }

  async #begin(
    chipId: number,
    imageSha: Uint8Array,
    info: V2Info,
    manifest: boolean,
  ): Promise<{
    rsp: V2BeginRsp | 'already-installed' | 'installed-restarting';
    sessionRestarted: boolean;
  }> {
    let restart = false;
    for (;;) {
      const stream = this.#stream;
      const command = encodeBegin({
        deflate: this.#compression.used,
        restart,
        manifest,
        allowDowngrade: this.#opts.allowDowngrade === true,
        chipId,
        imageSize: this.#image.length,
        imageSha256: imageSha,
        streamSize: stream.length,
        ...(this.#baseSha === undefined ? {} : { baseSha256: this.#baseSha }),
      });
      const answer = await this.#command('BEGIN_RSP', command, {
        timeoutMs: this.#timeouts.beginMs,
        waitingFor: 'waiting for the answer to BEGIN',
        during: 'while beginning the update',
      });
      if (answer.op !== 'BEGIN_RSP')
        throw new ProtocolError(`expected BEGIN_RSP, got ${answer.op}`);
      if (answer.status === V2Status.ALREADY_INSTALLED) {
        return { rsp: 'already-installed', sessionRestarted: restart };
      }
      if (answer.status === V2Status.INSTALLED_RESTARTING) {
        // An earlier END of this image went through (its answer was lost with the link): the
        // device restarts into it now.
        return { rsp: 'installed-restarting', sessionRestarted: restart };
      }
      if (
        answer.status === V2Status.BASE_MISMATCH &&
        this.#baseSha !== undefined &&
        this.#fullStream !== undefined
      ) {
        // The device runs another image than INFO said a moment ago (another client updated
        // it in between): nothing was erased, the full image goes instead.
        this.#baseSha = undefined;
        this.#stream = this.#fullStream.stream;
        this.#compression = this.#fullStream.compression;
        this.#delta = { used: false, reason: 'base-mismatch' };
        continue;
      }
      if (answer.status !== V2Status.OK) throw new V2RefusedError('BEGIN', answer.status);
      if (answer.offset > stream.length) {
        throw new ProtocolError(
          `the device resumes at stream byte ${answer.offset}, past the end of the ${stream.length}-byte stream`,
        );
      }
      if (answer.offset === 0 || crc32(stream.subarray(0, answer.offset)) === answer.crc32) {
        this.#beginAccepted = true;
        this.#resumable = info.resume;
        return { rsp: answer, sessionRestarted: restart };
      }
      if (restart) {
        throw new ProtocolError(
          `the device was told to discard its session but resumes at ${answer.offset} with a CRC that differs from this image; abort the session on the device (or power-cycle it) and retry`,
        );
      }
      // What the device holds is not what this client would send (another zlib, a corrupt
      // flash write): start over rather than finish an image that fails at END.
      restart = true;
    }
  }

  /** The restart phase: the link dropping after the device's final answer (END_RSP, or a BEGIN_RSP
   *  INSTALLED_RESTARTING), unless the caller does not wait for it. */
  #awaitRestart(): Promise<RestartObservation> {
    return this.#phases.run('restart', () =>
      this.#link.awaitRestart(
        {
          timeoutMs: this.#timeouts.restartMs,
          waitingFor: 'waiting for the device to restart',
          during: 'while waiting for the device to restart',
        },
        this.#opts.waitForRestart !== false,
      ),
    );
  }

  /** Write a command and wait for its answer; the answer may arrive before the Write Response. */
  async #command(op: AnswerOp, data: Uint8Array, step: Step): Promise<V2Answer> {
    return this.#link.step(
      step,
      (signal) =>
        new Promise<V2Answer>((resolve, reject) => {
          let answer: V2Answer | undefined;
          let writeDone = false;
          this.#answerWaiter = {
            op,
            resolve: (a) => {
              answer = a;
              // END_RSP alone decides: the restart may cut the Write Response off.
              if (writeDone || op === 'END_RSP') resolve(a);
            },
          };
          this.#t.write(V2_CONTROL_UUID, data, { withResponse: true, signal }).then(
            () => {
              writeDone = true;
              if (answer !== undefined) resolve(answer);
            },
            (error: unknown) => {
              if (answer !== undefined && op === 'END_RSP') resolve(answer);
              else reject(error);
            },
          );
        }),
    );
  }

  // --- streaming -------------------------------------------------------------------------------

  #crcAt(offset: number): number {
    const stream = this.#stream;
    if (offset < this.#crcPos) {
      this.#crcPos = 0;
      this.#crcVal = 0;
    }
    this.#crcVal = crc32(stream.subarray(this.#crcPos, offset), this.#crcVal);
    this.#crcPos = offset;
    return this.#crcVal;
  }

  #onAck(ack: V2WindowAck): void {
    const total = this.#stream.length;
    const wake = () => {
      const waiter = this.#ackWaiter;
      this.#ackWaiter = undefined;
      waiter?.();
    };
    if (ack.status !== V2Status.OK && ack.status !== V2Status.BAD_REQUEST) {
      this.#failure ??= new V2RefusedError('DATA', ack.status);
      wake();
      return;
    }
    if (ack.committed > total) {
      this.#failure ??= new ProtocolError(
        `WINDOW_ACK at ${ack.committed} is past the end of the ${total}-byte stream`,
      );
      wake();
      return;
    }
    if (this.#crcAt(ack.committed) !== ack.crc32) {
      this.#failure ??= new ProtocolError(
        `the device's CRC of stream bytes [0, ${ack.committed}) differs from what was sent: its copy is corrupt; upload again (the client then starts over from 0)`,
      );
      wake();
      return;
    }
    if (ack.status === V2Status.BAD_REQUEST) {
      // A gap: the device holds exactly [0, committed) and dropped everything after it.
      this.#gaps++;
      this.#base = ack.committed;
      this.#rewindTo = ack.committed;
    } else if (ack.committed > this.#committed) {
      this.#committed = ack.committed;
      this.#base = Math.max(this.#base, ack.committed);
      this.#reportProgress();
    }
    wake();
  }

  #reportProgress(): void {
    const tracker = this.#tracker;
    if (tracker === undefined) return;
    const total = this.#stream.length;
    const snap = tracker.update(this.#committed - this.#resumedFrom);
    const imageTotal = this.#image.length;
    const scale = imageTotal / total;
    this.#sinks?.progress({
      ...snap,
      bytes: Math.round(this.#committed * scale),
      total: imageTotal,
      percent: (this.#committed * 100) / total,
      bytesPerSecond: snap.bytesPerSecond === undefined ? undefined : snap.bytesPerSecond * scale,
      averageBytesPerSecond:
        snap.averageBytesPerSecond === undefined ? undefined : snap.averageBytesPerSecond * scale,
      streamBytes: this.#committed,
      streamTotal: total,
      sentBytes: this.#sent,
      resumedFrom: this.#resumedFrom,
    });
  }

  async #sendStream(
    from: number,
    frameSize: number,
    window: number,
  ): Promise<{
    sentBytes: number;
    sentFrames: number;
    resentBytes: number;
    gaps: number;
    ackTimeouts: number;
  }> {
    const stream = this.#stream;
    const total = stream.length;
    const payloadMax = frameSize - DATA_HEADER_LENGTH;
    this.#committed = from;
    this.#base = from;
    this.#resumedFrom = from;
    this.#crcPos = 0;
    this.#crcVal = 0;
    this.#tracker = sessionProgressTracker(total - from, this.#clock, this.#opts.rateSmoothingMs);
    this.#reportProgress();
    this.#streaming = true;
    let next = from;
    /** Highest offset sent so far: bytes sent below it again are resends. */
    let highWater = from;
    let frames = 0;
    let resent = 0;
    let ackTimeouts = 0;
    let retries = 0;
    /** After an ack timeout: send one frame and wait for the device to say where it stands. */
    let probing = false;
    const dataStep: Step = {
      timeoutMs: this.#timeouts.writeMs,
      waitingFor: 'waiting for the controller to take a DATA frame (no free buffers)',
      during: 'during data transfer',
    };
    const lossWatch = this.#link.watch(dataStep);
    try {
      while (this.#committed < total) {
        while (next < total && next - this.#base < window) {
          if (probing && next !== this.#base) break;
          const length = Math.min(payloadMax, total - next, this.#base + window - next);
          const frame = encodeData(next, stream.subarray(next, next + length));
          await lossWatch.run((signal) =>
            this.#t.write(V2_DATA_UUID, frame, { withResponse: false, signal }),
          );
          frames++;
          this.#sent += length;
          if (next < highWater) resent += Math.min(length, highWater - next);
          next += length;
          highWater = Math.max(highWater, next);
          if (this.#failure !== undefined) throw this.#failure;
          if (this.#rewindTo !== undefined) {
            next = this.#rewindTo;
            this.#rewindTo = undefined;
            probing = false;
          }
        }
        if (this.#failure !== undefined) throw this.#failure;
        if (this.#committed >= total) break;
        if (this.#rewindTo !== undefined) {
          next = this.#rewindTo;
          this.#rewindTo = undefined;
          probing = false;
          continue;
        }
        const acked = await this.#waitForAck();
        if (this.#failure !== undefined) throw this.#failure;
        if (acked) {
          retries = 0;
          probing = false;
          continue;
        }
        ackTimeouts++;
        if (++retries > this.#timeouts.ackRetries) {
          const waited = this.#timeouts.ackMs * retries;
          throw new TimeoutError(
            `timed out after ${waited} ms waiting for the device to acknowledge stream bytes from ${this.#base} (of ${total}); it stopped answering`,
            waited,
          );
        }
        // Resending the oldest unacknowledged frame makes the device say where it stands; one
        // frame is enough, and a whole window would only flood a device that is merely slow.
        next = this.#base;
        probing = true;
        this.#rewindTo = undefined;
      }
      return {
        sentBytes: this.#sent,
        sentFrames: frames,
        resentBytes: resent,
        gaps: this.#gaps,
        ackTimeouts,
      };
    } finally {
      lossWatch.dispose();
      this.#streaming = false;
    }
  }

  /** Resolves true when a WINDOW_ACK arrived, false after ackMs without one. */
  async #waitForAck(): Promise<boolean> {
    try {
      await this.#link.step(
        {
          timeoutMs: this.#timeouts.ackMs,
          waitingFor: 'waiting for a WINDOW_ACK',
          during: 'during data transfer',
        },
        () =>
          new Promise<void>((resolve) => {
            this.#ackWaiter = resolve;
          }),
      );
      return true;
    } catch (error) {
      this.#ackWaiter = undefined;
      if (error instanceof TimeoutError) return false;
      throw error;
    }
  }

  async #end(): Promise<void> {
    const answer = await this.#command('END_RSP', encodeEnd(), {
      timeoutMs: this.#timeouts.endMs,
      waitingFor: 'waiting for the answer to END (the device checks the whole image)',
      during: 'while ending the update',
    });
    if (answer.op === 'END_RSP' && answer.status !== V2Status.OK) {
      throw new V2RefusedError('END', answer.status);
    }
  }

  // --- steps -----------------------------------------------------------------------------------

  #linkLostError(step: Step, info: DisconnectInfo): V2LinkLostError {
    const total = this.#stream.length;
    const resumable = this.#beginAccepted && this.#resumable;
    const where = this.#beginAccepted ? ` at stream byte ${this.#committed} of ${total}` : '';
    const hint = resumable
      ? `connect again and upload the same image: the device continues from byte ${this.#committed} or later`
      : 'connect again and upload again';
    return new V2LinkLostError(`link lost ${step.during}${where} (${info.message}); ${hint}`, {
      committed: this.#committed,
      streamSize: total,
      resumable,
      sentBytes: this.#sent,
      ...(info.reason === undefined ? {} : { reason: info.reason }),
    });
  }
}

function toHex(data: Uint8Array): string {
  let out = '';
  for (const byte of data) out += byte.toString(16).padStart(2, '0');
  return out;
}
