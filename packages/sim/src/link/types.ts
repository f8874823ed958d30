/**
 * The seam between the virtual controller (HCI, L2CAP, ATT) and the link timing model.
 *
 * The controller never waits on wall-clock time: it hands every link-layer data PDU to an
 * {@link AirScheduler}, which decides in modeled time when the peer has received it. A
 * zero-latency scheduler makes functional tests fast; the modeled one reproduces
 * LINK-MODEL.md. Both deliver callbacks in modeled-time order and never block the event loop.
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
   * `direction`. `onDelivered` runs once the peer has received it, in modeled-time order.
   */
  send(direction: Direction, payloadBytes: number, onDelivered: () => void): void;
  /**
   * The peripheral is busy for `us` microseconds from now (flash erase or write with the cache
   * off): it receives nothing and acknowledges nothing meanwhile.
   */
  stallPeripheral(us: number): void;
  /** Apply a parameter change (MTU exchange, data length update, PHY update, connection update). */
  setParams(change: Partial<LinkParams>): void;
}
