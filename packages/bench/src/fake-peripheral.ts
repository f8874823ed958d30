import { type FakePeripheral, type FakePeripheralLink, normalizeUuid } from '@esp-ble-ota/protocol';
import type { GattLayout, PeripheralApp, ReadResult, VirtualPeripheral } from '@esp-ble-ota/sim';

/**
 * Serves one of the protocol package's fake devices (FakeV2Device, FakeBaselineDevice) on the
 * virtual radio, so that the whole client stack (protocol, noble transport, noble, virtual
 * controller) runs against a device that costs next to nothing: what is measured is the client.
 */
export class FakePeripheralApp implements PeripheralApp {
  readonly layout: GattLayout;
  peripheral: VirtualPeripheral | undefined;
  private readonly idByUuid = new Map<string, number>();
  private readonly uuidById = new Map<number, string>();

  constructor(readonly device: FakePeripheral) {
    let id = 0;
    this.layout = {
      services: device.gatt.map((s) => ({
        uuid: s.uuid,
        characteristics: s.characteristics.map((c) => {
          const chrId = id++;
          const uuid = normalizeUuid(c.uuid);
          this.idByUuid.set(uuid, chrId);
          this.uuidById.set(chrId, uuid);
          return { id: chrId, uuid: c.uuid, properties: [...c.properties] };
        }),
      })),
    };
  }

  onConnect(conn: number): void {
    let up = true;
    const peripheral = () => this.peripheral;
    const link: FakePeripheralLink = {
      get mtu() {
        return peripheral()?.mtu(conn) ?? 23;
      },
      get up() {
        return up && (peripheral()?.connections().includes(conn) ?? false);
      },
      notify: (characteristic, data) => {
        const chrId = this.idByUuid.get(normalizeUuid(characteristic));
        if (chrId !== undefined) this.peripheral?.notify(conn, chrId, data);
      },
      disconnect: (reason) => {
        up = false;
        // A restart looks like a supervision timeout to the central.
        this.peripheral?.disconnect(conn, reason ?? 0x08);
      },
    };
    this.device.onConnect(link);
  }

  onDisconnect(): void {
    this.device.onDisconnect();
  }

  onMtu(): void {}

  onWrite(_conn: number, chrId: number, data: Uint8Array, withResponse: boolean) {
    const outcome = this.device.onWrite(this.uuidOf(chrId), data, withResponse);
    const settle = (v: number | 'never'): Promise<number> | number =>
      v === 'never' ? new Promise<number>(() => {}) : v;
    return outcome instanceof Promise ? outcome.then(settle) : settle(outcome);
  }

  onRead(_conn: number, chrId: number): ReadResult {
    const v = this.device.onRead(this.uuidOf(chrId));
    return typeof v === 'number' ? { status: v, data: new Uint8Array() } : { status: 0, data: v };
  }

  onSubscribe(_conn: number, chrId: number, flags: number): void {
    this.device.onSubscribe?.(this.uuidOf(chrId), (flags & 0x03) !== 0);
  }

  private uuidOf(chrId: number): string {
    const uuid = this.uuidById.get(chrId);
    if (uuid === undefined)
      throw new Error(`characteristic id ${chrId} is not in the fake's layout`);
    return uuid;
  }
}
