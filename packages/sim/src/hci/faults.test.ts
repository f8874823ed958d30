import type { Characteristic } from '@abandonware/noble';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { VirtualPeripheral } from '../att/peripheral.ts';
import type { Fault } from './faults.ts';
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

const OTA_CONTROL = '7ad671aa21c046a4b722270e3ae3d830';
const OTA_DATA = '234088881f404cd89b89ca8d45f8a5b0';

let radio: VirtualRadio;
let noble: Noble;
let nextAddress = 0x10;

/** A fresh device per test: noble remembers peripherals by address, and faults fire once per device. */
function device(faults: Fault[]): { p: VirtualPeripheral; app: BaselineTestApp } {
  const app = new BaselineTestApp();
  const address = `24:0a:c4:00:00:${(nextAddress++).toString(16)}`;
  const p = radio.addPeripheral({ address, name: 'esp32', gatt: BASELINE_LAYOUT, app, faults });
  app.peripheral = p;
  return { p, app };
}

async function connect(address: string) {
  const peripheral = await scanFor(noble, address);
  await peripheral.connectAsync();
  await vi.waitFor(() => expect(peripheral.mtu).not.toBeNull());
  const { characteristics } = await peripheral.discoverAllServicesAndCharacteristicsAsync();
  const chr = (uuid: string): Characteristic => {
    const c = characteristics.find((x) => x.uuid === uuid);
    if (!c) throw new Error(`characteristic ${uuid} not discovered`);
    return c;
  };
  const disconnected = waitFor<number>(
    (resolve) => {
      peripheral.once('disconnect', resolve);
      return () => peripheral.removeListener('disconnect', resolve);
    },
    5000,
    `noble to see ${address} disconnect`,
  );
  // Keep the rejection from surfacing when a test never waits for it.
  disconnected.catch(() => undefined);
  return { peripheral, control: chr(OTA_CONTROL), data: chr(OTA_DATA), disconnected };
}

/** Settles with 'pending' if the promise has not settled after `ms` of wall time. */
function within<T>(promise: Promise<T>, ms: number): Promise<T | 'pending'> {
  return Promise.race([promise, new Promise<'pending'>((r) => setTimeout(() => r('pending'), ms))]);
}

beforeAll(async () => {
  radio = new VirtualRadio({
    // 1 ms of modeled time per PDU, so that a fault at a modeled time is reached deterministically.
    createLink: (req) => new ImmediateTestScheduler({ connIntervalMs: req.maxIntervalMs }, 1000),
  });
  installVirtualHci(radio);
  noble = loadNoble();
  await poweredOn(noble);
});

afterEach(async () => {
  for (const p of radio.peripherals()) for (const conn of p.connections()) p.disconnect(conn);
  await vi.waitFor(() =>
    expect(radio.peripherals().every((p) => p.connections().length === 0)).toBe(true),
  );
  for (const p of [...radio.peripherals()]) radio.removePeripheral(p);
});

describe('fault injection', () => {
  it('refuse-larger-mtu answers the MTU exchange with 23, once', async () => {
    const { p, app } = device([{ kind: 'refuse-larger-mtu', name: 'mtu-stays-23' }]);
    const first = await connect(p.address);
    await vi.waitFor(() => expect(first.peripheral.mtu).toBe(23));
    expect(app.events).toContain('mtu 1 23');
    // With MTU 23 a read of the 307-byte string takes many Read Blob round trips, and still works.
    const fw = first.peripheral.services
      .flatMap((s) => s.characteristics)
      .find((c) => c.uuid === '2a26');
    expect((await fw?.readAsync())?.toString()).toBe(app.fwRev);
    await first.peripheral.disconnectAsync();
    const second = await connect(p.address);
    await vi.waitFor(() => expect(second.peripheral.mtu).toBe(256));
    expect(radio.faultLog.map((r) => [r.name, r.kind, r.peripheral])).toEqual([
      ['mtu-stays-23', 'refuse-larger-mtu', p.address],
    ]);
  });

  it('drop-att-pdu loses the chosen Write Request: its response never comes', async () => {
    const { p, app } = device([
      {
        kind: 'drop-att-pdu',
        name: 'lose-2nd-data-write',
        match: { direction: 'c2p', opcode: 0x12, chrId: CHR.data, nth: 2 },
      },
    ]);
    const { data } = await connect(p.address);
    await data.writeAsync(Buffer.from([1, 0]), false);
    expect(await within(data.writeAsync(Buffer.from([2, 0]), false), 300)).toBe('pending');
    expect(app.writes.filter((w) => w.chrId === CHR.data).map((w) => [...w.data])).toEqual([
      [1, 0],
    ]);
    expect(p.faultLog[0]).toMatchObject({ name: 'lose-2nd-data-write', kind: 'drop-att-pdu' });
    expect(p.faultLog[0]?.detail).toContain('opcode 0x12 c2p, match #2');
  });

  it('corrupt-att-pdu flips a byte of a notification on its way to the central', async () => {
    const { p } = device([
      { kind: 'corrupt-att-pdu', name: 'garble-ack', match: { direction: 'p2c', opcode: 0x1b } },
    ]);
    const { control, data } = await connect(p.address);
    await control.subscribeAsync();
    await data.writeAsync(Buffer.from([20, 0]), false);
    const got = waitFor<Buffer>(
      (resolve) => {
        control.once('data', resolve);
        return () => control.removeListener('data', resolve);
      },
      2000,
      'the REQUEST_ACK notification',
    );
    await control.writeAsync(Buffer.from([OTA.request]), true);
    expect([...(await got)]).toEqual([OTA.requestAck ^ 0xff]);
    expect(radio.faultLog.at(-1)).toMatchObject({ name: 'garble-ack', kind: 'corrupt-att-pdu' });
  });

  it('corrupt-att-pdu flips a chosen byte of a write on its way to the device', async () => {
    const { p, app } = device([
      {
        kind: 'corrupt-att-pdu',
        name: 'bit-flip-in-data',
        match: { direction: 'c2p', opcode: 0x12, chrId: CHR.data },
        offset: 3,
        xor: 0x01,
      },
    ]);
    const { data } = await connect(p.address);
    await data.writeAsync(Buffer.from([0x10, 0x20, 0x30]), false);
    await data.writeAsync(Buffer.from([0x10, 0x20, 0x30]), false);
    expect(app.writes.map((w) => [...w.data])).toEqual([
      [0x11, 0x20, 0x30],
      [0x10, 0x20, 0x30],
    ]);
  });

  it('drop-link-after-bytes ends the link with a supervision timeout on both sides', async () => {
    const { p, app } = device([]);
    const { data, disconnected } = await connect(p.address);
    // Armed after discovery: 10 Write Requests of 3 + 20 bytes fit in 230 bytes, the 11th does not.
    p.addFault({ kind: 'drop-link-after-bytes', name: 'cut-at-230', bytes: 230 });
    const writes: Array<Promise<unknown>> = [];
    for (let i = 0; i < 12; i++)
      writes.push(within(data.writeAsync(Buffer.alloc(20, i), false), 1000));
    expect(await disconnected).toBe(0x08);
    expect(app.events.at(-1)).toMatch(/^disconnect \d+ 0x08$/);
    expect(app.writes.filter((w) => w.chrId === CHR.data)).toHaveLength(10);
    expect(p.faultLog[0]?.detail).toBe('link dropped after 230 ATT bytes c2p (limit 230)');
    expect(p.advertising).toBe(true);
  });

  it('drop-link-at-time ends the link at the first delivery at or after the modeled time', async () => {
    const { p } = device([{ kind: 'drop-link-at-time', name: 'cut-at-150ms', atUs: 150_000 }]);
    const { data, disconnected } = await connect(p.address);
    let sent = 0;
    const pump = (async () => {
      while (p.connections().length > 0 && sent < 500) {
        sent++;
        await within(data.writeAsync(Buffer.alloc(20, sent), false), 200);
      }
    })();
    expect(await disconnected).toBe(0x08);
    await pump;
    const rec = p.faultLog[0];
    expect(rec?.name).toBe('cut-at-150ms');
    // Each PDU costs 1 ms in this scheduler, so the drop lands on the first PDU at or after 150 ms.
    expect(rec?.atUs).toBeGreaterThanOrEqual(150_000);
    expect(rec?.atUs).toBeLessThan(152_000);
  });
});
