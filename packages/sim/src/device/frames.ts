/**
 * The frames on the simulated device's stdin/stdout (firmware/host/README.md is the
 * authority). Each frame is `u8 type, u16 length (LE), payload`; integers are little-endian.
 */

export const HostFrame = {
  CONNECT: 0x01,
  DISCONNECT: 0x02,
  MTU: 0x03,
  WRITE: 0x04,
  READ: 0x05,
  SUBSCRIBE: 0x06,
} as const;

export const DeviceFrame = {
  HELLO: 0x80,
  NOTIFY: 0x82,
  CONSOLE: 0x83,
  WRITE_RSP: 0x84,
  READ_RSP: 0x85,
  RESET: 0x87,
  FLASH_OP: 0x88,
} as const;

export type FlashOpKind = 'erase' | 'write' | 'read';

export type DeviceEvent =
  | { type: 'hello'; advertising: boolean; name: string }
  | { type: 'notify'; conn: number; chrId: number; data: Uint8Array }
  | { type: 'console'; data: Uint8Array }
  | { type: 'writeRsp'; conn: number; chrId: number; status: number }
  | { type: 'readRsp'; conn: number; chrId: number; status: number; data: Uint8Array }
  | { type: 'reset'; reason: number }
  | { type: 'flashOp'; op: FlashOpKind; addr: number; len: number };

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
};

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
