/**
 * A simulated board of the virtual rig (packages/sim: the firmware's C core as a device program,
 * its flash file, its console on a pty) behind Chromium's fake Bluetooth adapter (the CDP
 * `BluetoothEmulation` domain), so that a page's Web Bluetooth calls reach the device program
 * and what it sends reaches the page. This is the radio's place in the rig for a browser: the
 * noble side of the rig is not used.
 *
 * - The page's GATT writes arrive as `characteristicOperationReceived` events and go to the
 *   board as the virtual radio's ATT server would hand them on (`VirtualBoard.onWrite`); a Write
 *   Request is answered with the device's status once the device has answered it.
 * - Notifications: the emulation has no command for them. What works: when a `readValue()` on
 *   the page's own characteristic object completes, Chromium sets `.value` and fires a real
 *   `characteristicvaluechanged` on that object. So a notification is delivered by calling
 *   `readValue()` on the page's object (kept by an init script that sees what
 *   `getCharacteristics()` returns) and answering that read with the notification's bytes, one
 *   at a time, in order with the answers to the page's writes.
 * - The board restarting or dropping the link is `simulateGATTDisconnection`, which also removes
 *   the fake peripheral's services: they are added again (new ids) before the page reconnects.
 *
 * Not carried: pairing and encryption (the emulation has no security manager: the board's
 * firmware is configured with an open link), the ATT MTU (the page cannot read it; both sides
 * use the page's assumed MTU), and air time (the link is as fast as the browser and the device
 * program are; the rig's other scenarios keep the timing figures).
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import {
  BASELINE_SERVICE_UUID,
  expandUuid,
  normalizeUuid,
  signImage,
  V2_CONTROL_UUID,
  V2_DATA_UUID,
} from '@esp-ble-ota/protocol';
import {
  type DeviceSecurity,
  declaresV2,
  defaultDeviceProgram,
  type GattLayout,
  readGattLayout,
  rigSigningKey,
  UartBridge,
  VirtualBoard,
  type VirtualPeripheral,
} from '@esp-ble-ota/sim';
import type { CDPSession, Page } from 'playwright-core';

const run = promisify(execFile);

/** The CDP calls of an experimental domain, which playwright's protocol types do not list. */
interface RawCdp {
  send(method: string, params?: object): Promise<Record<string, unknown>>;
  on(event: string, listener: (params: Record<string, unknown>) => void): void;
  off(event: string, listener: (params: Record<string, unknown>) => void): void;
}

const CALL_TIMEOUT_MS = 10_000;
const HCI_CONNECTION_TIMEOUT = 0x08;
const HCI_REMOTE_USER_TERMINATED = 0x13;
const ATT_DEFAULT_MTU = 23;
const ATT_UNLIKELY_ERROR = 0x0e;

/** Every emulation call gets a time limit: a dead emulation otherwise waits forever. */
async function call(
  cdp: RawCdp,
  method: string,
  params?: object,
): Promise<Record<string, unknown>> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      cdp.send(method, params),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`${method} did not answer in ${CALL_TIMEOUT_MS} ms`)),
          CALL_TIMEOUT_MS,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

const base64 = (data: Uint8Array) => Buffer.from(data).toString('base64');

/**
 * The script a test page gets before its own: it keeps the latest characteristic object of each
 * UUID that `getCharacteristics()` gave the page, the objects notifications are delivered on.
 */
export const KEEP_CHARACTERISTICS_SCRIPT = `(() => {
  const latest = new Map();
  globalThis.__otaTestCharacteristics = latest;
  const original = BluetoothRemoteGATTService.prototype.getCharacteristics;
  BluetoothRemoteGATTService.prototype.getCharacteristics = async function (...args) {
    const found = await original.apply(this, args);
    for (const c of found) latest.set(c.uuid, c);
    return found;
  };
})();`;

export interface EmulatedBoardOptions {
  /** The page whose Web Bluetooth talks to the board (for delivering notifications). */
  page: Page;
  /**
   * The browser-level CDP session (the emulation answers only there); one for all boards of a
   * browser, as the emulation belongs to the session that enabled it.
   */
  cdp: CDPSession;
  address?: string;
  name?: string;
  chip?: string;
  /** The firmware's update security; default: images signed by the rig's key, anti-rollback. */
  security?: DeviceSecurity;
  /**
   * Serve the baseline OTA characteristics and DIS only, as a baseline firmware's GATT table
   * has them: the firmware behind it then runs the baseline protocol.
   */
  baselineOnly?: boolean;
  /** The ATT MTU both sides use (the page's transport assumes the same). */
  mtu?: number;
}

interface EmulatedCharacteristic {
  emuId: string;
  chrId: number;
  uuid: string;
}

/** One simulated board behind Chromium's fake adapter. */
export class EmulatedBoard {
  readonly board: VirtualBoard;
  readonly address: string;
  readonly name: string;
  readonly #cdp: RawCdp;
  readonly #page: Page;
  readonly #layout: GattLayout;
  readonly #mtu: number;
  readonly #workDir: string;
  #byEmuId = new Map<string, EmulatedCharacteristic>();
  #byChrId = new Map<number, EmulatedCharacteristic>();
  /** Services of the fake peripheral are in place (they go with every disconnection). */
  #servicesReady: Promise<void> = Promise.resolve();
  #conn: number | undefined;
  #nextConn = 1;
  /** Bumped on every disconnection: work queued for an older link is dropped. */
  #generation = 0;
  #advertising = false;
  #advertisingWaiters: (() => void)[] = [];
  /** What goes to the page, one at a time and in the device's order. */
  #outbox: Promise<void> = Promise.resolve();
  #injectedReads = new Map<string, ((data: Uint8Array) => void)[]>();
  /**
   * Requests of the page that arrived and wait for their answer, by characteristic and kind.
   * Chromium holds a disconnection back while one waits (about ten seconds), so a link that
   * goes down answers them first, with an error.
   */
  #unanswered = new Set<string>();
  #dataBytes = 0;
  #dropAt: number | undefined;
  #holdAt: { bytes: number; reached: () => void; released: Promise<void> } | undefined;
  readonly #subscriptions: [string, (params: Record<string, unknown>) => void][] = [];
  /** Errors of the bridge itself, for the test to check after the fact. */
  readonly errors: Error[] = [];
  /** Link drops the bridge made on purpose. */
  drops = 0;

  private constructor(
    options: EmulatedBoardOptions,
    layout: GattLayout,
    board: VirtualBoard,
    workDir: string,
  ) {
    this.#cdp = options.cdp as unknown as RawCdp;
    this.#page = options.page;
    this.#layout = layout;
    this.#mtu = options.mtu ?? 185;
    this.#workDir = workDir;
    this.board = board;
    this.address = board.address;
    this.name = board.name;
  }

  /** Starts the board (first boot on a new flash file) and puts it behind the fake adapter. */
  static async start(options: EmulatedBoardOptions): Promise<EmulatedBoard> {
    const program = defaultDeviceProgram;
    const full = await readGattLayout(program, 'open');
    const layout: GattLayout = options.baselineOnly
      ? {
          ...full,
          services: full.services.map((s) => ({
            ...s,
            characteristics: s.characteristics.filter(
              (c) =>
                normalizeUuid(c.uuid) !== normalizeUuid(V2_CONTROL_UUID) &&
                normalizeUuid(c.uuid) !== normalizeUuid(V2_DATA_UUID),
            ),
          })),
        }
      : full;
    const security = options.security ?? {
      trustedKeyDigests: [(await rigSigningKey()).digest],
      antiRollback: true,
    };
    const workDir = await mkdtemp(join(tmpdir(), 'ble-ota-web-board-'));
    const uart = await UartBridge.open();
    const board = new VirtualBoard(
      {
        name: options.name ?? 'esp32',
        address: options.address ?? '24:0A:C4:00:00:01',
        chip: options.chip ?? 'esp32',
        security,
      },
      join(workDir, 'flash.bin'),
      uart,
      undefined,
      program,
      declaresV2(full) ? true : undefined,
    );
    const emulated = new EmulatedBoard(options, layout, board, workDir);
    // The board's radio presence is this bridge instead of a peripheral on the virtual air.
    board.peripheral = emulated.#presence() as unknown as VirtualPeripheral;
    await emulated.#attach();
    await board.startDevice({ resetReason: 'poweron' });
    await board.uart.idle();
    return emulated;
  }

  /** The board's console, to open with serialport like /dev/ttyUSB0. */
  get serialPath(): string {
    return this.board.serialPath;
  }

  /** Drop the link (as a supervision timeout would) once this many OTA data bytes arrived. */
  dropLinkAfterDataBytes(bytes: number): void {
    this.#dropAt = this.#dataBytes + bytes;
  }

  /**
   * Hold everything bound for the page once this many OTA data bytes arrived (the upload then
   * waits for its acknowledgements, mid-way); resolves with the release.
   */
  holdAfterDataBytes(bytes: number): Promise<() => void> {
    return new Promise((resolve) => {
      let release = () => {};
      const released = new Promise<void>((r) => {
        release = r;
      });
      this.#holdAt = {
        bytes: this.#dataBytes + bytes,
        reached: () => resolve(release),
        released,
      };
    });
  }

  async close(): Promise<void> {
    for (const [event, listener] of this.#subscriptions.splice(0)) this.#cdp.off(event, listener);
    await this.board.close();
    await rm(this.#workDir, { recursive: true, force: true });
  }

  /** What the VirtualBoard calls on its radio presence. */
  #presence() {
    return {
      startAdvertising: () => {
        this.#advertising = true;
        for (const w of this.#advertisingWaiters.splice(0)) w();
      },
      stopAdvertising: () => {
        this.#advertising = false;
      },
      notify: (conn: number, chrId: number, data: Uint8Array) => {
        if (conn !== this.#conn) return false;
        // NimBLE truncates a notification to MTU - 3.
        const generation = this.#generation;
        this.#enqueue(() => this.#deliver(chrId, data.subarray(0, this.#mtu - 3), generation));
        return true;
      },
      disconnect: (conn: number, reason: number) => {
        if (conn === this.#conn) void this.#linkDown(reason, 'the firmware dropped the link');
      },
      reset: () => {
        this.#advertising = false;
        if (this.#conn !== undefined) void this.#linkDown(HCI_CONNECTION_TIMEOUT, 'restart');
      },
    };
  }

  async #attach(): Promise<void> {
    const cdp = this.#cdp;
    // The emulation may be left from a page that is gone: start it afresh.
    await call(cdp, 'BluetoothEmulation.disable').catch(() => {});
    await call(cdp, 'BluetoothEmulation.enable', { state: 'powered-on', leSupported: true });
    await call(cdp, 'BluetoothEmulation.simulatePreconnectedPeripheral', {
      address: this.address,
      name: this.name,
      manufacturerData: [],
      knownServiceUuids: [BASELINE_SERVICE_UUID],
    });
    this.#subscribe('BluetoothEmulation.gattOperationReceived', (p) => {
      if (p.address !== this.address) return;
      this.#onGattOperation(String(p.type)).catch((e: unknown) => this.#fail(e));
    });
    this.#subscribe('BluetoothEmulation.characteristicOperationReceived', (p) => {
      try {
        this.#onCharacteristicOperation(p);
      } catch (e) {
        this.#fail(e);
      }
    });
    this.#servicesReady = this.#addServices();
    await this.#servicesReady;
  }

  #subscribe(event: string, listener: (params: Record<string, unknown>) => void): void {
    this.#cdp.on(event, listener);
    this.#subscriptions.push([event, listener]);
  }

  #fail(error: unknown): void {
    this.errors.push(error instanceof Error ? error : new Error(String(error)));
  }

  async #addServices(): Promise<void> {
    const byEmuId = new Map<string, EmulatedCharacteristic>();
    const byChrId = new Map<number, EmulatedCharacteristic>();
    for (const service of this.#layout.services) {
      const { serviceId } = await call(this.#cdp, 'BluetoothEmulation.addService', {
        address: this.address,
        serviceUuid: expandUuid(service.uuid),
      });
      for (const c of service.characteristics) {
        const properties = Object.fromEntries(c.properties.map((p) => [p, true]));
        const { characteristicId } = await call(this.#cdp, 'BluetoothEmulation.addCharacteristic', {
          serviceId,
          characteristicUuid: expandUuid(c.uuid),
          properties,
        });
        if (c.properties.includes('notify') || c.properties.includes('indicate')) {
          // startNotifications() needs a CCCD, or the page gets NotSupportedError.
          await call(this.#cdp, 'BluetoothEmulation.addDescriptor', {
            characteristicId,
            descriptorUuid: expandUuid('2902'),
          });
        }
        const entry = { emuId: String(characteristicId), chrId: c.id, uuid: expandUuid(c.uuid) };
        byEmuId.set(entry.emuId, entry);
        byChrId.set(c.id, entry);
      }
    }
    this.#byEmuId = byEmuId;
    this.#byChrId = byChrId;
  }

  async #onGattOperation(type: string): Promise<void> {
    if (type === 'connection') {
      // The page connects anew after a local disconnect the device never heard of: end that
      // link on the device first, as the central's controller would.
      if (this.#conn !== undefined) {
        const old = this.#conn;
        this.#conn = undefined;
        this.#generation += 1;
        this.board.onDisconnect(old, HCI_REMOTE_USER_TERMINATED);
      }
      await this.#servicesReady;
      await this.#waitAdvertising();
      const conn = this.#nextConn++;
      this.#conn = conn;
      this.#advertising = false;
      this.board.onConnect(conn, ATT_DEFAULT_MTU);
      this.board.onMtu(conn, this.#mtu);
      await call(this.#cdp, 'BluetoothEmulation.simulateGATTOperationResponse', {
        address: this.address,
        type: 'connection',
        code: 0,
      });
      return;
    }
    await call(this.#cdp, 'BluetoothEmulation.simulateGATTOperationResponse', {
      address: this.address,
      type,
      code: 0,
    });
  }

  #waitAdvertising(): Promise<void> {
    if (this.#advertising) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error('the board did not advertise within 30 s')),
        30_000,
      );
      this.#advertisingWaiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  #onCharacteristicOperation(p: Record<string, unknown>): void {
    const c = this.#byEmuId.get(String(p.characteristicId));
    const conn = this.#conn;
    const type = String(p.type);
    if (c === undefined) return;
    if (type === 'read') {
      const injected = this.#injectedReads.get(c.emuId)?.shift();
      if (injected !== undefined) {
        // A notification's read: #deliver answers it.
        this.#unanswered.add(`${c.emuId} read`);
        injected(new Uint8Array());
        return;
      }
    }
    if (conn === undefined) {
      // Issued before the page heard of the drop: it fails as on a lost link. Unanswered, it
      // would hold Chromium's disconnection back.
      if (type !== 'write' || p.writeType !== 'write-without-response') {
        this.#unanswered.add(`${c.emuId} ${type}`);
      }
      return;
    }
    const generation = this.#generation;
    const respond = (code: number, data?: Uint8Array) => this.#respond(c.emuId, type, code, data);
    switch (type) {
      case 'write': {
        const data = new Uint8Array(Buffer.from(String(p.data ?? ''), 'base64'));
        const withResponse = p.writeType !== 'write-without-response';
        // Handed on at once, in the order the page wrote: the device sees the page's order.
        const answered = this.board.onWrite(conn, c.chrId, data, withResponse);
        if (withResponse) this.#unanswered.add(`${c.emuId} write`);
        this.#countData(c, data.length);
        if (withResponse) {
          // Queued when the device answered, so notifications it sent first go first.
          void answered.then((status) =>
            this.#enqueue(async () => {
              if (generation === this.#generation) await respond(status);
            }),
          );
        }
        return;
      }
      case 'read': {
        this.#unanswered.add(`${c.emuId} read`);
        void this.board.onRead(conn, c.chrId).then((r) =>
          this.#enqueue(async () => {
            if (generation === this.#generation) await respond(r.status, r.data);
          }),
        );
        return;
      }
      case 'subscribe-to-notifications':
      case 'unsubscribe-from-notifications':
        this.board.onSubscribe(conn, c.chrId, type === 'subscribe-to-notifications' ? 1 : 0);
        this.#enqueue(() => respond(0).then(() => {}));
        return;
    }
  }

  #countData(c: EmulatedCharacteristic, length: number): void {
    const uuid = normalizeUuid(c.uuid);
    if (
      uuid !== normalizeUuid(V2_DATA_UUID) &&
      uuid !== normalizeUuid('23408888-1f40-4cd8-9b89-ca8d45f8a5b0')
    )
      return;
    this.#dataBytes += length;
    const hold = this.#holdAt;
    if (hold !== undefined && this.#dataBytes >= hold.bytes) {
      this.#holdAt = undefined;
      hold.reached();
      this.#enqueue(() => hold.released);
    }
    if (this.#dropAt !== undefined && this.#dataBytes >= this.#dropAt) {
      this.#dropAt = undefined;
      this.drops += 1;
      void this.#linkDown(HCI_CONNECTION_TIMEOUT, 'link drop on cue');
    }
  }

  #enqueue(task: () => Promise<void>): void {
    this.#outbox = this.#outbox.then(task).catch((e: unknown) => this.#fail(e));
  }

  /** One notification: a read on the page's own characteristic object, answered with it. */
  async #deliver(chrId: number, data: Uint8Array, generation: number): Promise<void> {
    const c = this.#byChrId.get(chrId);
    // A notification of a link that is gone goes nowhere, as on the air.
    if (c === undefined || generation !== this.#generation) return;
    const arrived = new Promise<Uint8Array>((resolve) => {
      const queue = this.#injectedReads.get(c.emuId) ?? [];
      queue.push(resolve);
      this.#injectedReads.set(c.emuId, queue);
    });
    await this.#page.evaluate((uuid) => {
      const chars = (
        globalThis as unknown as {
          __otaTestCharacteristics: Map<string, { readValue(): Promise<unknown> }>;
        }
      ).__otaTestCharacteristics;
      void chars
        .get(uuid)
        ?.readValue()
        .catch(() => {});
    }, c.uuid);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), CALL_TIMEOUT_MS);
    });
    const outcome = await Promise.race([arrived, timedOut]);
    clearTimeout(timer);
    if (outcome === 'timeout' || generation !== this.#generation) return;
    await this.#respond(c.emuId, 'read', 0, data);
  }

  async #respond(emuId: string, type: string, code: number, data?: Uint8Array): Promise<void> {
    this.#unanswered.delete(`${emuId} ${type}`);
    await call(this.#cdp, 'BluetoothEmulation.simulateCharacteristicOperationResponse', {
      characteristicId: emuId,
      type,
      code,
      ...(data === undefined ? {} : { data: base64(data) }),
    });
  }

  /**
   * The link is gone (restart, the firmware's drop, a drop on cue): the device hears of it at
   * once; the page after what was already on its way to it (in the outbox), so that no read
   * the page issued meanwhile is left unanswered, which would hold Chromium's disconnection back.
   */
  #linkDown(reason: number, why: string): Promise<void> {
    const conn = this.#conn;
    if (conn === undefined) return this.#servicesReady;
    this.#conn = undefined;
    if (why !== 'restart') this.board.onDisconnect(conn, reason);
    // The disconnection removes the fake peripheral's services: add them again before the page
    // reconnects (its connection waits for them).
    this.#servicesReady = new Promise<void>((resolve) => {
      this.#enqueue(async () => {
        try {
          this.#generation += 1;
          // Deliveries still waiting for their read give up: the read fails with the link.
          for (const queue of this.#injectedReads.values()) {
            for (const gone of queue.splice(0)) gone(new Uint8Array());
          }
          for (const waiting of [...this.#unanswered]) {
            const [emuId = '', type = ''] = waiting.split(' ');
            // A request Chromium already gave up on cannot be answered; nothing waits for it.
            await this.#respond(emuId, type, ATT_UNLIKELY_ERROR).catch(() => {});
          }
          await call(this.#cdp, 'BluetoothEmulation.simulateGATTDisconnection', {
            address: this.address,
          });
          await this.#addServices();
        } finally {
          resolve();
        }
      });
    });
    return this.#servicesReady;
  }
}

/** The host build's app wrapped with another version (and chip), signed with the rig's key. */
export async function hostAppImage(
  version: string,
  dir: string,
  options: { chip?: string; signed?: boolean } = {},
): Promise<{ path: string; bytes: Uint8Array }> {
  const chip = options.chip ?? 'esp32';
  const buildDir = dirname(defaultDeviceProgram);
  const unsigned = join(dir, `app-${version}-${chip}-unsigned.bin`);
  await run(join(buildDir, 'esp-app-image'), [
    '--chip',
    chip,
    '--version',
    version,
    '--out',
    unsigned,
    join(buildDir, 'ble-ota-app.elf'),
  ]);
  const image = new Uint8Array(await readFile(unsigned));
  if (options.signed === false) return { path: unsigned, bytes: image };
  const bytes = signImage(image, [(await rigSigningKey()).key]);
  const path = join(dir, `app-${version}-${chip}.bin`);
  await writeFile(path, bytes);
  return { path, bytes };
}
