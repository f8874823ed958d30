import { AttError, type PeripheralApp, type ReadResult } from './app.ts';
import {
  type Attribute,
  type AttributeDb,
  BUILTIN_APPEARANCE,
  BUILTIN_DEVICE_NAME,
  BUILTIN_SERVICE_CHANGED,
  type CharacteristicEntry,
  PROPERTY_BITS,
  UUID_PRIMARY_SERVICE,
  UUID_SECONDARY_SERVICE,
} from './gatt-layout.ts';
import type { LinkSecurityState } from './smp.ts';
import { uuidFromBytes } from './uuid.ts';

export const AttOp = {
  ErrorRsp: 0x01,
  MtuReq: 0x02,
  MtuRsp: 0x03,
  FindInfoReq: 0x04,
  FindInfoRsp: 0x05,
  FindByTypeValueReq: 0x06,
  FindByTypeValueRsp: 0x07,
  ReadByTypeReq: 0x08,
  ReadByTypeRsp: 0x09,
  ReadReq: 0x0a,
  ReadRsp: 0x0b,
  ReadBlobReq: 0x0c,
  ReadBlobRsp: 0x0d,
  ReadMultipleReq: 0x0e,
  ReadByGroupTypeReq: 0x10,
  ReadByGroupTypeRsp: 0x11,
  WriteReq: 0x12,
  WriteRsp: 0x13,
  PrepareWriteReq: 0x16,
  PrepareWriteRsp: 0x17,
  ExecuteWriteReq: 0x18,
  ExecuteWriteRsp: 0x19,
  HandleValueNtf: 0x1b,
  HandleValueInd: 0x1d,
  HandleValueCfm: 0x1e,
  WriteCmd: 0x52,
  SignedWriteCmd: 0xd2,
} as const;

export const ATT_DEFAULT_MTU = 23;
/** Longest attribute value (Core Vol 3 Part F 3.2.9). */
const MAX_ATTR_LEN = 512;
/** NimBLE's BLE_ATT_SVR_MAX_PREP_ENTRIES default. */
const MAX_PREPARE_ENTRIES = 64;

export interface AttServerContext {
  conn: number;
  db: AttributeDb;
  app: PeripheralApp;
  /** The MTU the server answers an Exchange MTU Request with (NimBLE: preferred MTU, 256). */
  serverMtu(clientMtu: number): number;
  deviceName(): string;
  appearance: number;
  /** Hands one ATT PDU to L2CAP (CID 4). */
  send(pdu: Buffer): void;
  mtuChanged(mtu: number): void;
  /** Told of each PDU dropped for being longer than the ATT MTU (see AttServer.handlePdu). */
  oversizeDropped?(pduLength: number, mtu: number): void;
  /** The link's security now, and whether the device holds keys of this central; absent: open. */
  linkSecurity?(): { state: LinkSecurityState; hasBond: boolean };
  /** Told of each write refused for the link's security (a Write Command's is dropped unanswered). */
  insecureWrite?(chrId: number, code: number, withResponse: boolean): void;
}

/** ATT error codes of a link not secure enough (Core Vol 3 Part F 3.4.1.1). */
export const ATT_INSUFFICIENT_AUTHENTICATION = 0x05;
export const ATT_INSUFFICIENT_ENCRYPTION = 0x0f;

class AttRequestError extends Error {
  constructor(
    readonly code: number,
    readonly handle: number,
  ) {
    super(`ATT error 0x${code.toString(16)} on handle 0x${handle.toString(16)}`);
  }
}

/**
 * One connection's ATT server, behaving like NimBLE's: it answers discovery from the attribute
 * table, hands characteristic values to the app, keeps the CCCDs per connection, and answers
 * a Write Command on any characteristic that is writable either way (SEED-PROTOCOL.md).
 * PDUs must be fed one at a time (await each), as NimBLE's host task handles them.
 */
export class AttServer {
  mtu = ATT_DEFAULT_MTU;
  /** PDUs dropped for being longer than the ATT MTU. */
  oversizeDropped = 0;
  private readonly cccd = new Map<number, number>();
  private prepareQueue: Array<{ handle: number; offset: number; value: Buffer }> = [];
  private indicationChain: Promise<void> = Promise.resolve();
  private pendingConfirm: { resolve: () => void; reject: (e: Error) => void } | undefined;
  private closed = false;

  constructor(private readonly ctx: AttServerContext) {}

  /** Subscription flags (CCCD value) the client wrote for a characteristic. */
  subscription(chrId: number): number {
    return this.cccd.get(chrId) ?? 0;
  }

  async handlePdu(pdu: Buffer): Promise<void> {
    if (this.closed || pdu.length === 0) return;
    if (pdu.length > this.mtu) {
      // NimBLE's ble_l2cap_rx drops an SDU longer than the channel's MTU (BLE_HS_EBADDATA)
      // before ATT sees it: no answer, not even an error, and a Write Command's data is lost.
      this.oversizeDropped++;
      this.ctx.oversizeDropped?.(pdu.length, this.mtu);
      return;
    }
    const op = pdu[0] ?? 0;
    try {
      await this.dispatch(op, pdu);
    } catch (e) {
      if (e instanceof AttRequestError) {
        // Commands never get an answer, not even an error.
        if (!isCommand(op)) this.sendError(op, e.handle, e.code);
        return;
      }
      // The app failed (e.g. the device program died): the client still gets an answer.
      if (!isCommand(op) && op % 2 === 0)
        this.sendError(op, pdu.length >= 3 ? pdu.readUInt16LE(1) : 0, AttError.Unlikely);
      throw e;
    }
  }

  /** A Handle Value Notification, sent whether or not the client subscribed, as NimBLE's ble_gattc_notify_custom does. */
  notify(chr: CharacteristicEntry, data: Uint8Array): void {
    const value = Buffer.from(data).subarray(0, this.mtu - 3);
    this.ctx.send(Buffer.concat([header3(AttOp.HandleValueNtf, chr.valueHandle), value]));
  }

  /** A Handle Value Indication; resolves on the client's confirmation. One is in flight at a time. */
  indicate(chr: CharacteristicEntry, data: Uint8Array): Promise<void> {
    const run = () =>
      new Promise<void>((resolve, reject) => {
        if (this.closed) {
          reject(new Error('the connection closed before the indication was sent'));
          return;
        }
        this.pendingConfirm = { resolve, reject };
        const value = Buffer.from(data).subarray(0, this.mtu - 3);
        this.ctx.send(Buffer.concat([header3(AttOp.HandleValueInd, chr.valueHandle), value]));
      });
    const result = this.indicationChain.then(run, run);
    this.indicationChain = result.catch(() => undefined);
    return result;
  }

  close(): void {
    this.closed = true;
    this.pendingConfirm?.reject(
      new Error('the connection closed before the client confirmed the indication'),
    );
    this.pendingConfirm = undefined;
  }

  private async dispatch(op: number, pdu: Buffer): Promise<void> {
    switch (op) {
      case AttOp.MtuReq:
        return this.exchangeMtu(pdu);
      case AttOp.FindInfoReq:
        return this.findInformation(pdu);
      case AttOp.FindByTypeValueReq:
        return this.findByTypeValue(pdu);
      case AttOp.ReadByTypeReq:
        return this.readByType(pdu);
      case AttOp.ReadReq:
        return this.read(pdu);
      case AttOp.ReadBlobReq:
        return this.readBlob(pdu);
      case AttOp.ReadByGroupTypeReq:
        return this.readByGroupType(pdu);
      case AttOp.WriteReq:
        return this.writeRequest(pdu);
      case AttOp.WriteCmd:
        return this.writeCommand(pdu);
      case AttOp.PrepareWriteReq:
        return this.prepareWrite(pdu);
      case AttOp.ExecuteWriteReq:
        return this.executeWrite(pdu);
      case AttOp.HandleValueCfm: {
        const pending = this.pendingConfirm;
        this.pendingConfirm = undefined;
        pending?.resolve();
        return;
      }
      default:
        // Responses from the client other than the confirmation, and unknown commands, are dropped.
        if (isCommand(op) || op % 2 === 1) return;
        throw new AttRequestError(AttError.RequestNotSupported, 0);
    }
  }

  private exchangeMtu(pdu: Buffer): void {
    expectLength(pdu, 3);
    const clientMtu = Math.max(ATT_DEFAULT_MTU, pdu.readUInt16LE(1));
    const serverMtu = Math.max(ATT_DEFAULT_MTU, this.ctx.serverMtu(clientMtu));
    const rsp = Buffer.alloc(3);
    rsp.writeUInt8(AttOp.MtuRsp, 0);
    rsp.writeUInt16LE(serverMtu, 1);
    this.ctx.send(rsp);
    this.mtu = Math.min(clientMtu, serverMtu);
    this.ctx.mtuChanged(this.mtu);
  }

  private findInformation(pdu: Buffer): void {
    expectLength(pdu, 5);
    const [start, end] = this.range(pdu);
    const entries: Buffer[] = [];
    let format = 0;
    let size = 0;
    for (const attr of this.inRange(start, end)) {
      const f = attr.typeBytes.length === 2 ? 1 : 2;
      if (format === 0) format = f;
      if (f !== format) break;
      const entry = Buffer.concat([u16(attr.handle), attr.typeBytes]);
      if (2 + size + entry.length > this.mtu) break;
      entries.push(entry);
      size += entry.length;
    }
    if (entries.length === 0) throw new AttRequestError(AttError.AttributeNotFound, start);
    this.ctx.send(Buffer.concat([Buffer.from([AttOp.FindInfoRsp, format]), ...entries]));
  }

  private findByTypeValue(pdu: Buffer): void {
    if (pdu.length < 7) throw new AttRequestError(AttError.InvalidPdu, 0);
    const [start, end] = this.range(pdu);
    const type = pdu.readUInt16LE(5).toString(16).padStart(4, '0');
    const value = pdu.subarray(7);
    const entries: Buffer[] = [];
    for (const attr of this.inRange(start, end)) {
      if (attr.type !== type || !attr.value || !attr.value.equals(value)) continue;
      const groupEnd =
        attr.kind.type === 'service'
          ? (this.ctx.db.services[attr.kind.service]?.endHandle ?? attr.handle)
          : attr.handle;
      if (1 + (entries.length + 1) * 4 > this.mtu) break;
      entries.push(Buffer.concat([u16(attr.handle), u16(groupEnd)]));
    }
    if (entries.length === 0) throw new AttRequestError(AttError.AttributeNotFound, start);
    this.ctx.send(Buffer.concat([Buffer.from([AttOp.FindByTypeValueRsp]), ...entries]));
  }

  private async readByType(pdu: Buffer): Promise<void> {
    if (pdu.length !== 7 && pdu.length !== 21) throw new AttRequestError(AttError.InvalidPdu, 0);
    const [start, end] = this.range(pdu);
    const type = uuidFromBytes(pdu.subarray(5));
    const maxValue = Math.min(this.mtu - 4, 253);
    const entries: Buffer[] = [];
    let valueLen = -1;
    for (const attr of this.inRange(start, end)) {
      if (attr.type !== type) continue;
      let value: Buffer;
      try {
        value = await this.readValue(attr);
      } catch (e) {
        // Only the first matching attribute's error is reported; later ones end the list.
        if (e instanceof AttRequestError && entries.length === 0) throw e;
        break;
      }
      value = value.subarray(0, maxValue);
      if (valueLen === -1) valueLen = value.length;
      if (value.length !== valueLen) break;
      if (2 + (entries.length + 1) * (2 + valueLen) > this.mtu) break;
      entries.push(Buffer.concat([u16(attr.handle), value]));
      // A value served by the app is read once per request: one round trip to the device.
      if (attr.kind.type === 'value') break;
    }
    if (entries.length === 0) throw new AttRequestError(AttError.AttributeNotFound, start);
    this.ctx.send(Buffer.concat([Buffer.from([AttOp.ReadByTypeRsp, 2 + valueLen]), ...entries]));
  }

  private async read(pdu: Buffer): Promise<void> {
    expectLength(pdu, 3);
    const handle = pdu.readUInt16LE(1);
    const value = await this.readValue(this.attribute(handle));
    this.ctx.send(Buffer.concat([Buffer.from([AttOp.ReadRsp]), value.subarray(0, this.mtu - 1)]));
  }

  private async readBlob(pdu: Buffer): Promise<void> {
    expectLength(pdu, 5);
    const handle = pdu.readUInt16LE(1);
    const offset = pdu.readUInt16LE(3);
    const value = await this.readValue(this.attribute(handle));
    if (offset > value.length) throw new AttRequestError(AttError.InvalidOffset, handle);
    this.ctx.send(
      Buffer.concat([
        Buffer.from([AttOp.ReadBlobRsp]),
        value.subarray(offset, offset + this.mtu - 1),
      ]),
    );
  }

  private readByGroupType(pdu: Buffer): void {
    if (pdu.length !== 7 && pdu.length !== 21) throw new AttRequestError(AttError.InvalidPdu, 0);
    const [start, end] = this.range(pdu);
    const type = uuidFromBytes(pdu.subarray(5));
    const primary = UUID_PRIMARY_SERVICE.toString(16);
    const secondary = UUID_SECONDARY_SERVICE.toString(16);
    if (type !== primary && type !== secondary) {
      throw new AttRequestError(AttError.UnsupportedGroupType, start);
    }
    const entries: Buffer[] = [];
    let uuidLen = -1;
    // Every service here is primary: a secondary-service request finds nothing.
    for (const svc of type === primary ? this.ctx.db.services : []) {
      if (svc.startHandle < start || svc.startHandle > end) continue;
      const uuid = this.ctx.db.get(svc.startHandle)?.value ?? Buffer.alloc(0);
      if (uuidLen === -1) uuidLen = uuid.length;
      if (uuid.length !== uuidLen) break;
      if (2 + (entries.length + 1) * (4 + uuidLen) > this.mtu) break;
      entries.push(Buffer.concat([u16(svc.startHandle), u16(svc.endHandle), uuid]));
    }
    if (entries.length === 0) throw new AttRequestError(AttError.AttributeNotFound, start);
    this.ctx.send(
      Buffer.concat([Buffer.from([AttOp.ReadByGroupTypeRsp, 4 + uuidLen]), ...entries]),
    );
  }

  private async writeRequest(pdu: Buffer): Promise<void> {
    if (pdu.length < 3) throw new AttRequestError(AttError.InvalidPdu, 0);
    const handle = pdu.readUInt16LE(1);
    await this.writeValue(this.attribute(handle), pdu.subarray(3), true);
    this.ctx.send(Buffer.from([AttOp.WriteRsp]));
  }

  private async writeCommand(pdu: Buffer): Promise<void> {
    if (pdu.length < 3) return;
    const attr = this.ctx.db.get(pdu.readUInt16LE(1));
    if (!attr) return;
    await this.writeValue(attr, pdu.subarray(3), false);
  }

  private prepareWrite(pdu: Buffer): void {
    if (pdu.length < 5) throw new AttRequestError(AttError.InvalidPdu, 0);
    const handle = pdu.readUInt16LE(1);
    const attr = this.attribute(handle);
    this.checkWritable(attr);
    this.checkWriteSecurity(attr, true);
    if (this.prepareQueue.length >= MAX_PREPARE_ENTRIES) {
      throw new AttRequestError(AttError.PrepareQueueFull, handle);
    }
    this.prepareQueue.push({
      handle,
      offset: pdu.readUInt16LE(3),
      value: Buffer.from(pdu.subarray(5)),
    });
    this.ctx.send(Buffer.concat([Buffer.from([AttOp.PrepareWriteRsp]), pdu.subarray(1)]));
  }

  private async executeWrite(pdu: Buffer): Promise<void> {
    expectLength(pdu, 2);
    const queue = this.prepareQueue;
    this.prepareQueue = [];
    if (pdu[1] === 0x01) {
      const byHandle = new Map<number, Array<{ offset: number; value: Buffer }>>();
      for (const item of queue) {
        const list = byHandle.get(item.handle) ?? [];
        list.push(item);
        byHandle.set(item.handle, list);
      }
      const values: Array<[Attribute, Buffer]> = [];
      for (const [handle, parts] of byHandle) {
        let expected = 0;
        for (const part of parts) {
          if (part.offset !== expected) throw new AttRequestError(AttError.InvalidOffset, handle);
          expected += part.value.length;
        }
        if (expected > MAX_ATTR_LEN)
          throw new AttRequestError(AttError.InvalidAttributeValueLength, handle);
        values.push([this.attribute(handle), Buffer.concat(parts.map((p) => p.value))]);
      }
      for (const [attr, value] of values) await this.writeValue(attr, value, true);
    } else if (pdu[1] !== 0x00) {
      throw new AttRequestError(AttError.InvalidPdu, 0);
    }
    this.ctx.send(Buffer.from([AttOp.ExecuteWriteRsp]));
  }

  private async readValue(attr: Attribute): Promise<Buffer> {
    const kind = attr.kind;
    if (kind.type === 'cccd') return u16(this.cccd.get(kind.chr.id) ?? 0);
    if (kind.type !== 'value') return attr.value ?? Buffer.alloc(0);
    const chr = kind.chr;
    if (!(chr.properties & PROPERTY_BITS.read)) {
      throw new AttRequestError(AttError.ReadNotPermitted, attr.handle);
    }
    if (chr.id === BUILTIN_DEVICE_NAME) return Buffer.from(this.ctx.deviceName(), 'utf8');
    if (chr.id === BUILTIN_APPEARANCE) return u16(this.ctx.appearance);
    const result: ReadResult = await this.ctx.app.onRead(this.ctx.conn, chr.id);
    if (result.status !== 0) throw new AttRequestError(result.status, attr.handle);
    return Buffer.from(result.data);
  }

  private checkWritable(attr: Attribute): void {
    const kind = attr.kind;
    if (kind.type === 'cccd') return;
    const writable = PROPERTY_BITS.write | PROPERTY_BITS.writeWithoutResponse;
    if (kind.type !== 'value' || !(kind.chr.properties & writable) || kind.chr.id < 0) {
      throw new AttRequestError(AttError.WriteNotPermitted, attr.handle);
    }
  }

  /**
   * NimBLE's ble_att_svr_check_perms for a write: a value that needs an encrypted link is refused
   * on an unencrypted one with "Insufficient Encryption" if the device holds the central's keys
   * (it only has to start encryption) and "Insufficient Authentication" otherwise (it must
   * pair); one that needs MITM-protected keys is refused with "Insufficient Authentication" on
   * a link encrypted with keys that have none.
   */
  private checkWriteSecurity(attr: Attribute, withResponse: boolean): void {
    if (attr.kind.type !== 'value') return;
    const chr = attr.kind.chr;
    if (chr.writeSecurity === 'open') return;
    const link = this.ctx.linkSecurity?.();
    if (!link) return;
    let code = 0;
    if (!link.state.encrypted) {
      code = link.hasBond ? ATT_INSUFFICIENT_ENCRYPTION : ATT_INSUFFICIENT_AUTHENTICATION;
    } else if (chr.writeSecurity === 'authenticated' && !link.state.authenticated) {
      code = ATT_INSUFFICIENT_AUTHENTICATION;
    }
    if (code === 0) return;
    this.ctx.insecureWrite?.(chr.id, code, withResponse);
    throw new AttRequestError(code, attr.handle);
  }

  private async writeValue(attr: Attribute, value: Buffer, withResponse: boolean): Promise<void> {
    this.checkWritable(attr);
    this.checkWriteSecurity(attr, withResponse);
    const kind = attr.kind;
    if (kind.type === 'cccd') {
      if (value.length !== 2)
        throw new AttRequestError(AttError.InvalidAttributeValueLength, attr.handle);
      const flags = value.readUInt16LE(0);
      let allowed = 0;
      if (kind.chr.properties & PROPERTY_BITS.notify) allowed |= 0x0001;
      if (kind.chr.properties & PROPERTY_BITS.indicate) allowed |= 0x0002;
      // NimBLE's ble_gatts_clt_cfg_access refuses bits the characteristic does not support this way.
      if (flags & ~allowed) throw new AttRequestError(AttError.RequestNotSupported, attr.handle);
      this.cccd.set(kind.chr.id, flags);
      if (kind.chr.id !== BUILTIN_SERVICE_CHANGED)
        this.ctx.app.onSubscribe(this.ctx.conn, kind.chr.id, flags);
      return;
    }
    if (kind.type !== 'value') throw new AttRequestError(AttError.WriteNotPermitted, attr.handle);
    if (value.length > MAX_ATTR_LEN) {
      throw new AttRequestError(AttError.InvalidAttributeValueLength, attr.handle);
    }
    const status = await this.ctx.app.onWrite(
      this.ctx.conn,
      kind.chr.id,
      new Uint8Array(value),
      withResponse,
    );
    if (withResponse && status !== 0) throw new AttRequestError(status, attr.handle);
  }

  private attribute(handle: number): Attribute {
    const attr = this.ctx.db.get(handle);
    if (!attr) throw new AttRequestError(AttError.InvalidHandle, handle);
    return attr;
  }

  private range(pdu: Buffer): [number, number] {
    const start = pdu.readUInt16LE(1);
    const end = pdu.readUInt16LE(3);
    if (start === 0 || start > end) throw new AttRequestError(AttError.InvalidHandle, start);
    return [start, end];
  }

  private *inRange(start: number, end: number): Generator<Attribute> {
    const last = Math.min(end, this.ctx.db.lastHandle);
    for (let h = start; h <= last; h++) {
      const attr = this.ctx.db.get(h);
      if (attr) yield attr;
    }
  }

  private sendError(op: number, handle: number, code: number): void {
    const rsp = Buffer.alloc(5);
    rsp.writeUInt8(AttOp.ErrorRsp, 0);
    rsp.writeUInt8(op, 1);
    rsp.writeUInt16LE(handle, 2);
    rsp.writeUInt8(code, 4);
    this.ctx.send(rsp);
  }
}

function isCommand(op: number): boolean {
  return (op & 0x40) !== 0;
}

function expectLength(pdu: Buffer, len: number): void {
  if (pdu.length !== len) throw new AttRequestError(AttError.InvalidPdu, 0);
}

function u16(v: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(v, 0);
  return b;
}

function header3(op: number, handle: number): Buffer {
  const b = Buffer.alloc(3);
  b.writeUInt8(op, 0);
  b.writeUInt16LE(handle, 1);
  return b;
}
