/**
 * The baseline OTA upload over any {@link Transport}.
 *
 * Steps (SEED-PROTOCOL.md): subscribe to OTA Control, write the packet size to OTA Data with
 * response, REQUEST, wait REQUEST_ACK, write the image in packet-size chunks with response one
 * at a time, DONE, wait DONE_ACK, then watch the link drop as the device restarts.
 */

import {
  type ControlValue,
  DEVICE_INFORMATION_SERVICE_UUID,
  decodeControlValue,
  encodeOpcode,
  encodePacketSize,
  FIRMWARE_REVISION_UUID,
  MANUFACTURER_NAME_UUID,
  MODEL_NUMBER_UUID,
  normalizeUuid,
  type OpcodeName,
  OTA_CONTROL_UUID,
  OTA_DATA_UUID,
  packetCount,
  packetSizeForMtu,
} from './baseline.ts';
import { TypedEmitter } from './emitter.ts';
import {
  AttError,
  AttStatus,
  DeviceRefusedError,
  isOtaError,
  LinkLostError,
  OtaError,
  UnknownCharacteristicError,
} from './errors.ts';
import { type Clock, type ProgressSnapshot, systemClock } from './progress.ts';
import {
  PhaseRecorder,
  requireImageBytes,
  SessionLink,
  sessionProgressTracker,
} from './session-link.ts';
import type {
  DeviceInformation,
  DisconnectInfo,
  NotificationListener,
  OperationOptions,
  Transport,
} from './transport.ts';
import { UploadGuard, uploadOnce } from './upload-guard.ts';

export type BaselinePhase =
  | 'connect'
  | 'subscribe'
  | 'packet-size'
  | 'request'
  | 'data'
  | 'done'
  | 'restart';

export interface PhaseEvent {
  phase: BaselinePhase;
  state: 'start' | 'end' | 'fail';
  /** Clock time (ms) of the event. */
  at: number;
  /** For 'end' and 'fail': ms since the phase's 'start'. */
  durationMs?: number;
  /** For 'fail'. */
  error?: Error;
}

export interface PhaseTiming {
  phase: BaselinePhase;
  startedAt: number;
  endedAt: number;
  durationMs: number;
}

export interface BaselineTimeouts {
  /** connect() including MTU exchange and discovery, when the session connects itself. */
  connectMs: number;
  /** The CCCD write enabling OTA Control notifications. */
  subscribeMs: number;
  /** Each Write Request (packet size, every data packet): until its Write Response. */
  writeMs: number;
  /** REQUEST until REQUEST_ACK/NAK (esp_ota_begin runs in between). */
  requestAckMs: number;
  /** DONE until DONE_ACK/NAK (esp_ota_end validates the whole image in between). */
  doneAckMs: number;
  /** DONE_ACK until the link drops (the baseline sleeps 500 ms, then restarts). */
  restartMs: number;
}

export const DEFAULT_BASELINE_TIMEOUTS: Readonly<BaselineTimeouts> = {
  connectMs: 15_000,
  subscribeMs: 5_000,
  writeMs: 5_000,
  requestAckMs: 5_000,
  doneAckMs: 10_000,
  restartMs: 5_000,
};

export interface BaselineUploadOptions {
  /** Upper bound on the packet size; the session uses min(MTU - 3, 512, this). */
  maxPacketSize?: number;
  /**
   * How REQUEST and DONE go out. 'request' (default): ATT Write Request, as the characteristic
   * declares only "write". 'command': Write Command, as the baseline's Python client does.
   */
  requestWriteType?: 'request' | 'command';
  timeouts?: Partial<BaselineTimeouts>;
  signal?: AbortSignal;
  /** Drives phase timestamps, rate, ETA and (if it has timers) the timeouts. */
  clock?: Clock;
  /** Wait for the device to drop the link after DONE_ACK (default true). */
  waitForRestart?: boolean;
  /** Time constant of the rate smoothing, ms. */
  rateSmoothingMs?: number;
}

export type RestartObservation =
  | { observed: true; afterMs: number; disconnect: DisconnectInfo }
  | { observed: false; reason: 'not-waited' | 'timeout' };

export interface BaselineUploadResult {
  bytes: number;
  packets: number;
  packetSize: number;
  mtu: number;
  requestWriteType: 'request' | 'command';
  startedAt: number;
  endedAt: number;
  durationMs: number;
  /** Duration of the data phase alone. */
  transferMs: number;
  /** bytes / transferMs, in bytes per second. */
  bytesPerSecond: number;
  phases: PhaseTiming[];
  restart: RestartObservation;
}

export interface BaselineUploaderEvents {
  progress: [snapshot: ProgressSnapshot];
  phase: [event: PhaseEvent];
  /** A value on OTA Control the session did not wait for (logged, otherwise ignored). */
  unexpectedNotification: [value: ControlValue];
}

interface Step {
  phase: BaselinePhase;
  /** Completes "timed out after N ms ..." */
  waitingFor: () => string;
  /** Completes "link lost ..." and "upload aborted ..." */
  during: () => string;
  timeoutMs: number;
}

const RETRY_HINT = 'the baseline protocol cannot resume: reconnect and upload again';

/**
 * Uploads one image with the baseline protocol. Listen to 'progress' and 'phase', then call
 * `upload()`. The instance can be reused for another upload once the first settled.
 */
export class BaselineUploader extends TypedEmitter<BaselineUploaderEvents> {
  readonly #transport: Transport;
  readonly #options: BaselineUploadOptions;
  readonly #guard = new UploadGuard();

  constructor(transport: Transport, options: BaselineUploadOptions = {}) {
    super();
    this.#transport = transport;
    this.#options = options;
  }

  async upload(image: Uint8Array, options: OperationOptions = {}): Promise<BaselineUploadResult> {
    return this.#guard.run(this.#options, options.signal, (runOptions) =>
      new UploadRun(this.#transport, image, runOptions).execute({
        progress: (s) => this.emit('progress', s),
        phase: (e) => this.emit('phase', e),
        unexpected: (v) => this.emit('unexpectedNotification', v),
      }),
    );
  }
}

export interface UploadBaselineOptions extends BaselineUploadOptions {
  onProgress?: (snapshot: ProgressSnapshot) => void;
  onPhase?: (event: PhaseEvent) => void;
}

/** One-call form of {@link BaselineUploader}. */
export function uploadBaseline(
  transport: Transport,
  image: Uint8Array,
  options: UploadBaselineOptions = {},
): Promise<BaselineUploadResult> {
  const { onProgress, onPhase, ...rest } = options;
  return uploadOnce(new BaselineUploader(transport, rest), image, { onProgress, onPhase });
}

interface Sinks {
  progress(snapshot: ProgressSnapshot): void;
  phase(event: PhaseEvent): void;
  unexpected(value: ControlValue): void;
}

type Waiter = {
  accept: ReadonlySet<OpcodeName>;
  resolve(name: OpcodeName): void;
};

class UploadRun {
  readonly #t: Transport;
  readonly #image: Uint8Array;
  readonly #clock: Clock;
  readonly #timeouts: BaselineTimeouts;
  readonly #opts: BaselineUploadOptions;
  readonly #link: SessionLink<Step>;
  readonly #phases: PhaseRecorder<BaselinePhase>;
  #sinks: Sinks | undefined;
  #acked = 0;
  #waiter: Waiter | undefined;

  readonly #onNotification: NotificationListener = (data) => {
    const value = decodeControlValue(data);
    const waiter = this.#waiter;
    if (value.kind === 'opcode' && waiter?.accept.has(value.name)) {
      this.#waiter = undefined;
      if (value.name === 'DONE_ACK') this.#link.restartDue();
      waiter.resolve(value.name);
    } else {
      this.#sinks?.unexpected(value);
    }
  };

  constructor(transport: Transport, image: Uint8Array, options: BaselineUploadOptions) {
    this.#t = transport;
    this.#image = image;
    this.#opts = options;
    this.#clock = options.clock ?? systemClock;
    this.#timeouts = { ...DEFAULT_BASELINE_TIMEOUTS, ...options.timeouts };
    this.#link = new SessionLink<Step>({
      transport,
      clock: this.#clock,
      signal: options.signal,
      linkLost: (step, info) => this.#linkLostError(step, info),
      explain: (step, error) => this.#explain(step, error),
    });
    this.#phases = new PhaseRecorder(this.#clock, (event) => this.#sinks?.phase(event));
  }

  async execute(sinks: Sinks): Promise<BaselineUploadResult> {
    this.#sinks = sinks;
    const image = this.#image;
    requireImageBytes(image);
    const total = image.length;
    this.#link.throwIfAborted();
    const writeType = this.#opts.requestWriteType ?? 'request';
    const startedAt = this.#clock.now();
    this.#link.attach();
    let subscribed = false;
    try {
      if (!this.#t.connected) {
        await this.#phases.run('connect', () =>
          this.#link.step(
            {
              phase: 'connect',
              timeoutMs: this.#timeouts.connectMs,
              waitingFor: () => 'waiting for the connection',
              during: () => 'while connecting',
            },
            (signal) => this.#t.connect({ signal }),
          ),
        );
      }
      this.#requireOtaCharacteristics();
      const mtu = this.#t.mtu;
      const packetSize = packetSizeForMtu(mtu, this.#opts.maxPacketSize);
      const packets = packetCount(total, packetSize);

      await this.#phases.run('subscribe', async () => {
        // Set first: a subscription that times out may still have registered the listener,
        // and removing one that was never registered is harmless.
        subscribed = true;
        await this.#link.step(
          {
            phase: 'subscribe',
            timeoutMs: this.#timeouts.subscribeMs,
            waitingFor: () => 'waiting for the device to enable OTA Control notifications',
            during: () => 'while subscribing to OTA Control notifications',
          },
          (signal) => this.#t.subscribe(OTA_CONTROL_UUID, this.#onNotification, { signal }),
        );
      });

      await this.#phases.run('packet-size', () =>
        this.#link.step(
          {
            phase: 'packet-size',
            timeoutMs: this.#timeouts.writeMs,
            waitingFor: () => 'waiting for the Write Response to the packet size',
            during: () => 'while writing the packet size',
          },
          (signal) =>
            this.#t.write(OTA_DATA_UUID, encodePacketSize(packetSize), {
              withResponse: true,
              signal,
            }),
        ),
      );

      await this.#phases.run('request', () => this.#control('REQUEST', writeType));

      const transferStart = this.#clock.now();
      await this.#phases.run('data', () => this.#sendData(packetSize, packets));
      const transferMs = this.#clock.now() - transferStart;

      await this.#phases.run('done', () => this.#control('DONE', writeType));
      const restart = await this.#phases.run('restart', () =>
        this.#link.awaitRestart(
          {
            phase: 'restart',
            timeoutMs: this.#timeouts.restartMs,
            waitingFor: () => 'waiting for the device to restart',
            during: () => 'while waiting for the device to restart',
          },
          this.#opts.waitForRestart !== false,
        ),
      );
      if (restart.observed) subscribed = false;

      const endedAt = this.#clock.now();
      return {
        bytes: total,
        packets,
        packetSize,
        mtu,
        requestWriteType: writeType,
        startedAt,
        endedAt,
        durationMs: endedAt - startedAt,
        transferMs,
        bytesPerSecond: transferMs > 0 ? (total * 1000) / transferMs : Number.POSITIVE_INFINITY,
        phases: this.#phases.timings,
        restart,
      };
    } finally {
      this.#link.detach();
      this.#waiter = undefined;
      if (subscribed) {
        await this.#link.unsubscribeQuietly(
          OTA_CONTROL_UUID,
          this.#onNotification,
          this.#timeouts.subscribeMs,
        );
      }
    }
  }

  #requireOtaCharacteristics(): void {
    const present = new Set(
      this.#t.services().flatMap((s) => s.characteristics.map((c) => normalizeUuid(c.uuid))),
    );
    for (const uuid of [OTA_CONTROL_UUID, OTA_DATA_UUID]) {
      if (!present.has(normalizeUuid(uuid))) throw new UnknownCharacteristicError(uuid);
    }
  }

  #linkLostError(step: Step, info: DisconnectInfo | undefined, cause?: unknown): LinkLostError {
    const why = info === undefined ? '' : `: ${info.message}`;
    return new LinkLostError(`link lost ${step.during()}${why}; ${RETRY_HINT}`, {
      cause,
      ...(info?.reason === undefined ? {} : { reason: info.reason }),
    });
  }

  /** Name the step in errors the transport raised. */
  #explain(step: Step, error: unknown): Error {
    if (error instanceof LinkLostError) return this.#linkLostError(step, this.#link.lost, error);
    // The device's own refusal already says where and why.
    if (error instanceof DeviceRefusedError) return error;
    if (isOtaError(error)) {
      return new OtaError(error.code, `${step.during()}: ${error.message}`, { cause: error });
    }
    return error instanceof Error ? error : new Error(String(error));
  }

  /** The next REQUEST_ACK/NAK or DONE_ACK/NAK; other values are reported as unexpected. */
  #nextOpcode(accept: ReadonlySet<OpcodeName>): Promise<OpcodeName> {
    return new Promise((resolve) => {
      this.#waiter = { accept, resolve };
    });
  }

  async #control(opcode: 'REQUEST' | 'DONE', writeType: 'request' | 'command'): Promise<void> {
    const ack = `${opcode}_ACK` as const;
    const nak = `${opcode}_NAK` as const;
    let writeSettled = writeType === 'command';
    const answer = await this.#link.step(
      {
        phase: opcode === 'REQUEST' ? 'request' : 'done',
        timeoutMs: opcode === 'REQUEST' ? this.#timeouts.requestAckMs : this.#timeouts.doneAckMs,
        waitingFor: () =>
          writeSettled ? `waiting for ${ack}` : `waiting for the Write Response to ${opcode}`,
        during: () => `while waiting for ${ack}`,
      },
      (signal) =>
        new Promise<OpcodeName>((resolve, reject) => {
          let answered: OpcodeName | undefined;
          // Armed before the write: the device notifies from inside its write callback, so the
          // answer can arrive before the Write Response.
          this.#nextOpcode(new Set<OpcodeName>([ack, nak])).then((name) => {
            answered = name;
            // The baseline restarts inside the DONE callback, so DONE's Write Response may
            // never come; the notification alone decides. REQUEST's response must come first
            // because the data writes need the ATT bearer free.
            if (opcode === 'DONE' || name === nak || writeSettled) resolve(name);
          });
          this.#t
            .write(OTA_CONTROL_UUID, encodeOpcode(opcode), {
              withResponse: writeType === 'request',
              signal,
            })
            .then(
              () => {
                writeSettled = true;
                if (answered !== undefined) resolve(answered);
              },
              (error: unknown) => {
                writeSettled = true;
                // After DONE_ACK the link is expected to drop while the write is pending.
                if (answered !== undefined && opcode === 'DONE') resolve(answered);
                else reject(error);
              },
            );
        }),
    );
    if (answer === nak) {
      if (opcode === 'REQUEST') {
        throw new DeviceRefusedError(
          'REQUEST',
          'device refused the OTA request (REQUEST_NAK): esp_ota_begin failed on the device; check its console log (no free OTA partition, or one is busy) and try again',
        );
      }
      throw new DeviceRefusedError(
        'DONE',
        `device rejected the image at DONE (DONE_NAK): esp_ota_end or esp_ota_set_boot_partition failed after all ${this.#image.length} bytes were acknowledged, so the image itself is likely invalid (corrupt, truncated, or built for another chip); check it with \`ble-ota info <image>\` and the device's console log`,
      );
    }
  }

  /** An ATT error on image data that says why the device gave up becomes a refusal that does. */
  #explainDataError(error: unknown, offset: number): unknown {
    if (!(error instanceof AttError)) return error;
    const at = `device refused image data at byte ${offset} of ${this.#image.length}`;
    if (error.status === AttStatus.IMAGE_TOO_LARGE) {
      return new DeviceRefusedError(
        'DATA',
        `${at}: image larger than the update slot; build a smaller image or give the device larger OTA partitions`,
        { cause: error },
      );
    }
    if (error.status === AttStatus.IMAGE_REFUSED) {
      return new DeviceRefusedError(
        'DATA',
        `${at}: the device refused the image; its console says why (an app version older than the running one, a secure_version below its anti-rollback minimum, a missing or untrusted signature, or not an ESP app image). The running image stays in place`,
        { cause: error },
      );
    }
    return error;
  }

  async #sendData(packetSize: number, packets: number): Promise<void> {
    const total = this.#image.length;
    const tracker = sessionProgressTracker(total, this.#clock, this.#opts.rateSmoothingMs);
    this.#sinks?.progress(tracker.snapshot());
    for (let index = 0; index < packets; index++) {
      const offset = index * packetSize;
      const packet = this.#image.subarray(offset, Math.min(offset + packetSize, total));
      await this.#link.step(
        {
          phase: 'data',
          timeoutMs: this.#timeouts.writeMs,
          waitingFor: () =>
            `waiting for the Write Response to data packet ${index + 1} of ${packets} (bytes ${offset} to ${offset + packet.length - 1})`,
          during: () => `during data transfer at byte ${this.#acked} of ${total}`,
        },
        (signal) =>
          this.#t
            .write(OTA_DATA_UUID, packet, { withResponse: true, signal })
            .catch((error: unknown) => {
              throw this.#explainDataError(error, offset);
            }),
      );
      this.#acked = offset + packet.length;
      this.#sinks?.progress(tracker.update(this.#acked));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Device Information, for pre-flight checks

/**
 * Read the Device Information values the device offers. Characteristics the device does not
 * have are left undefined (the baseline has no firmware revision), so a caller can tell "old
 * firmware" from "read failed", which rejects.
 */
export async function readDeviceInformation(
  transport: Transport,
  options: OperationOptions = {},
): Promise<DeviceInformation> {
  const dis = transport
    .services()
    .find((s) => normalizeUuid(s.uuid) === normalizeUuid(DEVICE_INFORMATION_SERVICE_UUID));
  const offered = new Set(dis?.characteristics.map((c) => normalizeUuid(c.uuid)) ?? []);
  const decoder = new TextDecoder();
  const info: DeviceInformation = {};
  const fields: [keyof DeviceInformation, string][] = [
    ['manufacturer', MANUFACTURER_NAME_UUID],
    ['model', MODEL_NUMBER_UUID],
    ['firmwareRevision', FIRMWARE_REVISION_UUID],
  ];
  // One at a time: a transport allows a single outstanding ATT request.
  for (const [field, uuid] of fields) {
    if (!offered.has(normalizeUuid(uuid))) continue;
    const value = await transport.read(uuid, options);
    info[field] = decoder.decode(value).replace(/\0+$/, '');
  }
  return info;
}
