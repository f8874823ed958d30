/**
 * The seam between the protocol and a BLE stack: types only.
 *
 * An implementation (noble on Linux, the FakeTransport in tests, Web Bluetooth later) talks to
 * exactly one peripheral. The rules below are part of the contract; {@link FakeTransport}
 * enforces them so that a protocol session that passes its tests does not rely on anything a
 * real stack would not give it.
 *
 * General rules
 * - Every operation is asynchronous and settles later than the call, never synchronously.
 *   Misuse (not connected, busy bearer, oversized value) is reported by rejecting, never by
 *   throwing from the call.
 * - Characteristics are named by UUID in any form `normalizeUuid` accepts ('2a29', '0x2A29',
 *   dashed or undashed 128-bit). A UUID names the first characteristic with that UUID in
 *   discovery order; the device has no other way to tell them apart on this interface.
 *   An unknown UUID rejects with `UnknownCharacteristicError`.
 * - Every operation accepts an `AbortSignal`. If it is already aborted the operation rejects at
 *   once without touching the link; if it fires later the promise rejects promptly with an
 *   `AbortError` (code 'ABORTED'). Aborting cannot recall bytes already handed to the
 *   controller: an aborted Write Request may still reach the device, and the ATT bearer stays
 *   busy until its response arrives (Core spec allows one outstanding request per bearer).
 * - At most one ATT request is outstanding at a time: a write with response, a read, and the
 *   CCCD write inside subscribe/unsubscribe are requests. Starting a second one before the first
 *   settled rejects with `TransportBusyError` (code 'BUSY'). Write Commands (write without
 *   response) are not requests and may be issued at any time.
 * - When the link drops (remote disconnect, supervision timeout, local `disconnect()`), every
 *   pending operation rejects with `LinkLostError` (code 'LINK_LOST') and 'disconnect' is
 *   emitted once, in the same turn (rejection handlers may run after the event listeners). Operations started while disconnected reject with `LinkLostError` if the
 *   transport was connected before, with `NotConnectedError` if it never was or is closed.
 *   Subscriptions do not survive a disconnect.
 * - Notifications are delivered to listeners in the order the device sent them, and in order
 *   with write responses: a notification the device sent before answering a Write Request
 *   reaches listeners before that write's promise resolves. Listeners run synchronously in
 *   registration order; a throwing listener does not stop delivery to the others.
 */

/** Characteristic properties as the firmware's `--gatt-json` names them. */
export type CharacteristicProperty =
  | 'broadcast'
  | 'read'
  | 'writeWithoutResponse'
  | 'write'
  | 'notify'
  | 'indicate'
  | 'authenticatedSignedWrites'
  | 'extendedProperties';

export interface GattCharacteristic {
  /** UUID in the firmware's `--gatt-json` form (see `formatUuid`). */
  uuid: string;
  properties: readonly CharacteristicProperty[];
}

export interface GattService {
  uuid: string;
  characteristics: readonly GattCharacteristic[];
}

export interface OperationOptions {
  signal?: AbortSignal;
}

export interface WriteOptions extends OperationOptions {
  /**
   * true: ATT Write Request; the promise resolves when the device's Write Response arrives and
   * rejects with `AttError` if the device answers with an error.
   * false: ATT Write Command; the promise resolves once the controller has taken the packet
   * into one of its buffers, and waits while they are all full (back-pressure), so a caller
   * that awaits each write never queues more than the controller holds. It must never resolve
   * merely because the command went into an unbounded software queue (noble does that; a
   * transport over noble has to count controller credits itself). There is no confirmation
   * from the device, and a device may drop a command silently.
   */
  withResponse: boolean;
}

/** Why the link dropped. */
export interface DisconnectInfo {
  /** Who ended the link: this side through `disconnect()`/`close()`, or the device/radio. */
  initiator: 'local' | 'remote';
  /** HCI reason code if known (0x08 supervision timeout, 0x13 remote user terminated, 0x16 local host). */
  reason?: number;
  /** Human-readable explanation for logs. */
  message: string;
}

/** Device Information Service values used by pre-flight checks; absent ones are undefined. */
export interface DeviceInformation {
  manufacturer?: string;
  /** Model number: the chip name on our firmware (e.g. 'ESP32', 'ESP32-S3'). */
  model?: string;
  /** Running application version; our firmware adds it, the baseline has none. */
  firmwareRevision?: string;
}

export type NotificationListener = (data: Uint8Array) => void;

export interface TransportEventMap {
  /** The link is up, services are discovered and the MTU exchange is complete. */
  connect: [];
  /** The link dropped; emitted once per connection, when pending operations are rejected. */
  disconnect: [info: DisconnectInfo];
  /** The ATT_MTU changed while connected (a later MTU exchange). */
  mtu: [mtu: number];
}

export type TransportEvent = keyof TransportEventMap;

export interface Transport {
  /** True between the 'connect' event and the 'disconnect' event. */
  readonly connected: boolean;

  /**
   * ATT_MTU negotiated for the current connection (23 to 527 for ESP32 NimBLE). `connect()`
   * resolves only after the MTU exchange, so the value is final by then unless an 'mtu' event
   * follows. Reading it while not connected throws `NotConnectedError`.
   */
  readonly mtu: number;

  /**
   * Connect, exchange MTU and discover all services and characteristics. Resolves when the link
   * is usable; rejects with `LinkLostError` if the link drops during setup. Connecting while
   * connected resolves without doing anything. A transport may be connected again after a
   * disconnect (resume needs it), but not after `close()`.
   */
  connect(options?: OperationOptions): Promise<void>;

  /**
   * Terminate the link. Pending operations reject with `LinkLostError`; 'disconnect' is emitted
   * with initiator 'local'. Resolves once the link is down; resolves at once if not connected.
   */
  disconnect(options?: OperationOptions): Promise<void>;

  /** Services and characteristics discovered by the last `connect()`; empty before it. */
  services(): readonly GattService[];

  /**
   * Write a value of at most `mtu - 3` bytes to a characteristic. A longer value rejects with
   * `PayloadTooLargeError` without sending anything (no long writes on this interface).
   * The transport does not check the characteristic's declared properties: the device decides
   * (NimBLE accepts Write Commands on characteristics that declare only "write").
   */
  write(characteristic: string, data: Uint8Array, options: WriteOptions): Promise<void>;

  /** Read a characteristic's value (an ATT request; at most `mtu - 1` bytes arrive). */
  read(characteristic: string, options?: OperationOptions): Promise<Uint8Array>;

  /**
   * Add a notification listener. The first listener of a characteristic enables notifications
   * on the device (CCCD write, an ATT request); the promise resolves once the device confirmed
   * it, and no notification is delivered to this listener before then.
   */
  subscribe(
    characteristic: string,
    listener: NotificationListener,
    options?: OperationOptions,
  ): Promise<void>;

  /**
   * Remove a listener; removing the last one disables notifications on the device. The
   * listener is removed at once, before the CCCD write and even if that write then fails (for
   * example with `TransportBusyError`), so cleanup code can always rely on it. Removing a
   * listener that is not registered resolves without doing anything. While disconnected it
   * only forgets the listener.
   */
  unsubscribe(
    characteristic: string,
    listener: NotificationListener,
    options?: OperationOptions,
  ): Promise<void>;

  on<E extends TransportEvent>(event: E, listener: (...args: TransportEventMap[E]) => void): void;
  off<E extends TransportEvent>(event: E, listener: (...args: TransportEventMap[E]) => void): void;

  /**
   * Disconnect if connected and release everything (HCI socket, scanner). Idempotent. Every
   * later operation rejects with `NotConnectedError`.
   */
  close(): Promise<void>;
}
