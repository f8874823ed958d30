/**
 * A virtual radio with one peripheral whose application is written here in TypeScript, under
 * the real noble package running on the sim's virtual HCI controller. It exercises the
 * transport's use of noble without the firmware; the end-to-end tests with the firmware's host
 * build live in tools/ble-ota and hil-tests.
 */
import {
  BASELINE_SERVICE_UUID,
  FIRMWARE_REVISION_UUID,
  MANUFACTURER_NAME_UUID,
  MODEL_NUMBER_UUID,
  OTA_CONTROL_UUID,
  OTA_DATA_UUID,
} from '@esp-ble-ota/protocol';
import {
  type AirScheduler,
  createNoble,
  ImmediateAirScheduler,
  installVirtualHci,
  type LinkSecurityLevel,
  type PeripheralApp,
  type ReadResult,
  releaseNoble,
  type VirtualPeripheral,
  VirtualRadio,
} from '@esp-ble-ota/sim';
import type { Noble } from '../noble-types.ts';

/** Characteristic ids as the firmware's ble_ota_chr_id_t numbers them. */
export const Chr = { control: 0, data: 1, manufacturer: 2, model: 3, fwRev: 4 } as const;

export const OTA_LAYOUT = {
  services: [
    {
      uuid: BASELINE_SERVICE_UUID,
      characteristics: [
        {
          id: Chr.control,
          uuid: OTA_CONTROL_UUID,
          properties: ['read', 'write', 'writeWithoutResponse', 'notify'] as const,
        },
        {
          id: Chr.data,
          uuid: OTA_DATA_UUID,
          properties: ['write', 'writeWithoutResponse'] as const,
        },
      ],
    },
    {
      uuid: '180a',
      characteristics: [
        { id: Chr.manufacturer, uuid: MANUFACTURER_NAME_UUID, properties: ['read'] as const },
        { id: Chr.model, uuid: MODEL_NUMBER_UUID, properties: ['read'] as const },
        { id: Chr.fwRev, uuid: FIRMWARE_REVISION_UUID, properties: ['read'] as const },
      ],
    },
  ],
};

function layoutWith(writeSecurity: LinkSecurityLevel | undefined) {
  const layout = structuredClone(OTA_LAYOUT) as {
    services: Array<{ characteristics: Array<{ id: number; writeSecurity?: LinkSecurityLevel }> }>;
  };
  if (writeSecurity) {
    for (const chr of layout.services[0]?.characteristics ?? []) chr.writeSecurity = writeSecurity;
  }
  return layout;
}

export interface RecordedWrite {
  chrId: number;
  data: Uint8Array;
  withResponse: boolean;
}

/** A steerable app: records writes, answers reads from a table, lets a test hold a write. */
export class TestApp implements PeripheralApp {
  readonly writes: RecordedWrite[] = [];
  readonly subscriptions: Array<{ chrId: number; flags: number }> = [];
  conn: number | undefined;
  mtu = 23;
  values = new Map<number, Uint8Array>([
    [Chr.manufacturer, new TextEncoder().encode('Espressif Systems')],
    [Chr.model, new TextEncoder().encode('ESP32')],
    [Chr.fwRev, new TextEncoder().encode('1.0.0')],
  ]);
  /** Decides the ATT status of a Write Request; may return a promise to hold the response. */
  onWriteRequest: (write: RecordedWrite) => Promise<number> | number = () => 0;
  /** Runs after a write was recorded (e.g. to notify before answering). */
  peripheral: VirtualPeripheral | undefined;

  onConnect(conn: number, mtu: number): void {
    this.conn = conn;
    this.mtu = mtu;
  }
  onDisconnect(): void {
    this.conn = undefined;
  }
  onMtu(_conn: number, mtu: number): void {
    this.mtu = mtu;
  }
  onWrite(
    _conn: number,
    chrId: number,
    data: Uint8Array,
    withResponse: boolean,
  ): Promise<number> | number {
    const write = { chrId, data: new Uint8Array(data), withResponse };
    this.writes.push(write);
    return withResponse ? this.onWriteRequest(write) : 0;
  }
  onRead(_conn: number, chrId: number): ReadResult {
    const value = this.values.get(chrId);
    return value === undefined
      ? { status: 0x02, data: new Uint8Array(0) }
      : { status: 0, data: value };
  }
  onSubscribe(_conn: number, chrId: number, flags: number): void {
    this.subscriptions.push({ chrId, flags });
  }
}

export interface VirtualSetup {
  radio: VirtualRadio;
  noble: Noble;
  app: TestApp;
  peripheral: VirtualPeripheral;
}

let radio: VirtualRadio | undefined;

/**
 * One radio per test file (noble's HCI hook is process-wide); each call adds a fresh central
 * (its own noble instance and controller) and a fresh peripheral at `address`.
 */
export function setupVirtual(options: {
  address: string;
  name?: string;
  preferredMtu?: number;
  advertisedServiceUuids?: string[];
  /** The link model of every connection; only the first call of a test file decides it. */
  createLink?: () => AirScheduler;
  /** Link security the OTA characteristics' writes need (the firmware's CONFIG_BLE_OTA_LINK_SECURITY). */
  writeSecurity?: LinkSecurityLevel;
}): VirtualSetup {
  radio ??= new VirtualRadio({
    createLink: options.createLink ?? (() => new ImmediateAirScheduler()),
  });
  installVirtualHci(radio);
  const app = new TestApp();
  const peripheral = radio.addPeripheral({
    address: options.address,
    name: options.name ?? 'esp32',
    gatt: layoutWith(options.writeSecurity) as never,
    app,
    ...(options.preferredMtu === undefined ? {} : { preferredMtu: options.preferredMtu }),
    ...(options.advertisedServiceUuids === undefined
      ? {}
      : { advertisedServiceUuids: options.advertisedServiceUuids }),
  });
  app.peripheral = peripheral;
  const noble = createNoble();
  made.push(noble);
  return { radio, noble, app, peripheral };
}

const made: Noble[] = [];

/** Takes the process handlers of every noble made by {@link setupVirtual} off again (afterEach). */
export function releaseVirtualNobles(): void {
  for (const noble of made.splice(0)) releaseNoble(noble);
}
