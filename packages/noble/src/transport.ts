import {
  AbortError,
  AttError,
  type CharacteristicProperty,
  type DisconnectInfo,
  FIRMWARE_REVISION_UUID,
  formatUuid,
  type GattCharacteristic,
  type GattService,
  InsecureLinkError,
  LinkLostError,
  MANUFACTURER_NAME_UUID,
  MODEL_NUMBER_UUID,
  NotConnectedError,
  type NotificationListener,
  normalizeUuid,
  type OperationOptions,
  OTA_CONTROL_UUID,
  OTA_DATA_UUID,
  PayloadTooLargeError,
  TimeoutError,
  type Transport,
  TransportBusyError,
  type TransportEvent,
  type TransportEventMap,
  UnknownCharacteristicError,
  V2_CONTROL_UUID,
  V2_DATA_UUID,
  type WriteOptions,
} from '@esp-ble-ota/protocol';
import { withDeadline } from './deadline.ts';
import { type AttErrorResponse, HciObserver, type PairingFailure } from './hci-observer.ts';
import { installNobleMtuHook } from './mtu.ts';
import type { Noble, NobleCharacteristic, NoblePeripheral, NobleService } from './noble-types.ts';

/**
 * The characteristics a baseline upload and its pre-flight checks need. The OTA ones are found
 * by their own UUIDs in whatever service holds them, never by the service UUID, which differs
 * between the baseline's source comment and what it registers (SEED-PROTOCOL.md).
 */
export const OTA_CHARACTERISTICS: readonly string[] = [
  OTA_CONTROL_UUID,
  OTA_DATA_UUID,
  // Protocol v2 (docs/protocol-v2.md); absent on a baseline device, which is how a client knows.
  V2_CONTROL_UUID,
  V2_DATA_UUID,
  MANUFACTURER_NAME_UUID,
  MODEL_NUMBER_UUID,
  FIRMWARE_REVISION_UUID,
];

/** GAP and GATT services: every NimBLE device has them and no OTA characteristic lives there. */
const SKIPPED_SERVICES = new Set(['1800', '1801']);

/** How long to wait for the controller to confirm a cancelled connection attempt. */
const CANCEL_SETTLE_MS = 2000;

const ATT_OP_READ_REQ = 0x0a;
const ATT_OP_READ_BLOB_REQ = 0x0c;
/** Statuses after which noble pairs and repeats the request instead of failing it. */
const ATT_INSUFFICIENT_AUTHENTICATION = 0x05;
const ATT_INSUFFICIENT_ENCRYPTION = 0x0f;
/** The ATT errors after which noble pairs and repeats the request (lib/hci-socket/gatt.js). */
const ATT_STATUSES_NOBLE_RETRIES = new Set([
  ATT_INSUFFICIENT_AUTHENTICATION,
  0x08,
  ATT_INSUFFICIENT_ENCRYPTION,
]);

const HCI_REASONS: Record<number, string> = {
  8: 'supervision timeout (the device stopped answering: reset, out of range or powered off)',
  19: 'the device closed the connection',
  22: 'connection closed by this host',
  62: 'the connection could not be established',
};

export function describeHciReason(reason: number | undefined): string {
  if (reason === undefined) return 'link lost (no reason reported)';
  const hex = `0x${reason.toString(16).padStart(2, '0')}`;
  const text = HCI_REASONS[reason];
  return text === undefined ? `link lost (HCI reason ${hex})` : `${text} (HCI reason ${hex})`;
}

export interface NobleTransportOptions {
  /** The noble instance that discovered the peripheral (needed for HCI-level flow control). */
  noble: Noble;
  /** Covers the link setup, the MTU exchange and discovery (default 15 s). */
  connectTimeoutMs?: number;
  /**
   * Characteristic UUIDs to discover. Default {@link OTA_CHARACTERISTICS}; 'all' discovers every
   * characteristic. Services are always listed, but only with the characteristics asked for.
   */
  characteristics?: readonly string[] | 'all';
  /**
   * Write Commands resolve only while this connection has fewer ACL packets outstanding (queued
   * in noble plus held by the controller). Default: twice the controller's ACL buffer count
   * (LE Read Buffer Size), so the controller always has the next packets at hand while memory
   * stays bounded. Without noble's HCI bindings (macOS, Windows) this cannot be observed.
   */
  maxOutstandingAclPackets?: number;
  /** How long `disconnect()` waits for the controller's Disconnection Complete (default 5 s). */
  disconnectTimeoutMs?: number;
}

/** A write, read or CCCD write that noble will answer with one event, in issue order. */
interface Pending {
  kind: 'write' | 'command' | 'read' | 'notify';
  characteristic: string;
  /** True for ATT requests (one at a time on the bearer). */
  request: boolean;
  /** undefined once settled: the entry still waits for noble's event, which then frees it. */
  settle: ((error: unknown, data?: Buffer) => void) | undefined;
  /** The device asked for a more secure link and noble is pairing before it sends this again. */
  awaitingPairing?: boolean;
}

interface CharacteristicSlot {
  key: string;
  uuid: string;
  properties: CharacteristicProperty[];
  noble: NobleCharacteristic;
  /** Writes issued on this characteristic whose noble 'write' event has not come yet. */
  writes: Pending[];
  listeners: Set<NotificationListener>;
  /** Set while the CCCD is being enabled; listeners wait in here until the device confirmed. */
  enabling: Promise<void> | undefined;
  notifying: boolean;
  detach: () => void;
}

type Listener<E extends TransportEvent> = (...args: TransportEventMap[E]) => void;

/**
 * The protocol's {@link Transport} over one @abandonware/noble peripheral.
 *
 * Everything goes through noble's public API except two observations of its Linux HCI stack
 * (see {@link HciObserver}): ATT Error Responses, which noble drops, and the connection's
 * outstanding ACL packets, which pace Write Commands. An injected noble instance (the virtual
 * rig passes one that runs over a virtual controller) takes exactly the same path.
 *
 * One deviation from the interface's "discover all services and characteristics": by default
 * only the characteristics a baseline upload and its pre-flight need are discovered
 * ({@link OTA_CHARACTERISTICS}); `services()` lists every service, each with the discovered
 * characteristics only. Pass `characteristics: 'all'` for a full discovery.
 */
export class NobleTransport implements Transport {
  readonly peripheral: NoblePeripheral;
  readonly #noble: Noble;
  readonly #options: NobleTransportOptions;
  readonly #events = new Map<TransportEvent, Set<(...args: never[]) => void>>();

  #state: 'idle' | 'connecting' | 'connected' | 'closed' = 'idle';
  #everConnected = false;
  #connecting: Promise<void> | undefined;
  /** Settles once the controller answered a connection attempt we cancelled. */
  #cancelledAttempt: Promise<void> | undefined;
  /** Lets disconnect()/close() abandon a connection attempt in progress. */
  #connectAbort: AbortController | undefined;
  #lastSlot: { spelled: string; slot: CharacteristicSlot } | undefined;
  #mtu = 23;
  #services: GattService[] = [];
  #slots: CharacteristicSlot[] = [];
  #observer: HciObserver | undefined;
  /** The ATT request on the bearer, including one whose caller gave up (aborted). */
  #request: Pending | undefined;
  #reads: Pending[] = [];
  #notifyOps: Pending[] = [];
  /** Rejecters of every operation in progress, so a link drop fails them all. */
  #inFlight = new Set<(error: unknown) => void>();
  #localDisconnect = false;
  #onPeripheralDisconnect: ((reason?: number) => void) | undefined;

  constructor(peripheral: NoblePeripheral, options: NobleTransportOptions) {
    // Before the first connect: the link's MTU must be the lesser of both sides' (mtu.ts).
    installNobleMtuHook();
    this.peripheral = peripheral;
    this.#noble = options.noble;
    this.#options = options;
  }

  /** A method, not a comparison, because close() can run while an async method awaits. */
  #closed(): boolean {
    return this.#state === 'closed';
  }

  get connected(): boolean {
    return this.#state === 'connected';
  }

  get mtu(): number {
    if (this.#state !== 'connected') {
      throw new NotConnectedError('the MTU is only known while connected; call connect() first');
    }
    return this.#mtu;
  }

  /** What the peripheral is called in messages: its name, else its address. */
  get label(): string {
    return (
      this.peripheral.advertisement?.localName ?? this.peripheral.address ?? this.peripheral.id
    );
  }

  /** The controller's ACL buffers as noble read them (undefined without HCI bindings). */
  get controllerBuffers(): { length: number; num: number } | undefined {
    return this.#observer?.controllerBuffers;
  }

  services(): readonly GattService[] {
    return this.#services;
  }

  on<E extends TransportEvent>(event: E, listener: Listener<E>): void {
    let set = this.#events.get(event);
    if (set === undefined) {
      set = new Set();
      this.#events.set(event, set);
    }
    set.add(listener as (...args: never[]) => void);
  }

  off<E extends TransportEvent>(event: E, listener: Listener<E>): void {
    this.#events.get(event)?.delete(listener as (...args: never[]) => void);
  }

  #emit<E extends TransportEvent>(event: E, ...args: TransportEventMap[E]): void {
    for (const listener of [...(this.#events.get(event) ?? [])]) {
      try {
        (listener as Listener<E>)(...args);
      } catch (error) {
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }

  // -------------------------------------------------------------------------------------------
  // Connection

  async connect(options: OperationOptions = {}): Promise<void> {
    await Promise.resolve();
    if (this.#state === 'closed') {
      throw new NotConnectedError('this transport was closed; create a new one to connect again');
    }
    if (this.#state === 'connected') return;
    if (this.#connecting === undefined) {
      const abort = new AbortController();
      this.#connectAbort = abort;
      const signal =
        options.signal === undefined
          ? abort.signal
          : AbortSignal.any([options.signal, abort.signal]);
      this.#connecting = this.#connect({ signal }).finally(() => {
        this.#connecting = undefined;
        this.#connectAbort = undefined;
      });
    }
    return this.#connecting;
  }

  async #connect(options: OperationOptions): Promise<void> {
    const timeoutMs = this.#options.connectTimeoutMs ?? 15_000;
    const deadline = Date.now() + timeoutMs;
    const remaining = () => Math.max(0, deadline - Date.now());
    const peripheral = this.peripheral;
    this.#state = 'connecting';
    this.#localDisconnect = false;
    try {
      if (this.#cancelledAttempt !== undefined) {
        await this.#cancelledAttempt;
        this.#cancelledAttempt = undefined;
      }
      await withDeadline<void>(
        { signal: options.signal, timeoutMs, what: `connecting to ${this.label}` },
        (resolve, reject) => {
          const onConnect = (error?: unknown) => {
            if (error) {
              reject(
                new LinkLostError(
                  `connecting to ${this.label} failed: ${describe(error)}; is it still advertising?`,
                  { cause: error },
                ),
              );
            } else resolve();
          };
          peripheral.once('connect', onConnect);
          peripheral.connect();
          return () => peripheral.removeListener('connect', onConnect);
        },
        () => {
          peripheral.cancelConnect();
          // The controller still answers the cancelled attempt with an LE Connection Complete
          // (status 0x02, or success if the link came up just as we gave up). The next attempt
          // waits for it, or it would take that answer for its own.
          this.#cancelledAttempt = new Promise<void>((resolve) => {
            const timer = setTimeout(done, CANCEL_SETTLE_MS);
            function done() {
              clearTimeout(timer);
              peripheral.removeListener('connect', onLateConnect);
              resolve();
            }
            const onLateConnect = (error?: unknown) => {
              if (!error) peripheral.disconnect();
              done();
            };
            peripheral.once('connect', onLateConnect);
          });
        },
      );

      this.#observer = HciObserver.attach(this.#noble, peripheral.id);
      this.#observer?.onAttError((response) => this.#onAttError(response));
      this.#observer?.onPairingFailure((failure) => this.#onPairingFailure(failure));
      this.#onPeripheralDisconnect = (reason?: number) => this.#handleDisconnect(reason);
      peripheral.once('disconnect', this.#onPeripheralDisconnect);

      await this.#discover(options.signal, remaining);
      // noble exchanges the MTU before anything else on a new link and its ATT queue is
      // serialized, so after discovery the exchange is over; null means the device refused it.
      this.#mtu = peripheral.mtu ?? 23;
      this.#state = 'connected';
      this.#everConnected = true;
    } catch (error) {
      const wasLinkUp = peripheral.state === 'connected';
      this.#teardown();
      if (!this.#closed()) this.#state = 'idle';
      if (wasLinkUp) {
        this.#localDisconnect = true;
        peripheral.disconnect();
      }
      if (error instanceof TimeoutError) {
        throw new TimeoutError(
          `connecting to ${this.label} took longer than ${timeoutMs} ms (link setup, MTU exchange and discovery); is it in range and not connected to another central?`,
          timeoutMs,
          { cause: error },
        );
      }
      throw error;
    }
    this.#emit('connect');
  }

  async #discover(signal: AbortSignal | undefined, remaining: () => number): Promise<void> {
    const peripheral = this.peripheral;
    const wanted =
      this.#options.characteristics === 'all'
        ? []
        : (this.#options.characteristics ?? OTA_CHARACTERISTICS).map(normalizeUuid);
    const services = await this.#op<NobleService[]>(
      { signal, timeoutMs: remaining(), what: `discovering the services of ${this.label}` },
      (resolve) => {
        peripheral.discoverServices([], (_error, found) => resolve(found ?? []));
        return undefined;
      },
    );
    const result: GattService[] = [];
    for (const service of services) {
      const uuid = normalizeUuid(service.uuid);
      const list: GattCharacteristic[] = [];
      result.push({ uuid: formatUuid(uuid), characteristics: list });
      if (SKIPPED_SERVICES.has(uuid) && this.#options.characteristics !== 'all') continue;
      const chars = await this.#op<NobleCharacteristic[]>(
        {
          signal,
          timeoutMs: remaining(),
          what: `discovering the characteristics of service ${formatUuid(uuid)} on ${this.label}`,
        },
        (resolve) => {
          service.discoverCharacteristics(wanted, (_error, found) => resolve(found ?? []));
          return undefined;
        },
      );
      for (const chr of chars) {
        const slot = this.#addSlot(chr);
        list.push({ uuid: slot.uuid, properties: slot.properties });
      }
    }
    this.#services = result;
  }

  #addSlot(chr: NobleCharacteristic): CharacteristicSlot {
    const uuid = normalizeUuid(chr.uuid);
    const slot: CharacteristicSlot = {
      key: uuid,
      uuid: formatUuid(uuid),
      properties: [...chr.properties] as CharacteristicProperty[],
      noble: chr,
      writes: [],
      listeners: new Set(),
      enabling: undefined,
      notifying: false,
      detach: () => {},
    };
    const onData = (data: Buffer, isNotification: boolean) => {
      if (isNotification) {
        // A copy, so a listener that keeps the value is not affected by noble reusing buffers.
        for (const listener of [...slot.listeners]) {
          try {
            listener(new Uint8Array(data));
          } catch (error) {
            queueMicrotask(() => {
              throw error;
            });
          }
        }
        return;
      }
      this.#complete(this.#reads, slot.key, undefined, data);
    };
    const onWrite = () => this.#complete(slot.writes, slot.key, undefined);
    const onNotify = () => this.#complete(this.#notifyOps, slot.key, undefined);
    chr.on('data', onData);
    chr.on('write', onWrite);
    chr.on('notify', onNotify);
    slot.detach = () => {
      chr.removeListener('data', onData);
      chr.removeListener('write', onWrite);
      chr.removeListener('notify', onNotify);
    };
    this.#slots.push(slot);
    return slot;
  }

  /** noble answered the oldest operation of this kind on this characteristic. */
  #complete(queue: Pending[], key: string, error: unknown, data?: Buffer): void {
    const index = queue.findIndex((p) => p.characteristic === key);
    if (index < 0) return;
    const [pending] = queue.splice(index, 1);
    if (pending === undefined) return;
    if (pending === this.#request) this.#request = undefined;
    const settle = pending.settle;
    pending.settle = undefined;
    settle?.(error, data);
  }

  #onAttError(response: AttErrorResponse): void {
    const pending = this.#request;
    if (pending === undefined) return;
    const status = response.status;
    const operation = pending.kind === 'read' ? 'read' : 'write';
    const isRead =
      response.requestOpcode === ATT_OP_READ_REQ || response.requestOpcode === ATT_OP_READ_BLOB_REQ;
    if (ATT_STATUSES_NOBLE_RETRIES.has(status) && this.#observer?.linkEncrypted === false) {
      // noble pairs now and sends the same request again once the link is encrypted: the
      // request goes on. If the pairing fails, #onPairingFailure settles it.
      pending.awaitingPairing = true;
      return;
    }
    // On an encrypted link, Insufficient Authentication or Encryption means the keys are not
    // good enough (no MITM protection); Insufficient Authorization stays an ATT error.
    const error =
      status === ATT_INSUFFICIENT_AUTHENTICATION || status === ATT_INSUFFICIENT_ENCRYPTION
        ? new InsecureLinkError(pending.characteristic, { attStatus: status })
        : new AttError(pending.characteristic, operation, status);
    const settle = pending.settle;
    pending.settle = undefined;
    // noble still reports a failed read (as an empty value): that entry stays queued, without
    // a caller, to absorb the event.
    if (!(isRead && pending.kind === 'read')) this.#forget(pending);
    settle?.(error);
  }

  /**
   * noble's pairing did not encrypt the link. noble's ATT client then waits for ever on the
   * request that made it pair (lib/hci-socket/gatt.js ignores a failed pairing), so nothing
   * more can be done on this link: the request fails with what the device said.
   */
  #onPairingFailure(failure: PairingFailure): void {
    const pending = this.#request;
    if (pending === undefined || !pending.awaitingPairing) return;
    const settle = pending.settle;
    pending.settle = undefined;
    this.#forget(pending);
    // noble's ATT queue waits behind that request for ever: the link is of no more use.
    void this.disconnect().catch(() => {});
    settle?.(
      new InsecureLinkError(
        pending.characteristic,
        failure.kind === 'refused'
          ? { smpReason: failure.smpReason }
          : { hciStatus: failure.hciStatus },
      ),
    );
  }

  #forget(pending: Pending): void {
    for (const queue of [this.#reads, this.#notifyOps, ...this.#slots.map((s) => s.writes)]) {
      const index = queue.indexOf(pending);
      if (index >= 0) queue.splice(index, 1);
    }
    if (this.#request === pending) this.#request = undefined;
  }

  #handleDisconnect(reason?: number): void {
    if (this.#state !== 'connected' && this.#state !== 'connecting') return;
    const initiator = this.#localDisconnect ? 'local' : 'remote';
    const message = describeHciReason(reason);
    const info: DisconnectInfo = { initiator, message };
    if (reason !== undefined) info.reason = reason;
    const error = new LinkLostError(`${this.label}: ${message}`, { reason });
    const wasConnected = this.#state === 'connected';
    for (const reject of [...this.#inFlight]) reject(error);
    this.#teardown();
    if (!this.#closed()) this.#state = 'idle';
    if (wasConnected) this.#emit('disconnect', info);
  }

  #teardown(): void {
    if (this.#onPeripheralDisconnect !== undefined) {
      this.peripheral.removeListener('disconnect', this.#onPeripheralDisconnect);
      this.#onPeripheralDisconnect = undefined;
    }
    this.#observer?.detach();
    this.#observer = undefined;
    for (const slot of this.#slots) slot.detach();
    this.#slots = [];
    this.#reads = [];
    this.#notifyOps = [];
    this.#request = undefined;
    this.#inFlight.clear();
  }

  async disconnect(options: OperationOptions = {}): Promise<void> {
    await Promise.resolve();
    if (this.#state === 'connecting') {
      // Abandon the setup: #connect's failure path takes the link down.
      this.#connectAbort?.abort(new Error('disconnect() called while connecting'));
      await this.#connecting?.catch(() => {});
    }
    if (this.#state !== 'connected') return;
    this.#localDisconnect = true;
    const timeoutMs = this.#options.disconnectTimeoutMs ?? 5000;
    try {
      await withDeadline<void>(
        { signal: options.signal, timeoutMs, what: `disconnecting from ${this.label}` },
        (resolve) => {
          const onDisconnect = () => resolve();
          this.on('disconnect', onDisconnect);
          this.peripheral.disconnect();
          return () => this.off('disconnect', onDisconnect);
        },
      );
    } catch (error) {
      if (!(error instanceof TimeoutError)) throw error;
      // The controller never confirmed: treat the link as gone so callers are not stuck.
      this.#handleDisconnect(0x16);
    }
  }

  async close(): Promise<void> {
    if (this.#state === 'closed') return;
    try {
      await this.disconnect();
    } finally {
      this.#teardown();
      this.#state = 'closed';
    }
  }

  // -------------------------------------------------------------------------------------------
  // ATT operations

  /** Fail fast on misuse, as the interface requires: rejected, never thrown synchronously. */
  #ready(): void {
    if (this.#state === 'connected') return;
    if (this.#state === 'closed') {
      throw new NotConnectedError('this transport was closed; create a new one to connect again');
    }
    if (this.#everConnected) {
      throw new LinkLostError(`${this.label} is not connected (the link dropped); reconnect first`);
    }
    throw new NotConnectedError(`not connected to ${this.label}; call connect() first`);
  }

  #slot(characteristic: string): CharacteristicSlot {
    // Every write names its characteristic: the last one asked for is kept as it was spelled.
    const last = this.#lastSlot;
    if (last !== undefined && last.spelled === characteristic && this.#slots.includes(last.slot))
      return last.slot;
    const key = normalizeUuid(characteristic);
    const slot = this.#slots.find((s) => s.key === key);
    if (slot !== undefined) this.#lastSlot = { spelled: characteristic, slot };
    if (slot === undefined) throw new UnknownCharacteristicError(formatUuid(key));
    return slot;
  }

  #claimBearer(what: string): void {
    if (this.#request !== undefined) {
      throw new TransportBusyError(
        `cannot ${what}: an ATT request (${this.#request.kind} of ${this.#request.characteristic}) is still waiting for its response; await it first`,
      );
    }
  }

  /**
   * Run one operation against noble: registered for link-loss rejection, bounded by the
   * signal and an optional timeout.
   */
  #op<T>(
    deadline: { signal: AbortSignal | undefined; timeoutMs?: number | undefined; what: string },
    start: (
      resolve: (value: T) => void,
      reject: (error: unknown) => void,
    ) => (() => void) | undefined,
  ): Promise<T> {
    return withDeadline<T>(deadline, (resolve, reject) => {
      this.#inFlight.add(reject);
      const cleanup = start(resolve, reject);
      return () => {
        this.#inFlight.delete(reject);
        cleanup?.();
      };
    });
  }

  /** Queue `pending`, start noble, and settle when noble (or an ATT error) answers. */
  #issue<T>(
    pending: Pending,
    queue: Pending[],
    signal: AbortSignal | undefined,
    what: string,
    kick: () => void,
    map: (data: Buffer | undefined) => T,
  ): Promise<T> {
    return this.#op<T>({ signal, what }, (resolve, reject) => {
      pending.settle = (error, data) => {
        if (error) reject(error);
        else resolve(map(data));
      };
      queue.push(pending);
      if (pending.request) this.#request = pending;
      kick();
      // Giving up early leaves the entry queued without a caller: noble will still answer it,
      // and until then the bearer stays busy, as the interface's abort rule says.
      return () => {
        pending.settle = undefined;
      };
    });
  }

  async write(characteristic: string, data: Uint8Array, options: WriteOptions): Promise<void> {
    await Promise.resolve();
    const { signal, withResponse } = options;
    if (signal?.aborted) throw new AbortError('write: aborted before it started');
    this.#ready();
    const slot = this.#slot(characteristic);
    if (data.length > this.#mtu - 3) throw new PayloadTooLargeError(data.length, this.#mtu);
    if (withResponse) this.#claimBearer(`write ${slot.uuid}`);
    const buffer = Buffer.from(data);
    const pending: Pending = {
      kind: withResponse ? 'write' : 'command',
      characteristic: slot.key,
      request: withResponse,
      settle: undefined,
    };
    await this.#issue(
      pending,
      slot.writes,
      signal,
      `${withResponse ? 'Write Request' : 'Write Command'} to ${slot.uuid}`,
      () => slot.noble.write(buffer, !withResponse),
      () => undefined,
    );
    if (!withResponse) await this.#pace(signal);
  }

  /**
   * Back-pressure for Write Commands: noble reported the command as written when it entered
   * its ACL queue; wait until this connection's outstanding ACL packets fall below the budget.
   */
  async #pace(signal: AbortSignal | undefined): Promise<void> {
    const observer = this.#observer;
    if (observer === undefined) return;
    // noble appends to its ACL queue after an await; let that happen before counting.
    await new Promise<void>((resolve) => setImmediate(resolve));
    for (;;) {
      if (this.#state !== 'connected') this.#ready();
      const backlog = observer.aclBacklog();
      if (backlog === undefined || backlog < this.#aclBudget(observer)) return;
      const wake = observer.nextCreditEvent();
      await this.#op<void>({ signal, what: 'waiting for controller buffers' }, (resolve) => {
        wake.promise.then(() => resolve());
        return wake.cancel;
      });
    }
  }

  #aclBudget(observer: HciObserver): number {
    if (this.#options.maxOutstandingAclPackets !== undefined) {
      return Math.max(1, this.#options.maxOutstandingAclPackets);
    }
    return Math.max(2, 2 * (observer.controllerBuffers?.num ?? 4));
  }

  /** This connection's ACL packets queued in noble or held by the controller (for tests and tools). */
  aclBacklog(): number | undefined {
    return this.#observer?.aclBacklog();
  }

  async read(characteristic: string, options: OperationOptions = {}): Promise<Uint8Array> {
    await Promise.resolve();
    const { signal } = options;
    if (signal?.aborted) throw new AbortError('read: aborted before it started');
    this.#ready();
    const slot = this.#slot(characteristic);
    this.#claimBearer(`read ${slot.uuid}`);
    const pending: Pending = {
      kind: 'read',
      characteristic: slot.key,
      request: true,
      settle: undefined,
    };
    return this.#issue(
      pending,
      this.#reads,
      signal,
      `reading ${slot.uuid}`,
      () => slot.noble.read(),
      (data) => new Uint8Array(data ?? new Uint8Array(0)),
    );
  }

  async subscribe(
    characteristic: string,
    listener: NotificationListener,
    options: OperationOptions = {},
  ): Promise<void> {
    await Promise.resolve();
    const { signal } = options;
    if (signal?.aborted) throw new AbortError('subscribe: aborted before it started');
    this.#ready();
    const slot = this.#slot(characteristic);
    if (!slot.notifying) {
      slot.enabling ??= this.#setNotify(slot, true, signal).finally(() => {
        slot.enabling = undefined;
      });
      await slot.enabling;
      slot.notifying = true;
    }
    slot.listeners.add(listener);
  }

  async unsubscribe(
    characteristic: string,
    listener: NotificationListener,
    options: OperationOptions = {},
  ): Promise<void> {
    await Promise.resolve();
    const { signal } = options;
    if (signal?.aborted) throw new AbortError('unsubscribe: aborted before it started');
    if (this.#state !== 'connected') {
      // Subscriptions do not survive a disconnect; nothing to tell the device.
      return;
    }
    const slot = this.#slot(characteristic);
    if (!slot.listeners.delete(listener) || slot.listeners.size > 0 || !slot.notifying) return;
    slot.notifying = false;
    await this.#setNotify(slot, false, signal);
  }

  #setNotify(
    slot: CharacteristicSlot,
    enable: boolean,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    this.#claimBearer(`${enable ? 'enable' : 'disable'} notifications on ${slot.uuid}`);
    const pending: Pending = {
      kind: 'notify',
      characteristic: slot.key,
      request: true,
      settle: undefined,
    };
    return this.#issue(
      pending,
      this.#notifyOps,
      signal,
      `${enable ? 'enabling' : 'disabling'} notifications on ${slot.uuid}`,
      () => slot.noble.notify(enable),
      () => undefined,
    );
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
