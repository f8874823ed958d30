/**
 * A fake BLE transport and a fake baseline device, in the spirit of serialport's MockBinding:
 * a registry of fake devices, recorded traffic, every operation asynchronous, and the rules of
 * the {@link Transport} interface enforced, so that code tested against it does not rely on
 * anything a real BLE stack would not give it.
 *
 * This is a test double for the protocol layer. The virtual rig (packages/sim) is the
 * high-fidelity simulation: real firmware code, a link timing model and noble's own HCI stack.
 */

import type {
  DisconnectInfo,
  GattCharacteristic,
  GattService,
  NotificationListener,
  OperationOptions,
  Transport,
  TransportEventMap,
  WriteOptions,
} from '@esp-ble-ota/protocol';
import {
  AbortError,
  AttError,
  AttStatus,
  BASELINE_DEVICE_NAME,
  BASELINE_GATT,
  BadArgumentError,
  type Clock,
  DEVICE_INFORMATION_SERVICE_UUID,
  decodePacketSize,
  FIRMWARE_REVISION_UUID,
  formatUuid,
  LinkLostError,
  MANUFACTURER_NAME_UUID,
  MAX_ATTRIBUTE_VALUE_LENGTH,
  MODEL_NUMBER_UUID,
  NotConnectedError,
  normalizeUuid,
  Opcode,
  OTA_CONTROL_UUID,
  OTA_DATA_UUID,
  OtaError,
  opcodeName,
  PayloadTooLargeError,
  systemClock,
  TransportBusyError,
  TypedEmitter,
  UnknownCharacteristicError,
} from '@esp-ble-ota/protocol';

/** HCI disconnect reasons (Core spec Vol 1 Part F). */
export const HciReason = {
  CONNECTION_TIMEOUT: 0x08,
  REMOTE_USER_TERMINATED: 0x13,
  LOCAL_HOST_TERMINATED: 0x16,
} as const;

// ---------------------------------------------------------------------------------------------
// The device side of the seam

/** What a fake device hands back for a write: an ATT status, or 'never' to leave it unanswered. */
export type FakeWriteOutcome = number | 'never' | Promise<number | 'never'>;

/** The connection as a fake device sees it. Calls after the link is down are ignored. */
export interface FakePeripheralLink {
  readonly mtu: number;
  readonly up: boolean;
  /** Send a notification; the central drops it if nobody listens. */
  notify(characteristic: string, data: Uint8Array): void;
  /** End the link from the device side (a restart looks like a supervision timeout, 0x08). */
  disconnect(reason?: number): void;
}

/**
 * A fake device. Characteristic UUIDs passed to its callbacks are normalised
 * (`normalizeUuid`). Callbacks run in the device's own "host task": one at a time, in order.
 */
export interface FakePeripheral {
  readonly address: string;
  readonly name: string;
  readonly gatt: readonly GattService[];
  /** The largest ATT_MTU the device accepts in the MTU exchange. */
  readonly preferredMtu: number;
  onConnect(link: FakePeripheralLink): void;
  onDisconnect(): void;
  onWrite(characteristic: string, data: Uint8Array, withResponse: boolean): FakeWriteOutcome;
  /** A value, or an ATT error status. */
  onRead(characteristic: string): Uint8Array | number;
  onSubscribe?(characteristic: string, enabled: boolean): void;
}

/** Where fake transports find their devices, like MockBinding's port list. */
export class FakeDeviceRegistry {
  readonly #devices = new Map<string, FakePeripheral>();
  readonly #connectedTo = new Map<string, FakeTransport>();

  add<P extends FakePeripheral>(device: P): P {
    const key = device.address.toLowerCase();
    if (this.#devices.has(key)) {
      throw new BadArgumentError(`a fake device with address ${device.address} already exists`);
    }
    this.#devices.set(key, device);
    return device;
  }

  remove(address: string): void {
    this.#devices.delete(address.toLowerCase());
  }

  get(address: string): FakePeripheral | undefined {
    return this.#devices.get(address.toLowerCase());
  }

  /** Like a scan result: every registered device's address and advertised name. */
  list(): { address: string; name: string }[] {
    return [...this.#devices.values()].map((d) => ({ address: d.address, name: d.name }));
  }

  /** Forget every device (between tests). Transports still connected keep their link. */
  reset(): void {
    this.#devices.clear();
    this.#connectedTo.clear();
  }

  /** @internal one central at a time per device, like the baseline firmware. */
  claim(address: string, transport: FakeTransport): boolean {
    const key = address.toLowerCase();
    const holder = this.#connectedTo.get(key);
    if (holder !== undefined && holder !== transport) return false;
    this.#connectedTo.set(key, transport);
    return true;
  }

  /** @internal */
  release(address: string, transport: FakeTransport): void {
    const key = address.toLowerCase();
    if (this.#connectedTo.get(key) === transport) this.#connectedTo.delete(key);
  }
}

/** The registry used when a FakeTransport is given none. */
export const fakeDevices = new FakeDeviceRegistry();

// ---------------------------------------------------------------------------------------------
// The central side: FakeTransport

export type FakeRecord =
  | { kind: 'connect'; at: number; mtu: number }
  | { kind: 'disconnect'; at: number; initiator: 'local' | 'remote'; reason?: number }
  | { kind: 'write'; at: number; characteristic: string; data: Uint8Array; withResponse: boolean }
  | { kind: 'read'; at: number; characteristic: string }
  | { kind: 'subscribe'; at: number; characteristic: string }
  | { kind: 'unsubscribe'; at: number; characteristic: string }
  | { kind: 'notification'; at: number; characteristic: string; data: Uint8Array };

export interface FakeTransportOptions {
  registry?: FakeDeviceRegistry;
  /** The ATT_MTU this central asks for (noble asks for 256); the result is min(this, device's). */
  mtu?: number;
  /**
   * One-way delay in ms for every hop (central to device and back), through setTimeout so that
   * fake timers control it. 0 (default) delivers through microtasks: async but instant.
   */
  latencyMs?: number;
  /** Controller buffers for Write Commands; a command holds one until the device has it. */
  txBuffers?: number;
  /** Timestamps in `recording`. */
  clock?: Clock;
}

interface Pending {
  reject(error: Error): void;
}

type State = 'idle' | 'connected' | 'disconnected' | 'closed';

interface Connection {
  id: number;
  device: FakePeripheral;
  deviceSideUp: boolean;
}

export class FakeTransport extends TypedEmitter<TransportEventMap> implements Transport {
  readonly address: string;
  /** Everything that crossed the link, in order. Written values are copies. */
  readonly recording: FakeRecord[] = [];

  readonly #registry: FakeDeviceRegistry;
  readonly #desiredMtu: number;
  readonly #latencyMs: number;
  readonly #txBuffers: number;
  readonly #clock: Clock;
  #state: State = 'idle';
  #conn: Connection | undefined;
  #nextConnId = 1;
  #mtu = 0;
  #services: readonly GattService[] = [];
  #requestInFlight = false;
  readonly #pending = new Set<Pending>();
  readonly #listeners = new Map<string, Set<NotificationListener>>();
  readonly #notifying = new Set<string>();
  #credits: number;
  #creditWaiters: { resolve(): void; reject(error: Error): void }[] = [];

  constructor(address: string, options: FakeTransportOptions = {}) {
    super();
    const { registry = fakeDevices, mtu = 256, latencyMs = 0, txBuffers = 4 } = options;
    if (!Number.isInteger(mtu) || mtu < 23 || mtu > 517) {
      throw new BadArgumentError(`central MTU must be an integer from 23 to 517, got ${mtu}`);
    }
    if (!Number.isInteger(txBuffers) || txBuffers < 1) {
      throw new BadArgumentError(`txBuffers must be a positive integer, got ${txBuffers}`);
    }
    this.address = address;
    this.#registry = registry;
    this.#desiredMtu = mtu;
    this.#latencyMs = latencyMs;
    this.#txBuffers = txBuffers;
    this.#credits = txBuffers;
    this.#clock = options.clock ?? systemClock;
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

  /** Writes only, as `{ characteristic, data, withResponse }` (characteristic in display form). */
  writes(): { characteristic: string; data: Uint8Array; withResponse: boolean }[] {
    return this.recording.flatMap((r) =>
      r.kind === 'write'
        ? [{ characteristic: r.characteristic, data: r.data, withResponse: r.withResponse }]
        : [],
    );
  }

  services(): readonly GattService[] {
    return this.#services;
  }

  async connect(options: OperationOptions = {}): Promise<void> {
    if (this.#state === 'closed') {
      throw new NotConnectedError('this transport is closed; create a new one to connect again');
    }
    throwIfAborted(options.signal, `connect to ${this.address}`);
    if (this.#state === 'connected') return;
    const device = this.#registry.get(this.address);
    if (device === undefined) {
      throw new NotConnectedError(
        `no fake device at ${this.address}; add one to the registry first (registry.add(new FakeBaselineDevice({ address })))`,
      );
    }
    await this.#delay();
    throwIfAborted(options.signal, `connect to ${this.address}`);
    if ((this.#state as State) === 'closed') {
      throw new NotConnectedError('the transport was closed while connecting');
    }
    if (!this.#registry.claim(this.address, this)) {
      throw new NotConnectedError(
        `fake device ${this.address} is already connected to another central; disconnect that one first`,
      );
    }
    const conn: Connection = { id: this.#nextConnId++, device, deviceSideUp: true };
    this.#conn = conn;
    this.#mtu = Math.max(23, Math.min(this.#desiredMtu, device.preferredMtu));
    this.#services = device.gatt;
    this.#state = 'connected';
    this.#credits = this.#txBuffers;
    const transport = this;
    const mtu = this.#mtu;
    device.onConnect({
      mtu,
      get up() {
        return conn.deviceSideUp && transport.#conn === conn;
      },
      notify(characteristic, data) {
        if (!this.up) return;
        const key = normalizeUuid(characteristic);
        const copy = data.slice();
        transport.#toCentral(conn, () => transport.#deliverNotification(key, copy));
      },
      disconnect(reason: number = HciReason.REMOTE_USER_TERMINATED) {
        if (!this.up) return;
        conn.deviceSideUp = false;
        transport.#toCentral(conn, () =>
          transport.#linkDown({
            initiator: 'remote',
            reason,
            message: `the device ended the link (HCI reason 0x${reason.toString(16).padStart(2, '0')})`,
          }),
        );
      },
    });
    this.#record({ kind: 'connect', at: this.#clock.now(), mtu });
    this.emit('connect');
  }

  async disconnect(options: OperationOptions = {}): Promise<void> {
    throwIfAborted(options.signal, `disconnect from ${this.address}`);
    if (this.#state !== 'connected') return;
    this.#linkDown({
      initiator: 'local',
      reason: HciReason.LOCAL_HOST_TERMINATED,
      message: 'disconnected by this side',
    });
    await this.#delay();
  }

  async close(): Promise<void> {
    if (this.#state === 'connected') {
      this.#linkDown({
        initiator: 'local',
        reason: HciReason.LOCAL_HOST_TERMINATED,
        message: 'transport closed',
      });
    }
    this.#state = 'closed';
    await this.#delay();
  }

  async write(characteristic: string, data: Uint8Array, options: WriteOptions): Promise<void> {
    const what = `write to ${formatUuid(characteristic)}`;
    const conn = this.#usable(options.signal, what);
    const key = this.#characteristic(characteristic).key;
    if (!(data instanceof Uint8Array)) {
      throw new BadArgumentError(`${what}: data must be a Uint8Array`);
    }
    if (data.length > this.#mtu - 3) throw new PayloadTooLargeError(data.length, this.#mtu);
    if (typeof options?.withResponse !== 'boolean') {
      throw new BadArgumentError(`${what}: say withResponse: true or false`);
    }
    const copy = data.slice();
    if (options.withResponse) {
      this.#claimBearer(what);
      this.#record({
        kind: 'write',
        at: this.#clock.now(),
        characteristic: formatUuid(key),
        data: copy,
        withResponse: true,
      });
      const status = await this.#request<number>(conn, options.signal, what, (answer) => {
        this.#toDevice(conn, () => {
          const outcome = conn.device.onWrite(key, copy, true);
          this.#answerWhenReady(conn, outcome, answer);
        });
      });
      if (status !== AttStatus.SUCCESS) throw new AttError(formatUuid(key), 'write', status);
      return;
    }
    await this.#takeCredit(options.signal, what);
    if (this.#conn !== conn) throw this.#notUsableError(what);
    this.#record({
      kind: 'write',
      at: this.#clock.now(),
      characteristic: formatUuid(key),
      data: copy,
      withResponse: false,
    });
    this.#toDevice(conn, () => {
      this.#returnCredit();
      const outcome = conn.device.onWrite(key, copy, false);
      // A Write Command has no response; a device that would answer gets ignored.
      if (outcome instanceof Promise) outcome.catch(() => {});
    });
  }

  async read(characteristic: string, options: OperationOptions = {}): Promise<Uint8Array> {
    const what = `read of ${formatUuid(characteristic)}`;
    const conn = this.#usable(options.signal, what);
    const { key, chr } = this.#characteristic(characteristic);
    this.#claimBearer(what);
    this.#record({ kind: 'read', at: this.#clock.now(), characteristic: formatUuid(key) });
    const result = await this.#request<Uint8Array | number>(
      conn,
      options.signal,
      what,
      (answer) => {
        this.#toDevice(conn, () => {
          // The ATT server, not the application, refuses reads the characteristic does not allow.
          const value = chr.properties.includes('read')
            ? conn.device.onRead(key)
            : AttStatus.READ_NOT_PERMITTED;
          const copy = typeof value === 'number' ? value : value.slice(0, this.#mtu - 1);
          this.#toCentral(conn, () => answer(copy));
        });
      },
    );
    if (typeof result === 'number') throw new AttError(formatUuid(key), 'read', result);
    return result;
  }

  async subscribe(
    characteristic: string,
    listener: NotificationListener,
    options: OperationOptions = {},
  ): Promise<void> {
    const what = `subscription to ${formatUuid(characteristic)}`;
    const conn = this.#usable(options.signal, what);
    const { key, chr } = this.#characteristic(characteristic);
    if (!chr.properties.includes('notify') && !chr.properties.includes('indicate')) {
      throw new OtaError(
        'PROTOCOL',
        `${what}: the characteristic declares neither notify nor indicate, so it has no CCCD`,
      );
    }
    if (this.#notifying.has(key)) {
      await this.#delay();
      if (this.#conn !== conn) throw this.#notUsableError(what);
      this.#listenersOf(key).add(listener);
      return;
    }
    this.#claimBearer(what);
    this.#record({ kind: 'subscribe', at: this.#clock.now(), characteristic: formatUuid(key) });
    await this.#request<number>(conn, options.signal, what, (answer) => {
      this.#toDevice(conn, () => {
        conn.device.onSubscribe?.(key, true);
        this.#toCentral(conn, () => {
          // Listeners count from the moment the device confirmed the CCCD write.
          this.#notifying.add(key);
          this.#listenersOf(key).add(listener);
          answer(AttStatus.SUCCESS);
        });
      });
    });
  }

  async unsubscribe(
    characteristic: string,
    listener: NotificationListener,
    options: OperationOptions = {},
  ): Promise<void> {
    const key = normalizeUuid(characteristic);
    const set = this.#listeners.get(key);
    const removed = set?.delete(listener) ?? false;
    if (!removed || (set?.size ?? 0) > 0 || this.#state !== 'connected') {
      await this.#delay();
      return;
    }
    const what = `unsubscription from ${formatUuid(key)}`;
    const conn = this.#usable(options.signal, what);
    this.#claimBearer(what);
    this.#notifying.delete(key);
    this.#record({ kind: 'unsubscribe', at: this.#clock.now(), characteristic: formatUuid(key) });
    await this.#request<number>(conn, options.signal, what, (answer) => {
      this.#toDevice(conn, () => {
        conn.device.onSubscribe?.(key, false);
        this.#toCentral(conn, () => answer(AttStatus.SUCCESS));
      });
    });
  }

  // -------------------------------------------------------------------------------------------

  #record(record: FakeRecord): void {
    this.recording.push(record);
  }

  #usable(signal: AbortSignal | undefined, what: string): Connection {
    throwIfAborted(signal, what);
    if (this.#state !== 'connected' || this.#conn === undefined) throw this.#notUsableError(what);
    return this.#conn;
  }

  #notUsableError(what: string): Error {
    if (this.#state === 'disconnected') {
      return new LinkLostError(`${what} failed: the link is down; call connect() again`);
    }
    if (this.#state === 'closed')
      return new NotConnectedError(`${what} failed: transport is closed`);
    if (this.#state === 'idle') {
      return new NotConnectedError(`${what} failed: not connected; call connect() first`);
    }
    return new LinkLostError(`${what} failed: the link dropped meanwhile`);
  }

  #characteristic(uuid: string): { key: string; chr: GattCharacteristic } {
    const key = normalizeUuid(uuid);
    for (const service of this.#services) {
      for (const chr of service.characteristics) {
        if (normalizeUuid(chr.uuid) === key) return { key, chr };
      }
    }
    throw new UnknownCharacteristicError(formatUuid(uuid));
  }

  #claimBearer(what: string): void {
    if (this.#requestInFlight) {
      throw new TransportBusyError(
        `${what} rejected: another ATT request is still outstanding (one at a time per bearer); await it first`,
      );
    }
    this.#requestInFlight = true;
  }

  /**
   * Run one ATT request. `start` sends it and calls `answer` when the response is back; the
   * bearer stays busy until then even if the caller aborted (a real request cannot be recalled).
   */
  #request<T>(
    conn: Connection,
    signal: AbortSignal | undefined,
    what: string,
    start: (answer: (value: T) => void) => void,
  ): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const pending: Pending = {
        reject: (error) => {
          if (settled) return;
          settled = true;
          signal?.removeEventListener('abort', onAbort);
          this.#pending.delete(pending);
          reject(error);
        },
      };
      const onAbort = () => pending.reject(abortError(signal, what));
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#pending.add(pending);
      start((value) => {
        if (this.#conn === conn) this.#requestInFlight = false;
        if (settled) return;
        settled = true;
        signal?.removeEventListener('abort', onAbort);
        this.#pending.delete(pending);
        resolve(value);
      });
    });
  }

  #answerWhenReady(
    conn: Connection,
    outcome: FakeWriteOutcome,
    answer: (status: number) => void,
  ): void {
    if (outcome === 'never') return;
    if (typeof outcome === 'number') {
      this.#toCentral(conn, () => answer(outcome));
      return;
    }
    outcome.then(
      (status) => this.#answerWhenReady(conn, status, answer),
      () => this.#answerWhenReady(conn, AttStatus.UNLIKELY_ERROR, answer),
    );
  }

  async #takeCredit(signal: AbortSignal | undefined, what: string): Promise<void> {
    if (this.#credits > 0) {
      this.#credits--;
      // Taking a free controller buffer costs no link time, only a turn of the event loop.
      await Promise.resolve();
      return;
    }
    await new Promise<void>((resolve, reject) => {
      const waiter = {
        resolve: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
        reject: (error: Error) => {
          signal?.removeEventListener('abort', onAbort);
          reject(error);
        },
      };
      const onAbort = () => {
        this.#creditWaiters = this.#creditWaiters.filter((w) => w !== waiter);
        waiter.reject(abortError(signal, what));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#creditWaiters.push(waiter);
    });
  }

  #returnCredit(): void {
    const next = this.#creditWaiters.shift();
    // The returned buffer goes straight to the next waiting writer.
    if (next !== undefined) next.resolve();
    else this.#credits = Math.min(this.#credits + 1, this.#txBuffers);
  }

  #listenersOf(key: string): Set<NotificationListener> {
    let set = this.#listeners.get(key);
    if (set === undefined) {
      set = new Set();
      this.#listeners.set(key, set);
    }
    return set;
  }

  #deliverNotification(key: string, data: Uint8Array): void {
    this.#record({
      kind: 'notification',
      at: this.#clock.now(),
      characteristic: formatUuid(key),
      data,
    });
    if (!this.#notifying.has(key)) return;
    for (const listener of [...(this.#listeners.get(key) ?? [])]) {
      try {
        listener(data.slice());
      } catch (error) {
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }

  #linkDown(info: DisconnectInfo): void {
    const conn = this.#conn;
    if (this.#state !== 'connected' || conn === undefined) return;
    this.#state = 'disconnected';
    this.#conn = undefined;
    conn.deviceSideUp = false;
    this.#requestInFlight = false;
    this.#listeners.clear();
    this.#notifying.clear();
    this.#registry.release(this.address, this);
    const error = new LinkLostError(`link lost: ${info.message}`, { reason: info.reason });
    for (const pending of [...this.#pending]) pending.reject(error);
    for (const waiter of this.#creditWaiters.splice(0)) waiter.reject(error);
    conn.device.onDisconnect();
    this.#record({
      kind: 'disconnect',
      at: this.#clock.now(),
      initiator: info.initiator,
      ...(info.reason === undefined ? {} : { reason: info.reason }),
    });
    this.emit('disconnect', info);
  }

  #hop(run: () => void): void {
    if (this.#latencyMs > 0) globalThis.setTimeout(run, this.#latencyMs);
    else queueMicrotask(run);
  }

  /** Central to device; dropped if the link went down on the way. */
  #toDevice(conn: Connection, run: () => void): void {
    this.#hop(() => {
      if (this.#conn === conn && conn.deviceSideUp) run();
    });
  }

  /** Device to central, in order with everything else the device sent. */
  #toCentral(conn: Connection, run: () => void): void {
    this.#hop(() => {
      if (this.#conn === conn) run();
    });
  }

  #delay(): Promise<void> {
    return new Promise((resolve) => this.#hop(resolve));
  }
}

function abortError(signal: AbortSignal | undefined, what: string): AbortError {
  return new AbortError(`${what} aborted`, { cause: signal?.reason });
}

function throwIfAborted(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted) throw abortError(signal, what);
}

// ---------------------------------------------------------------------------------------------
// A fake device that behaves like the baseline firmware (SEED-PROTOCOL.md)

export interface FakeBaselineFaults {
  /** esp_ota_begin fails: answer REQUEST with REQUEST_NAK. */
  nakRequest?: boolean;
  /** esp_ota_end fails: answer DONE with DONE_NAK. */
  nakDone?: boolean;
  /**
   * The link drops (supervision timeout) when a data packet arrives that would bring the bytes
   * received since REQUEST to this many or more; that packet is never answered.
   */
  dropLinkAfterBytes?: number;
  /**
   * Never answer this step: no notification after REQUEST or DONE (the Write Response, if
   * any, still comes), or no Write Response to any data packet ('DATA').
   */
  noAnswerTo?: 'REQUEST' | 'DONE' | 'DATA';
  /** After DONE_ACK the device does not restart (and answers the DONE write). */
  noRestart?: boolean;
  /**
   * Our firmware once it gave up on the image: data packets that arrive after this many bytes
   * are answered with this ATT status (e.g. IMAGE_REFUSED) and not written.
   */
  refuseDataAfterBytes?: { bytes: number; status: number };
}

export interface FakeBaselineDeviceOptions {
  address?: string;
  name?: string;
  /** ESP-IDF's NimBLE asks for 256 by default. */
  preferredMtu?: number;
  manufacturer?: string;
  model?: string;
  /** When set, the DIS gains a Firmware Revision characteristic (our firmware has one). */
  firmwareRevision?: string;
  /**
   * NimBLE's ATT server accepts Write Commands on characteristics that declare only "write";
   * false makes the device drop them silently, like a stack that checks properties.
   */
  acceptWriteCommands?: boolean;
  /**
   * The baseline writes `packet_size` bytes for every packet, so a short last packet is
   * followed by stale bytes of the previous one (a defect kept on purpose). false writes
   * exactly what arrived.
   */
  padShortPackets?: boolean;
  /**
   * esp_ota_end's verdict on what was written: undefined to accept, else the reason it fails.
   * The default only checks what esp_ota_write checks (first byte is the 0xE9 image magic).
   */
  validateImage?: (written: Uint8Array) => string | undefined;
  /** The baseline sleeps this long inside the GATT callback before esp_restart(). */
  restartDelayMs?: number;
  faults?: FakeBaselineFaults;
}

const ESP_IMAGE_MAGIC = 0xe9;

function defaultValidate(written: Uint8Array): string | undefined {
  if (written.length === 0) return 'no data was written (esp_ota_end: ESP_ERR_INVALID_ARG)';
  if (written[0] !== ESP_IMAGE_MAGIC)
    return 'image magic is not 0xE9 (ESP_ERR_OTA_VALIDATE_FAILED)';
  return undefined;
}

/**
 * The baseline firmware's OTA behaviour, modeled from its GATT callbacks: a 1-byte control
 * value, a 512-byte data buffer, `esp_ota_write` of `packet_size` bytes per packet, the
 * notification sent from inside the write callback (so it precedes the Write Response), and
 * the restart from inside the DONE callback (so a DONE Write Request is never answered).
 */
export class FakeBaselineDevice implements FakePeripheral {
  readonly address: string;
  readonly name: string;
  readonly preferredMtu: number;
  readonly gatt: readonly GattService[];
  /** Steerable at any time. */
  faults: FakeBaselineFaults;
  /** Lines like the firmware's ESP_LOG output, for debugging failed tests. */
  readonly log: string[] = [];

  /** The OTA Control characteristic's value (what a read returns). */
  controlValue = 0;
  /** The OTA Data characteristic's buffer; stale bytes stay when a shorter value arrives. */
  readonly dataValue = new Uint8Array(MAX_ATTRIBUTE_VALUE_LENGTH);
  updating = false;
  packetSize = 0;
  /** Bytes passed to esp_ota_write since the last REQUEST. */
  get written(): Uint8Array {
    return this.#flash.subarray(0, this.#flashLength);
  }
  /** Data bytes received over the air since the last REQUEST (what the client sent). */
  receivedBytes = 0;
  packetsReceived = 0;
  /** Completed restarts; `bootedImage` is what the bootloader would boot now. */
  bootCount = 0;
  bootedImage: Uint8Array | undefined;
  subscribed = false;

  readonly #manufacturer: string;
  readonly #model: string;
  readonly #firmwareRevision: string | undefined;
  readonly #acceptWriteCommands: boolean;
  readonly #padShortPackets: boolean;
  readonly #validate: (written: Uint8Array) => string | undefined;
  readonly #restartDelayMs: number;
  #link: FakePeripheralLink | undefined;
  // Grows by doubling: a 1 MB image arrives in thousands of packets.
  #flash = new Uint8Array(4096);
  #flashLength = 0;
  #restartTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(options: FakeBaselineDeviceOptions = {}) {
    this.address = options.address ?? 'fa:ke:00:00:00:01';
    this.name = options.name ?? BASELINE_DEVICE_NAME;
    this.preferredMtu = options.preferredMtu ?? 256;
    this.#manufacturer = options.manufacturer ?? 'Company 42';
    this.#model = options.model ?? 'ESP32';
    this.#firmwareRevision = options.firmwareRevision;
    this.#acceptWriteCommands = options.acceptWriteCommands ?? true;
    this.#padShortPackets = options.padShortPackets ?? true;
    this.#validate = options.validateImage ?? defaultValidate;
    this.#restartDelayMs = options.restartDelayMs ?? 500;
    this.faults = { ...options.faults };
    this.gatt =
      this.#firmwareRevision === undefined
        ? BASELINE_GATT
        : BASELINE_GATT.map((service) =>
            service.uuid === DEVICE_INFORMATION_SERVICE_UUID
              ? {
                  ...service,
                  characteristics: [
                    ...service.characteristics,
                    { uuid: FIRMWARE_REVISION_UUID, properties: ['read'] },
                  ],
                }
              : service,
          );
  }

  /** The image bytes as the client sent them (without the baseline's padding). */
  get receivedImage(): Uint8Array {
    return this.written.subarray(0, Math.min(this.written.length, this.receivedBytes));
  }

  /** Push an arbitrary value on OTA Control, e.g. to test how a client treats noise. */
  sendControlNotification(data: Uint8Array): void {
    this.#link?.notify(OTA_CONTROL_UUID, data);
  }

  onConnect(link: FakePeripheralLink): void {
    this.#link = link;
    this.log.push(`connected, MTU ${link.mtu}`);
  }

  onDisconnect(): void {
    this.#link = undefined;
    this.subscribed = false;
    this.log.push('disconnected');
  }

  onSubscribe(characteristic: string, enabled: boolean): void {
    if (characteristic === normalizeUuid(OTA_CONTROL_UUID)) this.subscribed = enabled;
  }

  onRead(characteristic: string): Uint8Array | number {
    switch (characteristic) {
      case normalizeUuid(MANUFACTURER_NAME_UUID):
        return new TextEncoder().encode(this.#manufacturer);
      case normalizeUuid(MODEL_NUMBER_UUID):
        return new TextEncoder().encode(this.#model);
      case normalizeUuid(FIRMWARE_REVISION_UUID):
        return this.#firmwareRevision === undefined
          ? AttStatus.INVALID_HANDLE
          : new TextEncoder().encode(this.#firmwareRevision);
      case normalizeUuid(OTA_CONTROL_UUID):
        return Uint8Array.of(this.controlValue);
      default:
        return AttStatus.READ_NOT_PERMITTED;
    }
  }

  onWrite(characteristic: string, data: Uint8Array, withResponse: boolean): FakeWriteOutcome {
    const isControl = characteristic === normalizeUuid(OTA_CONTROL_UUID);
    const isData = characteristic === normalizeUuid(OTA_DATA_UUID);
    if (!isControl && !isData) return AttStatus.WRITE_NOT_PERMITTED;
    if (!withResponse && !this.#acceptWriteCommands) {
      this.log.push(`dropped a Write Command to ${formatUuid(characteristic)}`);
      return AttStatus.WRITE_NOT_PERMITTED;
    }
    return isControl ? this.#writeControl(data, withResponse) : this.#writeData(data);
  }

  #writeControl(data: Uint8Array, withResponse: boolean): FakeWriteOutcome {
    if (data.length !== 1) return AttStatus.INVALID_ATTRIBUTE_VALUE_LENGTH;
    this.controlValue = data[0] as number;
    if (this.controlValue === Opcode.REQUEST) {
      this.#request();
      return AttStatus.SUCCESS;
    }
    if (this.controlValue === Opcode.DONE) return this.#done(withResponse);
    this.log.push(`control value ${opcodeName(this.controlValue) ?? this.controlValue} ignored`);
    return AttStatus.SUCCESS;
  }

  #request(): void {
    this.log.push('OTA has been requested via BLE.');
    if (this.faults.nakRequest) {
      this.log.push('esp_ota_begin failed (ESP_ERR_OTA_PARTITION_CONFLICT)');
      this.controlValue = Opcode.REQUEST_NAK;
    } else {
      this.controlValue = Opcode.REQUEST_ACK;
      this.updating = true;
      this.packetSize = decodePacketSize(this.dataValue);
      this.#flashLength = 0;
      this.receivedBytes = 0;
      this.packetsReceived = 0;
      this.log.push(`Packet size is: ${this.packetSize}`);
    }
    if (this.faults.noAnswerTo === 'REQUEST') return;
    this.#link?.notify(OTA_CONTROL_UUID, Uint8Array.of(this.controlValue));
  }

  #done(withResponse: boolean): FakeWriteOutcome {
    const wasUpdating = this.updating;
    this.updating = false;
    let failure: string | undefined;
    if (!wasUpdating) failure = 'no OTA in progress (esp_ota_end: ESP_ERR_NOT_FOUND)';
    else if (this.faults.nakDone) failure = 'esp_ota_end failed (fault injected)';
    else failure = this.#validate(this.written);
    if (failure !== undefined) this.log.push(`Image validation failed: ${failure}`);
    this.controlValue = failure === undefined ? Opcode.DONE_ACK : Opcode.DONE_NAK;
    if (this.faults.noAnswerTo !== 'DONE') {
      this.#link?.notify(OTA_CONTROL_UUID, Uint8Array.of(this.controlValue));
    }
    if (failure !== undefined || this.faults.noRestart) return AttStatus.SUCCESS;
    this.log.push('Preparing to restart!');
    const image = this.written.slice();
    const link = this.#link;
    // The baseline sleeps and restarts inside the callback: the Write Response never leaves.
    this.#restartTimer = setTimeout(() => {
      this.#restartTimer = undefined;
      this.bootCount++;
      this.bootedImage = image;
      this.controlValue = 0;
      this.packetSize = 0;
      this.dataValue.fill(0);
      this.log.push('restarted');
      link?.disconnect(HciReason.CONNECTION_TIMEOUT);
    }, this.#restartDelayMs);
    return withResponse ? 'never' : AttStatus.SUCCESS;
  }

  #writeData(data: Uint8Array): FakeWriteOutcome {
    if (data.length < 1 || data.length > MAX_ATTRIBUTE_VALUE_LENGTH) {
      return AttStatus.INVALID_ATTRIBUTE_VALUE_LENGTH;
    }
    if (this.updating) {
      const drop = this.faults.dropLinkAfterBytes;
      if (drop !== undefined && this.receivedBytes + data.length >= drop) {
        this.log.push(`link dropped at ${this.receivedBytes} bytes (fault injected)`);
        this.#link?.disconnect(HciReason.CONNECTION_TIMEOUT);
        return 'never';
      }
    }
    const refuse = this.faults.refuseDataAfterBytes;
    if (this.updating && refuse !== undefined && this.receivedBytes >= refuse.bytes) {
      this.log.push(`image data refused with ATT error ${refuse.status} (fault injected)`);
      return refuse.status;
    }
    this.dataValue.set(data);
    if (!this.updating) return AttStatus.SUCCESS;
    this.receivedBytes += data.length;
    this.packetsReceived++;
    const chunk = this.#padShortPackets
      ? this.dataValue.slice(0, this.packetSize)
      : this.dataValue.slice(0, Math.min(data.length, this.packetSize));
    // esp_ota_write refuses a first chunk that does not start with the image magic.
    if (this.#flashLength === 0 && chunk[0] !== ESP_IMAGE_MAGIC) {
      this.log.push('esp_ota_write failed (ESP_ERR_OTA_VALIDATE_FAILED)!');
    } else {
      this.#append(chunk);
    }
    this.log.push(`Received packet ${this.packetsReceived}`);
    return this.faults.noAnswerTo === 'DATA' ? 'never' : AttStatus.SUCCESS;
  }

  #append(chunk: Uint8Array): void {
    const needed = this.#flashLength + chunk.length;
    if (needed > this.#flash.length) {
      const grown = new Uint8Array(Math.max(needed, this.#flash.length * 2));
      grown.set(this.#flash.subarray(0, this.#flashLength));
      this.#flash = grown;
    }
    this.#flash.set(chunk, this.#flashLength);
    this.#flashLength = needed;
  }

  /** Cancel a pending restart (tests that end early). */
  dispose(): void {
    if (this.#restartTimer !== undefined) clearTimeout(this.#restartTimer);
    this.#restartTimer = undefined;
  }
}
