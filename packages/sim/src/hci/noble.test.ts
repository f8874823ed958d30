import type { Characteristic } from '@abandonware/noble';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { GattLayout } from '../att/gatt-layout.ts';
import type { VirtualPeripheral } from '../att/peripheral.ts';
import type { VirtualController } from './controller.ts';
import { installVirtualHci, loadNoble, type Noble } from './install.ts';
import { VirtualRadio } from './radio.ts';
import {
  BASELINE_LAYOUT,
  BaselineTestApp,
  CHR,
  ImmediateTestScheduler,
  OTA,
  poweredOn,
  scanFor,
  waitFor,
} from './test-support.ts';

// One noble per test file: it is a process-wide singleton, and vitest runs each file in its own process.
const OTA_SERVICE = 'd6f1d96d594c4c53b1c6144a1dfde6d8';
const OTA_CONTROL = '7ad671aa21c046a4b722270e3ae3d830';
const OTA_DATA = '234088881f404cd89b89ca8d45f8a5b0';

let radio: VirtualRadio;
let noble: Noble;
let controller: VirtualController;
let app: BaselineTestApp;
let esp: VirtualPeripheral;
const schedulers: ImmediateTestScheduler[] = [];

async function connectBaseline(address = esp.address) {
  const peripheral = await scanFor(noble, address);
  await peripheral.connectAsync();
  const { characteristics } = await peripheral.discoverAllServicesAndCharacteristicsAsync();
  const byUuid = (uuid: string): Characteristic => {
    const c = characteristics.find((x) => x.uuid === uuid);
    if (!c) throw new Error(`characteristic ${uuid} not discovered`);
    return c;
  };
  return { peripheral, characteristics, byUuid };
}

function nextData(chr: Characteristic): Promise<Buffer> {
  return waitFor<Buffer>(
    (resolve) => {
      const onData = (d: Buffer) => resolve(d);
      chr.on('data', onData);
      return () => chr.removeListener('data', onData);
    },
    2000,
    `a notification on ${chr.uuid}`,
  );
}

beforeAll(async () => {
  radio = new VirtualRadio({
    createLink: (req) => {
      const s = new ImmediateTestScheduler({ connIntervalMs: req.maxIntervalMs });
      schedulers.push(s);
      return s;
    },
  });
  app = new BaselineTestApp();
  esp = radio.addPeripheral({
    address: '24:0a:c4:00:00:01',
    name: 'esp32',
    gatt: BASELINE_LAYOUT,
    app,
  });
  app.peripheral = esp;
  installVirtualHci(radio);
  noble = loadNoble();
  await poweredOn(noble);
  const c = radio.controllers[0];
  if (!c) throw new Error('noble opened no HCI socket');
  controller = c;
  controller.traceEnabled = true;
});

afterEach(async () => {
  // A failed test must not leave a link open for the next one.
  for (const p of radio.peripherals()) for (const conn of p.connections()) p.disconnect(conn);
  await vi.waitFor(() =>
    expect(radio.peripherals().every((p) => p.connections().length === 0)).toBe(true),
  );
});

afterAll(() => {
  noble.removeAllListeners('discover');
});

describe('noble against the virtual HCI controller', () => {
  it('finds a peripheral named esp32 advertising the OTA service, flags, name and TX power', async () => {
    const p = await scanFor(noble, esp.address);
    expect(p.advertisement.localName).toBe('esp32');
    expect(p.advertisement.serviceUuids).toEqual([OTA_SERVICE]);
    expect(p.advertisement.txPowerLevel).toBe(9);
    expect(p.connectable).toBe(true);
    expect(p.rssi).toBe(-45);
    // flags general discoverable + BR/EDR not supported lead the advertising data, as NimBLE lays it out.
    const report = controller.trace.find(
      ([dir, pkt]) => dir === 'controller->host' && pkt[1] === 0x3e && pkt[3] === 0x02,
    );
    expect(report?.[1].subarray(14, 17).toString('hex')).toBe('020106');
  });

  it('connects, exchanges MTU 256 and discovers the layout the device declares', async () => {
    const { peripheral, characteristics } = await connectBaseline();
    await vi.waitFor(() => expect(peripheral.mtu).toBe(256));
    expect(app.events).toContain('connect 1 23');
    expect(app.events).toContain('mtu 1 256');
    expect(schedulers.at(-1)?.params.attMtu).toBe(256);
    expect(peripheral.services.map((s) => s.uuid)).toEqual(['1800', '1801', OTA_SERVICE, '180a']);
    const props = Object.fromEntries(characteristics.map((c) => [c.uuid, c.properties]));
    expect(props[OTA_CONTROL]).toEqual(['read', 'write', 'notify']);
    expect(props[OTA_DATA]).toEqual(['write']);
    expect(props['2a29']).toEqual(['read']);
    const control = characteristics.find((c) => c.uuid === OTA_CONTROL);
    const descriptors = await control?.discoverDescriptorsAsync();
    expect(descriptors?.map((d) => d.uuid)).toEqual(['2902']);
    await peripheral.disconnectAsync();
  });

  it('reads short values and long ones through Read Blob', async () => {
    const { peripheral, byUuid } = await connectBaseline();
    expect((await byUuid('2a29').readAsync()).toString()).toBe('Company 42');
    expect((await byUuid('2a24').readAsync()).toString()).toBe('ESP32');
    expect((await byUuid('2a26').readAsync()).toString()).toBe(app.fwRev);
    expect((await byUuid('2a00').readAsync()).toString()).toBe('esp32');
    expect(await peripheral.updateRssiAsync()).toBe(-45);
    await peripheral.disconnectAsync();
  });

  it('runs the baseline exchange: writes with and without response, a long write, notifications', async () => {
    const { peripheral, byUuid } = await connectBaseline();
    await vi.waitFor(() => expect(peripheral.mtu).toBe(256));
    const control = byUuid(OTA_CONTROL);
    const data = byUuid(OTA_DATA);
    await control.subscribeAsync();
    expect(app.events.at(-1)).toBe(`subscribe ${esp.connections()[0]} ${CHR.control} 1`);
    const packetSize = 256 - 3;
    const size = Buffer.alloc(2);
    size.writeUInt16LE(packetSize, 0);
    app.writes.length = 0;
    await data.writeAsync(size, false);
    // REQUEST as the baseline client sends it: a Write Command to a characteristic that declares only "write".
    const ack = nextData(control);
    await control.writeAsync(Buffer.from([OTA.request]), true);
    expect([...(await ack)]).toEqual([OTA.requestAck]);
    const image = Buffer.alloc(packetSize * 3 + 17);
    for (let i = 0; i < image.length; i++) image[i] = (i * 7) & 0xff;
    for (let off = 0; off < image.length; off += packetSize) {
      await data.writeAsync(image.subarray(off, off + packetSize), false);
    }
    const done = nextData(control);
    await control.writeAsync(Buffer.from([OTA.done]), true);
    expect([...(await done)]).toEqual([OTA.doneAck]);
    expect(Buffer.concat(app.image).equals(image)).toBe(true);
    expect(app.writes.map((w) => [w.chrId, w.withResponse])).toEqual([
      [CHR.data, true],
      [CHR.control, false],
      [CHR.data, true],
      [CHR.data, true],
      [CHR.data, true],
      [CHR.data, true],
      [CHR.control, false],
    ]);
    // More than MTU-3 bytes with response: noble's prepare/execute long write arrives as one write.
    app.writes.length = 0;
    const long = Buffer.alloc(500, 0x5a);
    await data.writeAsync(long, false);
    expect(app.writes).toHaveLength(1);
    expect(app.writes[0]?.data.equals(long)).toBe(true);
    await peripheral.disconnectAsync();
  });

  it('loses a Write Command longer than MTU-3 on the way, as a board does, and keeps the link', async () => {
    const { peripheral, byUuid } = await connectBaseline();
    await vi.waitFor(() => expect(peripheral.mtu).toBe(256));
    const dropped: number[] = [];
    const onOversize = (_conn: number, length: number) => dropped.push(length);
    esp.on('attOversize', onOversize);
    app.writes.length = 0;
    const data = byUuid(OTA_DATA);
    // noble sends a Write Command as given, however long; NimBLE drops the SDU.
    await data.writeAsync(Buffer.alloc(254, 1), true);
    await data.writeAsync(Buffer.alloc(253, 2), true);
    await vi.waitFor(() => expect(app.writes).toHaveLength(1));
    expect(app.writes[0]?.data.length).toBe(253);
    expect(dropped).toEqual([257]);
    esp.off('attOversize', onOversize);
    await peripheral.disconnectAsync();
  });

  it('returns every ACL buffer credit with Number Of Completed Packets', async () => {
    await vi.waitFor(() => {
      const aclOut = controller.trace.filter(
        ([dir, pkt]) => dir === 'host->controller' && pkt[0] === 0x02,
      ).length;
      let credited = 0;
      for (const [dir, pkt] of controller.trace) {
        if (dir !== 'controller->host' || pkt[0] !== 0x04 || pkt[1] !== 0x13) continue;
        for (let i = 0; i < (pkt[3] ?? 0); i++) credited += pkt.readUInt16LE(6 + i * 4);
      }
      expect(aclOut).toBeGreaterThan(20);
      expect(credited).toBe(aclOut);
    });
  });

  it('disconnects from the central side', async () => {
    const { peripheral } = await connectBaseline();
    const conn = esp.connections()[0];
    await peripheral.disconnectAsync();
    await vi.waitFor(() => expect(app.events.at(-1)).toBe(`disconnect ${conn} 0x13`));
    expect(esp.connections()).toEqual([]);
    expect(esp.advertising).toBe(true);
    const ev = controller.trace
      .filter(([dir, pkt]) => dir === 'controller->host' && pkt[1] === 0x05)
      .at(-1);
    // Disconnection Complete: status 0, reason 0x16 (terminated by the local host).
    expect(ev?.[1].subarray(3).toString('hex')).toMatch(/^00[0-9a-f]{4}16$/);
  });

  it('disconnects from the peripheral side', async () => {
    const { peripheral } = await connectBaseline();
    const conn = esp.connections()[0] ?? -1;
    const reason = waitFor<number>(
      (resolve) => {
        peripheral.once('disconnect', resolve);
        return () => peripheral.removeListener('disconnect', resolve);
      },
      2000,
      'noble to see the disconnect',
    );
    esp.disconnect(conn);
    expect(await reason).toBe(0x13);
    expect(app.events.at(-1)).toBe(`disconnect ${conn} 0x16`);
    await vi.waitFor(() => expect(peripheral.state).toBe('disconnected'));
  });

  it('lets the kernel accept a connection parameter update the peripheral asks for', async () => {
    const { peripheral } = await connectBaseline();
    const conn = esp.connections()[0] ?? -1;
    const scheduler = schedulers.at(-1);
    expect(scheduler?.params.connIntervalMs).toBe(22.5);
    const accepted = await esp.requestConnectionUpdate(conn, {
      minIntervalMs: 15,
      maxIntervalMs: 15,
      latency: 0,
      supervisionTimeoutMs: 4000,
    });
    expect(accepted).toBe(true);
    await vi.waitFor(() => expect(scheduler?.params.connIntervalMs).toBe(15));
    const update = controller.trace.find(
      ([dir, pkt]) => dir === 'controller->host' && pkt[1] === 0x3e && pkt[3] === 0x03,
    );
    // LE Connection Update Complete: status 0, interval 12 x 1.25 ms, latency 0, timeout 400 x 10 ms.
    expect(update?.[1].subarray(4).toString('hex')).toMatch(/^00[0-9a-f]{4}0c0000009001$/);
    await peripheral.disconnectAsync();
  });

  it('serves two peripherals at once, each with its own address, name and app', async () => {
    const layoutB: GattLayout = {
      services: [
        ...BASELINE_LAYOUT.services,
        {
          uuid: '0000ffe0-0000-1000-8000-00805f9b34fb',
          characteristics: [{ id: 7, uuid: 'ffe1', properties: ['indicate'] }],
        },
      ],
    };
    const appB = new BaselineTestApp();
    const espB = radio.addPeripheral({
      address: '24:0a:c4:00:00:02',
      name: 'esp32-b',
      gatt: layoutB,
      app: appB,
    });
    appB.peripheral = espB;
    const a = await connectBaseline(esp.address);
    const b = await connectBaseline(espB.address);
    expect(b.peripheral.advertisement.localName).toBe('esp32-b');
    app.writes.length = 0;
    appB.writes.length = 0;
    await a.byUuid(OTA_DATA).writeAsync(Buffer.from([1, 0]), false);
    await b.byUuid(OTA_DATA).writeAsync(Buffer.from([2, 0]), false);
    expect(app.writes.map((w) => [...w.data])).toEqual([[1, 0]]);
    expect(appB.writes.map((w) => [...w.data])).toEqual([[2, 0]]);
    // Indication on B: noble confirms it, which resolves the peripheral's indicate().
    const ind = b.byUuid('ffe1');
    await ind.subscribeAsync();
    expect(appB.events.at(-1)).toBe(`subscribe ${espB.connections()[0]} 7 2`);
    const got = nextData(ind);
    await espB.indicate(espB.connections()[0] ?? -1, 7, Buffer.from('hello'));
    expect((await got).toString()).toBe('hello');
    await a.peripheral.disconnectAsync();
    await b.peripheral.disconnectAsync();
    expect(esp.connections()).toEqual([]);
    expect(espB.connections()).toEqual([]);
    radio.removePeripheral(espB);
  });
});

describe('device reset', () => {
  it('drops the link with a supervision timeout on both sides and stops advertising until the app starts again', async () => {
    const { peripheral } = await connectBaseline();
    const conn = esp.connections()[0] ?? -1;
    const reason = waitFor<number>(
      (resolve) => {
        peripheral.once('disconnect', resolve);
        return () => peripheral.removeListener('disconnect', resolve);
      },
      2000,
      'noble to see the link loss',
    );
    esp.reset();
    expect(await reason).toBe(0x08);
    expect(app.events.at(-1)).toBe(`disconnect ${conn} 0x08`);
    expect(esp.advertising).toBe(false);
    // The new boot declares another layout; the rig serves it from the next connection on.
    esp.setGattLayout({
      services: [
        ...BASELINE_LAYOUT.services,
        { uuid: '180f', characteristics: [{ id: 9, uuid: '2a19', properties: ['read'] }] },
      ],
    });
    esp.startAdvertising('esp32');
    const again = await connectBaseline();
    expect(again.peripheral.services.map((s) => s.uuid)).toEqual([
      '1800',
      '1801',
      OTA_SERVICE,
      '180a',
      '180f',
    ]);
    expect(esp.scheduler(esp.connections()[0] ?? -1)?.params.attMtu).toBe(256);
    await again.peripheral.disconnectAsync();
    esp.setGattLayout(BASELINE_LAYOUT);
  });
});
