import type { EventEmitter } from 'node:events';
import type { Noble, NobleHciInternals } from './noble-types.ts';

const ATT_CID = 0x0004;
const SMP_CID = 0x0006;
const ATT_OP_ERROR = 0x01;
const SMP_PAIRING_FAILED = 0x05;
const HCI_EVENT_PKT = 0x04;
const EVT_ENCRYPT_CHANGE = 0x08;
const EVT_NUMBER_OF_COMPLETED_PACKETS = 0x13;
const EVT_DISCONN_COMPLETE = 0x05;

/** An ATT Error Response as the device sent it. */
export interface AttErrorResponse {
  /** Opcode of the request that failed (0x12 Write Request, 0x0a Read Request, ...). */
  requestOpcode: number;
  handle: number;
  status: number;
}

/** Why noble's pairing (LE legacy, Just Works: lib/hci-socket/smp.js) did not encrypt the link. */
export type PairingFailure =
  | { kind: 'refused'; smpReason: number }
  | { kind: 'encryption'; hciStatus: number };

/**
 * Watches the parts of noble's Linux HCI stack that its public API does not surface, for one
 * connection: ATT Error Responses (noble silently drops the error of a failed Write Request, so
 * the write would never settle) and the connection's ACL packets still queued in noble or held
 * by the controller (noble resolves a Write Command when it is queued, however long the queue).
 *
 * It only listens and reads; noble's behaviour is unchanged. It works the same on a kernel HCI
 * socket and on the virtual rig's controller because both sit under the same noble code. On
 * bindings without these internals (macOS, Windows) {@link attach} returns undefined and the
 * transport documents what it cannot do there.
 */
export class HciObserver {
  readonly #hci: NonNullable<NobleHciInternals['_hci']>;
  readonly #bindings: NobleHciInternals;
  readonly #peripheralId: string;
  readonly #onAcl: (handle: number, cid: number, data: Buffer) => void;
  readonly #onSocketData: (data: Buffer) => void;
  readonly #socket: EventEmitter | undefined;
  #attErrorListener: ((error: AttErrorResponse) => void) | undefined;
  #pairingListener: ((failure: PairingFailure) => void) | undefined;
  #creditWaiters = new Set<() => void>();
  #wakeScheduled = false;

  private constructor(bindings: NobleHciInternals, peripheralId: string) {
    const hci = bindings._hci;
    if (hci === undefined) throw new Error('unreachable: attach() checks for _hci');
    this.#hci = hci;
    this.#bindings = bindings;
    this.#peripheralId = peripheralId;
    this.#onAcl = (handle, cid, data) => {
      if (handle !== this.connectionHandle) return;
      if (cid === SMP_CID && data[0] === SMP_PAIRING_FAILED && data.length >= 2) {
        // noble's smp.js drops the reason and its Gatt waits for ever: say it here.
        this.#pairingListener?.({ kind: 'refused', smpReason: data[1] as number });
        return;
      }
      if (cid !== ATT_CID || data[0] !== ATT_OP_ERROR || data.length < 5) return;
      this.#attErrorListener?.({
        requestOpcode: data[1] as number,
        handle: data.readUInt16LE(2),
        status: data[4] as number,
      });
    };
    this.#onSocketData = (data) => {
      if (data[0] !== HCI_EVENT_PKT) return;
      // Encryption Change: status, handle, enabled. noble ignores a failed one.
      if (
        data[1] === EVT_ENCRYPT_CHANGE &&
        data.length >= 7 &&
        data.readUInt16LE(4) === this.connectionHandle
      ) {
        const status = data[3] as number;
        if (status !== 0 || data[6] === 0) {
          this.#pairingListener?.({ kind: 'encryption', hciStatus: status });
        }
        return;
      }
      // Credits come back with Number Of Completed Packets; a disconnect frees them all.
      if (data[1] !== EVT_NUMBER_OF_COMPLETED_PACKETS && data[1] !== EVT_DISCONN_COMPLETE) return;
      this.#scheduleWake();
    };
    // Prepended so that an error is seen before noble's own handler moves to its next command
    // (and, for reads, before noble reports the failed read as an empty value).
    hci.prependListener('aclDataPkt', this.#onAcl);
    this.#socket = hci._socket;
    this.#socket?.on('data', this.#onSocketData);
  }

  /** An observer for the peripheral's connection, or undefined on bindings without HCI internals. */
  static attach(noble: Noble, peripheralId: string): HciObserver | undefined {
    const bindings = noble._bindings;
    if (bindings?._hci === undefined || typeof bindings._hci.prependListener !== 'function') {
      return undefined;
    }
    return new HciObserver(bindings, peripheralId);
  }

  /** HCI connection handle of the peripheral's current connection, if connected. */
  get connectionHandle(): number | undefined {
    const handle = this.#bindings._handles?.[this.#peripheralId];
    return typeof handle === 'number' ? handle : undefined;
  }

  /** The controller's ACL buffers (LE Read Buffer Size), once noble has read them. */
  get controllerBuffers(): { length: number; num: number } | undefined {
    return this.#hci._aclBuffers;
  }

  /**
   * ACL packets of this connection that noble has queued but not yet handed to the controller,
   * plus those the controller holds (not yet reported by Number Of Completed Packets).
   * Undefined when the internals are not readable.
   */
  aclBacklog(): number | undefined {
    const handle = this.connectionHandle;
    const queue = this.#hci._aclQueue;
    const connections = this.#hci._aclConnections;
    if (handle === undefined || queue === undefined || connections === undefined) return undefined;
    let queued = 0;
    for (const item of queue) if (item.handle === handle) queued++;
    return queued + (connections.get(handle)?.pending ?? 0);
  }

  onAttError(listener: ((error: AttErrorResponse) => void) | undefined): void {
    this.#attErrorListener = listener;
  }

  /** Told when the device refuses noble's pairing, or the link's encryption fails. */
  onPairingFailure(listener: ((failure: PairingFailure) => void) | undefined): void {
    this.#pairingListener = listener;
  }

  /**
   * Whether noble's ATT client counts the link as encrypted. Until it does, an ATT error of
   * "Insufficient Authentication", "Insufficient Authorization" or "Insufficient Encryption"
   * makes noble pair and then send the same request again (lib/hci-socket/gatt.js).
   */
  get linkEncrypted(): boolean {
    const handle = this.connectionHandle;
    if (handle === undefined) return false;
    return this.#bindings._gatts?.[handle]?._security === 'medium';
  }

  /**
   * Resolve after the next credit return or disconnect, once noble has processed it (noble
   * flushes its queue asynchronously, hence the deferral to the next macrotask).
   */
  nextCreditEvent(): { promise: Promise<void>; cancel: () => void } {
    let waiter: () => void = () => {};
    const promise = new Promise<void>((resolve) => {
      waiter = resolve;
      this.#creditWaiters.add(waiter);
    });
    return { promise, cancel: () => this.#creditWaiters.delete(waiter) };
  }

  #scheduleWake(): void {
    if (this.#wakeScheduled || this.#creditWaiters.size === 0) return;
    this.#wakeScheduled = true;
    setImmediate(() => {
      this.#wakeScheduled = false;
      const waiters = [...this.#creditWaiters];
      this.#creditWaiters.clear();
      for (const wake of waiters) wake();
    });
  }

  detach(): void {
    this.#hci.removeListener('aclDataPkt', this.#onAcl);
    this.#socket?.removeListener('data', this.#onSocketData);
    this.#attErrorListener = undefined;
    this.#pairingListener = undefined;
    const waiters = [...this.#creditWaiters];
    this.#creditWaiters.clear();
    for (const wake of waiters) wake();
  }
}
