import type { AirScheduler, Phy } from '../link/types.ts';
import { L2CAP_CID_ATT, L2CAP_CID_LE_SIGNALING, PB_CONT, PB_START, Status } from './constants.ts';
import type { FaultSet } from './faults.ts';

/** The central's controller, as a connection sees it. */
export interface CentralEnd {
  /** One received LL data PDU, passed up to the central host as an HCI ACL packet. */
  deliverAcl(handle: number, pb: number, chunk: Buffer): void;
  /** A complete L2CAP signaling frame from the peripheral, for the central's kernel. */
  onPeripheralSignaling(connection: Connection, payload: Buffer): void;
  linkClosed(connection: Connection, reason: number): void;
  /**
   * The peripheral's LL_LENGTH_REQ reached the central's controller: it settles the data length
   * (the lesser of both sides' maxima and the request), applies it to the link and tells its host.
   */
  onPeripheralDataLength(connection: Connection, txOctets: number): void;
  /** The peripheral's LL_PHY_REQ: returns the PHY the central's controller chooses. */
  onPeripheralPhyRequest(connection: Connection, txPhys: number, rxPhys: number): Phy;
  /** The PHY update instant passed: the link now uses `phy`; the central tells its host. */
  onPhyUpdated(connection: Connection, phy: Phy, changed: boolean): void;
}

/** The peripheral's host, as a connection sees it. */
export interface PeripheralEnd {
  readonly faults: FaultSet;
  valueHandleOf(chrId: number): number | undefined;
  receiveL2cap(conn: number, cid: number, payload: Buffer): void;
  linkClosed(conn: number, reason: number): void;
  /** The central's controller applied a connection update (LE Connection Update Complete). */
  connectionUpdated?(conn: number): void;
  /**
   * The central started encryption with this key (LE Start Encryption): the HCI status of the
   * Encryption Change (0 encrypted, 0x06 no such key, 0x3d the keys differ).
   */
  startEncryption?(conn: number, rand: Buffer, ediv: number, key: Buffer): number;
}

export type Initiator = 'central' | 'peripheral' | 'link';

/**
 * One LE connection between the central's virtual controller and a virtual peripheral. It cuts
 * L2CAP traffic into link-layer PDUs of the current data length, lets the AirScheduler decide
 * when each one lands, reassembles on the far side, and applies the peripheral's link faults.
 */
export class Connection {
  closed = false;
  /** The peripheral's own handle for this connection (what its app sees as `conn`). */
  conn = -1;
  private rx: { length: number; cid: number; parts: Buffer[]; have: number } | undefined;

  constructor(
    readonly handle: number,
    readonly peripheralAddress: string,
    private readonly central: CentralEnd,
    private readonly peripheral: PeripheralEnd,
    readonly scheduler: AirScheduler,
    /** The central's public BD address (SMP's initiator address). */
    readonly centralAddress = '00:00:00:00:00:00',
  ) {}

  /**
   * One HCI ACL packet from the central host (`pb` = packet boundary flag, `data` = its payload).
   * `onAcked` runs once the peripheral's link layer has acknowledged every LL PDU of it: the
   * controller then returns the buffer credit with Number Of Completed Packets. The data reaches
   * the peripheral's host when the scheduler says it took it (after any stall).
   */
  fromCentralHost(pb: number, data: Buffer, onAcked: () => void): void {
    this.sendOnAir(
      'c2p',
      data,
      (_chunk, last) => {
        if (last) this.reassemble(pb, data);
      },
      onAcked,
    );
  }

  /** An L2CAP frame the central's kernel sends on its own (signaling responses). */
  fromCentralKernel(cid: number, payload: Buffer): void {
    this.sendOnAir('c2p', l2capFrame(cid, payload), (_chunk, last) => {
      if (last) this.deliverToPeripheral(cid, payload);
    });
  }

  /** An L2CAP payload the peripheral's host sends to the central. */
  fromPeripheral(cid: number, payload: Buffer): void {
    if (this.closed) return;
    const out = this.applyFaults('p2c', cid, payload);
    if (!out) return;
    let first = true;
    this.sendOnAir('p2c', l2capFrame(cid, out), (chunk, last) => {
      this.central.deliverAcl(this.handle, first ? PB_START : PB_CONT, chunk);
      first = false;
      if (last && cid === L2CAP_CID_LE_SIGNALING) this.central.onPeripheralSignaling(this, out);
    });
  }

  /**
   * Ends the connection. `reason` is what the initiator's peer is told (0x13 for a user
   * disconnect); the initiator's own side sees 0x16, and a lost link shows `reason` on both.
   */
  terminate(initiator: Initiator, reason: number): void {
    if (this.closed) return;
    this.closed = true;
    this.scheduler.abort?.();
    const centralReason = initiator === 'central' ? Status.LocalHostTerminated : reason;
    const peripheralReason = initiator === 'peripheral' ? Status.LocalHostTerminated : reason;
    this.central.linkClosed(this, centralReason);
    this.peripheral.linkClosed(this.conn, peripheralReason);
  }

  /**
   * The peripheral's controller starts the Data Length Update procedure (LL_LENGTH_REQ, answered
   * by LL_LENGTH_RSP: control PDUs of 9 bytes). Resolves with the data length the link uses once
   * the answer is back; never settles if the link drops first.
   */
  requestDataLength(txOctets: number): Promise<number> {
    return new Promise((resolve) => {
      if (this.closed) return;
      this.scheduler.send('p2c', LL_LENGTH_PDU_BYTES, () => {
        if (this.closed) return;
        this.central.onPeripheralDataLength(this, txOctets);
        this.scheduler.send('c2p', LL_LENGTH_PDU_BYTES, () => {
          if (!this.closed) resolve(this.scheduler.params.dataLength);
        });
      });
    });
  }

  /**
   * The peripheral's controller starts the PHY Update procedure (LL_PHY_REQ, 3 bytes; the
   * central answers with LL_PHY_UPDATE_IND, 5 bytes, and both switch). Resolves with the PHY in
   * use afterwards; never settles if the link drops first.
   */
  requestPhy(txPhys: number, rxPhys: number): Promise<Phy> {
    return new Promise((resolve) => {
      if (this.closed) return;
      this.scheduler.send('p2c', LL_PHY_REQ_BYTES, () => {
        if (this.closed) return;
        const phy = this.central.onPeripheralPhyRequest(this, txPhys, rxPhys);
        this.scheduler.send('c2p', LL_PHY_UPDATE_IND_BYTES, () => {
          if (this.closed) return;
          const changed = this.scheduler.params.phy !== phy;
          if (changed) this.scheduler.setParams({ phy });
          this.central.onPhyUpdated(this, phy, changed);
          resolve(phy);
        });
      });
    });
  }

  /** The central's controller switched to new connection parameters. */
  connectionUpdated(): void {
    if (!this.closed) this.peripheral.connectionUpdated?.(this.conn);
  }

  /** The central's controller forgot the link (HCI Reset, power-off): only the peripheral learns of it. */
  abandon(peripheralReason: number): void {
    if (this.closed) return;
    this.closed = true;
    this.scheduler.abort?.();
    this.peripheral.linkClosed(this.conn, peripheralReason);
  }

  private sendOnAir(
    direction: 'c2p' | 'p2c',
    data: Buffer,
    onPdu: (chunk: Buffer, last: boolean) => void,
    onAllAcked?: () => void,
  ): void {
    if (this.closed) return;
    const size = Math.max(1, this.scheduler.params.dataLength);
    const chunks: Buffer[] = [];
    for (let off = 0; off < data.length; off += size) chunks.push(data.subarray(off, off + size));
    if (chunks.length === 0) chunks.push(Buffer.alloc(0));
    chunks.forEach((chunk, i) => {
      const last = i === chunks.length - 1;
      // Acknowledgements come in order, so the last PDU's one means the whole packet is acked.
      const onAcked =
        last && onAllAcked
          ? () => {
              if (!this.closed) onAllAcked();
            }
          : undefined;
      const onDelivered = () => {
        if (this.closed) return;
        if (this.peripheral.faults.timeReached(this.conn, this.scheduler.nowUs)) {
          this.terminate('link', Status.ConnectionTimeout);
          return;
        }
        onPdu(chunk, last);
      };
      this.scheduler.send(direction, chunk.length, onDelivered, onAcked);
    });
  }

  private reassemble(pb: number, data: Buffer): void {
    if (pb !== PB_CONT) {
      if (data.length < 4) return;
      this.rx = {
        length: data.readUInt16LE(0),
        cid: data.readUInt16LE(2),
        parts: [data.subarray(4)],
        have: data.length - 4,
      };
    } else if (this.rx) {
      this.rx.parts.push(data);
      this.rx.have += data.length;
    } else {
      // A continuation without a start: the peripheral's controller drops it.
      return;
    }
    const rx = this.rx;
    if (rx && rx.have >= rx.length) {
      this.rx = undefined;
      this.deliverToPeripheral(rx.cid, Buffer.concat(rx.parts).subarray(0, rx.length));
    }
  }

  private deliverToPeripheral(cid: number, payload: Buffer): void {
    if (this.closed) return;
    const out = this.applyFaults('c2p', cid, payload);
    if (out) this.peripheral.receiveL2cap(this.conn, cid, out);
  }

  /** The peripheral's ATT faults on one L2CAP payload: what goes on, or undefined if it is lost. */
  private applyFaults(direction: 'c2p' | 'p2c', cid: number, payload: Buffer): Buffer | undefined {
    if (cid !== L2CAP_CID_ATT) return payload;
    const v = this.peripheral.faults.onAttPdu(
      direction,
      payload,
      this.conn,
      this.scheduler.nowUs,
      (id) => this.peripheral.valueHandleOf(id),
    );
    if (v.action === 'drop-link') {
      this.terminate('link', Status.ConnectionTimeout);
      return undefined;
    }
    return v.action === 'drop' ? undefined : v.pdu;
  }
}

/** LL control PDU sizes (opcode + parameters), Core Vol 6 Part B 2.4.2. */
const LL_LENGTH_PDU_BYTES = 9;
const LL_PHY_REQ_BYTES = 3;
const LL_PHY_UPDATE_IND_BYTES = 5;

export function l2capFrame(cid: number, payload: Buffer): Buffer {
  const frame = Buffer.alloc(4 + payload.length);
  frame.writeUInt16LE(payload.length, 0);
  frame.writeUInt16LE(cid, 2);
  payload.copy(frame, 4);
  return frame;
}
