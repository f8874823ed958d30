import { assertPduFits, DATA_LENGTH_MAX } from './air.ts';
import type { AirScheduler, Direction, LinkParams } from './types.ts';

export const DEFAULT_LINK_PARAMS: LinkParams = {
  phy: '1M',
  dataLength: DATA_LENGTH_MAX,
  connIntervalMs: 15,
  attMtu: 23,
  encrypted: false,
};

/**
 * A link without latency: every PDU reaches its peer on the next turn of the event loop, in the
 * order sent, and modeled time stays at 0. For functional tests, and for measuring what the
 * client stack itself costs (`pnpm bench`'s clientStackMBps), where the link must never be the
 * limit. Stalls are counted in {@link stalledUs} but delay nothing.
 */
export class ImmediateAirScheduler implements AirScheduler {
  readonly sent: Record<Direction, number> = { c2p: 0, p2c: 0 };
  /** Sum of the peripheral stalls reported, for tests that check flash work was announced. */
  stalledUs = 0;
  private current: LinkParams;
  private queue: Array<{ onDelivered: () => void; onAcked: (() => void) | undefined }> = [];
  private flushQueued = false;
  private holds = 0;
  private generation = 0;

  constructor(params: Partial<LinkParams> = {}) {
    this.current = { ...DEFAULT_LINK_PARAMS, ...params };
  }

  get nowUs(): number {
    return 0;
  }

  get params(): Readonly<LinkParams> {
    return this.current;
  }

  send(
    direction: Direction,
    payloadBytes: number,
    onDelivered: () => void,
    onAcked?: () => void,
  ): void {
    assertPduFits(payloadBytes, this.current.dataLength);
    this.sent[direction] += 1;
    this.queue.push({ onDelivered, onAcked });
    this.kick();
  }

  stallPeripheral(us: number): void {
    this.stalledUs += us;
  }

  setParams(change: Partial<LinkParams>): void {
    this.current = { ...this.current, ...change };
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
    this.queue = [];
  }

  private kick(): void {
    if (this.flushQueued || this.holds > 0 || this.queue.length === 0) return;
    this.flushQueued = true;
    setImmediate(this.flush);
  }

  private readonly flush = (): void => {
    this.flushQueued = false;
    // Drain in batches: PDUs sent by the callbacks go in the next batch, after I/O had a turn.
    const batch = this.queue;
    const gen = this.generation;
    this.queue = [];
    for (let i = 0; i < batch.length; i++) {
      if (gen !== this.generation) return;
      if (this.holds > 0) {
        this.queue = batch.slice(i).concat(this.queue);
        return;
      }
      const item = batch[i];
      if (!item) continue;
      item.onDelivered();
      item.onAcked?.();
    }
    this.kick();
  };
}
