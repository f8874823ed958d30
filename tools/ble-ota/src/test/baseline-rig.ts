/**
 * A virtual rig for the CLI's device-side error paths: the real noble on the sim's virtual HCI
 * controller, and a peripheral whose application speaks the baseline OTA protocol, written here
 * so that a test can make it refuse, drop the link, stay silent or roll back. The happy path
 * against the firmware itself runs on the lead's rig (startVirtualRig) in flash-sim.test.ts.
 */
import {
  BASELINE_SERVICE_UUID,
  FIRMWARE_REVISION_UUID,
  MANUFACTURER_NAME_UUID,
  MODEL_NUMBER_UUID,
  OTA_CONTROL_UUID,
  OTA_DATA_UUID,
  parseAppImage,
} from '@esp-ble-ota/protocol';
import {
  createNoble,
  ImmediateAirScheduler,
  installVirtualHci,
  type PeripheralApp,
  type ReadResult,
  releaseNoble,
  type VirtualPeripheral,
  VirtualRadio,
} from '@esp-ble-ota/sim';
import type { VirtualRig } from '../io.ts';

const CONTROL = 0;
const DATA = 1;
const MANUFACTURER = 2;
const MODEL = 3;
const FW_REV = 4;

const LAYOUT = {
  services: [
    {
      uuid: BASELINE_SERVICE_UUID,
      characteristics: [
        { id: CONTROL, uuid: OTA_CONTROL_UUID, properties: ['read', 'write', 'notify'] },
        { id: DATA, uuid: OTA_DATA_UUID, properties: ['write'] },
      ],
    },
    {
      uuid: '180a',
      characteristics: [
        { id: MANUFACTURER, uuid: MANUFACTURER_NAME_UUID, properties: ['read'] },
        { id: MODEL, uuid: MODEL_NUMBER_UUID, properties: ['read'] },
        { id: FW_REV, uuid: FIRMWARE_REVISION_UUID, properties: ['read'] },
      ],
    },
  ],
};

export interface BaselineBehaviour {
  model?: string;
  version?: string;
  /** Answer REQUEST with REQUEST_NAK. */
  nakRequest?: boolean;
  /** Never answer REQUEST. */
  silentRequest?: boolean;
  /** Drop the link (supervision timeout) once this many image bytes arrived. */
  dropAfterBytes?: number;
  /** Come back after the restart still running the old version (a rollback). */
  rollBack?: boolean;
  /**
   * After the restart, drop the link (supervision timeout) at this many reads of the Firmware
   * Revision instead of answering them: the link lost while the client verifies the new version.
   */
  dropVersionReadsAfterRestart?: number;
}

export class BaselineDeviceApp implements PeripheralApp {
  peripheral: VirtualPeripheral | undefined;
  version: string;
  received: Uint8Array[] = [];
  receivedBytes = 0;
  requests = 0;
  restarted = false;
  droppedVersionReads = 0;
  #conn: number | undefined;
  #packetSize = 0;
  #receiving = false;

  constructor(readonly behaviour: BaselineBehaviour) {
    this.version = behaviour.version ?? '1.0.0';
  }

  onConnect(conn: number): void {
    this.#conn = conn;
  }
  onDisconnect(): void {
    this.#conn = undefined;
    this.#receiving = false;
  }
  onMtu(): void {}
  onSubscribe(): void {}

  onRead(conn: number, chrId: number): ReadResult | Promise<ReadResult> {
    const drops = this.behaviour.dropVersionReadsAfterRestart ?? 0;
    if (chrId === FW_REV && this.restarted && this.droppedVersionReads < drops) {
      this.droppedVersionReads++;
      setImmediate(() => this.peripheral?.disconnect(conn, 0x08));
      // Never answered: the link goes first.
      return new Promise<ReadResult>(() => {});
    }
    const text =
      chrId === MODEL
        ? (this.behaviour.model ?? 'ESP32')
        : chrId === FW_REV
          ? this.version
          : chrId === MANUFACTURER
            ? 'Espressif Systems'
            : '';
    return { status: 0, data: new TextEncoder().encode(text) };
  }

  onWrite(conn: number, chrId: number, data: Uint8Array): number {
    if (chrId === DATA) {
      if (!this.#receiving) {
        this.#packetSize = (data[0] ?? 0) | ((data[1] ?? 0) << 8);
        return 0;
      }
      this.received.push(new Uint8Array(data));
      this.receivedBytes += data.length;
      const drop = this.behaviour.dropAfterBytes;
      if (drop !== undefined && this.receivedBytes >= drop) {
        setImmediate(() => this.peripheral?.disconnect(conn, 0x08));
      }
      return 0;
    }
    if (chrId === CONTROL && data[0] === 0x01) {
      this.requests++;
      if (this.behaviour.silentRequest) return 0;
      const ok = !this.behaviour.nakRequest && this.#packetSize > 0;
      this.#receiving = ok;
      this.#notify(ok ? 0x02 : 0x03);
      return 0;
    }
    if (chrId === CONTROL && data[0] === 0x04) {
      const image = concat(this.received);
      let version: string | undefined;
      try {
        version = parseAppImage(image).version;
      } catch {
        version = undefined;
      }
      this.#notify(version === undefined ? 0x06 : 0x05);
      if (version !== undefined) this.#restart(version);
      return 0;
    }
    return 0;
  }

  #notify(opcode: number): void {
    const conn = this.#conn;
    if (conn !== undefined)
      setImmediate(() => this.peripheral?.notify(conn, CONTROL, Uint8Array.of(opcode)));
  }

  /** The baseline waits ~500 ms, then restarts: the link drops and the new app advertises. */
  #restart(version: string): void {
    setTimeout(() => {
      const p = this.peripheral;
      if (p === undefined) return;
      p.stopAdvertising();
      for (const conn of p.connections()) p.disconnect(conn, 0x08);
      if (!this.behaviour.rollBack) this.version = version;
      this.restarted = true;
      setTimeout(() => p.startAdvertising(), 50);
    }, 50);
  }
}

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let offset = 0;
  for (const c of chunks) {
    out.set(c, offset);
    offset += c.length;
  }
  return out;
}

let radio: VirtualRadio | undefined;
let counter = 0;

export interface BaselineRig extends VirtualRig {
  app: BaselineDeviceApp;
  address: string;
}

/** A fresh central and a fresh baseline device on the file's virtual radio. */
export function startBaselineRig(behaviour: BaselineBehaviour = {}): BaselineRig {
  radio ??= new VirtualRadio({ createLink: () => new ImmediateAirScheduler() });
  installVirtualHci(radio);
  const r = radio;
  counter++;
  const address = `24:0a:c4:aa:00:${counter.toString(16).padStart(2, '0')}`;
  const app = new BaselineDeviceApp(behaviour);
  const peripheral = r.addPeripheral({
    address,
    name: 'esp32',
    gatt: LAYOUT as never,
    app,
    preferredMtu: 256,
  });
  app.peripheral = peripheral;
  const noble = createNoble();
  return {
    app,
    address,
    noble,
    boards: [{ name: 'esp32', address, serialPath: '' }],
    close: async () => {
      r.removePeripheral(peripheral);
      releaseNoble(noble);
    },
  };
}
