/**
 * The seam between the virtual controller (HCI, L2CAP, ATT) and the link timing model.
 *
 * The controller never waits on wall-clock time: it hands every link-layer data PDU to an
 * {@link AirScheduler}, which decides in modeled time when the peer has received it. A
 * zero-latency scheduler makes functional tests fast; the modeled one reproduces
 * LINK-MODEL.md. Both deliver callbacks in modeled-time order and never block the event loop.
 *
 * Reactions to a callback (the next write after a Number Of Completed Packets credit, the Write
 * Response after a Write Request) take effect at the callback's modeled instant only if they are
 * issued before the next macrotask: synchronously, in a microtask or with `process.nextTick`.
 * A reaction that needs real I/O (the device program answering on its pipe) must bracket it with
 * {@link AirScheduler.hold}, or modeled time runs on without it and results depend on the
 * machine's speed.
 */

/** Central-to-peripheral (the client's writes) or peripheral-to-central (notifications). */
export type Direction = 'c2p' | 'p2c';

export type Phy = '1M' | '2M';

export interface LinkParams {
  phy: Phy;
  /** Link-layer payload size in bytes: 27 without Data Length Extension, up to 251 with it. */
  dataLength: number;
  /** Connection interval in milliseconds (7.5 to 4000 in 1.25 ms steps). */
  connIntervalMs: number;
  /** Negotiated ATT MTU in bytes. */
  attMtu: number;
  /** Whether the link is encrypted (adds a 4-byte MIC to every non-empty PDU). */
  encrypted: boolean;
}

export interface AirScheduler {
  /** Modeled time in microseconds since the scheduler was created. */
  readonly nowUs: number;
  /** Current link parameters. */
  readonly params: Readonly<LinkParams>;
  /**
   * Queue one link-layer data PDU carrying `payloadBytes` (at most `params.dataLength`) in
   * `direction`. `onDelivered` runs once the receiving host has it (for c2p: the peripheral's
   * host task has taken it from its receive buffers, so after any stall), in modeled-time order.
   * `onAcked` runs when the sender's link layer has seen the peer's acknowledgement and frees
   * the controller buffer: the moment a controller reports the packet in Number Of Completed
   * Packets. Schedulers without link-layer detail may call it together with `onDelivered`.
   */
  send(
    direction: Direction,
    payloadBytes: number,
    onDelivered: () => void,
    onAcked?: () => void,
  ): void;
  /**
   * The peripheral's host is busy for `us` microseconds from now (flash erase or write with the
   * cache off): it takes nothing from its receive buffers and produces no PDU meanwhile; PDUs it
   * sends during the stall go on air after it. Its controller keeps the connection and
   * acknowledges while it has free receive buffers, then NAKs (the central retransmits).
   */
  stallPeripheral(us: number): void;
  /**
   * The peripheral's NimBLE host task is busy for `us` (its work on a received PDU): like a
   * stall, but the other core and the OTA writer go on. Optional: a scheduler without device
   * detail ignores it.
   */
  busyHost?(us: number): void;
  /**
   * The peripheral's OTA writer has `us` more work (CRC32, SHA-256, inflate, a signature check),
   * after what it already has. What the peripheral sends meanwhile waits for it (the writer's
   * answers come after its work). `onlyIfBusy`: add it only if the writer has work now (a
   * single core lending time to the host task). Optional, like busyHost.
   */
  occupyWriter?(us: number, onlyIfBusy?: boolean): void;
  /** Apply a parameter change (MTU exchange, data length update, PHY update, connection update). */
  setParams(change: Partial<LinkParams>): void;
  /**
   * Freeze modeled time at `nowUs` until the returned function is called (idempotent), e.g.
   * while the device program computes its answer in real time. Stalls and sends issued before
   * the release take effect at the frozen instant, so results do not depend on how fast the
   * machine runs the device program.
   */
  hold?(): () => void;
  /** The link is gone: drop every queued PDU; no further callbacks run for them. */
  abort?(): void;
}
