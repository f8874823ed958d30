import { EventEmitter } from 'node:events';
import type { Direction } from '../link/types.ts';

/**
 * Faults the virtual rig injects on a peripheral's link. Every fault has a name that appears in
 * the fault log and in results. Unless `repeat` is set, a fault fires once in the peripheral's
 * lifetime, so that a client's retry after it can succeed.
 */
export type Fault =
  | {
      /**
       * Drop the link (supervision timeout, reason 0x08 on both sides) once the ATT bytes carried
       * in `direction` since the fault was armed would exceed `bytes`; the PDU that crosses the
       * limit is lost. Bytes are whole ATT PDUs (opcode, handle, value).
       */
      kind: 'drop-link-after-bytes';
      name: string;
      bytes: number;
      direction?: Direction | 'both';
      repeat?: boolean;
    }
  | {
      /** Drop the link at the first link-layer delivery at or after `atUs` of modeled time (the connection's scheduler clock). */
      kind: 'drop-link-at-time';
      name: string;
      atUs: number;
      repeat?: boolean;
    }
  | { kind: 'drop-att-pdu'; name: string; match: AttPduMatch; repeat?: boolean }
  | {
      /** XOR one byte of the matched ATT PDU (by default the last byte, with 0xff). */
      kind: 'corrupt-att-pdu';
      name: string;
      match: AttPduMatch;
      offset?: number;
      xor?: number;
      repeat?: boolean;
    }
  | {
      /** Answer every Exchange MTU Request with 23, as a peripheral that keeps the default MTU. */
      kind: 'refuse-larger-mtu';
      name: string;
      repeat?: boolean;
    };

export type FaultKind = Fault['kind'];

export interface AttPduMatch {
  direction: Direction;
  /** ATT opcode, e.g. 0x12 Write Request, 0x52 Write Command, 0x1b notification. */
  opcode?: number;
  /** Only PDUs whose attribute handle is this characteristic's value handle. */
  chrId?: number;
  /** Fire on the nth matching PDU (1-based, counted over the peripheral's lifetime). Default 1. */
  nth?: number;
}

export interface FaultRecord {
  name: string;
  kind: FaultKind;
  /** Peripheral-side connection handle. */
  conn: number;
  /** Modeled time of the connection's scheduler when the fault fired. */
  atUs: number;
  detail: string;
}

interface FaultState {
  fault: Fault;
  fired: boolean;
  matches: number;
  bytes: Record<Direction, number>;
}

export type AttPduVerdict =
  | { action: 'pass'; pdu: Buffer }
  | { action: 'drop' }
  | { action: 'drop-link' };

/** The faults armed on one peripheral, and the log of those that fired. */
export class FaultSet extends EventEmitter<{ fault: [FaultRecord] }> {
  private readonly states: FaultState[] = [];
  readonly log: FaultRecord[] = [];

  constructor(faults: Fault[] = []) {
    super();
    for (const f of faults) this.add(f);
  }

  add(fault: Fault): void {
    if (!fault.name)
      throw new Error(`a ${fault.kind} fault needs a name, so that results can report it`);
    this.states.push({ fault, fired: false, matches: 0, bytes: { c2p: 0, p2c: 0 } });
  }

  /** Whether an MTU exchange must be answered with 23. */
  refuseLargerMtu(conn: number, nowUs: number): boolean {
    for (const s of this.armed('refuse-larger-mtu')) {
      this.fire(s, conn, nowUs, 'answered the Exchange MTU Request with 23');
      return true;
    }
    return false;
  }

  /** Whether the link must drop now because modeled time reached a `drop-link-at-time` fault. */
  timeReached(conn: number, nowUs: number): boolean {
    for (const s of this.armed('drop-link-at-time')) {
      if (s.fault.kind === 'drop-link-at-time' && nowUs >= s.fault.atUs) {
        this.fire(s, conn, nowUs, `link dropped at ${nowUs} us (armed for ${s.fault.atUs} us)`);
        return true;
      }
    }
    return false;
  }

  /**
   * Applies byte limits and PDU faults to one ATT PDU travelling in `direction`.
   * `valueHandleOf` maps a characteristic id to its value handle for `match.chrId`.
   */
  onAttPdu(
    direction: Direction,
    pdu: Buffer,
    conn: number,
    nowUs: number,
    valueHandleOf: (chrId: number) => number | undefined,
  ): AttPduVerdict {
    for (const s of this.armed('drop-link-after-bytes')) {
      const f = s.fault;
      if (f.kind !== 'drop-link-after-bytes') continue;
      s.bytes[direction] += pdu.length;
      const dir = f.direction ?? 'c2p';
      const total = dir === 'both' ? s.bytes.c2p + s.bytes.p2c : s.bytes[dir];
      if ((dir === 'both' || dir === direction) && total > f.bytes) {
        this.fire(
          s,
          conn,
          nowUs,
          `link dropped after ${total - pdu.length} ATT bytes ${dir} (limit ${f.bytes})`,
        );
        return { action: 'drop-link' };
      }
    }
    let out = pdu;
    for (const s of this.states) {
      const f = s.fault;
      if (f.kind !== 'drop-att-pdu' && f.kind !== 'corrupt-att-pdu') continue;
      if ((s.fired && !f.repeat) || !matches(f.match, direction, out, valueHandleOf)) continue;
      s.matches += 1;
      if (s.matches !== (f.match.nth ?? 1) && !(f.repeat && s.matches > (f.match.nth ?? 1)))
        continue;
      const desc = `opcode 0x${(out[0] ?? 0).toString(16).padStart(2, '0')} ${direction}, match #${s.matches}`;
      if (f.kind === 'drop-att-pdu') {
        this.fire(s, conn, nowUs, `dropped ATT PDU (${desc})`);
        return { action: 'drop' };
      }
      const offset = f.offset ?? out.length - 1;
      if (offset < 0 || offset >= out.length) continue;
      out = Buffer.from(out);
      out[offset] = (out[offset] ?? 0) ^ (f.xor ?? 0xff);
      this.fire(s, conn, nowUs, `corrupted byte ${offset} of ATT PDU (${desc})`);
    }
    return { action: 'pass', pdu: out };
  }

  private *armed(kind: FaultKind): Generator<FaultState> {
    for (const s of this.states) if (s.fault.kind === kind && (!s.fired || s.fault.repeat)) yield s;
  }

  private fire(s: FaultState, conn: number, atUs: number, detail: string): void {
    s.fired = true;
    const record: FaultRecord = { name: s.fault.name, kind: s.fault.kind, conn, atUs, detail };
    this.log.push(record);
    this.emit('fault', record);
  }
}

function matches(
  m: AttPduMatch,
  direction: Direction,
  pdu: Buffer,
  valueHandleOf: (chrId: number) => number | undefined,
): boolean {
  if (m.direction !== direction) return false;
  if (m.opcode !== undefined && pdu[0] !== m.opcode) return false;
  if (m.chrId !== undefined) {
    if (pdu.length < 3) return false;
    if (pdu.readUInt16LE(1) !== valueHandleOf(m.chrId)) return false;
  }
  return true;
}
