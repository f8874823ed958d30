import { assertConnInterval, assertPduFits, DATA_LENGTH_MAX, pduAirUs, T_IFS_US } from './air.ts';
import type { AirScheduler, Direction, LinkParams } from './types.ts';

/** Controller behaviour that the link parameters do not capture. */
export interface ModelOptions {
  /**
   * Time before the next anchor point that the central keeps free. NimBLE counts in 32.768 kHz
   * ticks and budgets two ticks (61 us) for rounding in `ble_ll_conn.c`; the same figure here.
   */
  ceMarginUs: number;
  /** `max_ce_len` from the central's connection request; `undefined` = the whole interval. */
  maxCeLenUs?: number | undefined;
  /**
   * What the central reserves for the peripheral's reply when deciding whether its next PDU
   * still fits in the event. NimBLE's `ble_ll_conn_can_send_next_pdu` is documented as "send the
   * next fragment and get a minimum sized response" but adds `eff_max_rx_time`; the
   * LINK-MODEL.md ceilings are only consistent with reserving the reply actually due (an empty
   * PDU when the peripheral has nothing queued), so `'reply'` is the default and
   * `'max-rx-time'` reproduces NimBLE-as-central literally.
   */
  rxReserve: 'reply' | 'max-rx-time';
  /**
   * Link-layer PDUs the peripheral's controller holds until its host takes them (NimBLE ACL
   * buffers). When they are all full it NAKs and the central retransmits.
   */
  peripheralRxBuffers: number;
  /**
   * Most data PDUs one side sends in one connection event (a controller limit such as the
   * Nordic S130 SoftDevice's 7 per event); `undefined` = no limit.
   */
  maxDataPdusPerEvent?: Partial<Record<Direction, number>> | undefined;
}

export const DEFAULT_MODEL_OPTIONS: ModelOptions = {
  ceMarginUs: 61,
  rxReserve: 'reply',
  // LINK-MODEL.md "ESP32 facts": "NimBLE defaults in ESP-IDF: ... ACL buffers 24 x 255".
  peripheralRxBuffers: 24,
};

export interface LinkStats {
  /** Connection events in which at least one exchange happened. */
  events: number;
  exchanges: number;
  dataPdus: Record<Direction, number>;
  emptyPdus: Record<Direction, number>;
  /** c2p PDUs the peripheral could not buffer and the central had to send again. */
  naks: number;
}

interface QueuedPdu {
  readonly bytes: number;
  readonly readyUs: number;
  readonly onDelivered: () => void;
  readonly onAcked: (() => void) | undefined;
}

interface Pending {
  at: number;
  seq: number;
  /** Whether it runs caller code (then the pump yields so reactions can come in). */
  user: boolean;
  run: () => void;
}

/** FIFO with O(1) shift; queues here can hold a whole image when a caller ignores credits. */
class Fifo<T> {
  private items: T[] = [];
  private head = 0;
  get length(): number {
    return this.items.length - this.head;
  }
  peek(): T | undefined {
    return this.items[this.head];
  }
  push(item: T): void {
    this.items.push(item);
  }
  shift(): T | undefined {
    const item = this.items[this.head];
    if (item === undefined) return undefined;
    this.head += 1;
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }
  clear(): void {
    this.items = [];
    this.head = 0;
  }
}

/** Binary min-heap on (at, seq): callbacks at the same instant run in the order scheduled. */
class PendingHeap {
  private readonly a: Pending[] = [];
  get size(): number {
    return this.a.length;
  }
  peek(): Pending | undefined {
    return this.a[0];
  }
  clear(): void {
    this.a.length = 0;
  }
  private less(i: number, j: number): boolean {
    const x = this.a[i] as Pending;
    const y = this.a[j] as Pending;
    return x.at < y.at || (x.at === y.at && x.seq < y.seq);
  }
  private swap(i: number, j: number): void {
    const t = this.a[i] as Pending;
    this.a[i] = this.a[j] as Pending;
    this.a[j] = t;
  }
  push(p: Pending): void {
    this.a.push(p);
    let i = this.a.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.less(i, parent)) break;
      this.swap(i, parent);
      i = parent;
    }
  }
  pop(): Pending | undefined {
    const top = this.a[0];
    const last = this.a.pop();
    if (this.a.length > 0 && last !== undefined) {
      this.a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < this.a.length && this.less(l, m)) m = l;
        if (r < this.a.length && this.less(r, m)) m = r;
        if (m === i) break;
        this.swap(i, m);
        i = m;
      }
    }
    return top;
  }
}

interface OpenEvent {
  readonly anchorUs: number;
  /** min(anchor + interval - margin, anchor + max_ce_len). */
  readonly limitUs: number;
  readonly dataPdus: Record<Direction, number>;
}

/**
 * A discrete-event model of one LE connection in modeled time (LINK-MODEL.md "Air time").
 *
 * Connection events start at anchor points one connection interval apart. In each event the
 * central sends first (a data PDU or an empty one) and the peripheral answers T_IFS later; an
 * exchange carries at most one data PDU each way. The event goes on while either side set
 * More Data and the central's next exchange fits under NimBLE's rule: PDU(next) + 2 T_IFS +
 * the reserved reply time must end before min(anchor + interval - margin, anchor + max_ce_len).
 * What a side transmits in an exchange is decided when the exchange starts, so an answer
 * produced while an exchange is on air waits for the next one, and a Write Response can only
 * leave in a later event than its request when the central has nothing else queued.
 *
 * Empty connection events (neither side has anything) are not simulated: they change nothing.
 * Time advances only by processing events, in modeled-time order; the pump yields to the event
 * loop (setImmediate) after every callback that runs caller code, never waits on a timer, and
 * so runs much faster than real time.
 */
export class ModeledAirScheduler implements AirScheduler {
  readonly options: ModelOptions;
  readonly stats: LinkStats = {
    events: 0,
    exchanges: 0,
    dataPdus: { c2p: 0, p2c: 0 },
    emptyPdus: { c2p: 0, p2c: 0 },
    naks: 0,
  };

  private now = 0;
  private current: LinkParams;
  private anchorBaseUs = 0;
  private lastAnchorUs = Number.NEGATIVE_INFINITY;
  private event: OpenEvent | null = null;
  /** Start of the next exchange of the open event; null while one is on air. */
  private nextTxUs: number | null = null;
  private busyUntilUs = 0;
  private stalledUntilUs = 0;
  /** When the OTA writer has done the work it was given. */
  private writerUntilUs = 0;
  private readonly tx: Record<Direction, Fifo<QueuedPdu>> = { c2p: new Fifo(), p2c: new Fifo() };
  /** c2p PDUs in the peripheral controller's buffers, with their arrival time. */
  private readonly rx = new Fifo<{ pdu: QueuedPdu; arrivedUs: number }>();
  private readonly pending = new PendingHeap();
  private seq = 0;
  private holds = 0;
  private pumpQueued = false;
  private generation = 0;

  constructor(params: LinkParams, options: Partial<ModelOptions> = {}) {
    this.current = validateParams({ ...params });
    this.options = { ...DEFAULT_MODEL_OPTIONS, ...options };
    if (
      !Number.isInteger(this.options.peripheralRxBuffers) ||
      this.options.peripheralRxBuffers < 1
    ) {
      throw new RangeError(
        `peripheralRxBuffers must be a positive integer, got ${this.options.peripheralRxBuffers}`,
      );
    }
  }

  get nowUs(): number {
    return this.now;
  }

  get params(): Readonly<LinkParams> {
    return this.current;
  }

  /** When the peripheral's current stall ends (at or before now when it is not stalled). */
  get peripheralBusyUntilUs(): number {
    return this.stalledUntilUs;
  }

  /** Whether nothing is queued, buffered or waiting to be called back. */
  get idle(): boolean {
    return (
      this.tx.c2p.length === 0 &&
      this.tx.p2c.length === 0 &&
      this.rx.length === 0 &&
      this.pending.size === 0
    );
  }

  send(
    direction: Direction,
    payloadBytes: number,
    onDelivered: () => void,
    onAcked?: () => void,
  ): void {
    assertPduFits(payloadBytes, this.current.dataLength);
    // A busy peripheral host produces nothing until its stall is over, nor the writer before
    // it has done its work.
    const readyUs =
      direction === 'p2c'
        ? Math.max(this.now, this.stalledUntilUs, Math.ceil(this.writerUntilUs))
        : this.now;
    this.tx[direction].push({ bytes: payloadBytes, readyUs, onDelivered, onAcked });
    this.kick();
  }

  stallPeripheral(us: number): void {
    if (!(us >= 0) || !Number.isFinite(us)) {
      throw new RangeError(
        `peripheral stall must be a finite number of microseconds >= 0, got ${us}`,
      );
    }
    this.stalledUntilUs = Math.max(this.stalledUntilUs, this.now) + Math.round(us);
    // The whole chip stops (flash with the cache off): the writer's own work waits too.
    this.writerUntilUs =
      this.writerUntilUs > this.now
        ? Math.max(this.writerUntilUs + us, this.stalledUntilUs)
        : this.stalledUntilUs;
    this.kick();
  }

  busyHost(us: number): void {
    if (!(us >= 0) || !Number.isFinite(us)) {
      throw new RangeError(`host work must be a finite number of microseconds >= 0, got ${us}`);
    }
    this.stalledUntilUs = Math.max(this.stalledUntilUs, this.now) + Math.round(us);
    this.kick();
  }

  occupyWriter(us: number, onlyIfBusy = false): void {
    if (!(us >= 0) || !Number.isFinite(us)) {
      throw new RangeError(`writer work must be a finite number of microseconds >= 0, got ${us}`);
    }
    if (onlyIfBusy && this.writerUntilUs <= this.now) return;
    this.writerUntilUs = Math.max(this.writerUntilUs, this.now) + us;
  }

  /** When the OTA writer is done with the work it was given (at or before now when idle). */
  get writerBusyUntilUs(): number {
    return Math.ceil(this.writerUntilUs);
  }

  setParams(change: Partial<LinkParams>): void {
    const next = validateParams({ ...this.current, ...change });
    if (next.connIntervalMs !== this.current.connIntervalMs) {
      // The new interval starts at the next anchor of the old one; events never overlap.
      const from = Math.max(this.now, this.busyUntilUs, this.lastAnchorUs + 1);
      this.anchorBaseUs = this.anchorAtOrAfter(from);
      this.lastAnchorUs = Math.min(this.lastAnchorUs, this.anchorBaseUs - 1);
    }
    this.current = next;
    this.kick();
  }

  hold(): () => void {
    this.holds += 1;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.holds -= 1;
      this.kick();
    };
  }

  abort(): void {
    this.generation += 1;
    this.tx.c2p.clear();
    this.tx.p2c.clear();
    this.rx.clear();
    this.pending.clear();
    if (this.event) this.lastAnchorUs = this.event.anchorUs;
    this.event = null;
    this.nextTxUs = null;
  }

  /**
   * Resolves once nothing is queued or in flight (time stands still while held). For scenario
   * drivers: the virtual controller never needs it.
   */
  whenIdle(): Promise<void> {
    return new Promise((resolve) => {
      const check = () => {
        if (this.idle && !this.pumpQueued) resolve();
        else setImmediate(check);
      };
      setImmediate(check);
    });
  }

  private get ciUs(): number {
    return Math.round(this.current.connIntervalMs * 1000);
  }

  private anchorAtOrAfter(t: number): number {
    const ci = this.ciUs;
    const k = Math.max(0, Math.ceil((t - this.anchorBaseUs) / ci));
    return this.anchorBaseUs + k * ci;
  }

  private kick(): void {
    if (this.pumpQueued || this.holds > 0) return;
    this.pumpQueued = true;
    setImmediate(this.pump);
  }

  private schedule(at: number, user: boolean, run: () => void): void {
    this.pending.push({ at, seq: this.seq++, user, run });
  }

  private nextTakeUs(): number {
    const head = this.rx.peek();
    return head ? Math.max(head.arrivedUs, this.stalledUntilUs) : Number.POSITIVE_INFINITY;
  }

  private nextExchangeUs(): number {
    if (this.event) return this.nextTxUs ?? Number.POSITIVE_INFINITY;
    const c = this.tx.c2p.peek();
    const p = this.tx.p2c.peek();
    if (!c && !p) return Number.POSITIVE_INFINITY;
    const ready = Math.min(
      c?.readyUs ?? Number.POSITIVE_INFINITY,
      p?.readyUs ?? Number.POSITIVE_INFINITY,
    );
    let anchor = this.anchorAtOrAfter(Math.max(ready, this.busyUntilUs, this.now));
    while (anchor <= this.lastAnchorUs) anchor += this.ciUs;
    return anchor;
  }

  private readonly pump = (): void => {
    this.pumpQueued = false;
    while (this.holds === 0) {
      const top = this.pending.peek();
      const tPending = top ? top.at : Number.POSITIVE_INFINITY;
      const tTake = this.nextTakeUs();
      const tExchange = this.nextExchangeUs();
      if (
        tPending === Number.POSITIVE_INFINITY &&
        tTake === Number.POSITIVE_INFINITY &&
        tExchange === Number.POSITIVE_INFINITY
      ) {
        return;
      }
      if (top && tPending <= tTake && tPending <= tExchange) {
        this.pending.pop();
        this.now = Math.max(this.now, top.at);
        top.run();
        if (top.user) {
          this.kick();
          return;
        }
      } else if (tTake <= tExchange) {
        this.now = Math.max(this.now, tTake);
        const item = this.rx.shift();
        item?.pdu.onDelivered();
        this.kick();
        return;
      } else {
        this.now = Math.max(this.now, tExchange);
        this.runExchange(this.now);
      }
    }
  };

  private limitFor(direction: Direction): number {
    return this.options.maxDataPdusPerEvent?.[direction] ?? Number.POSITIVE_INFINITY;
  }

  /** Head of a side's queue if it may go in an exchange starting at `t`. */
  private eligible(direction: Direction, t: number, ev: OpenEvent): QueuedPdu | undefined {
    const head = this.tx[direction].peek();
    if (!head || head.readyUs > t || ev.dataPdus[direction] >= this.limitFor(direction)) {
      return undefined;
    }
    return head;
  }

  private runExchange(t: number): void {
    let ev = this.event;
    if (!ev) {
      const ci = this.ciUs;
      const ceLen = this.options.maxCeLenUs ?? Number.POSITIVE_INFINITY;
      ev = {
        anchorUs: t,
        limitUs: Math.min(t + ci - this.options.ceMarginUs, t + ceLen),
        dataPdus: { c2p: 0, p2c: 0 },
      };
      this.event = ev;
      this.stats.events += 1;
    }
    this.nextTxUs = null;
    this.stats.exchanges += 1;
    const { phy, encrypted } = this.current;
    const c = this.eligible('c2p', t, ev);
    const p = this.eligible('p2c', t, ev);
    const cEnd = t + pduAirUs(c?.bytes ?? 0, phy, encrypted);
    const pEnd = cEnd + T_IFS_US + pduAirUs(p?.bytes ?? 0, phy, encrypted);
    const end = pEnd + T_IFS_US;
    const gen = this.generation;

    if (c) {
      this.stats.dataPdus.c2p += 1;
      ev.dataPdus.c2p += 1;
      if (this.rx.length < this.options.peripheralRxBuffers) {
        this.tx.c2p.shift();
        this.rx.push({ pdu: c, arrivedUs: cEnd });
        // The central learns of the acknowledgement from the peripheral's reply.
        const acked = c.onAcked;
        if (acked) this.schedule(pEnd, true, () => gen === this.generation && acked());
      } else {
        // Buffers full: the peripheral does not advance NESN; the PDU stays first in line.
        this.stats.naks += 1;
      }
    } else {
      this.stats.emptyPdus.c2p += 1;
    }
    if (p) {
      this.tx.p2c.shift();
      this.stats.dataPdus.p2c += 1;
      ev.dataPdus.p2c += 1;
      this.schedule(pEnd, true, () => {
        if (gen !== this.generation) return;
        p.onDelivered();
        p.onAcked?.();
      });
    } else {
      this.stats.emptyPdus.p2c += 1;
    }

    // More Data as each side signals it in this exchange.
    const moreData =
      this.eligible('c2p', t, ev) !== undefined || this.eligible('p2c', t, ev) !== undefined;
    // The next anchor may follow the reply at once: the trailing T_IFS leads nowhere.
    this.busyUntilUs = pEnd;
    // The central decides when the reply has ended (NimBLE checks in its rx-end interrupt), so a
    // closed event frees the air from there and the next anchor can follow.
    this.schedule(pEnd, false, () => {
      if (gen !== this.generation || this.event !== ev) return;
      if (moreData && this.nextFits(end, ev)) {
        this.nextTxUs = end;
      } else {
        this.lastAnchorUs = ev.anchorUs;
        this.event = null;
      }
    });
  }

  /** NimBLE's rule, evaluated when the previous reply has ended (`end` - T_IFS). */
  private nextFits(end: number, ev: OpenEvent): boolean {
    const { phy, encrypted, dataLength } = this.current;
    const c = this.eligible('c2p', end, ev);
    const p = this.eligible('p2c', end, ev);
    const reserve =
      this.options.rxReserve === 'reply'
        ? pduAirUs(p?.bytes ?? 0, phy, encrypted)
        : pduAirUs(Math.min(dataLength, DATA_LENGTH_MAX), phy, encrypted);
    const begin = end - T_IFS_US;
    return begin + pduAirUs(c?.bytes ?? 0, phy, encrypted) + 2 * T_IFS_US + reserve < ev.limitUs;
  }
}

function validateParams(p: LinkParams): LinkParams {
  assertConnInterval(p.connIntervalMs);
  if (!Number.isInteger(p.dataLength) || p.dataLength < 27 || p.dataLength > DATA_LENGTH_MAX) {
    throw new RangeError(`data length must be an integer from 27 to 251, got ${p.dataLength}`);
  }
  if (!Number.isInteger(p.attMtu) || p.attMtu < 23 || p.attMtu > 527) {
    throw new RangeError(
      `ATT MTU must be an integer from 23 to 527 (NimBLE's maximum), got ${p.attMtu}`,
    );
  }
  if (p.phy !== '1M' && p.phy !== '2M') {
    throw new RangeError(`PHY must be '1M' or '2M', got ${String(p.phy)}`);
  }
  return p;
}
