import {
  AttError,
  LinkLostError,
  MODEL_NUMBER_UUID,
  NotConnectedError,
  OTA_CONTROL_UUID,
  OTA_DATA_UUID,
  PayloadTooLargeError,
  readDeviceInformation,
  TimeoutError,
  TransportBusyError,
  UnknownCharacteristicError,
} from '@esp-ble-ota/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import { DeviceNotFoundError } from './errors.ts';
import { openTransport } from './open.ts';
import { advertisesOta, findDevice, scan } from './scan.ts';
import { Chr, releaseVirtualNobles, setupVirtual } from './test/virtual-radio.ts';
import { NobleTransport } from './transport.ts';

const open: NobleTransport[] = [];
afterEach(async () => {
  for (const t of open.splice(0)) await t.close();
  releaseVirtualNobles();
});

async function until(condition: () => boolean, timeoutMs = 2000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

let nextAddress = 1;
function address(): string {
  return `24:0a:c4:00:00:${(nextAddress++).toString(16).padStart(2, '0')}`;
}

async function connected(options: { preferredMtu?: number } = {}) {
  const setup = setupVirtual({ address: address(), ...options });
  const { transport, device } = await openTransport({
    noble: setup.noble,
    address: setup.peripheral.address,
    scanTimeoutMs: 2000,
  });
  open.push(transport);
  return { ...setup, transport, device };
}

describe('scan', () => {
  it('finds the device by name, address and advertised OTA service', async () => {
    const setup = setupVirtual({ address: address(), name: 'ota-scan-1' });
    const byName = await findDevice(setup.noble, { name: 'ota-scan-1', timeoutMs: 2000 });
    expect(byName.address).toBe(setup.peripheral.address);
    expect(byName.rssi).toBeLessThan(0);
    const byAddress = await findDevice(setup.noble, {
      address: setup.peripheral.address.toUpperCase(),
      timeoutMs: 2000,
    });
    expect(byAddress.name).toBe('ota-scan-1');
    expect(advertisesOta(byAddress)).toBe(true);
    const all = await scan(setup.noble, { timeoutMs: 300, match: advertisesOta });
    expect(all.map((d) => d.address)).toContain(setup.peripheral.address);
  });

  it('reports a device that is not there as DeviceNotFoundError after the timeout', async () => {
    const setup = setupVirtual({ address: address() });
    const started = Date.now();
    const error = await findDevice(setup.noble, { name: 'nobody-here', timeoutMs: 300 }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(DeviceNotFoundError);
    expect((error as Error).message).toMatch(/no device named "nobody-here" found within 300 ms/);
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
  });
});

describe('NobleTransport on the virtual controller', () => {
  it('connects, negotiates the MTU and discovers only the OTA and DIS characteristics', async () => {
    const { transport, app } = await connected({ preferredMtu: 185 });
    expect(transport.connected).toBe(true);
    expect(transport.mtu).toBe(185);
    expect(app.mtu).toBe(185);
    const chars = transport.services().flatMap((s) => s.characteristics.map((c) => c.uuid));
    expect(chars).toEqual(
      expect.arrayContaining([OTA_CONTROL_UUID, OTA_DATA_UUID, MODEL_NUMBER_UUID]),
    );
    // GAP's Device Name and GATT's Service Changed are not needed, so never discovered.
    expect(chars).not.toContain('2a00');
    expect(chars).not.toContain('2a05');
  });

  it('reports misuse by rejecting: not connected, unknown characteristic, oversized value', async () => {
    const setup = setupVirtual({ address: address() });
    const device = await findDevice(setup.noble, {
      address: setup.peripheral.address,
      timeoutMs: 2000,
    });
    const transport = new NobleTransport(device.peripheral, { noble: setup.noble });
    open.push(transport);
    await expect(
      transport.write(OTA_DATA_UUID, Uint8Array.of(1), { withResponse: true }),
    ).rejects.toBeInstanceOf(NotConnectedError);
    expect(() => transport.mtu).toThrow(NotConnectedError);
    await transport.connect();
    await expect(transport.read('2a00')).rejects.toBeInstanceOf(UnknownCharacteristicError);
    const before = setup.app.writes.length;
    await expect(
      transport.write(OTA_DATA_UUID, new Uint8Array(transport.mtu - 2), { withResponse: false }),
    ).rejects.toBeInstanceOf(PayloadTooLargeError);
    expect(setup.app.writes.length).toBe(before);
  });

  it('reads the Device Information for pre-flight checks', async () => {
    const { transport } = await connected();
    await expect(readDeviceInformation(transport)).resolves.toEqual({
      manufacturer: 'Espressif Systems',
      model: 'ESP32',
      firmwareRevision: '1.0.0',
    });
  });

  it('writes with response, and turns an ATT Error Response into AttError', async () => {
    const { transport, app } = await connected();
    await transport.write(OTA_DATA_UUID, Uint8Array.of(0xb4, 0x00), { withResponse: true });
    expect(app.writes.at(-1)).toEqual({
      chrId: Chr.data,
      data: Uint8Array.of(0xb4, 0x00),
      withResponse: true,
    });
    app.onWriteRequest = () => 0x0d;
    const error = await transport
      .write(OTA_DATA_UUID, Uint8Array.of(1, 2, 3), { withResponse: true })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AttError);
    expect((error as AttError).status).toBe(0x0d);
    // noble dropped the error; the bearer must still be free for the next request.
    app.onWriteRequest = () => 0;
    await transport.write(OTA_CONTROL_UUID, Uint8Array.of(1), { withResponse: true });
    expect(app.writes.at(-1)?.chrId).toBe(Chr.control);
  });

  it('turns a refused read into AttError and keeps the bearer usable', async () => {
    const { transport, app } = await connected();
    app.values.delete(Chr.fwRev);
    const error = await transport.read('2a26').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AttError);
    expect((error as AttError).status).toBe(0x02);
    await expect(transport.read(MODEL_NUMBER_UUID)).resolves.toEqual(
      new TextEncoder().encode('ESP32'),
    );
  });

  it('disables notifications when the last listener goes', async () => {
    const { transport, app, peripheral } = await connected();
    const a: number[] = [];
    const b: number[] = [];
    const la = (d: Uint8Array) => a.push(d[0] ?? -1);
    const lb = (d: Uint8Array) => b.push(d[0] ?? -1);
    await transport.subscribe(OTA_CONTROL_UUID, la);
    await transport.subscribe(OTA_CONTROL_UUID, lb);
    expect(app.subscriptions).toEqual([{ chrId: Chr.control, flags: 1 }]);
    peripheral.notify(app.conn ?? 0, Chr.control, Uint8Array.of(5));
    await until(() => b.length === 1);
    await transport.unsubscribe(OTA_CONTROL_UUID, la);
    peripheral.notify(app.conn ?? 0, Chr.control, Uint8Array.of(6));
    await until(() => b.length === 2);
    await transport.unsubscribe(OTA_CONTROL_UUID, lb);
    expect(app.subscriptions.at(-1)).toEqual({ chrId: Chr.control, flags: 0 });
    expect(a).toEqual([5]);
    expect(b).toEqual([5, 6]);
  });

  it('delivers notifications in order with write responses', async () => {
    const { transport, app, peripheral } = await connected();
    const seen: string[] = [];
    await transport.subscribe(OTA_CONTROL_UUID, (data) => seen.push(`notify ${data[0]}`));
    expect(app.subscriptions).toEqual([{ chrId: Chr.control, flags: 1 }]);
    app.onWriteRequest = (write) => {
      if (write.chrId === Chr.control && app.conn !== undefined) {
        peripheral.notify(app.conn, Chr.control, Uint8Array.of(0x02));
      }
      return 0;
    };
    await transport.write(OTA_CONTROL_UUID, Uint8Array.of(0x01), { withResponse: true });
    seen.push('write resolved');
    expect(seen).toEqual(['notify 2', 'write resolved']);
  });

  it('rejects a second request while one is outstanding, and frees the bearer after an abort only when the response came', async () => {
    const { transport, app } = await connected();
    let release: (status: number) => void = () => {};
    app.onWriteRequest = () =>
      new Promise<number>((resolve) => {
        release = resolve;
      });
    const controller = new AbortController();
    const first = transport.write(OTA_DATA_UUID, Uint8Array.of(1), {
      withResponse: true,
      signal: controller.signal,
    });
    await expect(
      transport.write(OTA_DATA_UUID, Uint8Array.of(2), { withResponse: true }),
    ).rejects.toBeInstanceOf(TransportBusyError);
    controller.abort();
    await expect(first).rejects.toMatchObject({ code: 'ABORTED' });
    await expect(transport.read(MODEL_NUMBER_UUID)).rejects.toBeInstanceOf(TransportBusyError);
    app.onWriteRequest = () => 0;
    release(0);
    await new Promise((r) => setTimeout(r, 20));
    await expect(transport.read(MODEL_NUMBER_UUID)).resolves.toEqual(
      new TextEncoder().encode('ESP32'),
    );
  });

  it('paces Write Commands by the controller buffers and keeps their order', async () => {
    const { transport, app } = await connected({ preferredMtu: 247 });
    const budget = 2 * (transport.controllerBuffers?.num ?? 0);
    expect(budget).toBeGreaterThan(0);
    const size = transport.mtu - 3;
    let worst = 0;
    for (let i = 0; i < 300; i++) {
      const packet = new Uint8Array(size).fill(i & 0xff);
      packet[0] = i >> 8;
      await transport.write(OTA_DATA_UUID, packet, { withResponse: false });
      worst = Math.max(worst, transport.aclBacklog() ?? 0);
    }
    expect(worst).toBeLessThan(budget);
    await transport.write(OTA_CONTROL_UUID, Uint8Array.of(0), { withResponse: true });
    const data = app.writes.filter((w) => w.chrId === Chr.data && !w.withResponse);
    expect(data).toHaveLength(300);
    expect(data.map((w) => ((w.data[0] ?? 0) << 8) | (w.data[1] ?? 0))).toEqual(
      Array.from({ length: 300 }, (_, i) => ((i >> 8) << 8) | (i & 0xff)),
    );
  });

  it('fails a pending write with LinkLostError when the device drops the link', async () => {
    const { transport, app, peripheral } = await connected();
    app.onWriteRequest = () => new Promise<number>(() => {});
    const disconnects: unknown[] = [];
    transport.on('disconnect', (info) => disconnects.push(info));
    const pending = transport.write(OTA_DATA_UUID, Uint8Array.of(1), { withResponse: true });
    await new Promise((r) => setTimeout(r, 20));
    peripheral.disconnect(app.conn ?? 0, 0x13);
    const error = await pending.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LinkLostError);
    expect((error as LinkLostError).reason).toBe(0x13);
    expect(disconnects).toEqual([
      {
        initiator: 'remote',
        reason: 0x13,
        message: expect.stringContaining('closed the connection'),
      },
    ]);
    expect(transport.connected).toBe(false);
    await expect(transport.read(MODEL_NUMBER_UUID)).rejects.toBeInstanceOf(LinkLostError);
    // The transport can connect again after a drop.
    await transport.connect();
    expect(transport.connected).toBe(true);
  });

  it('gives up connecting after the timeout, and can connect once the device is back', async () => {
    const setup = setupVirtual({ address: address() });
    const device = await findDevice(setup.noble, {
      address: setup.peripheral.address,
      timeoutMs: 2000,
    });
    setup.peripheral.stopAdvertising();
    const transport = new NobleTransport(device.peripheral, {
      noble: setup.noble,
      connectTimeoutMs: 300,
    });
    open.push(transport);
    const error = await transport.connect().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TimeoutError);
    expect((error as Error).message).toMatch(/connecting to esp32 took longer than 300 ms/);
    expect(transport.connected).toBe(false);
    setup.peripheral.startAdvertising();
    await transport.connect();
    expect(transport.connected).toBe(true);
  });

  it('stops connecting when aborted', async () => {
    const setup = setupVirtual({ address: address() });
    const device = await findDevice(setup.noble, {
      address: setup.peripheral.address,
      timeoutMs: 2000,
    });
    setup.peripheral.stopAdvertising();
    const transport = new NobleTransport(device.peripheral, { noble: setup.noble });
    open.push(transport);
    const controller = new AbortController();
    const pending = transport.connect({ signal: controller.signal });
    setTimeout(() => controller.abort(), 50);
    await expect(pending).rejects.toMatchObject({ code: 'ABORTED' });
    setup.peripheral.startAdvertising();
  });

  it('reports a local disconnect as initiated locally', async () => {
    const { transport } = await connected();
    const disconnects: Array<{ initiator: string }> = [];
    transport.on('disconnect', (info) => disconnects.push(info));
    await transport.disconnect();
    expect(disconnects).toMatchObject([{ initiator: 'local' }]);
    await transport.close();
    await expect(transport.connect()).rejects.toMatchObject({ code: 'NOT_CONNECTED' });
  });
});
