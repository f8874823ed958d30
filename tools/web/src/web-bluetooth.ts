/**
 * The protocol package's Transport over Web Bluetooth (navigator.bluetooth), and the
 * DeviceAccess that lets `updateDevice()` find a device through the browser's chooser.
 *
 * What Web Bluetooth does not give, and what this does instead:
 * - The ATT MTU: no API tells it. The transport assumes `mtu` (default 185, what macOS and iOS
 *   centrals settle on; Chrome on Linux and Android usually gets more) and never writes a value
 *   longer than `mtu - 3`; the device sizes v2 frames to its own side of the exchange.
 * - ATT error codes: a refused write rejects with a DOMException whose name only hints at the
 *   code. The v2 protocol carries its refusals in notifications, so that costs no message.
 * - The disconnect reason: `gattserverdisconnected` has none.
 * - Controller credits for Write Commands: Chrome queues them itself and resolves
 *   writeValueWithoutResponse when the command has gone to the adapter.
 */
import {
  AbortError,
  AttError,
  AttStatus,
  BASELINE_SERVICE_UUID,
  DEVICE_INFORMATION_SERVICE_UUID,
  type DeviceAccess,
  type DisconnectInfo,
  expandUuid,
  type FoundDevice,
  formatUuid,
  type GattService,
  LinkLostError,
  NotConnectedError,
  type NotificationListener,
  normalizeUuid,
  type OperationOptions,
  OtaError,
  PayloadTooLargeError,
  type Transport,
  TransportBusyError,
  type TransportEventMap,
  TypedEmitter,
  UnknownCharacteristicError,
  type WriteOptions,
} from '@esp-ble-ota/protocol';

/** What a page assumes of the ATT MTU when the browser cannot say (see the module comment). */
export const DEFAULT_WEB_MTU = 185;

export interface WebBluetoothTransportOptions {
  /** The ATT MTU to assume (23 to 517); default {@link DEFAULT_WEB_MTU}. */
  mtu?: number;
}

type State = 'idle' | 'connecting' | 'connected' | 'disconnected' | 'closed';

interface Pending {
  reject(error: Error): void;
}

const CHARACTERISTIC_PROPERTIES = [
  ['broadcast', 'broadcast'],
  ['read', 'read'],
  ['writeWithoutResponse', 'writeWithoutResponse'],
  ['write', 'write'],
  ['notify', 'notify'],
  ['indicate', 'indicate'],
  ['authenticatedSignedWrites', 'authenticatedSignedWrites'],
] as const;

function bytesOf(view: DataView): Uint8Array {
  return new Uint8Array(view.buffer.slice(view.byteOffset, view.byteOffset + view.byteLength));
}

/** A DOMException from a GATT operation as the protocol's error. */
function gattError(error: unknown, characteristic: string, operation: 'write' | 'read'): Error {
  if (error instanceof OtaError) return error;
  const name = (error as { name?: unknown } | undefined)?.name;
  const message = error instanceof Error ? error.message : String(error);
  if (name === 'NetworkError') {
    return new LinkLostError(`the link dropped during a ${operation} (${message})`, {
      cause: error,
    });
  }
  // Chrome keeps only a hint of the ATT error code in the exception's name.
  const status =
    name === 'InvalidModificationError'
      ? AttStatus.INVALID_ATTRIBUTE_VALUE_LENGTH
      : name === 'NotAllowedError' || name === 'SecurityError'
        ? 0x05 // Insufficient Authentication: the device wants a paired link
        : AttStatus.UNLIKELY_ERROR;
  return new AttError(characteristic, operation, status);
}

/**
 * One Web Bluetooth device as a {@link Transport}. It follows the interface's rules: every
 * operation settles after the call, one ATT request at a time, every pending operation rejects
 * with LinkLostError when the link drops and 'disconnect' is emitted once.
 */
export class WebBluetoothTransport extends TypedEmitter<TransportEventMap> implements Transport {
  readonly device: BluetoothDevice;
  readonly #mtu: number;
  #state: State = 'idle';
  #everConnected = false;
  #services: GattService[] = [];
  #characteristics = new Map<string, BluetoothRemoteGATTCharacteristic>();
  #requestInFlight = false;
  readonly #pending = new Set<Pending>();
  readonly #listeners = new Map<string, Set<NotificationListener>>();
  readonly #valueHandlers = new Map<string, (event: Event) => void>();
  /**
   * Values that changed on a characteristic while this transport read it. Chrome fires
   * characteristicvaluechanged for a completed readValue() too, with the very DataView the read
   * resolves with; that one is the read's answer, not a notification, and is not delivered.
   */
  readonly #duringRead = new Map<string, DataView[]>();
  /** A local disconnect() in progress: the browser's event that follows is not the device's. */
  #localDisconnect = false;
  readonly #onGattDisconnected = () => {
    this.#lost({
      initiator: this.#localDisconnect ? 'local' : 'remote',
      message: this.#localDisconnect
        ? 'disconnected by this page'
        : 'the device dropped the link or went out of range',
    });
  };

  constructor(device: BluetoothDevice, options: WebBluetoothTransportOptions = {}) {
    super();
    const mtu = options.mtu ?? DEFAULT_WEB_MTU;
    if (!Number.isInteger(mtu) || mtu < 23 || mtu > 517) {
      throw new RangeError(`the assumed ATT MTU must be an integer from 23 to 517, got ${mtu}`);
    }
    this.device = device;
    this.#mtu = mtu;
  }

  get connected(): boolean {
    return this.#state === 'connected';
  }

  get mtu(): number {
    if (this.#state !== 'connected') {
      throw new NotConnectedError(
        'the ATT MTU is only known while connected; call connect() first',
      );
    }
    return this.#mtu;
  }

  services(): readonly GattService[] {
    return this.#services;
  }

  async connect(options: OperationOptions = {}): Promise<void> {
    if (this.#state === 'closed') throw new NotConnectedError('this transport is closed');
    if (this.#state === 'connected') return;
    const gatt = this.device.gatt;
    if (gatt === undefined) {
      throw new NotConnectedError(
        'the browser gives no GATT server for this device; choose it again',
      );
    }
    this.#state = 'connecting';
    this.device.addEventListener('gattserverdisconnected', this.#onGattDisconnected);
    try {
      const server = await this.#guard(gatt.connect(), options.signal);
      const services: GattService[] = [];
      const characteristics = new Map<string, BluetoothRemoteGATTCharacteristic>();
      for (const service of await this.#guard(server.getPrimaryServices(), options.signal)) {
        const chars = await this.#guard(service.getCharacteristics(), options.signal);
        services.push({
          uuid: formatUuid(service.uuid),
          characteristics: chars.map((c) => ({
            uuid: formatUuid(c.uuid),
            properties: CHARACTERISTIC_PROPERTIES.filter(([p]) => c.properties[p]).map(
              ([, name]) => name,
            ),
          })),
        });
        for (const c of chars) {
          const key = normalizeUuid(c.uuid);
          if (!characteristics.has(key)) characteristics.set(key, c);
        }
      }
      if (this.#state !== 'connecting') {
        throw new LinkLostError('the link dropped while discovering services');
      }
      this.#services = services;
      this.#characteristics = characteristics;
      this.#state = 'connected';
      this.#everConnected = true;
    } catch (error) {
      if (this.#state === 'connecting') this.#state = this.#everConnected ? 'disconnected' : 'idle';
      this.device.removeEventListener('gattserverdisconnected', this.#onGattDisconnected);
      if (this.device.gatt?.connected) this.device.gatt.disconnect();
      if (error instanceof OtaError) throw error;
      throw new LinkLostError(
        `could not connect to ${this.device.name ?? 'the device'}: ${error instanceof Error ? error.message : String(error)}`,
        { cause: error },
      );
    }
    this.emit('connect');
  }

  async disconnect(_options: OperationOptions = {}): Promise<void> {
    if (this.#state !== 'connected' && this.#state !== 'connecting') return;
    this.#localDisconnect = true;
    try {
      this.device.gatt?.disconnect();
      // Chrome fires gattserverdisconnected for a local disconnect too, but not always before
      // this returns; the link is down either way.
      this.#onGattDisconnected();
    } finally {
      this.#localDisconnect = false;
    }
  }

  async write(characteristic: string, data: Uint8Array, options: WriteOptions): Promise<void> {
    const c = this.#characteristic(characteristic);
    if (data.length > this.#mtu - 3) throw new PayloadTooLargeError(data.length, this.#mtu);
    const value = Uint8Array.from(data);
    if (!options.withResponse) {
      await this.#guard(c.writeValueWithoutResponse(value), options.signal, characteristic);
      return;
    }
    await this.#request(() => c.writeValueWithResponse(value), options.signal, characteristic);
  }

  async read(characteristic: string, options: OperationOptions = {}): Promise<Uint8Array> {
    const c = this.#characteristic(characteristic);
    const key = normalizeUuid(characteristic);
    const changed: DataView[] = [];
    this.#duringRead.set(key, changed);
    let view: DataView | undefined;
    try {
      view = await this.#request(() => c.readValue(), options.signal, characteristic, 'read');
      return bytesOf(view);
    } finally {
      this.#duringRead.delete(key);
      // Notifications that came while reading, in their order, after the read's answer.
      for (const v of changed) if (v !== view) this.#dispatch(key, v);
    }
  }

  #dispatch(key: string, value: DataView): void {
    const data = bytesOf(value);
    for (const l of [...(this.#listeners.get(key) ?? [])]) {
      try {
        l(data);
      } catch {
        // One listener's failure does not stop delivery to the others (the contract).
      }
    }
  }

  async subscribe(
    characteristic: string,
    listener: NotificationListener,
    options: OperationOptions = {},
  ): Promise<void> {
    const c = this.#characteristic(characteristic);
    const key = normalizeUuid(characteristic);
    const listeners = this.#listeners.get(key);
    if (listeners !== undefined) {
      listeners.add(listener);
      return;
    }
    await this.#request(() => c.startNotifications(), options.signal, characteristic);
    const handler = (event: Event) => {
      const value = (event.target as BluetoothRemoteGATTCharacteristic).value;
      if (value === undefined) return;
      const reading = this.#duringRead.get(key);
      if (reading !== undefined) reading.push(value);
      else this.#dispatch(key, value);
    };
    c.addEventListener('characteristicvaluechanged', handler);
    this.#valueHandlers.set(key, handler);
    this.#listeners.set(key, new Set([listener]));
  }

  async unsubscribe(
    characteristic: string,
    listener: NotificationListener,
    options: OperationOptions = {},
  ): Promise<void> {
    const key = normalizeUuid(characteristic);
    const listeners = this.#listeners.get(key);
    if (listeners === undefined || !listeners.delete(listener)) return;
    if (listeners.size > 0) return;
    this.#listeners.delete(key);
    const c = this.#characteristics.get(key);
    const handler = this.#valueHandlers.get(key);
    this.#valueHandlers.delete(key);
    if (c !== undefined && handler !== undefined) {
      c.removeEventListener('characteristicvaluechanged', handler);
    }
    if (this.#state !== 'connected' || c === undefined) return;
    await this.#request(() => c.stopNotifications(), options.signal, characteristic);
  }

  async close(): Promise<void> {
    if (this.#state === 'closed') return;
    await this.disconnect();
    this.#state = 'closed';
  }

  #characteristic(characteristic: string): BluetoothRemoteGATTCharacteristic {
    if (this.#state !== 'connected') {
      throw this.#everConnected && this.#state !== 'closed'
        ? new LinkLostError('the link is down; connect again')
        : new NotConnectedError('not connected; call connect() first');
    }
    const c = this.#characteristics.get(normalizeUuid(characteristic));
    if (c === undefined) throw new UnknownCharacteristicError(formatUuid(characteristic));
    return c;
  }

  /** An ATT request: one at a time, as the bearer allows. */
  async #request<T>(
    start: () => Promise<T>,
    signal: AbortSignal | undefined,
    characteristic: string,
    operation: 'write' | 'read' = 'write',
  ): Promise<T> {
    if (this.#requestInFlight) {
      throw new TransportBusyError(
        `an ATT request is still outstanding; wait for it before the next one on ${formatUuid(characteristic)}`,
      );
    }
    signal?.throwIfAborted();
    this.#requestInFlight = true;
    const op = start();
    // The bearer stays busy until the browser's request settles, even if the caller gave up.
    op.then(
      () => {
        this.#requestInFlight = false;
      },
      () => {
        this.#requestInFlight = false;
      },
    );
    return this.#guard(op, signal, characteristic, operation);
  }

  /** `op`, rejected at once when the link drops or `signal` fires; GATT errors mapped. */
  #guard<T>(
    op: Promise<T>,
    signal: AbortSignal | undefined,
    characteristic?: string,
    operation: 'write' | 'read' = 'write',
  ): Promise<T> {
    if (signal?.aborted) {
      op.catch(() => {});
      return Promise.reject(new AbortError('aborted before it started', { cause: signal.reason }));
    }
    return new Promise<T>((resolve, reject) => {
      const pending: Pending = { reject };
      const onAbort = () => {
        done();
        reject(new AbortError('aborted', { cause: signal?.reason }));
      };
      const done = () => {
        this.#pending.delete(pending);
        signal?.removeEventListener('abort', onAbort);
      };
      this.#pending.add(pending);
      signal?.addEventListener('abort', onAbort, { once: true });
      op.then(
        (value) => {
          done();
          resolve(value);
        },
        (error: unknown) => {
          done();
          reject(
            characteristic === undefined
              ? error
              : gattError(error, formatUuid(characteristic), operation),
          );
        },
      );
    });
  }

  #lost(info: DisconnectInfo): void {
    if (this.#state !== 'connected' && this.#state !== 'connecting') return;
    const wasConnected = this.#state === 'connected';
    this.#state = 'disconnected';
    this.device.removeEventListener('gattserverdisconnected', this.#onGattDisconnected);
    for (const [key, handler] of this.#valueHandlers) {
      this.#characteristics.get(key)?.removeEventListener('characteristicvaluechanged', handler);
    }
    this.#valueHandlers.clear();
    this.#listeners.clear();
    this.#requestInFlight = false;
    const error = new LinkLostError(`link lost: ${info.message}`);
    for (const p of [...this.#pending]) p.reject(error);
    this.#pending.clear();
    if (wasConnected) this.emit('disconnect', info);
  }
}

/** A device the page chose through the browser's chooser. */
export interface WebFoundDevice extends FoundDevice {
  device: BluetoothDevice;
}

export interface WebBluetoothAccessOptions {
  /** The Bluetooth object (navigator.bluetooth). */
  bluetooth: Bluetooth;
  /** Only devices advertising this name (or name prefix with `namePrefix`). */
  name?: string;
  namePrefix?: string;
  mtu?: number;
}

/** The services a page must name to use them: the OTA service (v2 is in it) and DIS. */
export const OPTIONAL_SERVICES = [expandUuid(DEVICE_INFORMATION_SERVICE_UUID)];

/** What `requestDevice` gets: devices offering the OTA service, by name when one is given. */
export function requestOptions(options: {
  name?: string | undefined;
  namePrefix?: string | undefined;
}): RequestDeviceOptions {
  const filter: BluetoothLEScanFilter = {
    services: [BASELINE_SERVICE_UUID],
    ...(options.name
      ? { name: options.name }
      : options.namePrefix
        ? { namePrefix: options.namePrefix }
        : {}),
  };
  return { filters: [filter], optionalServices: OPTIONAL_SERVICES };
}

/**
 * `updateDevice()`'s access over Web Bluetooth: `find` opens the browser's chooser (call it from
 * a click: the browser wants a user gesture), `findAgain` keeps the device the user chose (the
 * browser reconnects to it by its handle, so the device need not be found again).
 */
export function webBluetoothAccess(
  options: WebBluetoothAccessOptions,
): DeviceAccess<WebFoundDevice> {
  return {
    async find() {
      let device: BluetoothDevice;
      try {
        device = await options.bluetooth.requestDevice(requestOptions(options));
      } catch (error) {
        const name = (error as { name?: unknown } | undefined)?.name;
        const found = new Error(
          name === 'NotFoundError'
            ? 'no device was chosen: choose a device that offers the OTA service in the browser window'
            : `the browser could not look for devices: ${error instanceof Error ? error.message : String(error)}`,
          { cause: error },
        );
        Object.assign(found, { code: 'DEVICE_NOT_FOUND' });
        throw found;
      }
      return { address: device.id, name: device.name ?? undefined, device };
    },
    async findAgain(device) {
      return device;
    },
    transport(device) {
      return new WebBluetoothTransport(
        device.device,
        options.mtu === undefined ? {} : { mtu: options.mtu },
      );
    },
  };
}
