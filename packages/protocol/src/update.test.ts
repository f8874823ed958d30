import {
  FakeBaselineDevice,
  FakeDeviceRegistry,
  type FakePeripheral,
  type FakePeripheralLink,
  FakeTransport,
  FakeV2Device,
  type FakeV2DeviceOptions,
  HciReason,
} from '@esp-ble-ota/testing';
import { describe, expect, it } from 'vitest';
import { buildAppImage } from './image/build.ts';
import {
  BASELINE_SLOT_SIZE,
  type DeviceAccess,
  type FoundDevice,
  UpdateError,
  type UpdateEvent,
  type UpdateOptions,
  updateDevice,
} from './update.ts';
import { V2Op } from './v2/codec.ts';

/**
 * A device whose link drops once, at its `dropAt`-th GATT operation (a connection, a read, a
 * write of either kind), counted over the whole update: the connection before the upload, the
 * upload, and the connection after the restart that reads the new version. -1: never.
 */
class DroppingDevice implements FakePeripheral {
  operations = 0;
  /** What the operation the link dropped at was. */
  droppedAt: string | undefined;
  #link: FakePeripheralLink | undefined;

  constructor(
    readonly inner: FakePeripheral,
    readonly dropAt: number,
  ) {}

  get address() {
    return this.inner.address;
  }
  get name() {
    return this.inner.name;
  }
  get gatt() {
    return this.inner.gatt;
  }
  get preferredMtu() {
    return this.inner.preferredMtu;
  }

  /** True when this operation is the one to drop the link at: the device never sees it. */
  #drop(what: string): boolean {
    this.operations += 1;
    if (this.operations !== this.dropAt) return false;
    this.droppedAt = what;
    this.#link?.disconnect(HciReason.CONNECTION_TIMEOUT);
    return true;
  }

  onConnect(link: FakePeripheralLink): void {
    this.#link = link;
    this.inner.onConnect(link);
    this.#drop('connect');
  }
  onDisconnect(): void {
    this.inner.onDisconnect();
  }
  onSubscribe(characteristic: string, enabled: boolean): void {
    this.inner.onSubscribe?.(characteristic, enabled);
  }
  onRead(characteristic: string) {
    if (this.#drop(`read ${characteristic}`)) return 0x0e;
    return this.inner.onRead(characteristic);
  }
  onWrite(characteristic: string, data: Uint8Array, withResponse: boolean) {
    if (this.#drop(`write ${characteristic} ${data[0]?.toString(16)}`)) return 'never' as const;
    return this.inner.onWrite(characteristic, data, withResponse);
  }
}

/**
 * A device that installs the image and restarts, but whose answer to END never reaches the
 * client: the link drops as the device sends END_RSP (a restart that beats the notification).
 */
class LosesEndRsp implements FakePeripheral {
  lost = false;
  constructor(readonly inner: FakePeripheral) {}
  get address() {
    return this.inner.address;
  }
  get name() {
    return this.inner.name;
  }
  get gatt() {
    return this.inner.gatt;
  }
  get preferredMtu() {
    return this.inner.preferredMtu;
  }
  onConnect(link: FakePeripheralLink): void {
    const wrapped: FakePeripheralLink = {
      get mtu() {
        return link.mtu;
      },
      get up() {
        return link.up;
      },
      notify: (characteristic, data) => {
        if (!this.lost && data[0] === V2Op.END_RSP) {
          this.lost = true;
          link.disconnect(HciReason.CONNECTION_TIMEOUT);
          return;
        }
        link.notify(characteristic, data);
      },
      disconnect: (reason) => link.disconnect(reason),
    };
    this.inner.onConnect(wrapped);
  }
  onDisconnect(): void {
    this.inner.onDisconnect();
  }
  onSubscribe(characteristic: string, enabled: boolean): void {
    this.inner.onSubscribe?.(characteristic, enabled);
  }
  onRead(characteristic: string) {
    return this.inner.onRead(characteristic);
  }
  onWrite(characteristic: string, data: Uint8Array, withResponse: boolean) {
    return this.inner.onWrite(characteristic, data, withResponse);
  }
}

function fakeAccess(registry: FakeDeviceRegistry, address: string): DeviceAccess {
  return {
    find: async () => {
      const found = registry.list().find((d) => d.address === address);
      if (found === undefined)
        throw Object.assign(new Error('no device'), { code: 'DEVICE_NOT_FOUND' });
      return found;
    },
    findAgain: async (device: FoundDevice) => device,
    transport: (device) => new FakeTransport(device.address, { registry }),
  };
}

const image = buildAppImage({
  chip: 'esp32',
  project: 'blink',
  version: '2.0.0',
  payload: new Uint8Array(6000).map((_, i) => (i * 31) & 0xff),
});
const imageInfo = { chip: 'ESP32', version: '2.0.0' };

async function update(
  device: FakePeripheral,
  options: Partial<UpdateOptions> = {},
): Promise<{ events: UpdateEvent[]; run: Promise<Awaited<ReturnType<typeof updateDevice>>> }> {
  const registry = new FakeDeviceRegistry();
  registry.add(device);
  const events: UpdateEvent[] = [];
  const run = updateDevice(fakeAccess(registry, device.address), {
    image,
    imageInfo,
    resumeAttempts: 2,
    verifyTimeoutMs: 2_000,
    stepTimeoutMs: 2_000,
    onEvent: (event) => events.push(event),
    ...options,
  });
  return { events, run };
}

const v2Device = (options: FakeV2DeviceOptions = {}) =>
  new FakeV2Device({
    runningVersion: '1.0.0',
    restartDelayMs: 1,
    window: 2048,
    // Frames of 244 bytes, so the stream has a few dozen operations to drop at.
    preferredMtu: 247,
    ...options,
  });

describe('updateDevice', () => {
  it('finds, connects, uploads with v2, and verifies the new version', async () => {
    const device = v2Device();
    const { events, run } = await update(device);
    const result = await run;
    expect(result.protocol).toBe('v2');
    expect(result.verify).toEqual({ verified: true, version: '2.0.0' });
    expect(device.runningVersion).toBe('2.0.0');
    expect(events.find((e) => e.type === 'connected')).toMatchObject({
      device: { model: 'ESP32', firmwareRevision: '1.0.0' },
    });
    expect(events.filter((e) => e.type === 'progress').at(-1)).toMatchObject({
      snapshot: { percent: 100 },
    });
    const phases = result.timings.map((t) => t.phase);
    for (const phase of [
      'scan',
      'connect',
      'device-info',
      'info',
      'begin',
      'data',
      'end',
      'verify',
    ])
      expect(phases).toContain(phase);
  });

  it('takes the slot size from a v2 device INFO when it uploads with the baseline protocol', async () => {
    const device = v2Device({ baseline: true, slotSize: 4096 });
    const { run } = await update(device, { protocol: 'baseline' });
    const error = await run.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UpdateError);
    expect((error as UpdateError).phase).toBe('preflight');
    expect((error as Error).message).toMatch(/OTA slot holds 4096 bytes/);
  });

  it("checks a baseline-only device against the baseline partition table's slot", async () => {
    const device = new FakeBaselineDevice({ firmwareRevision: '1.0.0', restartDelayMs: 1 });
    const big = buildAppImage({
      chip: 'esp32',
      project: 'blink',
      version: '2.0.0',
      payload: new Uint8Array(BASELINE_SLOT_SIZE),
    });
    const { run } = await update(device, { image: big });
    await expect(run).rejects.toThrow(`OTA slot holds ${BASELINE_SLOT_SIZE} bytes`);
  });

  describe('an END answer lost in the restart', () => {
    it('back before the restart: the device says its image is in, the update waits for the restart and verifies', async () => {
      const inner = v2Device({ restartDelayMs: 1500 });
      const device = new LosesEndRsp(inner);
      const { events, run } = await update(device);
      const result = await run;
      expect(device.lost).toBe(true);
      // Installed once: the BEGIN after the lost answer did not open the slot just written.
      expect(inner.bootCount).toBe(1);
      expect(inner.runningVersion).toBe('2.0.0');
      expect(result.upload.protocol === 'v2' && result.upload.result.outcome).toBe('installed');
      expect(result.resumes).toBe(1);
      expect(result.verify).toEqual({ verified: true, version: '2.0.0' });
      expect(events.filter((e) => e.type === 'verified')).toHaveLength(1);
    });

    it('back after the restart: the device runs the image, verified on that link', async () => {
      const inner = v2Device({ restartDelayMs: 1 });
      const device = new LosesEndRsp(inner);
      const registry = new FakeDeviceRegistry();
      registry.add(device);
      const access = fakeAccess(registry, device.address);
      const slowAccess: DeviceAccess = {
        ...access,
        // The reconnect finds the device only once it restarted into the new image.
        findAgain: async (found, options) => {
          await new Promise((resolve) => setTimeout(resolve, 50));
          return access.findAgain(found, options);
        },
      };
      const result = await updateDevice(slowAccess, {
        image,
        imageInfo,
        resumeAttempts: 2,
        verifyTimeoutMs: 2_000,
        stepTimeoutMs: 2_000,
      });
      expect(inner.bootCount).toBe(1);
      expect(result.upload.protocol === 'v2' && result.upload.result.outcome).toBe(
        'already-installed',
      );
      expect(result.resumes).toBe(1);
      expect(result.verify).toEqual({ verified: true, version: '2.0.0' });
    });
  });

  it('names the phase and what to do when a lost link ends the update', async () => {
    const again = new DroppingDevice(v2Device(), 3);
    const failed = await update(again, { resumeAttempts: 0 });
    const error = (await failed.run.catch((e: unknown) => e)) as UpdateError;
    expect(error).toBeInstanceOf(UpdateError);
    expect(error.code).toBe('LINK_LOST');
    expect(error.message).toMatch(/nothing was written to the device; move it closer/);
    expect(error.message).toMatch(/\(the update failed at: (device-info|info)\)$/);
  });

  describe('a link drop at any GATT operation of the update is survived', async () => {
    // Count the operations of a clean update first, then drop the link at each one in turn
    // (the power-cut idea of mcuboot's simulator, applied to the link).
    // Uncompressed, so that the stream is a few dozen frames.
    const options = { compression: 'never' } as const;
    const clean = new DroppingDevice(v2Device(), -1);
    const { run } = await update(clean, options);
    await run;
    const total = clean.operations;

    it(`counts the operations of a clean update (${total})`, () => {
      expect(total).toBeGreaterThan(20);
    });

    /** The phase each drop was noticed in, over all the runs. */
    const noticedIn = new Set<string>();

    for (let at = 1; at <= total; at++) {
      it(`drop at operation ${at}`, async () => {
        const inner = v2Device();
        const device = new DroppingDevice(inner, at);
        const { events, run } = await update(device, options);
        const result = await run;
        expect(device.droppedAt).toBeDefined();
        // The device runs the new image, and the update says so.
        expect(inner.runningVersion).toBe('2.0.0');
        expect(inner.bootCount).toBe(1);
        expect(result.verify).toEqual({ verified: true, version: '2.0.0' });
        // Each drop is noticed once and answered with a new connection: before the restart it
        // resumes the update, after it the verification reads the version again.
        const resumed = events.filter((e) => e.type === 'resuming');
        expect(resumed).toHaveLength(1);
        for (const e of resumed) noticedIn.add(e.phase);
      });
    }

    // A drop at the connection itself shows at the first read after it, in device-info.
    it('dropped the link in every phase that talks to the device', () => {
      for (const phase of ['device-info', 'info', 'begin', 'data', 'end', 'verify'])
        expect(noticedIn).toContain(phase);
    });
  });
});
