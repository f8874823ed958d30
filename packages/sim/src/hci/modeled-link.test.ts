import type { Characteristic, Peripheral } from '@abandonware/noble';
import { beforeAll, describe, expect, it } from 'vitest';
import type { GattLayout } from '../att/gatt-layout.ts';
import { ceilingKBps } from '../link/ceilings.ts';
import type { ModeledAirScheduler } from '../link/modeled-scheduler.ts';
import { createProfileLink, getProfile } from '../link/profiles.ts';
import { installVirtualHci, loadNoble, type Noble } from './install.ts';
import { VirtualRadio } from './radio.ts';
import { BASELINE_LAYOUT, BaselineTestApp, poweredOn, scanFor, waitFor } from './test-support.ts';

// noble, unmodified, over the link timing model (src/link): the controller must return credits
// on the model's acknowledgements and freeze modeled time while hosts react, or these figures drift.
const profile = getProfile('linux-noble-esp32');
const OTA_DATA = '234088881f404cd89b89ca8d45f8a5b0';
const BOARD = '24:0a:c4:00:00:01';
// Two more boards on a 15 ms interval, where full 253-byte writes (a 251-byte and a 9-byte
// link-layer PDU each) lose an exchange per event to the MIC: one whose writes are open, one
// whose writes need an encrypted link (noble pairs when it refuses one).
const OPEN_BOARD = '24:0a:c4:00:00:02';
const SECURED_BOARD = '24:0a:c4:00:00:03';
const AT_15_MS = [OPEN_BOARD, SECURED_BOARD];

let noble: Noble;
let radio: VirtualRadio;
let app: BaselineTestApp;
let openApp: BaselineTestApp;
let securedApp: BaselineTestApp;
const links: ModeledAirScheduler[] = [];

async function connectData(address = BOARD): Promise<{
  peripheral: Peripheral;
  data: Characteristic;
  link: ModeledAirScheduler;
}> {
  const peripheral = await scanFor(noble, address);
  await peripheral.connectAsync();
  const { characteristics } = await peripheral.discoverSomeServicesAndCharacteristicsAsync(
    [],
    [OTA_DATA],
  );
  const data = characteristics[0];
  const link = links.at(-1);
  if (!data || !link) throw new Error('OTA Data was not discovered');
  return { peripheral, data, link };
}

beforeAll(async () => {
  radio = new VirtualRadio({
    createLink: (req) => {
      const link = createProfileLink(profile, {
        attMtu: 23,
        ...(AT_15_MS.includes(req.peripheralAddress.toLowerCase()) ? { connIntervalMs: 15 } : {}),
      });
      links.push(link);
      return link;
    },
    controller: { leAclNum: profile.centralAclBuffers },
  });
  app = new BaselineTestApp();
  app.peripheral = radio.addPeripheral({
    address: BOARD,
    name: 'esp32',
    gatt: BASELINE_LAYOUT,
    app,
  });
  openApp = new BaselineTestApp();
  openApp.peripheral = radio.addPeripheral({
    address: OPEN_BOARD,
    name: 'esp32',
    gatt: BASELINE_LAYOUT,
    app: openApp,
  });
  const secured = structuredClone(BASELINE_LAYOUT) as GattLayout;
  for (const chr of secured.services[0]?.characteristics ?? []) chr.writeSecurity = 'encrypted';
  securedApp = new BaselineTestApp();
  securedApp.peripheral = radio.addPeripheral({
    address: SECURED_BOARD,
    name: 'esp32',
    gatt: secured,
    app: securedApp,
  });
  installVirtualHci(radio);
  noble = loadNoble();
  await poweredOn(noble);
});

describe('noble over the modeled link (linux-noble-esp32)', () => {
  it('Write Requests cost about two connection intervals each, as LINK-MODEL.md says', async () => {
    const { peripheral, data, link } = await connectData();
    expect(link.params.attMtu).toBe(256);
    const chunk = Buffer.alloc(253, 0xa5);
    const n = 40;
    const t0 = link.nowUs;
    for (let i = 0; i < n; i++) await data.writeAsync(chunk, false);
    const perWriteMs = (link.nowUs - t0) / n / 1000;
    const kBps = (n * chunk.length) / ((link.nowUs - t0) / 1e6) / 1000;
    const ceiling = ceilingKBps(link.params, 'write-request');
    expect(perWriteMs).toBeGreaterThanOrEqual(profile.params.connIntervalMs * 2 * 0.9);
    expect(perWriteMs).toBeLessThanOrEqual(profile.params.connIntervalMs * 2 * 1.1);
    expect(kBps).toBeGreaterThan(ceiling * 0.9);
    expect(kBps).toBeLessThanOrEqual(ceiling * 1.1);
    await peripheral.disconnectAsync();
  });

  it('Write Commands stream close to the link ceiling, paced only by ACL credits', async () => {
    const { peripheral, data, link } = await connectData();
    const chunk = Buffer.alloc(253, 0x5a);
    const n = 400;
    app.writes.length = 0;
    const t0 = link.nowUs;
    const writes: Array<Promise<void>> = [];
    for (let i = 0; i < n; i++) writes.push(data.writeAsync(chunk, true));
    await Promise.all(writes);
    await waitFor<void>(
      (resolve) => {
        const timer = setInterval(() => app.writes.length === n && resolve(), 5);
        return () => clearInterval(timer);
      },
      5000,
      'every Write Command to reach the app',
    );
    const kBps = (n * chunk.length) / ((link.nowUs - t0) / 1e6) / 1000;
    const ceiling = ceilingKBps(link.params, 'stream');
    expect(kBps).toBeGreaterThan(ceiling * 0.85);
    expect(kBps).toBeLessThanOrEqual(ceiling * 1.05);
    await peripheral.disconnectAsync();
  });
});

describe('an encrypted link on the modeled link', () => {
  /** 300 full-MTU Write Commands after one Write Request (which makes noble pair if refused). */
  async function stream(address: string, target: BaselineTestApp) {
    const { peripheral, data, link } = await connectData(address);
    await data.writeAsync(Buffer.from([0xf4, 0x00]), false);
    const chunk = Buffer.alloc(253, 0x3c);
    const n = 300;
    const before = target.writes.length;
    const t0 = link.nowUs;
    await Promise.all(Array.from({ length: n }, () => data.writeAsync(chunk, true)));
    await waitFor<void>(
      (resolve) => {
        const timer = setInterval(() => target.writes.length === before + n && resolve(), 5);
        return () => clearInterval(timer);
      },
      5000,
      'every Write Command to reach the app',
    );
    const kBps = (n * chunk.length) / ((link.nowUs - t0) / 1e6) / 1000;
    const params = { ...link.params };
    await peripheral.disconnectAsync();
    return { kBps, params };
  }

  it('puts the 4-byte MIC on air once LE Start Encryption succeeded; an unencrypted link is unchanged', async () => {
    const open = await stream(OPEN_BOARD, openApp);
    const secured = await stream(SECURED_BOARD, securedApp);
    expect(open.params.encrypted).toBe(false);
    expect(secured.params.encrypted).toBe(true);
    expect({ ...secured.params, encrypted: false }).toEqual(open.params);

    // At 15 ms the MIC's 32 us per data PDU leave room for one exchange fewer per event:
    // 84.3 kB/s without it, 75.9 kB/s with it (LINK-MODEL.md "packet on air": + 4 MIC).
    const openCeiling = ceilingKBps(open.params);
    const securedCeiling = ceilingKBps(secured.params);
    expect(openCeiling).toBeCloseTo(84.33, 1);
    expect(securedCeiling).toBeCloseTo(75.9, 1);
    for (const [kBps, ceiling] of [
      [open.kBps, openCeiling],
      [secured.kBps, securedCeiling],
    ] as const) {
      expect(kBps).toBeGreaterThan(ceiling * 0.85);
      expect(kBps).toBeLessThanOrEqual(ceiling * 1.05);
    }
    // The same transfer, the same pacing: only the MIC differs.
    expect(Math.abs(secured.kBps / open.kBps - securedCeiling / openCeiling)).toBeLessThan(0.02);
  });
});
