/**
 * Air-time arithmetic of the LE link layer (LINK-MODEL.md "Air time"; Bluetooth Core Vol 6
 * Part B 2.1, as summarised by Silicon Labs and Zephyr `ll_sw/pdu.h`).
 */
import type { Phy } from './types.ts';

/** Inter-frame space between two packets of one exchange. */
export const T_IFS_US = 150;

/** Link-layer payload without Data Length Extension; 251 is the most DLE allows. */
export const DATA_LENGTH_DEFAULT = 27;
export const DATA_LENGTH_MAX = 251;

/** L2CAP basic header (length + channel id) in front of every ATT PDU. */
export const L2CAP_HEADER_BYTES = 4;
/** ATT Write Request / Write Command / Notification header (opcode + handle). */
export const ATT_WRITE_HEADER_BYTES = 3;

/** Connection intervals are multiples of 1.25 ms between 7.5 ms and 4 s. */
export const CONN_INTERVAL_STEP_MS = 1.25;
export const CONN_INTERVAL_MIN_MS = 7.5;
export const CONN_INTERVAL_MAX_MS = 4000;

/** Bytes around the payload: preamble + access address + header + CRC (1M: 1 preamble byte). */
function overheadBytes(phy: Phy): number {
  return phy === '1M' ? 1 + 4 + 2 + 3 : 2 + 4 + 2 + 3;
}

function usPerByte(phy: Phy): number {
  return phy === '1M' ? 8 : 4;
}

/**
 * Time on air of one data-channel PDU carrying `payloadBytes`. The 4-byte MIC is only present
 * on encrypted links and never on an empty PDU.
 */
export function pduAirUs(payloadBytes: number, phy: Phy, encrypted = false): number {
  if (!Number.isInteger(payloadBytes) || payloadBytes < 0 || payloadBytes > DATA_LENGTH_MAX) {
    throw new RangeError(
      `link-layer payload must be an integer from 0 to ${DATA_LENGTH_MAX} bytes, got ${payloadBytes}`,
    );
  }
  const mic = encrypted && payloadBytes > 0 ? 4 : 0;
  return (overheadBytes(phy) + payloadBytes + mic) * usPerByte(phy);
}

/**
 * One exchange: a PDU of `payloadBytes` from one side, T_IFS, the peer's reply of
 * `replyBytes` (an empty PDU by default), T_IFS.
 */
export function exchangeUs(
  payloadBytes: number,
  phy: Phy,
  encrypted = false,
  replyBytes = 0,
): number {
  return (
    pduAirUs(payloadBytes, phy, encrypted) +
    T_IFS_US +
    pduAirUs(replyBytes, phy, encrypted) +
    T_IFS_US
  );
}

/** Number of link-layer fragments of an ATT PDU of `attPduBytes`: ceil((M + 4) / L). */
export function attFragmentCount(attPduBytes: number, dataLength: number): number {
  return Math.ceil((attPduBytes + L2CAP_HEADER_BYTES) / dataLength);
}

/** Payload sizes of the link-layer fragments that carry one ATT PDU of `attPduBytes`. */
export function attFragments(attPduBytes: number, dataLength: number): number[] {
  if (
    !Number.isInteger(dataLength) ||
    dataLength < DATA_LENGTH_DEFAULT ||
    dataLength > DATA_LENGTH_MAX
  ) {
    throw new RangeError(
      `data length must be an integer from ${DATA_LENGTH_DEFAULT} to ${DATA_LENGTH_MAX}, got ${dataLength}`,
    );
  }
  let remaining = attPduBytes + L2CAP_HEADER_BYTES;
  const out: number[] = [];
  while (remaining > 0) {
    const n = Math.min(remaining, dataLength);
    out.push(n);
    remaining -= n;
  }
  return out;
}

/** Attribute value bytes a Write Request/Command or notification carries at ATT MTU `mtu`. */
export function attValueBytes(mtu: number): number {
  return mtu - ATT_WRITE_HEADER_BYTES;
}

/** Rejects connection intervals that no controller can grant, with the nearest valid ones. */
export function assertConnInterval(ms: number): void {
  const steps = ms / CONN_INTERVAL_STEP_MS;
  if (
    ms < CONN_INTERVAL_MIN_MS ||
    ms > CONN_INTERVAL_MAX_MS ||
    Math.abs(steps - Math.round(steps)) > 1e-9
  ) {
    const lo = Math.max(CONN_INTERVAL_MIN_MS, Math.floor(steps) * CONN_INTERVAL_STEP_MS);
    throw new RangeError(
      `connection interval ${ms} ms is not a multiple of 1.25 ms between 7.5 ms and 4 s; use e.g. ${lo} or ${lo + CONN_INTERVAL_STEP_MS}`,
    );
  }
}

/** Rejects a link-layer PDU that the link's data length cannot carry (the AirScheduler.send rule). */
export function assertPduFits(payloadBytes: number, dataLength: number): void {
  if (!Number.isInteger(payloadBytes) || payloadBytes < 0 || payloadBytes > dataLength) {
    throw new RangeError(
      `PDU of ${payloadBytes} bytes does not fit the link's data length ${dataLength}; fragment it first`,
    );
  }
}
