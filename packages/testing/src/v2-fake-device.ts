/**
 * A fake device that speaks protocol v2 (docs/protocol-v2.md) on a {@link FakeTransport}, with
 * knobs for the faults a v2 client must survive. Optionally it also carries the baseline
 * characteristics, served by an inner {@link FakeBaselineDevice}, as our firmware does.
 *
 * Like the firmware, it keeps the upload session across disconnects (not across a restart),
 * receives frames in the BLE callback and commits them from a separate "writer" turn, and
 * acknowledges from the writer.
 */

import type { GattService } from '@esp-ble-ota/protocol';
import {
  AttStatus,
  applyPatch,
  BASELINE_DEVICE_NAME,
  BASELINE_GATT,
  BadArgumentError,
  crc32,
  DATA_HEADER_LENGTH,
  DEVICE_INFORMATION_SERVICE_UUID,
  decodeCommand,
  decodeData,
  encodeAbortRsp,
  encodeBeginRsp,
  encodeEndRsp,
  encodeInfo,
  encodeWindowAck,
  FIRMWARE_REVISION_UUID,
  MANUFACTURER_NAME_UUID,
  MODEL_NUMBER_UUID,
  normalizeUuid,
  Opcode,
  OTA_CONTROL_UUID,
  OTA_DATA_UUID,
  ProtocolError,
  parseAppImage,
  V2_CONTROL_UUID,
  V2_DATA_UUID,
  type V2Begin,
  V2Op,
  type V2Security,
  V2Status,
} from '@esp-ble-ota/protocol';
import { sha256 } from '@noble/hashes/sha2.js';
import { Inflate, inflate, Z_OK, Z_SYNC_FLUSH } from 'pako';
import {
  FakeBaselineDevice,
  type FakePeripheral,
  type FakePeripheralLink,
  type FakeWriteOutcome,
  HciReason,
} from './fake-transport.ts';

/** ATT "Value Not Allowed" (Core spec Vol 3 Part F 3.4.1.1), not in the package's AttStatus. */
const ATT_VALUE_NOT_ALLOWED = 0x13;

export interface FakeV2Faults {
  /**
   * Drop a DATA frame as a device out of buffers would: called for every frame that arrives
   * (stream offset, payload length, how many frames at this offset arrived before); true drops it.
   */
  dropFrame?: (offset: number, length: number, seenBefore: number) => boolean;
  /**
   * The link drops (supervision timeout) when a frame arrives that would bring the stream bytes
   * the device has accepted to this many or more; that frame is lost. Fires once, then clears.
   */
  dropLinkAtStreamByte?: number;
  /** Answer BEGIN or END with this status instead of checking anything. */
  refuse?: { step: 'BEGIN' | 'END'; status: number };
  /** Report this status in the WINDOW_ACK the writer sends when it reaches this offset. */
  failWriteAt?: { offset: number; status: number };
  /** Never send a WINDOW_ACK (gap acks included). */
  neverAck?: boolean;
  /** Never answer END. */
  noEndAnswer?: boolean;
  /** After END_RSP OK, do not restart. */
  noRestart?: boolean;
  /**
   * Answer a BEGIN with the delta flag BASE_MISMATCH: the device runs another image than its
   * INFO said a moment ago (another central updated it in between).
   */
  baseMismatch?: boolean;
}

export interface FakeV2DeviceOptions {
  address?: string;
  name?: string;
  /** ESP-IDF's NimBLE accepts up to 517 in the MTU exchange when configured so. */
  preferredMtu?: number;
  /** esp_image_header_t chip id: ESP32 0, S3 9, C3 5. */
  chipId?: number;
  /** DIS Model Number. */
  model?: string;
  slotSize?: number;
  /** Largest DATA value accepted; INFO and BEGIN_RSP report min(this, MTU - 3). */
  maxFrame?: number;
  /**
   * The link-layer payload the device receives (27 to 251, Data Length Extension): given, the
   * DATA frame is sized as the firmware sizes it (ble_ota_v2.c prv_max_frame), to fill whole
   * link-layer packets (495 bytes at MTU 517 and 251, 244 at MTU 256) rather than MTU - 3.
   */
  linkDataLength?: number;
  window?: number;
  /**
   * Acknowledge when the committed offset crosses a multiple of this (default: `window`, as the
   * spec says). Smaller values model a device that acknowledges more often.
   */
  ackEvery?: number;
  deflate?: boolean;
  resume?: boolean;
  /** Takes a patch against its running image (INFO flag bit 4; docs/protocol-v2.md). */
  delta?: boolean;
  /** The image the device runs now (its SHA-256 is INFO's running_sha256). */
  runningImage?: Uint8Array;
  runningVersion?: string;
  /** Also serve the baseline OTA characteristics (our firmware does). */
  baseline?: boolean;
  /**
   * Time the writer takes per accepted frame, through setTimeout (fake timers apply);
   * 0 commits in a microtask.
   */
  writerDelayMs?: number;
  restartDelayMs?: number;
  /** esp_ota_end's verdict on the written image; default: first byte is the 0xE9 magic. */
  validateImage?: (image: Uint8Array) => boolean;
  faults?: FakeV2Faults;
  /**
   * What the firmware enforces, as INFO says it: with it the device takes MANIFEST pieces, and
   * with `signedOnly` refuses a BEGIN without a manifest (UNSIGNED). The fake checks no
   * signature: the firmware's own checks are tested against the device program.
   */
  security?: V2Security;
}

interface Session {
  begin: V2Begin;
  /** The stream as received, [0, expected). */
  stream: Uint8Array;
  /** Next stream byte the device accepts. */
  expected: number;
  /** Stream bytes handed to the writer, [committed, expected) still queued. */
  committed: number;
  /** CRC of [0, committed) and of [0, expected). */
  committedCrc: number;
  expectedCrc: number;
  /** A gap was reported and no frame accepted since (the spec's "once per gap"). */
  gapReported: boolean;
  failed: number | undefined;
  /** The first image byte was seen and is the ESP image magic. */
  magicChecked: boolean;
}

function appVersionOf(image: Uint8Array): string | undefined {
  try {
    return parseAppImage(image).version;
  } catch {
    return undefined;
  }
}

const equal = (a: Uint8Array, b: Uint8Array) =>
  a.length === b.length && a.every((v, i) => v === b[i]);

export const V2_GATT_CHARACTERISTICS = [
  { uuid: V2_CONTROL_UUID, properties: ['read', 'write', 'notify'] },
  { uuid: V2_DATA_UUID, properties: ['writeWithoutResponse', 'write'] },
] as const;

export class FakeV2Device implements FakePeripheral {
  readonly address: string;
  readonly name: string;
  readonly preferredMtu: number;
  readonly gatt: readonly GattService[];
  faults: FakeV2Faults;
  readonly log: string[] = [];
  /** Each manifest BEGIN took (reassembled from its MANIFEST pieces), in order. */
  readonly manifests: Uint8Array[] = [];
  /** Flags of each BEGIN. */
  readonly beginFlags: number[] = [];
  readonly security: V2Security | undefined;
  #manifest: Uint8Array = new Uint8Array(0);
  readonly chipId: number;
  readonly slotSize: number;
  readonly window: number;

  /** The baseline side, when enabled. */
  readonly baseline: FakeBaselineDevice | undefined;

  // Counters tests read.
  /** DATA payload bytes that arrived over the air, every connection, dropped ones included. */
  dataBytesReceived = 0;
  dataFramesReceived = 0;
  /** DATA frames dropped because their offset was not the expected one. */
  outOfOrderFrames = 0;
  beginCount = 0;
  /** Largest (stream bytes received) - (offset of the last WINDOW_ACK sent) ever seen. */
  maxUnacked = 0;
  /** Frames that arrived while the client already had more than a window unacknowledged. */
  windowViolations = 0;
  /** Every WINDOW_ACK sent, in order. */
  readonly acks: { status: number; committed: number; crc32: number }[] = [];
  bootCount = 0;
  /** What the bootloader boots now (set by a successful END, live after the restart). */
  bootImage: Uint8Array | undefined;
  runningImage: Uint8Array;
  runningVersion: string;
  subscribed = false;

  readonly #maxFrame: number;
  readonly #linkDataLength: number | undefined;
  readonly #ackEvery: number;
  readonly #deflate: boolean;
  readonly #delta: boolean;
  readonly #resume: boolean;
  readonly #writerDelayMs: number;
  readonly #restartDelayMs: number;
  /** END installed an image and the restart into it is scheduled. */
  #restartPending = false;
  readonly #validate: (image: Uint8Array) => boolean;
  readonly #model: string;
  #link: FakePeripheralLink | undefined;
  #session: Session | undefined;
  #lastAckOffset = 0;
  #noSessionReported = false;
  /** Accepted frames and gap reports, in arrival order; the writer works through them. */
  #writerQueue: ({ kind: 'data'; end: number; crc: number } | { kind: 'gap' })[] = [];
  #writerBusy = false;
  readonly #seenOffsets = new Map<number, number>();
  readonly #timers = new Set<ReturnType<typeof setTimeout>>();

  constructor(options: FakeV2DeviceOptions = {}) {
    this.address = options.address ?? 'fa:ke:00:00:02:01';
    this.name = options.name ?? BASELINE_DEVICE_NAME;
    this.preferredMtu = options.preferredMtu ?? 517;
    this.chipId = options.chipId ?? 0;
    this.#model = options.model ?? 'ESP32';
    this.slotSize = options.slotSize ?? 0x180000;
    this.#maxFrame = options.maxFrame ?? 512;
    this.#linkDataLength = options.linkDataLength;
    this.window = options.window ?? 16 * 1024;
    this.#ackEvery = options.ackEvery ?? this.window;
    if (!(this.window > 0 && this.#ackEvery > 0 && this.#ackEvery <= this.window)) {
      throw new BadArgumentError('window and ackEvery must be positive, with ackEvery <= window');
    }
    this.#deflate = options.deflate ?? true;
    this.#delta = options.delta ?? false;
    this.#resume = options.resume ?? true;
    this.#writerDelayMs = options.writerDelayMs ?? 0;
    this.#restartDelayMs = options.restartDelayMs ?? 20;
    this.#validate = options.validateImage ?? ((image) => image[0] === 0xe9);
    this.runningImage = options.runningImage ?? Uint8Array.of(0xe9, 0, 0, 0);
    this.runningVersion = options.runningVersion ?? 'v0.0.1';
    this.faults = { ...options.faults };
    this.security = options.security;
    this.baseline = options.baseline
      ? new FakeBaselineDevice({
          address: this.address,
          name: this.name,
          preferredMtu: this.preferredMtu,
          model: this.#model,
          firmwareRevision: this.runningVersion,
          restartDelayMs: this.#restartDelayMs,
        })
      : undefined;
    const ota = BASELINE_GATT.find((s) => s.uuid !== DEVICE_INFORMATION_SERVICE_UUID);
    this.gatt = [
      {
        uuid: DEVICE_INFORMATION_SERVICE_UUID,
        characteristics: [
          { uuid: MANUFACTURER_NAME_UUID, properties: ['read'] },
          { uuid: MODEL_NUMBER_UUID, properties: ['read'] },
          { uuid: FIRMWARE_REVISION_UUID, properties: ['read'] },
        ],
      },
      {
        uuid: ota?.uuid ?? '',
        characteristics: [
          ...(this.baseline === undefined ? [] : (ota?.characteristics ?? [])),
          ...V2_GATT_CHARACTERISTICS,
        ],
      },
    ];
  }

  /** Stream offset the device would resume from (its committed offset), 0 without a session. */
  get committed(): number {
    return this.#session?.committed ?? 0;
  }

  get hasSession(): boolean {
    return this.#session !== undefined;
  }

  /** Push an arbitrary value on v2 Control, e.g. to test how a client treats noise. */
  sendControlNotification(data: Uint8Array): void {
    this.#notify(data);
  }

  /** Flip a byte the device holds, so that the CRC it reports on resume no longer matches. */
  corruptSession(at = 0): void {
    const s = this.#session;
    if (s === undefined || at >= s.committed) {
      throw new BadArgumentError('corruptSession needs a session holding the byte at `at`');
    }
    s.stream[at] = (s.stream[at] as number) ^ 0xff;
    s.committedCrc = crc32(s.stream.subarray(0, s.committed));
    s.expectedCrc = crc32(s.stream.subarray(0, s.expected));
  }

  // --- FakePeripheral ------------------------------------------------------------------------

  onConnect(link: FakePeripheralLink): void {
    this.#link = link;
    this.#lastAckOffset = this.#session?.expected ?? 0;
    this.baseline?.onConnect(link);
    this.log.push(`connected, MTU ${link.mtu}`);
  }

  onDisconnect(): void {
    this.#link = undefined;
    this.subscribed = false;
    this.baseline?.onDisconnect();
    this.log.push(`disconnected; session ${this.#session ? `held at ${this.committed}` : 'none'}`);
  }

  onSubscribe(characteristic: string, enabled: boolean): void {
    if (characteristic === normalizeUuid(V2_CONTROL_UUID)) this.subscribed = enabled;
    else this.baseline?.onSubscribe(characteristic, enabled);
  }

  onRead(characteristic: string): Uint8Array | number {
    switch (characteristic) {
      case normalizeUuid(V2_CONTROL_UUID):
        return this.#info();
      case normalizeUuid(MANUFACTURER_NAME_UUID):
        return new TextEncoder().encode('Company 42');
      case normalizeUuid(MODEL_NUMBER_UUID):
        return new TextEncoder().encode(this.#model);
      case normalizeUuid(FIRMWARE_REVISION_UUID):
        return new TextEncoder().encode(this.runningVersion);
      default:
        return this.baseline?.onRead(characteristic) ?? AttStatus.READ_NOT_PERMITTED;
    }
  }

  onWrite(characteristic: string, data: Uint8Array, withResponse: boolean): FakeWriteOutcome {
    if (characteristic === normalizeUuid(V2_CONTROL_UUID)) return this.#command(data);
    if (characteristic === normalizeUuid(V2_DATA_UUID)) return this.#data(data);
    if (this.baseline !== undefined) {
      // The spec: a baseline REQUEST drops a v2 session.
      if (characteristic === normalizeUuid(OTA_CONTROL_UUID) && data[0] === Opcode.REQUEST) {
        this.#dropSession('a baseline REQUEST arrived');
      }
      if (
        characteristic === normalizeUuid(OTA_CONTROL_UUID) ||
        characteristic === normalizeUuid(OTA_DATA_UUID)
      ) {
        return this.baseline.onWrite(characteristic, data, withResponse);
      }
    }
    return AttStatus.WRITE_NOT_PERMITTED;
  }

  /** Cancel pending timers (tests that end early). */
  dispose(): void {
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    this.baseline?.dispose();
  }

  // --- v2 ------------------------------------------------------------------------------------

  #frameLimit(): number {
    const mtu = this.#link?.mtu ?? 23;
    const ll = this.#linkDataLength;
    let frame = mtu - 3;
    if (ll !== undefined) {
      // As the firmware: a frame whose L2CAP PDU (ATT + 4) is whole link-layer packets.
      const octets = Math.min(251, Math.max(27, ll));
      const k = Math.floor((mtu + 4) / octets);
      if (k >= 1 && (mtu + 4) % octets !== 0) frame = k * octets - 4 - 3;
    }
    return Math.min(this.#maxFrame, frame);
  }

  #info(): Uint8Array {
    const s = this.#session;
    return encodeInfo({
      deflate: this.#deflate,
      resume: this.#resume,
      delta: this.#delta,
      chipId: this.chipId,
      slotSize: this.slotSize,
      maxFrame: this.#frameLimit(),
      window: this.window,
      runningSha256: sha256(this.runningImage),
      runningVersion: this.runningVersion,
      sessionOffset: s?.committed ?? 0,
      sessionSha256: s?.begin.imageSha256,
      manifest: this.security !== undefined,
      security: this.security,
    });
  }

  #notify(data: Uint8Array): void {
    this.#link?.notify(V2_CONTROL_UUID, data);
  }

  #command(data: Uint8Array): FakeWriteOutcome {
    let command: ReturnType<typeof decodeCommand>;
    try {
      command = decodeCommand(data);
    } catch (error) {
      if (!(error instanceof ProtocolError)) throw error;
      this.log.push(`malformed command: ${error.message}`);
      // As the firmware: a known command of the wrong length gets its answer with
      // BAD_REQUEST, an unknown one an ATT error.
      const op = data[0];
      const answer =
        op === V2Op.BEGIN
          ? this.#beginRsp(V2Status.BAD_REQUEST)
          : op === V2Op.END
            ? encodeEndRsp(V2Status.BAD_REQUEST)
            : op === V2Op.ABORT
              ? encodeAbortRsp(V2Status.BAD_REQUEST)
              : undefined;
      if (answer === undefined) return ATT_VALUE_NOT_ALLOWED;
      queueMicrotask(() => this.#notify(answer));
      return AttStatus.SUCCESS;
    }
    // Answers go out after the Write Response, as NimBLE sends a notification queued in the
    // write callback after the response to that write.
    if (command.op === 'MANIFEST') {
      // Pieces in order from 0; no answer of its own, as the firmware.
      if (this.security === undefined) return ATT_VALUE_NOT_ALLOWED;
      const before = command.offset === 0 ? new Uint8Array(0) : this.#manifest;
      if (command.offset !== before.length) {
        this.log.push(`MANIFEST piece at ${command.offset}, expected ${before.length}`);
        this.#manifest = new Uint8Array(0);
        return AttStatus.SUCCESS;
      }
      this.#manifest = new Uint8Array([...before, ...command.bytes]);
      return AttStatus.SUCCESS;
    }
    if (command.op === 'BEGIN') {
      const answer = this.#begin(command);
      queueMicrotask(() => this.#notify(answer));
    } else if (command.op === 'END') {
      this.#end();
    } else {
      this.#dropSession('ABORT');
      queueMicrotask(() => this.#notify(encodeAbortRsp(V2Status.OK)));
    }
    return AttStatus.SUCCESS;
  }

  #beginRsp(status: number, offset = 0, crc = 0): Uint8Array {
    return encodeBeginRsp({
      status,
      offset,
      crc32: crc,
      window: this.window,
      maxFrame: this.#frameLimit(),
    });
  }

  #begin(begin: V2Begin & { flags: number }): Uint8Array {
    this.beginCount++;
    this.beginFlags.push(begin.flags);
    this.#noSessionReported = false;
    const refuse = this.faults.refuse;
    if (refuse?.step === 'BEGIN') return this.#beginRsp(refuse.status);
    if (begin.chipId !== this.chipId) return this.#beginRsp(V2Status.WRONG_CHIP);
    if (begin.imageSize > this.slotSize) return this.#beginRsp(V2Status.TOO_LARGE);
    if (this.#restartPending) {
      // As the firmware: the next slot is the one just written until the restart.
      return this.#beginRsp(
        this.bootImage !== undefined && equal(begin.imageSha256, sha256(this.bootImage))
          ? V2Status.INSTALLED_RESTARTING
          : V2Status.BUSY,
      );
    }
    if (equal(begin.imageSha256, sha256(this.runningImage))) {
      return this.#beginRsp(V2Status.ALREADY_INSTALLED);
    }
    const known = (this.security === undefined ? 3 : 15) | (this.#delta ? 16 : 0);
    if ((begin.flags & ~known) !== 0 || (begin.deflate && !this.#deflate)) {
      return this.#beginRsp(V2Status.BAD_REQUEST);
    }
    const delta = begin.baseSha256 !== undefined;
    if (
      begin.baseSha256 !== undefined &&
      (this.faults.baseMismatch || !equal(begin.baseSha256, sha256(this.runningImage)))
    ) {
      return this.#beginRsp(V2Status.BASE_MISMATCH);
    }
    if (begin.manifest) {
      if (this.#manifest.length === 0) return this.#beginRsp(V2Status.BAD_REQUEST);
      this.manifests.push(this.#manifest);
    } else if (this.security?.signedOnly) {
      return this.#beginRsp(V2Status.UNSIGNED);
    }
    if (
      begin.imageSize === 0 ||
      begin.streamSize === 0 ||
      (!begin.deflate && !delta && begin.streamSize !== begin.imageSize)
    ) {
      return this.#beginRsp(V2Status.BAD_REQUEST);
    }
    // The spec: a v2 BEGIN drops a baseline transfer in progress.
    if (this.baseline !== undefined) this.baseline.updating = false;
    const held = this.#session;
    if (
      held !== undefined &&
      this.#resume &&
      !begin.restart &&
      held.failed === undefined &&
      equal(held.begin.imageSha256, begin.imageSha256) &&
      held.begin.imageSize === begin.imageSize &&
      held.begin.deflate === begin.deflate &&
      (held.begin.baseSha256 !== undefined) === delta &&
      held.begin.streamSize === begin.streamSize
    ) {
      // Resume from what reached flash; anything still queued is dropped, as a real writer
      // finishes its queue but the client resends it anyway.
      this.#writerQueue = [];
      held.expected = held.committed;
      held.expectedCrc = held.committedCrc;
      held.gapReported = false;
      this.#lastAckOffset = held.committed;
      this.log.push(`resuming session at ${held.committed}`);
      return this.#beginRsp(V2Status.OK, held.committed, held.committedCrc);
    }
    this.#writerQueue = [];
    this.#session = {
      begin,
      stream: new Uint8Array(begin.streamSize),
      expected: 0,
      committed: 0,
      committedCrc: 0,
      expectedCrc: 0,
      gapReported: false,
      failed: undefined,
      magicChecked: false,
    };
    this.#lastAckOffset = 0;
    this.#seenOffsets.clear();
    this.log.push(`new session: ${begin.imageSize} bytes, stream ${begin.streamSize}`);
    return this.#beginRsp(V2Status.OK);
  }

  #data(data: Uint8Array): number {
    this.dataFramesReceived++;
    // The firmware refuses a frame without payload at the ATT layer.
    if (data.length <= DATA_HEADER_LENGTH) return AttStatus.INVALID_ATTRIBUTE_VALUE_LENGTH;
    const { offset, payload } = decodeData(data);
    this.dataBytesReceived += payload.length;
    const seen = this.#seenOffsets.get(offset) ?? 0;
    this.#seenOffsets.set(offset, seen + 1);
    if (this.faults.dropFrame?.(offset, payload.length, seen)) {
      this.log.push(`frame at ${offset} dropped (fault injected)`);
      return AttStatus.SUCCESS;
    }
    const s = this.#session;
    if (s === undefined || s.failed !== undefined) {
      // Once until the next BEGIN, as the firmware does.
      if (!this.#noSessionReported) {
        this.#noSessionReported = true;
        this.#ack(V2Status.NO_SESSION, 0, 0);
      }
      return AttStatus.SUCCESS;
    }
    const drop = this.faults.dropLinkAtStreamByte;
    if (drop !== undefined && offset === s.expected && offset + payload.length >= drop) {
      this.faults.dropLinkAtStreamByte = undefined;
      this.log.push(`link dropped at stream byte ${offset} (fault injected)`);
      this.#link?.disconnect(HciReason.CONNECTION_TIMEOUT);
      return AttStatus.SUCCESS;
    }
    // Measured against what the device last acknowledged: the client can only be further
    // behind than that, so exceeding the window here proves the client did.
    const unacked = offset + payload.length - this.#lastAckOffset;
    if (offset === s.expected) {
      this.maxUnacked = Math.max(this.maxUnacked, unacked);
      if (unacked > this.window) this.windowViolations++;
    }
    // A frame past the end of the stream is treated like a gap, as the firmware does.
    if (offset !== s.expected || payload.length > s.begin.streamSize - s.expected) {
      this.outOfOrderFrames++;
      if (!s.gapReported) {
        s.gapReported = true;
        this.log.push(`gap: frame at ${offset}, expected ${s.expected}`);
        // Through the writer, like the firmware: by the time it reports, everything received
        // before the gap is committed, so the report never lags behind an earlier ack.
        this.#writerQueue.push({ kind: 'gap' });
        this.#kickWriter();
      }
      return AttStatus.SUCCESS;
    }
    s.gapReported = false;
    s.stream.set(payload, offset);
    s.expected += payload.length;
    s.expectedCrc = crc32(payload, s.expectedCrc);
    this.#writerQueue.push({ kind: 'data', end: s.expected, crc: s.expectedCrc });
    this.#kickWriter();
    return AttStatus.SUCCESS;
  }

  #kickWriter(): void {
    if (this.#writerBusy) return;
    this.#writerBusy = true;
    const run = () => {
      this.#writerBusy = false;
      const s = this.#session;
      const item = this.#writerQueue.shift();
      if (s === undefined || item === undefined || s.failed !== undefined) return;
      if (item.kind === 'gap') {
        this.#ack(V2Status.BAD_REQUEST, s.committed, s.committedCrc);
        if (this.#writerQueue.length > 0) this.#kickWriter();
        return;
      }
      const before = s.committed;
      s.committed = item.end;
      s.committedCrc = item.crc;
      const fail = this.faults.failWriteAt;
      if (fail !== undefined && before < fail.offset && item.end >= fail.offset) {
        s.failed = fail.status;
        this.#ack(fail.status, before, crc32(s.stream.subarray(0, before)));
        return;
      }
      const early = this.#earlyCheck(s, item.end);
      if (early !== undefined) {
        s.failed = early;
        this.log.push(`stream refused while writing: status ${early}`);
        this.#ack(early, before, crc32(s.stream.subarray(0, before)));
        return;
      }
      const crossed =
        Math.floor(item.end / this.#ackEvery) > Math.floor(before / this.#ackEvery) ||
        item.end === s.begin.streamSize;
      if (crossed) this.#ack(V2Status.OK, item.end, item.crc);
      if (this.#writerQueue.length > 0) this.#kickWriter();
    };
    if (this.#writerDelayMs > 0) this.#later(run, this.#writerDelayMs);
    else queueMicrotask(run);
  }

  /**
   * What esp_ota_write checks on its first bytes: the ESP image magic. Like the firmware, a
   * stream that fails it is refused at once rather than at END. Compressed streams are
   * inflated as far as they go to find the first image byte.
   */
  #earlyCheck(s: Session, end: number): number | undefined {
    if (s.magicChecked) return undefined;
    // A patch's first image byte comes out of the applier: END checks the rebuilt image.
    if (s.begin.baseSha256 !== undefined) return undefined;
    let first: number | undefined;
    if (!s.begin.deflate) first = s.stream[0];
    else {
      const inflater = new Inflate();
      inflater.push(s.stream.subarray(0, end), Z_SYNC_FLUSH);
      if (inflater.err !== Z_OK) return V2Status.INFLATE_ERROR;
      first = inflater.chunks.find((chunk) => chunk.length > 0)?.[0];
    }
    if (first === undefined) return undefined;
    s.magicChecked = true;
    return first === 0xe9 ? undefined : V2Status.INVALID_IMAGE;
  }

  #ack(status: number, committed: number, crc: number): void {
    if (this.faults.neverAck) return;
    this.#lastAckOffset = committed;
    this.acks.push({ status, committed, crc32: crc });
    this.#notify(encodeWindowAck({ status, committed, crc32: crc }));
  }

  #end(): void {
    const status = this.#finish();
    if (this.faults.noEndAnswer) return;
    queueMicrotask(() => {
      this.#notify(encodeEndRsp(status));
      if (status !== V2Status.OK || this.faults.noRestart) return;
      const image = this.bootImage;
      this.#restartPending = true;
      this.#later(() => {
        this.#restartPending = false;
        this.bootCount++;
        if (image !== undefined) {
          this.runningImage = image;
          // The Firmware Revision the new image reports, as the firmware's DIS does.
          this.runningVersion = appVersionOf(image) ?? this.runningVersion;
        }
        this.#session = undefined;
        this.log.push('restarted');
        // A restart drops whatever link is up then, not only the one END came on.
        this.#link?.disconnect(HciReason.CONNECTION_TIMEOUT);
      }, this.#restartDelayMs);
    });
  }

  #finish(): number {
    const refuse = this.faults.refuse;
    const s = this.#session;
    if (refuse?.step === 'END') {
      this.#dropSession(`END refused with ${refuse.status} (fault injected)`);
      return refuse.status;
    }
    if (s === undefined) return V2Status.NO_SESSION;
    this.#session = undefined;
    if (s.failed !== undefined) return s.failed;
    if (s.committed !== s.begin.streamSize) return V2Status.SIZE_MISMATCH;
    let image = s.stream;
    if (s.begin.deflate) {
      try {
        image = inflate(s.stream);
      } catch {
        return V2Status.INFLATE_ERROR;
      }
    }
    if (s.begin.baseSha256 !== undefined) {
      try {
        image = applyPatch(this.runningImage, image, s.begin.imageSize);
      } catch {
        return V2Status.BAD_PATCH;
      }
    }
    if (image.length !== s.begin.imageSize) return V2Status.SIZE_MISMATCH;
    if (!equal(sha256(image), s.begin.imageSha256)) return V2Status.HASH_MISMATCH;
    if (!this.#validate(image)) return V2Status.INVALID_IMAGE;
    this.bootImage = image;
    return V2Status.OK;
  }

  #dropSession(why: string): void {
    if (this.#session === undefined) return;
    this.log.push(`session dropped: ${why}`);
    this.#session = undefined;
    this.#writerQueue = [];
  }

  #later(run: () => void, ms: number): void {
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      run();
    }, ms);
    this.#timers.add(timer);
  }
}
