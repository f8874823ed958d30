import { EventEmitter } from 'node:events';
import { EVT_CMD_COMPLETE, EVT_CMD_STATUS, HCI_EVENT_PKT } from './constants.ts';
import type { VirtualController } from './controller.ts';

/** Where new sockets get their controller from (set by installVirtualHci). */
export interface ControllerSource {
  createController(): VirtualController;
}

let source: ControllerSource | undefined;

export function setControllerSource(s: ControllerSource | undefined): void {
  source = s;
}

type Channel = 'raw' | 'user' | 'control';

/**
 * Stands in for the Linux binding of @abandonware/bluetooth-hci-socket: same methods, same
 * 'data' and 'error' events, but the other end is a {@link VirtualController} instead of the
 * kernel. Each socket gets its own controller, as each noble instance opens its own socket.
 */
export class VirtualHciSocket extends EventEmitter {
  readonly controller: VirtualController;
  private channel: Channel | undefined;
  private devId = 0;
  private started = false;
  private filter: Buffer | undefined;
  private readonly queue: Array<{ pkt: Buffer; afterHostTurn: (() => void) | undefined }> = [];
  private flushScheduled = false;
  private powered = true;

  constructor() {
    super();
    if (!source) {
      throw new Error(
        'no virtual radio is installed for @abandonware/bluetooth-hci-socket; call installVirtualHci(radio) before noble loads',
      );
    }
    this.controller = source.createController();
    this.controller.attachHost({
      toHost: (pkt, afterHostTurn) => this.toHost(pkt, afterHostTurn),
      isUserChannel: () => this.channel === 'user',
    });
  }

  /** Models the adapter going down or up (`hciconfig hci0 down`); noble polls isDevUp() every second. */
  setPowered(on: boolean): void {
    if (!on) this.controller.resetState();
    this.powered = on;
  }

  bindRaw(devId?: number): number {
    this.channel = 'raw';
    this.devId = devId ?? 0;
    return this.devId;
  }

  bindUser(devId?: number): number {
    this.channel = 'user';
    this.devId = devId ?? 0;
    return this.devId;
  }

  bindControl(): void {
    this.channel = 'control';
  }

  isDevUp(): boolean {
    return this.powered;
  }

  getDeviceList(): Array<{
    devId: number;
    devUp: boolean;
    idVendor: null;
    idProduct: null;
    busNumber: null;
    deviceAddress: null;
  }> {
    return [
      {
        devId: this.devId,
        devUp: this.powered,
        idVendor: null,
        idProduct: null,
        busNumber: null,
        deviceAddress: null,
      },
    ];
  }

  setFilter(filter: Buffer): void {
    this.filter = Buffer.from(filter);
  }

  start(): void {
    this.started = true;
    this.scheduleFlush();
  }

  stop(): void {
    this.started = false;
  }

  write(data: Buffer): void {
    if (this.channel !== 'raw' && this.channel !== 'user') {
      this.emitError('EBADFD', 'File descriptor in bad state', 'write');
      return;
    }
    if (!this.powered) {
      // What the kernel answers for a write to a device that is down; noble ignores it by message.
      this.emitError('ENETDOWN', 'Network is down', 'write');
      return;
    }
    this.controller.fromHost(Buffer.from(data));
  }

  private toHost(pkt: Buffer, afterHostTurn?: () => void): void {
    if (this.channel === 'raw' && !this.passesFilter(pkt)) {
      if (afterHostTurn) setImmediate(afterHostTurn);
      return;
    }
    this.queue.push({ pkt, afterHostTurn });
    this.scheduleFlush();
  }

  /** The kernel's per-socket HCI filter (struct hci_filter): packet types, events, one opcode. */
  private passesFilter(pkt: Buffer): boolean {
    const f = this.filter;
    if (!f || f.length < 14) return true;
    const type = pkt[0] ?? 0;
    if (!((f.readUInt32LE(0) >>> (type & 31)) & 1)) return false;
    if (type !== HCI_EVENT_PKT) return true;
    const code = pkt[1] ?? 0;
    const word = f.readUInt32LE(code < 32 ? 4 : 8);
    if (!((word >>> (code & 31)) & 1)) return false;
    const opcode = f.readUInt16LE(12);
    if (opcode === 0) return true;
    if (code === EVT_CMD_COMPLETE) return pkt.readUInt16LE(4) === opcode;
    if (code === EVT_CMD_STATUS) return pkt.readUInt16LE(5) === opcode;
    return true;
  }

  private scheduleFlush(): void {
    if (this.flushScheduled || !this.started || this.queue.length === 0) return;
    this.flushScheduled = true;
    // Reads from a socket arrive on a later turn of the event loop, never inside write().
    setImmediate(() => {
      this.flushScheduled = false;
      const after: Array<() => void> = [];
      while (this.started && this.queue.length > 0) {
        const item = this.queue.shift();
        if (!item) continue;
        this.emit('data', item.pkt);
        if (item.afterHostTurn) after.push(item.afterHostTurn);
      }
      // The host's reaction ends with promise jobs (noble's ACL queue is async): let them run first.
      if (after.length > 0) {
        setImmediate(() => {
          for (const f of after) f();
        });
      }
    });
  }

  private emitError(code: string, message: string, syscall: string): void {
    const err = Object.assign(new Error(message), { code, syscall });
    setImmediate(() => this.emit('error', err));
  }
}
