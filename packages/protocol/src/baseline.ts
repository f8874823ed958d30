/**
 * The baseline ("v1") BLE OTA protocol: GATT layout, opcodes and value codecs, exactly as
 * /work/shared/SEED-PROTOCOL.md describes the system we must stay wire-compatible with.
 */

import { BadArgumentError } from './errors.ts';
import type { GattService } from './transport.ts';

// ---------------------------------------------------------------------------------------------
// UUIDs

/**
 * The OTA service UUID as registered and advertised by the baseline firmware. Its byte 0x14
 * comes from an octal literal `024` in the C initializer.
 */
export const BASELINE_SERVICE_UUID = 'd6f1d96d-594c-4c53-b1c6-144a1dfde6d8';

/**
 * The service UUID the baseline's source comment claims. No device ever advertised it; kept so
 * that tools can explain the mismatch to someone who copied it from the comment.
 */
export const BASELINE_SERVICE_UUID_AS_DOCUMENTED_WRONG = 'd6f1d96d-594c-4c53-b1c6-244a1dfde6d8';

export const OTA_CONTROL_UUID = '7ad671aa-21c0-46a4-b722-270e3ae3d830';
export const OTA_DATA_UUID = '23408888-1f40-4cd8-9b89-ca8d45f8a5b0';

export const DEVICE_INFORMATION_SERVICE_UUID = '180a';
export const MANUFACTURER_NAME_UUID = '2a29';
export const MODEL_NUMBER_UUID = '2a24';
/** Not in the baseline; our firmware adds it so that pre-flight checks can see the running version. */
export const FIRMWARE_REVISION_UUID = '2a26';

/** Complete local name the baseline advertises; its client connects to the first match. */
export const BASELINE_DEVICE_NAME = 'esp32';

/** GATT layout of the baseline firmware (its DIS has no firmware revision). */
export const BASELINE_GATT: readonly GattService[] = [
  {
    uuid: DEVICE_INFORMATION_SERVICE_UUID,
    characteristics: [
      { uuid: MANUFACTURER_NAME_UUID, properties: ['read'] },
      { uuid: MODEL_NUMBER_UUID, properties: ['read'] },
    ],
  },
  {
    uuid: BASELINE_SERVICE_UUID,
    characteristics: [
      { uuid: OTA_CONTROL_UUID, properties: ['read', 'write', 'notify'] },
      { uuid: OTA_DATA_UUID, properties: ['write'] },
    ],
  },
];

// Bluetooth Base UUID: 0000xxxx-0000-1000-8000-00805f9b34fb (Core spec Vol 3 Part B 2.5.1).
const BASE_UUID_SUFFIX = '00001000800000805f9b34fb';
const HEX_RE = /^[0-9a-f]+$/;

/**
 * Normalise any common spelling of a UUID to noble's form: lowercase hex without dashes, 4 hex
 * digits for a 16-bit UUID, 8 for a 32-bit one, 32 for the rest. A 128-bit UUID built on the
 * Bluetooth Base UUID shrinks to its short form, so '0000180A-0000-1000-8000-00805F9B34FB',
 * '0x180A' and '180a' all give '180a'.
 */
export function normalizeUuid(uuid: string): string {
  let hex = uuid.trim().toLowerCase();
  if (hex.startsWith('0x')) hex = hex.slice(2);
  if (hex.length === 36) {
    if (hex[8] !== '-' || hex[13] !== '-' || hex[18] !== '-' || hex[23] !== '-') {
      throw badUuid(uuid);
    }
    hex = hex.replaceAll('-', '');
  }
  if (!HEX_RE.test(hex) || (hex.length !== 4 && hex.length !== 8 && hex.length !== 32)) {
    throw badUuid(uuid);
  }
  if (hex.length === 32 && hex.endsWith(BASE_UUID_SUFFIX)) hex = hex.slice(0, 8);
  // A 32-bit UUID whose top half is zero is the same UUID as the 16-bit one.
  return hex.length === 8 && hex.startsWith('0000') ? hex.slice(4) : hex;
}

function badUuid(uuid: string): BadArgumentError {
  return new BadArgumentError(
    `not a Bluetooth UUID: ${JSON.stringify(uuid)}; expected 4, 8 or 32 hex digits, or the dashed 8-4-4-4-12 form`,
  );
}

/** The UUID in the dashed 128-bit form (short UUIDs expanded on the Base UUID). */
export function expandUuid(uuid: string): string {
  const n = normalizeUuid(uuid);
  const hex = n.length === 32 ? n : `${n.padStart(8, '0')}${BASE_UUID_SUFFIX}`;
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * The form the firmware's `--gatt-json` uses and logs show: dashed lowercase for 128-bit UUIDs,
 * bare hex digits for 16- and 32-bit ones.
 */
export function formatUuid(uuid: string): string {
  const n = normalizeUuid(uuid);
  return n.length === 32 ? expandUuid(n) : n;
}

export function uuidEquals(a: string, b: string): boolean {
  return normalizeUuid(a) === normalizeUuid(b);
}

/** UUID bytes in ATT order (little-endian), as NimBLE stores them and as they go on air. */
export function uuidToBytesLE(uuid: string): Uint8Array {
  const n = normalizeUuid(uuid);
  const out = new Uint8Array(n.length / 2);
  for (let i = 0; i < out.length; i++) {
    out[out.length - 1 - i] = Number.parseInt(n.slice(2 * i, 2 * i + 2), 16);
  }
  return out;
}

/** Inverse of {@link uuidToBytesLE}; accepts 2, 4 or 16 bytes. */
export function uuidFromBytesLE(bytes: Uint8Array): string {
  if (bytes.length !== 2 && bytes.length !== 4 && bytes.length !== 16) {
    throw new BadArgumentError(
      `a UUID is 2, 4 or 16 bytes long, got ${bytes.length}; check the ATT PDU's format field`,
    );
  }
  let hex = '';
  for (let i = bytes.length - 1; i >= 0; i--) hex += (bytes[i] ?? 0).toString(16).padStart(2, '0');
  return normalizeUuid(hex);
}

// ---------------------------------------------------------------------------------------------
// Opcodes on OTA Control

export const Opcode = {
  NOP: 0x00,
  REQUEST: 0x01,
  REQUEST_ACK: 0x02,
  REQUEST_NAK: 0x03,
  DONE: 0x04,
  DONE_ACK: 0x05,
  DONE_NAK: 0x06,
} as const;

export type OpcodeName = keyof typeof Opcode;
export type OpcodeValue = (typeof Opcode)[OpcodeName];

const OPCODE_NAMES = new Map<number, OpcodeName>(
  (Object.entries(Opcode) as [OpcodeName, OpcodeValue][]).map(([name, value]) => [value, name]),
);

export function opcodeName(value: number): OpcodeName | undefined {
  return OPCODE_NAMES.get(value);
}

/** The one-byte value written to OTA Control. */
export function encodeOpcode(opcode: OpcodeValue | OpcodeName): Uint8Array {
  const value = typeof opcode === 'string' ? Opcode[opcode] : opcode;
  if (OPCODE_NAMES.get(value) === undefined) {
    throw new BadArgumentError(`0x${Number(value).toString(16)} is not a baseline opcode`);
  }
  return Uint8Array.of(value);
}

/** A value seen on OTA Control (notification or read), decoded without ever throwing. */
export type ControlValue =
  | { kind: 'opcode'; opcode: OpcodeValue; name: OpcodeName }
  | { kind: 'unknown'; raw: Uint8Array; reason: string };

/**
 * Decode a notification (or read) of OTA Control. The baseline device always sends exactly one
 * byte; anything else is reported as 'unknown' with the reason, because a v2 device may send
 * longer values on the same characteristic and a baseline session must ignore them, not crash.
 */
export function decodeControlValue(data: Uint8Array): ControlValue {
  if (data.length !== 1) {
    return {
      kind: 'unknown',
      raw: data.slice(),
      reason: `expected a 1-byte opcode, got ${data.length} bytes`,
    };
  }
  const value = data[0] as number;
  const name = OPCODE_NAMES.get(value);
  if (name === undefined) {
    return {
      kind: 'unknown',
      raw: data.slice(),
      reason: `0x${value.toString(16).padStart(2, '0')} is not a baseline opcode`,
    };
  }
  return { kind: 'opcode', opcode: value as OpcodeValue, name };
}

// ---------------------------------------------------------------------------------------------
// Packet size on OTA Data

/** Largest attribute value GATT allows (Core spec Vol 3 Part F 3.2.9); also the baseline's buffer. */
export const MAX_ATTRIBUTE_VALUE_LENGTH = 512;

/** The smallest ATT_MTU (LE). */
export const ATT_MTU_MIN = 23;

/** ATT header of a Write Request/Command or notification: opcode + handle. */
export const ATT_WRITE_HEADER = 3;

/** The packet size written before REQUEST: u16 little-endian. */
export function encodePacketSize(size: number): Uint8Array {
  if (!Number.isInteger(size) || size < 1 || size > 0xffff) {
    throw new BadArgumentError(`packet size must be an integer from 1 to 65535, got ${size}`);
  }
  return Uint8Array.of(size & 0xff, size >> 8);
}

/**
 * Read the packet size the way the baseline device does: from the first two bytes of the last
 * value written to OTA Data, little-endian.
 */
export function decodePacketSize(data: Uint8Array): number {
  if (data.length < 2) {
    throw new BadArgumentError(
      `a packet size is 2 bytes (u16 little-endian), got ${data.length} byte(s)`,
    );
  }
  return (data[0] as number) | ((data[1] as number) << 8);
}

/**
 * The baseline's packet size for a negotiated ATT_MTU: MTU - 3, and never above the 512-byte
 * attribute limit (the baseline device rejects longer writes with ATT error 0x0D).
 */
export function packetSizeForMtu(mtu: number, cap = MAX_ATTRIBUTE_VALUE_LENGTH): number {
  if (!Number.isInteger(mtu) || mtu < ATT_MTU_MIN || mtu > 0xffff) {
    throw new BadArgumentError(`ATT_MTU must be an integer from 23 to 65535, got ${mtu}`);
  }
  if (!Number.isInteger(cap) || cap < 1) {
    throw new BadArgumentError(`packet size cap must be a positive integer, got ${cap}`);
  }
  return Math.min(mtu - ATT_WRITE_HEADER, MAX_ATTRIBUTE_VALUE_LENGTH, cap);
}

/** Split an image into the packets the baseline sends: full packets, then one shorter tail. */
export function* splitPackets(image: Uint8Array, packetSize: number): Generator<Uint8Array> {
  if (!Number.isInteger(packetSize) || packetSize < 1) {
    throw new BadArgumentError(`packet size must be a positive integer, got ${packetSize}`);
  }
  for (let offset = 0; offset < image.length; offset += packetSize) {
    yield image.subarray(offset, Math.min(offset + packetSize, image.length));
  }
}

export function packetCount(imageLength: number, packetSize: number): number {
  return Math.ceil(imageLength / packetSize);
}
