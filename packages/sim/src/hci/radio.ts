import { EventEmitter } from 'node:events';
import { VirtualPeripheral, type VirtualPeripheralOptions } from '../att/peripheral.ts';
import type { AirScheduler } from '../link/types.ts';
import {
  type ControllerConfig,
  type LinkRequest,
  type RadioPort,
  VirtualController,
} from './controller.ts';
import type { FaultRecord } from './faults.ts';

export interface VirtualRadioOptions {
  /** A fresh AirScheduler for each new connection; its initial params decide interval, PHY and data length. */
  createLink: (req: LinkRequest) => AirScheduler;
  /**
   * The interval a central's controller picks for a connection update in [minMs, maxMs].
   * Default: keep the current interval if it is in range, else the nearest bound.
   */
  chooseInterval?: (minMs: number, maxMs: number, currentMs: number) => number;
  /** Settings for the controllers of the centrals (one per opened HCI socket). */
  controller?: Partial<Omit<ControllerConfig, 'address'>>;
  /** Wall-clock period of repeated advertising reports when the host scans without duplicate filtering. */
  reportRepeatMs?: number;
}

export type RadioFaultRecord = FaultRecord & { peripheral: string };

/**
 * The shared air: the virtual peripherals that advertise on it and the controllers of the
 * centrals (one per HCI socket that noble opens) that scan and connect.
 */
export class VirtualRadio extends EventEmitter<{ fault: [RadioFaultRecord] }> implements RadioPort {
  private readonly list: VirtualPeripheral[] = [];
  private readonly ctrls: VirtualController[] = [];
  private readonly faultRecords: RadioFaultRecord[] = [];

  constructor(private readonly options: VirtualRadioOptions) {
    super();
  }

  addPeripheral(options: VirtualPeripheralOptions): VirtualPeripheral {
    const p = new VirtualPeripheral(options);
    if (this.list.some((q) => q.address === p.address)) {
      throw new Error(
        `a peripheral with address ${p.address} is already on the radio; give each device its own address`,
      );
    }
    this.list.push(p);
    p.on('advertising', () => {
      for (const c of this.ctrls) c.advertisersChanged();
    });
    p.on('fault', (r) => {
      const rec = { ...r, peripheral: p.address };
      this.faultRecords.push(rec);
      this.emit('fault', rec);
    });
    if (p.advertising) for (const c of this.ctrls) c.advertisersChanged();
    return p;
  }

  /** Takes a peripheral off the air (power off): its links drop with a supervision timeout. */
  removePeripheral(p: VirtualPeripheral): void {
    const i = this.list.indexOf(p);
    if (i < 0) return;
    p.reset();
    this.list.splice(i, 1);
  }

  peripherals(): readonly VirtualPeripheral[] {
    return this.list;
  }

  /** Controllers of the centrals, in the order their sockets were opened. */
  get controllers(): readonly VirtualController[] {
    return this.ctrls;
  }

  /** Every fault that fired on any peripheral, in order. */
  get faultLog(): readonly RadioFaultRecord[] {
    return this.faultRecords;
  }

  createController(config: Partial<ControllerConfig> = {}): VirtualController {
    const n = this.ctrls.length + 1;
    const address = config.address ?? `c0:de:00:00:00:${n.toString(16).padStart(2, '0')}`;
    const c = new VirtualController(
      this,
      { ...this.options.controller, ...config, address },
      this.options.reportRepeatMs,
    );
    this.ctrls.push(c);
    return c;
  }

  createLink(req: LinkRequest): AirScheduler {
    return this.options.createLink(req);
  }

  chooseInterval(minMs: number, maxMs: number, currentMs: number): number {
    if (this.options.chooseInterval) return this.options.chooseInterval(minMs, maxMs, currentMs);
    return Math.min(maxMs, Math.max(minMs, currentMs));
  }
}
