import type { Peripheral } from '@abandonware/noble';
import type { PeripheralApp, ReadResult } from '../att/app.ts';
import type { GattLayout } from '../att/gatt-layout.ts';
import type { VirtualPeripheral } from '../att/peripheral.ts';
import type { AirScheduler, Direction, LinkParams } from '../link/types.ts';
import type { Noble } from './install.ts';

/**
 * A zero-latency {@link AirScheduler} for functional tests of the HCI/ATT layers: every PDU is
 * delivered (and acknowledged) on a later turn of the event loop, in the order it was sent.
 * Modeled time advances by `usPerPdu` per delivered PDU (0 by default), so faults keyed on
 * modeled time can be tested deterministically without the real link model. It honours
 * hold() (nothing is delivered while held) and abort(), as the seam asks.
 */
export class ImmediateTestScheduler implements AirScheduler {
  private now = 0;
  private stalledUntil = 0;
  private queue: Array<{ onDelivered: () => void; onAcked: (() => void) | undefined }> = [];
  private flushing = false;
  private holds = 0;
  private current: LinkParams;
  readonly sent: Record<Direction, number> = { c2p: 0, p2c: 0 };
  /** How many times hold() was taken, for tests that check the controller freezes time. */
  holdsTaken = 0;

  constructor(
    params: Partial<LinkParams> = {},
    private readonly usPerPdu = 0,
  ) {
    this.current = {
      phy: '1M',
      dataLength: 251,
      connIntervalMs: 15,
      attMtu: 23,
      encrypted: false,
      ...params,
    };
  }

  get nowUs(): number {
    return this.now;
  }

  get params(): Readonly<LinkParams> {
    return this.current;
  }

  send(
    direction: Direction,
    payloadBytes: number,
    onDelivered: () => void,
    onAcked?: () => void,
  ): void {
    if (payloadBytes > this.current.dataLength) {
      throw new Error(
        `PDU of ${payloadBytes} bytes exceeds the link's data length ${this.current.dataLength}; fragment it first`,
      );
    }
    this.sent[direction] += 1;
    this.queue.push({ onDelivered, onAcked });
    this.kick();
  }

  stallPeripheral(us: number): void {
    this.stalledUntil = Math.max(this.stalledUntil, this.now + us);
  }

  setParams(change: Partial<LinkParams>): void {
    this.current = { ...this.current, ...change };
  }

  hold(): () => void {
    this.holds += 1;
    this.holdsTaken += 1;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.holds -= 1;
      this.kick();
    };
  }

  abort(): void {
    this.queue = [];
  }

  private kick(): void {
    if (this.flushing || this.holds > 0 || this.queue.length === 0) return;
    this.flushing = true;
    setImmediate(() => this.flush());
  }

  private flush(): void {
    this.flushing = false;
    while (this.holds === 0) {
      const item = this.queue.shift();
      if (!item) break;
      // A stalled peripheral takes nothing: the PDU lands once the stall is over.
      if (this.stalledUntil > this.now) this.now = this.stalledUntil;
      this.now += this.usPerPdu;
      item.onDelivered();
      item.onAcked?.();
    }
  }
}

/** The baseline firmware's GATT layout (SEED-PROTOCOL.md) in the `--gatt-json` shape, plus a long DIS string to exercise Read Blob. */
export const BASELINE_LAYOUT: GattLayout = {
  services: [
    {
      uuid: 'd6f1d96d-594c-4c53-b1c6-144a1dfde6d8',
      characteristics: [
        {
          id: 0,
          uuid: '7ad671aa-21c0-46a4-b722-270e3ae3d830',
          properties: ['read', 'write', 'notify'],
        },
        { id: 1, uuid: '23408888-1f40-4cd8-9b89-ca8d45f8a5b0', properties: ['write'] },
      ],
    },
    {
      uuid: '180a',
      characteristics: [
        { id: 2, uuid: '2a29', properties: ['read'] },
        { id: 3, uuid: '2a24', properties: ['read'] },
        { id: 4, uuid: '2a26', properties: ['read'] },
      ],
    },
  ],
};

export const CHR = { control: 0, data: 1, manufacturer: 2, model: 3, fwRev: 4 } as const;
export const OTA = {
  request: 0x01,
  requestAck: 0x02,
  requestNak: 0x03,
  done: 0x04,
  doneAck: 0x05,
  doneNak: 0x06,
} as const;

/**
 * A small stand-in for the device program that speaks the baseline exchange well enough to
 * drive it through noble: packet size on OTA Data, REQUEST -> REQUEST_ACK, data packets, DONE
 * -> DONE_ACK. It records everything the peripheral delivered to it.
 */
export class BaselineTestApp implements PeripheralApp {
  peripheral: VirtualPeripheral | undefined;
  readonly events: string[] = [];
  readonly writes: Array<{ conn: number; chrId: number; data: Buffer; withResponse: boolean }> = [];
  readonly image: Buffer[] = [];
  packetSize = 0;
  lastData = Buffer.alloc(0);
  updating = false;
  fwRev = `v1.0.0 ${'x'.repeat(300)}`;
  /** Status for the next Write Request (an ATT error code to test error paths), then back to 0. */
  nextWriteStatus = 0;

  onConnect(conn: number, mtu: number): void {
    this.events.push(`connect ${conn} ${mtu}`);
  }

  onDisconnect(conn: number, reason: number): void {
    this.events.push(`disconnect ${conn} 0x${reason.toString(16).padStart(2, '0')}`);
    this.updating = false;
  }

  onMtu(conn: number, mtu: number): void {
    this.events.push(`mtu ${conn} ${mtu}`);
  }

  onSubscribe(conn: number, chrId: number, flags: number): void {
    this.events.push(`subscribe ${conn} ${chrId} ${flags}`);
  }

  onWrite(conn: number, chrId: number, data: Uint8Array, withResponse: boolean): number {
    const buf = Buffer.from(data);
    this.writes.push({ conn, chrId, data: buf, withResponse });
    const status = this.nextWriteStatus;
    this.nextWriteStatus = 0;
    if (status !== 0) return status;
    if (chrId === CHR.data) {
      if (this.updating) this.image.push(buf);
      else this.lastData = buf;
    } else if (chrId === CHR.control) {
      if (buf[0] === OTA.request) {
        this.packetSize = this.lastData.length >= 2 ? this.lastData.readUInt16LE(0) : 0;
        this.updating = this.packetSize > 0;
        this.image.length = 0;
        this.peripheral?.notify(
          conn,
          CHR.control,
          Buffer.from([this.updating ? OTA.requestAck : OTA.requestNak]),
        );
      } else if (buf[0] === OTA.done) {
        const ok = this.updating && this.image.length > 0;
        this.updating = false;
        this.peripheral?.notify(conn, CHR.control, Buffer.from([ok ? OTA.doneAck : OTA.doneNak]));
      }
    }
    return 0;
  }

  onRead(_conn: number, chrId: number): ReadResult {
    switch (chrId) {
      case CHR.control:
        return { status: 0, data: Buffer.from([this.updating ? OTA.requestAck : 0x00]) };
      case CHR.manufacturer:
        return { status: 0, data: Buffer.from('Company 42') };
      case CHR.model:
        return { status: 0, data: Buffer.from('ESP32') };
      case CHR.fwRev:
        return { status: 0, data: Buffer.from(this.fwRev) };
      default:
        return { status: 0x02, data: Buffer.alloc(0) };
    }
  }
}

/** Resolves with the first discovered peripheral that matches; rejects after `timeoutMs` of wall time. */
export function waitFor<T>(
  subscribe: (resolve: (v: T) => void) => () => void,
  timeoutMs: number,
  what: string,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let unsubscribe: () => void = () => undefined;
    const timer = setTimeout(() => {
      unsubscribe();
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
    }, timeoutMs);
    unsubscribe = subscribe((v) => {
      clearTimeout(timer);
      unsubscribe();
      resolve(v);
    });
  });
}

/** Resolves once noble reports poweredOn (its init against the virtual controller is done). */
export function poweredOn(noble: Noble, timeoutMs = 5000): Promise<void> {
  return waitFor<void>(
    (resolve) => {
      const onState = (state: string) => {
        if (state === 'poweredOn') resolve();
      };
      noble.on('stateChange', onState);
      return () => noble.removeListener('stateChange', onState);
    },
    timeoutMs,
    'noble to power on',
  );
}

/** Scans until the peripheral with `address` (any, if omitted) is discovered, then stops scanning. */
export async function scanFor(
  noble: Noble,
  address?: string,
  timeoutMs = 2000,
): Promise<Peripheral> {
  const found = waitFor<Peripheral>(
    (resolve) => {
      const onDiscover = (p: Peripheral) => {
        if (address === undefined || p.address === address) resolve(p);
      };
      noble.on('discover', onDiscover);
      return () => noble.removeListener('discover', onDiscover);
    },
    timeoutMs,
    `an advertisement from ${address ?? 'any peripheral'}`,
  );
  await noble.startScanningAsync([], false);
  const peripheral = await found;
  await noble.stopScanningAsync();
  return peripheral;
}
