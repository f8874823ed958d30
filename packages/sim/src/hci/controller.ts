import type { VirtualPeripheral } from '../att/peripheral.ts';
import type { AirScheduler, Phy } from '../link/types.ts';
import { type CentralEnd, Connection } from './connection.ts';
import {
  EVT_CMD_COMPLETE,
  EVT_CMD_STATUS,
  EVT_DATA_BUFFER_OVERFLOW,
  EVT_DISCONN_COMPLETE,
  EVT_ENCRYPT_CHANGE,
  EVT_LE_META,
  EVT_NUM_COMPLETED_PACKETS,
  HCI_ACLDATA_PKT,
  HCI_COMMAND_PKT,
  HCI_EVENT_PKT,
  L2CAP_CID_LE_SIGNALING,
  LE_ADVERTISING_REPORT,
  LE_CONN_COMPLETE,
  LE_CONN_UPDATE_COMPLETE,
  LE_DATA_LENGTH_CHANGE,
  LE_ENHANCED_CONN_COMPLETE,
  LE_EXTENDED_ADVERTISING_REPORT,
  LE_PHY_UPDATE_COMPLETE,
  MAX_DATA_LENGTH,
  MAX_DATA_TIME_1M,
  MIN_DATA_LENGTH,
  MIN_DATA_TIME,
  Op,
  Status,
} from './constants.ts';

/** What a controller needs from the radio it sits on. */
export interface RadioPort {
  peripherals(): readonly VirtualPeripheral[];
  createLink(req: LinkRequest): AirScheduler;
  chooseInterval(minMs: number, maxMs: number, currentMs: number): number;
}

export interface LinkRequest {
  centralAddress: string;
  peripheralAddress: string;
  minIntervalMs: number;
  maxIntervalMs: number;
  latency: number;
  supervisionTimeoutMs: number;
}

export interface ControllerConfig {
  /** The adapter's public BD address. */
  address: string;
  /** LE ACL buffers the controller reports (LE Read Buffer Size). 0/0 makes the host use the BR/EDR ones. */
  leAclLength: number;
  leAclNum: number;
  /** BR/EDR buffers (Read Buffer Size), used by the host when the LE ones are 0. */
  aclLength: number;
  aclNum: number;
  /** Whether the controller does LE 2M PHY. */
  supports2M: boolean;
  /** HCI/LMP version reported by Read Local Version (0x0b = 5.2). */
  hciVersion: number;
  /** Company id in Read Local Version; 0x05f1 is The Linux Foundation, as BlueZ's virtual controllers report. */
  manufacturer: number;
}

export const DEFAULT_CONTROLLER_CONFIG: Omit<ControllerConfig, 'address'> = {
  leAclLength: 251,
  leAclNum: 8,
  aclLength: 1021,
  aclNum: 8,
  supports2M: true,
  hciVersion: 0x0b,
  manufacturer: 0x05f1,
};

/** How the controller reaches its host: the virtual socket. */
export interface HostPort {
  /**
   * Queues one packet for the host. `afterHostTurn` runs once the host has had the packet and a
   * turn to react to it (its writes issued), so modeled time can stay frozen until then.
   */
  toHost(packet: Buffer, afterHostTurn?: () => void): void;
  /** True when the host drives L2CAP signaling itself (HCI_CHANNEL_USER); false on a raw socket, where the kernel does. */
  isUserChannel(): boolean;
}

interface PendingCreate {
  address: string;
  minIntervalMs: number;
  maxIntervalMs: number;
  latency: number;
  supervisionTimeoutMs: number;
}

/**
 * The central's Bluetooth controller (plus, on a raw socket, the slice of the Linux kernel that
 * answers L2CAP signaling). It answers the HCI commands noble sends with the events a real
 * controller sends, reports advertisers while scanning, and carries ACL data over
 * {@link Connection}s whose timing the AirScheduler decides.
 */
export class VirtualController implements CentralEnd {
  readonly config: ControllerConfig;
  private eventMask = Buffer.from('ffffffffff1f0000', 'hex');
  private leEventMask = Buffer.from('1f00000000000000', 'hex');
  private scanning = false;
  private scanExtended = false;
  private scanActive = true;
  private filterDuplicates = false;
  private readonly reported = new Set<string>();
  private repeatTimer: NodeJS.Timeout | undefined;
  private pendingCreate: PendingCreate | undefined;
  private readonly links = new Map<number, Connection>();
  private readonly inFlight = new Map<number, number>();
  private readonly completed = new Map<number, number>();
  private nocpReleases: Array<() => void> = [];
  private nocpScheduled = false;
  private outstanding = 0;
  private nextHandle = 0x0040;
  private suggestedTxOctets = MIN_DATA_LENGTH;
  private suggestedTxTime = MIN_DATA_TIME;
  private leHostSupported = 0;
  private host: HostPort | undefined;
  /** Every HCI packet in both directions, for tests and traces: [direction, packet]. */
  readonly trace: Array<['host->controller' | 'controller->host', Buffer]> = [];
  traceEnabled = false;

  constructor(
    private readonly radio: RadioPort,
    config: Partial<ControllerConfig> & { address: string },
    /** Repeat advertising reports this often (wall clock) while scanning without duplicate filtering. */
    private readonly reportRepeatMs = 100,
  ) {
    this.config = { ...DEFAULT_CONTROLLER_CONFIG, ...config };
  }

  attachHost(host: HostPort): void {
    this.host = host;
  }

  /** Called by the radio whenever a peripheral starts or stops advertising. */
  advertisersChanged(): void {
    if (this.scanning) this.reportAdvertisers();
    if (this.pendingCreate) this.tryConnect();
  }

  /** Open connections by central-side handle. */
  connections(): ReadonlyMap<number, Connection> {
    return this.links;
  }

  /** One packet written by the host (the first byte is the HCI packet indicator). */
  fromHost(packet: Buffer): void {
    if (this.traceEnabled) this.trace.push(['host->controller', Buffer.from(packet)]);
    const type = packet[0];
    if (type === HCI_COMMAND_PKT && packet.length >= 4) {
      this.command(packet.readUInt16LE(1), packet.subarray(4, 4 + (packet[3] ?? 0)));
    } else if (type === HCI_ACLDATA_PKT && packet.length >= 5) {
      this.acl(packet);
    }
  }

  // ---- CentralEnd ----

  deliverAcl(handle: number, pb: number, chunk: Buffer): void {
    const pkt = Buffer.alloc(5 + chunk.length);
    pkt.writeUInt8(HCI_ACLDATA_PKT, 0);
    pkt.writeUInt16LE((handle & 0x0fff) | (pb << 12), 1);
    pkt.writeUInt16LE(chunk.length, 3);
    chunk.copy(pkt, 5);
    // The host answers data on the spot: keep the link's modeled time still until it has.
    this.send(pkt, holdOf(this.links.get(handle)));
  }

  onPeripheralSignaling(connection: Connection, payload: Buffer): void {
    // On a raw socket the Linux kernel owns L2CAP signaling: it answers the peripheral's
    // Connection Parameter Update Request and issues LE Connection Update itself. On a user
    // channel the host (noble) does both.
    if (this.host?.isUserChannel() || payload.length < 12 || payload[0] !== 0x12) return;
    const id = payload[1] ?? 0;
    const min = payload.readUInt16LE(4);
    const max = payload.readUInt16LE(6);
    const latency = payload.readUInt16LE(8);
    const timeout = payload.readUInt16LE(10);
    const ok = validConnParams(min, max, latency, timeout);
    const rsp = Buffer.from([0x13, id, 0x02, 0x00, ok ? 0x00 : 0x01, 0x00]);
    connection.fromCentralKernel(L2CAP_CID_LE_SIGNALING, rsp);
    if (ok) {
      this.commandStatus(Op.LeConnectionUpdate, Status.Success);
      this.updateConnection(connection, min * 1.25, max * 1.25, latency, timeout * 10);
    }
  }

  onPeripheralDataLength(connection: Connection, txOctets: number): void {
    const peer = this.peripheralAt(connection.peripheralAddress);
    const effective = Math.max(
      MIN_DATA_LENGTH,
      Math.min(txOctets, MAX_DATA_LENGTH, peer?.maxDataLength ?? MIN_DATA_LENGTH),
    );
    if (effective === connection.scheduler.params.dataLength) return;
    connection.scheduler.setParams({ dataLength: effective });
    this.dataLengthChange(connection, effective);
  }

  onPeripheralPhyRequest(connection: Connection, txPhys: number, rxPhys: number): Phy {
    const peer = this.peripheralAt(connection.peripheralAddress);
    // Symmetric PHYs only (the link model has one PHY): 2M when both directions may use it and
    // both controllers have it.
    const both2M = (txPhys & 0x02) !== 0 && (rxPhys & 0x02) !== 0;
    return both2M && this.config.supports2M && peer?.supports2M ? '2M' : '1M';
  }

  onPhyUpdated(connection: Connection, phy: Phy, changed: boolean): void {
    // A procedure the peer started and that changed nothing is not reported to the host.
    if (changed) this.phyUpdate(connection, Status.Success, phy === '2M' ? 2 : 1);
  }

  linkClosed(connection: Connection, reason: number): void {
    const handle = connection.handle;
    this.links.delete(handle);
    // Packets still in flight on a closed link are flushed; the host forgets them with the handle.
    this.outstanding -= this.inFlight.get(handle) ?? 0;
    this.inFlight.delete(handle);
    this.completed.delete(handle);
    const ev = Buffer.alloc(4);
    ev.writeUInt8(Status.Success, 0);
    ev.writeUInt16LE(handle, 1);
    ev.writeUInt8(reason, 3);
    this.event(EVT_DISCONN_COMPLETE, ev);
  }

  /** Drops every connection and stops scanning, as HCI Reset or a power-off does (no events). */
  resetState(): void {
    this.setScan(false);
    this.pendingCreate = undefined;
    // The peer notices only when its supervision timeout expires; the host hears nothing.
    for (const link of [...this.links.values()]) link.abandon(Status.ConnectionTimeout);
    this.links.clear();
    this.inFlight.clear();
    this.completed.clear();
    this.outstanding = 0;
  }

  // ---- commands ----

  private command(opcode: number, p: Buffer): void {
    switch (opcode) {
      case Op.Reset:
        this.resetState();
        this.eventMask = Buffer.from('ffffffffff1f0000', 'hex');
        this.leEventMask = Buffer.from('1f00000000000000', 'hex');
        this.complete(opcode, Status.Success);
        return;
      case Op.SetEventMask:
        if (p.length === 8) this.eventMask = Buffer.from(p);
        this.complete(opcode, p.length === 8 ? Status.Success : Status.InvalidParameters);
        return;
      case Op.LeSetEventMask:
        if (p.length === 8) this.leEventMask = Buffer.from(p);
        this.complete(opcode, p.length === 8 ? Status.Success : Status.InvalidParameters);
        return;
      case Op.ReadLocalVersion: {
        const r = Buffer.alloc(8);
        r.writeUInt8(this.config.hciVersion, 0);
        r.writeUInt16LE(0x0000, 1);
        r.writeUInt8(this.config.hciVersion, 3);
        r.writeUInt16LE(this.config.manufacturer, 4);
        r.writeUInt16LE(0x0000, 6);
        this.complete(opcode, Status.Success, r);
        return;
      }
      case Op.ReadLocalSupportedFeatures:
        // LMP features: bit 38 "LE Supported (Controller)", bit 37 "BR/EDR Not Supported".
        this.complete(opcode, Status.Success, Buffer.from('0000000060000000', 'hex'));
        return;
      case Op.ReadBdAddr:
        this.complete(opcode, Status.Success, addressBytes(this.config.address));
        return;
      case Op.ReadBufferSize: {
        const r = Buffer.alloc(7);
        r.writeUInt16LE(this.config.aclLength, 0);
        r.writeUInt8(0, 2);
        r.writeUInt16LE(this.config.aclNum, 3);
        r.writeUInt16LE(0, 5);
        this.complete(opcode, Status.Success, r);
        return;
      }
      case Op.LeReadBufferSize: {
        const r = Buffer.alloc(3);
        r.writeUInt16LE(this.config.leAclLength, 0);
        r.writeUInt8(this.config.leAclNum, 2);
        this.complete(opcode, Status.Success, r);
        return;
      }
      case Op.LeReadBufferSizeV2: {
        const r = Buffer.alloc(6);
        r.writeUInt16LE(this.config.leAclLength, 0);
        r.writeUInt8(this.config.leAclNum, 2);
        this.complete(opcode, Status.Success, r);
        return;
      }
      case Op.LeReadLocalSupportedFeatures: {
        // Encryption, conn. parameters request, extended reject, peripheral features exchange,
        // ping, data length extension, privacy, extended scanner filter, (2M PHY).
        const f = Buffer.alloc(8);
        f.writeUInt16LE(0x00ff | (this.config.supports2M ? 0x0100 : 0), 0);
        this.complete(opcode, Status.Success, f);
        return;
      }
      case Op.WriteLeHostSupported:
        this.leHostSupported = p[0] ?? 0;
        this.complete(opcode, Status.Success);
        return;
      case Op.ReadLeHostSupported:
        this.complete(opcode, Status.Success, Buffer.from([this.leHostSupported, 0x00]));
        return;
      case Op.LeSetRandomAddress:
        this.complete(opcode, p.length === 6 ? Status.Success : Status.InvalidParameters);
        return;
      case Op.LeSetScanParameters:
        if (this.scanning) {
          this.complete(opcode, Status.CommandDisallowed);
          return;
        }
        this.scanActive = p[0] === 0x01;
        this.scanExtended = false;
        this.complete(opcode, Status.Success);
        return;
      case Op.LeSetExtendedScanParameters:
        if (this.scanning) {
          this.complete(opcode, Status.CommandDisallowed);
          return;
        }
        this.scanActive = p[3] === 0x01;
        this.scanExtended = true;
        this.complete(opcode, Status.Success);
        return;
      case Op.LeSetScanEnable:
      case Op.LeSetExtendedScanEnable:
        this.complete(opcode, Status.Success);
        this.filterDuplicates = p[1] === 0x01;
        this.scanExtended = opcode === Op.LeSetExtendedScanEnable;
        this.setScan(p[0] === 0x01);
        return;
      case Op.LeCreateConnection:
      case Op.LeExtendedCreateConnection:
        this.createConnection(opcode, p);
        return;
      case Op.LeCreateConnectionCancel:
        this.cancelCreate();
        return;
      case Op.Disconnect:
        this.disconnectCommand(p);
        return;
      case Op.LeConnectionUpdate: {
        const link = this.links.get(p.readUInt16LE(0) & 0x0fff);
        if (!link) {
          this.commandStatus(opcode, Status.UnknownConnectionId);
          return;
        }
        const min = p.readUInt16LE(2);
        const max = p.readUInt16LE(4);
        const latency = p.readUInt16LE(6);
        const timeout = p.readUInt16LE(8);
        if (!validConnParams(min, max, latency, timeout)) {
          this.commandStatus(opcode, Status.InvalidParameters);
          return;
        }
        this.commandStatus(opcode, Status.Success);
        this.updateConnection(link, min * 1.25, max * 1.25, latency, timeout * 10);
        return;
      }
      case Op.ReadRssi: {
        const handle = p.readUInt16LE(0) & 0x0fff;
        const link = this.links.get(handle);
        const r = Buffer.alloc(3);
        r.writeUInt16LE(handle, 0);
        const peer = link && this.peripheralAt(link.peripheralAddress);
        r.writeInt8(peer ? peer.rssi : 0, 2);
        this.complete(opcode, link ? Status.Success : Status.UnknownConnectionId, r);
        return;
      }
      case Op.LeSetDataLength:
        this.setDataLength(p);
        return;
      case Op.LeReadSuggestedDefaultDataLength: {
        const r = Buffer.alloc(4);
        r.writeUInt16LE(this.suggestedTxOctets, 0);
        r.writeUInt16LE(this.suggestedTxTime, 2);
        this.complete(opcode, Status.Success, r);
        return;
      }
      case Op.LeWriteSuggestedDefaultDataLength:
        this.suggestedTxOctets = p.readUInt16LE(0);
        this.suggestedTxTime = p.readUInt16LE(2);
        this.complete(opcode, Status.Success);
        return;
      case Op.LeReadMaximumDataLength: {
        const r = Buffer.alloc(8);
        r.writeUInt16LE(MAX_DATA_LENGTH, 0);
        r.writeUInt16LE(MAX_DATA_TIME_1M, 2);
        r.writeUInt16LE(MAX_DATA_LENGTH, 4);
        r.writeUInt16LE(MAX_DATA_TIME_1M, 6);
        this.complete(opcode, Status.Success, r);
        return;
      }
      case Op.LeReadPhy: {
        const handle = p.readUInt16LE(0) & 0x0fff;
        const link = this.links.get(handle);
        const phy = link?.scheduler.params.phy === '2M' ? 2 : 1;
        const r = Buffer.alloc(4);
        r.writeUInt16LE(handle, 0);
        r.writeUInt8(phy, 2);
        r.writeUInt8(phy, 3);
        this.complete(opcode, link ? Status.Success : Status.UnknownConnectionId, r);
        return;
      }
      case Op.LeSetDefaultPhy:
        this.complete(opcode, p.length === 3 ? Status.Success : Status.InvalidParameters);
        return;
      case Op.LeSetPhy:
        this.setPhy(p);
        return;
      case Op.LeStartEncryption: {
        const handle = p.readUInt16LE(0) & 0x0fff;
        const link = this.links.get(handle);
        if (!link || p.length < 28) {
          this.commandStatus(opcode, link ? Status.InvalidParameters : Status.UnknownConnectionId);
          return;
        }
        this.commandStatus(opcode, Status.Success);
        // The peripheral's host gives its key for (Rand, EDIV) and the link layers compare:
        // encrypted, no such key (the peripheral's LTK negative reply), or different keys, which
        // a real link finds as a MIC failure and drops.
        const peer = this.peripheralAt(link.peripheralAddress);
        const status =
          peer?.startEncryption?.(
            link.conn,
            Buffer.from(p.subarray(2, 10)),
            p.readUInt16LE(10),
            Buffer.from(p.subarray(12, 28)),
          ) ?? Status.PinOrKeyMissing;
        if (status === Status.MicFailure) {
          link.terminate('link', Status.MicFailure);
          return;
        }
        // From now on every data PDU with a payload carries a 4-byte MIC on air (Core Vol 6
        // Part B 2.4: present on encrypted links, absent on empty PDUs), so the link's timing
        // model must count it.
        if (status === Status.Success) link.scheduler.setParams({ encrypted: true });
        const ev = Buffer.alloc(4);
        ev.writeUInt8(status, 0);
        ev.writeUInt16LE(handle, 1);
        ev.writeUInt8(status === Status.Success ? 1 : 0, 3);
        this.event(EVT_ENCRYPT_CHANGE, ev);
        return;
      }
      default:
        this.complete(opcode, Status.UnknownCommand);
        return;
    }
  }

  private setScan(enable: boolean): void {
    if (enable && !this.scanning) this.reported.clear();
    this.scanning = enable;
    clearInterval(this.repeatTimer);
    this.repeatTimer = undefined;
    if (!enable) return;
    this.reportAdvertisers();
    if (!this.filterDuplicates) {
      this.repeatTimer = setInterval(() => {
        this.reported.clear();
        this.reportAdvertisers();
      }, this.reportRepeatMs);
      this.repeatTimer.unref();
    }
  }

  private reportAdvertisers(): void {
    for (const p of this.radio.peripherals()) {
      if (!p.advertising || this.reported.has(p.address)) continue;
      this.reported.add(p.address);
      const { adv, scanRsp } = p.advertisingData();
      this.advertisingReport(p, false, adv);
      // Active scanning: the advertiser answers the SCAN_REQ, and the controller reports that too.
      if (this.scanActive) this.advertisingReport(p, true, scanRsp);
    }
  }

  private advertisingReport(p: VirtualPeripheral, scanRsp: boolean, data: Buffer): void {
    if (this.scanExtended) {
      if (!this.leEventEnabled(LE_EXTENDED_ADVERTISING_REPORT)) return;
      // Event type (2), address type, address (6), primary and secondary PHY, SID, TX power,
      // RSSI, periodic interval (2), direct address type and address (6), data length, data.
      const r = Buffer.alloc(26 + data.length);
      r.writeUInt8(LE_EXTENDED_ADVERTISING_REPORT, 0);
      r.writeUInt8(1, 1);
      // Legacy ADV_IND = 0x0013, its scan response = 0x001b.
      r.writeUInt16LE(scanRsp ? 0x001b : 0x0013, 2);
      r.writeUInt8(0x00, 4);
      addressBytes(p.address).copy(r, 5);
      r.writeUInt8(0x01, 11);
      r.writeUInt8(0x00, 12);
      r.writeUInt8(0xff, 13);
      // Legacy advertising carries no TX power field of its own: 0x7f "not available".
      r.writeInt8(0x7f, 14);
      r.writeInt8(p.rssi, 15);
      r.writeUInt16LE(0, 16);
      r.writeUInt8(0, 18);
      r.writeUInt8(data.length, 25);
      data.copy(r, 26);
      this.event(EVT_LE_META, r);
      return;
    }
    if (!this.leEventEnabled(LE_ADVERTISING_REPORT)) return;
    const r = Buffer.alloc(11 + data.length + 1);
    r.writeUInt8(LE_ADVERTISING_REPORT, 0);
    r.writeUInt8(1, 1);
    r.writeUInt8(scanRsp ? 0x04 : 0x00, 2);
    r.writeUInt8(0x00, 3);
    addressBytes(p.address).copy(r, 4);
    r.writeUInt8(data.length, 10);
    data.copy(r, 11);
    r.writeInt8(p.rssi, 11 + data.length);
    this.event(EVT_LE_META, r);
  }

  private createConnection(opcode: number, p: Buffer): void {
    if (this.pendingCreate) {
      this.commandStatus(opcode, Status.CommandDisallowed);
      return;
    }
    const extended = opcode === Op.LeExtendedCreateConnection;
    // Legacy: scan interval, window, filter, peer type, peer address @6, own type, then the
    // connection parameters @13. Extended: filter, own type, peer type, peer address @3, PHYs,
    // then per PHY scan interval/window and the connection parameters @14.
    const addrAt = extended ? 3 : 6;
    const paramsAt = extended ? 14 : 13;
    if (p.length < paramsAt + 8) {
      this.commandStatus(opcode, Status.InvalidParameters);
      return;
    }
    const min = p.readUInt16LE(paramsAt);
    const max = p.readUInt16LE(paramsAt + 2);
    const latency = p.readUInt16LE(paramsAt + 4);
    const timeout = p.readUInt16LE(paramsAt + 6);
    if (!validConnParams(min, max, latency, timeout)) {
      this.commandStatus(opcode, Status.InvalidParameters);
      return;
    }
    this.commandStatus(opcode, Status.Success);
    this.pendingCreate = {
      address: addressFromBytes(p.subarray(addrAt, addrAt + 6)),
      minIntervalMs: min * 1.25,
      maxIntervalMs: max * 1.25,
      latency,
      supervisionTimeoutMs: timeout * 10,
    };
    setImmediate(() => this.tryConnect());
  }

  private tryConnect(): void {
    const req = this.pendingCreate;
    if (!req) return;
    const peer = this.peripheralAt(req.address);
    // The initiator waits until the target advertises; the host cancels if it gives up.
    if (!peer?.advertising) return;
    this.pendingCreate = undefined;
    const scheduler = this.radio.createLink({
      centralAddress: this.config.address,
      peripheralAddress: peer.address,
      minIntervalMs: req.minIntervalMs,
      maxIntervalMs: req.maxIntervalMs,
      latency: req.latency,
      supervisionTimeoutMs: req.supervisionTimeoutMs,
    });
    // Every connection starts at the default ATT MTU whatever the profile ends up negotiating.
    if (scheduler.params.attMtu !== 23) scheduler.setParams({ attMtu: 23 });
    const handle = this.allocateHandle();
    const link = new Connection(handle, peer.address, this, peer, scheduler, this.config.address);
    this.links.set(handle, link);
    this.inFlight.set(handle, 0);
    this.connectionComplete(Status.Success, link, req);
    link.conn = peer.accept(link);
    // The controllers negotiate data length and PHY on their own after connecting; the link
    // model's initial parameters say where they ended up.
    const params = scheduler.params;
    if (params.dataLength > MIN_DATA_LENGTH) this.dataLengthChange(link, params.dataLength);
    if (params.phy === '2M') this.phyUpdate(link, Status.Success, 2);
  }

  private connectionComplete(
    status: number,
    link: Connection | undefined,
    req: PendingCreate | undefined,
  ): void {
    const handle = link?.handle ?? 0;
    const interval = link ? Math.round(link.scheduler.params.connIntervalMs / 1.25) : 0;
    const latency = req && link ? req.latency : 0;
    const timeout = req && link ? Math.round(req.supervisionTimeoutMs / 10) : 0;
    const peer = addressBytes(req?.address ?? '00:00:00:00:00:00');
    if (this.leEventEnabled(LE_ENHANCED_CONN_COMPLETE)) {
      const r = Buffer.alloc(31);
      r.writeUInt8(LE_ENHANCED_CONN_COMPLETE, 0);
      r.writeUInt8(status, 1);
      r.writeUInt16LE(handle, 2);
      r.writeUInt8(0x00, 4);
      r.writeUInt8(0x00, 5);
      peer.copy(r, 6);
      r.writeUInt16LE(interval, 24);
      r.writeUInt16LE(latency, 26);
      r.writeUInt16LE(timeout, 28);
      r.writeUInt8(0x00, 30);
      this.event(EVT_LE_META, r);
      return;
    }
    if (!this.leEventEnabled(LE_CONN_COMPLETE)) return;
    const r = Buffer.alloc(19);
    r.writeUInt8(LE_CONN_COMPLETE, 0);
    r.writeUInt8(status, 1);
    r.writeUInt16LE(handle, 2);
    r.writeUInt8(0x00, 4);
    r.writeUInt8(0x00, 5);
    peer.copy(r, 6);
    r.writeUInt16LE(interval, 12);
    r.writeUInt16LE(latency, 14);
    r.writeUInt16LE(timeout, 16);
    r.writeUInt8(0x00, 18);
    this.event(EVT_LE_META, r);
  }

  private cancelCreate(): void {
    const req = this.pendingCreate;
    if (!req) {
      this.complete(Op.LeCreateConnectionCancel, Status.CommandDisallowed);
      return;
    }
    this.pendingCreate = undefined;
    this.complete(Op.LeCreateConnectionCancel, Status.Success);
    // Spec: the cancelled attempt ends with a connection complete event carrying 0x02.
    this.connectionComplete(Status.UnknownConnectionId, undefined, req);
  }

  private disconnectCommand(p: Buffer): void {
    const handle = p.readUInt16LE(0) & 0x0fff;
    const reason = p[2] ?? Status.RemoteUserTerminated;
    const link = this.links.get(handle);
    if (!link) {
      this.commandStatus(Op.Disconnect, Status.UnknownConnectionId);
      return;
    }
    this.commandStatus(Op.Disconnect, Status.Success);
    setImmediate(() => link.terminate('central', reason));
  }

  private updateConnection(
    link: Connection,
    minMs: number,
    maxMs: number,
    latency: number,
    timeoutMs: number,
  ): void {
    const intervalMs = this.radio.chooseInterval(
      minMs,
      maxMs,
      link.scheduler.params.connIntervalMs,
    );
    setImmediate(() => {
      if (link.closed) return;
      link.scheduler.setParams({ connIntervalMs: intervalMs });
      link.connectionUpdated();
      if (!this.leEventEnabled(LE_CONN_UPDATE_COMPLETE)) return;
      const r = Buffer.alloc(10);
      r.writeUInt8(LE_CONN_UPDATE_COMPLETE, 0);
      r.writeUInt8(Status.Success, 1);
      r.writeUInt16LE(link.handle, 2);
      r.writeUInt16LE(Math.round(intervalMs / 1.25), 4);
      r.writeUInt16LE(latency, 6);
      r.writeUInt16LE(Math.round(timeoutMs / 10), 8);
      this.event(EVT_LE_META, r);
    });
  }

  private setDataLength(p: Buffer): void {
    const handle = p.readUInt16LE(0) & 0x0fff;
    const link = this.links.get(handle);
    const r = Buffer.alloc(2);
    r.writeUInt16LE(handle, 0);
    if (!link) {
      this.complete(Op.LeSetDataLength, Status.UnknownConnectionId, r);
      return;
    }
    const txOctets = p.readUInt16LE(2);
    if (txOctets < MIN_DATA_LENGTH || txOctets > MAX_DATA_LENGTH) {
      this.complete(Op.LeSetDataLength, Status.InvalidParameters, r);
      return;
    }
    this.complete(Op.LeSetDataLength, Status.Success, r);
    const peer = this.peripheralAt(link.peripheralAddress);
    const effective = Math.min(txOctets, peer?.maxDataLength ?? MIN_DATA_LENGTH);
    if (effective === link.scheduler.params.dataLength) return;
    setImmediate(() => {
      if (link.closed) return;
      link.scheduler.setParams({ dataLength: effective });
      this.dataLengthChange(link, effective);
    });
  }

  private setPhy(p: Buffer): void {
    const handle = p.readUInt16LE(0) & 0x0fff;
    const link = this.links.get(handle);
    if (!link) {
      this.commandStatus(Op.LeSetPhy, Status.UnknownConnectionId);
      return;
    }
    this.commandStatus(Op.LeSetPhy, Status.Success);
    const allPhys = p[2] ?? 0;
    const txPhys = p[3] ?? 0;
    const rxPhys = p[4] ?? 0;
    const peer = this.peripheralAt(link.peripheralAddress);
    const wants2M = (allPhys & 0x03) === 0 && txPhys & 0x02 && rxPhys & 0x02;
    const phy = wants2M && this.config.supports2M && peer?.supports2M ? 2 : 1;
    setImmediate(() => {
      if (link.closed) return;
      link.scheduler.setParams({ phy: phy === 2 ? '2M' : '1M' });
      this.phyUpdate(link, Status.Success, phy);
    });
  }

  private dataLengthChange(link: Connection, octets: number): void {
    if (!this.leEventEnabled(LE_DATA_LENGTH_CHANGE)) return;
    const time = (octets + 14) * 8;
    const r = Buffer.alloc(11);
    r.writeUInt8(LE_DATA_LENGTH_CHANGE, 0);
    r.writeUInt16LE(link.handle, 1);
    r.writeUInt16LE(octets, 3);
    r.writeUInt16LE(time, 5);
    r.writeUInt16LE(octets, 7);
    r.writeUInt16LE(time, 9);
    this.event(EVT_LE_META, r);
  }

  private phyUpdate(link: Connection, status: number, phy: number): void {
    if (!this.leEventEnabled(LE_PHY_UPDATE_COMPLETE)) return;
    const r = Buffer.alloc(6);
    r.writeUInt8(LE_PHY_UPDATE_COMPLETE, 0);
    r.writeUInt8(status, 1);
    r.writeUInt16LE(link.handle, 2);
    r.writeUInt8(phy, 4);
    r.writeUInt8(phy, 5);
    this.event(EVT_LE_META, r);
  }

  // ---- ACL ----

  private acl(packet: Buffer): void {
    const hdr = packet.readUInt16LE(1);
    const handle = hdr & 0x0fff;
    const pb = (hdr >> 12) & 0x03;
    const len = packet.readUInt16LE(3);
    const data = packet.subarray(5, 5 + len);
    const link = this.links.get(handle);
    // A controller silently drops data for a handle it does not know or a malformed packet.
    if (!link || data.length !== len || len > this.bufferLength()) return;
    if (this.outstanding >= this.bufferCount()) {
      // The host ignored flow control: the controller has no buffer for this packet.
      this.event(EVT_DATA_BUFFER_OVERFLOW, Buffer.from([0x01]));
      return;
    }
    this.outstanding += 1;
    this.inFlight.set(handle, (this.inFlight.get(handle) ?? 0) + 1);
    link.fromCentralHost(pb, Buffer.from(data), () => {
      this.outstanding -= 1;
      this.inFlight.set(handle, (this.inFlight.get(handle) ?? 1) - 1);
      this.completed.set(handle, (this.completed.get(handle) ?? 0) + 1);
      // A credit lets the host send its next packet at once, at the instant of the ack.
      this.nocpReleases.push(...holdOf(link));
      this.scheduleNocp();
    });
  }

  private scheduleNocp(): void {
    if (this.nocpScheduled) return;
    this.nocpScheduled = true;
    // Credits that land in the same turn go out in one event, as controllers batch them.
    setImmediate(() => {
      this.nocpScheduled = false;
      const entries = [...this.completed.entries()].filter(([h, n]) => n > 0 && this.links.has(h));
      this.completed.clear();
      const releases = this.nocpReleases;
      this.nocpReleases = [];
      if (entries.length === 0) {
        for (const release of releases) release();
        return;
      }
      const r = Buffer.alloc(1 + entries.length * 4);
      r.writeUInt8(entries.length, 0);
      entries.forEach(([h, n], i) => {
        r.writeUInt16LE(h, 1 + i * 4);
        r.writeUInt16LE(n, 3 + i * 4);
      });
      this.event(EVT_NUM_COMPLETED_PACKETS, r, releases);
    });
  }

  private bufferLength(): number {
    return this.config.leAclLength > 0 && this.config.leAclNum > 0
      ? this.config.leAclLength
      : this.config.aclLength;
  }

  private bufferCount(): number {
    return this.config.leAclLength > 0 && this.config.leAclNum > 0
      ? this.config.leAclNum
      : this.config.aclNum;
  }

  // ---- events ----

  private complete(opcode: number, status: number, params: Buffer = Buffer.alloc(0)): void {
    const r = Buffer.alloc(4 + params.length);
    r.writeUInt8(1, 0);
    r.writeUInt16LE(opcode, 1);
    r.writeUInt8(status, 3);
    params.copy(r, 4);
    this.event(EVT_CMD_COMPLETE, r);
  }

  private commandStatus(opcode: number, status: number): void {
    const r = Buffer.alloc(4);
    r.writeUInt8(status, 0);
    r.writeUInt8(1, 1);
    r.writeUInt16LE(opcode, 2);
    this.event(EVT_CMD_STATUS, r);
  }

  private event(code: number, params: Buffer, releases: Array<() => void> = []): void {
    const unmaskable =
      code === EVT_CMD_COMPLETE || code === EVT_CMD_STATUS || code === EVT_NUM_COMPLETED_PACKETS;
    if (!unmaskable && !bit(this.eventMask, code - 1)) {
      for (const release of releases) release();
      return;
    }
    const pkt = Buffer.alloc(3 + params.length);
    pkt.writeUInt8(HCI_EVENT_PKT, 0);
    pkt.writeUInt8(code, 1);
    pkt.writeUInt8(params.length, 2);
    params.copy(pkt, 3);
    this.send(pkt, releases);
  }

  private leEventEnabled(subevent: number): boolean {
    return bit(this.eventMask, EVT_LE_META - 1) && bit(this.leEventMask, subevent - 1);
  }

  private send(pkt: Buffer, releases: Array<() => void> = []): void {
    if (this.traceEnabled) this.trace.push(['controller->host', pkt]);
    const done =
      releases.length > 0
        ? () => {
            for (const release of releases) release();
          }
        : undefined;
    if (this.host) this.host.toHost(pkt, done);
    else done?.();
  }

  private peripheralAt(address: string): VirtualPeripheral | undefined {
    return this.radio.peripherals().find((p) => p.address === address);
  }

  private allocateHandle(): number {
    while (this.links.has(this.nextHandle))
      this.nextHandle = this.nextHandle >= 0x0eff ? 0x0040 : this.nextHandle + 1;
    const h = this.nextHandle;
    this.nextHandle = this.nextHandle >= 0x0eff ? 0x0040 : this.nextHandle + 1;
    return h;
  }
}

/** Freezes a link's modeled time (if its scheduler can) and returns how to let it go. */
function holdOf(link: Connection | undefined): Array<() => void> {
  const release = link?.scheduler.hold?.();
  return release ? [release] : [];
}

function bit(mask: Buffer, n: number): boolean {
  return (((mask[n >> 3] ?? 0) >> (n & 7)) & 1) === 1;
}

/** Range checks of Core Vol 4 Part E 7.8.12 (units: 1.25 ms, 1.25 ms, events, 10 ms). */
function validConnParams(min: number, max: number, latency: number, timeout: number): boolean {
  if (min < 6 || max > 3200 || min > max || latency > 499 || timeout < 10 || timeout > 3200)
    return false;
  // The supervision timeout must outlast (1 + latency) intervals twice over.
  return timeout * 10 > (1 + latency) * max * 1.25 * 2;
}

export function addressBytes(address: string): Buffer {
  return Buffer.from(address.split(':').reverse().join(''), 'hex');
}

export function addressFromBytes(bytes: Uint8Array): string {
  return [...bytes]
    .reverse()
    .map((b) => b.toString(16).padStart(2, '0'))
    .join(':');
}
