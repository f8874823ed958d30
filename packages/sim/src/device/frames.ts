/**
 * The frames on the simulated device's stdin/stdout (firmware/host/README.md is the
 * authority). Each frame is `u8 type, u16 length (LE), payload`; integers are little-endian.
 */
import { CPU_WORK_KINDS, type CpuWorkKind } from '../link/device-cpu.ts';

export const HostFrame = {
  CONNECT: 0x01,
  DISCONNECT: 0x02,
  MTU: 0x03,
  WRITE: 0x04,
  READ: 0x05,
  SUBSCRIBE: 0x06,
  LINK_UPDATE: 0x07,
  CLOCK: 0x08,
  IDLE: 0x09,
} as const;

export const DeviceFrame = {
  HELLO: 0x80,
  NOTIFY: 0x82,
  CONSOLE: 0x83,
  WRITE_RSP: 0x84,
  READ_RSP: 0x85,
  RESET: 0x87,
  FLASH_OP: 0x88,
  LINK_REQUEST: 0x89,
  FRAME_DONE: 0x8a,
  CPU_WORK: 0x8b,
  TERMINATE: 0x8c,
} as const;

export type FlashOpKind = 'erase' | 'write' | 'read';

/** Bits of LINK_REQUEST's PHY fields (and the HCI LE Set PHY ones). */
export const PHY_1M = 0x01;
export const PHY_2M = 0x02;

/**
 * What the firmware asks of the link (protocol-v2.md "Link tuning"), in the frame's own units:
 * intervals in 1.25 ms, the supervision timeout in 10 ms, PHYs as bit sets.
 */
export type LinkTuningRequest =
  | {
      kind: 'connParams';
      conn: number;
      minInterval: number;
      maxInterval: number;
      latency: number;
      timeout: number;
    }
  | { kind: 'dataLength'; conn: number; txOctets: number; txTimeUs: number }
  | { kind: 'phy'; conn: number; txPhys: number; rxPhys: number };

/** What the link uses now, as LINK_UPDATE tells the device. */
export interface LinkTuningUpdate {
  conn: number;
  /** Connection interval in 1.25 ms units. */
  interval: number;
  dataLength: number;
  phy: 1 | 2;
}

export type DeviceEvent =
  | { type: 'hello'; advertising: boolean; name: string }
  | { type: 'notify'; conn: number; chrId: number; data: Uint8Array }
  | { type: 'console'; data: Uint8Array }
  | { type: 'writeRsp'; conn: number; chrId: number; status: number }
  | { type: 'readRsp'; conn: number; chrId: number; status: number; data: Uint8Array }
  | { type: 'reset'; reason: number }
  | { type: 'flashOp'; op: FlashOpKind; addr: number; len: number }
  | { type: 'linkRequest'; request: LinkTuningRequest }
  | { type: 'frameDone'; frameType: number }
  | { type: 'cpuWork'; kind: CpuWorkKind; amount: number }
  /** The firmware drops a link (ble_gap_terminate); `reason` is what the central is told. */
  | { type: 'terminate'; conn: number; reason: number };

const FLASH_OPS: Record<number, FlashOpKind> = { 1: 'erase', 2: 'write', 3: 'read' };

export class FrameError extends Error {
  override name = 'FrameError';
}

function frame(type: number, payload: Uint8Array): Uint8Array {
  if (payload.length > 0xffff) throw new FrameError(`frame payload too long: ${payload.length}`);
  const out = new Uint8Array(3 + payload.length);
  out[0] = type;
  out[1] = payload.length & 0xff;
  out[2] = payload.length >> 8;
  out.set(payload, 3);
  return out;
}

function u16(...values: number[]): Uint8Array {
  const out = new Uint8Array(values.length * 2);
  const view = new DataView(out.buffer);
  values.forEach((v, i) => {
    view.setUint16(i * 2, v, true);
  });
  return out;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

export const encode = {
  connect: (conn: number, mtu: number) => frame(HostFrame.CONNECT, u16(conn, mtu)),
  disconnect: (conn: number, reason: number) =>
    frame(HostFrame.DISCONNECT, concat(u16(conn), Uint8Array.of(reason))),
  mtu: (conn: number, mtu: number) => frame(HostFrame.MTU, u16(conn, mtu)),
  write: (conn: number, chrId: number, data: Uint8Array, withResponse: boolean) =>
    frame(HostFrame.WRITE, concat(u16(conn, chrId), Uint8Array.of(withResponse ? 1 : 0), data)),
  read: (conn: number, chrId: number) => frame(HostFrame.READ, u16(conn, chrId)),
  subscribe: (conn: number, chrId: number, flags: number) =>
    frame(HostFrame.SUBSCRIBE, concat(u16(conn, chrId), Uint8Array.of(flags))),
  /** Modeled ms since the boot began (firmware/host/README.md, CLOCK). */
  clock: (modeledMs: number) => {
    const p = new Uint8Array(4);
    new DataView(p.buffer).setUint32(
      0,
      Math.min(0xffffffff, Math.max(0, Math.floor(modeledMs))),
      true,
    );
    return frame(HostFrame.CLOCK, p);
  },
  /** Time that passed with nothing on the air (firmware/host/README.md, IDLE). */
  idle: (ms: number) => {
    const p = new Uint8Array(4);
    new DataView(p.buffer).setUint32(0, Math.min(0xffffffff, Math.max(0, Math.floor(ms))), true);
    return frame(HostFrame.IDLE, p);
  },
  linkUpdate: (u: LinkTuningUpdate) =>
    frame(
      HostFrame.LINK_UPDATE,
      concat(u16(u.conn, u.interval, u.dataLength), Uint8Array.of(u.phy)),
    ),
};

function decodeLinkRequest(p: Uint8Array, view: DataView): LinkTuningRequest {
  const kind = p[0] as number;
  const conn = view.getUint16(1, true);
  const need = (n: number) => {
    if (p.length < n) {
      throw new FrameError(`LINK_REQUEST of kind ${kind} too short: ${p.length} < ${n} bytes`);
    }
  };
  switch (kind) {
    case 1:
      need(11);
      return {
        kind: 'connParams',
        conn,
        minInterval: view.getUint16(3, true),
        maxInterval: view.getUint16(5, true),
        latency: view.getUint16(7, true),
        timeout: view.getUint16(9, true),
      };
    case 2:
      need(7);
      return {
        kind: 'dataLength',
        conn,
        txOctets: view.getUint16(3, true),
        txTimeUs: view.getUint16(5, true),
      };
    case 3:
      need(5);
      return { kind: 'phy', conn, txPhys: p[3] as number, rxPhys: p[4] as number };
    default:
      throw new FrameError(
        `unknown LINK_REQUEST kind ${kind} (1 connection parameters, 2 data length, 3 PHY)`,
      );
  }
}

function decodeOne(type: number, p: Uint8Array): DeviceEvent {
  const view = new DataView(p.buffer, p.byteOffset, p.byteLength);
  const need = (n: number) => {
    if (p.length < n) {
      throw new FrameError(`device frame 0x${type.toString(16)} too short: ${p.length} < ${n}`);
    }
  };
  switch (type) {
    case DeviceFrame.HELLO:
      need(1);
      return {
        type: 'hello',
        advertising: p[0] !== 0,
        name: new TextDecoder().decode(p.subarray(1)),
      };
    case DeviceFrame.NOTIFY:
      need(4);
      return {
        type: 'notify',
        conn: view.getUint16(0, true),
        chrId: view.getUint16(2, true),
        data: new Uint8Array(p.subarray(4)),
      };
    case DeviceFrame.CONSOLE:
      return { type: 'console', data: new Uint8Array(p) };
    case DeviceFrame.WRITE_RSP:
      need(5);
      return {
        type: 'writeRsp',
        conn: view.getUint16(0, true),
        chrId: view.getUint16(2, true),
        status: p[4] as number,
      };
    case DeviceFrame.READ_RSP:
      need(5);
      return {
        type: 'readRsp',
        conn: view.getUint16(0, true),
        chrId: view.getUint16(2, true),
        status: p[4] as number,
        data: new Uint8Array(p.subarray(5)),
      };
    case DeviceFrame.RESET:
      need(1);
      return { type: 'reset', reason: p[0] as number };
    case DeviceFrame.FLASH_OP: {
      need(9);
      const op = FLASH_OPS[p[0] as number];
      if (!op) throw new FrameError(`unknown flash operation ${p[0]}`);
      return { type: 'flashOp', op, addr: view.getUint32(1, true), len: view.getUint32(5, true) };
    }
    case DeviceFrame.CPU_WORK: {
      need(5);
      const kind = CPU_WORK_KINDS[p[0] as number];
      if (!kind) throw new FrameError(`unknown CPU work kind ${p[0]}`);
      return { type: 'cpuWork', kind, amount: view.getUint32(1, true) };
    }
    case DeviceFrame.LINK_REQUEST:
      need(3);
      return { type: 'linkRequest', request: decodeLinkRequest(p, view) };
    case DeviceFrame.FRAME_DONE:
      need(1);
      return { type: 'frameDone', frameType: p[0] as number };
    case DeviceFrame.TERMINATE:
      need(3);
      return { type: 'terminate', conn: view.getUint16(0, true), reason: p[2] as number };
    default:
      throw new FrameError(`unknown device frame type 0x${type.toString(16)}`);
  }
}

/** Splits the device's stdout byte stream into events; keeps partial frames across chunks. */
export class FrameDecoder {
  private pending = new Uint8Array(0);

  push(chunk: Uint8Array): DeviceEvent[] {
    const buf = this.pending.length ? concat(this.pending, chunk) : chunk;
    const events: DeviceEvent[] = [];
    let off = 0;
    while (buf.length - off >= 3) {
      const len = (buf[off + 1] as number) | ((buf[off + 2] as number) << 8);
      if (buf.length - off < 3 + len) break;
      events.push(decodeOne(buf[off] as number, buf.subarray(off + 3, off + 3 + len)));
      off += 3 + len;
    }
    this.pending = buf.slice(off);
    return events;
  }

  /** Bytes of an unfinished frame (non-zero when the device died mid-frame). */
  get buffered(): number {
    return this.pending.length;
  }
}
