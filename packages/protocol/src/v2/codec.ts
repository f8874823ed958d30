/**
 * Protocol v2 wire format (docs/protocol-v2.md): UUIDs, status codes with the messages users
 * see, and codecs for every value on v2 Control and v2 Data. All integers are little-endian.
 *
 * Decoders throw only {@link ProtocolError}: whatever a device sends, a client sees a package
 * error it can report, never a RangeError from a DataView.
 */

import CRC32 from 'crc-32';
import { BadArgumentError, ProtocolError } from '../errors.ts';

export const V2_CONTROL_UUID = '44d90618-0f1a-4804-b9c7-a5ae29118ffa';
export const V2_DATA_UUID = 'fe4a130e-1430-449c-bc25-1c299d409db4';

export const V2_PROTO_VERSION = 2;

export const V2Op = {
  BEGIN: 0x10,
  END: 0x11,
  ABORT: 0x12,
  MANIFEST: 0x13,
  BEGIN_RSP: 0x90,
  WINDOW_ACK: 0x91,
  END_RSP: 0x93,
  ABORT_RSP: 0x94,
} as const;

export const V2Status = {
  OK: 0,
  ALREADY_INSTALLED: 1,
  TOO_LARGE: 2,
  WRONG_CHIP: 3,
  BAD_REQUEST: 4,
  FLASH_ERROR: 5,
  HASH_MISMATCH: 6,
  INVALID_IMAGE: 7,
  BUSY: 8,
  NO_SESSION: 9,
  INFLATE_ERROR: 10,
  SIZE_MISMATCH: 11,
  UNSIGNED: 12,
  BAD_SIGNATURE: 13,
  UNTRUSTED_KEY: 14,
  DOWNGRADE: 15,
  VERSION_DOWNGRADE: 16,
  MANIFEST_MISMATCH: 17,
  INSTALLED_RESTARTING: 18,
  BASE_MISMATCH: 19,
  BAD_PATCH: 20,
} as const;

export type V2StatusName = keyof typeof V2Status;

const STATUS_NAMES = new Map<number, V2StatusName>(
  (Object.entries(V2Status) as [V2StatusName, number][]).map(([name, value]) => [value, name]),
);

/** The spec's meaning of each status, phrased for the person running the update. */
const STATUS_TEXT: Record<V2StatusName, string> = {
  OK: 'success',
  ALREADY_INSTALLED: 'the device already runs this image; nothing to send',
  TOO_LARGE: 'image is larger than the update slot',
  WRONG_CHIP: 'image is for another chip',
  BAD_REQUEST: 'malformed command, or a command out of order',
  FLASH_ERROR: 'erasing or writing flash failed',
  HASH_MISMATCH: 'the SHA-256 of what was written differs from the image sent',
  INVALID_IMAGE: 'the ESP image check failed (esp_ota_end)',
  BUSY: 'another connection holds the update session, or the device waits after refused updates',
  NO_SESSION: 'no update session is open (data or end without an accepted begin)',
  INFLATE_ERROR: 'the compressed stream is corrupt',
  SIZE_MISMATCH: 'the bytes received differ from the announced size',
  UNSIGNED: 'the image is not signed and the device takes signed updates only',
  BAD_SIGNATURE: "the image's signature does not hold (changed after signing, or forged)",
  UNTRUSTED_KEY: 'the image is signed by a key the device does not trust',
  DOWNGRADE: "the image's secure_version is below the device's minimum (anti-rollback)",
  VERSION_DOWNGRADE: "the image's app version is older than the running one",
  MANIFEST_MISMATCH: 'the image is not the one its signature manifest describes',
  INSTALLED_RESTARTING: 'this image is installed and the device is restarting into it',
  BASE_MISMATCH: 'the device does not run the image the patch was made against',
  BAD_PATCH:
    'the patch is malformed (reads outside the running image, writes past the image, or does not end)',
};

/** What the user can do about each refusal. */
const STATUS_HINT: Partial<Record<V2StatusName, string>> = {
  TOO_LARGE: 'shrink the app or use a partition table with larger OTA slots',
  WRONG_CHIP:
    "build the firmware for the device's target (idf.py set-target) or pick the right device",
  BAD_REQUEST: 'upgrade the client or the firmware so that both speak the same protocol',
  FLASH_ERROR: "check the device's console log; the flash may be worn or the partition table wrong",
  HASH_MISMATCH: 'upload again; if it repeats, the link or the device corrupts data',
  INVALID_IMAGE: 'check the image with `ble-ota info <image>`; it may be corrupt or unsigned',
  BUSY: 'disconnect the other central or wait for its update to finish; after refused updates the device takes a BEGIN again within 64 s (its console says when)',
  NO_SESSION: 'the device may have restarted meanwhile; upload again',
  INFLATE_ERROR: 'upload again without compression',
  SIZE_MISMATCH: 'upload again; the device lost part of the stream',
  UNSIGNED:
    'sign it with `ble-ota sign --key <key.pem> <image>` (or espsecure.py sign_data --version 2)',
  BAD_SIGNATURE: 'sign the image again and upload the signed file unchanged',
  UNTRUSTED_KEY:
    "sign with a key whose digest the device trusts (CONFIG_BLE_OTA_TRUSTED_KEY_DIGESTS; `ble-ota info` shows the image's key digests)",
  DOWNGRADE:
    'build the image with a secure_version at least the running one (CONFIG_BOOTLOADER_APP_SECURE_VERSION)',
  VERSION_DOWNGRADE:
    'build a newer version, or pass --allow-downgrade to a device built with CONFIG_BLE_OTA_ALLOW_DOWNGRADE',
  MANIFEST_MISMATCH: 'upload the signed file unchanged; its manifest is taken from it',
  BASE_MISMATCH: 'send the full image (the client does so by itself unless told otherwise)',
  BAD_PATCH: 'upload the full image without --base; report the base and image if it repeats',
};

export function v2StatusName(status: number): string {
  return STATUS_NAMES.get(status) ?? `0x${status.toString(16).padStart(2, '0')}`;
}

/**
 * The message a user sees for a status, e.g.
 * `device refused the update: image is for another chip (WRONG_CHIP)`.
 */
export function v2StatusMessage(status: number): string {
  const name = STATUS_NAMES.get(status);
  if (name === undefined) {
    return `device refused the update with unknown status ${v2StatusName(status)}; upgrade the client`;
  }
  if (name === 'OK') return 'device accepted the request (OK)';
  if (name === 'ALREADY_INSTALLED') return `device already runs this image (ALREADY_INSTALLED)`;
  return `device refused the update: ${STATUS_TEXT[name]} (${name})`;
}

/** What to do about a status, or undefined when there is nothing to say. */
export function v2StatusHint(status: number): string | undefined {
  const name = STATUS_NAMES.get(status);
  return name === undefined ? undefined : STATUS_HINT[name];
}

// ---------------------------------------------------------------------------------------------
// CRC-32 (zlib / esp_rom_crc32_le)

/** IEEE CRC-32 as zlib computes it; pass the previous value to continue over more data. */
export function crc32(data: Uint8Array, previous = 0): number {
  // crc-32 takes and returns the CRC as a signed 32-bit number.
  return CRC32.buf(data, previous | 0) >>> 0;
}

// ---------------------------------------------------------------------------------------------
// INFO

export const INFO_LENGTH = 123;
/** INFO of firmware before `pre_erased` (offset 119, issue 21). */
export const INFO_LENGTH_BEFORE_PRE_ERASE = 119;
/** INFO of firmware before the security byte (a client still takes it). */
export const INFO_LENGTH_BEFORE_SECURITY = 114;
/** The fields a client cannot work without (up to `window`); the rest may be cut off. */
export const INFO_MIN_LENGTH = 14;

export const InfoFlag = { DEFLATE: 1, RESUME: 2, MANIFEST: 4, PRE_ERASE: 8, DELTA: 16 } as const;

/** INFO's security byte (offset 114): what the firmware enforces. */
export const SecurityFlag = { SIGNED_ONLY: 1, ANTI_ROLLBACK: 2, ALLOW_DOWNGRADE: 4 } as const;
export const LINK_SECURITY_LEVELS = ['open', 'encrypted', 'authenticated'] as const;
export type LinkSecurity = (typeof LINK_SECURITY_LEVELS)[number];

/** What the device says it enforces on updates (INFO bytes 114-118). */
export interface V2Security {
  /** BEGIN needs the image's signature manifest, by a key the device trusts. */
  signedOnly: boolean;
  antiRollback: boolean;
  /** The lowest secure_version it takes (with anti-rollback). */
  minSecureVersion: number;
  /** It takes an older app version when BEGIN asks for it. */
  allowDowngrade: boolean;
  /** The link its OTA writes need (CONFIG_BLE_OTA_LINK_SECURITY). */
  linkSecurity: LinkSecurity;
}

export interface V2Info {
  protoVersion: number;
  /** Raw flags byte; see `deflate`, `resume` and `manifest`. */
  flags: number;
  deflate: boolean;
  resume: boolean;
  /** The device takes the signature manifest (MANIFEST) before BEGIN. */
  manifest: boolean;
  /** The device erases its update slot in the background when idle (CONFIG_BLE_OTA_PRE_ERASE). */
  preErase: boolean;
  /** The device takes a patch against its running image (BEGIN flag DELTA). */
  delta: boolean;
  chipId: number;
  slotSize: number;
  maxFrame: number;
  window: number;
  /**
   * The fields below are undefined when the read was cut short: a transport without long
   * reads returns at most MTU - 1 bytes, 22 at the default MTU.
   */
  runningSha256: Uint8Array | undefined;
  runningVersion: string | undefined;
  sessionOffset: number | undefined;
  /** undefined when cut short, and when the device holds no session (all zeros). */
  sessionSha256: Uint8Array | undefined;
  /** What the device enforces; undefined for firmware before it said so, or a cut-short read. */
  security: V2Security | undefined;
  /** Bytes from the update slot's start that are erased already (an update skips their erase);
   *  undefined for firmware before it said so, or a cut-short read. */
  preErased: number | undefined;
  /** true when all bytes arrived (114 from firmware before the security byte, else 119). */
  complete: boolean;
}

export interface V2InfoInput {
  protoVersion?: number;
  deflate: boolean;
  resume: boolean;
  chipId: number;
  slotSize: number;
  maxFrame: number;
  window: number;
  runningSha256: Uint8Array;
  runningVersion: string;
  sessionOffset: number;
  sessionSha256?: Uint8Array | undefined;
  manifest?: boolean;
  /** Absent: INFO as firmware before the security byte sent it (114 bytes). */
  security?: V2Security | undefined;
  preErase?: boolean;
  delta?: boolean;
  /** Absent: INFO as firmware before `pre_erased` sent it (119 bytes, or 114 without security). */
  preErased?: number | undefined;
}

export function encodeInfo(info: V2InfoInput): Uint8Array {
  const out = new Uint8Array(
    info.security === undefined
      ? INFO_LENGTH_BEFORE_SECURITY
      : info.preErased === undefined
        ? INFO_LENGTH_BEFORE_PRE_ERASE
        : INFO_LENGTH,
  );
  const view = viewOf(out);
  out[0] = u8(info.protoVersion ?? V2_PROTO_VERSION, 'proto_version');
  out[1] =
    (info.deflate ? InfoFlag.DEFLATE : 0) |
    (info.resume ? InfoFlag.RESUME : 0) |
    (info.manifest ? InfoFlag.MANIFEST : 0) |
    (info.preErase ? InfoFlag.PRE_ERASE : 0) |
    (info.delta ? InfoFlag.DELTA : 0);
  view.setUint16(2, u16(info.chipId, 'chip_id'), true);
  view.setUint32(4, u32(info.slotSize, 'slot_size'), true);
  view.setUint16(8, u16(info.maxFrame, 'max_frame'), true);
  view.setUint32(10, u32(info.window, 'window'), true);
  out.set(sha(info.runningSha256, 'running_sha256'), 14);
  const version = new TextEncoder().encode(info.runningVersion);
  if (version.length > 32) {
    throw new BadArgumentError(
      `running_version is at most 32 bytes of UTF-8, got ${version.length}`,
    );
  }
  out.set(version, 46);
  view.setUint32(78, u32(info.sessionOffset, 'session_offset'), true);
  if (info.sessionSha256 !== undefined) out.set(sha(info.sessionSha256, 'session_sha256'), 82);
  const sec = info.security;
  if (sec !== undefined) {
    out[114] =
      (sec.signedOnly ? SecurityFlag.SIGNED_ONLY : 0) |
      (sec.antiRollback ? SecurityFlag.ANTI_ROLLBACK : 0) |
      (sec.allowDowngrade ? SecurityFlag.ALLOW_DOWNGRADE : 0) |
      (LINK_SECURITY_LEVELS.indexOf(sec.linkSecurity) << 4);
    view.setUint32(115, u32(sec.minSecureVersion, 'min_secure_version'), true);
    if (info.preErased !== undefined) {
      view.setUint32(119, u32(info.preErased, 'pre_erased'), true);
    }
  }
  return out;
}

export function decodeInfo(data: Uint8Array): V2Info {
  if (data.length < INFO_MIN_LENGTH) {
    throw new ProtocolError(
      `v2 INFO is ${INFO_LENGTH} bytes (at least ${INFO_MIN_LENGTH} needed), got ${data.length}; is the device running v2 firmware?`,
    );
  }
  const view = viewOf(data);
  const flags = data[1] as number;
  const has = (end: number) => data.length >= end;
  const sessionSha = has(114) ? data.slice(82, 114) : undefined;
  const secByte = data[114] ?? 0;
  const security: V2Security | undefined = has(INFO_LENGTH_BEFORE_PRE_ERASE)
    ? {
        signedOnly: (secByte & SecurityFlag.SIGNED_ONLY) !== 0,
        antiRollback: (secByte & SecurityFlag.ANTI_ROLLBACK) !== 0,
        minSecureVersion: view.getUint32(115, true),
        allowDowngrade: (secByte & SecurityFlag.ALLOW_DOWNGRADE) !== 0,
        linkSecurity: LINK_SECURITY_LEVELS[(secByte >> 4) & 3] ?? 'authenticated',
      }
    : undefined;
  return {
    protoVersion: data[0] as number,
    flags,
    deflate: (flags & InfoFlag.DEFLATE) !== 0,
    resume: (flags & InfoFlag.RESUME) !== 0,
    manifest: (flags & InfoFlag.MANIFEST) !== 0,
    preErase: (flags & InfoFlag.PRE_ERASE) !== 0,
    delta: (flags & InfoFlag.DELTA) !== 0,
    security,
    preErased: has(INFO_LENGTH) ? view.getUint32(119, true) : undefined,
    chipId: view.getUint16(2, true),
    slotSize: view.getUint32(4, true),
    maxFrame: view.getUint16(8, true),
    window: view.getUint32(10, true),
    runningSha256: has(46) ? data.slice(14, 46) : undefined,
    runningVersion: has(78) ? decodeCString(data.subarray(46, 78)) : undefined,
    sessionOffset: has(82) ? view.getUint32(78, true) : undefined,
    sessionSha256: sessionSha?.some((b) => b !== 0) ? sessionSha : undefined,
    complete: has(
      security === undefined ? INFO_LENGTH_BEFORE_SECURITY : INFO_LENGTH_BEFORE_PRE_ERASE,
    ),
  };
}

// ---------------------------------------------------------------------------------------------
// BEGIN / BEGIN_RSP

export const BEGIN_LENGTH = 44;
/** BEGIN with the DELTA flag: the base's SHA-256 follows. */
export const BEGIN_DELTA_LENGTH = 76;
export const BeginFlag = {
  DEFLATE: 1,
  RESTART: 2,
  MANIFEST: 4,
  ALLOW_DOWNGRADE: 8,
  DELTA: 16,
} as const;

export interface V2Begin {
  /** The stream on v2 Data is zlib-format deflate of the image. */
  deflate: boolean;
  /** Discard any session the device holds and start from 0. */
  restart: boolean;
  /** This connection sent the image's signature manifest (MANIFEST) just before. */
  manifest?: boolean;
  /** Install an older app version, if the device allows it. */
  allowDowngrade?: boolean;
  chipId: number;
  imageSize: number;
  imageSha256: Uint8Array;
  streamSize: number;
  /** The stream is a patch against the image with this SHA-256, which the device must run. */
  baseSha256?: Uint8Array;
}

export function encodeBegin(begin: V2Begin): Uint8Array {
  const out = new Uint8Array(begin.baseSha256 === undefined ? BEGIN_LENGTH : BEGIN_DELTA_LENGTH);
  const view = viewOf(out);
  out[0] = V2Op.BEGIN;
  out[1] =
    (begin.deflate ? BeginFlag.DEFLATE : 0) |
    (begin.restart ? BeginFlag.RESTART : 0) |
    (begin.manifest ? BeginFlag.MANIFEST : 0) |
    (begin.allowDowngrade ? BeginFlag.ALLOW_DOWNGRADE : 0) |
    (begin.baseSha256 !== undefined ? BeginFlag.DELTA : 0);
  view.setUint16(2, u16(begin.chipId, 'chip_id'), true);
  view.setUint32(4, u32(begin.imageSize, 'image_size'), true);
  out.set(sha(begin.imageSha256, 'image_sha256'), 8);
  view.setUint32(40, u32(begin.streamSize, 'stream_size'), true);
  if (begin.baseSha256 !== undefined) out.set(sha(begin.baseSha256, 'base_sha256'), BEGIN_LENGTH);
  return out;
}

/** Device side of BEGIN (the fake device and tests). */
export function decodeBegin(data: Uint8Array): V2Begin & { flags: number } {
  const delta = ((data[1] ?? 0) & BeginFlag.DELTA) !== 0;
  expectOp(data, V2Op.BEGIN, delta ? BEGIN_DELTA_LENGTH : BEGIN_LENGTH, 'BEGIN');
  const view = viewOf(data);
  const flags = data[1] as number;
  return {
    ...(delta ? { baseSha256: data.slice(BEGIN_LENGTH, BEGIN_DELTA_LENGTH) } : {}),
    flags,
    deflate: (flags & BeginFlag.DEFLATE) !== 0,
    restart: (flags & BeginFlag.RESTART) !== 0,
    manifest: (flags & BeginFlag.MANIFEST) !== 0,
    allowDowngrade: (flags & BeginFlag.ALLOW_DOWNGRADE) !== 0,
    chipId: view.getUint16(2, true),
    imageSize: view.getUint32(4, true),
    imageSha256: data.slice(8, 40),
    streamSize: view.getUint32(40, true),
  };
}

export const BEGIN_RSP_LENGTH = 16;

export interface V2BeginRsp {
  status: number;
  offset: number;
  crc32: number;
  window: number;
  maxFrame: number;
}

export function encodeBeginRsp(rsp: V2BeginRsp): Uint8Array {
  const out = new Uint8Array(BEGIN_RSP_LENGTH);
  const view = viewOf(out);
  out[0] = V2Op.BEGIN_RSP;
  out[1] = u8(rsp.status, 'status');
  view.setUint32(2, u32(rsp.offset, 'offset'), true);
  view.setUint32(6, u32(rsp.crc32, 'crc32'), true);
  view.setUint32(10, u32(rsp.window, 'window'), true);
  view.setUint16(14, u16(rsp.maxFrame, 'max_frame'), true);
  return out;
}

export function decodeBeginRsp(data: Uint8Array): V2BeginRsp {
  expectOp(data, V2Op.BEGIN_RSP, BEGIN_RSP_LENGTH, 'BEGIN_RSP');
  const view = viewOf(data);
  return {
    status: data[1] as number,
    offset: view.getUint32(2, true),
    crc32: view.getUint32(6, true),
    window: view.getUint32(10, true),
    maxFrame: view.getUint16(14, true),
  };
}

// ---------------------------------------------------------------------------------------------
// DATA

export const DATA_HEADER_LENGTH = 4;

export interface V2Data {
  offset: number;
  payload: Uint8Array;
}

export function encodeData(offset: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(DATA_HEADER_LENGTH + payload.length);
  viewOf(out).setUint32(0, u32(offset, 'offset'), true);
  out.set(payload, DATA_HEADER_LENGTH);
  return out;
}

/** Device side of DATA; the payload is a view into `data`. */
export function decodeData(data: Uint8Array): V2Data {
  if (data.length < DATA_HEADER_LENGTH) {
    throw new ProtocolError(
      `a v2 DATA frame starts with a 4-byte offset, got ${data.length} byte(s)`,
    );
  }
  return {
    offset: viewOf(data).getUint32(0, true),
    payload: data.subarray(DATA_HEADER_LENGTH),
  };
}

// ---------------------------------------------------------------------------------------------
// WINDOW_ACK

export const WINDOW_ACK_LENGTH = 10;

export interface V2WindowAck {
  status: number;
  /** Committed stream offset; after a gap (BAD_REQUEST) the offset to resend from. */
  committed: number;
  /** CRC-32 of stream bytes [0, committed). */
  crc32: number;
}

export function encodeWindowAck(ack: V2WindowAck): Uint8Array {
  const out = new Uint8Array(WINDOW_ACK_LENGTH);
  const view = viewOf(out);
  out[0] = V2Op.WINDOW_ACK;
  out[1] = u8(ack.status, 'status');
  view.setUint32(2, u32(ack.committed, 'committed'), true);
  view.setUint32(6, u32(ack.crc32, 'crc32'), true);
  return out;
}

export function decodeWindowAck(data: Uint8Array): V2WindowAck {
  expectOp(data, V2Op.WINDOW_ACK, WINDOW_ACK_LENGTH, 'WINDOW_ACK');
  const view = viewOf(data);
  return {
    status: data[1] as number,
    committed: view.getUint32(2, true),
    crc32: view.getUint32(6, true),
  };
}

// ---------------------------------------------------------------------------------------------
// END, ABORT and their answers

export function encodeEnd(): Uint8Array {
  return Uint8Array.of(V2Op.END);
}

export function encodeAbort(): Uint8Array {
  return Uint8Array.of(V2Op.ABORT);
}

export function encodeEndRsp(status: number): Uint8Array {
  return Uint8Array.of(V2Op.END_RSP, u8(status, 'status'));
}

export function encodeAbortRsp(status: number): Uint8Array {
  return Uint8Array.of(V2Op.ABORT_RSP, u8(status, 'status'));
}

export function decodeEndRsp(data: Uint8Array): { status: number } {
  expectOp(data, V2Op.END_RSP, 2, 'END_RSP');
  return { status: data[1] as number };
}

export function decodeAbortRsp(data: Uint8Array): { status: number } {
  expectOp(data, V2Op.ABORT_RSP, 2, 'ABORT_RSP');
  return { status: data[1] as number };
}

// ---------------------------------------------------------------------------------------------
// MANIFEST: the image's signature blocks with what it claims, checked at BEGIN before any erase

export const MANIFEST_VERSION = 1;
export const MANIFEST_HEADER_LENGTH = 40;
export const SIGNATURE_BLOCK_LENGTH = 1216;

export interface V2Manifest {
  secureVersion: number;
  /**
   * esp_app_desc_t.version, at most 32 bytes: a string (sent as UTF-8), or the bytes an image
   * holds, which the device compares as they are (strncmp), valid UTF-8 or not.
   */
  version: string | Uint8Array;
  /** The image's Secure Boot v2 signature blocks (1 to 3), as they open its signature sector. */
  blocks: Uint8Array[];
}

export function encodeManifest(manifest: V2Manifest): Uint8Array {
  const n = manifest.blocks.length;
  if (n < 1 || n > 3) {
    throw new BadArgumentError(`a manifest carries 1 to 3 signature blocks, got ${n}`);
  }
  const out = new Uint8Array(MANIFEST_HEADER_LENGTH + n * SIGNATURE_BLOCK_LENGTH);
  const view = viewOf(out);
  out[0] = MANIFEST_VERSION;
  out[1] = n;
  view.setUint32(4, u32(manifest.secureVersion, 'secure_version'), true);
  const version =
    typeof manifest.version === 'string'
      ? new TextEncoder().encode(manifest.version)
      : manifest.version;
  if (version.length > 32) {
    throw new BadArgumentError(`version is at most 32 bytes, got ${version.length}`);
  }
  out.set(version, 8);
  manifest.blocks.forEach((block, i) => {
    if (block.length !== SIGNATURE_BLOCK_LENGTH) {
      throw new BadArgumentError(
        `signature block ${i + 1} is ${SIGNATURE_BLOCK_LENGTH} bytes, got ${block.length}`,
      );
    }
    out.set(block, MANIFEST_HEADER_LENGTH + i * SIGNATURE_BLOCK_LENGTH);
  });
  return out;
}

/**
 * The MANIFEST commands that carry `manifest` (encoded) in pieces of at most `maxValue` bytes
 * each (a Write Request's value: MTU - 3, at most 512): `u8 0x13, u16 offset, bytes`.
 */
export function manifestPieces(manifest: Uint8Array, maxValue: number): Uint8Array[] {
  const room = Math.min(maxValue, 512) - 3;
  if (room < 1) {
    throw new BadArgumentError(`a MANIFEST piece needs at least 4 bytes of value, got ${maxValue}`);
  }
  const pieces: Uint8Array[] = [];
  for (let offset = 0; offset < manifest.length; offset += room) {
    const part = manifest.subarray(offset, offset + room);
    const piece = new Uint8Array(3 + part.length);
    piece[0] = V2Op.MANIFEST;
    viewOf(piece).setUint16(1, offset, true);
    piece.set(part, 3);
    pieces.push(piece);
  }
  return pieces;
}

// ---------------------------------------------------------------------------------------------
// Everything on v2 Control

/** A command written to v2 Control (device side). */
export type V2Command =
  | ({ op: 'BEGIN' } & V2Begin & { flags: number })
  | { op: 'END' }
  | { op: 'ABORT' }
  | { op: 'MANIFEST'; offset: number; bytes: Uint8Array };

export function decodeCommand(data: Uint8Array): V2Command {
  const op = data[0];
  if (op === V2Op.BEGIN) return { op: 'BEGIN', ...decodeBegin(data) };
  if (op === V2Op.END && data.length === 1) return { op: 'END' };
  if (op === V2Op.ABORT && data.length === 1) return { op: 'ABORT' };
  if (op === V2Op.MANIFEST && data.length >= 4) {
    return { op: 'MANIFEST', offset: viewOf(data).getUint16(1, true), bytes: data.slice(3) };
  }
  throw new ProtocolError(
    `not a v2 command: ${data.length} byte(s) starting with ${op === undefined ? 'nothing' : hexByte(op)}`,
  );
}

/** A notification on v2 Control (client side). */
export type V2Answer =
  | ({ op: 'BEGIN_RSP' } & V2BeginRsp)
  | ({ op: 'WINDOW_ACK' } & V2WindowAck)
  | { op: 'END_RSP'; status: number }
  | { op: 'ABORT_RSP'; status: number };

export function decodeAnswer(data: Uint8Array): V2Answer {
  switch (data[0]) {
    case V2Op.BEGIN_RSP:
      return { op: 'BEGIN_RSP', ...decodeBeginRsp(data) };
    case V2Op.WINDOW_ACK:
      return { op: 'WINDOW_ACK', ...decodeWindowAck(data) };
    case V2Op.END_RSP:
      return { op: 'END_RSP', ...decodeEndRsp(data) };
    case V2Op.ABORT_RSP:
      return { op: 'ABORT_RSP', ...decodeAbortRsp(data) };
    default:
      throw new ProtocolError(
        `not a v2 answer: ${data.length} byte(s) starting with ${data[0] === undefined ? 'nothing' : hexByte(data[0])}`,
      );
  }
}

// ---------------------------------------------------------------------------------------------

function viewOf(data: Uint8Array): DataView {
  return new DataView(data.buffer, data.byteOffset, data.byteLength);
}

/** Longer values are accepted (a newer device may append fields); shorter ones are not. */
function expectOp(data: Uint8Array, op: number, length: number, name: string): void {
  if (data[0] !== op) {
    throw new ProtocolError(
      `expected ${name} (opcode ${hexByte(op)}), got ${data[0] === undefined ? 'an empty value' : `opcode ${hexByte(data[0])}`}`,
    );
  }
  if (data.length < length) {
    throw new ProtocolError(`${name} is ${length} bytes, got ${data.length}; value cut short`);
  }
}

function hexByte(value: number): string {
  return `0x${value.toString(16).padStart(2, '0')}`;
}

function decodeCString(data: Uint8Array): string {
  const end = data.indexOf(0);
  return new TextDecoder().decode(end < 0 ? data : data.subarray(0, end));
}

function u8(value: number, field: string): number {
  return checkInt(value, 0xff, field);
}

function u16(value: number, field: string): number {
  return checkInt(value, 0xffff, field);
}

function u32(value: number, field: string): number {
  return checkInt(value, 0xffffffff, field);
}

function checkInt(value: number, max: number, field: string): number {
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new BadArgumentError(`${field} must be an integer from 0 to ${max}, got ${value}`);
  }
  return value;
}

function sha(value: Uint8Array, field: string): Uint8Array {
  if (!(value instanceof Uint8Array) || value.length !== 32) {
    throw new BadArgumentError(`${field} is a 32-byte SHA-256, got ${value?.length} byte(s)`);
  }
  return value;
}
