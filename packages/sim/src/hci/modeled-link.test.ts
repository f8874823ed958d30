import type { Characteristic, Peripheral } from '@abandonware/noble';
import { beforeAll, describe, expect, it } from 'vitest';
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

let noble: Noble;
let radio: VirtualRadio;
let app: BaselineTestApp;
const links: ModeledAirScheduler[] = [];

async function connectData(): Promise<{
  peripheral: Peripheral;
  data: Characteristic;
  link: ModeledAirScheduler;
}> {
  const peripheral = await scanFor(noble);
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
    createLink: () => {
      const link = createProfileLink(profile, { attMtu: 23 });
      links.push(link);
      return link;
    },
    controller: { leAclNum: profile.centralAclBuffers },
  });
  app = new BaselineTestApp();
  app.peripheral = radio.addPeripheral({
    address: '24:0a:c4:00:00:01',
    name: 'esp32',
    gatt: BASELINE_LAYOUT,
    app,
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
