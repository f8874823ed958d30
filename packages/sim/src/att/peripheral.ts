import { EventEmitter } from 'node:events';
import type { Connection, PeripheralEnd } from '../hci/connection.ts';
import { L2CAP_CID_ATT, L2CAP_CID_LE_SIGNALING, L2CAP_CID_SMP, Status } from '../hci/constants.ts';
import { type Fault, type FaultRecord, FaultSet } from '../hci/faults.ts';
import type { AirScheduler, Phy } from '../link/types.ts';
import type { PeripheralApp } from './app.ts';
import { ATT_DEFAULT_MTU, AttServer } from './att-server.ts';
import { AttributeDb, type GattLayout } from './gatt-layout.ts';
import {
  type Bond,
  type LinkSecurityLevel,
  type LinkSecurityState,
  type PairingOutcome,
  SmpResponder,
} from './smp.ts';
import { normalizeUuid, uuidToBytes } from './uuid.ts';

export interface VirtualPeripheralOptions {
  /** Public BD address, "aa:bb:cc:dd:ee:ff". */
  address: string;
  /** Advertised complete local name and GAP Device Name. */
  name: string;
  gatt: GattLayout;
  app: PeripheralApp;
  /** Advertise from the start (default true); otherwise wait for `startAdvertising()`. */
  advertising?: boolean;
  /** Service UUIDs to advertise; default: the layout's 128-bit services (the OTA service). */
  advertisedServiceUuids?: string[];
  /** TX power level in the advertisement, dBm. ESP32 default +9. */
  txPower?: number;
  /** RSSI the central measures, dBm. */
  rssi?: number;
  /** The MTU the ATT server answers with; NimBLE's preferred MTU in ESP-IDF is 256. */
  preferredMtu?: number;
  /** Largest LL payload the peripheral's controller accepts (ESP32: 251). */
  maxDataLength?: number;
  /** LE 2M PHY support: false on a classic ESP32, true on ESP32-S3/C3. */
  supports2M?: boolean;
  appearance?: number;
  /** Advertise again after a disconnect, as NimBLE apps do from their GAP event handler (default true). */
  resumeAdvertisingOnDisconnect?: boolean;
  /** Serve NimBLE's GAP (0x1800) and GATT (0x1801) services before the app's (default true). */
  builtinServices?: boolean;
  faults?: Fault[];
}

export interface ConnectionParameters {
  minIntervalMs: number;
  maxIntervalMs: number;
  latency: number;
  supervisionTimeoutMs: number;
}

interface PeripheralConnection {
  link: Connection;
  att: AttServer;
  smp: SmpResponder;
  /** NimBLE's host task handles one PDU at a time; this chain keeps that order. */
  chain: Promise<void>;
}

type PeripheralEvents = {
  advertising: [boolean];
  connect: [number];
  disconnect: [number, number];
  fault: [FaultRecord];
  /** The app threw or rejected while handling a PDU; the client got ATT error 0x0e. */
  appError: [Error];
  /** An ATT PDU longer than the connection's ATT MTU was dropped, as NimBLE's L2CAP drops it. */
  attOversize: [conn: number, pduLength: number, mtu: number];
  /** The central applied new connection parameters on this connection. */
  connectionUpdated: [number];
  /** A pairing on this connection ended: paired, refused by the device, or failed. */
  pairing: [conn: number, outcome: PairingOutcome];
  /** A write was refused for the link's security (ATT 0x05 or 0x0f; a Write Command is dropped). */
  insecureWrite: [conn: number, chrId: number, code: number, withResponse: boolean];
};

/**
 * A BLE peripheral on the virtual radio: advertises, accepts one connection per central,
 * runs L2CAP (ATT, LE signaling, SMP) and an ATT server over a GATT layout given as data,
 * and hands reads, writes and subscriptions to a {@link PeripheralApp}.
 *
 * The link security its writes need comes from the layout (`writeSecurity`, the firmware's
 * CONFIG_BLE_OTA_LINK_SECURITY): the ATT server refuses a write on a link not secure enough, and
 * the security manager ({@link SmpResponder}) pairs with LE legacy Just Works and bonds. The
 * bonds are the device's (NimBLE's store in NVS): they outlive connections and reboots.
 */
export class VirtualPeripheral extends EventEmitter<PeripheralEvents> implements PeripheralEnd {
  readonly address: string;
  private attrDb: AttributeDb;
  private layout: GattLayout;
  readonly faults: FaultSet;
  readonly rssi: number;
  readonly txPower: number;
  readonly preferredMtu: number;
  readonly maxDataLength: number;
  readonly supports2M: boolean;
  private currentName: string;
  private wantAdvertising: boolean;
  private isAdvertising: boolean;
  private readonly conns = new Map<number, PeripheralConnection>();
  private nextConn = 1;
  private signalingId = 0;
  private readonly pendingSignaling = new Map<number, (accepted: boolean) => void>();
  /** Bonds by central address, as NimBLE's store keeps them. */
  readonly bonds = new Map<string, Bond>();

  constructor(private readonly options: VirtualPeripheralOptions) {
    super();
    this.address = normalizeAddress(options.address);
    this.currentName = options.name;
    this.layout = options.gatt;
    this.attrDb = new AttributeDb(options.gatt, {
      builtinServices: options.builtinServices ?? true,
    });
    this.faults = new FaultSet(options.faults);
    this.faults.on('fault', (r) => this.emit('fault', r));
    this.rssi = options.rssi ?? -45;
    this.txPower = options.txPower ?? 9;
    this.preferredMtu = options.preferredMtu ?? 256;
    this.maxDataLength = options.maxDataLength ?? 251;
    this.supports2M = options.supports2M ?? false;
    this.wantAdvertising = options.advertising ?? true;
    this.isAdvertising = this.wantAdvertising;
    this.advertisingData();
  }

  get name(): string {
    return this.currentName;
  }

  /** The attribute table being served. */
  get db(): AttributeDb {
    return this.attrDb;
  }

  /**
   * Serves another GATT layout, e.g. the one a newly booted image declares. Only between
   * connections: a connected client would hold stale handles (no Service Changed is sent).
   */
  setGattLayout(layout: GattLayout): void {
    if (this.conns.size > 0) {
      throw new Error(
        `${this.address} is connected; change its GATT layout only while no central is connected`,
      );
    }
    const db = new AttributeDb(layout, { builtinServices: this.options.builtinServices ?? true });
    this.layout = layout;
    this.attrDb = db;
    this.advertisingData();
  }

  /**
   * The link timing of an open connection, e.g. to stall the peripheral while its flash works
   * (`stallPeripheral`) or to read modeled time.
   */
  scheduler(conn: number): AirScheduler | undefined {
    return this.conns.get(conn)?.link.scheduler;
  }

  get advertising(): boolean {
    return this.isAdvertising;
  }

  get app(): PeripheralApp {
    return this.options.app;
  }

  /** Peripheral-side handles of the open connections. */
  connections(): number[] {
    return [...this.conns.keys()];
  }

  mtu(conn: number): number | undefined {
    return this.conns.get(conn)?.att.mtu;
  }

  /** The security of an open connection (NimBLE's `sec_state`). */
  linkSecurity(conn: number): LinkSecurityState | undefined {
    const c = this.conns.get(conn);
    return c ? { ...c.smp.state } : undefined;
  }

  /**
   * The security the firmware's OTA writes need: the strictest `writeSecurity` in its layout
   * (a firmware whose writes are all open has no security manager to pair with).
   */
  get requiredLinkSecurity(): LinkSecurityLevel {
    const order: LinkSecurityLevel[] = ['open', 'encrypted', 'authenticated'];
    let level = 0;
    for (const svc of this.db.services) {
      for (const chr of svc.characteristics)
        level = Math.max(level, order.indexOf(chr.writeSecurity));
    }
    return order[level] ?? 'open';
  }

  /** The CCCD value the client wrote for `chrId` on `conn` (bit 0 notify, bit 1 indicate). */
  subscription(conn: number, chrId: number): number {
    return this.conns.get(conn)?.att.subscription(chrId) ?? 0;
  }

  addFault(fault: Fault): void {
    this.faults.add(fault);
  }

  get faultLog(): readonly FaultRecord[] {
    return this.faults.log;
  }

  startAdvertising(name?: string): void {
    if (name !== undefined) this.currentName = name;
    this.advertisingData();
    this.wantAdvertising = true;
    this.setAdvertising(true);
  }

  stopAdvertising(): void {
    this.wantAdvertising = false;
    this.setAdvertising(false);
  }

  /**
   * Sends a Handle Value Notification of the characteristic's value (truncated to MTU-3, as
   * NimBLE does). Returns false if `conn` is not open.
   */
  notify(conn: number, chrId: number, data: Uint8Array): boolean {
    const c = this.conns.get(conn);
    if (!c) return false;
    c.att.notify(this.chr(chrId), data);
    return true;
  }

  /** Sends a Handle Value Indication; resolves when the client confirms it. */
  indicate(conn: number, chrId: number, data: Uint8Array): Promise<void> {
    const c = this.conns.get(conn);
    if (!c) return Promise.reject(new Error(`connection ${conn} is not open on ${this.address}`));
    return c.att.indicate(this.chr(chrId), data);
  }

  /** Terminates a connection from the peripheral's side (HCI reason given to the central). */
  disconnect(conn: number, reason: number = Status.RemoteUserTerminated): void {
    this.conns.get(conn)?.link.terminate('peripheral', reason);
  }

  /**
   * The device restarted or lost power: every link is lost (the central sees a supervision
   * timeout, 0x08, as does the app) and advertising stops until the app starts it again.
   */
  reset(): void {
    this.wantAdvertising = false;
    this.setAdvertising(false);
    for (const c of [...this.conns.values()]) c.link.terminate('link', Status.ConnectionTimeout);
  }

  /** Sends an L2CAP Connection Parameter Update Request; resolves with whether the central accepted. */
  requestConnectionUpdate(conn: number, p: ConnectionParameters): Promise<boolean> {
    const c = this.conns.get(conn);
    if (!c) return Promise.reject(new Error(`connection ${conn} is not open on ${this.address}`));
    this.signalingId = (this.signalingId % 255) + 1;
    const id = this.signalingId;
    const req = Buffer.alloc(12);
    req.writeUInt8(0x12, 0);
    req.writeUInt8(id, 1);
    req.writeUInt16LE(8, 2);
    req.writeUInt16LE(Math.round(p.minIntervalMs / 1.25), 4);
    req.writeUInt16LE(Math.round(p.maxIntervalMs / 1.25), 6);
    req.writeUInt16LE(p.latency, 8);
    req.writeUInt16LE(Math.round(p.supervisionTimeoutMs / 10), 10);
    return new Promise((resolve) => {
      this.pendingSignaling.set(id, resolve);
      c.link.fromPeripheral(L2CAP_CID_LE_SIGNALING, req);
    });
  }

  /**
   * Starts the Data Length Update procedure from this side (NimBLE's `ble_gap_set_data_len`).
   * Resolves with the link's data length once the central's controller answered.
   */
  requestDataLength(conn: number, txOctets: number): Promise<number> {
    const c = this.conns.get(conn);
    if (!c) return Promise.reject(new Error(`connection ${conn} is not open on ${this.address}`));
    return c.link.requestDataLength(Math.min(txOctets, this.maxDataLength));
  }

  /**
   * Starts the PHY Update procedure from this side (NimBLE's `ble_gap_set_prefered_le_phy`);
   * `txPhys`/`rxPhys` are bit sets (bit 0 1M, bit 1 2M). A peripheral without 2M offers 1M only.
   * Resolves with the PHY the link uses afterwards.
   */
  requestPhy(conn: number, txPhys: number, rxPhys: number): Promise<Phy> {
    const c = this.conns.get(conn);
    if (!c) return Promise.reject(new Error(`connection ${conn} is not open on ${this.address}`));
    const mask = this.supports2M ? 0x03 : 0x01;
    return c.link.requestPhy(txPhys & mask, rxPhys & mask);
  }

  /** Advertising and scan response payloads, laid out as NimBLE's ble_hs_adv_set_fields does. */
  advertisingData(): { adv: Buffer; scanRsp: Buffer } {
    const name = Buffer.from(this.currentName, 'utf8');
    const uuids = (this.options.advertisedServiceUuids ?? this.defaultAdvertisedUuids()).map(
      uuidToBytes,
    );
    const uuid16 = uuids.filter((u) => u.length === 2);
    const uuid128 = uuids.filter((u) => u.length === 16);
    const fields: Buffer[] = [ad(0x01, Buffer.from([0x06]))];
    if (uuid16.length) fields.push(ad(0x03, Buffer.concat(uuid16)));
    if (uuid128.length) fields.push(ad(0x07, Buffer.concat(uuid128)));
    const nameField = ad(0x09, name);
    const txField = ad(0x0a, Buffer.from([this.txPower & 0xff]));
    const base = Buffer.concat(fields);
    if (base.length + nameField.length + txField.length <= 31) {
      return { adv: Buffer.concat([base, nameField, txField]), scanRsp: Buffer.alloc(0) };
    }
    if (base.length + txField.length > 31 || nameField.length > 31) {
      throw new Error(
        `advertising data for "${this.currentName}" does not fit in 31 bytes; shorten the name or advertise fewer UUIDs`,
      );
    }
    // Too long for one packet: the name goes to the scan response, as NimBLE apps usually do.
    return { adv: Buffer.concat([base, txField]), scanRsp: nameField };
  }

  valueHandleOf(chrId: number): number | undefined {
    return this.db.characteristic(chrId)?.valueHandle;
  }

  /** Called by the controller when a central's connection request reaches this peripheral. */
  accept(link: Connection): number {
    const conn = this.nextConn++;
    const att = new AttServer({
      conn,
      db: this.db,
      app: this.options.app,
      appearance: this.options.appearance ?? 0,
      deviceName: () => this.currentName,
      serverMtu: () =>
        this.faults.refuseLargerMtu(conn, link.scheduler.nowUs)
          ? ATT_DEFAULT_MTU
          : this.preferredMtu,
      send: (pdu) => link.fromPeripheral(L2CAP_CID_ATT, pdu),
      mtuChanged: (mtu) => {
        link.scheduler.setParams({ attMtu: mtu });
        this.options.app.onMtu(conn, mtu);
      },
      oversizeDropped: (length, mtu) => this.emit('attOversize', conn, length, mtu),
      linkSecurity: () => ({ state: smp.state, hasBond: smp.hasBond }),
      insecureWrite: (chrId, code, withResponse) =>
        this.emit('insecureWrite', conn, chrId, code, withResponse),
    });
    const smp = new SmpResponder({
      level: this.requiredLinkSecurity,
      send: (pdu) => link.fromPeripheral(L2CAP_CID_SMP, pdu),
      central: { address: link.centralAddress, random: false },
      peripheral: { address: this.address, random: false },
      bonds: this.bonds,
      outcome: (o) => this.emit('pairing', conn, o),
    });
    this.conns.set(conn, { link, att, smp, chain: Promise.resolve() });
    // A legacy connectable advertiser stops when a connection is made.
    this.setAdvertising(false);
    this.options.app.onConnect(conn, ATT_DEFAULT_MTU);
    this.emit('connect', conn);
    return conn;
  }

  receiveL2cap(conn: number, cid: number, payload: Buffer): void {
    const c = this.conns.get(conn);
    if (!c) return;
    if (cid === L2CAP_CID_ATT) {
      // The app may answer in real time (the device program over pipes): modeled time stands
      // still until the PDU is handled, so its response leaves at the instant it arrived.
      const release = c.link.scheduler.hold?.();
      c.chain = c.chain.then(() =>
        c.att
          .handlePdu(payload)
          .catch((e: unknown) => {
            this.emit('appError', e instanceof Error ? e : new Error(String(e)));
          })
          .finally(() => release?.()),
      );
    } else if (cid === L2CAP_CID_LE_SIGNALING) {
      this.onSignaling(c, payload);
    } else if (cid === L2CAP_CID_SMP && payload.length > 0) {
      // NimBLE's host task handles SMP between ATT PDUs, in arrival order.
      c.chain = c.chain.then(() => c.smp.handle(payload));
    }
  }

  /** The central's controller started encryption: see {@link PeripheralEnd.startEncryption}. */
  startEncryption(conn: number, rand: Buffer, ediv: number, key: Buffer): number {
    const c = this.conns.get(conn);
    if (!c) return Status.UnknownConnectionId;
    return c.smp.startEncryption(rand, ediv, key);
  }

  linkClosed(conn: number, reason: number): void {
    const c = this.conns.get(conn);
    if (!c) return;
    this.conns.delete(conn);
    c.att.close();
    this.options.app.onDisconnect(conn, reason);
    this.emit('disconnect', conn, reason);
    const resume = this.options.resumeAdvertisingOnDisconnect ?? true;
    if (resume && this.wantAdvertising && this.conns.size === 0) this.setAdvertising(true);
  }

  connectionUpdated(conn: number): void {
    if (this.conns.has(conn)) this.emit('connectionUpdated', conn);
  }

  private onSignaling(c: PeripheralConnection, pdu: Buffer): void {
    if (pdu.length < 4) return;
    const code = pdu[0] ?? 0;
    const id = pdu[1] ?? 0;
    if (code === 0x13 || code === 0x01) {
      const result = code === 0x13 && pdu.length >= 6 ? pdu.readUInt16LE(4) : 1;
      const pending = this.pendingSignaling.get(id);
      this.pendingSignaling.delete(id);
      pending?.(result === 0);
      return;
    }
    if (code % 2 === 0) {
      // Requests a peripheral does not serve (including a central's parameter update request):
      // Command Reject, reason 0x0000 "command not understood".
      c.link.fromPeripheral(
        L2CAP_CID_LE_SIGNALING,
        Buffer.from([0x01, id, 0x02, 0x00, 0x00, 0x00]),
      );
    }
  }

  private setAdvertising(on: boolean): void {
    if (this.isAdvertising === on) return;
    this.isAdvertising = on;
    this.emit('advertising', on);
  }

  private defaultAdvertisedUuids(): string[] {
    return this.layout.services.map((s) => normalizeUuid(s.uuid)).filter((u) => u.length > 4);
  }

  private chr(chrId: number) {
    const chr = this.db.characteristic(chrId);
    if (!chr) throw new Error(`characteristic id ${chrId} is not in ${this.address}'s GATT layout`);
    return chr;
  }
}

function ad(type: number, data: Buffer): Buffer {
  return Buffer.concat([Buffer.from([data.length + 1, type]), data]);
}

export function normalizeAddress(address: string): string {
  const a = address.toLowerCase();
  if (!/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/.test(a)) {
    throw new Error(
      `"${address}" is not a BD address; write it as six hex bytes, e.g. "24:0a:c4:00:00:01"`,
    );
  }
  return a;
}
