/**
 * Transfers driven through {@link ModeledAirScheduler} the way the upper layers drive it: ATT
 * PDUs split into link-layer fragments, the central's host held to its controller's ACL credits,
 * the device's GATT callback run when the last fragment reaches its host, flash stalls reported
 * before the answer is sent. They measure what the model gives; the analytic ceilings
 * (ceilings.ts) say what it should give.
 */
import { ATT_WRITE_HEADER_BYTES, attFragments, attValueBytes } from './air.ts';
import {
  BLOCK_BYTES,
  eraseStallUs,
  type FlashTiming,
  SECTOR_BYTES,
  writeStallUs,
} from './flash.ts';
import { type LinkStats, ModeledAirScheduler, type ModelOptions } from './modeled-scheduler.ts';
import { type LinkProfile, NIMBLE_DEFAULT_PREFERRED_MTU, negotiatedMtu } from './profiles.ts';
import type { Direction, LinkParams } from './types.ts';

/** SEED-PROTOCOL.md "Baseline partition layout": ota_0 at 0x110000. */
const OTA_0_OFFSET = 0x110000;

/** ATT Write Response / Exchange MTU and other small PDUs (opcode only, or opcode + u16). */
const ATT_WRITE_RSP_BYTES = 1;
const ATT_MTU_PDU_BYTES = 3;

/**
 * One side's host: sends ATT PDUs as link-layer fragments, at most `credits` fragments in the
 * controller at a time (credits come back when the peer acknowledges, as Number Of Completed
 * Packets does), and tells the receiving side when a whole ATT PDU has reached its host.
 */
class HostSender {
  private readonly backlog: Array<{ bytes: number; last: (() => void) | undefined }> = [];
  private inController = 0;

  constructor(
    private readonly link: ModeledAirScheduler,
    private readonly direction: Direction,
    private readonly credits: number,
  ) {}

  sendAttPdu(attPduBytes: number, onArrived: () => void): void {
    const frags = attFragments(attPduBytes, this.link.params.dataLength);
    frags.forEach((bytes, i) => {
      this.backlog.push({ bytes, last: i === frags.length - 1 ? onArrived : undefined });
    });
    this.pushFragments();
  }

  private pushFragments(): void {
    while (this.inController < this.credits && this.backlog.length > 0) {
      const f = this.backlog.shift() as { bytes: number; last: (() => void) | undefined };
      this.inController += 1;
      this.link.send(this.direction, f.bytes, f.last ?? noop, () => {
        this.inController -= 1;
        this.pushFragments();
      });
    }
  }
}

function noop(): void {}

export interface TransferResult {
  /** Attribute value bytes moved. */
  bytes: number;
  /** Modeled time from the start until the last byte reached the receiving host. */
  durationUs: number;
  kBps: number;
  stats: LinkStats;
}

export interface StreamOptions {
  params: LinkParams;
  model?: Partial<ModelOptions>;
  /** c2p: Write Commands from the client; p2c: notifications from the device. */
  direction?: Direction;
  /** Attribute value bytes to move. */
  bytes: number;
  /** ACL credits of the sending side's controller. */
  senderBuffers?: number;
  /**
   * c2p only: the device writes every ATT PDU's value to flash from its host task (the stall
   * blocks it), erasing each 4 KB sector or 64 KB block when a write first reaches it.
   */
  flash?: { timing: FlashTiming; eraseUnit: 'sector' | 'block' };
}

/** Write-without-response (or notification) streaming of full-MTU ATT PDUs. */
export async function simulateStream(options: StreamOptions): Promise<TransferResult> {
  const { params, bytes } = options;
  const direction = options.direction ?? 'c2p';
  const link = new ModeledAirScheduler(params, options.model);
  const host = new HostSender(link, direction, options.senderBuffers ?? 8);
  const perPdu = attValueBytes(params.attMtu);
  const flash = direction === 'c2p' ? options.flash : undefined;
  const eraseBytes = flash?.eraseUnit === 'block' ? BLOCK_BYTES : SECTOR_BYTES;
  let endUs = 0;
  let remaining = bytes;
  let written = 0;
  while (remaining > 0) {
    const n = Math.min(perPdu, remaining);
    remaining -= n;
    host.sendAttPdu(ATT_WRITE_HEADER_BYTES + n, () => {
      if (flash) {
        let us = 0;
        // Erase every erase unit this write is the first to reach.
        for (
          let u = Math.ceil(written / eraseBytes) * eraseBytes;
          u < written + n;
          u += eraseBytes
        ) {
          us += eraseStallUs(OTA_0_OFFSET + u, eraseBytes, flash.timing);
        }
        us += writeStallUs(OTA_0_OFFSET + written, n, flash.timing);
        written += n;
        link.stallPeripheral(us);
      }
      endUs = Math.max(link.nowUs, endUs);
    });
  }
  await link.whenIdle();
  // The last stall ends the transfer: the image is not written until it is over.
  if (flash) endUs = Math.max(endUs, link.peripheralBusyUntilUs);
  return { bytes, durationUs: endUs, kBps: (bytes / endUs) * 1000, stats: link.stats };
}

/** A client that sends ATT requests one at a time and a device that answers them. */
class GattExchange {
  readonly central: HostSender;
  readonly peripheral: HostSender;

  constructor(
    readonly link: ModeledAirScheduler,
    centralCredits: number,
  ) {
    this.central = new HostSender(link, 'c2p', centralCredits);
    // NimBLE's host queues outgoing PDUs in its own mbufs; the device sends one answer at a time.
    this.peripheral = new HostSender(link, 'p2c', Number.POSITIVE_INFINITY);
  }

  /**
   * A request of `requestBytes` (whole ATT PDU); the device runs `serve` when the request reaches
   * its host, which returns the stall (flash work) before the answer of `responseBytes` leaves.
   */
  request(
    requestBytes: number,
    responseBytes: number,
    serve: () => number = () => 0,
  ): Promise<void> {
    return new Promise((resolve) => {
      this.central.sendAttPdu(requestBytes, () => {
        this.link.stallPeripheral(serve());
        this.peripheral.sendAttPdu(responseBytes, resolve);
      });
    });
  }

  /** A Write Command: the client does not wait; the device runs `serve` when it arrives. */
  command(requestBytes: number, serve: () => void): void {
    this.central.sendAttPdu(requestBytes, serve);
  }

  /** A notification from the device, resolved when the client has it. */
  notify(valueBytes: number): Promise<void> {
    return new Promise((resolve) => {
      this.peripheral.sendAttPdu(ATT_WRITE_HEADER_BYTES + valueBytes, resolve);
    });
  }
}

/** One Write Request per full-MTU packet, no flash work on the device: the link's share. */
export async function simulateWriteRequests(options: {
  params: LinkParams;
  model?: Partial<ModelOptions>;
  bytes: number;
}): Promise<TransferResult> {
  const link = new ModeledAirScheduler(options.params, options.model);
  const gatt = new GattExchange(link, 8);
  const perPdu = attValueBytes(options.params.attMtu);
  let remaining = options.bytes;
  while (remaining > 0) {
    const n = Math.min(perPdu, remaining);
    remaining -= n;
    await gatt.request(ATT_WRITE_HEADER_BYTES + n, ATT_WRITE_RSP_BYTES);
  }
  const durationUs = link.nowUs;
  await link.whenIdle();
  return {
    bytes: options.bytes,
    durationUs,
    kBps: (options.bytes / durationUs) * 1000,
    stats: link.stats,
  };
}

/** otadata in the default two-OTA partition table (0xd000, two 4 KB sectors). */
const OTADATA_OFFSET = 0xd000;
const OTADATA_ENTRY_BYTES = 32;

export interface BaselineOptions {
  flash?: FlashTiming;
  /**
   * ATT MTU the device prefers; the baseline keeps NimBLE's default of 256 (LINK-MODEL.md
   * "ESP32 facts"), so the negotiated MTU is min(central, 256).
   */
  devicePreferredMtu?: number;
  /**
   * Request/response round trips of GATT discovery before the exchange. Assumption (no figure in
   * LINK-MODEL.md): about 16 for the baseline's GAP, GATT, OTA and Device Information services
   * (primary services, characteristics per service, descriptors).
   */
  discoveryRoundTrips?: number;
  /** SEED-PROTOCOL.md Exchange step 5: "on success it waits ~500 ms and restarts". */
  restartDelayMs?: number;
}

export interface BaselineResult {
  profile: string;
  imageBytes: number;
  attMtu: number;
  packetSize: number;
  writes: number;
  sectorErases: number;
  /** Modeled time of each phase, microseconds. */
  phases: {
    /** MTU exchange, discovery, subscribe, packet size, REQUEST until REQUEST_ACK arrives. */
    setupUs: number;
    /** The data packets, one Write Request each, with esp_ota_write in the callback. */
    transferUs: number;
    /** DONE until DONE_ACK arrives (esp_ota_end, esp_ota_set_boot_partition). */
    finishUs: number;
    /** The device's wait before it restarts. */
    restartUs: number;
  };
  totalUs: number;
  flashStallUs: number;
  stats: LinkStats;
}

/**
 * The baseline exchange (SEED-PROTOCOL.md "Exchange") for an image of `imageBytes`, as the link
 * and the device would time it: every data packet is one Write Request whose Write Response the
 * device sends only after `esp_ota_write` returns, including the 4 KB sector erase it does when
 * a write first reaches a sector (`OTA_WITH_SEQUENTIAL_WRITES`).
 */
export async function simulateBaselineUpload(
  profile: LinkProfile,
  imageBytes: number,
  options: BaselineOptions = {},
): Promise<BaselineResult> {
  const flash = options.flash ?? profile.flash;
  const attMtu = negotiatedMtu(profile, options.devicePreferredMtu ?? NIMBLE_DEFAULT_PREFERRED_MTU);
  const discovery = options.discoveryRoundTrips ?? 16;
  const restartUs = (options.restartDelayMs ?? 500) * 1000;

  // The link starts at the default MTU; the Exchange MTU procedure is the first round trip.
  const link = new ModeledAirScheduler({ ...profile.params, attMtu: 23 }, profile.model);
  const gatt = new GattExchange(link, profile.centralAclBuffers);
  let flashStallUs = 0;
  const stall = (us: number) => {
    flashStallUs += us;
    return us;
  };

  await gatt.request(ATT_MTU_PDU_BYTES, ATT_MTU_PDU_BYTES);
  link.setParams({ attMtu });
  for (let i = 0; i < discovery; i++) {
    // Read By Type / Read By Group Type / Find Information: 7-byte requests, answers up to the MTU.
    await gatt.request(7, Math.min(attMtu, 24));
  }
  // Subscribe to OTA Control notifications: CCCD Write Request of 2 bytes.
  await gatt.request(ATT_WRITE_HEADER_BYTES + 2, ATT_WRITE_RSP_BYTES);

  const packetSize = attValueBytes(attMtu);
  await gatt.request(ATT_WRITE_HEADER_BYTES + 2, ATT_WRITE_RSP_BYTES);
  // REQUEST goes as a Write Command (SEED-PROTOCOL.md "Write types"); esp_ota_begin with
  // OTA_WITH_SEQUENTIAL_WRITES erases nothing up front; the device notifies REQUEST_ACK.
  const requestAck = new Promise<void>((resolve) => {
    gatt.command(ATT_WRITE_HEADER_BYTES + 1, () => {
      void gatt.notify(1).then(resolve);
    });
  });
  await requestAck;
  const setupUs = link.nowUs;

  let wrote = 0;
  let sectorErases = 0;
  let writes = 0;
  for (let sent = 0; sent < imageBytes; sent += packetSize) {
    const n = Math.min(packetSize, imageBytes - sent);
    writes += 1;
    await gatt.request(ATT_WRITE_HEADER_BYTES + n, ATT_WRITE_RSP_BYTES, () => {
      // The baseline writes packet_size bytes even for the short last packet (SEED-PROTOCOL.md
      // "Known defects"), so flash work follows packetSize, not n.
      const len = packetSize;
      const firstNew =
        wrote % SECTOR_BYTES === 0 ? wrote / SECTOR_BYTES : Math.floor(wrote / SECTOR_BYTES) + 1;
      const last = Math.floor((wrote + len - 1) / SECTOR_BYTES);
      let us = 0;
      if (firstNew <= last) {
        sectorErases += last - firstNew + 1;
        us += eraseStallUs(
          OTA_0_OFFSET + firstNew * SECTOR_BYTES,
          (last - firstNew + 1) * SECTOR_BYTES,
          flash,
        );
      }
      us += writeStallUs(OTA_0_OFFSET + wrote, len, flash);
      wrote += len;
      return stall(us);
    });
  }
  const transferEndUs = link.nowUs;

  // DONE as a Write Command: esp_ota_end (its verification reads are not modeled: no figure in
  // LINK-MODEL.md), then esp_ota_set_boot_partition rewrites one otadata sector.
  const doneAck = new Promise<void>((resolve) => {
    gatt.command(ATT_WRITE_HEADER_BYTES + 1, () => {
      link.stallPeripheral(
        stall(
          eraseStallUs(OTADATA_OFFSET, SECTOR_BYTES, flash) +
            writeStallUs(OTADATA_OFFSET, OTADATA_ENTRY_BYTES, flash),
        ),
      );
      void gatt.notify(1).then(resolve);
    });
  });
  await doneAck;
  const finishEndUs = link.nowUs;
  await link.whenIdle();

  return {
    profile: profile.name,
    imageBytes,
    attMtu,
    packetSize,
    writes,
    sectorErases,
    phases: {
      setupUs,
      transferUs: transferEndUs - setupUs,
      finishUs: finishEndUs - transferEndUs,
      restartUs,
    },
    totalUs: finishEndUs + restartUs,
    flashStallUs,
    stats: link.stats,
  };
}
